//! Caps of mutable files and directories: keys, derivation, and the seven mutable kinds, plus
//! the three immutable-directory kinds.
//!
//! Derivation (one way only, `docs/spec/caps.md`, "Mutable and directory caps"):
//!
//! ```text
//! seed (32, the writecap) ──ed25519──▶ public key (32) ──H──▶ storage index (32)
//!   │
//!   └─H──▶ read key R (16) ──H──▶ traverse key T (16)   (directories only)
//! ```

use core::fmt;
use core::str::FromStr;

use ed25519_dalek::{SigningKey, VerifyingKey};
use lafs_hashtree::tagged_hash;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::text::write_text;
use crate::{selection_index_for, Cap, CapKind, Error, ReadKey, SelectionIndex, StorageIndex};

/// Tag of the read-key derivation from a mutable seed.
pub const MUTABLE_READ_KEY_TAG: &str = "lafs/v1/mutable/read-key";
/// Tag of the traverse-key derivation from a mutable directory's read key.
pub const MUTABLE_TRAVERSE_KEY_TAG: &str = "lafs/v1/mutable/traverse-key";
/// Tag of the storage-index derivation from a mutable public key.
pub const MUTABLE_STORAGE_INDEX_TAG: &str = "lafs/v1/mutable/storage-index";
/// Tag of the traverse-key derivation from an immutable directory's read key.
pub const IMMUTABLE_DIR_TRAVERSE_KEY_TAG: &str = "lafs/v1/immutable-dir/traverse-key";

fn first16(tag: &str, data: &[u8]) -> [u8; 16] {
    let h = tagged_hash(tag, &[data]);
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.0[..16]);
    out
}

/// The 32-byte Ed25519 seed of a mutable file or directory: the whole write authority.
/// Compared in constant time, zeroized on drop, never printed by `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SigningSeed([u8; 32]);

impl SigningSeed {
    /// Seed length in bytes.
    pub const LEN: usize = 32;

    /// Wraps raw seed bytes (any 32 bytes are a valid Ed25519 seed).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw seed bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The Ed25519 signing key of this seed (RFC 8032 key generation).
    pub fn signing_key(&self) -> SigningKey {
        SigningKey::from_bytes(&self.0)
    }

    /// The public key (one scalar multiplication, about 20 µs).
    pub fn public_key(&self) -> MutablePublicKey {
        MutablePublicKey(self.signing_key().verifying_key().to_bytes())
    }

    /// The read key: `tagged_hash("lafs/v1/mutable/read-key", seed)[0..16]`. One-way.
    pub fn read_key(&self) -> ReadKey {
        let mut k = first16(MUTABLE_READ_KEY_TAG, &self.0);
        let key = ReadKey::from_bytes(k);
        k.zeroize();
        key
    }
}

impl PartialEq for SigningSeed {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SigningSeed {}

impl fmt::Debug for SigningSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSeed(<redacted>)")
    }
}

/// The 16-byte traverse key of a directory: decrypts a directory's index and traversal column
/// (children's traversal or verify caps), never its names, metadata or read caps.
/// Compared in constant time, zeroized on drop, never printed by `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct TraverseKey([u8; 16]);

impl TraverseKey {
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

    /// Traverse key of a mutable directory: `tagged_hash("lafs/v1/mutable/traverse-key", R)[0..16]`.
    pub fn for_mutable_dir(read_key: &ReadKey) -> Self {
        Self(first16(MUTABLE_TRAVERSE_KEY_TAG, read_key.as_bytes()))
    }

    /// Traverse key of an immutable directory:
    /// `tagged_hash("lafs/v1/immutable-dir/traverse-key", R)[0..16]`.
    pub fn for_immutable_dir(read_key: &ReadKey) -> Self {
        Self(first16(IMMUTABLE_DIR_TRAVERSE_KEY_TAG, read_key.as_bytes()))
    }
}

impl PartialEq for TraverseKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for TraverseKey {}

impl fmt::Debug for TraverseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TraverseKey(<redacted>)")
    }
}

/// The Ed25519 public key of a mutable file or directory (32 bytes, a valid compressed point:
/// every constructor checks it). Public: it is the verifycap.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MutablePublicKey([u8; 32]);

impl MutablePublicKey {
    /// Key length in bytes.
    pub const LEN: usize = 32;

