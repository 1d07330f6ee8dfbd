//! Reading an immutable file's data shares straight from the storage servers, with the
//! hashing left to the page (WebCrypto) and every check made here.
//!
//! With the systematic code (`docs/spec/immutable.md` §2) the first `k` shares hold the
//! ciphertext itself: block `i` of segment `j` is bytes `[i·b, (i+1)·b)` of the (zero-padded)
//! segment. So a reader that fetches blocks of shares `0..k` decodes nothing: it joins the
//! blocks. What it must check:
//!
//! 1. each share's trailer: the UEB hashes to the verifycap's storage index, the share's length
//!    is the layout's, and the share hash chain leads from the share's block-tree root to the
//!    UEB's share root;
//! 2. each share's block-tree leaves (read with the trailer) rebuild that block-tree root, and
//!    one share's ciphertext-tree leaves rebuild the UEB's ciphertext root;
//! 3. each segment's ciphertext-tree leaf, computed from its length and the hashes of its k
//!    blocks (`docs/spec/immutable.md` §3), equals its verified leaf; and, with
//!    [`DirectReader::verify_batch`], each block's hash its verified block-tree leaf.
//!
//! The page hashes each block as read (`SHA-256(prefix ‖ block)` with [`block_hash_prefix`],
//! padding included) and hands the digests to [`DirectReader::verify_segments`] or
//! [`DirectReader::verify_batch`]; only what passes may be decrypted. A [`DirectReader`] is
//! built from the verifycap: it never holds the key, and the requests it plans carry only the
//! storage index, share numbers and byte ranges.

use lafs_caps::{Cap, ImmutableVerifyCap};
use lafs_codec::{ShareLayout, Ueb, BLOCK_TAG, UEB_LEN};
use lafs_hashtree::{Hash, HashTree, NodeIndex, PartialTree};
use lafs_proto::ids::storage_index_to_text;
use wasm_bindgen::prelude::wasm_bindgen;

use crate::checks::{
    hash_prefix, index, leaves_from_block_digests, segments_span, ueb_of, UebRefused,
};
use crate::{Error, LafsError};

/// Largest trailer (both trees, chain and UEB) a reader accepts to read whole: 2 × 4 MiB of
/// tree nodes, i.e. files of up to 65 536 segments (64 GiB at the default segment size).
pub const MAX_DIRECT_TRAILER: u64 = 8 * 1024 * 1024 + 64 * 1024;

/// Checks the data shares of one immutable file read directly from storage servers (see the
/// module documentation). Created from a verifycap (text) with `new DirectReader(verifyCap)`.
#[wasm_bindgen]
pub struct DirectReader {
    cap: ImmutableVerifyCap,
    ueb: Option<Ueb>,
    /// Verified block-tree leaves of shares `0..k` (index = share number).
    blocks: Vec<Option<Vec<Hash>>>,
    /// Verified ciphertext-tree leaves.
    segments: Option<Vec<Hash>>,
}

impl core::fmt::Debug for DirectReader {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DirectReader")
            .field("verify_cap", &self.cap.to_string())
            .finish_non_exhaustive()
    }
}

fn integrity(what: String) -> LafsError {
    Error::Integrity { what }.into()
}

/// `count` hashes of 32 bytes from `bytes` starting at hash number `first`.
fn hashes_at(bytes: &[u8], first: u64, count: u64) -> Option<Vec<Hash>> {
    let start = usize::try_from(first.checked_mul(32)?).ok()?;
    let end = usize::try_from(first.checked_add(count)?.checked_mul(32)?).ok()?;
    bytes
        .get(start..end)?
        .chunks_exact(32)
        .map(Hash::from_slice)
        .collect()
}

/// The leaf hashes stored in a tree section (`2P − 2` nodes, heap order, nodes `1..2P−1`);
/// a one-leaf tree stores nothing: its leaf is its `root`.
fn stored_leaves(section: &[u8], layout: &ShareLayout, root: Hash) -> Option<Vec<Hash>> {
    if layout.tree_width() == 1 {
        return Some(vec![root; usize::try_from(layout.num_segments()).ok()?]);
    }
    // Leaf j is node P − 1 + j, stored at position (P − 1 + j) − 1.
    let first = layout.tree_width().checked_sub(2)?;
    hashes_at(section, first, layout.num_segments())
}

