//! Mutable shares: where they live ([`MutableStore`]) and the per-storage-index write lock.
//!
//! Unlike immutable shares, a mutable share is replaced in place by each new version. Every
//! replacement is atomic (temp file, fsync, rename, directory fsync in [`FsMutableStore`]), so
//! a reader or a restart sees either the old or the new share, never a mix. Whether a
//! replacement is allowed (a validly signed share with a strictly higher sequence number) is
//! decided before, by `lafs_mutable::check_write`, while the storage index's lock is held, so
//! concurrent writes to one storage index are serialised.
//!
//! A server serves mutable shares only once a store is attached with
//! [`AppState::enable_mutable`](crate::AppState::enable_mutable); it accepts writes only if
//! [`Config::accepts_mutable`](crate::Config::accepts_mutable) is also set and it is not
//! read-only.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use lafs_proto::storage::ShareInfo;
use lafs_proto::{ShareNum, StorageIndex};

use crate::store::StoreError;

/// Storage of mutable shares, addressed by (storage index, share number). Methods block.
///
/// Guarantees: [`MutableStore::replace`] is atomic and durable once it returns `Ok`; readers
/// never see a partial share.
pub trait MutableStore: Send + Sync + 'static {
    /// Shares held for `si`, ascending.
    fn list(&self, si: &StorageIndex) -> Result<Vec<ShareInfo>, StoreError>;

    /// The whole share, or `None` if not held.
    fn read_whole(&self, si: &StorageIndex, share: ShareNum)
        -> Result<Option<Vec<u8>>, StoreError>;

    /// `len` bytes at `offset` (fewer only at the share's end).
    fn read(
        &self,
        si: &StorageIndex,
        share: ShareNum,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError>;

    /// Replaces (or creates) a share with `bytes`, atomically and durably.
    fn replace(&self, si: &StorageIndex, share: ShareNum, bytes: &[u8]) -> Result<(), StoreError>;
}

/// Mutable shares on disk: `<root>/<si[0..2]>/<si>/<n>`.
#[derive(Debug)]
pub struct FsMutableStore {
    root: PathBuf,
}

impl FsMutableStore {
    /// Opens (creating if needed) a mutable store in `root`. Leftover temp files of writes
    /// interrupted by a crash are ignored (and overwritten by the next write of that share).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    fn dir(&self, si: &StorageIndex) -> PathBuf {
        let text = lafs_proto::ids::storage_index_to_text(si);
        self.root.join(&text[..2]).join(text)
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl MutableStore for FsMutableStore {
    fn list(&self, si: &StorageIndex) -> Result<Vec<ShareInfo>, StoreError> {
        let entries = match fs::read_dir(self.dir(si)) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            // Only canonical share numbers count (temp files and strays are skipped).
            let Some(share) = name.to_str().and_then(|n| n.parse::<ShareNum>().ok()) else {
                continue;
            };
            out.push(ShareInfo {
                share,
                length: entry.metadata()?.len(),
            });
        }
        out.sort_by_key(|s| s.share);
        Ok(out)
    }

    fn read_whole(
        &self,
        si: &StorageIndex,
        share: ShareNum,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match fs::read(self.dir(si).join(share.to_string())) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn read(
        &self,
        si: &StorageIndex,
        share: ShareNum,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let f = File::open(self.dir(si).join(share.to_string()))?;
        let avail = f.metadata()?.len().saturating_sub(offset).min(len);
        let n = usize::try_from(avail).map_err(|_| StoreError::Io("read too large".into()))?;
        let mut buf = vec![0u8; n];
        f.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    fn replace(&self, si: &StorageIndex, share: ShareNum, bytes: &[u8]) -> Result<(), StoreError> {
        let dir = self.dir(si);
        let created = !dir.exists();
        fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(".{share}.tmp"));
        let mut f = File::create(&tmp)?;
        let res = f
            .write_all(bytes)
            .and_then(|()| f.sync_all())
            .and_then(|()| fs::rename(&tmp, dir.join(share.to_string())))
            .and_then(|()| sync_dir(&dir));
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        if created {
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
                sync_dir(&self.root)?;
            }
        }
        Ok(())
    }
}

/// Mutable shares in memory (tests, ephemeral servers).
#[derive(Debug, Default)]
pub struct MemoryMutableStore {
    shares: Mutex<BTreeMap<(StorageIndex, ShareNum), Vec<u8>>>,
}

