//! Where shares live: the [`ShareStore`] trait and its implementations.
//!
//! A store holds two kinds of data:
//!
//! * **incoming** shares of upload sessions, addressed by (upload id, share number), written in
//!   any order and invisible to readers;
//! * **finished** shares, addressed by (storage index, share number), visible to readers.
//!
//! [`ShareStore::commit_share`] moves one incoming share to the finished set atomically: a
//! reader (and a restart after a crash at any point) sees either no share or the whole share.
//! Verification happens *before* the commit and is not the store's business.
//!
//! Implementations: [`FsStore`] (the real one), [`MemoryStore`] (tests, ephemeral servers),
//! [`FaultyStore`] (wraps another and fails on command, for crash and disk-full tests).

mod faulty;
mod fs;
mod memory;

use std::collections::BTreeMap;

use lafs_proto::storage::ShareInfo;
use lafs_proto::{AccountId, ShareNum, StorageIndex, UploadId};
use serde::{Deserialize, Serialize};

pub use faulty::{FaultPlan, FaultyStore};
pub use fs::{FsOptions, FsStore, DEFAULT_FLUSH_BEHIND};
pub use memory::MemoryStore;

use crate::ranges::RangeSet;

/// Errors of a share store.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The upload, incoming share or finished share does not exist.
    #[error("not found")]
    NotFound,
    /// The upload id is already in use.
    #[error("already exists")]
    AlreadyExists,
    /// No space left (or quota exhausted). Nothing was committed.
    #[error("storage is full")]
    Full,
    /// Any other IO failure; the message is for the operator's log, not for clients.
    #[error("storage IO error: {0}")]
    Io(String),
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::NotFound => Self::NotFound,
            ErrorKind::AlreadyExists => Self::AlreadyExists,
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => Self::Full,
            _ => Self::Io(e.to_string()),
        }
    }
}

/// What is persisted about an upload session when it is allocated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadMeta {
    /// The account that allocated the upload; only it may write, finish or abort.
    pub owner: AccountId,
    /// Allocated share numbers, ascending, no duplicates.
    pub shares: Vec<ShareNum>,
    /// Declared share size, if any.
    pub share_size: Option<u64>,
    /// Unix seconds at allocation (informational).
    pub created_unix: u64,
}

/// An upload session as found in a store (after a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUpload {
    /// Upload id.
    pub id: UploadId,
    /// Its metadata.
    pub meta: UploadMeta,
    /// Received bytes of each incoming share (only ranges whose bytes are known to be stored).
    pub received: BTreeMap<ShareNum, RangeSet>,
    /// Shares of the upload already committed: storage index and length.
    pub finished: BTreeMap<ShareNum, (StorageIndex, u64)>,
}

/// Space figures in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Total size of the storage.
    pub total: u64,
    /// Bytes still available for new data.
    pub available: u64,
}

/// A corruption advisory, as kept for the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advisory {
    /// Unix seconds when received.
    pub received_unix: u64,
    /// Storage index reported.
    #[serde(with = "lafs_proto::ids::si_text")]
    pub storage_index: StorageIndex,
    /// Share reported.
    pub share: ShareNum,
    /// Account that reported it.
    pub reporter: AccountId,
    /// Whether the server held that share when the report arrived.
    pub held: bool,
    /// The reporter's reason.
    pub reason: String,
}

/// Storage of incoming and finished shares. Methods block (they do file IO); async callers run
/// them on a blocking thread.
///
/// Guarantees every implementation gives:
/// * a finished share is never visible partially, and once `commit_share` returned `Ok` it
///   survives a crash;
/// * `write_incoming` returning `Ok` means the bytes can be read back with `read_incoming`, and
///   if the range is reported by `load_uploads` after a restart, its bytes are stored;
/// * identifiers are typed values, never raw client text, so no path can escape the store.
pub trait ShareStore: Send + Sync + 'static {
    /// A stable identifier for this store, created on first use (the server's default id).
    fn server_id(&self) -> String;

    /// Creates an upload session. Fails with [`StoreError::AlreadyExists`] if the id is in use.
    fn create_upload(&self, id: UploadId, meta: &UploadMeta) -> Result<(), StoreError>;

    /// Writes `data` at `offset` of an incoming share of an existing upload.
    fn write_incoming(
        &self,
        id: UploadId,
        share: ShareNum,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StoreError>;

    /// Writes `parts`, back to back, at `offset` of an incoming share of an existing upload:
    /// the same as one [`ShareStore::write_incoming`] of the parts joined (which is what this
    /// default does when there are several; a store may write them without joining).
    fn write_incoming_parts(
        &self,
        id: UploadId,
        share: ShareNum,
        offset: u64,
        parts: &[&[u8]],
    ) -> Result<(), StoreError> {
        match parts {
            [one] => self.write_incoming(id, share, offset, one),
            parts => self.write_incoming(id, share, offset, &parts.concat()),
        }
    }

    /// Reads `len` bytes at `offset` of an incoming share (fewer only at its end).
    fn read_incoming(
        &self,
        id: UploadId,
        share: ShareNum,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError>;

    /// Files bytes `0..len` of an incoming share as finished share `share` of `si`, atomically
    /// and durably. Returns `false` if that finished share already existed (the incoming copy is
    /// then dropped).
    fn commit_share(
        &self,
        id: UploadId,
        share: ShareNum,
        si: &StorageIndex,
        len: u64,
    ) -> Result<bool, StoreError>;

    /// Files `data`, a whole share already verified by the caller, as finished share `share`
    /// of `si`, atomically and durably, without an upload session (the combined small-share
    /// request). Returns `false` if that share was already held (nothing is written).
    fn store_share(
        &self,
        si: &StorageIndex,
        share: ShareNum,
        data: &[u8],
    ) -> Result<bool, StoreError>;

    /// Deletes an upload session and its incoming data (finished shares stay).
    fn remove_upload(&self, id: UploadId) -> Result<(), StoreError>;

    /// Every upload session the store holds (used at start-up to resume them).
    fn load_uploads(&self) -> Result<Vec<StoredUpload>, StoreError>;

    /// Finished shares held for `si`, ascending by share number.
    fn list_shares(&self, si: &StorageIndex) -> Result<Vec<ShareInfo>, StoreError>;

    /// Reads `len` bytes at `offset` of a finished share (fewer only at its end).
    fn read_share(
        &self,
        si: &StorageIndex,
        share: ShareNum,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError>;

    /// Current space figures.
    fn space(&self) -> Result<Space, StoreError>;

    /// Keeps a corruption advisory for the operator.
    fn record_advisory(&self, advisory: &Advisory) -> Result<(), StoreError>;

    /// Advisories kept so far (oldest first).
    fn advisories(&self) -> Result<Vec<Advisory>, StoreError>;

    /// Number of finished shares held (for metrics; may be approximate for large stores).
    fn share_count(&self) -> Result<u64, StoreError>;
}

/// Generates a random 32-byte id in base32 (for [`ShareStore::server_id`]).
pub(crate) fn random_server_id() -> Result<String, StoreError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| StoreError::Io(format!("no randomness: {e}")))?;
    Ok(lafs_proto::ids::base32_encode(&b))
}
