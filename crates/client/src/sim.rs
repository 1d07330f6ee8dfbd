//! A deterministic in-memory grid for tests: N storage servers implementing [`Transport`].
//!
//! Each [`SimServer`] keeps finished shares and upload sessions in memory and behaves like the
//! real storage server where the client can tell: allocation with `already_have`, per-share
//! ranged writes, finish verifies the whole share with [`lafs_codec::verify_share`] and files
//! it under the storage index it computes, multi-range reads with absent parts, corruption
//! advisories recorded. Every future completes immediately, so a test drives everything with
//! `futures::executor::block_on` and the outcome depends only on the seed and the knobs.
//!
//! Knobs ([`Knobs`]): `dead` (every request fails as unreachable), `read_only`, `full`,
//! `fail_after` (the server dies after that many requests), `lying` (every byte range it
//! returns has one byte flipped, at a position drawn from the seeded RNG), `hang` (requests
//! never complete; the simulated [`Transport::sleep`] fires at once, so a download gives up on
//! it as soon as it has k shares).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use lafs_proto::storage::{
    AllocateRequest, AllocateResponse, Capacity, ErrorCode, FinishRequest, FinishResponse, Limits,
    PutShareResponse, ShareInfo, VersionResponse, WriteResponse, PROTOCOL,
};
use lafs_proto::{ReadRequest, ShareNum, StorageIndex, UploadId};

use crate::transport::{Payload, ReadPiece, Transport, TransportError};
use crate::ServerId;

mod mutable;

/// Behaviour switches of one simulated server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Knobs {
    /// Every request fails with [`TransportError::Unreachable`].
    pub dead: bool,
    /// Refuses uploads (announces `read_only`, allocation answers 403).
    pub read_only: bool,
    /// No free space (announces 0 bytes available, allocation answers 507).
    pub full: bool,
    /// Dies (becomes `dead`) after answering this many requests.
    pub fail_after: Option<u64>,
    /// Flips one byte of every range it returns.
    pub lying: bool,
    /// Never answers (every request stays pending forever).
    pub hang: bool,
    /// Does not know the whole-share request (answers 405, like an older server).
    pub no_put_share: bool,
}

/// Requests a simulated server has answered, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// `version` requests.
    pub version: u64,
    /// `list_shares` requests.
    pub list: u64,
    /// Multi-range reads.
    pub read: u64,
    /// Allocations.
    pub allocate: u64,
    /// Writes.
    pub write: u64,
    /// Share bytes written.
    pub write_bytes: u64,
    /// Finishes.
    pub finish: u64,
    /// Whole-share uploads (`put_share`).
    pub put_share: u64,
    /// Aborts.
    pub abort: u64,
    /// Corruption advisories.
    pub advisory: u64,
}

/// A corruption advisory as recorded by a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advisory {
    /// Storage index.
    pub storage_index: StorageIndex,
    /// Share number.
    pub share: u16,
    /// The reporter's reason.
    pub reason: String,
}

#[derive(Default)]
struct Receiving {
    data: Vec<u8>,
    /// Received ranges, merged, ascending.
    ranges: Vec<(u64, u64)>,
}

struct UploadSession {
    share_size: Option<u64>,
    shares: BTreeMap<u16, Receiving>,
}

struct State {
    knobs: Knobs,
    counters: Counters,
    requests: u64,
    shares: BTreeMap<(StorageIndex, u16), Vec<u8>>,
    mutable: BTreeMap<(StorageIndex, u16), Vec<u8>>,
    uploads: BTreeMap<UploadId, UploadSession>,
    advisories: Vec<Advisory>,
    rng: fastrand::Rng,
}

/// One simulated storage server.
pub struct SimServer {
    id: ServerId,
    state: Mutex<State>,
}

/// Largest write body a simulated server accepts.
pub const SIM_MAX_WRITE: u64 = 4 << 20;

impl SimServer {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a request and applies `dead` / `fail_after`.
    fn enter(&self) -> Result<MutexGuard<'_, State>, TransportError> {
        let mut st = self.lock();
        if st.knobs.hang {
            return Err(TransportError::Timeout);
        }
        if st.knobs.dead {
            return Err(TransportError::Unreachable(
                "simulated server is down".into(),
            ));
        }
        st.requests += 1;
        if st.knobs.fail_after.is_some_and(|n| st.requests > n) {
            st.knobs.dead = true;
            return Err(TransportError::Unreachable("simulated server died".into()));
        }
        Ok(st)
    }

    /// The server's identity.
    pub fn id(&self) -> ServerId {
        self.id
    }
}

fn status(status: u16, code: ErrorCode, message: impl Into<String>) -> TransportError {
    TransportError::Status {
        status,
        code,
        message: message.into(),
    }
}