    /// Checks that `bytes` decode to an Ed25519 point.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, Error> {
        VerifyingKey::from_bytes(&bytes).map_err(|_| Error::InvalidPublicKey)?;
        Ok(Self(bytes))
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key as an `ed25519-dalek` verifying key.
    pub fn verifying_key(&self) -> Result<VerifyingKey, Error> {
        VerifyingKey::from_bytes(&self.0).map_err(|_| Error::InvalidPublicKey)
    }

    /// The storage index: `tagged_hash("lafs/v1/mutable/storage-index", public key)`, known
    /// from the first write on, so it is also the server-selection index.
    pub fn storage_index(&self) -> StorageIndex {
        StorageIndex(tagged_hash(MUTABLE_STORAGE_INDEX_TAG, &[&self.0]).0)
    }
}

impl fmt::Debug for MutablePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MutablePublicKey({})",
            lafs_hashtree::Hash(self.0).to_hex()
        )
    }
}

/// Implements the binary form, text form and typed parsers of a cap kind from its
/// `payload`/`from_payload` functions.
macro_rules! cap_forms {
    ($ty:ident, $variant:ident, $len:expr) => {
        impl $ty {
            /// Payload length in bytes (binary form = kind byte + payload; the text form
            /// encodes the payload).
            pub const PAYLOAD_LEN: usize = $len;
            /// Length of the binary form in bytes.
            pub const BINARY_LEN: usize = 1 + $len;

            /// Appends the binary form (kind byte, payload) to `out`.
            pub fn write_to(&self, out: &mut Vec<u8>) {
                out.push(CapKind::$variant.kind_byte());
                out.extend_from_slice(&self.payload()[..]);
            }

            /// The binary form. For secret kinds it holds the secret: zeroize it if kept.
            pub fn to_bytes(&self) -> Vec<u8> {
                let mut out = Vec::with_capacity(Self::BINARY_LEN);
                self.write_to(&mut out);
                out
            }

            /// Parses exactly one binary cap of this kind; another kind is
            /// [`Error::WrongKind`].
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
                match Cap::from_bytes(bytes)? {
                    Cap::$variant(c) => Ok(c),
                    other => Err(Error::WrongKind {
                        expected: CapKind::$variant,
                        found: other.kind(),
                    }),
                }
            }
        }

        /// The text form. For secret kinds this prints the secret: it *is* the capability.
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_text(f, CapKind::$variant, &self.payload()[..])
            }
        }

        /// Parses the text form; a valid cap of another kind is [`Error::WrongKind`].
        impl FromStr for $ty {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self, Error> {
                match s.parse::<Cap>()? {
                    Cap::$variant(c) => Ok(c),
                    other => Err(Error::WrongKind {
                        expected: CapKind::$variant,
                        found: other.kind(),
                    }),
                }
            }
        }

        impl From<$ty> for Cap {
            fn from(c: $ty) -> Self {
                Self::$variant(c)
            }
        }
    };
}

fn wrong_len(kind: CapKind, expected: usize, found: usize) -> Error {
    Error::WrongPayloadLength {
        kind,
        expected,
        found,
    }
}

fn seed_from_payload(
    kind: CapKind,
    payload: &[u8],
) -> Result<(SigningSeed, MutablePublicKey), Error> {
    let Ok(mut raw) = <[u8; 32]>::try_from(payload) else {
        return Err(wrong_len(kind, 32, payload.len()));
    };
    let seed = SigningSeed::from_bytes(raw);
    raw.zeroize();
    let public = seed.public_key();
    Ok((seed, public))
}

fn key_and_public(kind: CapKind, payload: &[u8]) -> Result<([u8; 16], MutablePublicKey), Error> {
    let wrong = || wrong_len(kind, 48, payload.len());
    let Some((key, rest)) = payload.split_first_chunk::<16>() else {
        return Err(wrong());
    };
    let Ok(pk) = <[u8; 32]>::try_from(rest) else {
        return Err(wrong());
    };
    Ok((*key, MutablePublicKey::from_bytes(pk)?))
}

fn public_from_payload(kind: CapKind, payload: &[u8]) -> Result<MutablePublicKey, Error> {
    let Ok(pk) = <[u8; 32]>::try_from(payload) else {
        return Err(wrong_len(kind, 32, payload.len()));
    };
    MutablePublicKey::from_bytes(pk)
}

