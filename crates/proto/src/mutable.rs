//! Mutable-share endpoints: the binary body of a signed test-and-write and its JSON answer.
//!
//! `POST /storage/v1/mutable/{si}/write` carries one or more share writes (a whole share or
//! patches to the stored one) in the framing below; the server checks each with the mutable
//! format's validity check (signature by the key behind the storage index, strictly higher
//! sequence number) and applies all of them or none. Reads use the same multi-range framing as
//! immutable shares (`POST /storage/v1/mutable/{si}/read`, [`crate::read`]).
//!
//! Body framing (`application/x-lafs-mutable-write-v1`, integers big-endian):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | magic `6c 61 66 73 6d 77 00 01` (`lafsmw`, 0x00, 0x01) |
//! | 8 | 4 | write count W (u32, 1..=256) |
//!
//! then W writes, each a 16-byte header and its patches:
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 1 | share number |
//! | 1 | 1 | kind: `0` whole share (exactly one patch at offset 0 covering `new_len`), `1` patch |
//! | 2 | 2 | reserved, zero |
//! | 4 | 8 | `new_len`: share length after the write (u64) |
//! | 12 | 4 | patch count P (u32) |
//!
//! each patch: `offset` (u64) ‖ `len` (u32) ‖ `len` bytes. Patches must lie inside `new_len`.
//! A share number may appear only once per request.

use serde::{Deserialize, Serialize};

use crate::ids::ShareNum;
use crate::Error;

/// Media type of a mutable write body.
pub const MUTABLE_WRITE_MEDIA_TYPE: &str = "application/x-lafs-mutable-write-v1";

/// Magic bytes opening a mutable write body.
pub const WRITE_MAGIC: [u8; 8] = *b"lafsmw\x00\x01";

/// Largest number of share writes in one request.
pub const MAX_WRITES: u32 = 256;

/// Kind byte of a whole-share write.
pub const KIND_WHOLE: u8 = 0;

/// Kind byte of a patch write.
pub const KIND_PATCH: u8 = 1;

/// One patch: bytes written at `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WirePatch {
    /// Offset in the share.
    pub offset: u64,
    /// The bytes.
    pub data: Vec<u8>,
}

/// One share write as carried on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireWrite {
    /// Replace the share with these bytes.
    Whole {
        /// Share number.
        share: ShareNum,
        /// The whole share.
        data: Vec<u8>,
    },
    /// Resize the stored share to `new_len` (cut or zero-extend), then apply the patches in
    /// order.
    Patch {
        /// Share number.
        share: ShareNum,
        /// Length after the write.
        new_len: u64,
        /// Patches.
        patches: Vec<WirePatch>,
    },
}

impl WireWrite {
    /// The share number.
    pub fn share(&self) -> ShareNum {
        match self {
            Self::Whole { share, .. } | Self::Patch { share, .. } => *share,
        }
    }
}

fn bad(reason: &'static str) -> Error {
    Error::BadMutableWrite { reason }
}

/// Encodes a write request. Fails if there are no writes or more than [`MAX_WRITES`], a
/// share number repeats, or a patch is longer than `u32::MAX` bytes.
pub fn encode_writes(writes: &[WireWrite]) -> Result<Vec<u8>, Error> {
    let count = u32::try_from(writes.len()).map_err(|_| bad("too many writes"))?;
    if count == 0 || count > MAX_WRITES {
        return Err(bad("a request carries 1 to 256 writes"));
    }
    let mut seen = [false; 256];
    let mut out = Vec::new();
    out.extend_from_slice(&WRITE_MAGIC);
    out.extend_from_slice(&count.to_be_bytes());
    for w in writes {
        let s = usize::from(w.share().0);
        if seen[s] {
            return Err(bad("a share number appears twice"));
        }
        seen[s] = true;
        let (kind, new_len, patches): (u8, u64, Vec<(u64, &[u8])>) = match w {
            WireWrite::Whole { data, .. } => (KIND_WHOLE, data.len() as u64, vec![(0, data)]),
            WireWrite::Patch {
                new_len, patches, ..
            } => (
                KIND_PATCH,
                *new_len,
                patches
                    .iter()
                    .map(|p| (p.offset, p.data.as_slice()))
                    .collect(),
            ),
        };
        out.push(w.share().0);
        out.push(kind);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&new_len.to_be_bytes());
        let pc = u32::try_from(patches.len()).map_err(|_| bad("too many patches"))?;
        out.extend_from_slice(&pc.to_be_bytes());
        for (offset, data) in patches {
            let n = u32::try_from(data.len()).map_err(|_| bad("patch longer than 4 GiB"))?;
            out.extend_from_slice(&offset.to_be_bytes());
            out.extend_from_slice(&n.to_be_bytes());
            out.extend_from_slice(data);
        }
    }
    Ok(out)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).ok_or(bad("truncated"))?;
        let s = self.bytes.get(self.pos..end).ok_or(bad("truncated"))?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, Error> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, Error> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }
}

