//! Content-Type from a file name or from the first bytes, and `Range` header decisions.

use axum::http::HeaderValue;
use http_range_header::{parse_range_header, RangeUnsatisfiableError};

/// Bytes of the start of a file that [`sniff`] looks at.
pub(crate) const SNIFF_LEN: u64 = 16;

/// The type a `filename` suggests (by extension), if any.
pub(crate) fn from_filename(name: &str) -> Option<String> {
    mime_guess::from_path(name)
        .first()
        .map(|m| m.essence_str().to_owned())
        .map(|m| {
            if m.starts_with("text/") {
                format!("{m}; charset=utf-8")
            } else {
                m
            }
        })
}

/// A type recognised from magic bytes at the start of a file, or `application/octet-stream`.
pub(crate) fn sniff(head: &[u8]) -> &'static str {
    const TABLE: &[(&[u8], &str)] = &[
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"%PDF-", "application/pdf"),
        (b"PK\x03\x04", "application/zip"),
        (b"\x1f\x8b", "application/gzip"),
        (b"\0asm", "application/wasm"),
        (b"OggS", "application/ogg"),
        (b"ID3", "audio/mpeg"),
        (b"fLaC", "audio/flac"),
    ];
    for (magic, mime) in TABLE {
        if head.starts_with(magic) {
            return mime;
        }
    }
    if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        return "image/webp";
    }
    if head.len() >= 8 && &head[4..8] == b"ftyp" {
        return "video/mp4";
    }
    "application/octet-stream"
}

/// What to answer for a `Range` header on a representation of `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RangeDecision {
    /// 200 with the whole representation (no header, an invalid one, or several ranges).
    Full,
    /// 206 with bytes `start..end` (end exclusive).
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// Decides how to answer `range` (the header value, if any) for `size` bytes.
///
/// * No header, a header that does not parse, or a rejected one → whole file (RFC 9110 lets a
///   server ignore Range).
/// * Exactly one satisfiable range (`a-b`, `a-`, `-n`; an end past the file is clamped) → 206.
/// * Several ranges: the whole file (200) — multipart/byteranges is not implemented.
/// * Nothing satisfiable → 416.
pub(crate) fn decide_range(range: Option<&HeaderValue>, size: u64) -> RangeDecision {
    let Some(text) = range.and_then(|v| v.to_str().ok()) else {
        return RangeDecision::Full;
    };
    let parsed = match parse_range_header(text) {
        Ok(p) => p,
        Err(RangeUnsatisfiableError::Unsatisfiable) => return RangeDecision::Unsatisfiable,
        Err(_) => return RangeDecision::Full,
    };
    match parsed.validate(size) {
        Ok(ranges) => match ranges.as_slice() {
            [one] => RangeDecision::Partial {
                start: *one.start(),
                end: one.end().saturating_add(1),
            },
            // Zero ranges: only for an empty file and a suffix range: answer the empty file.
            _ => RangeDecision::Full,
        },
        Err(RangeUnsatisfiableError::Unsatisfiable) => RangeDecision::Unsatisfiable,
        Err(_) => RangeDecision::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(h: &str, size: u64) -> RangeDecision {
        decide_range(Some(&HeaderValue::from_str(h).unwrap()), size)
    }

    #[test]
    fn ranges() {
        use RangeDecision::*;
        assert_eq!(decide_range(None, 10), Full);
        assert_eq!(d("bytes=0-0", 10), Partial { start: 0, end: 1 });
        assert_eq!(d("bytes=2-", 10), Partial { start: 2, end: 10 });
        assert_eq!(d("bytes=-3", 10), Partial { start: 7, end: 10 });
        assert_eq!(d("bytes=-30", 10), Partial { start: 0, end: 10 });
        assert_eq!(d("bytes=5-100", 10), Partial { start: 5, end: 10 });
        assert_eq!(d("bytes=10-", 10), Unsatisfiable);
        assert_eq!(d("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(d("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(d("bytes=-5", 0), Full);
        assert_eq!(d("bytes=0-1,4-5", 10), Full);
        assert_eq!(d("bytes=0-1,40-50", 10), Partial { start: 0, end: 2 });
        assert_eq!(d("bytes=5-2", 10), Full);
        assert_eq!(d("items=0-1", 10), Full);
        assert_eq!(d("bytes=x", 10), Full);
    }

    #[test]
    fn types() {
        assert_eq!(from_filename("a.wasm").as_deref(), Some("application/wasm"));
        assert_eq!(
            from_filename("a.txt").as_deref(),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(from_filename("noext"), None);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), "image/png");
        assert_eq!(sniff(b"%PDF-1.7"), "application/pdf");
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), "image/webp");
        assert_eq!(sniff(b"hello"), "application/octet-stream");
        assert_eq!(sniff(b""), "application/octet-stream");
    }
}
