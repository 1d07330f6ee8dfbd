//! Hash helpers (see `docs/spec/hashtree.md`).

use lafs_hashtree::{tagged_hash, Hash, HashTree};
use wasm_bindgen::prelude::wasm_bindgen;

use crate::{Error, LafsError};

/// lafs' domain-separated SHA-256: `SHA-256(u8(len(tag)) || tag || data)`, as lowercase hex
/// (64 characters).
///
/// The tag's length must fit its one-byte prefix: a tag longer than 255 bytes fails with code
/// `"tag-too-long"`.
#[wasm_bindgen(js_name = taggedHashHex)]
pub fn tagged_hash_hex(tag: &str, data: &[u8]) -> Result<String, LafsError> {
    if tag.len() > MAX_TAG_LEN {
        return Err(Error::TagTooLong { len: tag.len() }.into());
    }
    Ok(tagged_hash(tag, &[data]).to_hex())
}

/// Longest hash tag: its length is written in one byte.
const MAX_TAG_LEN: usize = 255;

/// Root of the lafs hash tree over `leaves`, the concatenation of the 32-byte leaf hashes, as
/// lowercase hex. Zero leaves give the root of the empty tree. Fails with code `"leaf-bytes"` if
/// the length is not a multiple of 32.
#[wasm_bindgen(js_name = merkleRootHex)]
pub fn merkle_root_hex(leaves: &[u8]) -> Result<String, LafsError> {
    if leaves.len() % Hash::LEN != 0 {
        return Err(Error::LeafBytes { len: leaves.len() }.into());
    }
    let leaves: Vec<Hash> = leaves
        .chunks_exact(Hash::LEN)
        .filter_map(Hash::from_slice)
        .collect();
    Ok(HashTree::from_leaves(&leaves).root().to_hex())
}
