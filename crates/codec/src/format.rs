//! Parameters, the UEB and the share layout: pure functions of the format
//! (`docs/spec/immutable.md`).

use core::ops::Range;

use lafs_caps::StorageIndex;
use lafs_hashtree::{proof_indices, tagged_hash, tree_width, Hash, NodeIndex, TaggedHasher};

use crate::{Error, SharePart};

/// Format version stored in the header and the UEB.
pub const FORMAT_VERSION: u16 = 1;
/// Magic bytes at the start of every share.
pub const SHARE_MAGIC: [u8; 8] = *b"LAFSIMM1";
/// Length of the fixed share header.
pub const HEADER_LEN: u64 = 20;
/// Length of an encoded UEB.
pub const UEB_LEN: usize = 82;
/// Length of a hash (tree node) in a share.
pub const HASH_LEN: u64 = 32;
/// Largest allowed segment size (64 MiB).
pub const MAX_SEGMENT_SIZE: u32 = 64 << 20;
/// Default segment size (1 MiB).
pub const DEFAULT_SEGMENT_SIZE: u32 = 1 << 20;
/// Largest number of segments of one file (2^31), so that tree node indexes fit 32-bit `usize`.
pub const MAX_SEGMENTS: u64 = 1 << 31;
/// Largest trailer (share hash chain + UEB) of any share: N = 256 needs 8 proof nodes.
pub const MAX_TRAILER_LEN: u64 = 9 * HASH_LEN + UEB_LEN as u64;

/// Tag of the storage index: `tagged_hash(UEB_TAG, ueb bytes)`.
pub const UEB_TAG: &str = "lafs/v1/immutable/ueb";
/// Tag of a ciphertext-tree leaf: `tagged_hash(SEGMENT_TAG, be64(len) || H_0 || … || H_{k-1})`
/// over the segment's length and its k data-block hashes ([`segment_leaf`]).
pub const SEGMENT_TAG: &str = "lafs/v1/immutable/segment-blocks";
/// Tag of a block-tree leaf: `tagged_hash(BLOCK_TAG, block bytes)`.
pub const BLOCK_TAG: &str = "lafs/v1/immutable/block";

/// The ciphertext-tree leaf of a segment of `len` ciphertext bytes from the block hashes of its
/// data blocks (`tagged_hash(BLOCK_TAG, data block i)` for `i` in `0..k`, in order, each block
/// zero-padded to `ceil(len / k)` bytes as stored in share `i`):
/// `tagged_hash(SEGMENT_TAG, be64(len) || H_0 || … || H_{k-1})`.
///
/// Fails with [`Error::InvalidState`] unless `1 ≤ len ≤ segment_size` and exactly k hashes are
/// given. The leaf commits to every ciphertext byte of the segment: the blocks hold the
/// ciphertext in order, and `len` says where their zero padding starts.
pub fn segment_leaf(params: &Params, len: u64, data_block_hashes: &[Hash]) -> Result<Hash, Error> {
    if len == 0 || len > u64::from(params.segment_size) {
        return Err(Error::InvalidState(
            "a segment holds between 1 byte and the segment size",
        ));
    }
    if data_block_hashes.len() != usize::from(params.k) {
        return Err(Error::InvalidState(
            "a segment leaf needs exactly k block hashes",
        ));
    }
    Ok(segment_leaf_unchecked(len, data_block_hashes))
}

/// [`segment_leaf`] without the parameter checks (callers that built the hashes themselves).
pub(crate) fn segment_leaf_unchecked(len: u64, data_block_hashes: &[Hash]) -> Hash {
    let mut h = TaggedHasher::new(SEGMENT_TAG);
    h.update(&len.to_be_bytes());
    for d in data_block_hashes {
        h.update(d.as_bytes());
    }
    h.finalize()
}

/// The hashes `tagged_hash(BLOCK_TAG, data block i)`, `i` in `0..k`, of a segment's ciphertext:
/// block size `b = ceil(len / k)`, data block `i` = `ciphertext[min(i·b, len) .. min((i+1)·b,
/// len)]` zero-padded to `b` bytes (exactly the blocks the encoder stores in shares `0..k`; a
/// block may be all padding). The padding is hashed without copying the block.
pub fn data_block_hashes(k: u16, ciphertext: &[u8]) -> Vec<Hash> {
    const ZEROS: [u8; 4096] = [0; 4096];
    let k = usize::from(k).max(1);
    let len = ciphertext.len();
    let b = len.div_ceil(k);
    (0..k)
        .map(|i| {
            let start = (i * b).min(len);
            let end = (start + b).min(len);
            let mut h = TaggedHasher::new(BLOCK_TAG);
            h.update(&ciphertext[start..end]);
            let mut pad = b - (end - start);
            while pad > 0 {
                let n = pad.min(ZEROS.len());
                h.update(&ZEROS[..n]);
                pad -= n;
            }
            h.finalize()
        })
        .collect()
}