#[wasm_bindgen]
impl DirectReader {
    /// Starts checking the file of an immutable verifycap (or readcap: only its verifycap is
    /// kept), text form.
    #[wasm_bindgen(constructor)]
    pub fn new(cap: &str) -> Result<Self, LafsError> {
        let cap = match cap.trim().parse::<Cap>()? {
            Cap::ImmutableVerify(v) => v,
            Cap::ImmutableRead(r) => r.verify_cap(),
            _ => return Err(Error::InvalidUse.into()),
        };
        Ok(Self {
            cap,
            ueb: None,
            blocks: Vec::new(),
            segments: None,
        })
    }

    /// The storage index as it appears in storage-server URLs (base32, public).
    #[wasm_bindgen(getter, js_name = storageIndex)]
    pub fn storage_index(&self) -> String {
        storage_index_to_text(self.cap.storage_index())
    }

    /// Shares needed (`k`); 0 before the first trailer.
    #[wasm_bindgen(getter)]
    pub fn k(&self) -> u16 {
        self.ueb.map_or(0, |u| u.params.k())
    }

    /// File size in bytes; 0 before the first trailer.
    #[wasm_bindgen(getter, js_name = fileSize)]
    pub fn file_size(&self) -> f64 {
        self.ueb.map_or(0.0, |u| u.file_size as f64)
    }

    /// Segment size in bytes; 0 before the first trailer.
    #[wasm_bindgen(getter, js_name = segmentSize)]
    pub fn segment_size(&self) -> u32 {
        self.ueb.map_or(0, |u| u.params.segment_size())
    }

    /// Number of segments; 0 before the first trailer (and for an empty file).
    #[wasm_bindgen(getter, js_name = numSegments)]
    pub fn num_segments(&self) -> f64 {
        self.ueb.map_or(0.0, |u| u.num_segments() as f64)
    }

    /// The UEB (82 bytes) once a trailer verified: the same bytes `FileReader.setUeb` takes.
    #[wasm_bindgen(getter)]
    pub fn ueb(&self) -> Option<Vec<u8>> {
        self.ueb.map(|u| u.to_bytes().to_vec())
    }

    /// Whether every share `0..k` has verified its trailer (blocks can be checked).
    #[wasm_bindgen(getter)]
    pub fn ready(&self) -> bool {
        self.ueb.is_some()
            && self.segments.is_some()
            && self.blocks.len() == usize::from(self.k())
            && self.blocks.iter().all(Option::is_some)
    }