fn insert_range(ranges: &mut Vec<(u64, u64)>, start: u64, end: u64) {
    ranges.push((start, end));
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for &(a, b) in ranges.iter() {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    *ranges = merged;
}

/// The simulated grid: N servers with ids drawn from the seed.
pub struct SimGrid {
    servers: Vec<SimServer>,
}

impl SimGrid {
    /// `n` healthy servers; `seed` fixes their ids and every random choice.
    pub fn new(n: usize, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let servers = (0..n)
            .map(|i| {
                let mut id = [0u8; 32];
                rng.fill(&mut id);
                SimServer {
                    id: ServerId(id),
                    state: Mutex::new(State {
                        knobs: Knobs::default(),
                        counters: Counters::default(),
                        requests: 0,
                        shares: BTreeMap::new(),
                        mutable: BTreeMap::new(),
                        uploads: BTreeMap::new(),
                        advisories: Vec::new(),
                        rng: fastrand::Rng::with_seed(seed ^ (i as u64 + 1)),
                    }),
                }
            })
            .collect();
        Self { servers }
    }

    /// Number of servers.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// True if the grid has no server.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Server `i`.
    pub fn server(&self, i: usize) -> &SimServer {
        &self.servers[i]
    }

    /// Index of the server with identity `id`.
    pub fn index_of(&self, id: ServerId) -> Option<usize> {
        self.servers.iter().position(|s| s.id == id)
    }

    /// Changes server `i`'s knobs.
    pub fn set_knobs(&self, i: usize, f: impl FnOnce(&mut Knobs)) {
        f(&mut self.servers[i].lock().knobs);
    }

    /// Server `i`'s request counters.
    pub fn counters(&self, i: usize) -> Counters {
        self.servers[i].lock().counters.clone()
    }

    /// Sum of every server's counters.
    pub fn total(&self) -> Counters {
        let mut t = Counters::default();
        for s in &self.servers {
            let c = s.lock().counters.clone();
            t.version += c.version;
            t.list += c.list;
            t.read += c.read;
            t.allocate += c.allocate;
            t.write += c.write;
            t.write_bytes += c.write_bytes;
            t.finish += c.finish;
            t.put_share += c.put_share;
            t.abort += c.abort;
            t.advisory += c.advisory;
        }
        t
    }

    /// Resets every server's counters.
    pub fn reset_counters(&self) {
        for s in &self.servers {
            s.lock().counters = Counters::default();
        }
    }

    /// Advisories received by server `i`.
    pub fn advisories(&self, i: usize) -> Vec<Advisory> {
        self.servers[i].lock().advisories.clone()
    }

    /// Every finished share of `si`: (server index, share number, length).
    pub fn shares_of(&self, si: &StorageIndex) -> Vec<(usize, u16, u64)> {
        let mut out = Vec::new();
        for (i, s) in self.servers.iter().enumerate() {
            for ((ssi, sh), data) in s.lock().shares.iter() {
                if ssi == si {
                    out.push((i, *sh, data.len() as u64));
                }
            }
        }
        out
    }

    /// Flips byte `offset` of share `share` of `si` on server `i`. Returns false if absent.
    pub fn corrupt(&self, i: usize, si: &StorageIndex, share: u16, offset: u64) -> bool {
        let mut st = self.servers[i].lock();
        match st
            .shares
            .get_mut(&(*si, share))
            .and_then(|d| d.get_mut(offset as usize))
        {
            Some(b) => {
                *b ^= 0x55;
                true
            }
            None => false,
        }
    }

    /// Deletes share `share` of `si` from server `i`.
    pub fn remove_share(&self, i: usize, si: &StorageIndex, share: u16) -> bool {
        self.servers[i]
            .lock()
            .shares
            .remove(&(*si, share))
            .is_some()
    }

    fn find(&self, id: ServerId) -> Result<&SimServer, TransportError> {
        self.servers
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| TransportError::Unreachable("unknown server".into()))
    }

    /// Stays pending forever if the server hangs.
    async fn gate(&self, id: ServerId) {
        let hang = self.find(id).is_ok_and(|s| s.lock().knobs.hang);
        if hang {
            futures::future::pending::<()>().await;
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl Transport for SimGrid {
    fn servers(&self) -> Vec<ServerId> {
        self.servers.iter().map(|s| s.id).collect()
    }

    /// Simulated time does not pass: the timer fires at once, so a hanging server is given up
    /// as soon as nothing else is ready.
    fn sleep(&self, _duration: core::time::Duration) -> crate::BoxFut<()> {
        Box::pin(futures::future::ready(()))
    }

    async fn mutable_list(
        &self,
        server: ServerId,
        si: StorageIndex,
    ) -> Result<Vec<ShareInfo>, TransportError> {
        self.find(server)?.mutable_list(si)
    }

    async fn mutable_read(
        &self,
        server: ServerId,
        si: StorageIndex,
        req: ReadRequest,
    ) -> Result<Vec<ReadPiece>, TransportError> {
        self.find(server)?.mutable_read(si, &req)
    }

    async fn mutable_write(
        &self,
        server: ServerId,
        si: StorageIndex,
        writes: Vec<lafs_proto::mutable::WireWrite>,
    ) -> Result<lafs_proto::mutable::MutableWriteResponse, TransportError> {
        self.find(server)?.mutable_write(si, writes)
    }

    async fn version(&self, server: ServerId) -> Result<VersionResponse, TransportError> {
        self.gate(server).await;
        let mut st = self.find(server)?.enter()?;
        st.counters.version += 1;
        let available = if st.knobs.full { 0 } else { 1 << 40 };
        Ok(VersionResponse {
            protocol: PROTOCOL.into(),
            server_version: "sim".into(),
            server_id: server.to_string(),
            read_only: st.knobs.read_only,
            accepts_immutable: !st.knobs.read_only,
            accepts_mutable: !st.knobs.read_only,
            capacity: Capacity {
                total_bytes: 1 << 40,
                available_bytes: available,
            },
            limits: Limits {
                max_request_body: SIM_MAX_WRITE,
                max_share_size: 1 << 40,
                max_read_ranges: 256,
                max_read_bytes: 16 << 20,
                upload_ttl_secs: 3600,
                max_clock_skew_secs: 300,
            },
        })
    }

    async fn list_shares(
        &self,
        server: ServerId,
        si: StorageIndex,
    ) -> Result<Vec<ShareInfo>, TransportError> {
        self.gate(server).await;
        let mut st = self.find(server)?.enter()?;
        st.counters.list += 1;
        Ok(st
            .shares
            .iter()
            .filter(|((s, _), _)| *s == si)
            .map(|((_, sh), d)| ShareInfo {
                share: ShareNum(u8::try_from(*sh).unwrap_or(u8::MAX)),
                length: d.len() as u64,
            })
            .collect())
    }

    async fn read(
        &self,
        server: ServerId,
        si: StorageIndex,
        req: ReadRequest,
    ) -> Result<Vec<ReadPiece>, TransportError> {
        self.gate(server).await;
        let mut st = self.find(server)?.enter()?;
        st.counters.read += 1;
        let st = &mut *st;
        let mut out = Vec::new();
        for r in &req.reads {
            let share = u16::from(r.share.0);
            for range in &r.ranges {
                let Some(data) = st.shares.get(&(si, share)) else {
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
                let mut bytes = data[off as usize..(off + n) as usize].to_vec();
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

    async fn allocate(
        &self,
        server: ServerId,
        upload: UploadId,
        req: AllocateRequest,
    ) -> Result<AllocateResponse, TransportError> {
        self.gate(server).await;
        let mut st = self.find(server)?.enter()?;
        st.counters.allocate += 1;
        if st.knobs.read_only {
            return Err(status(403, ErrorCode::ReadOnly, "read-only"));
        }
        if st.knobs.full {
            return Err(status(507, ErrorCode::InsufficientStorage, "full"));
        }
        if st.uploads.contains_key(&upload) {
            return Err(status(409, ErrorCode::Conflict, "upload id is in use"));
        }
        let mut allocated = Vec::new();
        let mut already_have = Vec::new();
        for s in &req.shares {
            let held = req
                .expected_si
                .is_some_and(|si| st.shares.contains_key(&(si, u16::from(s.0))));
            if held {
                already_have.push(*s);
            } else {
                allocated.push(*s);
            }
        }
        if !allocated.is_empty() {
            st.uploads.insert(
                upload,
                UploadSession {
                    share_size: req.share_size,
                    shares: allocated
                        .iter()
                        .map(|s| (u16::from(s.0), Receiving::default()))
                        .collect(),
                },
            );
        }
        Ok(AllocateResponse {
            upload_id: upload,
            allocated,
            already_have,
            expires_in_secs: 3600,
        })
    }

    async fn write(
        &self,
        server: ServerId,
        upload: UploadId,
        share: ShareNum,
        offset: u64,
        data: Payload,
    ) -> Result<WriteResponse, TransportError> {
        let data = data.to_bytes();
        self.gate(server).await;
        let mut st = self.find(server)?.enter()?;
        st.counters.write += 1;
        st.counters.write_bytes += data.len() as u64;
        if data.len() as u64 > SIM_MAX_WRITE {
            return Err(status(413, ErrorCode::PayloadTooLarge, "write too large"));
        }
        let session = st
            .uploads
            .get_mut(&upload)
            .ok_or_else(|| status(404, ErrorCode::NotFound, "no such upload"))?;
        let limit = session.share_size.unwrap_or(u64::MAX);
        let r = session
            .shares
            .get_mut(&u16::from(share.0))
            .ok_or_else(|| status(404, ErrorCode::NotFound, "share not allocated"))?;
        let end = offset + data.len() as u64;
        if end > limit {
            return Err(status(
                416,
                ErrorCode::RangeNotSatisfiable,
                "past share size",
            ));
        }
        if r.data.len() < end as usize {
            r.data.resize(end as usize, 0);
        }
        r.data[offset as usize..end as usize].copy_from_slice(&data);
        insert_range(&mut r.ranges, offset, end);
        let received = r.ranges.iter().map(|(a, b)| b - a).sum();
        Ok(WriteResponse {
            share,
            received_bytes: received,
        })
    }

    async fn finish(
        &self,
        server: ServerId,
        upload: UploadId,
        share: ShareNum,
        req: FinishRequest,
    ) -> Result<FinishResponse, TransportError> {
        self.gate(server).await;
        let mut st = self.find(server)?.enter()?;
        st.counters.finish += 1;
        let sh = u16::from(share.0);
        let session = st
            .uploads
            .get_mut(&upload)
            .ok_or_else(|| status(404, ErrorCode::NotFound, "no such upload"))?;
        let r = session
            .shares
            .get(&sh)
            .ok_or_else(|| status(404, ErrorCode::NotFound, "share not allocated"))?;
        if r.ranges != [(0, req.length)] && !(req.length == 0 && r.ranges.is_empty()) {
            return Err(status(409, ErrorCode::Conflict, "share incomplete"));
        }
        let si = lafs_codec::verify_share(sh, &r.data, req.expected_si)
            .map_err(|e| status(422, ErrorCode::ShareInvalid, e.to_string()))?
            .storage_index;
        let data = session
            .shares
            .remove(&sh)
            .map(|r| r.data)
            .unwrap_or_default();
        let complete = session.shares.is_empty();
        if complete {
            st.uploads.remove(&upload);
        }
        let already_had = st.shares.contains_key(&(si, sh));
        if !already_had {
            st.shares.insert((si, sh), data);
        }
        Ok(FinishResponse {
            share,
            storage_index: si,
            length: req.length,
            already_had,
            upload_complete: complete,
        })
    }

    async fn put_share(
        &self,
        server: ServerId,
        si: StorageIndex,
        share: ShareNum,
        data: Payload,
    ) -> Result<PutShareResponse, TransportError> {
        let data = data.to_bytes();
        self.gate(server).await;
        let mut st = self.find(server)?.enter()?;
        st.counters.put_share += 1;
        if st.knobs.no_put_share {
            return Err(status(
                405,
                ErrorCode::MethodNotAllowed,
                "method not allowed",
            ));
        }
        if st.knobs.read_only {
            return Err(status(403, ErrorCode::ReadOnly, "read-only"));
        }
        if data.len() as u64 > SIM_MAX_WRITE {
            return Err(status(413, ErrorCode::PayloadTooLarge, "share too large"));
        }
        let sh = u16::from(share.0);
        let already_had = st.shares.contains_key(&(si, sh));
        if !already_had {
            if st.knobs.full {
                return Err(status(507, ErrorCode::InsufficientStorage, "full"));
            }
            lafs_codec::verify_share(sh, &data, Some(si))
                .map_err(|e| status(422, ErrorCode::ShareInvalid, e.to_string()))?;
            st.counters.write_bytes += data.len() as u64;
            st.shares.insert((si, sh), data.to_vec());
        }
        let held = st
            .shares
            .iter()
            .filter(|((s, _), _)| *s == si)
            .map(|((_, sh), d)| ShareInfo {
                share: ShareNum(u8::try_from(*sh).unwrap_or(u8::MAX)),
                length: d.len() as u64,
            })
            .collect();
        Ok(PutShareResponse {
            share,
            storage_index: si,
            length: data.len() as u64,
            already_had,
            held,
        })
    }

    async fn abort(&self, server: ServerId, upload: UploadId) -> Result<(), TransportError> {
        self.gate(server).await;
        let mut st = self.find(server)?.enter()?;
        st.counters.abort += 1;
        st.uploads.remove(&upload);
        Ok(())
    }

    async fn advise_corrupt(
        &self,
        server: ServerId,
        si: StorageIndex,
        share: ShareNum,
        reason: String,
    ) -> Result<(), TransportError> {
        self.gate(server).await;
        let mut st = self.find(server)?.enter()?;
        st.counters.advisory += 1;
        st.advisories.push(Advisory {
            storage_index: si,
            share: u16::from(share.0),
            reason,
        });
        Ok(())
    }
}