impl MemoryMutableStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<(StorageIndex, ShareNum), Vec<u8>>> {
        self.shares.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl MutableStore for MemoryMutableStore {
    fn list(&self, si: &StorageIndex) -> Result<Vec<ShareInfo>, StoreError> {
        Ok(self
            .map()
            .range((*si, ShareNum(0))..=(*si, ShareNum(255)))
            .map(|((_, share), b)| ShareInfo {
                share: *share,
                length: b.len() as u64,
            })
            .collect())
    }

    fn read_whole(
        &self,
        si: &StorageIndex,
        share: ShareNum,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map().get(&(*si, share)).cloned())
    }

    fn read(
        &self,
        si: &StorageIndex,
        share: ShareNum,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let map = self.map();
        let b = map.get(&(*si, share)).ok_or(StoreError::NotFound)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
        let end = usize::try_from(offset.saturating_add(len))
            .unwrap_or(usize::MAX)
            .min(b.len());
        Ok(b.get(start..end).unwrap_or_default().to_vec())
    }

    fn replace(&self, si: &StorageIndex, share: ShareNum, bytes: &[u8]) -> Result<(), StoreError> {
        self.map().insert((*si, share), bytes.to_vec());
        Ok(())
    }
}

/// The mutable store of a server plus one async lock per storage index in use.
pub(crate) struct MutableShares {
    pub(crate) store: Arc<dyn MutableStore>,
    locks: Mutex<HashMap<StorageIndex, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds a storage index's lock; releasing it forgets the lock if nobody else waits.
pub(crate) struct SiGuard<'a> {
    shares: &'a MutableShares,
    si: StorageIndex,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for SiGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.shares.locks.lock().unwrap_or_else(|p| p.into_inner());
        drop(self.guard.take());
        // Only the map holds it now: nobody holds or waits for this lock.
        if map.get(&self.si).is_some_and(|l| Arc::strong_count(l) == 1) {
            map.remove(&self.si);
        }
    }
}

impl MutableShares {
    pub(crate) fn new(store: Arc<dyn MutableStore>) -> Self {
        Self {
            store,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for and takes the lock of `si` (serialises reads and writes of one storage index).
    pub(crate) async fn lock(&self, si: StorageIndex) -> SiGuard<'_> {
        let lock = {
            let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(map.entry(si).or_default())
        };
        let guard = lock.lock_owned().await;
        SiGuard {
            shares: self,
            si,
            guard: Some(guard),
        }
    }

    /// Number of storage indexes with a lock held or awaited (for tests).
    #[cfg(test)]
    pub(crate) fn locks_in_use(&self) -> usize {
        self.locks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_store(s: &dyn MutableStore) {
        let si = StorageIndex([3; 32]);
        assert!(s.list(&si).unwrap().is_empty());
        assert_eq!(s.read_whole(&si, ShareNum(1)).unwrap(), None);
        s.replace(&si, ShareNum(1), b"hello").unwrap();
        s.replace(&si, ShareNum(0), b"ab").unwrap();
        s.replace(&si, ShareNum(1), b"world!").unwrap();
        let l = s.list(&si).unwrap();
        assert_eq!(
            l,
            vec![
                ShareInfo {
                    share: ShareNum(0),
                    length: 2
                },
                ShareInfo {
                    share: ShareNum(1),
                    length: 6
                }
            ]
        );
        assert_eq!(s.read_whole(&si, ShareNum(1)).unwrap().unwrap(), b"world!");
        assert_eq!(s.read(&si, ShareNum(1), 2, 10).unwrap(), b"rld!");
        assert!(s.list(&StorageIndex([4; 32])).unwrap().is_empty());
    }

    #[test]
    fn memory_store() {
        check_store(&MemoryMutableStore::new());
    }

    #[test]
    fn fs_store_replaces_atomically_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsMutableStore::open(dir.path()).unwrap();
        check_store(&s);
        // A leftover temp file (crash before the rename) is not a share.
        let si = StorageIndex([3; 32]);
        fs::write(s.dir(&si).join(".2.tmp"), b"partial").unwrap();
        let s = FsMutableStore::open(dir.path()).unwrap();
        assert_eq!(s.list(&si).unwrap().len(), 2);
        assert_eq!(s.read_whole(&si, ShareNum(0)).unwrap().unwrap(), b"ab");
    }

    #[tokio::test]
    async fn lock_serialises_and_is_forgotten() {
        let m = Arc::new(MutableShares::new(Arc::new(MemoryMutableStore::new())));
        let si = StorageIndex([1; 32]);
        let g = m.lock(si).await;
        let m2 = Arc::clone(&m);
        let waiter = tokio::spawn(async move {
            let _g = m2.lock(si).await;
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        // Another storage index is independent.
        drop(m.lock(StorageIndex([2; 32])).await);
        drop(g);
        waiter.await.unwrap();
        assert_eq!(m.locks_in_use(), 0);
    }
}
