//! Multi-range reads: one request fetches several ranges of several shares of one storage index.
//!
//! The request is JSON ([`ReadRequest`]); the response is a compact binary framing
//! (media type [`crate::storage::READ_RESPONSE_MEDIA_TYPE`]), all integers big-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `6c 61 66 73 72 64 00 01` (`"lafsrd"`, 0, 1) |
//! | 8 | 4 | `part_count`: number of parts (u32) |
//! | 12 | … | `part_count` parts, in request order (one per requested range) |
//!
//! Each part is a 24-byte header followed by `data_len` bytes:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | share number |
//! | 1 | 1 | status: `0` data, `1` share not held (then the three numbers below are 0) |
//! | 2 | 2 | reserved, zero |
//! | 4 | 4 | `data_len` (u32) |
//! | 8 | 8 | `offset` of the data in the share (u64), after resolving suffix ranges |
//! | 16 | 8 | `share_len`: total length of the share (u64) |
//!
//! A data part always satisfies `offset + data_len <= share_len`.

use serde::{Deserialize, Serialize};

use crate::ids::ShareNum;
use crate::Error;

/// Magic bytes at the start of a read response.
pub const MAGIC: [u8; 8] = *b"lafsrd\x00\x01";
/// Bytes before the first part.
pub const PREAMBLE_LEN: usize = 12;
/// Bytes of a part header.
pub const PART_HEADER_LEN: usize = 24;

const STATUS_DATA: u8 = 0;
const STATUS_ABSENT: u8 = 1;

/// Body of `POST /storage/v1/immutable/{si}/read`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    /// Shares to read from, with the ranges wanted of each.
    pub reads: Vec<ShareRead>,
}

/// Ranges wanted of one share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareRead {
    /// Share number.
    pub share: ShareNum,
    /// Ranges, answered in this order.
    pub ranges: Vec<ReadRange>,
}

/// One requested range. JSON: `{"offset": 0, "length": 100}` or `{"suffix": 64}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawRange", into = "RawRange")]
pub enum ReadRange {
    /// `length` bytes from `offset` (truncated at the end of the share).
    Span {
        /// First byte.
        offset: u64,
        /// Number of bytes wanted (> 0).
        length: u64,
    },
    /// The last `length` bytes (the whole share if it is shorter).
    Suffix {
        /// Number of bytes wanted (> 0).
        length: u64,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    suffix: Option<u64>,
}

impl TryFrom<RawRange> for ReadRange {
    type Error = Error;
    fn try_from(r: RawRange) -> Result<Self, Error> {
        let bad = |reason| Error::BadReadRequest { reason };
        match (r.offset, r.length, r.suffix) {
            (Some(offset), Some(length), None) => {
                if length == 0 {
                    return Err(bad("range length must be positive"));
                }
                if offset.checked_add(length).is_none() {
                    return Err(bad("range end overflows"));
                }
                Ok(Self::Span { offset, length })
            }
            (None, None, Some(length)) if length > 0 => Ok(Self::Suffix { length }),
            (None, None, Some(_)) => Err(bad("suffix length must be positive")),
            _ => Err(bad("a range is {offset, length} or {suffix}")),
        }
    }
}

impl From<ReadRange> for RawRange {
    fn from(r: ReadRange) -> Self {
        match r {
            ReadRange::Span { offset, length } => Self {
                offset: Some(offset),
                length: Some(length),
                suffix: None,
            },
            ReadRange::Suffix { length } => Self {
                offset: None,
                length: None,
                suffix: Some(length),
            },
        }
    }
}

impl ReadRange {
    /// Resolves the range against a share of `share_len` bytes: `(offset, len)` with `len > 0`
    /// and `offset + len <= share_len`, or `None` if no byte of the share is in the range
    /// (a span starting at or past the end, or any range of an empty share).
    pub fn resolve(&self, share_len: u64) -> Option<(u64, u64)> {
        match *self {
            Self::Span { offset, length } => {
                if offset >= share_len {
                    return None;
                }
                Some((offset, length.min(share_len - offset)))
            }
            Self::Suffix { length } => {
                if share_len == 0 {
                    return None;
                }
                let len = length.min(share_len);
                Some((share_len - len, len))
            }
        }
    }
}

impl ReadRequest {
    /// Checks the request's shape: at least one range, every share listed with at least one
    /// range, at most `max_ranges` ranges in total. Returns the number of ranges.
    pub fn validate(&self, max_ranges: u32) -> Result<u32, Error> {
        let bad = |reason| Error::BadReadRequest { reason };
        let mut total: u64 = 0;
        for r in &self.reads {
            if r.ranges.is_empty() {
                return Err(bad("a share is listed with no ranges"));
            }
            total += r.ranges.len() as u64;
        }
        if total == 0 {
            return Err(bad("no ranges requested"));
        }
        if total > u64::from(max_ranges) {
            return Err(bad("too many ranges"));
        }
        u32::try_from(total).map_err(|_| bad("too many ranges"))
    }
}

/// One part of a read response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadPart<'a> {
    /// Share number.
    pub share: ShareNum,
    /// Data, or the fact that the server does not hold the share.
    pub content: PartContent<'a>,
}

