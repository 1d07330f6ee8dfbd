//! Capabilities ("caps"): the only access control in lafs.
//!
//! A cap is a short string (or a compact binary value) that both *names* a file and *grants*
//! some authority over it. Authority only flows downward: from a readcap anyone can derive the
//! verifycap, never the reverse.
//!
//! | kind | grants | text prefix |
//! |---|---|---|
//! | [`ImmutableReadCap`] | read (decrypt) and verify an immutable file | `lafsr1` |
//! | [`ImmutableVerifyCap`] | find, verify and repair its shares; no plaintext | `lafsv1` |
//! | [`LiteralCap`] | a tiny file stored inside the cap itself | `lafsl1` |
//!
//! Formats are specified in `docs/spec/caps.md`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod keys;

pub use keys::{selection_index_for, ReadKey, SelectionIndex, StorageIndex};

/// Everything that can go wrong when parsing or building a cap.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A literal cap's data is longer than [`LiteralCap::MAX_LEN`].
    #[error("literal data of {len} bytes is longer than the {max}-byte limit")]
    LiteralTooLong {
        /// Length given.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Read capability of an immutable file: the AES-128 key and the storage index (UEB hash).
///
/// Grants: reading the plaintext, and everything the [`ImmutableVerifyCap`] grants.
#[derive(Clone, PartialEq, Eq)]
pub struct ImmutableReadCap {
    key: ReadKey,
    storage_index: StorageIndex,
}

impl ImmutableReadCap {
    /// Builds a readcap from its parts.
    pub fn new(key: ReadKey, storage_index: StorageIndex) -> Self {
        Self { key, storage_index }
    }

    /// The file's encryption key.
    pub fn key(&self) -> &ReadKey {
        &self.key
    }

    /// The storage index: the hash of the file's UEB, under which servers file its shares.
    pub fn storage_index(&self) -> &StorageIndex {
        &self.storage_index
    }

    /// The server-selection index, derived from the key.
    pub fn selection_index(&self) -> SelectionIndex {
        selection_index_for(&self.key)
    }

    /// The verifycap of the same file (one-way derivation).
    pub fn verify_cap(&self) -> ImmutableVerifyCap {
        ImmutableVerifyCap::new(self.storage_index, self.selection_index())
    }
}

impl core::fmt::Debug for ImmutableReadCap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ImmutableReadCap")
            .field("key", &"<redacted>")
            .field("storage_index", &self.storage_index)
            .finish()
    }
}

/// Verify capability of an immutable file: storage index and server-selection index.
///
/// Grants: finding the shares (selection index), checking that they belong to the file and are
/// intact (the storage index is the UEB hash, which commits to every hash tree), and repairing
/// them. Does not grant reading: it holds no key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ImmutableVerifyCap {
    storage_index: StorageIndex,
    selection_index: SelectionIndex,
}

impl ImmutableVerifyCap {
    /// Builds a verifycap from its parts.
    pub fn new(storage_index: StorageIndex, selection_index: SelectionIndex) -> Self {
        Self { storage_index, selection_index }
    }

    /// The storage index (UEB hash).
    pub fn storage_index(&self) -> &StorageIndex {
        &self.storage_index
    }

    /// The server-selection index.
    pub fn selection_index(&self) -> &SelectionIndex {
        &self.selection_index
    }
}

/// A tiny file whose bytes live inside the cap ("LIT"). Reading it needs no server.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LiteralCap {
    data: Vec<u8>,
}

impl LiteralCap {
    /// Largest file stored as a literal cap, in bytes.
    pub const MAX_LEN: usize = 55;

    /// Wraps `data`, which must be at most [`Self::MAX_LEN`] bytes.
    pub fn new(data: Vec<u8>) -> Result<Self, Error> {
        if data.len() > Self::MAX_LEN {
            return Err(Error::LiteralTooLong { len: data.len(), max: Self::MAX_LEN });
        }
        Ok(Self { data })
    }

    /// The file's contents.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
}
