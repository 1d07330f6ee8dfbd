//! The share format: signed header, layout arithmetic, leaf hashes and keys
//! (`docs/spec/mutable.md`).

use core::fmt;
use core::ops::Range;

use aes::cipher::{KeyIvInit, StreamCipher};
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use lafs_caps::{
    DirTraverseCap, DirWriteCap, MutablePublicKey, MutableReadCap, MutableWriteCap, ReadKey,
    SigningSeed, StorageIndex, TraverseKey,
};
use lafs_codec::Params;
use lafs_hashtree::{node_hash, tagged_hash, tree_width, Hash};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::Error;

/// Magic bytes at the start of every mutable share.
pub const MUTABLE_MAGIC: [u8; 8] = *b"LAFSMUT1";
/// Format version in the header.
pub const MUTABLE_VERSION: u16 = 1;
/// Length of the signed header.
pub const HEADER_LEN: u64 = 164;
/// Length of a salt.
pub const SALT_LEN: u64 = 16;
/// Length of a hash in a share.
pub const HASH_LEN: u64 = 32;
/// Longest header + chain of any share (N = 256 needs 8 chain hashes): reading this many bytes
/// from the start of a share always gets the header and the chain.
pub const MAX_PREFIX_LEN: u64 = HEADER_LEN + 8 * HASH_LEN;

/// Domain tag prefixed to the signed message.
pub const SIGNATURE_TAG: &str = "lafs/v1/mutable/signature";
/// Tag of a block-tree leaf: `tagged_hash(BLOCK_TAG, salt || block)`.
pub const BLOCK_TAG: &str = "lafs/v1/mutable/block";
/// Tag of a segment key: `tagged_hash(SEGMENT_KEY_TAG, content key || salt)[0..16]`.
pub const SEGMENT_KEY_TAG: &str = "lafs/v1/mutable/segment-key";
/// Tag of a mutable file's content key, from its read key.
pub const FILE_CONTENT_KEY_TAG: &str = "lafs/v1/mutable/content-key";
/// Tag of a mutable directory's content key, from its traverse key.
pub const DIR_CONTENT_KEY_TAG: &str = "lafs/v1/dirnode/content-key";

fn be16(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_be_bytes(a)
}
fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}
fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}
fn arr32(b: &[u8], at: usize) -> [u8; 32] {
    let mut a = [0u8; 32];
    a.copy_from_slice(&b[at..at + 32]);
    a
}

/// `u64` → `usize`, as an error on 32-bit targets when it does not fit.
pub(crate) fn to_usize(v: u64, what: &'static str) -> Result<usize, Error> {
    usize::try_from(v).map_err(|_| Error::TooLarge(what))
}

// ---------------------------------------------------------------------------------------------
// Keys

/// The 16-byte key all segment keys of a mutable file derive from. For a plain file it derives
/// from the read key, for a directory from the traverse key (so a traversal-cap holder can
/// decrypt the directory's file layer, and only that). Zeroized on drop, redacted in `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ContentKey([u8; 16]);

impl ContentKey {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Content key of a mutable file: `tagged_hash("lafs/v1/mutable/content-key", R)[0..16]`.
    pub fn for_file(read_key: &ReadKey) -> Self {
        Self(first16(FILE_CONTENT_KEY_TAG, read_key.as_bytes()))
    }

    /// Content key of a mutable directory:
    /// `tagged_hash("lafs/v1/dirnode/content-key", T)[0..16]`.
    pub fn for_dir(traverse_key: &TraverseKey) -> Self {
        Self(first16(DIR_CONTENT_KEY_TAG, traverse_key.as_bytes()))
    }