/// The ciphertext-tree leaf of a segment from its ciphertext (for verifiers that hold the
/// ciphertext rather than the blocks): [`segment_leaf`] over [`data_block_hashes`]. Same
/// checks as [`segment_leaf`] (`1 ≤ len ≤ segment_size`).
pub fn segment_leaf_of_ciphertext(params: &Params, ciphertext: &[u8]) -> Result<Hash, Error> {
    segment_leaf(
        params,
        ciphertext.len() as u64,
        &data_block_hashes(params.k, ciphertext),
    )
}

/// Encoding parameters: k-of-N erasure coding over segments of `segment_size` bytes.
///
/// Guarantees 1 ≤ k ≤ N ≤ 256 and 1 ≤ segment_size ≤ [`MAX_SEGMENT_SIZE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Params {
    k: u16,
    n: u16,
    segment_size: u32,
}

impl Default for Params {
    /// 3-of-10 with 1 MiB segments.
    fn default() -> Self {
        Self {
            k: 3,
            n: 10,
            segment_size: DEFAULT_SEGMENT_SIZE,
        }
    }
}

impl Params {
    /// Checks and builds parameters.
    pub fn new(k: u16, n: u16, segment_size: u32) -> Result<Self, Error> {
        let bad = |reason| {
            Err(Error::BadParams {
                k,
                n,
                segment_size,
                reason,
            })
        };
        if k == 0 {
            return bad("k must be at least 1");
        }
        if n < k {
            return bad("N must be at least k");
        }
        if n > 256 {
            return bad("N must be at most 256");
        }
        if segment_size == 0 {
            return bad("segment size must be at least 1");
        }
        if segment_size > MAX_SEGMENT_SIZE {
            return bad("segment size must be at most 64 MiB");
        }
        Ok(Self { k, n, segment_size })
    }

    /// Shares needed to read (k).
    pub fn k(&self) -> u16 {
        self.k
    }

    /// Total shares (N).
    pub fn n(&self) -> u16 {
        self.n
    }

    /// Segment size in bytes.
    pub fn segment_size(&self) -> u32 {
        self.segment_size
    }

    /// The 8-byte encoding `k u16 || N u16 || segment_size u32` (big-endian), used in the
    /// header, the UEB and the convergent-key derivation.
    pub fn to_bytes(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out[0..2].copy_from_slice(&self.k.to_be_bytes());
        out[2..4].copy_from_slice(&self.n.to_be_bytes());
        out[4..8].copy_from_slice(&self.segment_size.to_be_bytes());
        out
    }

    /// Number of segments of a file of `file_size` bytes (0 for an empty file).
    pub fn num_segments(&self, file_size: u64) -> u64 {
        file_size.div_ceil(u64::from(self.segment_size))
    }

    /// Block size of full segments: `ceil(segment_size / k)`.
    pub fn full_block_size(&self) -> u64 {
        u64::from(self.segment_size).div_ceil(u64::from(self.k))
    }
}

/// The URI extension block: everything a downloader needs, committed to by the storage index
/// (`tagged_hash("lafs/v1/immutable/ueb", bytes)`). Fixed length [`UEB_LEN`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ueb {
    /// Encoding parameters.
    pub params: Params,
    /// Plaintext (= ciphertext) length in bytes.
    pub file_size: u64,
    /// Root of the ciphertext hash tree (one leaf per segment).
    pub ciphertext_root: Hash,
    /// Root of the share hash tree (one leaf per share: its block-tree root).
    pub share_root: Hash,
}

impl Ueb {
    /// Encodes the UEB (see the spec's table).
    pub fn to_bytes(&self) -> [u8; UEB_LEN] {
        let mut out = [0u8; UEB_LEN];
        out[0..2].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
        out[2..10].copy_from_slice(&self.params.to_bytes());
        out[10..18].copy_from_slice(&self.file_size.to_be_bytes());
        out[18..50].copy_from_slice(self.ciphertext_root.as_bytes());
        out[50..82].copy_from_slice(self.share_root.as_bytes());
        out
    }