    /// Checks the last bytes of share `share` (`suffix`, from a `Range: bytes=-n` read of a
    /// share `share_len` bytes long). Returns 0 once the share's trailer verified, or the
    /// suffix length to read instead if `suffix` is too short to hold both trees, the chain
    /// and the UEB. Fails with an integrity error naming the share if anything does not
    /// verify, and with `invalid-use` for a share outside `0..k` or a trailer above
    /// [`MAX_DIRECT_TRAILER`] (such files are read another way).
    #[wasm_bindgen(js_name = addSuffix)]
    pub fn add_suffix(
        &mut self,
        share: u16,
        share_len: f64,
        suffix: &[u8],
    ) -> Result<f64, LafsError> {
        let share_len = index(share_len)?;
        let Some(ueb_bytes) = suffix
            .len()
            .checked_sub(UEB_LEN)
            .and_then(|s| suffix.get(s..))
        else {
            return Ok(UEB_LEN as f64 + 4096.0);
        };
        let ueb = ueb_of(&self.cap, ueb_bytes).map_err(|e| match e {
            UebRefused::Malformed(e) => {
                integrity(format!("share {share} holds no valid UEB ({e})"))
            }
            UebRefused::OtherFile => integrity(format!(
                "share {share} holds the UEB of another file (its hash is not the storage index)"
            )),
        })?;
        if share >= ueb.params.k() {
            return Err(Error::InvalidUse.into());
        }
        let layout = ueb.layout(share).map_err(Error::from)?;
        if layout.share_len() != share_len {
            return Err(integrity(format!(
                "share {share} is {share_len} bytes long, not the {} its UEB implies",
                layout.share_len()
            )));
        }
        let trailer_start = layout.block_tree_range().start;
        let need = share_len - trailer_start;
        if need > MAX_DIRECT_TRAILER {
            return Err(Error::InvalidUse.into());
        }
        let have = suffix.len() as u64;
        if have < need {
            return Ok(need as f64);
        }
        // Offsets inside the suffix of the sections that follow the blocks.
        let at = |r: core::ops::Range<u64>| {
            let s = usize::try_from(r.start - (share_len - have)).ok()?;
            let e = usize::try_from(r.end - (share_len - have)).ok()?;
            suffix.get(s..e)
        };
        let bad = || integrity(format!("share {share}'s trailer is truncated"));
        let block_section = at(layout.block_tree_range()).ok_or_else(bad)?;
        let ct_section = at(layout.ciphertext_tree_range()).ok_or_else(bad)?;
        let chain = at(layout.chain_range()).ok_or_else(bad)?;
        // The chain: this share's block-tree root, then the share-tree proof.
        let root = Hash::from_slice(chain.get(..32).ok_or_else(bad)?).ok_or_else(bad)?;
        let proof = hashes_at(chain, 1, layout.chain_indices().len() as u64).ok_or_else(bad)?;
        let n = usize::from(ueb.params.n());
        let mut share_tree = PartialTree::new(ueb.share_root, n).map_err(Error::from)?;
        let mut nodes: Vec<(NodeIndex, Hash)> =
            layout.chain_indices().iter().copied().zip(proof).collect();
        nodes.push((
            lafs_hashtree::leaf_node_index(n, usize::from(share)).map_err(Error::from)?,
            root,
        ));
        if share_tree.add_nodes(&nodes).is_err()
            || share_tree.verified_leaf(usize::from(share)).is_none()
        {
            return Err(integrity(format!(
                "share {share}'s hash chain does not lead to the UEB's share root"
            )));
        }
        let leaves = stored_leaves(block_section, &layout, root).ok_or_else(bad)?;
        if HashTree::from_leaves(&leaves).root() != root {
            return Err(integrity(format!(
                "share {share}'s block hashes do not match its block-tree root"
            )));
        }
        if self.segments.is_none() {
            let ct = stored_leaves(ct_section, &layout, ueb.ciphertext_root).ok_or_else(bad)?;
            if HashTree::from_leaves(&ct).root() != ueb.ciphertext_root {
                return Err(integrity(format!(
                    "share {share}'s ciphertext hashes do not match the UEB's ciphertext root"
                )));
            }
            self.segments = Some(ct);
        }
        if self.blocks.is_empty() {
            self.blocks = vec![None; usize::from(ueb.params.k())];
        }
        if let Some(slot) = self.blocks.get_mut(usize::from(share)) {
            *slot = Some(leaves);
        }
        self.ueb = Some(ueb);
        Ok(0.0)
    }

    /// `[offset, length]` of blocks `first..end` in every data share (contiguous: block `j` is
    /// at `20 + j·B`). Fails past the end of the file or before the first trailer.
    #[wasm_bindgen(js_name = blockRange)]
    pub fn block_range(&self, first: f64, end: f64) -> Result<Vec<f64>, LafsError> {
        let ueb = self.ueb.ok_or(Error::InvalidUse)?;
        let (first, end) = (index(first)?, index(end)?);
        let layout = ueb.layout(0).map_err(Error::from)?;
        let (Some(a), Some(b)) = (
            layout.block_range(first),
            end.checked_sub(1).and_then(|l| layout.block_range(l)),
        ) else {
            return Err(Error::InvalidUse.into());
        };
        if b.end < a.start {
            return Err(Error::InvalidUse.into());
        }
        Ok(vec![a.start as f64, (b.end - a.start) as f64])
    }