/// Decodes a write request strictly: magic, 1..=256 writes with distinct share numbers, zero
/// reserved bytes, whole writes as exactly one patch at 0 of `new_len` bytes, patches inside
/// `new_len`, no trailing bytes. Never panics on hostile input.
pub fn decode_writes(bytes: &[u8]) -> Result<Vec<WireWrite>, Error> {
    let mut c = Cursor { bytes, pos: 0 };
    if c.take(8).map_err(|_| bad("bad magic"))? != WRITE_MAGIC {
        return Err(bad("bad magic"));
    }
    let count = c.u32()?;
    if count == 0 || count > MAX_WRITES {
        return Err(bad("a request carries 1 to 256 writes"));
    }
    let mut seen = [false; 256];
    let mut out = Vec::new();
    for _ in 0..count {
        let share = ShareNum(c.u8()?);
        if seen[usize::from(share.0)] {
            return Err(bad("a share number appears twice"));
        }
        seen[usize::from(share.0)] = true;
        let kind = c.u8()?;
        if c.take(2)? != [0, 0] {
            return Err(bad("reserved bytes are not zero"));
        }
        let new_len = c.u64()?;
        let pc = c.u32()?;
        let mut patches = Vec::new();
        for _ in 0..pc {
            let offset = c.u64()?;
            let n = c.u32()?;
            let data = c.take(usize::try_from(n).map_err(|_| bad("truncated"))?)?;
            let end = offset
                .checked_add(u64::from(n))
                .ok_or(bad("patch past the share's end"))?;
            if end > new_len {
                return Err(bad("patch past the share's end"));
            }
            patches.push(WirePatch {
                offset,
                data: data.to_vec(),
            });
        }
        out.push(match kind {
            KIND_WHOLE => match patches.pop() {
                Some(p)
                    if patches.is_empty() && p.offset == 0 && p.data.len() as u64 == new_len =>
                {
                    WireWrite::Whole {
                        share,
                        data: p.data,
                    }
                }
                _ => return Err(bad("a whole write is one patch at 0 covering the share")),
            },
            KIND_PATCH => WireWrite::Patch {
                share,
                new_len,
                patches,
            },
            _ => return Err(bad("unknown write kind")),
        });
    }
    if c.pos != bytes.len() {
        return Err(bad("trailing bytes"));
    }
    Ok(out)
}

/// What the server did with one share write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WriteOutcome {
    /// The new share is stored.
    Written,
    /// The share was already exactly this (a retried write); nothing changed.
    AlreadyStored,
}

/// Result of one share write in a [`MutableWriteResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareWriteResult {
    /// Share number.
    pub share: ShareNum,
    /// What happened.
    pub outcome: WriteOutcome,
    /// Sequence number of the share now stored.
    pub seqnum: u64,
    /// Sequence number of the share it replaced, if there was one.
    pub previous: Option<u64>,
}

/// Answer (200) of `POST /storage/v1/mutable/{si}/write`: every write was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MutableWriteResponse {
    /// One result per write, in request order.
    pub results: Vec<ShareWriteResult>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_vector() {
        let w = vec![
            WireWrite::Whole {
                share: ShareNum(2),
                data: b"abc".to_vec(),
            },
            WireWrite::Patch {
                share: ShareNum(0),
                new_len: 10,
                patches: vec![WirePatch {
                    offset: 8,
                    data: b"z".to_vec(),
                }],
            },
        ];
        let bytes = encode_writes(&w).unwrap();
        let expected = "6c6166736d770001 00000002\
             02 00 0000 0000000000000003 00000001 0000000000000000 00000003 616263\
             00 01 0000 000000000000000a 00000001 0000000000000008 00000001 7a";
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected.replace(' ', ""));
        assert_eq!(decode_writes(&bytes).unwrap(), w);
    }

    #[test]
    fn rejects_malformed() {
        let ok = encode_writes(&[WireWrite::Patch {
            share: ShareNum(1),
            new_len: 4,
            patches: vec![WirePatch {
                offset: 0,
                data: vec![1, 2],
            }],
        }])
        .unwrap();
        for cut in 0..ok.len() {
            assert!(decode_writes(&ok[..cut]).is_err(), "prefix {cut}");
        }
        let mut extra = ok.clone();
        extra.push(0);
        assert!(decode_writes(&extra).is_err());
        let mut kind = ok.clone();
        kind[13] = 7;
        assert!(decode_writes(&kind).is_err());
        let mut reserved = ok.clone();
        reserved[14] = 1;
        assert!(decode_writes(&reserved).is_err());
        let mut len = ok.clone();
        len[16..24].copy_from_slice(&1u64.to_be_bytes()); // patch 0..2 past new_len 1
        assert!(decode_writes(&len).is_err());
        assert!(encode_writes(&[]).is_err());
        let dup = WireWrite::Whole {
            share: ShareNum(0),
            data: vec![],
        };
        assert!(encode_writes(&[dup.clone(), dup]).is_err());
    }

    proptest! {
        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_writes(&bytes);
            let mut framed = WRITE_MAGIC.to_vec();
            framed.extend_from_slice(&bytes);
            let _ = decode_writes(&framed);
        }

        #[test]
        fn round_trips(shares in proptest::collection::btree_set(any::<u8>(), 1..5),
                       data in proptest::collection::vec(any::<u8>(), 0..40)) {
            let writes: Vec<WireWrite> = shares.iter().map(|&s| if s % 2 == 0 {
                WireWrite::Whole { share: ShareNum(s), data: data.clone() }
            } else {
                WireWrite::Patch { share: ShareNum(s), new_len: 100,
                    patches: vec![WirePatch { offset: 50, data: data.clone() }] }
            }).collect();
            let bytes = encode_writes(&writes).unwrap();
            prop_assert_eq!(decode_writes(&bytes).unwrap(), writes);
        }
    }
}