    /// The AES-128 key of one segment version: `tagged_hash(SEGMENT_KEY_TAG, key || salt)[0..16]`.
    /// A fresh random salt per write means a fresh keystream: rewriting a segment never reuses
    /// the keystream of an earlier version.
    pub(crate) fn segment_cipher(&self, salt: &[u8; 16]) -> ctr::Ctr128BE<aes::Aes128> {
        let mut k = first16_parts(SEGMENT_KEY_TAG, &[&self.0, salt]);
        let iv = [0u8; 16];
        let c = ctr::Ctr128BE::<aes::Aes128>::new((&k).into(), (&iv).into());
        k.zeroize();
        c
    }

    /// Encrypts (or decrypts: same operation) a segment in place under `salt`.
    pub fn apply_segment_keystream(&self, salt: &[u8; 16], buf: &mut [u8]) {
        self.segment_cipher(salt).apply_keystream(buf);
    }
}

impl PartialEq for ContentKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for ContentKey {}

impl fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContentKey(<redacted>)")
    }
}

fn first16(tag: &str, data: &[u8]) -> [u8; 16] {
    first16_parts(tag, &[data])
}
fn first16_parts(tag: &str, parts: &[&[u8]]) -> [u8; 16] {
    let h = tagged_hash(tag, parts);
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.0[..16]);
    out
}

/// What a writer holds: the seed (signing key), the public key and the content key.
#[derive(Clone, Debug)]
pub struct WriteKeys {
    seed: SigningSeed,
    public: MutablePublicKey,
    content_key: ContentKey,
}

impl WriteKeys {
    /// Keys of a mutable file.
    pub fn for_file(cap: &MutableWriteCap) -> Self {
        Self {
            seed: cap.seed().clone(),
            public: *cap.public_key(),
            content_key: ContentKey::for_file(&cap.seed().read_key()),
        }
    }

    /// Keys of the mutable file holding a directory.
    pub fn for_dir(cap: &DirWriteCap) -> Self {
        Self {
            seed: cap.seed().clone(),
            public: *cap.public_key(),
            content_key: ContentKey::for_dir(cap.traverse_cap().traverse_key()),
        }
    }

    /// Keys from raw parts (the content key is the caller's choice).
    pub fn from_parts(seed: SigningSeed, content_key: ContentKey) -> Self {
        let public = seed.public_key();
        Self {
            seed,
            public,
            content_key,
        }
    }

    /// The public key.
    pub fn public_key(&self) -> &MutablePublicKey {
        &self.public
    }

    /// The storage index.
    pub fn storage_index(&self) -> StorageIndex {
        self.public.storage_index()
    }

    /// The content key.
    pub fn content_key(&self) -> &ContentKey {
        &self.content_key
    }

    /// The keys a reader of the same file has.
    pub fn read_keys(&self) -> ReadKeys {
        ReadKeys {
            public: self.public,
            content_key: self.content_key.clone(),
        }
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.seed.signing_key().sign(msg).to_bytes()
    }
}

/// What a reader holds: the public key (to verify) and the content key (to decrypt).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadKeys {
    public: MutablePublicKey,
    content_key: ContentKey,
}

impl ReadKeys {
    /// Keys of a mutable file's reader.
    pub fn for_file(cap: &MutableReadCap) -> Self {
        Self {
            public: *cap.public_key(),
            content_key: ContentKey::for_file(cap.read_key()),
        }
    }

    /// Keys of the file layer of a directory, from its traversal cap (read and write caps
    /// derive one).
    pub fn for_dir(cap: &DirTraverseCap) -> Self {
        Self {
            public: *cap.public_key(),
            content_key: ContentKey::for_dir(cap.traverse_key()),
        }
    }

    /// Keys from raw parts.
    pub fn from_parts(public: MutablePublicKey, content_key: ContentKey) -> Self {
        Self {
            public,
            content_key,
        }
    }

    /// The public key.
    pub fn public_key(&self) -> &MutablePublicKey {
        &self.public
    }

    /// The content key.
    pub fn content_key(&self) -> &ContentKey {
        &self.content_key
    }
}

/// A source of random bytes (salts, new keys). Injected so tests can be deterministic.
pub trait Entropy {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), Error>;
}

