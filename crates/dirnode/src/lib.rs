//! lafs directories ("dirnodes"): a columnar format with one encrypted column per cap level.
//!
//! A dirnode is the content of a file: of a mutable file for a mutable directory, of an
//! immutable file for an immutable one. Its layout (`docs/spec/dirnode.md`):
//!
//! ```text
//! header (72: magic, version, kind, count, stats, column table)
//! index  (32 per entry: (offset, size) of the entry's field in each column)
//! names column      — sealed under the read key R
//! traversal column  — sealed under the traverse key T = H(R)
//! read column       — child read cap + metadata, sealed under R
//! write column      — child write cap, sealed under the write key W = H(seed)
//! ```
//!
//! Each column is `salt || AES-128-CTR || HMAC-SHA256` under keys derived from its level key
//! and a fresh salt, so a cap that does not reach a column gets [`Error::Unauthenticated`],
//! never garbage. The file layer is encrypted at the traverse level (for a mutable directory
//! the mutable file's content key derives from T; an immutable directory's file key *is* T),
//! so a traversal-cap holder reads the header, the index and the traversal column — the
//! children's traversal caps and verifycaps — and nothing else.
//!
//! | cap | [`Level`] | sees |
//! |---|---|---|
//! | `DirWrite` | write | everything; may change entries |
//! | `DirRead`, `ImmutableDirRead` | read | names, metadata, children's read caps |
//! | `DirTraverse`, `ImmutableDirTraverse` | traverse | count, children's traversal/verify caps |
//!
//! ```
//! use lafs_caps::{Cap, DirWriteCap, ImmutableReadCap, ReadKey, SigningSeed, StorageIndex};
//! use lafs_dirnode::{DirKeys, Directory, Error, Level};
//!
//! let dir = DirWriteCap::new(SigningSeed::from_bytes([1; 32]));
//! let file: Cap = ImmutableReadCap::new(ReadKey::from_bytes([2; 16]), StorageIndex([3; 32])).into();
//!
//! let mut d = Directory::new(DirKeys::from_cap(&Cap::from(dir.clone()))?);
//! d.add("Café.txt", &file, b"{\"mtime\":1}")?;
//! let bytes = d.to_bytes()?;               // the mutable file's new plaintext
//!
//! // A reader lists names and read caps.
//! let r = Directory::parse(&bytes, &DirKeys::from_cap(&dir.read_cap().into())?)?;
//! assert_eq!(r.get("Café.txt")?.read_cap, file);
//! // A traverser reaches the child's verifycap, not its name.
//! let t = Directory::parse(&bytes, &DirKeys::from_cap(&dir.traverse_cap().into())?)?;
//! assert_eq!(t.traverse_caps()?, vec![Cap::from(file.verify_cap().unwrap())]);
//! assert!(matches!(t.names(), Err(Error::NotPermitted { needed: Level::Read, .. })));
//! # Ok::<(), Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod dir;
mod error;
mod keys;

pub use dir::{
    normalize_name, Directory, Entry, Stats, DIR_HEADER_LEN, DIR_MAGIC, DIR_VERSION,
    INDEX_ENTRY_LEN, MAX_ENTRIES, MAX_METADATA_LEN, MAX_NAME_LEN,
};
pub use error::{Column, Error, Level};
pub use keys::{
    DirKeys, DirKind, COLUMN_ENC_TAG, COLUMN_MAC_TAG, MAC_LEN, SALT_LEN, WRITE_KEY_TAG,
};
