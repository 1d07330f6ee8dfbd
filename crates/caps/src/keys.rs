//! Keys and indexes carried by caps.

use core::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Tag of the server-selection index derivation (see `docs/spec/caps.md`).
const SELECTION_INDEX_TAG: &str = "lafs/v1/immutable/selection-index";

/// AES-128 key of an immutable file. Compared in constant time, zeroized on drop, and never
/// printed by `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ReadKey([u8; 16]);

impl ReadKey {
    /// Key length in bytes.
    pub const LEN: usize = 16;

    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl PartialEq for ReadKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for ReadKey {}

impl fmt::Debug for ReadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReadKey(<redacted>)")
    }
}

/// Storage index of an immutable file: the tagged SHA-256 hash of its UEB (32 bytes). Public.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageIndex(pub [u8; 32]);

impl fmt::Debug for StorageIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageIndex({})", lafs_hashtree::Hash(self.0).to_hex())
    }
}

/// Server-selection index (16 bytes): decides which servers hold the shares, and is known
/// before encoding starts because it derives from the key. Public.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SelectionIndex(pub [u8; 16]);

impl fmt::Debug for SelectionIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SelectionIndex(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// Derives the server-selection index from a read key:
/// the first 16 bytes of `tagged_hash("lafs/v1/immutable/selection-index", key)`.
/// One-way: the index reveals nothing about the key.
pub fn selection_index_for(key: &ReadKey) -> SelectionIndex {
    let h = lafs_hashtree::tagged_hash(SELECTION_INDEX_TAG, &[key.as_bytes()]);
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.0[..16]);
    SelectionIndex(out)
}
