//! Directory keys by cap level, and the authenticated encryption of one column.

use core::fmt;

use aes::cipher::{KeyIvInit, StreamCipher};
use hmac::{KeyInit, Mac};
use lafs_caps::{Cap, ReadKey, SigningSeed, TraverseKey};
use lafs_hashtree::tagged_hash;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{Column, Error, Level};

/// Tag of the write-column key, from the directory's seed.
pub const WRITE_KEY_TAG: &str = "lafs/v1/dirnode/write-key";
/// Tag of a column's AES key.
pub const COLUMN_ENC_TAG: &str = "lafs/v1/dirnode/column-enc";
/// Tag of a column's MAC key.
pub const COLUMN_MAC_TAG: &str = "lafs/v1/dirnode/column-mac";
/// Salt length of an encrypted column.
pub const SALT_LEN: usize = 16;
/// MAC length of an encrypted column (HMAC-SHA256).
pub const MAC_LEN: usize = 32;

/// Whether a directory lives in a mutable or an immutable file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DirKind {
    /// A mutable directory (mutable file, entries can change).
    Mutable,
    /// An immutable directory (immutable file, only immutable children).
    Immutable,
}

impl DirKind {
    pub(crate) const fn byte(self) -> u8 {
        match self {
            Self::Mutable => 0,
            Self::Immutable => 1,
        }
    }

    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Mutable => "mutable",
            Self::Immutable => "immutable",
        }
    }
}

/// The keys one directory cap gives: the traverse key always, the read key from read level
/// up, the write key (mutable directories) at write level. Zeroized on drop, redacted in
/// `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DirKeys {
    #[zeroize(skip)]
    kind: DirKind,
    traverse: [u8; 16],
    read: Option<[u8; 16]>,
    write: Option<[u8; 16]>,
}

impl fmt::Debug for DirKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirKeys")
            .field("kind", &self.kind)
            .field("level", &self.level())
            .finish_non_exhaustive()
    }
}

impl DirKeys {
    /// Keys of a directory cap: [`Cap::DirWrite`], [`Cap::DirRead`], [`Cap::DirTraverse`],
    /// [`Cap::ImmutableDirRead`] or [`Cap::ImmutableDirTraverse`].
    pub fn from_cap(cap: &Cap) -> Result<Self, Error> {
        Ok(match cap {
            Cap::DirWrite(c) => {
                let r = c.read_cap();
                Self::mutable(c.seed(), r.read_key())
            }
            Cap::DirRead(c) => Self {
                kind: DirKind::Mutable,
                traverse: *TraverseKey::for_mutable_dir(c.read_key()).as_bytes(),
                read: Some(*c.read_key().as_bytes()),
                write: None,
            },
            Cap::DirTraverse(c) => Self {
                kind: DirKind::Mutable,
                traverse: *c.traverse_key().as_bytes(),
                read: None,
                write: None,
            },
            Cap::ImmutableDirRead(c) => Self::immutable(c.read_key()),
            Cap::ImmutableDirTraverse(c) => Self {
                kind: DirKind::Immutable,
                traverse: *c.traverse_key().as_bytes(),
                read: None,
                write: None,
            },
            other => return Err(Error::NotADirectoryCap { kind: other.kind() }),
        })
    }

    fn mutable(seed: &SigningSeed, read_key: &ReadKey) -> Self {
        let w = tagged_hash(WRITE_KEY_TAG, &[seed.as_bytes()]);
        let mut write = [0u8; 16];
        write.copy_from_slice(&w.0[..16]);
        Self {
            kind: DirKind::Mutable,
            traverse: *TraverseKey::for_mutable_dir(read_key).as_bytes(),
            read: Some(*read_key.as_bytes()),
            write: Some(write),
        }
    }

    /// Keys of a new immutable directory with read key `read_key` (R): the traverse key
    /// T = H(R) is also the AES key of the immutable file that will hold it.
    pub fn immutable(read_key: &ReadKey) -> Self {
        Self {
            kind: DirKind::Immutable,
            traverse: *TraverseKey::for_immutable_dir(read_key).as_bytes(),
            read: Some(*read_key.as_bytes()),
            write: None,
        }
    }

    /// Mutable or immutable.
    pub fn kind(&self) -> DirKind {
        self.kind
    }

