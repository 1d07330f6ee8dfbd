//! The filesystem share store.
//!
//! Layout under the data directory (all names come from typed identifiers, never from client
//! text, so no path can point outside it):
//!
//! ```text
//! server-id                          random id, created once
//! incoming/<upload-id>/upload.json   UploadMeta (written to a temp file, fsynced, renamed)
//! incoming/<upload-id>/ranges.log    18-byte records: 0x01, share u8, offset u64, len u64 (BE)
//! incoming/<upload-id>/<n>.data      bytes of incoming share n, at their offsets
//! incoming/<upload-id>/<n>.done      {"storage_index": ..., "length": ...} once n is committed
//! incoming/.put-<random>.tmp         a whole share being filed by `store_share` (removed at open)
//! shares/<si[0..2]>/<si>/<n>         finished share n of storage index si (base32)
//! advisories.jsonl                   corruption advisories, one JSON object per line
//! ```
//!
//! Crash safety: a share becomes visible only by an atomic rename into `shares/` after its file
//! was fsynced (**one fsync per share**, at commit), followed by an fsync of the directories, so
//! a finished share is either absent or complete and verified. Incoming writes are not fsynced
//! (unless [`FsOptions::sync_each_write`]): a range is appended to `ranges.log` after its bytes
//! were written, so after a *process* crash a listed range is stored (the page cache survives);
//! after a power failure a listed range may hold stale bytes. Such a share fails verification at
//! finish and is never filed; the unfinished upload is lost and the client re-sends it (resume
//! or another server). A torn last record is ignored.
//!
//! Flush-behind: every [`FsOptions::flush_behind`] bytes written to an incoming share, a
//! background thread starts an `fdatasync` of it, so that the disk writes the share while the
//! upload goes on and the fsync at commit finds little left to write (on a 1 GiB 3-of-10 upload
//! that fsync took a tenth of the upload's time). Its result is kept: a share whose background
//! flush failed is never committed, even though the kernel reports a writeback error only once.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use lafs_proto::ids::{parse_storage_index, storage_index_to_text};
use lafs_proto::storage::ShareInfo;
use lafs_proto::{ShareNum, StorageIndex, UploadId};
use serde::{Deserialize, Serialize};

use super::{random_server_id, Advisory, ShareStore, Space, StoreError, StoredUpload, UploadMeta};
use crate::ranges::RangeSet;

const RECORD_LEN: usize = 18;
const RECORD_RANGE: u8 = 1;
/// Name prefix of the temp files of [`ShareStore::store_share`] in `incoming/`.
const PUT_TMP_PREFIX: &str = ".put-";

/// Options of an [`FsStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsOptions {
    /// fsync incoming data of every write before recording its range (off by default). Finished
    /// shares are always fsynced before they become visible, whatever this says: with it off, a
    /// power failure can only lose (never corrupt) an *unfinished* upload — stale incoming
    /// bytes fail the verification at finish and are never filed. On, a range the server
    /// reports after a power failure is really stored, at the cost of one fsync per write.
    pub sync_each_write: bool,
    /// Bytes of free space to leave to the rest of the system.
    pub reserved_space: u64,
    /// Start a background flush of an incoming share each time this many more bytes of it were
    /// written (0: never; the fsync at commit then writes the whole share). Only when
    /// `sync_each_write` is off.
    pub flush_behind: u64,
}

impl Default for FsOptions {
    /// No fsync per write, no reserved space, flush-behind every [`DEFAULT_FLUSH_BEHIND`] bytes.
    fn default() -> Self {
        Self {
            sync_each_write: false,
            reserved_space: 0,
            flush_behind: DEFAULT_FLUSH_BEHIND,
        }
    }
}

/// Default [`FsOptions::flush_behind`]: 32 MiB.
pub const DEFAULT_FLUSH_BEHIND: u64 = 32 << 20;

/// Background flushes running at once, at most (one per incoming share file).
const MAX_FLUSH_THREADS: usize = 16;

/// Background flushes of incoming share files: which run, and which failed.
#[derive(Debug, Default)]
struct Flushes {
    state: Mutex<HashMap<PathBuf, FlushState>>,
    done: Condvar,
    started: AtomicU64,
}

#[derive(Debug, Default)]
struct FlushState {
    running: bool,
    failed: Option<String>,
}