fn concat(a: &[u8], b: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut v = Zeroizing::new(Vec::with_capacity(a.len() + b.len()));
    v.extend_from_slice(a);
    v.extend_from_slice(b);
    v
}

// ---------------------------------------------------------------------------------------------
// Mutable files

/// Write capability of a mutable file: its Ed25519 seed.
///
/// Grants: publishing new versions (signing shares), and everything the [`MutableReadCap`]
/// grants. Text `lafsmw1…` (65 characters), binary `0x11 || seed(32)`.
#[derive(Clone, PartialEq, Eq)]
pub struct MutableWriteCap {
    seed: SigningSeed,
    public: MutablePublicKey,
}

impl MutableWriteCap {
    /// Builds the writecap of a seed (computes the public key once).
    pub fn new(seed: SigningSeed) -> Self {
        let public = seed.public_key();
        Self { seed, public }
    }

    /// The seed (the signing secret).
    pub fn seed(&self) -> &SigningSeed {
        &self.seed
    }

    /// The public key.
    pub fn public_key(&self) -> &MutablePublicKey {
        &self.public
    }

    /// The storage index.
    pub fn storage_index(&self) -> StorageIndex {
        self.public.storage_index()
    }

    /// The readcap (one-way).
    pub fn read_cap(&self) -> MutableReadCap {
        MutableReadCap::new(self.seed.read_key(), self.public)
    }

    /// The verifycap (one-way).
    pub fn verify_cap(&self) -> MutableVerifyCap {
        MutableVerifyCap::new(self.public)
    }

    fn payload(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.seed.as_bytes().to_vec())
    }

    pub(crate) fn from_payload(payload: &[u8]) -> Result<Self, Error> {
        let (seed, public) = seed_from_payload(CapKind::MutableWrite, payload)?;
        Ok(Self { seed, public })
    }
}

impl fmt::Debug for MutableWriteCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MutableWriteCap")
            .field("seed", &"<redacted>")
            .field("public", &self.public)
            .finish()
    }
}

cap_forms!(MutableWriteCap, MutableWrite, 32);

/// Read capability of a mutable file: read key and public key.
///
/// Grants: reading any version (decrypting), and everything the [`MutableVerifyCap`] grants.
/// It cannot sign, so it cannot publish. Text `lafsmr1…` (90 characters), binary
/// `0x12 || read key(16) || public key(32)`.
#[derive(Clone, PartialEq, Eq)]
pub struct MutableReadCap {
    read_key: ReadKey,
    public: MutablePublicKey,
}

impl MutableReadCap {
    /// Builds a readcap from its parts.
    pub fn new(read_key: ReadKey, public: MutablePublicKey) -> Self {
        Self { read_key, public }
    }

    /// The read key.
    pub fn read_key(&self) -> &ReadKey {
        &self.read_key
    }

    /// The public key.
    pub fn public_key(&self) -> &MutablePublicKey {
        &self.public
    }

    /// The storage index.
    pub fn storage_index(&self) -> StorageIndex {
        self.public.storage_index()
    }

    /// The verifycap (one-way).
    pub fn verify_cap(&self) -> MutableVerifyCap {
        MutableVerifyCap::new(self.public)
    }

    fn payload(&self) -> Zeroizing<Vec<u8>> {
        concat(self.read_key.as_bytes(), self.public.as_bytes())
    }

    pub(crate) fn from_payload(payload: &[u8]) -> Result<Self, Error> {
        let (mut k, public) = key_and_public(CapKind::MutableRead, payload)?;
        let cap = Self::new(ReadKey::from_bytes(k), public);
        k.zeroize();
        Ok(cap)
    }
}

impl fmt::Debug for MutableReadCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MutableReadCap")
            .field("read_key", &"<redacted>")
            .field("public", &self.public)
            .finish()
    }
}

cap_forms!(MutableReadCap, MutableRead, 48);

/// Verify capability of a mutable file: its public key.
///
/// Grants: finding the shares (storage index = hash of the key), checking every signature and
/// hash, repairing (re-uploading existing signed shares). No key: it cannot read or write.
/// Text `lafsmv1…` (65 characters), binary `0x13 || public key(32)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MutableVerifyCap {
    public: MutablePublicKey,
}

