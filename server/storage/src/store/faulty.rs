//! A store wrapper that fails on command: simulated crashes and full disks for tests.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use lafs_proto::storage::ShareInfo;
use lafs_proto::{ShareNum, StorageIndex, UploadId};

use super::{Advisory, ShareStore, Space, StoreError, StoredUpload, UploadMeta};

/// When a [`FaultyStore`] fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// "Crash" at the n-th mutating operation (0-based): it fails, and so does every later
    /// operation, reads included, as if the process had died.
    pub crash_at_op: Option<u64>,
    /// When the crashing operation is a write, first write the first half of its data (a torn
    /// write) to the inner store.
    pub torn_write: bool,
}

/// Wraps a store and injects faults: a crash after a countdown of mutating operations
/// ([`FaultPlan`]), and a switchable "disk full" condition ([`FaultyStore::set_full`]).
#[derive(Debug)]
pub struct FaultyStore<S> {
    inner: S,
    plan: FaultPlan,
    ops: AtomicU64,
    crashed: AtomicBool,
    full: AtomicBool,
}

impl<S: ShareStore> FaultyStore<S> {
    /// Wraps `inner` with a fault plan.
    pub fn new(inner: S, plan: FaultPlan) -> Self {
        Self {
            inner,
            plan,
            ops: AtomicU64::new(0),
            crashed: AtomicBool::new(false),
            full: AtomicBool::new(false),
        }
    }

    /// The wrapped store (its state is what survives the simulated crash).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Makes every space-consuming operation fail with [`StoreError::Full`] (or stop doing so).
    pub fn set_full(&self, full: bool) {
        self.full.store(full, Ordering::SeqCst);
    }

    /// The simulated crash happened.
    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// Number of mutating operations attempted so far.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::SeqCst)
    }

    fn alive(&self) -> Result<(), StoreError> {
        if self.crashed() {
            Err(StoreError::Io("injected crash: store is dead".into()))
        } else {
            Ok(())
        }
    }

    /// Counts a mutating operation; `Ok(true)` if it is the one that crashes.
    fn mutate(&self, consumes_space: bool) -> Result<bool, StoreError> {
        self.alive()?;
        let n = self.ops.fetch_add(1, Ordering::SeqCst);
        if self.plan.crash_at_op == Some(n) {
            self.crashed.store(true, Ordering::SeqCst);
            return Ok(true);
        }
        if consumes_space && self.full.load(Ordering::SeqCst) {
            return Err(StoreError::Full);
        }
        Ok(false)
    }
}

fn crash() -> StoreError {
    StoreError::Io("injected crash".into())
}

impl<S: ShareStore> ShareStore for FaultyStore<S> {
    fn server_id(&self) -> String {
        self.inner.server_id()
    }

    fn create_upload(&self, id: UploadId, meta: &UploadMeta) -> Result<(), StoreError> {
        if self.mutate(true)? {
            return Err(crash());
        }
        self.inner.create_upload(id, meta)
    }

    fn write_incoming(
        &self,
        id: UploadId,
        share: ShareNum,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StoreError> {
        if self.mutate(true)? {
            if self.plan.torn_write && data.len() > 1 {
                let _ = self
                    .inner
                    .write_incoming(id, share, offset, &data[..data.len() / 2]);
            }
            return Err(crash());
        }
        self.inner.write_incoming(id, share, offset, data)
    }

    fn read_incoming(
        &self,
        id: UploadId,
        share: ShareNum,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        self.alive()?;
        self.inner.read_incoming(id, share, offset, len)
    }

    fn commit_share(
        &self,
        id: UploadId,
        share: ShareNum,
        si: &StorageIndex,
        len: u64,
    ) -> Result<bool, StoreError> {
        if self.mutate(true)? {
            return Err(crash());
        }
        self.inner.commit_share(id, share, si, len)
    }

    fn store_share(
        &self,
        si: &StorageIndex,
        share: ShareNum,
        data: &[u8],
    ) -> Result<bool, StoreError> {
        // A crash while filing a whole share leaves nothing visible (the real store writes a
        // temp file and renames it only after its fsync).
        if self.mutate(true)? {
            return Err(crash());
        }
        self.inner.store_share(si, share, data)
    }

    fn remove_upload(&self, id: UploadId) -> Result<(), StoreError> {
        if self.mutate(false)? {
            return Err(crash());
        }
        self.inner.remove_upload(id)
    }

    fn load_uploads(&self) -> Result<Vec<StoredUpload>, StoreError> {
        self.alive()?;
        self.inner.load_uploads()
    }

    fn list_shares(&self, si: &StorageIndex) -> Result<Vec<ShareInfo>, StoreError> {
        self.alive()?;
        self.inner.list_shares(si)
    }

    fn read_share(
        &self,
        si: &StorageIndex,
        share: ShareNum,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        self.alive()?;
        self.inner.read_share(si, share, offset, len)
    }

    fn space(&self) -> Result<Space, StoreError> {
        self.alive()?;
        let s = self.inner.space()?;
        if self.full.load(Ordering::SeqCst) {
            return Ok(Space {
                total: s.total,
                available: 0,
            });
        }
        Ok(s)
    }

    fn record_advisory(&self, advisory: &Advisory) -> Result<(), StoreError> {
        if self.mutate(false)? {
            return Err(crash());
        }
        self.inner.record_advisory(advisory)
    }

    fn advisories(&self) -> Result<Vec<Advisory>, StoreError> {
        self.alive()?;
        self.inner.advisories()
    }

    fn share_count(&self) -> Result<u64, StoreError> {
        self.alive()?;
        self.inner.share_count()
    }
}