impl Flushes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, FlushState>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts an `fdatasync` of `f` (the file at `path`) on a thread of its own, unless one
    /// is running for it already or [`MAX_FLUSH_THREADS`] are running in all (many uploads at
    /// once then cost no more threads; their commits write what was not flushed).
    fn start(self: &Arc<Self>, path: &Path, f: &File) {
        {
            let mut state = self.lock();
            if state.values().filter(|e| e.running).count() >= MAX_FLUSH_THREADS {
                return;
            }
            let entry = state.entry(path.to_path_buf()).or_default();
            if entry.running {
                return;
            }
            entry.running = true;
        }
        let spawned = f.try_clone().and_then(|f| {
            let flushes = Arc::clone(self);
            let path = path.to_path_buf();
            std::thread::Builder::new()
                .name("lafs-flush".into())
                .spawn(move || {
                    let result = f.sync_data();
                    flushes.finish(&path, result.err());
                })
        });
        match spawned {
            Ok(_) => {
                self.started.fetch_add(1, Ordering::Relaxed);
            }
            // No thread or no descriptor: the fsync at commit writes everything, as without
            // flush-behind.
            Err(_) => self.finish(path, None),
        }
    }

    fn finish(&self, path: &Path, error: Option<io::Error>) {
        let mut state = self.lock();
        if let Some(entry) = state.get_mut(path) {
            entry.running = false;
            if let Some(e) = error {
                entry.failed.get_or_insert_with(|| e.to_string());
            }
        }
        self.done.notify_all();
    }

    /// Waits for the background flush of `path` to end and forgets it: `Err` with its error if
    /// any of its flushes failed.
    fn settle(&self, path: &Path) -> Result<(), String> {
        let mut state = self.lock();
        while state.get(path).is_some_and(|e| e.running) {
            state = self
                .done
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        match state.remove(path).and_then(|e| e.failed) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Forgets every file under `dir` once its flush has ended (the upload was removed).
    fn forget_under(&self, dir: &Path) {
        let mut state = self.lock();
        while state.iter().any(|(p, e)| e.running && p.starts_with(dir)) {
            state = self
                .done
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        state.retain(|p, _| !p.starts_with(dir));
    }
}

/// Share store in a directory of the local filesystem.
#[derive(Debug)]
pub struct FsStore {
    root: PathBuf,
    options: FsOptions,
    server_id: String,
    share_count: AtomicU64,
    file_syncs: AtomicU64,
    advisory_lock: Mutex<()>,
    flushes: Arc<Flushes>,
}

#[derive(Serialize, Deserialize)]
struct DoneMarker {
    #[serde(with = "lafs_proto::ids::si_text")]
    storage_index: StorageIndex,
    length: u64,
}

impl FsStore {
    /// Opens (creating if needed) a store in `root`.
    pub fn open(root: impl Into<PathBuf>, options: FsOptions) -> Result<Self, StoreError> {
        let root = root.into();
        fs::create_dir_all(root.join("incoming"))?;
        fs::create_dir_all(root.join("shares"))?;
        // Whole shares being filed when the process stopped: never acknowledged.
        for entry in fs::read_dir(root.join("incoming"))? {
            let entry = entry?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(PUT_TMP_PREFIX))
            {
                let _ = fs::remove_file(entry.path());
            }
        }
        let id_path = root.join("server-id");
        let server_id = match fs::read_to_string(&id_path) {
            Ok(s) => s.trim().to_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let id = random_server_id()?;
                write_atomic(&root, "server-id", id.as_bytes())?;
                id
            }
            Err(e) => return Err(e.into()),
        };
        let store = Self {
            root,
            options,
            server_id,
            share_count: AtomicU64::new(0),
            file_syncs: AtomicU64::new(0),
            advisory_lock: Mutex::new(()),
            flushes: Arc::default(),
        };
        store
            .share_count
            .store(store.count_shares()?, Ordering::Relaxed);
        Ok(store)
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// fsyncs of share data files so far (incoming writes with
    /// [`FsOptions::sync_each_write`], and one per share filed); directory and metadata fsyncs
    /// are not counted.
    pub fn share_file_syncs(&self) -> u64 {
        self.file_syncs.load(Ordering::Relaxed)
    }

    /// Background flushes of incoming shares started so far ([`FsOptions::flush_behind`]).
    pub fn background_flushes(&self) -> u64 {
        self.flushes.started.load(Ordering::Relaxed)
    }

    fn sync_share_file(&self, f: &File) -> io::Result<()> {
        self.file_syncs.fetch_add(1, Ordering::Relaxed);
        f.sync_all()
    }

    fn upload_dir(&self, id: UploadId) -> PathBuf {
        self.root.join("incoming").join(id.to_text())
    }

    fn share_dir(&self, si: &StorageIndex) -> PathBuf {
        let text = storage_index_to_text(si);
        self.root.join("shares").join(&text[..2]).join(text)
    }

    /// Renames the fsynced file `src` to finished share `share` of `si` and fsyncs the
    /// directories that changed. Returns `false` (and leaves `src`) if the share is held.
    fn file_share(&self, src: &Path, si: &StorageIndex, share: ShareNum) -> io::Result<bool> {
        let target_dir = self.share_dir(si);
        let target = target_dir.join(share.to_string());
        if target.exists() {
            return Ok(false);
        }
        let new_dir = !target_dir.exists();
        if new_dir {
            fs::create_dir_all(&target_dir)?;
        }
        fs::rename(src, &target)?;
        sync_dir(&target_dir)?;
        if new_dir {
            if let Some(prefix) = target_dir.parent() {
                sync_dir(prefix)?;
                sync_dir(&self.root.join("shares"))?;
            }
        }
        self.share_count.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    fn count_shares(&self) -> Result<u64, StoreError> {
        let mut n = 0;
        for prefix in fs::read_dir(self.root.join("shares"))? {
            let prefix = prefix?;
            if !prefix.file_type()?.is_dir() {
                continue;
            }
            for si_dir in fs::read_dir(prefix.path())? {
                let si_dir = si_dir?;
                let Some(name) = si_dir.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let Ok(si) = parse_storage_index(&name) else {
                    continue;
                };
                n += self.list_shares(&si)?.len() as u64;
            }
        }
        Ok(n)
    }
}

/// Writes `name` in `dir` through a temp file, fsync, rename and directory fsync.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Whether a write of `len` bytes at `offset` reaches a multiple of `step` (never for step 0).
fn crosses_step(offset: u64, len: u64, step: u64) -> bool {
    step > 0 && len > 0 && offset.saturating_add(len) / step > offset / step
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn read_at_most(f: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let file_len = f.metadata()?.len();
    let avail = file_len.saturating_sub(offset).min(len);
    let n = usize::try_from(avail).map_err(|_| io::Error::other("read too large"))?;
    let mut buf = vec![0u8; n];
    f.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

fn parse_log(bytes: &[u8]) -> Vec<(ShareNum, u64, u64)> {
    bytes
        .chunks_exact(RECORD_LEN)
        .filter(|r| r[0] == RECORD_RANGE)
        .map(|r| {
            let mut o = [0u8; 8];
            let mut l = [0u8; 8];
            o.copy_from_slice(&r[2..10]);
            l.copy_from_slice(&r[10..18]);
            (ShareNum(r[1]), u64::from_be_bytes(o), u64::from_be_bytes(l))
        })
        .collect()
}

impl ShareStore for FsStore {
    fn server_id(&self) -> String {
        self.server_id.clone()
    }

    fn create_upload(&self, id: UploadId, meta: &UploadMeta) -> Result<(), StoreError> {
        let dir = self.upload_dir(id);
        fs::create_dir(&dir)?;
        let json = serde_json::to_vec(meta).map_err(|e| StoreError::Io(e.to_string()))?;
        let res = write_atomic(&dir, "upload.json", &json)
            .and_then(|()| sync_dir(&self.root.join("incoming")));
        if let Err(e) = res {
            // A directory without upload.json is removed at the next start anyway.
            let _ = fs::remove_dir_all(&dir);
            return Err(e.into());
        }
        Ok(())
    }

    fn write_incoming(
        &self,
        id: UploadId,
        share: ShareNum,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StoreError> {
        self.write_incoming_parts(id, share, offset, &[data])
    }

    fn write_incoming_parts(
        &self,
        id: UploadId,
        share: ShareNum,
        offset: u64,
        parts: &[&[u8]],
    ) -> Result<(), StoreError> {
        let dir = self.upload_dir(id);
        if !dir.join("upload.json").exists() {
            return Err(StoreError::NotFound);
        }
        let path = dir.join(format!("{share}.data"));
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        let mut at = offset;
        for part in parts {
            f.write_all_at(part, at)?;
            at += part.len() as u64;
        }
        let len = at - offset;
        if self.options.sync_each_write {
            self.file_syncs.fetch_add(1, Ordering::Relaxed);
            f.sync_data()?;
        } else if crosses_step(offset, len, self.options.flush_behind) {
            self.flushes.start(&path, &f);
        }
        let mut rec = [0u8; RECORD_LEN];
        rec[0] = RECORD_RANGE;
        rec[1] = share.0;
        rec[2..10].copy_from_slice(&offset.to_be_bytes());
        rec[10..18].copy_from_slice(&len.to_be_bytes());
        // One write of one record to an O_APPEND file: records never interleave.
        let mut log = OpenOptions::new()
            .append(true)
            .create(true)
            .open(dir.join("ranges.log"))?;
        log.write_all(&rec)?;
        Ok(())
    }

    fn read_incoming(
        &self,
        id: UploadId,
        share: ShareNum,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let f = File::open(self.upload_dir(id).join(format!("{share}.data")))?;
        Ok(read_at_most(&f, offset, len)?)
    }

    fn commit_share(
        &self,
        id: UploadId,
        share: ShareNum,
        si: &StorageIndex,
        len: u64,
    ) -> Result<bool, StoreError> {
        let dir = self.upload_dir(id);
        let src = dir.join(format!("{share}.data"));
        let f = OpenOptions::new().write(true).open(&src)?;
        if f.metadata()?.len() != len {
            f.set_len(len)?;
        }
        self.sync_share_file(&f)?;
        // A write-back error seen by a background flush is not reported to this fsync again.
        self.flushes
            .settle(&src)
            .map_err(|e| StoreError::Io(format!("flushing share {share} failed: {e}")))?;
        drop(f);
        let already = !self.file_share(&src, si, share)?;
        if already {
            fs::remove_file(&src)?;
        }
        let marker = serde_json::to_vec(&DoneMarker {
            storage_index: *si,
            length: len,
        })
        .map_err(|e| StoreError::Io(e.to_string()))?;
        // Losing the marker in a crash is harmless: the share is re-sent and found present.
        fs::write(dir.join(format!("{share}.done")), marker)?;
        Ok(!already)
    }

    fn store_share(
        &self,
        si: &StorageIndex,
        share: ShareNum,
        data: &[u8],
    ) -> Result<bool, StoreError> {
        if self.share_dir(si).join(share.to_string()).exists() {
            return Ok(false);
        }
        let mut rnd = [0u8; 8];
        getrandom::fill(&mut rnd).map_err(|e| StoreError::Io(format!("no randomness: {e}")))?;
        let tmp = self
            .root
            .join("incoming")
            .join(format!("{PUT_TMP_PREFIX}{}.tmp", u64::from_be_bytes(rnd)));
        let res = (|| -> io::Result<bool> {
            let mut f = File::create(&tmp)?;
            f.write_all(data)?;
            self.sync_share_file(&f)?;
            drop(f);
            self.file_share(&tmp, si, share)
        })();
        if !matches!(res, Ok(true)) {
            let _ = fs::remove_file(&tmp);
        }
        Ok(res?)
    }

    fn remove_upload(&self, id: UploadId) -> Result<(), StoreError> {
        self.flushes.forget_under(&self.upload_dir(id));
        fs::remove_dir_all(self.upload_dir(id))?;
        Ok(())
    }

    fn load_uploads(&self) -> Result<Vec<StoredUpload>, StoreError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.root.join("incoming"))? {
            let entry = entry?;
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<UploadId>().ok())
            else {
                continue;
            };
            let dir = entry.path();
            let meta: UploadMeta = match fs::read(dir.join("upload.json")) {
                Ok(bytes) => match serde_json::from_slice(&bytes) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(upload = %id, error = %e, "unreadable upload.json, discarding upload");
                        let _ = fs::remove_dir_all(&dir);
                        continue;
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Crash during allocation: nothing was acknowledged.
                    let _ = fs::remove_dir_all(&dir);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let log = match fs::read(dir.join("ranges.log")) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            let records = parse_log(&log);
            let mut up = StoredUpload {
                id,
                meta: meta.clone(),
                received: Default::default(),
                finished: Default::default(),
            };
            for &share in &meta.shares {
                if let Ok(bytes) = fs::read(dir.join(format!("{share}.done"))) {
                    if let Ok(m) = serde_json::from_slice::<DoneMarker>(&bytes) {
                        up.finished.insert(share, (m.storage_index, m.length));
                        continue;
                    }
                }
                let file_len = match fs::metadata(dir.join(format!("{share}.data"))) {
                    Ok(m) => m.len(),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
                    Err(e) => return Err(e.into()),
                };
                let mut set = RangeSet::new();
                for &(s, off, len) in &records {
                    if s == share {
                        set.insert(off, off.saturating_add(len));
                    }
                }
                set.truncate(file_len);
                up.received.insert(share, set);
            }
            out.push(up);
        }
        out.sort_by_key(|u| u.id);
        Ok(out)
    }

    fn list_shares(&self, si: &StorageIndex) -> Result<Vec<ShareInfo>, StoreError> {
        let dir = match fs::read_dir(self.share_dir(si)) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in dir {
            let entry = entry?;
            let Some(share) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<ShareNum>().ok())
            else {
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

    fn read_share(
        &self,
        si: &StorageIndex,
        share: ShareNum,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let f = File::open(self.share_dir(si).join(share.to_string()))?;
        Ok(read_at_most(&f, offset, len)?)
    }

    fn space(&self) -> Result<Space, StoreError> {
        let st = rustix::fs::statvfs(&self.root).map_err(io::Error::from)?;
        let total = st.f_blocks.saturating_mul(st.f_frsize);
        let available = st
            .f_bavail
            .saturating_mul(st.f_frsize)
            .saturating_sub(self.options.reserved_space);
        Ok(Space { total, available })
    }

    fn record_advisory(&self, advisory: &Advisory) -> Result<(), StoreError> {
        let mut line = serde_json::to_vec(advisory).map_err(|e| StoreError::Io(e.to_string()))?;
        line.push(b'\n');
        let _guard = self.advisory_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.root.join("advisories.jsonl"))?;
        f.write_all(&line)?;
        f.sync_data()?;
        Ok(())
    }

    fn advisories(&self) -> Result<Vec<Advisory>, StoreError> {
        let f = match File::open(self.root.join("advisories.jsonl")) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for line in io::BufReader::new(f).lines() {
            if let Ok(a) = serde_json::from_str(&line?) {
                out.push(a);
            }
        }
        Ok(out)
    }

    fn share_count(&self) -> Result<u64, StoreError> {
        Ok(self.share_count.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use lafs_proto::AccountId;

    fn meta() -> UploadMeta {
        UploadMeta {
            owner: AccountId([0; 32]),
            shares: vec![ShareNum(0)],
            share_size: None,
            created_unix: 0,
        }
    }

    fn store(dir: &Path, flush_behind: u64) -> FsStore {
        let options = FsOptions {
            flush_behind,
            ..FsOptions::default()
        };
        FsStore::open(dir, options).unwrap()
    }

    #[test]
    fn a_write_crosses_a_step_when_it_reaches_a_multiple_of_it() {
        assert!(crosses_step(0, 4096, 4096));
        assert!(crosses_step(4000, 200, 4096));
        assert!(crosses_step(100, 10_000, 4096));
        assert!(!crosses_step(0, 4095, 4096));
        assert!(!crosses_step(4096, 4095, 4096));
        assert!(!crosses_step(4000, 0, 4096));
        assert!(!crosses_step(0, 1 << 20, 0));
        assert!(!crosses_step(u64::MAX - 1, 1, 4096));
    }

    #[test]
    fn long_incoming_shares_are_flushed_behind_and_commit_whole() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 4096);
        let id = UploadId([7; 16]);
        s.create_upload(id, &meta()).unwrap();
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        for (i, chunk) in data.chunks(3000).enumerate() {
            s.write_incoming(id, ShareNum(0), i as u64 * 3000, chunk)
                .unwrap();
        }
        // 20 000 bytes cross 4 multiples of 4096; a flush still running is not started again.
        let started = s.background_flushes();
        assert!((1..=4).contains(&started), "{started} flushes");
        let si = StorageIndex([3; 32]);
        assert!(s
            .commit_share(id, ShareNum(0), &si, data.len() as u64)
            .unwrap());
        assert_eq!(
            s.read_share(&si, ShareNum(0), 0, data.len() as u64)
                .unwrap(),
            data
        );
        // Settled and forgotten at commit.
        assert!(s.flushes.lock().is_empty());
    }

    #[test]
    fn parts_are_written_back_to_back_and_logged_as_one_range() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 0);
        let id = UploadId([10; 16]);
        s.create_upload(id, &meta()).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 241) as u8).collect();
        s.write_incoming(id, ShareNum(0), 0, &data[..100]).unwrap();
        let parts: Vec<&[u8]> = vec![&data[100..1000], &data[1000..1001], &data[1001..]];
        s.write_incoming_parts(id, ShareNum(0), 100, &parts)
            .unwrap();
        let log = fs::read(s.upload_dir(id).join("ranges.log")).unwrap();
        assert_eq!(
            parse_log(&log),
            vec![(ShareNum(0), 0, 100), (ShareNum(0), 100, 9_900)]
        );
        assert_eq!(
            s.read_incoming(id, ShareNum(0), 0, data.len() as u64)
                .unwrap(),
            data
        );
    }

    #[test]
    fn without_flush_behind_no_background_flush_starts() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 0);
        let id = UploadId([8; 16]);
        s.create_upload(id, &meta()).unwrap();
        s.write_incoming(id, ShareNum(0), 0, &vec![1; 100_000])
            .unwrap();
        assert_eq!(s.background_flushes(), 0);
    }

    #[test]
    fn a_share_whose_background_flush_failed_is_not_committed() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 4096);
        let id = UploadId([9; 16]);
        s.create_upload(id, &meta()).unwrap();
        s.write_incoming(id, ShareNum(0), 0, &[5; 100]).unwrap();
        let path = s.upload_dir(id).join("0.data");
        s.flushes.lock().insert(
            path,
            FlushState {
                running: false,
                failed: Some("Input/output error (os error 5)".into()),
            },
        );
        let si = StorageIndex([4; 32]);
        let err = s.commit_share(id, ShareNum(0), &si, 100).unwrap_err();
        assert!(err.to_string().contains("os error 5"), "{err}");
        assert!(s.list_shares(&si).unwrap().is_empty());
    }

    #[test]
    fn settling_waits_for_the_running_flush_and_reports_its_error() {
        let flushes = Arc::new(Flushes::default());
        let path = PathBuf::from("/nonexistent/0.data");
        flushes.lock().insert(
            path.clone(),
            FlushState {
                running: true,
                failed: None,
            },
        );
        let (f, p) = (Arc::clone(&flushes), path.clone());
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            f.finish(&p, Some(io::Error::other("disk gone")));
        });
        assert_eq!(flushes.settle(&path), Err("disk gone".to_string()));
        t.join().unwrap();
        // Forgotten once reported.
        assert_eq!(flushes.settle(&path), Ok(()));
    }

    #[test]
    fn no_more_than_the_cap_of_flushes_run_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let flushes = Arc::new(Flushes::default());
        for i in 0..MAX_FLUSH_THREADS {
            flushes.lock().insert(
                PathBuf::from(format!("/running/{i}")),
                FlushState {
                    running: true,
                    failed: None,
                },
            );
        }
        let path = dir.path().join("0.data");
        let f = File::create(&path).unwrap();
        flushes.start(&path, &f);
        assert_eq!(flushes.started.load(Ordering::Relaxed), 0);
        assert!(!flushes.lock().contains_key(&path));
        // One ends: the next start runs.
        flushes.finish(Path::new("/running/0"), None);
        flushes.start(&path, &f);
        assert_eq!(flushes.started.load(Ordering::Relaxed), 1);
        assert_eq!(flushes.settle(&path), Ok(()));
    }

    #[test]
    fn removing_an_upload_forgets_its_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 1024);
        let id = UploadId([10; 16]);
        s.create_upload(id, &meta()).unwrap();
        s.write_incoming(id, ShareNum(0), 0, &[1; 5000]).unwrap();
        s.remove_upload(id).unwrap();
        assert!(s.flushes.lock().is_empty());
    }
}