    /// The strongest level these keys give. Keys of an immutable directory built by its
    /// creator count as write level (they may build it), once uploaded only read remains.
    pub fn level(&self) -> Level {
        match (self.read, self.write) {
            (_, Some(_)) => Level::Write,
            (Some(_), None) => Level::Read,
            (None, None) => Level::Traverse,
        }
    }

    /// The level key of `column`, if these keys reach it.
    pub(crate) fn column_key(&self, column: Column) -> Option<&[u8; 16]> {
        match column {
            Column::Traverse => Some(&self.traverse),
            Column::Names | Column::Read => self.read.as_ref(),
            Column::Write => self.write.as_ref(),
        }
    }

    pub(crate) fn require(&self, column: Column) -> Result<&[u8; 16], Error> {
        self.column_key(column).ok_or(Error::NotPermitted {
            needed: match column {
                Column::Traverse => Level::Traverse,
                Column::Names | Column::Read => Level::Read,
                Column::Write => Level::Write,
            },
            held: self.level(),
        })
    }
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn derive(tag: &str, key: &[u8; 16], column: Column, salt: &[u8]) -> [u8; 32] {
    tagged_hash(tag, &[key, &[column.id()], salt]).0
}

fn mac(mac_key: &[u8; 32], column: Column, salt: &[u8], ct: &[u8]) -> Result<HmacSha256, Error> {
    let mut m = HmacSha256::new_from_slice(mac_key).map_err(|_| Error::TooLarge)?;
    m.update(&[column.id()]);
    m.update(salt);
    m.update(ct);
    Ok(m)
}

/// Encrypts a column: `salt(16) || AES-128-CTR(enc key, IV 0, plaintext) || HMAC-SHA256(mac
/// key, column id || salt || ciphertext)` with keys derived from (level key, column, salt).
/// An empty plaintext gives an empty blob.
pub(crate) fn seal(
    level_key: &[u8; 16],
    column: Column,
    salt: &[u8; 16],
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    if plaintext.is_empty() {
        return Ok(Vec::new());
    }
    let mut enc = derive(COLUMN_ENC_TAG, level_key, column, salt);
    let mut mac_key = derive(COLUMN_MAC_TAG, level_key, column, salt);
    let mut out = Vec::with_capacity(SALT_LEN + plaintext.len() + MAC_LEN);
    out.extend_from_slice(salt);
    out.extend_from_slice(plaintext);
    let iv = [0u8; 16];
    let mut k = [0u8; 16];
    k.copy_from_slice(&enc[..16]);
    ctr::Ctr128BE::<aes::Aes128>::new((&k).into(), (&iv).into())
        .apply_keystream(&mut out[SALT_LEN..]);
    let tag = mac(&mac_key, column, salt, &out[SALT_LEN..])?
        .finalize()
        .into_bytes();
    out.extend_from_slice(&tag);
    enc.zeroize();
    mac_key.zeroize();
    k.zeroize();
    Ok(out)
}

/// Checks the MAC and decrypts a column blob made by [`seal`]. A wrong key is
/// [`Error::Unauthenticated`], never garbage.
pub(crate) fn open(level_key: &[u8; 16], column: Column, blob: &[u8]) -> Result<Vec<u8>, Error> {
    if blob.is_empty() {
        return Ok(Vec::new());
    }
    if blob.len() < SALT_LEN + MAC_LEN + 1 {
        return Err(Error::BadColumnTable {
            column,
            reason: "too short for salt and MAC",
        });
    }
    let (salt, rest) = blob.split_at(SALT_LEN);
    let (ct, tag) = rest.split_at(rest.len() - MAC_LEN);
    let mut mac_key = derive(COLUMN_MAC_TAG, level_key, column, salt);
    let ok = mac(&mac_key, column, salt, ct)?.verify_slice(tag).is_ok();
    mac_key.zeroize();
    if !ok {
        return Err(Error::Unauthenticated { column });
    }
    let mut enc = derive(COLUMN_ENC_TAG, level_key, column, salt);
    let mut k = [0u8; 16];
    k.copy_from_slice(&enc[..16]);
    let iv = [0u8; 16];
    let mut out = ct.to_vec();
    ctr::Ctr128BE::<aes::Aes128>::new((&k).into(), (&iv).into()).apply_keystream(&mut out);
    enc.zeroize();
    k.zeroize();
    Ok(out)
}