    /// Parses and checks a UEB: exact length, version, parameter ranges and segment count.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let b: &[u8; UEB_LEN] = bytes.try_into().map_err(|_| Error::BadUeb {
            reason: "wrong length",
        })?;
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        if u16_at(0) != FORMAT_VERSION {
            return Err(Error::BadUeb {
                reason: "unknown version",
            });
        }
        let segment_size = u32::from_be_bytes([b[6], b[7], b[8], b[9]]);
        let params =
            Params::new(u16_at(2), u16_at(4), segment_size).map_err(|_| Error::BadUeb {
                reason: "parameters out of range",
            })?;
        let mut size = [0u8; 8];
        size.copy_from_slice(&b[10..18]);
        let file_size = u64::from_be_bytes(size);
        if params.num_segments(file_size) > MAX_SEGMENTS {
            return Err(Error::BadUeb {
                reason: "too many segments",
            });
        }
        let mut ct = [0u8; 32];
        ct.copy_from_slice(&b[18..50]);
        let mut sh = [0u8; 32];
        sh.copy_from_slice(&b[50..82]);
        Ok(Self {
            params,
            file_size,
            ciphertext_root: Hash(ct),
            share_root: Hash(sh),
        })
    }

    /// The storage index: `tagged_hash("lafs/v1/immutable/ueb", self.to_bytes())`.
    pub fn storage_index(&self) -> StorageIndex {
        StorageIndex(tagged_hash(UEB_TAG, &[&self.to_bytes()]).0)
    }

    /// Number of segments.
    pub fn num_segments(&self) -> u64 {
        self.params.num_segments(self.file_size)
    }

    /// Byte range of segment `segment` in the plaintext/ciphertext; `None` past the end.
    pub fn segment_range(&self, segment: u64) -> Option<Range<u64>> {
        segment_range(&self.params, self.file_size, segment)
    }

    /// Layout of share `share`.
    pub fn layout(&self, share: u16) -> Result<ShareLayout, Error> {
        ShareLayout::new(self.params, self.file_size, share)
    }
}

/// Parses a UEB (same as [`Ueb::parse`]).
pub fn parse_ueb(bytes: &[u8]) -> Result<Ueb, Error> {
    Ueb::parse(bytes)
}

pub(crate) fn segment_range(params: &Params, file_size: u64, segment: u64) -> Option<Range<u64>> {
    let ss = u64::from(params.segment_size);
    let start = segment.checked_mul(ss)?;
    if start >= file_size {
        return None;
    }
    Some(start..file_size.min(start + ss))
}

/// Number of proof nodes in share `share`'s chain for N shares (nodes of
/// `proof_indices(N, share..share+1)`).
pub fn chain_proof_indices(n: u16, share: u16) -> Result<Vec<NodeIndex>, Error> {
    if share >= n {
        return Err(Error::ShareOutOfRange { share, n });
    }
    proof_indices(usize::from(n), usize::from(share)..usize::from(share) + 1)
        .map_err(|_| Error::ShareOutOfRange { share, n })
}

/// Length of the trailer (share hash chain + UEB) of share `share` of `n`: known before the
/// file size, so it is what a first suffix read must cover.
pub fn trailer_len(n: u16, share: u16) -> Result<u64, Error> {
    let proof = chain_proof_indices(n, share)?;
    Ok((1 + proof.len() as u64) * HASH_LEN + UEB_LEN as u64)
}

/// The byte layout of one share; every offset is a pure function of (params, file size,
/// share number). Sections, in order: header, blocks, block-tree nodes `1..2P-1`,
/// ciphertext-tree nodes `1..2P-1`, share hash chain (block-tree root, then proof nodes),
/// UEB. `P` is the tree width for the segment count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareLayout {
    params: Params,
    file_size: u64,
    share: u16,
    num_segments: u64,
    width: u64,
    chain: Vec<NodeIndex>,
}

impl ShareLayout {
    /// Layout of share `share` of a file of `file_size` bytes.
    pub fn new(params: Params, file_size: u64, share: u16) -> Result<Self, Error> {
        let chain = chain_proof_indices(params.n, share)?;
        let num_segments = params.num_segments(file_size);
        if num_segments > MAX_SEGMENTS {
            return Err(Error::FileTooLarge {
                max_segments: MAX_SEGMENTS,
            });
        }
        let seg_usize = usize::try_from(num_segments).map_err(|_| Error::FileTooLarge {
            max_segments: MAX_SEGMENTS,
        })?;
        let width = tree_width(seg_usize).map_err(|_| Error::FileTooLarge {
            max_segments: MAX_SEGMENTS,
        })? as u64;
        Ok(Self {
            params,
            file_size,
            share,
            num_segments,
            width,
            chain,
        })
    }

