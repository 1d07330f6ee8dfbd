//! The cap kinds: immutable readcap, immutable verifycap, literal cap.

use core::fmt;
use core::str::FromStr;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::text::write_text;
use crate::{selection_index_for, Cap, CapKind, Error, ReadKey, SelectionIndex, StorageIndex};

/// Payload length of both immutable kinds, in bytes (text and binary).
pub(crate) const IMMUTABLE_PAYLOAD_LEN: usize = 48;

/// Read capability of an immutable file: the AES-128 key and the storage index (UEB hash).
///
/// Grants: reading the plaintext, and everything the [`ImmutableVerifyCap`] grants.
///
/// Text form `lafsr1…` (89 characters), binary form `0x01 || key(16) || storage_index(32)`.
/// The key is printed only by [`Display`](fmt::Display) (the text form, which *is* the secret);
/// `Debug` redacts it, and the key is zeroized on drop. [`Self::to_bytes`] returns a plain
/// `Vec` that holds the key: callers that keep it should zeroize it.
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
    ///
    /// There is deliberately no way back: the verifycap holds no key, and its selection index
    /// is a one-way hash of the key, so no verifycap holder can compute a readcap.
    pub fn verify_cap(&self) -> ImmutableVerifyCap {
        ImmutableVerifyCap::new(self.storage_index, self.selection_index())
    }

    /// Length of the binary form in bytes (always 49).
    pub const BINARY_LEN: usize = 1 + IMMUTABLE_PAYLOAD_LEN;

    /// Appends the binary form (`0x01 || key || storage_index`) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.push(CapKind::ImmutableRead.kind_byte());
        out.extend_from_slice(self.key.as_bytes());
        out.extend_from_slice(&self.storage_index.0);
    }

    /// The binary form (49 bytes). It contains the key.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::BINARY_LEN);
        self.write_to(&mut out);
        out
    }

    /// Parses exactly one binary readcap; any other kind is [`Error::WrongKind`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        match Cap::from_bytes(bytes)? {
            Cap::ImmutableRead(c) => Ok(c),
            other => Err(Error::WrongKind {
                expected: CapKind::ImmutableRead,
                found: other.kind(),
            }),
        }
    }

    /// Builds the cap from its payload (`key || storage_index`), checking the length.
    pub(crate) fn from_payload(payload: &[u8]) -> Result<Self, Error> {
        let kind = CapKind::ImmutableRead;
        let wrong = Error::WrongPayloadLength {
            kind,
            expected: IMMUTABLE_PAYLOAD_LEN,
            found: payload.len(),
        };
        let Some((key, rest)) = payload.split_first_chunk::<16>() else {
            return Err(wrong);
        };
        let Ok(si) = <[u8; 32]>::try_from(rest) else {
            return Err(wrong);
        };
        let mut key = *key;
        let cap = Self::new(ReadKey::from_bytes(key), StorageIndex(si));
        key.zeroize();
        Ok(cap)
    }
}

impl fmt::Debug for ImmutableReadCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImmutableReadCap")
            .field("key", &"<redacted>")
            .field("storage_index", &self.storage_index)
            .finish()
    }
}

/// The text form `lafsr1…`. This prints the key: it is the secret that grants reading.
impl fmt::Display for ImmutableReadCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut payload = Zeroizing::new([0u8; IMMUTABLE_PAYLOAD_LEN]);
        payload[..16].copy_from_slice(self.key.as_bytes());
        payload[16..].copy_from_slice(&self.storage_index.0);
        write_text(f, CapKind::ImmutableRead, &payload[..])
    }
}

/// Parses the text form; a valid cap of another kind is [`Error::WrongKind`].
impl FromStr for ImmutableReadCap {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.parse::<Cap>()? {
            Cap::ImmutableRead(c) => Ok(c),
            other => Err(Error::WrongKind {
                expected: CapKind::ImmutableRead,
                found: other.kind(),
            }),
        }
    }
}

/// Verify capability of an immutable file: storage index and server-selection index.
///
/// Grants: finding the shares (selection index), checking that they belong to the file and are
/// intact (the storage index is the UEB hash, which commits to every hash tree), and repairing
/// them. Does not grant reading: it holds no key.
///
/// Text form `lafsv1…` (89 characters), binary form
/// `0x02 || storage_index(32) || selection_index(16)`. Nothing in it is secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ImmutableVerifyCap {
    storage_index: StorageIndex,
    selection_index: SelectionIndex,
}

impl ImmutableVerifyCap {
    /// Builds a verifycap from its parts.
    pub fn new(storage_index: StorageIndex, selection_index: SelectionIndex) -> Self {
        Self {
            storage_index,
            selection_index,
        }
    }

    /// The storage index (UEB hash).
    pub fn storage_index(&self) -> &StorageIndex {
        &self.storage_index
    }

