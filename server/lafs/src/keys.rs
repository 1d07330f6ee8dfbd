//! Private key files: `DIR/private/node.key` and `DIR/private/account.key`.
//!
//! Each holds one ed25519 secret key (the 32-byte seed) as 64 lowercase hex digits and a
//! newline, created with mode 0600 inside a 0700 directory, never overwritten.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use data_encoding::HEXLOWER;
use ed25519_dalek::SigningKey;
use zeroize::Zeroizing;

/// Directory holding the private keys.
pub(crate) const PRIVATE_DIR: &str = "private";
/// The node key: signs introducer announcements (the node's identity).
pub(crate) const NODE_KEY: &str = "node.key";
/// The account key of a client: signs storage write requests.
pub(crate) const ACCOUNT_KEY: &str = "account.key";

/// Path of key file `name` in node directory `dir`.
pub(crate) fn key_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(PRIVATE_DIR).join(name)
}

/// Creates a directory readable only by its owner (fails if it exists).
pub(crate) fn create_private_dir(path: &Path) -> Result<()> {
    let mut b = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// Generates a fresh key and writes it to `path` (mode 0600, refusing to overwrite).
pub(crate) fn generate(path: &Path) -> Result<SigningKey> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut()).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let mut text = Zeroizing::new(HEXLOWER.encode(seed.as_ref()));
    text.push('\n');
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(key)
}

/// Reads a key file written by [`generate`].
pub(crate) fn load(path: &Path) -> Result<SigningKey> {
    let text = Zeroizing::new(
        fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    );
    let bytes = Zeroizing::new(
        HEXLOWER
            .decode(text.trim_end().as_bytes())
            .with_context(|| format!("{}: not lowercase hex", path.display()))?,
    );
    let Ok(seed) = <[u8; 32]>::try_from(bytes.as_slice()) else {
        bail!("{}: expected a 32-byte key (64 hex digits)", path.display());
    };
    let seed = Zeroizing::new(seed);
    Ok(SigningKey::from_bytes(&seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_load_roundtrip_and_no_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let k = generate(&p).unwrap();
        assert_eq!(load(&p).unwrap().to_bytes(), k.to_bytes());
        assert!(generate(&p).is_err());
        assert_eq!(load(&p).unwrap().to_bytes(), k.to_bytes());
        fs::write(&p, "zz\n").unwrap();
        assert!(load(&p).is_err());
    }
}
