//! Upload sessions: who owns an upload, what each share has received, what is being finished.
//!
//! This is in-memory bookkeeping over the store's persistent state (rebuilt from
//! [`ShareStore::load_uploads`](crate::store::ShareStore::load_uploads) at start-up). Critical
//! sections are short and never do IO. Writes and finishes are bracketed by tickets so a share
//! is never verified while a write to it is in flight, and so that an abandoned request (client
//! gone) still releases its share: the ticket is released by the blocking task, which runs to
//! completion even if the HTTP handler is dropped.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use lafs_codec::IncomingShareHasher;
use lafs_proto::storage::{ByteRange, ErrorCode, ShareState, ShareStatus, UploadStatus};
use lafs_proto::{AccountId, ShareNum, StorageIndex, UploadId};
use tokio::time::Instant;

use crate::error::ApiError;
use crate::ranges::RangeSet;
use crate::store::{StoredUpload, UploadMeta};

/// All upload sessions of a server.
#[derive(Debug)]
pub(crate) struct Uploads {
    ttl: Duration,
    map: Mutex<HashMap<UploadId, Session>>,
}

#[derive(Debug)]
struct Session {
    meta: UploadMeta,
    shares: BTreeMap<ShareNum, ShareSession>,
    last_activity: Instant,
}

#[derive(Debug, Default)]
struct ShareSession {
    received: RangeSet,
    state: State,
    in_flight: u32,
    /// Header and block hashes of the bytes written so far in order, updated by each write
    /// under this lock together with the store write itself; taken by the finish.
    hasher: Arc<Mutex<IncomingHash>>,
}

/// Bytes held by all [`IncomingHash`]es of this process as writes that arrived ahead of the
/// hashed prefix.
static AHEAD_BYTES: AtomicU64 = AtomicU64::new(0);
/// At most this much is held per share ...
const MAX_AHEAD_PER_SHARE: u64 = 8 << 20;
/// ... and in all (beyond it, such writes are read back at finish instead).
const MAX_AHEAD_TOTAL: u64 = 64 << 20;

/// The hashing of one incoming share as its writes are stored: the codec's
/// [`IncomingShareHasher`] over the prefix written in order, plus the writes that arrived
/// *ahead* of that prefix (concurrent requests overtake each other), held as their request
/// bodies (no copy) until the gap before them is written, then hashed. A write overlapping a
/// held one drops the held ones; memory is bounded per share and per process, and what is not
/// hashed is read back at finish.
#[derive(Debug, Default)]
pub(crate) struct IncomingHash {
    hasher: IncomingShareHasher,
    ahead: BTreeMap<u64, Bytes>,
    ahead_bytes: u64,
}

impl IncomingHash {
    /// Records that `data` was just stored at `offset` (call under the share's lock, held
    /// across the store write).
    pub(crate) fn stored(&mut self, offset: u64, data: &Bytes) {
        let len = data.len() as u64;
        let end = offset.saturating_add(len);
        // Held writes are disjoint and sorted: the last one starting before `end` is the only
        // one that can overlap without an earlier one overlapping too.
        if self
            .ahead
            .range(..end)
            .next_back()
            .is_some_and(|(o, d)| o + d.len() as u64 > offset)
        {
            self.clear_ahead();
        }
        if offset < self.hasher.absorbed() {
            // Hashed bytes written again.
            self.hasher.reset();
        }
        if offset == self.hasher.absorbed() {
            self.hasher.write(offset, data);
            while let Some(next) = self.ahead.remove(&self.hasher.absorbed()) {
                self.release(next.len() as u64);
                self.hasher.write(self.hasher.absorbed(), &next);
            }
        } else if offset > self.hasher.absorbed() && self.ahead_bytes + len <= MAX_AHEAD_PER_SHARE {
            if AHEAD_BYTES.fetch_add(len, Ordering::Relaxed) + len <= MAX_AHEAD_TOTAL {
                self.ahead_bytes += len;
                self.ahead.insert(offset, data.clone());
            } else {
                AHEAD_BYTES.fetch_sub(len, Ordering::Relaxed);
            }
        }
    }