impl MutableVerifyCap {
    /// Builds a verifycap.
    pub fn new(public: MutablePublicKey) -> Self {
        Self { public }
    }

    /// The public key.
    pub fn public_key(&self) -> &MutablePublicKey {
        &self.public
    }

    /// The storage index.
    pub fn storage_index(&self) -> StorageIndex {
        self.public.storage_index()
    }

    fn payload(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.public.as_bytes().to_vec())
    }

    pub(crate) fn from_payload(payload: &[u8]) -> Result<Self, Error> {
        Ok(Self::new(public_from_payload(
            CapKind::MutableVerify,
            payload,
        )?))
    }
}

cap_forms!(MutableVerifyCap, MutableVerify, 32);

// ---------------------------------------------------------------------------------------------
// Mutable directories

/// Write capability of a mutable directory: the seed of the mutable file holding it.
///
/// Grants: changing entries (and reading the children's writecaps), and everything the
/// [`DirReadCap`] grants. Text `lafsdw1…` (65 characters), binary `0x21 || seed(32)`.
#[derive(Clone, PartialEq, Eq)]
pub struct DirWriteCap {
    seed: SigningSeed,
    public: MutablePublicKey,
}

impl DirWriteCap {
    /// Builds the writecap of a seed (computes the public key once).
    pub fn new(seed: SigningSeed) -> Self {
        let public = seed.public_key();
        Self { seed, public }
    }

    /// The seed.
    pub fn seed(&self) -> &SigningSeed {
        &self.seed
    }

    /// The public key.
    pub fn public_key(&self) -> &MutablePublicKey {
        &self.public
    }

    /// The storage index.
    pub fn storage_index(&self) -> StorageIndex {
        self.public.storage_index()
    }

    /// The readcap (one-way).
    pub fn read_cap(&self) -> DirReadCap {
        DirReadCap::new(self.seed.read_key(), self.public)
    }

    /// The traversal cap (one-way).
    pub fn traverse_cap(&self) -> DirTraverseCap {
        self.read_cap().traverse_cap()
    }

    /// The verifycap (one-way).
    pub fn verify_cap(&self) -> DirVerifyCap {
        DirVerifyCap::new(self.public)
    }

    fn payload(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.seed.as_bytes().to_vec())
    }

    pub(crate) fn from_payload(payload: &[u8]) -> Result<Self, Error> {
        let (seed, public) = seed_from_payload(CapKind::DirWrite, payload)?;
        Ok(Self { seed, public })
    }
}

impl fmt::Debug for DirWriteCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirWriteCap")
            .field("seed", &"<redacted>")
            .field("public", &self.public)
            .finish()
    }
}

cap_forms!(DirWriteCap, DirWrite, 32);

/// Read capability of a mutable directory: read key and public key.
///
/// Grants: listing names, metadata and the children's read caps (never their writecaps), and
/// everything the [`DirTraverseCap`] grants. Text `lafsdr1…` (90 characters), binary
/// `0x22 || read key(16) || public key(32)`.
#[derive(Clone, PartialEq, Eq)]
pub struct DirReadCap {
    read_key: ReadKey,
    public: MutablePublicKey,
}

impl DirReadCap {
    /// Builds a readcap from its parts.
    pub fn new(read_key: ReadKey, public: MutablePublicKey) -> Self {
        Self { read_key, public }
    }

    /// The read key.
    pub fn read_key(&self) -> &ReadKey {
        &self.read_key
    }

    /// The public key.
    pub fn public_key(&self) -> &MutablePublicKey {
        &self.public
    }

    /// The storage index.
    pub fn storage_index(&self) -> StorageIndex {
        self.public.storage_index()
    }

    /// The traversal cap (one-way).
    pub fn traverse_cap(&self) -> DirTraverseCap {
        DirTraverseCap::new(TraverseKey::for_mutable_dir(&self.read_key), self.public)
    }

    /// The verifycap (one-way).
    pub fn verify_cap(&self) -> DirVerifyCap {
        DirVerifyCap::new(self.public)
    }

    fn payload(&self) -> Zeroizing<Vec<u8>> {
        concat(self.read_key.as_bytes(), self.public.as_bytes())
    }

