//! An in-memory share store: for tests and throw-away servers.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use lafs_proto::storage::ShareInfo;
use lafs_proto::{ShareNum, StorageIndex, UploadId};

use super::{random_server_id, Advisory, ShareStore, Space, StoreError, StoredUpload, UploadMeta};
use crate::ranges::RangeSet;

/// Share store in memory, with an optional capacity so "disk full" can be tested.
///
/// Everything that returned `Ok` "survives" as long as the value lives; cloning the state with
/// [`MemoryStore::snapshot`] models a restart.
#[derive(Debug)]
pub struct MemoryStore {
    server_id: String,
    capacity: u64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Clone, Default)]
struct Inner {
    uploads: BTreeMap<UploadId, MemUpload>,
    shares: BTreeMap<(StorageIndex, ShareNum), Vec<u8>>,
    advisories: Vec<Advisory>,
    used: u64,
}

#[derive(Debug, Clone)]
struct MemUpload {
    meta: UploadMeta,
    data: BTreeMap<ShareNum, Vec<u8>>,
    received: BTreeMap<ShareNum, RangeSet>,
    finished: BTreeMap<ShareNum, (StorageIndex, u64)>,
}

impl MemoryStore {
    /// An empty store that accepts at most `capacity` bytes of share data (incoming + finished).
    pub fn new(capacity: u64) -> Self {
        let server_id = random_server_id().unwrap_or_else(|_| "memory-store".to_owned());
        Self {
            server_id,
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// A copy of the store with the same contents (models a restart of the process).
    pub fn snapshot(&self) -> Self {
        let inner = self.lock().clone();
        Self {
            server_id: self.server_id.clone(),
            capacity: self.capacity,
            inner: Mutex::new(inner),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-updated in a way that breaks
        // memory safety; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn slice_at(data: &[u8], offset: u64, len: u64) -> Vec<u8> {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(data.len());
    let end = usize::try_from(offset.saturating_add(len))
        .unwrap_or(usize::MAX)
        .min(data.len());
    data[start..end].to_vec()
}

impl ShareStore for MemoryStore {
    fn server_id(&self) -> String {
        self.server_id.clone()
    }

    fn create_upload(&self, id: UploadId, meta: &UploadMeta) -> Result<(), StoreError> {
        let mut g = self.lock();
        if g.uploads.contains_key(&id) {
            return Err(StoreError::AlreadyExists);
        }
        g.uploads.insert(
            id,
            MemUpload {
                meta: meta.clone(),
                data: BTreeMap::new(),
                received: meta.shares.iter().map(|&s| (s, RangeSet::new())).collect(),
                finished: BTreeMap::new(),
            },
        );
        Ok(())
    }

    fn write_incoming(
        &self,
        id: UploadId,
        share: ShareNum,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StoreError> {
        let mut g = self.lock();
        let capacity = self.capacity;
        let used = g.used;
        let up = g.uploads.get_mut(&id).ok_or(StoreError::NotFound)?;
        let buf = up.data.entry(share).or_default();
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(StoreError::Full)?;
        let growth = end.saturating_sub(buf.len() as u64);
        if used.saturating_add(growth) > capacity {
            return Err(StoreError::Full);
        }
        let end_usize = usize::try_from(end).map_err(|_| StoreError::Full)?;
        if buf.len() < end_usize {
            buf.resize(end_usize, 0);
        }
        let start = end_usize - data.len();
        buf[start..end_usize].copy_from_slice(data);
        up.received.entry(share).or_default().insert(offset, end);
        g.used += growth;
        Ok(())
    }

    fn read_incoming(
        &self,
        id: UploadId,
        share: ShareNum,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let g = self.lock();
        let up = g.uploads.get(&id).ok_or(StoreError::NotFound)?;
        let data = up.data.get(&share).ok_or(StoreError::NotFound)?;
        Ok(slice_at(data, offset, len))
    }

    fn commit_share(
        &self,
        id: UploadId,
        share: ShareNum,
        si: &StorageIndex,
        len: u64,
    ) -> Result<bool, StoreError> {
        let mut g = self.lock();
        let up = g.uploads.get_mut(&id).ok_or(StoreError::NotFound)?;
        let mut data = up.data.remove(&share).ok_or(StoreError::NotFound)?;
        let old_len = data.len() as u64;
        data.truncate(usize::try_from(len).unwrap_or(usize::MAX));
        data.resize(usize::try_from(len).unwrap_or(usize::MAX), 0);
        up.received.remove(&share);
        up.finished.insert(share, (*si, len));
        g.used = g.used.saturating_sub(old_len);
        if g.shares.contains_key(&(*si, share)) {
            return Ok(false);
        }
        g.used += len;
        g.shares.insert((*si, share), data);
        Ok(true)
    }

    fn store_share(
        &self,
        si: &StorageIndex,
        share: ShareNum,
        data: &[u8],
    ) -> Result<bool, StoreError> {
        let mut g = self.lock();
        if g.shares.contains_key(&(*si, share)) {
            return Ok(false);
        }
        let len = data.len() as u64;
        if g.used.saturating_add(len) > self.capacity {
            return Err(StoreError::Full);
        }
        g.used += len;
        g.shares.insert((*si, share), data.to_vec());
        Ok(true)
    }

    fn remove_upload(&self, id: UploadId) -> Result<(), StoreError> {
        let mut g = self.lock();
        let up = g.uploads.remove(&id).ok_or(StoreError::NotFound)?;
        let freed: u64 = up.data.values().map(|d| d.len() as u64).sum();
        g.used = g.used.saturating_sub(freed);
        Ok(())
    }

    fn load_uploads(&self) -> Result<Vec<StoredUpload>, StoreError> {
        let g = self.lock();
        Ok(g.uploads
            .iter()
            .map(|(&id, u)| StoredUpload {
                id,
                meta: u.meta.clone(),
                received: u.received.clone(),
                finished: u.finished.clone(),
            })
            .collect())
    }

    fn list_shares(&self, si: &StorageIndex) -> Result<Vec<ShareInfo>, StoreError> {
        let g = self.lock();
        Ok(g.shares
            .range((*si, ShareNum(0))..=(*si, ShareNum(u8::MAX)))
            .map(|(&(_, share), d)| ShareInfo {
                share,
                length: d.len() as u64,
            })
            .collect())
    }

    fn read_share(
        &self,
        si: &StorageIndex,
        share: ShareNum,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let g = self.lock();
        let data = g.shares.get(&(*si, share)).ok_or(StoreError::NotFound)?;
        Ok(slice_at(data, offset, len))
    }

    fn space(&self) -> Result<Space, StoreError> {
        let g = self.lock();
        Ok(Space {
            total: self.capacity,
            available: self.capacity.saturating_sub(g.used),
        })
    }

    fn record_advisory(&self, advisory: &Advisory) -> Result<(), StoreError> {
        self.lock().advisories.push(advisory.clone());
        Ok(())
    }

    fn advisories(&self) -> Result<Vec<Advisory>, StoreError> {
        Ok(self.lock().advisories.clone())
    }

    fn share_count(&self) -> Result<u64, StoreError> {
        Ok(self.lock().shares.len() as u64)
    }
}
