//! Tagged SHA-256.

use core::fmt;

use sha2::{Digest, Sha256};

/// A 32-byte SHA-256 output. Hash values in this system are public (they are commitments, not
/// secrets), so ordinary equality is used to compare them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// Number of bytes in a hash.
    pub const LEN: usize = 32;

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads a hash from exactly 32 bytes; `None` for any other length.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        use fmt::Write;
        let mut s = String::with_capacity(64);
        for b in self.0 {
            // Writing to a String cannot fail.
            let _ = write!(s, "{b:02x}");
        }
        s
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl From<[u8; 32]> for Hash {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl AsRef<[u8]> for Hash {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Streaming tagged SHA-256: `SHA-256(u8(len(tag)) || tag || data)`.
///
/// The one-byte length prefix makes the encoding of (tag, data) unambiguous, so two different
/// tags can never produce the same hash input. Tags are ASCII strings of at most 255 bytes; by
/// convention they look like `lafs/v1/<purpose>`.
#[derive(Clone)]
pub struct TaggedHasher {
    inner: Sha256,
}

impl TaggedHasher {
    /// Starts a hash under `tag`.
    ///
    /// # Panics
    /// If `tag` is longer than 255 bytes. Tags are compile-time constants of this project, so
    /// this is a programming error, never a reaction to input.
    pub fn new(tag: &str) -> Self {
        let len = u8::try_from(tag.len()).unwrap_or_else(|_| panic!("hash tag too long: {tag}"));
        let mut inner = Sha256::new();
        inner.update([len]);
        inner.update(tag.as_bytes());
        Self { inner }
    }

    /// Feeds more data.
    pub fn update(&mut self, data: &[u8]) -> &mut Self {
        self.inner.update(data);
        self
    }

    /// Finishes the hash.
    pub fn finalize(self) -> Hash {
        Hash(self.inner.finalize().into())
    }
}

/// Tagged SHA-256 of the concatenation of `parts` (see [`TaggedHasher`]).
pub fn tagged_hash(tag: &str, parts: &[&[u8]]) -> Hash {
    let mut h = TaggedHasher::new(tag);
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_is_length_prefixed() {
        // ("ab", "c") and ("a", "bc") must differ.
        assert_ne!(tagged_hash("ab", &[b"c"]), tagged_hash("a", &[b"bc"]));
        // Known answer: SHA-256(0x03 || "tag" || "data").
        let mut raw = Sha256::new();
        raw.update(b"\x03tagdata");
        let want: [u8; 32] = raw.finalize().into();
        assert_eq!(tagged_hash("tag", &[b"da", b"ta"]).0, want);
    }

    #[test]
    fn hex_and_slice() {
        let h = tagged_hash("x", &[]);
        assert_eq!(h.to_hex().len(), 64);
        assert_eq!(Hash::from_slice(h.as_bytes()), Some(h));
        assert_eq!(Hash::from_slice(&[0; 31]), None);
    }
}
