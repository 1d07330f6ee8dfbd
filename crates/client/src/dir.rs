//! Directories on the grid (`docs/spec/dirnode.md`): a mutable directory is a mutable file
//! whose content is a dirnode; an immutable directory is an immutable file whose AES key is the
//! directory's traverse key.
//!
//! * [`Client::mkdir`] creates an empty mutable directory; [`Client::mkdir_immutable`] stores
//!   a fixed set of entries as an immutable directory.
//! * [`Client::open_dir`] opens any directory cap at its level (write, read or traverse).
//! * [`Client::modify_dir`] reads the latest version, applies a change and publishes the next
//!   version; [`Client::dir_set`], [`Client::dir_remove`], [`Client::dir_rename`] build on it.
//!   A concurrent change by another writer is [`Error::UncoordinatedWrite`].
//! * [`Client::resolve`] walks `a/b/c` from a directory cap, keeping the strongest cap the
//!   walk allows (write caps through write-level directories, read caps otherwise).

use lafs_caps::{Cap, CapKind, DirWriteCap, ImmutableDirReadCap, ReadKey, TraverseKey};
use lafs_dirnode::{DirKeys, Directory};
use lafs_mutable::{new_seed, OsEntropy, ReadKeys, WriteKeys};

use crate::upload::UploadOptions;
use crate::{Client, Error};

/// The metadata a file's directory entry records (`{"size": N}`: JSON, the convention the CLI,
/// the gateway and the web app share) for a file of `size` bytes.
pub fn size_metadata(size: u64) -> Vec<u8> {
    serde_json::json!({ "size": size }).to_string().into_bytes()
}

/// The file size an entry's metadata records ([`size_metadata`]), if it is JSON with a
/// non-negative integer `size`.
pub fn metadata_size(metadata: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(metadata)
        .ok()?
        .get("size")?
        .as_u64()
}

/// An opened directory and, for a mutable one, the version it was read at.
#[derive(Debug, Clone)]
pub struct OpenedDir {
    /// The directory, decrypted at the cap's level.
    pub dir: Directory,
    /// Sequence number read (`None` for an immutable directory).
    pub seqnum: Option<u64>,
}

fn dir_error(e: lafs_dirnode::Error) -> Error {
    Error::Dirnode(e)
}

impl Client {
    /// Creates an empty mutable directory and returns its write cap.
    pub async fn mkdir(&self) -> Result<DirWriteCap, Error> {
        let cap = DirWriteCap::new(new_seed(&mut OsEntropy)?);
        let mut dir = Directory::new(DirKeys::from_cap(&cap.clone().into()).map_err(dir_error)?);
        let bytes = dir.to_bytes().map_err(dir_error)?;
        let keys = WriteKeys::for_dir(&cap);
        self.mutable_publish(&keys, 1, &bytes, &Default::default())
            .await?;
        Ok(cap)
    }

    /// Stores `entries` (name, child cap, metadata) as a new immutable directory and returns
    /// its read cap (`Cap::ImmutableDirRead`). Children must be immutable (files, literals,
    /// immutable directories): the format refuses mutable ones
    /// (`MutableChildInImmutableDir`).
    pub async fn mkdir_immutable(&self, entries: &[(String, Cap, Vec<u8>)]) -> Result<Cap, Error> {
        let mut r = [0u8; 16];
        getrandom::fill(&mut r).map_err(|_| Error::Random)?;
        let read_key = ReadKey::from_bytes(r);
        let mut dir = Directory::new(DirKeys::immutable(&read_key));
        for (name, cap, meta) in entries {
            dir.add(name, cap, meta).map_err(dir_error)?;
        }
        let bytes = dir.to_bytes().map_err(dir_error)?;
        let t = TraverseKey::for_immutable_dir(&read_key);
        let up = self
            .upload_bytes(
                &bytes,
                UploadOptions {
                    key: Some(ReadKey::from_bytes(*t.as_bytes())),
                    ..UploadOptions::default()
                },
            )
            .await?;
        match up.cap {
            Cap::ImmutableRead(c) => {
                Ok(ImmutableDirReadCap::new(read_key, *c.storage_index()).into())
            }
            _ => Err(Error::InvalidState(
                "a dirnode was stored as a literal file (it is always larger than a literal)",
            )),
        }
    }

