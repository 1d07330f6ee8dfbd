//! Capabilities ("caps"): the only access control in lafs.
//!
//! A cap is a short string (or a compact binary value) that both *names* a file and *grants*
//! some authority over it. Authority only flows downward: from a readcap anyone can derive the
//! verifycap, never the reverse.
//!
//! | kind | grants | text prefix | text length | binary |
//! |---|---|---|---|---|
//! | [`ImmutableReadCap`] | read (decrypt) and verify an immutable file | `lafsr1` | 89 | 49 bytes |
//! | [`ImmutableVerifyCap`] | find, verify and repair its shares; no plaintext | `lafsv1` | 89 | 49 bytes |
//! | [`LiteralCap`] | a tiny file (≤ 55 bytes) stored inside the cap itself | `lafsl1` | 12–100 | 2–57 bytes |
//! | [`MutableWriteCap`] | publish new versions of a mutable file, read, verify | `lafsmw1` | 65 | 33 bytes |
//! | [`MutableReadCap`] | read (and verify) every version of a mutable file | `lafsmr1` | 90 | 49 bytes |
//! | [`MutableVerifyCap`] | find, check and repair a mutable file's shares | `lafsmv1` | 65 | 33 bytes |
//! | [`DirWriteCap`] | change a mutable directory; read, traverse | `lafsdw1` | 65 | 33 bytes |
//! | [`DirReadCap`] | list names, metadata, children's read caps | `lafsdr1` | 90 | 49 bytes |
//! | [`DirTraverseCap`] | walk the tree to every verifycap, no names | `lafsdt1` | 90 | 49 bytes |
//! | [`DirVerifyCap`] | check and repair the file holding a directory | `lafsdv1` | 65 | 33 bytes |
//! | [`ImmutableDirReadCap`] / [`ImmutableDirTraverseCap`] / [`ImmutableDirVerifyCap`] | the same for immutable directories | `lafsir1` / `lafsit1` / `lafsiv1` | 90 | 49 bytes |
//!
//! [`Cap`] holds a cap of any kind. This crate is pure logic (no IO) and builds for
//! `wasm32-unknown-unknown`. Formats are specified byte by byte in `docs/spec/caps.md`, with
//! test vectors in `docs/spec/vectors/caps.json`.
//!
//! # Text form
//!
//! Caps are written as [bech32m] strings: a prefix naming the kind (`lafsr`, `lafsv`,
//! `lafsl`), the separator `1`, the payload in a 32-character alphabet without look-alikes,
//! and a 6-character checksum that catches any single typo (and any four substitutions).
//! [`Display`](core::fmt::Display) writes lowercase; [`FromStr`](core::str::FromStr) accepts all
//! lowercase or all uppercase (handy for QR codes) and nothing else: no whitespace, no mixed
//! case, no other checksum, no non-canonical encoding. Every failure is a typed [`Error`].
//!
//! ```
//! use lafs_caps::{Cap, CapKind, Error, ImmutableReadCap, ReadKey, StorageIndex};
//!
//! // An uploader learns the key before encoding and the storage index (UEB hash) at the end.
//! let readcap = ImmutableReadCap::new(ReadKey::from_bytes([0x42; 16]), StorageIndex([7; 32]));
//!
//! let text = readcap.to_string();
//! assert!(text.starts_with("lafsr1"));
//! assert_eq!(text.len(), 89);
//! assert_eq!(text.parse::<ImmutableReadCap>(), Ok(readcap.clone()));
//!
//! // Any cap parses as `Cap`; the prefix decides the kind.
//! let cap: Cap = text.parse()?;
//! assert_eq!(cap.kind(), CapKind::ImmutableRead);
//!
//! // A typo is caught by the checksum.
//! let mut typo = text.clone();
//! let wrong = if &text[20..21] == "x" { "y" } else { "x" };
//! typo.replace_range(20..21, wrong);
//! assert_eq!(typo.parse::<Cap>(), Err(Error::BadChecksum));
//!
//! // Debug output never shows the key.
//! assert!(!format!("{readcap:?}").contains(&text[6..]));
//! # Ok::<(), Error>(())
//! ```
//!
//! # Deriving a verifycap
//!
//! A checker or repairer needs to find the shares and check them, not to read them. Give it
//! the verifycap: the storage index plus the *server-selection index*, a one-way hash of the
//! key ([`selection_index_for`]). There is no API going the other way, and there cannot be:
//! the verifycap holds no key, and the key cannot be recovered from its hash.
//!
//! ```
//! use lafs_caps::{Cap, ImmutableReadCap, ImmutableVerifyCap, ReadKey, StorageIndex};
//!
//! let readcap = ImmutableReadCap::new(ReadKey::from_bytes([0x42; 16]), StorageIndex([7; 32]));
//! let verifycap: ImmutableVerifyCap = readcap.verify_cap();
//! assert_eq!(verifycap.storage_index(), readcap.storage_index());
//! assert!(verifycap.to_string().starts_with("lafsv1"));
//!
//! // A readcap is not a verifycap: parsing one as the other is an error, not a conversion.
//! assert!(readcap.to_string().parse::<ImmutableVerifyCap>().is_err());
//! assert_eq!(Cap::from(readcap).verify_cap(), Some(verifycap));
//! ```
//!
//! # Binary form
//!
//! Inside directories and on the wire a cap is `kind byte || payload`. Binary caps are
//! self-delimiting, so a list of caps is just their concatenation:
//!
//! ```
//! use lafs_caps::{Cap, ImmutableReadCap, LiteralCap, ReadKey, StorageIndex};
//!
//! let caps: Vec<Cap> = vec![
//!     ImmutableReadCap::new(ReadKey::from_bytes([1; 16]), StorageIndex([2; 32])).into(),
//!     LiteralCap::new(b"hello".to_vec())?.into(),
//! ];
//! let mut buf = Vec::new();
//! for cap in &caps {
//!     cap.write_to(&mut buf);
//! }
//! assert_eq!(buf.len(), 49 + 7);
//!
//! let (first, used) = Cap::read_from(&buf)?;
//! let second = Cap::from_bytes(&buf[used..])?;
//! assert_eq!([first, second], [caps[0].clone(), caps[1].clone()]);
//! # Ok::<(), lafs_caps::Error>(())
//! ```
//!
//! [bech32m]: https://github.com/bitcoin/bips/blob/master/bip-0350.mediawiki
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cap;
mod error;
mod keys;
mod kinds;
mod mutable;
mod text;

pub use cap::{Cap, CapKind};
pub use error::Error;
pub use keys::{selection_index_for, ReadKey, SelectionIndex, StorageIndex};
pub use kinds::{ImmutableReadCap, ImmutableVerifyCap, LiteralCap};
pub use mutable::{
    DirReadCap, DirTraverseCap, DirVerifyCap, DirWriteCap, ImmutableDirReadCap,
    ImmutableDirTraverseCap, ImmutableDirVerifyCap, MutablePublicKey, MutableReadCap,
    MutableVerifyCap, MutableWriteCap, SigningSeed, TraverseKey, IMMUTABLE_DIR_TRAVERSE_KEY_TAG,
    MUTABLE_READ_KEY_TAG, MUTABLE_STORAGE_INDEX_TAG, MUTABLE_TRAVERSE_KEY_TAG,
};
pub use text::MAX_TEXT_LEN;