/// The operating system's generator (`crypto.getRandomValues` in a browser).
#[derive(Clone, Copy, Debug, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        getrandom::fill(buf).map_err(|_| Error::Random)
    }
}

/// A fresh random seed for a new mutable file or directory.
pub fn new_seed(entropy: &mut dyn Entropy) -> Result<SigningSeed, Error> {
    let mut b = [0u8; 32];
    entropy.fill(&mut b)?;
    let s = SigningSeed::from_bytes(b);
    b.zeroize();
    Ok(s)
}

// ---------------------------------------------------------------------------------------------
// The signed header

/// The fields every share of one version shares, signed by the file's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VersionInfo {
    /// Sequence number: each published version has a higher one than the last.
    pub seqnum: u64,
    /// Root of the share hash tree (one leaf per share: its block-tree root).
    pub root: Hash,
    /// Encoding parameters.
    pub params: Params,
    /// Plaintext length.
    pub file_size: u64,
}

/// The 164-byte header at the start of a share: version info, public key, signature, and
/// the share's number (the only unsigned field; it is bound by the share's position in the
/// share hash tree).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignedHeader {
    /// Share number.
    pub share: u16,
    /// The signed version fields.
    pub info: VersionInfo,
    /// The file's public key.
    pub public: [u8; 32],
    /// Ed25519 signature over [`SignedHeader::signed_message`].
    pub signature: [u8; 64],
}

