//! Mutable shares on the simulated grid: the same checks as a real storage server
//! (`lafs_mutable::check_write` under the server's lock, all or nothing per request).

use bytes::Bytes;
use lafs_proto::mutable::{MutableWriteResponse, ShareWriteResult, WireWrite, WriteOutcome};
use lafs_proto::storage::{ErrorCode, ShareInfo};
use lafs_proto::{ReadRequest, ShareNum, StorageIndex};

use super::{status, SimGrid, SimServer};
use crate::transport::{ReadPiece, TransportError};

fn to_share_write(w: WireWrite) -> lafs_mutable::ShareWrite {
    match w {
        WireWrite::Whole { share, data } => lafs_mutable::ShareWrite::Whole {
            share: u16::from(share.0),
            data,
        },
        WireWrite::Patch {
            share,
            new_len,
            patches,
        } => lafs_mutable::ShareWrite::Patch {
            share: u16::from(share.0),
            new_len,
            patches: patches
                .into_iter()
                .map(|p| lafs_mutable::Patch {
                    offset: p.offset,
                    data: p.data,
                })
                .collect(),
        },
    }
}

impl SimGrid {
    /// Every mutable share of `si`: (server index, share number, length).
    pub fn mutable_shares_of(&self, si: &StorageIndex) -> Vec<(usize, u16, u64)> {
        let mut out = Vec::new();
        for (i, s) in self.servers.iter().enumerate() {
            for ((ssi, sh), data) in s.lock().mutable.iter() {
                if ssi == si {
                    out.push((i, *sh, data.len() as u64));
                }
            }
        }
        out
    }

    /// Deletes mutable share `share` of `si` from server `i`. Returns false if absent.
    pub fn remove_mutable_share(&self, i: usize, si: &StorageIndex, share: u16) -> bool {
        self.servers[i]
            .lock()
            .mutable
            .remove(&(*si, share))
            .is_some()
    }

    /// Flips byte `offset` of mutable share `share` of `si` on server `i` (disk rot). Returns
    /// false if absent.
    pub fn corrupt_mutable(&self, i: usize, si: &StorageIndex, share: u16, offset: u64) -> bool {
        let mut st = self.servers[i].lock();
        match st
            .mutable
            .get_mut(&(*si, share))
            .and_then(|d| d.get_mut(usize::try_from(offset).unwrap_or(usize::MAX)))
        {
            Some(b) => {
                *b ^= 0x55;
                true
            }
            None => false,
        }
    }
}

impl SimServer {
    pub(super) fn mutable_list(&self, si: StorageIndex) -> Result<Vec<ShareInfo>, TransportError> {
        let mut st = self.enter()?;
        st.counters.list += 1;
        Ok(st
            .mutable
            .iter()
            .filter(|((s, _), _)| *s == si)
            .map(|((_, sh), d)| ShareInfo {
                share: ShareNum(u8::try_from(*sh).unwrap_or(u8::MAX)),
                length: d.len() as u64,
            })
            .collect())
    }

    pub(super) fn mutable_read(
        &self,
        si: StorageIndex,
        req: &ReadRequest,
    ) -> Result<Vec<ReadPiece>, TransportError> {
        let mut st = self.enter()?;
        st.counters.read += 1;
        let st = &mut *st;
        let mut out = Vec::new();
        for r in &req.reads {
            let share = u16::from(r.share.0);
            for range in &r.ranges {
                let Some(data) = st.mutable.get(&(si, share)) else {
                    out.push(ReadPiece::Absent { share });
                    continue;
                };
                let len = data.len() as u64;
                let Some((off, n)) = range.resolve(len) else {
                    return Err(status(
                        416,
                        ErrorCode::RangeNotSatisfiable,
                        "range outside share",
                    ));
                };
                let mut bytes = data
                    .get(off as usize..(off + n) as usize)
                    .unwrap_or_default()
                    .to_vec();
                if st.knobs.lying && !bytes.is_empty() {
                    let i = st.rng.usize(..bytes.len());
                    bytes[i] ^= 0x01;
                }
                out.push(ReadPiece::Data {
                    share,
                    offset: off,
                    share_len: len,
                    data: Bytes::from(bytes),
                });
            }
        }
        Ok(out)
    }

    pub(super) fn mutable_write(
        &self,
        si: StorageIndex,
        writes: Vec<WireWrite>,
    ) -> Result<MutableWriteResponse, TransportError> {
        let mut st = self.enter()?;
        st.counters.write += 1;
        if st.knobs.read_only {
            return Err(status(403, ErrorCode::ReadOnly, "read-only"));
        }
        let mut staged = Vec::new();
        let mut results = Vec::new();
        for w in writes {
            let share = w.share();
            st.counters.write_bytes += match &w {
                WireWrite::Whole { data, .. } => data.len() as u64,
                WireWrite::Patch { patches, .. } => {
                    patches.iter().map(|p| p.data.len() as u64).sum()
                }
            };
            let write = to_share_write(w);
            let stored = st.mutable.get(&(si, u16::from(share.0)));
            let verdict = lafs_mutable::check_write(&si, stored.map(Vec::as_slice), &write)
                .map_err(|e| match e {
                    lafs_mutable::Error::SeqnumNotHigher { .. }
                    | lafs_mutable::Error::PatchWithoutStoredShare { .. }
                    | lafs_mutable::Error::StoredShareCorrupt { .. } => {
                        status(409, ErrorCode::Conflict, e.to_string())
                    }
                    other => status(422, ErrorCode::ShareInvalid, other.to_string()),
                })?;
            match verdict {
                lafs_mutable::Verdict::Accept {
                    seqnum, previous, ..
                } => {
                    let mut bytes = stored.cloned().unwrap_or_default();
                    write
                        .apply(&mut bytes)
                        .map_err(|e| status(422, ErrorCode::ShareInvalid, e.to_string()))?;
                    staged.push((u16::from(share.0), bytes));
                    results.push(ShareWriteResult {
                        share,
                        outcome: WriteOutcome::Written,
                        seqnum,
                        previous,
                    });
                }
                lafs_mutable::Verdict::AlreadyStored { seqnum } => results.push(ShareWriteResult {
                    share,
                    outcome: WriteOutcome::AlreadyStored,
                    seqnum,
                    previous: Some(seqnum),
                }),
            }
        }
        for (share, bytes) in staged {
            st.mutable.insert((si, share), bytes);
        }
        Ok(MutableWriteResponse { results })
    }
}