    /// The parameters.
    pub fn params(&self) -> Params {
        self.params
    }

    /// The file size.
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// The share number.
    pub fn share(&self) -> u16 {
        self.share
    }

    /// Number of segments (= blocks in this share, = leaves of both trees).
    pub fn num_segments(&self) -> u64 {
        self.num_segments
    }

    /// Tree width `P` (leaf slots, a power of two ≥ 1) of the block and ciphertext trees.
    pub fn tree_width(&self) -> u64 {
        self.width
    }

    /// The share-tree proof node indexes stored in this share's chain, in stored order.
    pub fn chain_indices(&self) -> &[NodeIndex] {
        &self.chain
    }

    /// Size of block `segment`: `ceil(segment length / k)`; `None` past the end.
    pub fn block_size(&self, segment: u64) -> Option<u64> {
        let r = segment_range(&self.params, self.file_size, segment)?;
        Some((r.end - r.start).div_ceil(u64::from(self.params.k)))
    }

    /// Byte range of the fixed header.
    pub fn header_range(&self) -> Range<u64> {
        0..HEADER_LEN
    }

    /// Byte range of block `segment`; `None` past the end.
    pub fn block_range(&self, segment: u64) -> Option<Range<u64>> {
        let size = self.block_size(segment)?;
        let start = HEADER_LEN + segment * self.params.full_block_size();
        Some(start..start + size)
    }

    /// Byte range of all blocks.
    pub fn blocks_range(&self) -> Range<u64> {
        let end = match self.num_segments.checked_sub(1) {
            Some(last) => self.block_range(last).map_or(HEADER_LEN, |r| r.end),
            None => HEADER_LEN,
        };
        HEADER_LEN..end
    }

    /// Number of stored nodes of each tree: `2P - 2` (the roots live elsewhere).
    pub fn stored_tree_nodes(&self) -> u64 {
        2 * self.width - 2
    }

    /// Byte range of the stored block-tree nodes (heap order, nodes `1..2P-1`).
    pub fn block_tree_range(&self) -> Range<u64> {
        let start = self.blocks_range().end;
        start..start + self.stored_tree_nodes() * HASH_LEN
    }

    /// Byte range of the stored ciphertext-tree nodes (heap order, nodes `1..2P-1`).
    pub fn ciphertext_tree_range(&self) -> Range<u64> {
        let start = self.block_tree_range().end;
        start..start + self.stored_tree_nodes() * HASH_LEN
    }

    /// Byte range of the share hash chain: the block-tree root (this share's leaf of the share
    /// tree), then the proof nodes of [`Self::chain_indices`].
    pub fn chain_range(&self) -> Range<u64> {
        let start = self.ciphertext_tree_range().end;
        start..start + (1 + self.chain.len() as u64) * HASH_LEN
    }

    /// Byte range of the UEB (the last [`UEB_LEN`] bytes).
    pub fn ueb_range(&self) -> Range<u64> {
        let start = self.chain_range().end;
        start..start + UEB_LEN as u64
    }

    /// Byte range of the trailer (chain + UEB), see [`trailer_len`].
    pub fn trailer_range(&self) -> Range<u64> {
        self.chain_range().start..self.ueb_range().end
    }

    /// Total share length.
    pub fn share_len(&self) -> u64 {
        self.ueb_range().end
    }

    /// Byte range of block-tree node `node` (node 0, the root, is the first hash of the
    /// chain); `None` outside the tree.
    pub fn block_tree_node_range(&self, node: NodeIndex) -> Option<Range<u64>> {
        let i = node.0 as u64;
        if i == 0 {
            let s = self.chain_range().start;
            return Some(s..s + HASH_LEN);
        }
        if i > self.stored_tree_nodes() {
            return None;
        }
        let s = self.block_tree_range().start + (i - 1) * HASH_LEN;
        Some(s..s + HASH_LEN)
    }

    /// Byte range of ciphertext-tree node `node`; `None` for the root (it is in the UEB) and
    /// outside the tree.
    pub fn ciphertext_tree_node_range(&self, node: NodeIndex) -> Option<Range<u64>> {
        let i = node.0 as u64;
        if i == 0 || i > self.stored_tree_nodes() {
            return None;
        }
        let s = self.ciphertext_tree_range().start + (i - 1) * HASH_LEN;
        Some(s..s + HASH_LEN)
    }