impl fmt::Debug for SignedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedHeader")
            .field("share", &self.share)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl SignedHeader {
    /// The message the signature covers:
    /// `u8(len(tag)) || tag || version u16 || k u16 || N u16 || segment_size u32 ||
    /// file_size u64 || seqnum u64 || root(32) || public key(32)` (header bytes 8..10 and
    /// 12..100 behind the tag).
    pub fn signed_message(info: &VersionInfo, public: &[u8; 32]) -> Vec<u8> {
        let mut m = Vec::with_capacity(1 + SIGNATURE_TAG.len() + 90);
        m.push(SIGNATURE_TAG.len() as u8);
        m.extend_from_slice(SIGNATURE_TAG.as_bytes());
        m.extend_from_slice(&MUTABLE_VERSION.to_be_bytes());
        m.extend_from_slice(&info.params.to_bytes());
        m.extend_from_slice(&info.file_size.to_be_bytes());
        m.extend_from_slice(&info.seqnum.to_be_bytes());
        m.extend_from_slice(&info.root.0);
        m.extend_from_slice(public);
        m
    }

    /// Signs `info` with the writer's key (share number 0; use [`Self::for_share`]).
    pub fn sign(keys: &WriteKeys, info: VersionInfo) -> Self {
        let public = *keys.public_key().as_bytes();
        let signature = keys.sign(&Self::signed_message(&info, &public));
        Self {
            share: 0,
            info,
            public,
            signature,
        }
    }

    /// The same header for another share.
    pub fn for_share(mut self, share: u16) -> Self {
        self.share = share;
        self
    }

    /// Verifies the signature under the header's own public key (which the caller must tie
    /// to the cap or storage index).
    pub fn verify_signature(&self) -> Result<(), Error> {
        let share = self.share;
        let vk = VerifyingKey::from_bytes(&self.public)
            .map_err(|_| Error::InvalidPublicKey { share })?;
        let sig = Signature::from_bytes(&self.signature);
        vk.verify_strict(&Self::signed_message(&self.info, &self.public), &sig)
            .map_err(|_| Error::BadSignature {
                share,
                seqnum: self.info.seqnum,
            })
    }

    /// Checks that the header's key is `public` and its signature verifies.
    pub fn verify_for(&self, public: &MutablePublicKey) -> Result<(), Error> {
        if &self.public != public.as_bytes() {
            return Err(Error::WrongPublicKey { share: self.share });
        }
        self.verify_signature()
    }

    /// Checks that the header's key hashes to `si` and its signature verifies (what a
    /// storage server checks).
    pub fn verify_for_storage_index(&self, si: &StorageIndex) -> Result<(), Error> {
        let pk = MutablePublicKey::from_bytes(self.public)
            .map_err(|_| Error::InvalidPublicKey { share: self.share })?;
        if pk.storage_index() != *si {
            return Err(Error::StorageIndexMismatch { share: self.share });
        }
        self.verify_signature()
    }

    /// The 164 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN as usize] {
        let mut b = [0u8; HEADER_LEN as usize];
        b[0..8].copy_from_slice(&MUTABLE_MAGIC);
        b[8..10].copy_from_slice(&MUTABLE_VERSION.to_be_bytes());
        b[10..12].copy_from_slice(&self.share.to_be_bytes());
        b[12..20].copy_from_slice(&self.info.params.to_bytes());
        b[20..28].copy_from_slice(&self.info.file_size.to_be_bytes());
        b[28..36].copy_from_slice(&self.info.seqnum.to_be_bytes());
        b[36..68].copy_from_slice(&self.info.root.0);
        b[68..100].copy_from_slice(&self.public);
        b[100..164].copy_from_slice(&self.signature);
        b
    }

    /// Parses a header (the first 164 bytes of `bytes`; more are ignored). Checks magic,
    /// version, parameters, that the share number is below N, and that the file size fits the
    /// parameters; not the signature. `slot` is the share number used in errors.
    pub fn parse(slot: u16, bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() < HEADER_LEN as usize {
            return Err(Error::Truncated {
                share: slot,
                needed: HEADER_LEN,
                available: bytes.len() as u64,
            });
        }
        if bytes[0..8] != MUTABLE_MAGIC {
            return Err(Error::BadMagic { share: slot });
        }
        let version = be16(bytes, 8);
        if version != MUTABLE_VERSION {
            return Err(Error::UnsupportedVersion {
                share: slot,
                version,
            });
        }
        let share = be16(bytes, 10);
        let params = Params::new(be16(bytes, 12), be16(bytes, 14), be32(bytes, 16))
            .map_err(|_| Error::BadParams("k, N or segment size out of range"))?;
        if share >= params.n() {
            return Err(Error::ShareOutOfRange {
                share,
                n: params.n(),
            });
        }
        let info = VersionInfo {
            seqnum: be64(bytes, 28),
            root: Hash(arr32(bytes, 36)),
            params,
            file_size: be64(bytes, 20),
        };
        check_size(&params, info.file_size)?;
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&bytes[100..164]);
        Ok(Self {
            share,
            info,
            public: arr32(bytes, 68),
            signature,
        })
    }
}

/// Largest number of segments of a mutable file (2^31), as for immutable files.
pub const MAX_SEGMENTS: u64 = 1 << 31;