    /// The server-selection index.
    pub fn selection_index(&self) -> &SelectionIndex {
        &self.selection_index
    }

    /// Length of the binary form in bytes (always 49).
    pub const BINARY_LEN: usize = 1 + IMMUTABLE_PAYLOAD_LEN;

    /// Appends the binary form (`0x02 || storage_index || selection_index`) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.push(CapKind::ImmutableVerify.kind_byte());
        out.extend_from_slice(&self.storage_index.0);
        out.extend_from_slice(&self.selection_index.0);
    }

    /// The binary form (49 bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::BINARY_LEN);
        self.write_to(&mut out);
        out
    }

    /// Parses exactly one binary verifycap; any other kind is [`Error::WrongKind`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        match Cap::from_bytes(bytes)? {
            Cap::ImmutableVerify(c) => Ok(c),
            other => Err(Error::WrongKind {
                expected: CapKind::ImmutableVerify,
                found: other.kind(),
            }),
        }
    }

    /// Builds the cap from its payload (`storage_index || selection_index`), checking the
    /// length.
    pub(crate) fn from_payload(payload: &[u8]) -> Result<Self, Error> {
        let kind = CapKind::ImmutableVerify;
        let wrong = Error::WrongPayloadLength {
            kind,
            expected: IMMUTABLE_PAYLOAD_LEN,
            found: payload.len(),
        };
        let Some((si, rest)) = payload.split_first_chunk::<32>() else {
            return Err(wrong);
        };
        let Ok(sel) = <[u8; 16]>::try_from(rest) else {
            return Err(wrong);
        };
        Ok(Self::new(StorageIndex(*si), SelectionIndex(sel)))
    }
}

/// The text form `lafsv1…`.
impl fmt::Display for ImmutableVerifyCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut payload = [0u8; IMMUTABLE_PAYLOAD_LEN];
        payload[..32].copy_from_slice(&self.storage_index.0);
        payload[32..].copy_from_slice(&self.selection_index.0);
        write_text(f, CapKind::ImmutableVerify, &payload)
    }
}

/// Parses the text form; a valid cap of another kind (a readcap, say) is [`Error::WrongKind`].
impl FromStr for ImmutableVerifyCap {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.parse::<Cap>()? {
            Cap::ImmutableVerify(c) => Ok(c),
            other => Err(Error::WrongKind {
                expected: CapKind::ImmutableVerify,
                found: other.kind(),
            }),
        }
    }
}

/// A tiny file whose bytes live inside the cap ("LIT"). Reading it needs no server.
///
/// Grants: reading the file, which is the cap's own content (so the cap is as secret as the
/// file). Text form `lafsl1…` (12 to 100 characters), binary form `0x03 || len(u8) || data`.
/// `Debug` prints only the length; the data is zeroized on drop.
#[derive(Clone, PartialEq, Eq, Hash, Zeroize, ZeroizeOnDrop)]
pub struct LiteralCap {
    data: Vec<u8>,
}

impl LiteralCap {
    /// Largest file stored as a literal cap, in bytes.
    pub const MAX_LEN: usize = 55;

    /// Wraps `data`, which must be at most [`Self::MAX_LEN`] bytes.
    pub fn new(data: Vec<u8>) -> Result<Self, Error> {
        if data.len() > Self::MAX_LEN {
            return Err(Error::LiteralTooLong {
                len: data.len(),
                max: Self::MAX_LEN,
            });
        }
        Ok(Self { data })
    }

    /// The file's contents.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Length of the binary form in bytes: 2 + data length.
    pub fn binary_len(&self) -> usize {
        2 + self.data.len()
    }

    /// Appends the binary form (`0x03 || len || data`) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.push(CapKind::Literal.kind_byte());
        // `new` and every parser keep `data.len() <= MAX_LEN = 55`, so this never saturates.
        out.push(u8::try_from(self.data.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(&self.data);
    }

    /// The binary form (2 to 57 bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.binary_len());
        self.write_to(&mut out);
        out
    }

    /// Parses exactly one binary literal cap; any other kind is [`Error::WrongKind`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        match Cap::from_bytes(bytes)? {
            Cap::Literal(c) => Ok(c),
            other => Err(Error::WrongKind {
                expected: CapKind::Literal,
                found: other.kind(),
            }),
        }
    }
}

impl fmt::Debug for LiteralCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiteralCap")
            .field("len", &self.data.len())
            .finish_non_exhaustive()
    }
}

/// The text form `lafsl1…`. This prints the file's content (bech32-encoded).
impl fmt::Display for LiteralCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_text(f, CapKind::Literal, &self.data)
    }
}

/// Parses the text form; a valid cap of another kind is [`Error::WrongKind`].
impl FromStr for LiteralCap {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.parse::<Cap>()? {
            Cap::Literal(c) => Ok(c),
            other => Err(Error::WrongKind {
                expected: CapKind::Literal,
                found: other.kind(),
            }),
        }
    }
}