    /// Opens a directory cap (`DirWrite`, `DirRead`, `DirTraverse`, `ImmutableDirRead`,
    /// `ImmutableDirTraverse`) at its level.
    pub async fn open_dir(&self, cap: &Cap) -> Result<OpenedDir, Error> {
        let keys = DirKeys::from_cap(cap).map_err(dir_error)?;
        match cap {
            Cap::DirWrite(_) | Cap::DirRead(_) | Cap::DirTraverse(_) => {
                let tc = match cap {
                    Cap::DirWrite(c) => c.traverse_cap(),
                    Cap::DirRead(c) => c.traverse_cap(),
                    Cap::DirTraverse(c) => c.clone(),
                    _ => return Err(Error::UnsupportedCap(cap.kind())),
                };
                let contents = self.mutable_read_latest(&ReadKeys::for_dir(&tc)).await?;
                let dir = Directory::parse(&contents.data, &keys).map_err(dir_error)?;
                Ok(OpenedDir {
                    dir,
                    seqnum: Some(contents.seqnum),
                })
            }
            Cap::ImmutableDirRead(_) | Cap::ImmutableDirTraverse(_) => {
                let tc = match cap {
                    Cap::ImmutableDirRead(c) => c.traverse_cap(),
                    Cap::ImmutableDirTraverse(c) => c.clone(),
                    _ => return Err(Error::UnsupportedCap(cap.kind())),
                };
                let file: Cap = tc.file_read_cap().into();
                let bytes = self.open(&file).await?.read_all().await?;
                let dir = Directory::parse(&bytes, &keys).map_err(dir_error)?;
                Ok(OpenedDir { dir, seqnum: None })
            }
            other => Err(Error::UnsupportedCap(other.kind())),
        }
    }

    /// Reads the latest version of a mutable directory, applies `change` and publishes the
    /// result as the next version. Returns the new seqnum.
    pub async fn modify_dir<F>(&self, cap: &DirWriteCap, change: F) -> Result<u64, Error>
    where
        F: FnOnce(&mut Directory) -> Result<(), lafs_dirnode::Error>,
    {
        let keys = WriteKeys::for_dir(cap);
        let contents = self
            .mutable_read_latest(&ReadKeys::for_dir(&cap.traverse_cap()))
            .await?;
        let dkeys = DirKeys::from_cap(&cap.clone().into()).map_err(dir_error)?;
        let mut dir = Directory::parse(&contents.data, &dkeys).map_err(dir_error)?;
        change(&mut dir).map_err(dir_error)?;
        let bytes = dir.to_bytes().map_err(dir_error)?;
        let seqnum = contents.located.max_seqnum.saturating_add(1);
        self.mutable_publish(&keys, seqnum, &bytes, &contents.located)
            .await
    }

    /// Adds or replaces entry `name`.
    pub async fn dir_set(
        &self,
        cap: &DirWriteCap,
        name: &str,
        child: &Cap,
        metadata: &[u8],
    ) -> Result<u64, Error> {
        self.modify_dir(cap, |d| d.set(name, child, metadata)).await
    }

    /// Removes entry `name` (`NoSuchEntry` if absent).
    pub async fn dir_remove(&self, cap: &DirWriteCap, name: &str) -> Result<u64, Error> {
        self.modify_dir(cap, |d| d.remove(name)).await
    }

    /// Renames entry `old` to `new` (fails if `new` exists).
    pub async fn dir_rename(&self, cap: &DirWriteCap, old: &str, new: &str) -> Result<u64, Error> {
        self.modify_dir(cap, |d| d.rename(old, new)).await
    }

    /// Walks `path` (`a/b/c`, empty components ignored) from the directory `root`. Returns
    /// the cap of the last component: its write cap if every directory on the way was opened
    /// at write level and the child is mutable, else its read cap.
    pub async fn resolve(&self, root: &Cap, path: &str) -> Result<Cap, Error> {
        let mut cap = root.clone();
        for name in path.split('/').filter(|c| !c.is_empty()) {
            let opened = self.open_dir(&cap).await?;
            let entry = opened.dir.get(name).map_err(dir_error)?;
            cap = entry.write_cap.unwrap_or(entry.read_cap);
        }
        Ok(cap)
    }
}

/// The read-level form of a cap (write caps become read caps; others unchanged).
pub fn read_level(cap: &Cap) -> Cap {
    match cap {
        Cap::MutableWrite(c) => c.read_cap().into(),
        Cap::DirWrite(c) => c.read_cap().into(),
        other => other.clone(),
    }
}

/// Whether a cap names a directory.
pub fn is_dir_cap(cap: &Cap) -> bool {
    matches!(
        cap.kind(),
        CapKind::DirWrite
            | CapKind::DirRead
            | CapKind::DirTraverse
            | CapKind::ImmutableDirRead
            | CapKind::ImmutableDirTraverse
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_metadata_round_trips() {
        assert_eq!(size_metadata(2_500_000), br#"{"size":2500000}"#.to_vec());
        assert_eq!(metadata_size(&size_metadata(7)), Some(7));
        for other in [
            &b"{}"[..],
            b"not json",
            br#"{"size":-1}"#,
            br#"{"size":"3"}"#,
        ] {
            assert_eq!(metadata_size(other), None);
        }
    }
}
