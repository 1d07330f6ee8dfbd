//! Test driver: a tiny in-memory "grid" for the sans-IO decoder.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use lafs_codec::{Decoder, Error};

/// Deterministic test plaintext: byte m is (m·31 + 7) mod 251.
pub fn plaintext(len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|m| ((m.wrapping_mul(31) + 7) % 251) as u8)
        .collect()
}

/// Outcome of a download.
pub struct Download {
    pub data: Vec<u8>,
    /// Recoverable errors reported on the way (corrupt shares).
    pub reports: Vec<Error>,
    /// Number of poll_requests batches that produced requests (round trips).
    pub round_trips: usize,
}

/// Downloads `range` through `dec`, reading from `shares` (None = server down). The first
/// request per share is a suffix read of `suffix_len` bytes.
pub fn download(
    dec: &mut Decoder,
    shares: &[Option<Vec<u8>>],
    range: std::ops::Range<u64>,
    suffix_len: usize,
) -> Result<Download, Error> {
    let mut reports = Vec::new();
    if dec.ueb().is_none() {
        for (i, s) in shares.iter().enumerate() {
            if let Some(s) = s {
                let suffix = &s[s.len().saturating_sub(suffix_len)..];
                if let Err(e) = dec.add_trailer(i as u16, s.len() as u64, suffix) {
                    reports.push(e);
                }
            }
        }
    }
    dec.read(range.clone())?;
    let mut data = Vec::new();
    let mut next = range.start.min(dec.file_size().unwrap_or(0));
    let mut round_trips = 0;
    for _ in 0..100_000 {
        while let Some(c) = dec.poll_output() {
            assert_eq!(c.offset, next, "output out of order");
            next += c.data.len() as u64;
            data.extend_from_slice(&c.data);
        }
        if dec.is_done() {
            return Ok(Download {
                data,
                reports,
                round_trips,
            });
        }
        let reqs = match dec.poll_requests() {
            Ok(r) => r,
            Err(e @ Error::CorruptShare { .. }) => {
                reports.push(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        if !reqs.is_empty() {
            round_trips += 1;
        }
        for req in reqs {
            let Some(share) = &shares[usize::from(req.share)] else {
                dec.share_unavailable(req.share);
                continue;
            };
            for r in req.ranges {
                let bytes = &share[r.start as usize..r.end as usize];
                match dec.handle_response(req.share, r.start, bytes) {
                    Ok(()) => {}
                    Err(e @ Error::CorruptShare { .. }) => reports.push(e),
                    // A response for a share that was just found corrupt.
                    Err(Error::UnexpectedData { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    panic!("download did not finish");
}