    pub(crate) fn from_payload(payload: &[u8]) -> Result<Self, Error> {
        let (mut k, public) = key_and_public(CapKind::DirRead, payload)?;
        let cap = Self::new(ReadKey::from_bytes(k), public);
        k.zeroize();
        Ok(cap)
    }
}

impl fmt::Debug for DirReadCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirReadCap")
            .field("read_key", &"<redacted>")
            .field("public", &self.public)
            .finish()
    }
}

cap_forms!(DirReadCap, DirRead, 48);

/// Traversal capability of a mutable directory: traverse key and public key.
///
/// Grants: reading the directory's index and its children's traversal caps (directories) or
/// verifycaps (files), hence walking the whole tree below it for checking, repair and lease
/// renewal, and everything the [`DirVerifyCap`] grants. Not names, metadata, contents or any
/// readcap. Text `lafsdt1…` (90 characters), binary `0x23 || traverse key(16) || public key(32)`.
#[derive(Clone, PartialEq, Eq)]
pub struct DirTraverseCap {
    traverse_key: TraverseKey,
    public: MutablePublicKey,
}

impl DirTraverseCap {
    /// Builds a traversal cap from its parts.
    pub fn new(traverse_key: TraverseKey, public: MutablePublicKey) -> Self {
        Self {
            traverse_key,
            public,
        }
    }

    /// The traverse key.
    pub fn traverse_key(&self) -> &TraverseKey {
        &self.traverse_key
    }

    /// The public key.
    pub fn public_key(&self) -> &MutablePublicKey {
        &self.public
    }

    /// The storage index.
    pub fn storage_index(&self) -> StorageIndex {
        self.public.storage_index()
    }

    /// The verifycap (one-way).
    pub fn verify_cap(&self) -> DirVerifyCap {
        DirVerifyCap::new(self.public)
    }

    fn payload(&self) -> Zeroizing<Vec<u8>> {
        concat(self.traverse_key.as_bytes(), self.public.as_bytes())
    }

    pub(crate) fn from_payload(payload: &[u8]) -> Result<Self, Error> {
        let (mut k, public) = key_and_public(CapKind::DirTraverse, payload)?;
        let cap = Self::new(TraverseKey::from_bytes(k), public);
        k.zeroize();
        Ok(cap)
    }
}

impl fmt::Debug for DirTraverseCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirTraverseCap")
            .field("traverse_key", &"<redacted>")
            .field("public", &self.public)
            .finish()
    }
}

cap_forms!(DirTraverseCap, DirTraverse, 48);

/// Verify capability of a mutable directory: its public key.
///
/// Grants what a [`MutableVerifyCap`] grants for the file holding the directory, and says that
/// the file is a directory. Text `lafsdv1…` (65 characters), binary `0x24 || public key(32)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DirVerifyCap {
    public: MutablePublicKey,
}

impl DirVerifyCap {
    /// Builds a verifycap.
    pub fn new(public: MutablePublicKey) -> Self {
        Self { public }
    }

    /// The public key.
    pub fn public_key(&self) -> &MutablePublicKey {
        &self.public
    }

    /// The storage index.
    pub fn storage_index(&self) -> StorageIndex {
        self.public.storage_index()
    }

    /// The verifycap of the mutable file holding the directory (same key).
    pub fn file_verify_cap(&self) -> MutableVerifyCap {
        MutableVerifyCap::new(self.public)
    }

    fn payload(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.public.as_bytes().to_vec())
    }

    pub(crate) fn from_payload(payload: &[u8]) -> Result<Self, Error> {
        Ok(Self::new(public_from_payload(CapKind::DirVerify, payload)?))
    }
}

cap_forms!(DirVerifyCap, DirVerify, 32);

// ---------------------------------------------------------------------------------------------
// Immutable directories

fn key_and_si(kind: CapKind, payload: &[u8]) -> Result<([u8; 16], StorageIndex), Error> {
    let wrong = || wrong_len(kind, 48, payload.len());
    let Some((key, rest)) = payload.split_first_chunk::<16>() else {
        return Err(wrong());
    };
    let Ok(si) = <[u8; 32]>::try_from(rest) else {
        return Err(wrong());
    };
    Ok((*key, StorageIndex(si)))
}

