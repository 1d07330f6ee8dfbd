//! Whole-share verification before a share is filed, driven by `lafs_codec::ShareVerifier`.

use lafs_codec::{IncomingShareHasher, ShareVerifier};
use lafs_proto::{ShareNum, StorageIndex, UploadId};

use crate::store::{ShareStore, StoreError};

/// Why a share could not be verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VerifyError {
    /// The bytes are not a valid share (the codec's error, in words).
    Invalid(String),
    /// The store failed while reading the incoming share.
    Store(StoreError),
}

/// Verifies incoming share `share` of upload `id` (`len` bytes) and returns the storage index
/// its UEB hashes to. The header and blocks hashed as they arrived (`prehashed`) are not read
/// again; the rest is read in the order the verifier asks, and its size is added to
/// `read_back`. Memory: one verifier chunk at a time.
pub(crate) fn verify_incoming(
    store: &dyn ShareStore,
    id: UploadId,
    share: ShareNum,
    len: u64,
    prehashed: IncomingShareHasher,
    read_back: &mut u64,
) -> Result<StorageIndex, VerifyError> {
    let mut v = ShareVerifier::with_prehashed(u16::from(share.0), len, prehashed);
    while let Some(r) = v.next_read() {
        let want = r.end - r.start;
        *read_back += want;
        let data = store
            .read_incoming(id, share, r.start, want)
            .map_err(VerifyError::Store)?;
        if data.len() as u64 != want {
            return Err(VerifyError::Invalid(format!(
                "share {share} is shorter than its declared length {len}"
            )));
        }
        if let Err(e) = v.feed(r.start, &data) {
            return Err(VerifyError::Invalid(e.to_string()));
        }
    }
    match v.result() {
        Some(Ok(verified)) => Ok(verified.storage_index),
        Some(Err(e)) => Err(VerifyError::Invalid(e.to_string())),
        None => Err(VerifyError::Invalid(
            "verifier stopped before the end of the share".into(),
        )),
    }
}