    /// A write failed (its bytes may be partly stored): forget everything.
    pub(crate) fn failed(&mut self) {
        self.hasher.reset();
        self.clear_ahead();
    }

    /// The hashes for the finish (held writes are dropped; the finish reads them back).
    pub(crate) fn take(&mut self) -> IncomingShareHasher {
        self.clear_ahead();
        core::mem::take(&mut self.hasher)
    }

    fn release(&mut self, n: u64) {
        self.ahead_bytes -= n;
        AHEAD_BYTES.fetch_sub(n, Ordering::Relaxed);
    }

    fn clear_ahead(&mut self) {
        AHEAD_BYTES.fetch_sub(self.ahead_bytes, Ordering::Relaxed);
        self.ahead_bytes = 0;
        self.ahead.clear();
    }
}

impl Drop for IncomingHash {
    fn drop(&mut self) {
        self.clear_ahead();
    }
}

/// Locks a share's hashing. After a panic while it was held, its state may not describe the
/// stored bytes: it is reset (the finish then reads the whole share back).
pub(crate) fn lock_hasher(m: &Mutex<IncomingHash>) -> MutexGuard<'_, IncomingHash> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => {
            let mut g = poisoned.into_inner();
            g.failed();
            m.clear_poison();
            g
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Receiving,
    Finishing,
    Finished(StorageIndex, u64),
}

impl Session {
    fn busy(&self) -> bool {
        self.shares
            .values()
            .any(|s| s.in_flight > 0 || s.state == State::Finishing)
    }
}

/// Permission to write one range; release it with [`Uploads::end_write`].
#[derive(Debug)]
pub(crate) struct WriteTicket {
    uploads: Arc<Uploads>,
    id: UploadId,
    share: ShareNum,
    start: u64,
    end: u64,
    released: bool,
    /// The share's hasher: hold it (with [`lock_hasher`]) across the store write and feed it
    /// the bytes once stored; release it before [`end`](Self::end).
    pub(crate) hasher: Arc<Mutex<IncomingHash>>,
}

impl Drop for WriteTicket {
    fn drop(&mut self) {
        if !self.released {
            self.uploads.release(self.id, self.share, None);
        }
    }
}

impl WriteTicket {
    /// Releases the ticket, recording the range if the write succeeded; returns the number of
    /// bytes of the share now held.
    pub(crate) fn end(mut self, ok: bool) -> u64 {
        self.released = true;
        let range = ok.then_some((self.start, self.end));
        self.uploads.release(self.id, self.share, range)
    }
}

fn owner_check(s: &Session, account: &AccountId) -> Result<(), ApiError> {
    if s.meta.owner != *account {
        return Err(ApiError::forbidden(
            "this upload belongs to another account",
        ));
    }
    Ok(())
}

impl Uploads {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<UploadId, Session>> {
        // Sessions are plain data updated in single statements; a poisoned lock still holds a
        // consistent map.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expired(&self, s: &Session, now: Instant) -> bool {
        !s.busy() && now.saturating_duration_since(s.last_activity) > self.ttl
    }

    /// Restores sessions found in the store; their idle timers start now.
    pub(crate) fn restore(&self, stored: Vec<StoredUpload>, now: Instant) {
        let mut map = self.lock();
        for up in stored {
            let mut shares = BTreeMap::new();
            for &n in &up.meta.shares {
                let mut s = ShareSession::default();
                if let Some(&(si, len)) = up.finished.get(&n) {
                    s.state = State::Finished(si, len);
                } else if let Some(r) = up.received.get(&n) {
                    s.received = r.clone();
                }
                shares.insert(n, s);
            }
            map.insert(
                up.id,
                Session {
                    meta: up.meta,
                    shares,
                    last_activity: now,
                },
            );
        }
    }

    /// Number of sessions.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// The session's metadata if it exists and is not expired. An expired, idle session is
    /// removed and reported in the second value so the caller can delete its data.
    pub(crate) fn lookup(&self, id: UploadId, now: Instant) -> (Option<UploadMeta>, bool) {
        let mut map = self.lock();
        match map.get(&id) {
            Some(s) if self.expired(s, now) => {
                map.remove(&id);
                (None, true)
            }
            Some(s) => (Some(s.meta.clone()), false),
            None => (None, false),
        }
    }

