//! AES-128-CTR over the whole file and key generation (random or convergent).

use aes::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use lafs_caps::ReadKey;
use lafs_hashtree::TaggedHasher;

use crate::{Error, Params};

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// Tag of the convergent-key derivation.
pub const CONVERGENT_KEY_TAG: &str = "lafs/v1/immutable/convergent-key";

/// The file's keystream: AES-128-CTR, 128-bit big-endian counter starting at zero at file
/// offset 0 and running continuously, so byte `i` of the file is XORed with keystream byte `i`.
pub(crate) struct Keystream {
    cipher: Aes128Ctr,
}

impl Keystream {
    pub(crate) fn new(key: &ReadKey) -> Self {
        let iv = [0u8; 16];
        Self {
            cipher: Aes128Ctr::new(key.as_bytes().into(), (&iv).into()),
        }
    }

    /// Positions the keystream at file offset `offset`.
    pub(crate) fn seek(&mut self, offset: u64) -> Result<(), Error> {
        // A 128-bit counter of 16-byte blocks covers every u64 offset; cannot fail.
        self.cipher
            .try_seek(offset)
            .map_err(|_| Error::InvalidState("keystream seek"))
    }

    /// XORs the keystream into `buf` and advances.
    pub(crate) fn apply(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        self.cipher
            .try_apply_keystream(buf)
            .map_err(|_| Error::InvalidState("keystream exhausted"))
    }
}

/// Encrypts `buf` in place as the bytes at file offset `offset` (AES-128-CTR, counter starting
/// at zero for offset 0). Encryption and decryption are the same operation.
pub fn encrypt_at(key: &ReadKey, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
    let mut ks = Keystream::new(key);
    ks.seek(offset)?;
    ks.apply(buf)
}

/// Decrypts `buf` in place as the bytes at file offset `offset` (see [`encrypt_at`]). Any
/// offset can be decrypted independently of the rest of the file.
pub fn decrypt_at(key: &ReadKey, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
    encrypt_at(key, offset, buf)
}

/// A fresh random key from the operating system (or `crypto.getRandomValues` in a browser).
pub fn random_key() -> Result<ReadKey, Error> {
    let mut k = [0u8; 16];
    getrandom::fill(&mut k).map_err(|_| Error::Random)?;
    Ok(ReadKey::from_bytes(k))
}

/// Streaming derivation of a *convergent* key: the first 16 bytes of
/// `tagged_hash("lafs/v1/immutable/convergent-key",
///  u8 len(secret) || secret || params (k u16, N u16, segment size u32) || plaintext)`.
///
/// The same plaintext, parameters and secret always give the same key, hence the same shares
/// and storage index, so holders of the same secret deduplicate uploads. Caveat: anyone who
/// holds the secret (use an empty secret only for public data) and can guess the whole file
/// can *confirm* that guess by computing the cap, and can learn the remaining bits of a file
/// that is known except for a few guessable fields (a password in a form letter) by trying
/// every candidate. Use random keys for private data.
#[derive(Clone)]
pub struct ConvergentKeyHasher {
    inner: TaggedHasher,
}

impl ConvergentKeyHasher {
    /// Starts the derivation. The secret is at most 255 bytes.
    pub fn new(secret: &[u8], params: &Params) -> Result<Self, Error> {
        let len = u8::try_from(secret.len())
            .map_err(|_| Error::InvalidState("convergence secret longer than 255 bytes"))?;
        let mut inner = TaggedHasher::new(CONVERGENT_KEY_TAG);
        inner
            .update(&[len])
            .update(secret)
            .update(&params.to_bytes());
        Ok(Self { inner })
    }

    /// Feeds plaintext.
    pub fn update(&mut self, plaintext: &[u8]) -> &mut Self {
        self.inner.update(plaintext);
        self
    }

    /// The key.
    pub fn finalize(self) -> ReadKey {
        let h = self.inner.finalize();
        let mut k = [0u8; 16];
        k.copy_from_slice(&h.0[..16]);
        ReadKey::from_bytes(k)
    }
}

/// Convergent key of a whole plaintext in memory (see [`ConvergentKeyHasher`]).
pub fn convergent_key(secret: &[u8], params: &Params, plaintext: &[u8]) -> Result<ReadKey, Error> {
    let mut h = ConvergentKeyHasher::new(secret, params)?;
    h.update(plaintext);
    Ok(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seekable_and_involutive() {
        let key = ReadKey::from_bytes([7; 16]);
        let plain: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut whole = plain.clone();
        encrypt_at(&key, 0, &mut whole).unwrap();
        assert_ne!(whole, plain);
        // Any sub-range decrypts on its own, at unaligned offsets too.
        for (a, b) in [(0, 1), (5, 37), (16, 32), (999, 1000), (3, 1000)] {
            let mut part = whole[a..b].to_vec();
            decrypt_at(&key, a as u64, &mut part).unwrap();
            assert_eq!(part, &plain[a..b]);
        }
        // Known answer: AES-128(key=0, block=0) = 66e94bd4ef8a2c3b884cfa59ca342b2e.
        let mut z = [0u8; 16];
        encrypt_at(&ReadKey::from_bytes([0; 16]), 0, &mut z).unwrap();
        assert_eq!(hex::encode(z), "66e94bd4ef8a2c3b884cfa59ca342b2e");
    }

    #[test]
    fn convergent_depends_on_everything() {
        let p = Params::default();
        let q = Params::new(3, 10, 4096).unwrap();
        let a = convergent_key(b"s", &p, b"data").unwrap();
        assert_eq!(a, convergent_key(b"s", &p, b"data").unwrap());
        assert_ne!(a, convergent_key(b"t", &p, b"data").unwrap());
        assert_ne!(a, convergent_key(b"s", &q, b"data").unwrap());
        assert_ne!(a, convergent_key(b"s", &p, b"dat").unwrap());
        let mut h = ConvergentKeyHasher::new(b"s", &p).unwrap();
        h.update(b"da").update(b"ta");
        assert_eq!(h.finalize(), a);
        assert!(ConvergentKeyHasher::new(&[0; 256], &p).is_err());
        assert_ne!(random_key().unwrap(), random_key().unwrap());
    }
}