/// Read capability of an immutable directory: its read key R and the storage index of the
/// immutable file holding it.
///
/// Grants: listing names, metadata and children's read caps, and everything the
/// [`ImmutableDirTraverseCap`] grants. The file itself is encrypted under the traverse key
/// `T = H(R)`, not under R. Text `lafsir1…` (90 characters), binary
/// `0x29 || read key(16) || storage index(32)`.
#[derive(Clone, PartialEq, Eq)]
pub struct ImmutableDirReadCap {
    read_key: ReadKey,
    storage_index: StorageIndex,
}

impl ImmutableDirReadCap {
    /// Builds a readcap from its parts.
    pub fn new(read_key: ReadKey, storage_index: StorageIndex) -> Self {
        Self {
            read_key,
            storage_index,
        }
    }

    /// The read key R.
    pub fn read_key(&self) -> &ReadKey {
        &self.read_key
    }

    /// The storage index of the file holding the directory.
    pub fn storage_index(&self) -> &StorageIndex {
        &self.storage_index
    }

    /// The traversal cap (one-way).
    pub fn traverse_cap(&self) -> ImmutableDirTraverseCap {
        ImmutableDirTraverseCap::new(
            TraverseKey::for_immutable_dir(&self.read_key),
            self.storage_index,
        )
    }

    /// The verifycap (one-way).
    pub fn verify_cap(&self) -> ImmutableDirVerifyCap {
        self.traverse_cap().verify_cap()
    }

    fn payload(&self) -> Zeroizing<Vec<u8>> {
        concat(self.read_key.as_bytes(), &self.storage_index.0)
    }

    pub(crate) fn from_payload(payload: &[u8]) -> Result<Self, Error> {
        let (mut k, si) = key_and_si(CapKind::ImmutableDirRead, payload)?;
        let cap = Self::new(ReadKey::from_bytes(k), si);
        k.zeroize();
        Ok(cap)
    }
}

impl fmt::Debug for ImmutableDirReadCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImmutableDirReadCap")
            .field("read_key", &"<redacted>")
            .field("storage_index", &self.storage_index)
            .finish()
    }
}

cap_forms!(ImmutableDirReadCap, ImmutableDirRead, 48);

/// Traversal capability of an immutable directory: traverse key T and storage index.
///
/// T is the AES key of the immutable file holding the directory, so this cap reads that file
/// ([`Self::file_read_cap`]): the index and the traversal column, not names or read caps.
/// Text `lafsit1…` (90 characters), binary `0x2a || traverse key(16) || storage index(32)`.
#[derive(Clone, PartialEq, Eq)]
pub struct ImmutableDirTraverseCap {
    traverse_key: TraverseKey,
    storage_index: StorageIndex,
}

impl ImmutableDirTraverseCap {
    /// Builds a traversal cap from its parts.
    pub fn new(traverse_key: TraverseKey, storage_index: StorageIndex) -> Self {
        Self {
            traverse_key,
            storage_index,
        }
    }

    /// The traverse key T.
    pub fn traverse_key(&self) -> &TraverseKey {
        &self.traverse_key
    }

    /// The storage index.
    pub fn storage_index(&self) -> &StorageIndex {
        &self.storage_index
    }

    /// The readcap of the immutable file that holds the directory: `(T, storage index)`.
    pub fn file_read_cap(&self) -> crate::ImmutableReadCap {
        crate::ImmutableReadCap::new(
            ReadKey::from_bytes(*self.traverse_key.as_bytes()),
            self.storage_index,
        )
    }

    /// The verifycap (one-way): storage index and the selection index derived from T.
    pub fn verify_cap(&self) -> ImmutableDirVerifyCap {
        let sel = selection_index_for(&ReadKey::from_bytes(*self.traverse_key.as_bytes()));
        ImmutableDirVerifyCap::new(self.storage_index, sel)
    }

    fn payload(&self) -> Zeroizing<Vec<u8>> {
        concat(self.traverse_key.as_bytes(), &self.storage_index.0)
    }

    pub(crate) fn from_payload(payload: &[u8]) -> Result<Self, Error> {
        let (mut k, si) = key_and_si(CapKind::ImmutableDirTraverse, payload)?;
        let cap = Self::new(TraverseKey::from_bytes(k), si);
        k.zeroize();
        Ok(cap)
    }
}

