//! lafs mutable files: Ed25519-signed, segmented (MDMF-style) shares, as pure functions and
//! sans-IO steps.
//!
//! A mutable file has an Ed25519 key pair. The **writecap** is the 32-byte seed; the
//! **readcap** is a read key derived from it plus the public key; the **verifycap** is the
//! public key; the **storage index** is a hash of the public key (see `lafs-caps`). Each
//! version is cut into segments; each segment is encrypted with AES-128-CTR under a key
//! derived from the file's content key and a fresh random salt, erasure coded k-of-N, and
//! share *i* stores record *i* (salt ‖ block) of every segment at a fixed offset, a block hash
//! tree, the chain of share-tree hashes up to the signed root, and a header signed by the
//! file's key over (seqnum, root, parameters, file size). Byte layout: `docs/spec/mutable.md`.
//!
//! | step | function |
//! |---|---|
//! | new file | [`new_seed`], then [`encode_version`] with seqnum 1 |
//! | replace the contents | [`encode_version`] with seqnum = latest + 1 |
//! | change a byte range / append | [`plan_update`] → read the `need_old` segments → [`update`] |
//! | storage server accepts a write? | [`check_write`] (test-and-set on the seqnum) |
//! | which version is current? | parse headers, [`select_latest`] |
//! | read | [`VersionReader::ranges`] → fetch → [`VersionReader::read`] |
//! | check a share with the verifycap | [`verify_share`] |
//! | rebuild missing shares (no key needed) | [`rebuild_shares`] |
//!
//! ```
//! use std::collections::BTreeMap;
//! use lafs_caps::MutableWriteCap;
//! use lafs_codec::Params;
//! use lafs_mutable::*;
//!
//! let cap = MutableWriteCap::new(new_seed(&mut OsEntropy)?);
//! let keys = WriteKeys::for_file(&cap);
//! let si = cap.storage_index();
//! let params = Params::new(2, 3, 1024)?;
//!
//! // Publish version 1: three whole shares, each checked by its server.
//! let v1 = encode_version(&keys, params, 1, &vec![7u8; 5000], &mut OsEntropy)?;
//! let mut servers: Vec<Vec<u8>> = vec![Vec::new(); 3];
//! for w in v1.writes() {
//!     check_write(&si, None, &w)?;
//!     w.apply(&mut servers[usize::from(w.share())])?;
//! }
//!
//! // Overwrite bytes 100..110: only segment 0 changes.
//! let plan = plan_update(&v1.info, 100, 10)?;
//! assert_eq!(plan.need_old, vec![0]);
//! let old = BTreeMap::from([(0, vec![7u8; 1024])]);
//! let v2 = update(&keys, &v1.state, 100, b"0123456789", &old, &mut OsEntropy)?;
//! for w in &v2.writes {
//!     let stored = &mut servers[usize::from(w.share())];
//!     check_write(&si, Some(stored), w)?;          // seqnum 2 > 1: accepted
//!     w.apply(stored)?;
//! }
//!
//! // Read it back with the readcap.
//! let rc = cap.read_cap();
//! let headers: Vec<_> = servers.iter().enumerate()
//!     .map(|(i, s)| SignedHeader::parse(i as u16, s)).collect::<Result<_, _>>()?;
//! let latest = select_latest(rc.public_key(), &headers)?;
//! assert_eq!(latest.info.seqnum, 2);
//! let reader = VersionReader::new(latest.info, rc.public_key(), ContentKey::for_file(rc.read_key()))?;
//! let fetched: BTreeMap<u16, FetchedShare> = servers.iter().enumerate()
//!     .map(|(i, s)| (i as u16, FetchedShare::whole(s.clone()))).collect();
//! let out = reader.read(95..115, &fetched)?;
//! assert_eq!(out.plaintext, b"\x07\x07\x07\x07\x070123456789\x07\x07\x07\x07\x07");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod format;
mod publish;
mod read;
mod repair;
mod validity;

pub use error::Error;
pub use format::{
    chain_root, new_seed, record_hash, ContentKey, Entropy, Layout, OsEntropy, ReadKeys,
    SignedHeader, VersionInfo, WriteKeys, BLOCK_TAG, DIR_CONTENT_KEY_TAG, FILE_CONTENT_KEY_TAG,
    HASH_LEN, HEADER_LEN, MAX_PREFIX_LEN, MAX_SEGMENTS, MUTABLE_MAGIC, MUTABLE_VERSION, SALT_LEN,
    SEGMENT_KEY_TAG, SIGNATURE_TAG,
};
pub use publish::{
    encode_version, encode_version_from, plan_update, update, Encoded, Patch, SegmentSource,
    ShareWrite, Update, UpdatePlan, VersionState,
};
pub use read::{select_latest, FetchedShare, ReadOutput, Selected, VersionReader};
pub use repair::rebuild_shares;
pub use validity::{check_write, check_write_in, verify_share, StoredShare, Verdict};
