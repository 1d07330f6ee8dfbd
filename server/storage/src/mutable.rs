//! Mutable shares: where they live ([`MutableStore`]) and the per-storage-index write lock.
//!
//! Unlike immutable shares, a mutable share is changed in place by each new version. A new
//! or wholly rewritten share is written atomically (temp file, fsync, rename, directory fsync
//! in [`FsMutableStore`]); a **patch** (the segments, tree nodes and header a partial update
//! changes) is written in place under a redo journal, so only the changed bytes are written
//! (twice: journal, then share), not the whole share. Either way a reader or a restart sees
//! the old or the new share, never a mix (`docs/spec/storage-protocol.md`, "Mutable shares").
//! Whether a change is allowed (a validly signed share with a strictly higher sequence number)
//! is decided before, by `lafs_mutable::check_write_in`, while the storage index's lock is
//! held, so concurrent writes to one storage index are serialised.
//!
//! A server serves mutable shares only once a store is attached with
//! [`AppState::enable_mutable`](crate::AppState::enable_mutable); it accepts writes only if
//! [`Config::accepts_mutable`](crate::Config::accepts_mutable) is also set and it is not
//! read-only.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lafs_mutable::Patch;
use lafs_proto::storage::ShareInfo;
use lafs_proto::{ShareNum, StorageIndex};
use sha2::{Digest, Sha256};

use crate::store::StoreError;

/// In-place changes to one stored share: resize it to `new_len` (cut, or zero-extend), then
/// write each patch in order (exactly `lafs_mutable::ShareWrite::Patch`).
#[derive(Debug, Clone, Copy)]
pub struct SharePatch<'a> {
    /// The share.
    pub share: ShareNum,
    /// Its length afterwards.
    pub new_len: u64,
    /// Byte ranges to write, each inside `new_len`.
    pub patches: &'a [Patch],
}