fn check_size(params: &Params, file_size: u64) -> Result<(), Error> {
    if params.num_segments(file_size) > MAX_SEGMENTS {
        return Err(Error::BadParams("file has more than 2^31 segments"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Layout

/// Byte layout of a share of a given version: pure arithmetic on (params, file size).
///
/// ```text
/// header (164) | chain (32 · depth) | record 0 | record 1 | ... | block tree (32 · (2P − 1))
/// record j = salt (16) || block j
/// ```
/// Record `j` starts at `records_offset + j · (16 + B)` where `B` is the full block size, so a
/// record never moves while the file grows or shrinks; only the tree (at the end) moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Encoding parameters.
    pub params: Params,
    /// Plaintext length.
    pub file_size: u64,
    /// Number of segments.
    pub num_segments: u64,
    /// Number of chain hashes (`log2(width(N))`).
    pub chain_depth: u32,
}

impl Layout {
    /// The layout of a version.
    pub fn new(params: Params, file_size: u64) -> Result<Self, Error> {
        check_size(&params, file_size)?;
        let width = tree_width(usize::from(params.n())).map_err(|_| Error::BadParams("N"))?;
        Ok(Self {
            params,
            file_size,
            num_segments: params.num_segments(file_size),
            chain_depth: width.ilog2(),
        })
    }

    /// Layout of the version a header describes.
    pub fn of(info: &VersionInfo) -> Result<Self, Error> {
        Self::new(info.params, info.file_size)
    }

    /// Byte range of the chain.
    pub fn chain_range(&self) -> Range<u64> {
        HEADER_LEN..self.records_offset()
    }

    /// Start of record 0.
    pub fn records_offset(&self) -> u64 {
        HEADER_LEN + HASH_LEN * u64::from(self.chain_depth)
    }

    /// Full block size `B = ceil(segment_size / k)`.
    pub fn full_block(&self) -> u64 {
        self.params.full_block_size()
    }

    /// Plaintext length of segment `j` (0 past the end).
    pub fn segment_len(&self, j: u64) -> u64 {
        let ss = u64::from(self.params.segment_size());
        let start = j.saturating_mul(ss);
        self.file_size.saturating_sub(start).min(ss)
    }

    /// Block length of segment `j`: `ceil(segment_len / k)`.
    pub fn block_len(&self, j: u64) -> u64 {
        self.segment_len(j).div_ceil(u64::from(self.params.k()))
    }

    /// Byte range of record `j` (salt and block).
    pub fn record_range(&self, j: u64) -> Range<u64> {
        let start = self.records_offset() + j * (SALT_LEN + self.full_block());
        start..start + SALT_LEN + self.block_len(j)
    }

    /// Start of the block tree.
    pub fn tree_offset(&self) -> u64 {
        match self.num_segments {
            0 => self.records_offset(),
            n => self.record_range(n - 1).end,
        }
    }

    /// Width `P` of the block tree.
    pub fn tree_width(&self) -> u64 {
        self.num_segments.max(1).next_power_of_two()
    }

    /// Number of block-tree nodes `2P − 1`.
    pub fn tree_nodes(&self) -> u64 {
        2 * self.tree_width() - 1
    }

    /// Byte range of block-tree node `node` (heap index).
    pub fn node_range(&self, node: u64) -> Range<u64> {
        let s = self.tree_offset() + HASH_LEN * node;
        s..s + HASH_LEN
    }

    /// Byte range of the whole block tree.
    pub fn tree_range(&self) -> Range<u64> {
        self.tree_offset()..self.share_len()
    }

    /// Total share length.
    pub fn share_len(&self) -> u64 {
        self.tree_offset() + HASH_LEN * self.tree_nodes()
    }
}

/// Leaf hash of a record: `tagged_hash("lafs/v1/mutable/block", salt || block)`.
pub fn record_hash(record: &[u8]) -> Hash {
    tagged_hash(BLOCK_TAG, &[record])
}

/// The block-tree root reached through the chain for share `share` of `n`: climbs from the
/// leaf `block_root` with one chain hash per level (leaf level first).
pub fn chain_root(share: u16, block_root: Hash, chain: &[u8]) -> Hash {
    let mut h = block_root;
    let mut pos = u64::from(share);
    for sib in chain.chunks_exact(HASH_LEN as usize) {
        let sib = Hash(arr32(sib, 0));
        h = if pos % 2 == 0 {
            node_hash(&h, &sib)
        } else {
            node_hash(&sib, &h)
        };
        pos /= 2;
    }
    h
}

/// Chain bytes of share `share` from the full share hash tree (`nodes` in heap order).
pub(crate) fn chain_bytes(share: u16, width: usize, nodes: &[Hash]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut idx = width - 1 + usize::from(share);
    while idx > 0 {
        let sib = if idx % 2 == 1 { idx + 1 } else { idx - 1 };
        out.extend_from_slice(&nodes[sib].0);
        idx = (idx - 1) / 2;
    }
    out
}