    /// Checks a batch of segments `first, first+1, …` read from shares `0..k`:
    /// `block_digests` holds, segment by segment and within a segment share by share, the
    /// 32-byte `SHA-256(blockHashPrefix() ‖ block)` of each block as read (padding included);
    /// the segments are `byte_len` bytes in all (padding cut).
    ///
    /// Succeeds only if every block matches its share's verified block tree and every segment
    /// (its leaf from its length and block digests) the file's ciphertext tree; returns the
    /// file offset of the first byte. An error names the share and segment of the first block
    /// that failed, or the segment.
    #[wasm_bindgen(js_name = verifyBatch)]
    pub fn verify_batch(
        &self,
        first: f64,
        block_digests: &[u8],
        byte_len: f64,
    ) -> Result<f64, LafsError> {
        let ueb = self.ueb.ok_or(Error::InvalidUse)?;
        if !self.ready() {
            return Err(Error::InvalidUse.into());
        }
        let (first, byte_len) = (index(first)?, index(byte_len)?);
        let k = u64::from(ueb.params.k());
        let (leaves, span) = leaves_from_block_digests(&ueb, first, block_digests)?;
        whole_segments(&ueb, first, leaves.len() as u64, byte_len)?;
        for (n, d) in block_digests.chunks_exact(32).enumerate() {
            let n = n as u64;
            let (segment, share) = (first + n / k, n % k);
            let want = usize::try_from(share)
                .ok()
                .and_then(|s| self.blocks.get(s))
                .and_then(Option::as_ref)
                .and_then(|l| leaf(l, segment));
            if want != Hash::from_slice(d) {
                return Err(integrity(format!(
                    "the block of share {share} for segment {segment} does not match the share's block tree"
                )));
            }
        }
        self.check_segments(&leaves, "")?;
        Ok(span.start as f64)
    }

    /// Checks a batch of segments `first, first+1, …` read from the blocks of shares `0..k`
    /// by the digests of their blocks alone: `block_digests` as for
    /// [`DirectReader::verify_batch`] (k per segment, `byte_len` bytes of segments in all).
    /// Each segment's ciphertext-tree leaf is computed from its length and its k block digests
    /// and compared with the verified leaf. This is the whole integrity check: the
    /// ciphertext-tree leaves were proven against the UEB's root, and the UEB against the
    /// verifycap's storage index, exactly as for ciphertext fetched through a gateway. What it
    /// cannot say is which share was wrong when a segment fails ([`DirectReader::verify_batch`]
    /// also checks each block against its share's tree for that): a reader then turns to other
    /// shares. Returns the file offset of the first byte.
    #[wasm_bindgen(js_name = verifySegments)]
    pub fn verify_segments(
        &self,
        first: f64,
        block_digests: &[u8],
        byte_len: f64,
    ) -> Result<f64, LafsError> {
        let ueb = self.ueb.ok_or(Error::InvalidUse)?;
        if self.segments.is_none() {
            return Err(Error::InvalidUse.into());
        }
        let (first, byte_len) = (index(first)?, index(byte_len)?);
        let (leaves, span) = leaves_from_block_digests(&ueb, first, block_digests)?;
        whole_segments(&ueb, first, leaves.len() as u64, byte_len)?;
        self.check_segments(&leaves, " read from the storage servers")?;
        Ok(span.start as f64)
    }
}

impl DirectReader {
    /// Checks computed leaves `(segment, leaf)` against the verified ciphertext-tree leaves; an
    /// error names the first segment that differs (`read_from` says where it came from, for
    /// the message).
    fn check_segments(&self, leaves: &[(u64, Hash)], read_from: &str) -> Result<(), LafsError> {
        let segments = self.segments.as_ref().ok_or(Error::InvalidUse)?;
        for &(segment, computed) in leaves {
            if leaf(segments, segment) != Some(computed) {
                return Err(integrity(format!(
                    "segment {segment}{read_from} does not match the file's hash tree"
                )));
            }
        }
        Ok(())
    }
}

/// Leaf `j` of verified leaves.
fn leaf(leaves: &[Hash], j: u64) -> Option<Hash> {
    usize::try_from(j).ok().and_then(|j| leaves.get(j).copied())
}