impl fmt::Debug for ImmutableDirTraverseCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImmutableDirTraverseCap")
            .field("traverse_key", &"<redacted>")
            .field("storage_index", &self.storage_index)
            .finish()
    }
}

cap_forms!(ImmutableDirTraverseCap, ImmutableDirTraverse, 48);

/// Verify capability of an immutable directory: the immutable verifycap of the file holding it
/// (storage index, selection index), marked as a directory.
///
/// Text `lafsiv1…` (90 characters), binary `0x2b || storage index(32) || selection index(16)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ImmutableDirVerifyCap {
    storage_index: StorageIndex,
    selection_index: SelectionIndex,
}

impl ImmutableDirVerifyCap {
    /// Builds a verifycap from its parts.
    pub fn new(storage_index: StorageIndex, selection_index: SelectionIndex) -> Self {
        Self {
            storage_index,
            selection_index,
        }
    }

    /// The storage index.
    pub fn storage_index(&self) -> &StorageIndex {
        &self.storage_index
    }

    /// The selection index.
    pub fn selection_index(&self) -> &SelectionIndex {
        &self.selection_index
    }

    /// The verifycap of the immutable file holding the directory.
    pub fn file_verify_cap(&self) -> crate::ImmutableVerifyCap {
        crate::ImmutableVerifyCap::new(self.storage_index, self.selection_index)
    }

    fn payload(&self) -> Zeroizing<Vec<u8>> {
        concat(&self.storage_index.0, &self.selection_index.0)
    }

    pub(crate) fn from_payload(payload: &[u8]) -> Result<Self, Error> {
        let kind = CapKind::ImmutableDirVerify;
        let Some((si, rest)) = payload.split_first_chunk::<32>() else {
            return Err(wrong_len(kind, 48, payload.len()));
        };
        let Ok(sel) = <[u8; 16]>::try_from(rest) else {
            return Err(wrong_len(kind, 48, payload.len()));
        };
        Ok(Self::new(StorageIndex(*si), SelectionIndex(sel)))
    }
}

