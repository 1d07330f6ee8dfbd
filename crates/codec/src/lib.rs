//! The lafs immutable file format, as sans-IO state machines.
//!
//! A file is cut into segments (default 1 MiB), encrypted with AES-128-CTR under a per-file
//! key, and each segment is Reed-Solomon coded into N blocks of which any k recover it
//! (default 3-of-10). Share *i* holds block *i* of every segment, the hash tree over its blocks,
//! a copy of the ciphertext hash tree, the chain of share-tree nodes that proves its block-tree
//! root, and the UEB (parameters and roots). The storage index is the hash of the UEB, so it
//! commits to every byte. The byte layout is specified in `docs/spec/immutable.md`.
//!
//! Nothing here does IO: you move bytes, the types decide and check.
//!
//! | type | role |
//! |---|---|
//! | [`Encoder`] | plaintext (or ciphertext) in, [`ShareWrite`]s out; then the caps ([`Encoded`]) |
//! | [`SegmentEncoder`] | the per-segment work, detached: segments encoded in parallel, [`Encoder::absorb`]ed in order |
//! | [`Decoder`] | a downloader: trailers, then any byte range, verified, from any k shares |
//! | [`ShareVerifier`] | a storage server checks a whole share and learns its storage index |
//! | [`ShareLayout`], [`trailer_len`], [`Ueb`] | pure offset arithmetic and the UEB format |
//! | [`encrypt_at`], [`decrypt_at`], [`ConvergentKeyHasher`], [`random_key`] | keys and AES-CTR |
//!
//! # Uploading
//!
//! ```
//! use lafs_codec::{random_key, Encoder, Params};
//!
//! let params = Params::new(3, 10, 4096)?; // 3-of-10, 4 KiB segments
//! let mut enc = Encoder::new(params, random_key()?)?;
//! let mut shares = vec![Vec::new(); 10];
//! let mut store = |w: lafs_codec::ShareWrite| {
//!     let s: &mut Vec<u8> = &mut shares[usize::from(w.share)];
//!     let end = w.offset as usize + w.data.len();
//!     if s.len() < end { s.resize(end, 0) }
//!     s[w.offset as usize..end].copy_from_slice(&w.data);
//! };
//! for chunk in b"hello world, ".repeat(1000).chunks(1000) {
//!     enc.push(chunk)?;                       // size need not be known in advance
//!     while let Some(w) = enc.poll_write() { store(w) }
//! }
//! let done = enc.finish()?;                   // UEB, storage index, caps, share lengths
//! while let Some(w) = enc.poll_write() { store(w) } // last blocks and the trailers
//! assert_eq!(shares[7].len() as u64, done.share_lens[7]);
//! # let _ = shares;
//! # Ok::<(), lafs_codec::Error>(())
//! ```
//!
//! # Checking a share (storage server)
//!
//! ```
//! # use lafs_codec::*;
//! # let (shares, done) = encode_to_shares(Params::new(3, 10, 4096)?, random_key()?, &[7; 9000])?;
//! let share: &[u8] = &shares[4];
//! let mut v = ShareVerifier::new(4, share.len() as u64);
//! while let Some(r) = v.next_read() {        // trailer first, then the rest in bounded chunks
//!     v.feed(r.start, &share[r.start as usize..r.end as usize])?;
//! }
//! let ok = v.result().unwrap().unwrap();
//! assert_eq!(ok.storage_index, done.storage_index);
//! # Ok::<(), lafs_codec::Error>(())
//! ```
//!
//! # Downloading
//!
//! The first request to each server is a *suffix* read (say the last 4 KiB of the share: for a
//! small file that is the whole share). [`Decoder::add_trailer`] checks it against the cap and
//! learns the parameters. Then [`Decoder::read`] a plaintext range and loop: send
//! [`Decoder::poll_requests`], feed each answer to [`Decoder::handle_response`], drain
//! [`Decoder::poll_output`].
//!
//! ```
//! # use lafs_codec::*;
//! # let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
//! # let (shares, done) = encode_to_shares(Params::new(3, 10, 4096)?, random_key()?, &data)?;
//! let cap = done.read_cap.unwrap();
//! let mut dec = Decoder::new(&cap);
//! for s in [9u16, 2, 5, 0] {                  // any shares, any order
//!     let sh = &shares[usize::from(s)];
//!     let suffix = &sh[sh.len().saturating_sub(4096)..];
//!     dec.add_trailer(s, sh.len() as u64, suffix)?;
//! }
//! dec.read(5000..15000)?;
//! let mut out = Vec::new();
//! while !dec.is_done() {
//!     for req in dec.poll_requests()? {
//!         for r in req.ranges {
//!             let bytes = &shares[usize::from(req.share)][r.start as usize..r.end as usize];
//!             // Err here names a corrupt share; the decoder then avoids it.
//!             dec.handle_response(req.share, r.start, bytes)?;
//!         }
//!     }
//!     while let Some(chunk) = dec.poll_output() {
//!         out.extend_from_slice(&chunk.data);
//!     }
//! }
//! assert_eq!(out, &data[5000..15000]);
//! # Ok::<(), lafs_codec::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod crypto;
mod decoder;
mod encoder;
mod erasure;
mod error;
mod format;
mod verifier;

pub use crypto::{
    convergent_key, decrypt_at, encrypt_at, random_key, ConvergentKeyHasher, CONVERGENT_KEY_TAG,
};
pub use decoder::{Decoder, OutputChunk, ShareRead};
pub use encoder::{encode_to_shares, Encoded, EncodedSegment, Encoder, SegmentEncoder, ShareWrite};
pub use erasure::Coder as ErasureCoder;
pub use error::{Error, SharePart};
pub use format::{
    chain_proof_indices, data_block_hashes, parse_ueb, segment_leaf, segment_leaf_of_ciphertext,
    trailer_len, Params, ShareLayout, Ueb, BLOCK_TAG, DEFAULT_SEGMENT_SIZE, FORMAT_VERSION,
    HASH_LEN, HEADER_LEN, MAX_SEGMENTS, MAX_SEGMENT_SIZE, MAX_TRAILER_LEN, SEGMENT_TAG,
    SHARE_MAGIC, UEB_LEN, UEB_TAG,
};
pub use verifier::{verify_share, IncomingShareHasher, ShareVerifier, VerifiedShare, VERIFY_CHUNK};