/// The file bytes of segments `first..first + count`, which must be `byte_len` bytes
/// (`invalid-use` otherwise); an integrity error past the end of the file.
fn whole_segments(
    ueb: &Ueb,
    first: u64,
    count: u64,
    byte_len: u64,
) -> Result<core::ops::Range<u64>, LafsError> {
    let span = segments_span(ueb, first, count)?;
    if span.end - span.start != byte_len {
        return Err(Error::InvalidUse.into());
    }
    Ok(span)
}

/// The bytes that precede a block in its block-tree leaf hash: `u8(len(tag)) ‖ tag` with the
/// tag `lafs/v1/immutable/block` (`docs/spec/hashtree.md`). SHA-256 of this prefix followed by
/// the block is its block-tree leaf; the digests of a segment's k data blocks make its
/// ciphertext-tree leaf ([`DirectReader::verify_batch`], [`crate::FileReader::verify_digests`]).
#[wasm_bindgen(js_name = blockHashPrefix)]
pub fn block_hash_prefix() -> Vec<u8> {
    hash_prefix(BLOCK_TAG)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lafs_codec::{encode_to_shares, random_key, Params};
    use sha2::{Digest, Sha256};

    fn sha(prefix: &[u8], data: &[u8]) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(prefix);
        h.update(data);
        h.finalize().to_vec()
    }

    /// A file of `size` bytes in 3-of-10 with 4 KiB segments: (verifycap text, shares, ciphertext).
    fn file(size: usize) -> (String, Vec<Vec<u8>>, Ueb) {
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let key = random_key().unwrap();
        let (shares, done) =
            encode_to_shares(Params::new(3, 10, 4096).unwrap(), key, &data).unwrap();
        let cap = done.read_cap.unwrap().verify_cap().to_string();
        (cap, shares, done.ueb)
    }

    /// Block digests of segments `first..end` as the page computes them, from shares `0..k`,
    /// and the number of ciphertext bytes they cover.
    fn batch(shares: &[Vec<u8>], ueb: &Ueb, first: u64, end: u64) -> (Vec<u8>, u64) {
        let layout = ueb.layout(0).unwrap();
        let (mut bd, mut len) = (Vec::new(), 0);
        for j in first..end {
            let r = layout.block_range(j).unwrap();
            let seg_len = ueb.segment_range(j).map(|r| r.end - r.start).unwrap();
            for s in shares.iter().take(3) {
                let block = &s[r.start as usize..r.end as usize];
                bd.extend(sha(&block_hash_prefix(), block));
            }
            len += seg_len;
        }
        (bd, len)
    }

    fn ready(size: usize) -> (DirectReader, Vec<Vec<u8>>, Ueb) {
        let (cap, shares, ueb) = file(size);
        let mut r = DirectReader::new(&cap).unwrap();
        for (i, s) in shares.iter().take(3).enumerate() {
            // A short suffix first: the reader asks for the length it needs.
            let need = r
                .add_suffix(i as u16, s.len() as f64, &s[s.len() - 100..])
                .unwrap();
            assert!(need > 100.0);
            let suffix = &s[s.len() - need as usize..];
            assert_eq!(r.add_suffix(i as u16, s.len() as f64, suffix), Ok(0.0));
        }
        assert!(r.ready());
        (r, shares, ueb)
    }

    #[test]
    fn verifies_blocks_and_segments() {
        let (r, shares, ueb) = ready(50_000);
        assert_eq!(r.num_segments(), 13.0);
        assert_eq!(r.ueb(), Some(ueb.to_bytes().to_vec()));
        assert_eq!(
            r.block_range(2.0, 5.0).unwrap(),
            vec![20.0 + 2.0 * 1366.0, 3.0 * 1366.0]
        );
        let (bd, len) = batch(&shares, &ueb, 2, 5);
        assert_eq!(r.verify_batch(2.0, &bd, len as f64), Ok(8192.0));
        // The last, short segment.
        let (bd, len) = batch(&shares, &ueb, 12, 13);
        assert_eq!(r.verify_batch(12.0, &bd, len as f64), Ok(12.0 * 4096.0));
        // A wrong block names its share and segment.
        let mut bad = bd.clone();
        bad[40] ^= 1;
        let e = r.verify_batch(12.0, &bad, len as f64).unwrap_err();
        assert_eq!(e.code(), "integrity");
        assert!(
            e.message().contains("share 1 for segment 12"),
            "{}",
            e.message()
        );
        // The block digests alone: the segment's leaf from them.
        assert_eq!(r.verify_segments(12.0, &bd, len as f64), Ok(12.0 * 4096.0));
        let e = r.verify_segments(12.0, &bad, len as f64).unwrap_err();
        assert_eq!(e.code(), "integrity");
        assert!(e.message().contains("segment 12"), "{}", e.message());
        // Blocks in another order make another leaf.
        let mut swapped = bd.clone();
        swapped.rotate_left(32);
        let e = r.verify_segments(12.0, &swapped, len as f64).unwrap_err();
        assert_eq!(e.code(), "integrity");
        let (bd2, len2) = batch(&shares, &ueb, 0, 13);
        assert_eq!(r.verify_segments(0.0, &bd2, len2 as f64), Ok(0.0));
        assert_eq!(
            r.verify_segments(1.0, &bd2, len2 as f64)
                .unwrap_err()
                .code(),
            "integrity"
        );
        assert_eq!(
            r.verify_segments(0.0, &bd2, len2 as f64 + 1.0)
                .unwrap_err()
                .code(),
            "invalid-use"
        );
        // Wrong lengths are misuse.
        assert_eq!(
            r.verify_batch(12.0, &bd, len as f64 - 1.0)
                .unwrap_err()
                .code(),
            "invalid-use"
        );
        for cut in [32, 64, 90] {
            assert_eq!(
                r.verify_batch(12.0, &bd[..cut], len as f64)
                    .unwrap_err()
                    .code(),
                "invalid-use"
            );
        }
    }

    #[test]
    fn tampered_trailers_are_refused() {
        let (cap, shares, _) = file(20_000);
        // Another file's share.
        let (_, other, _) = file(20_001);
        let mut r = DirectReader::new(&cap).unwrap();
        let s = &other[0];
        assert_eq!(
            r.add_suffix(0, s.len() as f64, s).unwrap_err().code(),
            "integrity"
        );
        // A flipped block-tree leaf, chain hash, ciphertext leaf; a wrong length.
        let s = &shares[1];
        let layout = Ueb::parse(&s[s.len() - UEB_LEN..])
            .unwrap()
            .layout(1)
            .unwrap();
        let leaf =
            layout.block_tree_range().start as usize + 32 * (layout.tree_width() as usize - 2);
        let ct_leaf =
            layout.ciphertext_tree_range().start as usize + 32 * (layout.tree_width() as usize - 2);
        for at in [leaf + 3, layout.chain_range().start as usize + 40, ct_leaf] {
            let mut bad = s.clone();
            bad[at] ^= 1;
            let mut r = DirectReader::new(&cap).unwrap();
            let e = r.add_suffix(1, bad.len() as f64, &bad).unwrap_err();
            assert!(e.message().contains("share 1"), "{}", e.message());
        }
        let mut r = DirectReader::new(&cap).unwrap();
        assert_eq!(
            r.add_suffix(1, s.len() as f64 + 1.0, s).unwrap_err().code(),
            "integrity"
        );
        // A parity share is not read this way.
        let s = &shares[5];
        assert_eq!(
            r.add_suffix(5, s.len() as f64, s).unwrap_err().code(),
            "invalid-use"
        );
        assert!(!r.ready());
    }

    #[test]
    fn one_segment_and_readcap() {
        let data = vec![7u8; 1000];
        let key = random_key().unwrap();
        let (shares, done) =
            encode_to_shares(Params::new(3, 10, 4096).unwrap(), key, &data).unwrap();
        let mut r = DirectReader::new(&done.read_cap.unwrap().to_string()).unwrap();
        for (i, s) in shares.iter().take(3).enumerate() {
            assert_eq!(r.add_suffix(i as u16, s.len() as f64, s), Ok(0.0));
        }
        let (bd, len) = batch(&shares, &done.ueb, 0, 1);
        assert_eq!(len, 1000);
        assert_eq!(r.verify_batch(0.0, &bd, 1000.0), Ok(0.0));
        assert_eq!(r.verify_segments(0.0, &bd, 1000.0), Ok(0.0));
    }
}
