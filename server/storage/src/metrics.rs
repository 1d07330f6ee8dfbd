//! Counters exposed at `GET /metrics` in the OpenMetrics text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Server counters. All are monotonic except where noted.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests received.
    pub requests: AtomicU64,
    /// Responses by status class: 2xx, 3xx, 4xx, 5xx (index 0..4).
    pub responses: [AtomicU64; 4],
    /// Share bytes received in writes.
    pub bytes_in: AtomicU64,
    /// Share bytes sent in reads.
    pub bytes_out: AtomicU64,
    /// Shares finished (verified and filed) by this process.
    pub shares_finished: AtomicU64,
    /// Finishes rejected because the share did not verify.
    pub shares_invalid: AtomicU64,
    /// Signed requests rejected.
    pub signature_failures: AtomicU64,
    /// Corruption advisories received.
    pub advisories: AtomicU64,
    /// Upload sessions discarded after their idle timeout.
    pub uploads_expired: AtomicU64,
    /// Mutable share bytes written (whole shares and in-place patches; journal excluded).
    pub mutable_bytes_written: AtomicU64,
    /// Incoming share bytes read back from the store to verify them at finish (those not
    /// hashed as they arrived, and the trees and trailer).
    pub bytes_read_to_verify: AtomicU64,
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a response status.
    pub fn response(&self, status: u16) {
        let class = match status {
            200..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        Self::add(&self.responses[class], 1);
    }

    /// The OpenMetrics exposition; `shares_held` and `uploads_active` are gauges read by the
    /// caller.
    pub fn render(&self, shares_held: u64, uploads_active: u64) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "{name}_total {value}");
        };
        counter(
            "lafs_storage_requests",
            "HTTP requests received.",
            get(&self.requests),
        );
        counter(
            "lafs_storage_bytes_in",
            "Share bytes received in writes.",
            get(&self.bytes_in),
        );
        counter(
            "lafs_storage_bytes_out",
            "Share bytes sent in reads.",
            get(&self.bytes_out),
        );
        counter(
            "lafs_storage_mutable_bytes_written",
            "Mutable share bytes written (whole shares and in-place patches).",
            get(&self.mutable_bytes_written),
        );
        counter(
            "lafs_storage_shares_finished",
            "Shares verified and stored by this process.",
            get(&self.shares_finished),
        );
        counter(
            "lafs_storage_shares_invalid",
            "Finish requests rejected because the share did not verify.",
            get(&self.shares_invalid),
        );
        counter(
            "lafs_storage_bytes_read_to_verify",
            "Incoming share bytes read back at finish to verify them (the rest was hashed as it arrived).",
            get(&self.bytes_read_to_verify),
        );
        counter(
            "lafs_storage_signature_failures",
            "Signed requests rejected (bad signature, stale timestamp, replay).",
            get(&self.signature_failures),
        );
        counter(
            "lafs_storage_corruption_advisories",
            "Corruption advisories received.",
            get(&self.advisories),
        );
        counter(
            "lafs_storage_uploads_expired",
            "Upload sessions discarded after their idle timeout.",
            get(&self.uploads_expired),
        );
        let _ = writeln!(out, "# TYPE lafs_storage_responses counter");
        let _ = writeln!(
            out,
            "# HELP lafs_storage_responses HTTP responses by status class."
        );
        for (i, class) in ["2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
            let _ = writeln!(
                out,
                "lafs_storage_responses_total{{class=\"{class}\"}} {}",
                get(&self.responses[i])
            );
        }
        let _ = writeln!(out, "# TYPE lafs_storage_errors counter");
        let _ = writeln!(
            out,
            "# HELP lafs_storage_errors Responses with a 4xx or 5xx status."
        );
        let _ = writeln!(
            out,
            "lafs_storage_errors_total {}",
            get(&self.responses[2]) + get(&self.responses[3])
        );
        let _ = writeln!(out, "# TYPE lafs_storage_shares_held gauge");
        let _ = writeln!(out, "# HELP lafs_storage_shares_held Finished shares held.");
        let _ = writeln!(out, "lafs_storage_shares_held {shares_held}");
        let _ = writeln!(out, "# TYPE lafs_storage_uploads_active gauge");
        let _ = writeln!(
            out,
            "# HELP lafs_storage_uploads_active Upload sessions in progress."
        );
        let _ = writeln!(out, "lafs_storage_uploads_active {uploads_active}");
        out.push_str("# EOF\n");
        out
    }
}