cap_forms!(ImmutableDirVerifyCap, ImmutableDirVerify, 48);

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> SigningSeed {
        SigningSeed::from_bytes([5; 32])
    }

    fn all() -> Vec<Cap> {
        let w = MutableWriteCap::new(seed());
        let d = DirWriteCap::new(SigningSeed::from_bytes([6; 32]));
        let i = ImmutableDirReadCap::new(ReadKey::from_bytes([7; 16]), StorageIndex([8; 32]));
        vec![
            w.clone().into(),
            w.read_cap().into(),
            w.verify_cap().into(),
            d.clone().into(),
            d.read_cap().into(),
            d.traverse_cap().into(),
            d.verify_cap().into(),
            i.clone().into(),
            i.traverse_cap().into(),
            i.verify_cap().into(),
        ]
    }

    #[test]
    fn forms_round_trip_with_documented_lengths() {
        let want = [
            ("lafsmw1", 65, 33, 0x11),
            ("lafsmr1", 90, 49, 0x12),
            ("lafsmv1", 65, 33, 0x13),
            ("lafsdw1", 65, 33, 0x21),
            ("lafsdr1", 90, 49, 0x22),
            ("lafsdt1", 90, 49, 0x23),
            ("lafsdv1", 65, 33, 0x24),
            ("lafsir1", 90, 49, 0x29),
            ("lafsit1", 90, 49, 0x2a),
            ("lafsiv1", 90, 49, 0x2b),
        ];
        for (cap, (prefix, text_len, bin_len, byte)) in all().into_iter().zip(want) {
            let text = cap.to_string();
            assert!(text.starts_with(prefix), "{text}");
            assert_eq!(text.len(), text_len, "{text}");
            assert_eq!(text.parse::<Cap>().unwrap(), cap);
            assert_eq!(text.to_uppercase().parse::<Cap>().unwrap(), cap);
            let bin = cap.to_bytes();
            assert_eq!(bin.len(), bin_len);
            assert_eq!(cap.binary_len(), bin_len);
            assert_eq!(bin[0], byte);
            assert_eq!(Cap::from_bytes(&bin).unwrap(), cap);
        }
    }

    #[test]
    fn derivation_is_one_way_and_consistent() {
        let w = MutableWriteCap::new(seed());
        let r = w.read_cap();
        assert_eq!(r.public_key(), w.public_key());
        assert_eq!(r.verify_cap(), w.verify_cap());
        assert_eq!(r.storage_index(), w.storage_index());
        assert_eq!(
            w.storage_index().0,
            tagged_hash(MUTABLE_STORAGE_INDEX_TAG, &[w.public_key().as_bytes()]).0
        );
        assert_eq!(
            r.read_key().as_bytes()[..],
            tagged_hash(MUTABLE_READ_KEY_TAG, &[&[5; 32]]).0[..16]
        );
        let d = DirWriteCap::new(seed());
        let t = d.traverse_cap();
        assert_eq!(
            t.traverse_key().as_bytes()[..],
            tagged_hash(
                MUTABLE_TRAVERSE_KEY_TAG,
                &[d.read_cap().read_key().as_bytes()]
            )
            .0[..16]
        );
        assert_eq!(t.verify_cap(), d.verify_cap());
        // A file and a directory with the same seed are different kinds of cap.
        assert_ne!(Cap::from(w).to_string(), Cap::from(d).to_string());
        // Immutable directory: the traverse key is the file key.
        let i = ImmutableDirReadCap::new(ReadKey::from_bytes([7; 16]), StorageIndex([8; 32]));
        let it = i.traverse_cap();
        assert_eq!(
            it.file_read_cap().verify_cap(),
            i.verify_cap().file_verify_cap()
        );
        assert_eq!(
            Cap::from(i.clone()).verify_cap(),
            Some(it.file_read_cap().verify_cap())
        );
        assert_eq!(Cap::from(i).mutable_verify_cap(), None);
    }

    #[test]
    fn public_key_is_rfc8032() {
        // RFC 8032, section 7.1, test 1.
        let seed = [
            0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec,
            0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03,
            0x1c, 0xae, 0x7f, 0x60,
        ];
        let pk = SigningSeed::from_bytes(seed).public_key();
        assert_eq!(
            lafs_hashtree::Hash(*pk.as_bytes()).to_hex(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
    }

    #[test]
    fn invalid_public_key_is_rejected() {
        // y = 2 is not on the curve.
        let mut bad = [0u8; 32];
        bad[0] = 2;
        assert_eq!(
            MutablePublicKey::from_bytes(bad),
            Err(Error::InvalidPublicKey)
        );
        let mut bin = vec![0x13];
        bin.extend(bad);
        assert_eq!(Cap::from_bytes(&bin), Err(Error::InvalidPublicKey));
        let mut bin = vec![0x12];
        bin.extend([0; 16]);
        bin.extend(bad);
        assert_eq!(Cap::from_bytes(&bin), Err(Error::InvalidPublicKey));
    }

    #[test]
    fn wrong_kind_and_truncation() {
        let w = MutableWriteCap::new(seed());
        assert_eq!(
            w.read_cap().to_string().parse::<MutableWriteCap>(),
            Err(Error::WrongKind {
                expected: CapKind::MutableWrite,
                found: CapKind::MutableRead
            })
        );
        assert_eq!(
            DirReadCap::from_bytes(&w.read_cap().to_bytes()),
            Err(Error::WrongKind {
                expected: CapKind::DirRead,
                found: CapKind::MutableRead
            })
        );
        let b = w.to_bytes();
        assert_eq!(
            Cap::from_bytes(&b[..20]),
            Err(Error::BinaryTruncated {
                kind: CapKind::MutableWrite,
                needed: 33,
                available: 20
            })
        );
    }

    #[test]
    fn debug_never_prints_secrets() {
        for cap in all() {
            let text = cap.to_string();
            let dbg = format!("{cap:?}");
            if cap.kind().payload_len() == Some(32) && !text.contains("lafsmv") {
                // Seeds: nothing of the payload may show.
                assert!(
                    !dbg.contains("0505050505") && !dbg.contains("0606060606"),
                    "{dbg}"
                );
            }
            assert!(!dbg.contains(&text[7..30]), "{dbg}");
            assert!(
                !dbg.contains("0707070707") && !dbg.contains("7, 7"),
                "{dbg}"
            );
        }
    }
}