/// Storage of mutable shares, addressed by (storage index, share number). Methods block.
///
/// Guarantees: [`MutableStore::replace`] and [`MutableStore::patch`] are atomic and durable
/// once they return `Ok`: after a crash at any point, each share they touched is entirely as
/// before or entirely as after; readers never see a partial share.
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

    /// Changes stored shares of `si` in place, writing only the patched bytes. All the
    /// changes of one call are applied together, atomically and durably (after a crash: all
    /// or none). Every share must be held ([`StoreError::NotFound`] otherwise, nothing
    /// changed).
    fn patch(&self, si: &StorageIndex, changes: &[SharePatch<'_>]) -> Result<(), StoreError>;

    /// Bytes written to storage so far by [`replace`](Self::replace) and
    /// [`patch`](Self::patch), share data and journal included (for tests and measurements).
    fn bytes_written(&self) -> u64;
}

/// Magic of a journal file of [`FsMutableStore`]: `lafsmj`, 0x00, version 1.
const JOURNAL_MAGIC: [u8; 8] = *b"lafsmj\x00\x01";

/// Mutable shares on disk: `<root>/<si[0..2]>/<si>/<n>`, patch journals in
/// `<root>/.journal/<si>`.
///
/// A patch call writes a redo journal (every change of the call and a SHA-256 of it), fsyncs
/// it and the journal directory, applies the changes in place, fsyncs each share, then
/// removes the journal (that removal is made durable before the next whole replacement of the
/// storage index, not at once: replaying a journal whose changes are all applied changes
/// nothing). A journal found at [`open`](FsMutableStore::open) is replayed if its checksum
/// holds (the change was decided; replay is idempotent) and deleted otherwise (a torn
/// journal: the shares were not touched yet). Three fsyncs per patch request, plus one per
/// share patched.
#[derive(Debug)]
pub struct FsMutableStore {
    root: PathBuf,
    /// Storage indexes whose journal could not be replayed yet: every access retries first.
    pending: Mutex<BTreeSet<StorageIndex>>,
    /// Storage indexes whose journal was removed but the removal not yet made durable (the
    /// journal directory is fsynced before their next whole replacement).
    unsynced_removal: Mutex<BTreeSet<StorageIndex>>,
    written: AtomicU64,
    faults: Faults,
}

/// Simulated crashes of [`FsMutableStore`] (for crash tests): the `crash_at`-th disk-changing
/// step (0-based: a write, resize, fsync, rename or unlink) is not done (a write may be done
/// half, `torn`), it and every later operation fail, as if the process had died there.
#[derive(Debug, Default)]
struct Faults {
    crash_at: Option<u64>,
    torn: bool,
    steps: AtomicU64,
    dead: AtomicBool,
}

fn crashed() -> StoreError {
    StoreError::Io("injected crash".into())
}

impl Faults {
    fn alive(&self) -> Result<(), StoreError> {
        if self.dead.load(Ordering::SeqCst) {
            Err(crashed())
        } else {
            Ok(())
        }
    }

    /// Counts a step; `Err` if the process "dies" at it (after `torn` ran, for a torn write).
    fn step(&self, torn: impl FnOnce()) -> Result<(), StoreError> {
        self.alive()?;
        let n = self.steps.fetch_add(1, Ordering::SeqCst);
        if self.crash_at == Some(n) {
            self.dead.store(true, Ordering::SeqCst);
            if self.torn {
                torn();
            }
            return Err(crashed());
        }
        Ok(())
    }
}

impl FsMutableStore {
    /// Opens (creating if needed) a mutable store in `root` and replays or discards the
    /// journals of patch writes interrupted by a crash. Leftover temp files of whole writes
    /// are ignored (and overwritten by the next write of that share).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        Self::open_inner(root.into(), Faults::default())
    }

    /// [`open`](Self::open) with a simulated crash at the `crash_at`-th disk-changing step
    /// (0-based; a write, resize, fsync, rename, unlink or directory fsync): that step is not
    /// done (with `torn`, a write is done half) and it and every later call fail. Reopen the
    /// directory with [`open`](Self::open) to "restart". For crash tests.
    pub fn open_with_crash(
        root: impl Into<PathBuf>,
        crash_at: u64,
        torn: bool,
    ) -> Result<Self, StoreError> {
        Self::open_inner(
            root.into(),
            Faults {
                crash_at: Some(crash_at),
                torn,
                ..Faults::default()
            },
        )
    }

    fn open_inner(root: PathBuf, faults: Faults) -> Result<Self, StoreError> {
        fs::create_dir_all(root.join(".journal"))?;
        let store = Self {
            root,
            pending: Mutex::new(BTreeSet::new()),
            unsynced_removal: Mutex::new(BTreeSet::new()),
            written: AtomicU64::new(0),
            faults,
        };
        for entry in fs::read_dir(store.journal_dir())? {
            let entry = entry?;
            let Some(si) = entry
                .file_name()
                .to_str()
                .and_then(|n| lafs_proto::ids::parse_storage_index(n).ok())
            else {
                continue;
            };
            store.pending_set().insert(si);
        }
        let pending: Vec<StorageIndex> = store.pending_set().iter().copied().collect();
        for si in pending {
            // A failure stays pending: every access to that SI retries (and fails until then).
            if let Err(e) = store.recover(&si) {
                tracing::warn!("mutable store: journal of {si:?} not replayed yet: {e}");
            }
        }
        Ok(store)
    }

    fn dir(&self, si: &StorageIndex) -> PathBuf {
        let text = lafs_proto::ids::storage_index_to_text(si);
        self.root.join(&text[..2]).join(text)
    }

    fn journal_dir(&self) -> PathBuf {
        self.root.join(".journal")
    }

    fn journal_path(&self, si: &StorageIndex) -> PathBuf {
        self.journal_dir()
            .join(lafs_proto::ids::storage_index_to_text(si))
    }

    fn unsynced(&self) -> std::sync::MutexGuard<'_, BTreeSet<StorageIndex>> {
        self.unsynced_removal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the removal of `si`'s last journal durable, if it is not yet.
    fn sync_removal(&self, si: &StorageIndex) -> Result<(), StoreError> {
        if self.unsynced().contains(si) {
            self.faults.step(|| ())?;
            sync_dir(&self.journal_dir())?;
            self.unsynced().remove(si);
        }
        Ok(())
    }

    fn pending_set(&self) -> std::sync::MutexGuard<'_, BTreeSet<StorageIndex>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fails if the store "crashed"; replays a pending journal of `si` first.
    fn ready(&self, si: &StorageIndex) -> Result<(), StoreError> {
        self.faults.alive()?;
        if self.pending_set().contains(si) {
            self.recover(si)?;
        }
        Ok(())
    }

    /// Replays (checksum holds) or discards (torn) the journal of `si`, then removes it.
    fn recover(&self, si: &StorageIndex) -> Result<(), StoreError> {
        let path = self.journal_path(si);
        let bytes = match fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(bytes) = bytes {
            match decode_journal(&bytes) {
                Some((jsi, changes)) if jsi == *si => {
                    let refs: Vec<SharePatch<'_>> = changes
                        .iter()
                        .map(|(share, new_len, patches)| SharePatch {
                            share: *share,
                            new_len: *new_len,
                            patches,
                        })
                        .collect();
                    self.apply_in_place(si, &refs)?;
                }
                // Torn (the crash came before the journal was durable, so no share was
                // touched) or misfiled: nothing to replay.
                _ => {}
            }
            self.faults.step(|| ())?;
            fs::remove_file(&path)?;
            self.faults.step(|| ())?;
            sync_dir(&self.journal_dir())?;
        }
        self.pending_set().remove(si);
        Ok(())
    }

    /// Resizes and writes every change in place, then fsyncs each share.
    fn apply_in_place(
        &self,
        si: &StorageIndex,
        changes: &[SharePatch<'_>],
    ) -> Result<(), StoreError> {
        let dir = self.dir(si);
        for c in changes {
            let f = OpenOptions::new()
                .write(true)
                .open(dir.join(c.share.to_string()))?;
            if f.metadata()?.len() != c.new_len {
                self.faults.step(|| ())?;
                f.set_len(c.new_len)?;
            }
            for p in c.patches {
                self.faults.step(|| {
                    let _ = f.write_all_at(&p.data[..p.data.len() / 2], p.offset);
                })?;
                f.write_all_at(&p.data, p.offset)?;
                self.count(p.data.len());
            }
            self.faults.step(|| ())?;
            // fdatasync: the data and the size (needed to read it back) are made durable.
            f.sync_data()?;
        }
        Ok(())
    }

    fn count(&self, n: usize) {
        self.written.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Journal: magic (8) ‖ SI (32) ‖ count u32 ‖ per change: share u8 ‖ new_len u64 ‖ patches
/// u32 ‖ per patch: offset u64 ‖ len u32 ‖ bytes; then SHA-256 of everything before (32).
fn encode_journal(si: &StorageIndex, changes: &[SharePatch<'_>]) -> Result<Vec<u8>, StoreError> {
    let too_many = || StoreError::Io("patch set too large for a journal".into());
    let mut out = Vec::new();
    out.extend_from_slice(&JOURNAL_MAGIC);
    out.extend_from_slice(&si.0);
    out.extend_from_slice(
        &u32::try_from(changes.len())
            .map_err(|_| too_many())?
            .to_be_bytes(),
    );
    for c in changes {
        out.push(c.share.0);
        out.extend_from_slice(&c.new_len.to_be_bytes());
        out.extend_from_slice(
            &u32::try_from(c.patches.len())
                .map_err(|_| too_many())?
                .to_be_bytes(),
        );
        for p in c.patches {
            out.extend_from_slice(&p.offset.to_be_bytes());
            out.extend_from_slice(
                &u32::try_from(p.data.len())
                    .map_err(|_| too_many())?
                    .to_be_bytes(),
            );
            out.extend_from_slice(&p.data);
        }
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    Ok(out)
}

type JournalChanges = Vec<(ShareNum, u64, Vec<Patch>)>;

/// Parses a journal; `None` if it is torn or not a journal (checksum, magic or framing).
fn decode_journal(bytes: &[u8]) -> Option<(StorageIndex, JournalChanges)> {
    let body_len = bytes.len().checked_sub(32)?;
    let (body, sum) = bytes.split_at(body_len);
    if Sha256::digest(body).as_slice() != sum || body.get(..8)? != JOURNAL_MAGIC {
        return None;
    }
    let mut at = 8usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = body.get(at..at.checked_add(n)?)?;
        at += n;
        Some(s)
    };
    let si = StorageIndex(take(32)?.try_into().ok()?);
    let count = u32::from_be_bytes(take(4)?.try_into().ok()?);
    let mut changes = Vec::new();
    for _ in 0..count {
        let share = ShareNum(*take(1)?.first()?);
        let new_len = u64::from_be_bytes(take(8)?.try_into().ok()?);
        let np = u32::from_be_bytes(take(4)?.try_into().ok()?);
        let mut patches = Vec::new();
        for _ in 0..np {
            let offset = u64::from_be_bytes(take(8)?.try_into().ok()?);
            let len = usize::try_from(u32::from_be_bytes(take(4)?.try_into().ok()?)).ok()?;
            patches.push(Patch {
                offset,
                data: take(len)?.to_vec(),
            });
        }
        changes.push((share, new_len, patches));
    }
    (at == body.len()).then_some((si, changes))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl MutableStore for FsMutableStore {
    fn list(&self, si: &StorageIndex) -> Result<Vec<ShareInfo>, StoreError> {
        self.ready(si)?;
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
        self.ready(si)?;
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
        self.ready(si)?;
        let f = File::open(self.dir(si).join(share.to_string()))?;
        let avail = f.metadata()?.len().saturating_sub(offset).min(len);
        let n = usize::try_from(avail).map_err(|_| StoreError::Io("read too large".into()))?;
        let mut buf = vec![0u8; n];
        f.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    fn replace(&self, si: &StorageIndex, share: ShareNum, bytes: &[u8]) -> Result<(), StoreError> {
        self.ready(si)?;
        self.sync_removal(si)?;
        let dir = self.dir(si);
        let created = !dir.exists();
        fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(".{share}.tmp"));
        let mut f = File::create(&tmp)?;
        let f_ref = &f;
        self.faults.step(|| {
            let mut g = f_ref;
            let _ = g.write_all(&bytes[..bytes.len() / 2]);
        })?;
        let res = f.write_all(bytes).and_then(|()| {
            self.count(bytes.len());
            self.faults.step(|| ()).map_err(io::Error::other)?;
            f.sync_all()?;
            self.faults.step(|| ()).map_err(io::Error::other)?;
            fs::rename(&tmp, dir.join(share.to_string()))?;
            self.faults.step(|| ()).map_err(io::Error::other)?;
            sync_dir(&dir)
        });
        if let Err(e) = res {
            if self.faults.alive().is_ok() {
                let _ = fs::remove_file(&tmp);
            }
            return Err(e.into());
        }
        if created {
            if let Some(parent) = dir.parent() {
                self.faults.step(|| ())?;
                sync_dir(parent)?;
                sync_dir(&self.root)?;
            }
        }
        Ok(())
    }

    fn patch(&self, si: &StorageIndex, changes: &[SharePatch<'_>]) -> Result<(), StoreError> {
        self.ready(si)?;
        if changes.is_empty() {
            return Ok(());
        }
        let dir = self.dir(si);
        for c in changes {
            if !dir.join(c.share.to_string()).is_file() {
                return Err(StoreError::NotFound);
            }
        }
        let journal = encode_journal(si, changes)?;
        let path = self.journal_path(si);
        // From here on, a failure leaves the outcome to the journal: replay on next access.
        self.pending_set().insert(*si);
        let mut f = File::create(&path)?;
        let f_ref = &f;
        self.faults.step(|| {
            let mut g = f_ref;
            let _ = g.write_all(&journal[..journal.len() / 2]);
        })?;
        f.write_all(&journal)?;
        self.count(journal.len());
        self.faults.step(|| ())?;
        f.sync_data()?;
        drop(f);
        self.faults.step(|| ())?;
        sync_dir(&self.journal_dir())?;
        // The new journal replaced any earlier one durably.
        self.unsynced().remove(si);
        self.apply_in_place(si, changes)?;
        self.faults.step(|| ())?;
        fs::remove_file(&path)?;
        // The removal is made durable lazily: if it is lost in a crash, the journal found is
        // this call's, whose changes are all applied, so replaying it changes nothing. Only a
        // later whole replacement must not be followed by a replay: `replace` syncs first.
        self.unsynced().insert(*si);
        self.pending_set().remove(si);
        Ok(())
    }

    fn bytes_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

/// Why [`write_shares`] stored nothing (or, for a store failure, maybe not everything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// A write was refused by `lafs_mutable::check_write_in` (invalid share or patch, seqnum
    /// not higher, patch without a stored share, stored share unreadable): nothing stored.
    Refused(lafs_mutable::Error),
    /// The store failed while storing. Each share is still old or new (see
    /// [`MutableStore`]).
    Store(StoreError),
}

/// What [`write_shares`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// One verdict per write, in order.
    pub verdicts: Vec<lafs_mutable::Verdict>,
    /// Share bytes written (whole shares and patch bytes; journal excluded).
    pub bytes: u64,
}

/// The stored share a write is checked against, read from the store range by range (a patch
/// check reads only the header, the chain and the tree nodes it needs).
struct StoreShare<'a> {
    store: &'a dyn MutableStore,
    si: StorageIndex,
    share: ShareNum,
    len: u64,
}

impl lafs_mutable::StoredShare for StoreShare<'_> {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_range(
        &self,
        range: core::ops::Range<u64>,
    ) -> Result<std::borrow::Cow<'_, [u8]>, lafs_mutable::Error> {
        self.store
            .read(
                &self.si,
                self.share,
                range.start,
                range.end.saturating_sub(range.start),
            )
            .map(std::borrow::Cow::Owned)
            .map_err(|e| lafs_mutable::Error::StoredShareUnreadable {
                share: u16::from(self.share.0),
                start: range.start,
                end: range.end,
                reason: e.to_string(),
            })
    }
}

/// A storage server's mutable write: checks **every** write against the stored share of its
/// slot with `lafs_mutable::check_write_in` (signature by the key behind `si`, strictly
/// higher seqnum, hashes; reading only the ranges a patch check needs), and only if all pass
/// stores them: whole shares replaced one by one (each atomically), patches applied in place
/// together ([`MutableStore::patch`]: one journal). Writes that change nothing
/// (`AlreadyStored`) are not stored again. The caller serialises writes of one storage index
/// (the server holds its lock).
pub fn write_shares(
    store: &dyn MutableStore,
    si: &StorageIndex,
    writes: &[lafs_mutable::ShareWrite],
) -> Result<Written, WriteError> {
    let held: BTreeMap<ShareNum, u64> = store
        .list(si)
        .map_err(WriteError::Store)?
        .into_iter()
        .map(|s| (s.share, s.length))
        .collect();
    let mut verdicts = Vec::with_capacity(writes.len());
    for w in writes {
        let share = u8::try_from(w.share()).map(ShareNum).map_err(|_| {
            WriteError::Refused(lafs_mutable::Error::BadParams("share number above 255"))
        })?;
        let stored = held.get(&share).map(|&len| StoreShare {
            store,
            si: *si,
            share,
            len,
        });
        let verdict = lafs_mutable::check_write_in(
            si,
            stored.as_ref().map(|s| s as &dyn lafs_mutable::StoredShare),
            w,
        )
        .map_err(WriteError::Refused)?;
        verdicts.push(verdict);
    }
    let mut bytes = 0u64;
    let mut patches = Vec::new();
    for (w, v) in writes.iter().zip(&verdicts) {
        if !matches!(v, lafs_mutable::Verdict::Accept { .. }) {
            continue;
        }
        // Checked above: the share number fits.
        let share = ShareNum(u8::try_from(w.share()).unwrap_or_default());
        bytes += w.bytes_written();
        match w {
            lafs_mutable::ShareWrite::Whole { data, .. } => {
                store.replace(si, share, data).map_err(WriteError::Store)?;
            }
            lafs_mutable::ShareWrite::Patch {
                new_len,
                patches: p,
                ..
            } => patches.push(SharePatch {
                share,
                new_len: *new_len,
                patches: p,
            }),
        }
    }
    store.patch(si, &patches).map_err(WriteError::Store)?;
    Ok(Written { verdicts, bytes })
}

/// Mutable shares in memory (tests, ephemeral servers). Patches are applied in place.
#[derive(Debug, Default)]
pub struct MemoryMutableStore {
    shares: Mutex<BTreeMap<(StorageIndex, ShareNum), Vec<u8>>>,
    written: AtomicU64,
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
        self.written
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn patch(&self, si: &StorageIndex, changes: &[SharePatch<'_>]) -> Result<(), StoreError> {
        let mut map = self.map();
        if changes.iter().any(|c| !map.contains_key(&(*si, c.share))) {
            return Err(StoreError::NotFound);
        }
        // Check every patch fits before changing anything (all or nothing).
        for c in changes {
            let new_len =
                usize::try_from(c.new_len).map_err(|_| StoreError::Io("share too large".into()))?;
            if c.patches
                .iter()
                .any(|p| usize::try_from(p.end()).map_or(true, |e| e > new_len))
            {
                return Err(StoreError::Io("patch outside the new share length".into()));
            }
        }
        for c in changes {
            let Some(bytes) = map.get_mut(&(*si, c.share)) else {
                return Err(StoreError::NotFound);
            };
            bytes.resize(usize::try_from(c.new_len).unwrap_or_default(), 0);
            for p in c.patches {
                let start = usize::try_from(p.offset).unwrap_or_default();
                if let Some(dst) = bytes.get_mut(start..start + p.data.len()) {
                    dst.copy_from_slice(&p.data);
                }
                self.written
                    .fetch_add(p.data.len() as u64, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn bytes_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
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
        check_patch(&MemoryMutableStore::new());
    }

    fn patches_v2() -> Vec<(ShareNum, u64, Vec<Patch>)> {
        vec![
            (
                ShareNum(0),
                12,
                vec![
                    Patch {
                        offset: 0,
                        data: b"AB".to_vec(),
                    },
                    Patch {
                        offset: 9,
                        data: b"xyz".to_vec(),
                    },
                ],
            ),
            (
                ShareNum(1),
                4,
                vec![Patch {
                    offset: 1,
                    data: b"Q".to_vec(),
                }],
            ),
        ]
    }

    fn as_refs(v: &[(ShareNum, u64, Vec<Patch>)]) -> Vec<SharePatch<'_>> {
        v.iter()
            .map(|(share, new_len, patches)| SharePatch {
                share: *share,
                new_len: *new_len,
                patches,
            })
            .collect()
    }

    const OLD0: &[u8] = b"0123456789";
    const OLD1: &[u8] = b"abcdefgh";
    const NEW0: &[u8] = b"AB2345678xyz";
    const NEW1: &[u8] = b"aQcd";

    fn check_patch(s: &dyn MutableStore) {
        let si = StorageIndex([5; 32]);
        s.replace(&si, ShareNum(0), OLD0).unwrap();
        s.replace(&si, ShareNum(1), OLD1).unwrap();
        let before = s.bytes_written();
        let v = patches_v2();
        // A patch of a share that is not held changes nothing.
        let mut missing = as_refs(&v);
        missing.push(SharePatch {
            share: ShareNum(7),
            new_len: 1,
            patches: &[],
        });
        assert_eq!(s.patch(&si, &missing), Err(StoreError::NotFound));
        assert_eq!(s.read_whole(&si, ShareNum(0)).unwrap().unwrap(), OLD0);
        s.patch(&si, &as_refs(&v)).unwrap();
        assert_eq!(s.read_whole(&si, ShareNum(0)).unwrap().unwrap(), NEW0);
        assert_eq!(s.read_whole(&si, ShareNum(1)).unwrap().unwrap(), NEW1);
        // Only the patched bytes (plus the journal, for the fs store) were written.
        let written = s.bytes_written() - before;
        assert!(written >= 6, "{written}");
        assert!(written < 6 + 200, "{written}");
    }

    #[test]
    fn fs_store_patches_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsMutableStore::open(dir.path()).unwrap();
        check_patch(&s);
        assert_eq!(fs::read_dir(s.journal_dir()).unwrap().count(), 0);
        // The journal's removal is made durable before a whole replacement.
        let si = StorageIndex([5; 32]);
        assert!(s.unsynced().contains(&si));
        s.replace(&si, ShareNum(0), b"whole").unwrap();
        assert!(s.unsynced().is_empty());
    }

    #[test]
    fn journal_round_trip_and_torn_journals() {
        let si = StorageIndex([9; 32]);
        let v = patches_v2();
        let j = encode_journal(&si, &as_refs(&v)).unwrap();
        assert_eq!(decode_journal(&j), Some((si, v)));
        for cut in 0..j.len() {
            assert_eq!(decode_journal(&j[..cut]), None, "cut at {cut}");
        }
        let mut bad = j.clone();
        bad[50] ^= 1;
        assert_eq!(decode_journal(&bad), None);
    }

    /// A crash at every disk-changing step of a two-share patch (and of a whole replace),
    /// with and without a torn write, then a restart: every share is entirely old or entirely
    /// new, and the two patched shares agree.
    #[test]
    fn fs_store_crash_at_every_step_keeps_old_or_new() {
        let si = StorageIndex([6; 32]);
        let v = patches_v2();
        let mut outcomes = BTreeSet::new();
        for torn in [false, true] {
            for step in 0..64u64 {
                let dir = tempfile::tempdir().unwrap();
                {
                    let s = FsMutableStore::open(dir.path()).unwrap();
                    s.replace(&si, ShareNum(0), OLD0).unwrap();
                    s.replace(&si, ShareNum(1), OLD1).unwrap();
                }
                let s = FsMutableStore::open_with_crash(dir.path(), step, torn).unwrap();
                let res = s.patch(&si, &as_refs(&v));
                let crashed = s.faults.dead.load(Ordering::SeqCst);
                drop(s);
                let s = FsMutableStore::open(dir.path()).unwrap();
                let a = s.read_whole(&si, ShareNum(0)).unwrap().unwrap();
                let b = s.read_whole(&si, ShareNum(1)).unwrap().unwrap();
                let new = a == NEW0 && b == NEW1;
                let old = a == OLD0 && b == OLD1;
                assert!(new || old, "step {step} torn {torn}: {a:?} {b:?}");
                if res.is_ok() {
                    assert!(new);
                }
                assert_eq!(fs::read_dir(s.journal_dir()).unwrap().count(), 0);
                outcomes.insert((crashed, new));
                if !crashed {
                    break;
                }
            }
        }
        // Both outcomes of a crash were exercised, and the last step count finished.
        assert!(outcomes.contains(&(true, false)));
        assert!(outcomes.contains(&(true, true)));
        assert!(outcomes.contains(&(false, true)));

        // Whole replacement: old or new.
        for torn in [false, true] {
            for step in 0..16u64 {
                let dir = tempfile::tempdir().unwrap();
                {
                    let s = FsMutableStore::open(dir.path()).unwrap();
                    s.replace(&si, ShareNum(0), OLD0).unwrap();
                }
                let s = FsMutableStore::open_with_crash(dir.path(), step, torn).unwrap();
                let res = s.replace(&si, ShareNum(0), b"a whole new share");
                let crashed = s.faults.dead.load(Ordering::SeqCst);
                drop(s);
                let s = FsMutableStore::open(dir.path()).unwrap();
                let a = s.read_whole(&si, ShareNum(0)).unwrap().unwrap();
                assert!(a == OLD0 || a == b"a whole new share", "step {step}: {a:?}");
                if res.is_ok() {
                    assert_eq!(a, b"a whole new share");
                }
                if !crashed {
                    break;
                }
            }
        }
    }

    /// A journal left behind (the process died after making it durable) is replayed by the
    /// first access even without a reopen, and a torn one is discarded.
    #[test]
    fn fs_store_replays_a_leftover_journal_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let si = StorageIndex([8; 32]);
        let s = FsMutableStore::open(dir.path()).unwrap();
        s.replace(&si, ShareNum(0), OLD0).unwrap();
        s.replace(&si, ShareNum(1), OLD1).unwrap();
        let v = patches_v2();
        let j = encode_journal(&si, &as_refs(&v)).unwrap();
        fs::write(s.journal_path(&si), &j[..j.len() - 1]).unwrap();
        drop(s);
        let s = FsMutableStore::open(dir.path()).unwrap();
        assert_eq!(s.read_whole(&si, ShareNum(0)).unwrap().unwrap(), OLD0);
        fs::write(s.journal_path(&si), &j).unwrap();
        drop(s);
        let s = FsMutableStore::open(dir.path()).unwrap();
        assert_eq!(s.read_whole(&si, ShareNum(1)).unwrap().unwrap(), NEW1);
        assert_eq!(s.list(&si).unwrap()[0].length, 12);
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