    /// The header bytes of this share.
    pub fn header(&self) -> [u8; HEADER_LEN as usize] {
        encode_header(&self.params, self.share)
    }
}

/// Encodes a share header: magic, version, share number, k, N, segment size.
pub(crate) fn encode_header(params: &Params, share: u16) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(&SHARE_MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    h[10..12].copy_from_slice(&share.to_be_bytes());
    h[12..20].copy_from_slice(&params.to_bytes());
    h
}

/// Checks a header against the expected share number and parameters.
pub(crate) fn check_header(bytes: &[u8], params: &Params, share: u16) -> Result<(), Error> {
    if bytes != encode_header(params, share) {
        return Err(Error::CorruptShare {
            share,
            part: SharePart::Header,
        });
    }
    Ok(())
}

/// Reads a 32-byte hash at `at` of `bytes` (caller guarantees the bounds).
pub(crate) fn hash_at(bytes: &[u8], at: usize) -> Option<Hash> {
    bytes.get(at..at + 32).and_then(Hash::from_slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_ranges() {
        assert!(Params::new(0, 1, 1).is_err());
        assert!(Params::new(2, 1, 1).is_err());
        assert!(Params::new(1, 257, 1).is_err());
        assert!(Params::new(1, 1, 0).is_err());
        assert!(Params::new(1, 1, MAX_SEGMENT_SIZE + 1).is_err());
        assert!(Params::new(256, 256, MAX_SEGMENT_SIZE).is_ok());
        assert_eq!(Params::default().to_bytes(), [0, 3, 0, 10, 0, 0x10, 0, 0]);
    }

    #[test]
    fn ueb_round_trip_and_rejects() {
        let ueb = Ueb {
            params: Params::new(3, 10, 4096).unwrap(),
            file_size: 12345,
            ciphertext_root: Hash([1; 32]),
            share_root: Hash([2; 32]),
        };
        let b = ueb.to_bytes();
        assert_eq!(Ueb::parse(&b).unwrap(), ueb);
        assert!(Ueb::parse(&b[..81]).is_err());
        let mut v = b;
        v[1] = 2;
        assert_eq!(
            Ueb::parse(&v),
            Err(Error::BadUeb {
                reason: "unknown version"
            })
        );
        let mut v = b;
        v[3] = 0; // k = 0
        assert!(Ueb::parse(&v).is_err());
        let mut v = b;
        v[6..10].copy_from_slice(&1u32.to_be_bytes());
        v[10..18].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(
            Ueb::parse(&v),
            Err(Error::BadUeb {
                reason: "too many segments"
            })
        );
    }

    #[test]
    fn layout_offsets() {
        let p = Params::new(3, 10, 4096).unwrap();
        // 3 segments: 4096, 4096, 1 → blocks 1366, 1366, 1; P = 4.
        let l = ShareLayout::new(p, 8193, 4).unwrap();
        assert_eq!(l.num_segments(), 3);
        assert_eq!(l.block_range(0), Some(20..1386));
        assert_eq!(l.block_range(2), Some(2752..2753));
        assert_eq!(l.block_range(3), None);
        assert_eq!(l.block_tree_range(), 2753..2753 + 6 * 32);
        assert_eq!(l.ciphertext_tree_range().end, 2753 + 12 * 32);
        // Share 4 of 10: proof of leaf 4 in a 16-wide tree: siblings 20, 8, 4 (node 2 is
        // padding-free so it is needed too).
        assert_eq!(
            l.chain_indices().len() as u64 * 32 + 32 + 82,
            trailer_len(10, 4).unwrap()
        );
        assert_eq!(l.share_len(), l.ueb_range().end);
        assert_eq!(
            l.ueb_range().end - l.trailer_range().start,
            trailer_len(10, 4).unwrap()
        );
        assert_eq!(
            l.block_tree_node_range(NodeIndex(0)).unwrap().start,
            l.chain_range().start
        );
        assert_eq!(l.ciphertext_tree_node_range(NodeIndex(0)), None);
        assert_eq!(l.block_tree_node_range(NodeIndex(7)), None);
        // Empty file: no blocks, no stored nodes.
        let e = ShareLayout::new(p, 0, 0).unwrap();
        assert_eq!(e.blocks_range(), 20..20);
        assert_eq!(e.stored_tree_nodes(), 0);
        assert_eq!(e.share_len(), 20 + trailer_len(10, 0).unwrap());
        assert!(trailer_len(256, 255).unwrap() <= MAX_TRAILER_LEN);
        assert!(trailer_len(10, 10).is_err());
    }
}