/// What a [`ReadPart`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartContent<'a> {
    /// Bytes `offset..offset + data.len()` of a share of `share_len` bytes.
    Data {
        /// Where the data starts in the share.
        offset: u64,
        /// Total share length.
        share_len: u64,
        /// The bytes.
        data: &'a [u8],
    },
    /// The server holds no finished share with this number under this storage index.
    Absent,
}

/// The 12-byte preamble of a response with `part_count` parts.
pub fn encode_preamble(part_count: u32) -> [u8; PREAMBLE_LEN] {
    let mut out = [0u8; PREAMBLE_LEN];
    out[..8].copy_from_slice(&MAGIC);
    out[8..].copy_from_slice(&part_count.to_be_bytes());
    out
}

/// The 24-byte header of a data part. `offset + data_len` must not exceed `share_len`.
pub fn encode_data_header(
    share: ShareNum,
    offset: u64,
    data_len: u32,
    share_len: u64,
) -> [u8; PART_HEADER_LEN] {
    let mut out = [0u8; PART_HEADER_LEN];
    out[0] = share.0;
    out[1] = STATUS_DATA;
    out[4..8].copy_from_slice(&data_len.to_be_bytes());
    out[8..16].copy_from_slice(&offset.to_be_bytes());
    out[16..24].copy_from_slice(&share_len.to_be_bytes());
    out
}

/// The 24-byte header of an "absent" part.
pub fn encode_absent_header(share: ShareNum) -> [u8; PART_HEADER_LEN] {
    let mut out = [0u8; PART_HEADER_LEN];
    out[0] = share.0;
    out[1] = STATUS_ABSENT;
    out
}