    /// Seconds left before the session expires.
    pub(crate) fn expires_in(&self, id: UploadId, now: Instant) -> u64 {
        let map = self.lock();
        map.get(&id)
            .map(|s| {
                self.ttl
                    .saturating_sub(now.saturating_duration_since(s.last_activity))
            })
            .unwrap_or(self.ttl)
            .as_secs()
    }

    /// Adds a new session (the store already created it).
    pub(crate) fn insert(&self, id: UploadId, meta: UploadMeta, now: Instant) {
        let shares = meta
            .shares
            .iter()
            .map(|&n| (n, ShareSession::default()))
            .collect();
        self.lock().insert(
            id,
            Session {
                meta,
                shares,
                last_activity: now,
            },
        );
    }

    fn session<'a>(
        &self,
        map: &'a mut HashMap<UploadId, Session>,
        id: UploadId,
        account: &AccountId,
        now: Instant,
    ) -> Result<&'a mut Session, ApiError> {
        let not_found =
            || ApiError::not_found(format!("no upload {id} (finished, aborted or expired)"));
        let s = map.get(&id).ok_or_else(not_found)?;
        if self.expired(s, now) {
            return Err(not_found());
        }
        owner_check(s, account)?;
        map.get_mut(&id).ok_or_else(not_found)
    }

    /// Status for the owner.
    pub(crate) fn status(
        &self,
        id: UploadId,
        account: &AccountId,
        now: Instant,
    ) -> Result<UploadStatus, ApiError> {
        let mut map = self.lock();
        let s = self.session(&mut map, id, account, now)?;
        let shares = s
            .shares
            .iter()
            .map(|(&share, sh)| match sh.state {
                State::Finished(si, len) => ShareStatus {
                    share,
                    state: ShareState::Finished,
                    received: vec![ByteRange { start: 0, end: len }],
                    missing: Some(Vec::new()),
                    storage_index: Some(si),
                },
                State::Receiving | State::Finishing => ShareStatus {
                    share,
                    state: ShareState::Receiving,
                    received: sh.received.to_vec(),
                    missing: s.meta.share_size.map(|n| sh.received.missing(n)),
                    storage_index: None,
                },
            })
            .collect();
        let left = self
            .ttl
            .saturating_sub(now.saturating_duration_since(s.last_activity));
        Ok(UploadStatus {
            upload_id: id,
            share_size: s.meta.share_size,
            shares,
            expires_in_secs: left.as_secs(),
        })
    }

    /// Checks a write of `start..end` to `share` and takes a ticket for it.
    pub(crate) fn begin_write(
        self: &Arc<Self>,
        id: UploadId,
        account: &AccountId,
        share: ShareNum,
        range: std::ops::Range<u64>,
        max_share_size: u64,
        now: Instant,
    ) -> Result<WriteTicket, ApiError> {
        let (start, end) = (range.start, range.end);
        let mut map = self.lock();
        let s = self.session(&mut map, id, account, now)?;
        let limit = s
            .meta
            .share_size
            .unwrap_or(max_share_size)
            .min(max_share_size);
        if end > limit {
            return Err(ApiError::range(format!(
                "write of bytes {start}..{end} goes past the share size limit of {limit} bytes"
            )));
        }
        let sh = s.shares.get_mut(&share).ok_or_else(|| {
            ApiError::not_found(format!("share {share} is not allocated in upload {id}"))
        })?;
        match sh.state {
            State::Receiving => {}
            State::Finishing => {
                return Err(ApiError::conflict(format!(
                    "share {share} is being finished"
                )))
            }
            State::Finished(..) => {
                return Err(ApiError::conflict(format!(
                    "share {share} is already finished"
                )))
            }
        }
        sh.in_flight += 1;
        s.last_activity = now;
        Ok(WriteTicket {
            uploads: Arc::clone(self),
            id,
            share,
            start,
            end,
            released: false,
            hasher: Arc::clone(&sh.hasher),
        })
    }

    fn release(&self, id: UploadId, share: ShareNum, range: Option<(u64, u64)>) -> u64 {
        let mut map = self.lock();
        let Some(s) = map.get_mut(&id) else { return 0 };
        s.last_activity = Instant::now();
        let Some(sh) = s.shares.get_mut(&share) else {
            return 0;
        };
        sh.in_flight = sh.in_flight.saturating_sub(1);
        if let Some((a, b)) = range {
            sh.received.insert(a, b);
        }
        sh.received.len()
    }

    /// Checks that `share` holds exactly `0..length` and marks it as being finished. Returns
    /// (and takes) the hashes computed as its bytes arrived: if the finish fails, later writes
    /// and finishes start from nothing.
    pub(crate) fn begin_finish(
        &self,
        id: UploadId,
        account: &AccountId,
        share: ShareNum,
        length: u64,
        now: Instant,
    ) -> Result<IncomingShareHasher, ApiError> {
        let mut map = self.lock();
        let s = self.session(&mut map, id, account, now)?;
        if let Some(size) = s.meta.share_size {
            if length > size {
                return Err(ApiError::bad_request(format!(
                    "length {length} exceeds the declared share size {size}"
                )));
            }
        }
        let sh = s.shares.get_mut(&share).ok_or_else(|| {
            ApiError::not_found(format!("share {share} is not allocated in upload {id}"))
        })?;
        match sh.state {
            State::Receiving => {}
            State::Finishing => {
                return Err(ApiError::conflict(format!(
                    "share {share} is being finished"
                )))
            }
            State::Finished(..) => {
                return Err(ApiError::conflict(format!(
                    "share {share} is already finished"
                )))
            }
        }
        if sh.in_flight > 0 {
            return Err(ApiError::conflict(format!(
                "writes to share {share} are still in flight"
            )));
        }
        if sh.received.end() > length {
            return Err(ApiError::conflict(format!(
                "share {share} holds bytes up to {} but length is {length}",
                sh.received.end()
            )));
        }
        if !sh.received.is_exactly(length) {
            let missing = sh.received.missing(length);
            let first = missing
                .first()
                .map(|r| format!(" (first gap {}..{})", r.start, r.end));
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
                format!(
                    "share {share} is incomplete: {} byte range(s) of 0..{length} missing{}",
                    missing.len(),
                    first.unwrap_or_default()
                ),
            ));
        }
        sh.state = State::Finishing;
        s.last_activity = now;
        // No write is in flight (checked above) and none can start while finishing, so no one
        // else holds this lock.
        let hashed = lock_hasher(&sh.hasher).take();
        Ok(hashed)
    }

    /// Ends a finish: on success the share is finished (`Some`), otherwise back to receiving.
    /// Returns whether every share of the upload is now finished (the session is then removed).
    pub(crate) fn end_finish(
        &self,
        id: UploadId,
        share: ShareNum,
        result: Option<(StorageIndex, u64)>,
    ) -> bool {
        let mut map = self.lock();
        let Some(s) = map.get_mut(&id) else {
            return false;
        };
        s.last_activity = Instant::now();
        if let Some(sh) = s.shares.get_mut(&share) {
            sh.state = match result {
                Some((si, len)) => State::Finished(si, len),
                None => State::Receiving,
            };
        }
        let complete = s
            .shares
            .values()
            .all(|sh| matches!(sh.state, State::Finished(..)));
        if complete {
            map.remove(&id);
        }
        complete
    }

    /// Removes a session for its owner, unless a write or finish is in progress.
    pub(crate) fn abort(
        &self,
        id: UploadId,
        account: &AccountId,
        now: Instant,
    ) -> Result<(), ApiError> {
        let mut map = self.lock();
        let s = self.session(&mut map, id, account, now)?;
        if s.busy() {
            return Err(ApiError::conflict(
                "a write or finish of this upload is in progress",
            ));
        }
        map.remove(&id);
        Ok(())
    }

    /// Removes every idle session older than the TTL and returns their ids.
    pub(crate) fn expire(&self, now: Instant) -> Vec<UploadId> {
        let mut map = self.lock();
        let ids: Vec<UploadId> = map
            .iter()
            .filter(|(_, s)| self.expired(s, now))
            .map(|(&id, _)| id)
            .collect();
        for id in &ids {
            map.remove(id);
        }
        ids
    }
}