/// Encodes a whole response. Fails only if a part is longer than `u32::MAX` bytes, if there are
/// more than `u32::MAX` parts, or if a part's data would extend past its `share_len`.
pub fn encode_response(parts: &[ReadPart<'_>]) -> Result<Vec<u8>, Error> {
    let count = u32::try_from(parts.len()).map_err(|_| Error::BadReadRequest {
        reason: "too many parts",
    })?;
    let data_total: usize = parts
        .iter()
        .map(|p| match p.content {
            PartContent::Data { data, .. } => data.len(),
            PartContent::Absent => 0,
        })
        .sum();
    let mut out = Vec::with_capacity(PREAMBLE_LEN + parts.len() * PART_HEADER_LEN + data_total);
    out.extend_from_slice(&encode_preamble(count));
    for (i, p) in parts.iter().enumerate() {
        let part = u32::try_from(i).unwrap_or(u32::MAX);
        match p.content {
            PartContent::Data {
                offset,
                share_len,
                data,
            } => {
                let len = u32::try_from(data.len()).map_err(|_| Error::BadPart {
                    part,
                    reason: "data longer than 4 GiB",
                })?;
                if offset
                    .checked_add(u64::from(len))
                    .is_none_or(|end| end > share_len)
                {
                    return Err(Error::BadPart {
                        part,
                        reason: "data extends past share end",
                    });
                }
                out.extend_from_slice(&encode_data_header(p.share, offset, len, share_len));
                out.extend_from_slice(data);
            }
            PartContent::Absent => out.extend_from_slice(&encode_absent_header(p.share)),
        }
    }
    Ok(out)
}

/// Decodes a whole response, borrowing the data from `bytes`. Rejects bad magic, truncation,
/// invalid headers and trailing bytes.
pub fn decode_response(bytes: &[u8]) -> Result<Vec<ReadPart<'_>>, Error> {
    if bytes.len() < PREAMBLE_LEN {
        return Err(Error::Truncated {
            offset: bytes.len() as u64,
            part: 0,
        });
    }
    if bytes[..8] != MAGIC {
        return Err(Error::BadMagic);
    }
    let count = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    // Each part needs at least a header: bound the allocation by the input size.
    let max_parts = (bytes.len() - PREAMBLE_LEN) / PART_HEADER_LEN;
    let mut parts = Vec::with_capacity((count as usize).min(max_parts));
    let mut pos = PREAMBLE_LEN;
    for part in 0..count {
        let header = bytes
            .get(pos..pos + PART_HEADER_LEN)
            .ok_or(Error::Truncated {
                offset: bytes.len() as u64,
                part,
            })?;
        pos += PART_HEADER_LEN;
        let share = ShareNum(header[0]);
        let status = header[1];
        let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let be64 = |b: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_be_bytes(a)
        };
        let data_len = be32(&header[4..8]);
        let offset = be64(&header[8..16]);
        let share_len = be64(&header[16..24]);
        if header[2] != 0 || header[3] != 0 {
            return Err(Error::BadPart {
                part,
                reason: "reserved bytes are not zero",
            });
        }
        match status {
            STATUS_DATA => {
                if offset
                    .checked_add(u64::from(data_len))
                    .is_none_or(|end| end > share_len)
                {
                    return Err(Error::BadPart {
                        part,
                        reason: "data extends past share end",
                    });
                }
                let end = pos
                    .checked_add(data_len as usize)
                    .filter(|&e| e <= bytes.len())
                    .ok_or(Error::Truncated {
                        offset: bytes.len() as u64,
                        part,
                    })?;
                parts.push(ReadPart {
                    share,
                    content: PartContent::Data {
                        offset,
                        share_len,
                        data: &bytes[pos..end],
                    },
                });
                pos = end;
            }
            STATUS_ABSENT => {
                if data_len != 0 || offset != 0 || share_len != 0 {
                    return Err(Error::BadPart {
                        part,
                        reason: "absent part with data",
                    });
                }
                parts.push(ReadPart {
                    share,
                    content: PartContent::Absent,
                });
            }
            _ => {
                return Err(Error::BadPart {
                    part,
                    reason: "unknown status",
                })
            }
        }
    }
    if pos != bytes.len() {
        return Err(Error::TrailingBytes {
            extra: (bytes.len() - pos) as u64,
        });
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_json_forms() {
        let r: ReadRequest = serde_json::from_str(
            r#"{"reads":[{"share":2,"ranges":[{"offset":0,"length":10},{"suffix":64}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            r.reads[0].ranges,
            vec![
                ReadRange::Span {
                    offset: 0,
                    length: 10
                },
                ReadRange::Suffix { length: 64 }
            ]
        );
        assert_eq!(r.validate(2), Ok(2));
        assert!(r.validate(1).is_err());
        for bad in [
            r#"{"reads":[{"share":2,"ranges":[{"offset":0}]}]}"#,
            r#"{"reads":[{"share":2,"ranges":[{"offset":0,"length":0}]}]}"#,
            r#"{"reads":[{"share":2,"ranges":[{"suffix":0}]}]}"#,
            r#"{"reads":[{"share":2,"ranges":[{"offset":1,"length":1,"suffix":1}]}]}"#,
            r#"{"reads":[{"share":2,"ranges":[{"offset":18446744073709551615,"length":2}]}]}"#,
            r#"{"reads":[{"share":300,"ranges":[{"suffix":1}]}]}"#,
        ] {
            assert!(serde_json::from_str::<ReadRequest>(bad).is_err(), "{bad}");
        }
        let empty: ReadRequest = serde_json::from_str(r#"{"reads":[]}"#).unwrap();
        assert!(empty.validate(10).is_err());
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<ReadRequest>(&json).unwrap(), r);
    }

    #[test]
    fn resolve() {
        let s = ReadRange::Span {
            offset: 5,
            length: 10,
        };
        assert_eq!(s.resolve(100), Some((5, 10)));
        assert_eq!(s.resolve(8), Some((5, 3)));
        assert_eq!(s.resolve(5), None);
        let x = ReadRange::Suffix { length: 10 };
        assert_eq!(x.resolve(100), Some((90, 10)));
        assert_eq!(x.resolve(4), Some((0, 4)));
        assert_eq!(x.resolve(0), None);
    }

    #[test]
    fn response_round_trip_and_vector() {
        let parts = [
            ReadPart {
                share: ShareNum(1),
                content: PartContent::Data {
                    offset: 2,
                    share_len: 10,
                    data: b"abc",
                },
            },
            ReadPart {
                share: ShareNum(7),
                content: PartContent::Absent,
            },
        ];
        let bytes = encode_response(&parts).unwrap();
        assert_eq!(
            hex::encode(&bytes),
            concat!(
                "6c61667372640001",
                "00000002",
                "01",
                "00",
                "0000",
                "00000003",
                "0000000000000002",
                "000000000000000a",
                "616263",
                "07",
                "01",
                "0000",
                "00000000",
                "0000000000000000",
                "0000000000000000",
            )
        );
        assert_eq!(decode_response(&bytes).unwrap(), parts);
        assert_eq!(
            decode_response(&bytes[..bytes.len() - 1]),
            Err(Error::Truncated {
                offset: bytes.len() as u64 - 1,
                part: 1
            })
        );
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(
            decode_response(&extra),
            Err(Error::TrailingBytes { extra: 1 })
        );
    }
}
