//! Full verification of one share, for storage servers (and checkers).

use core::ops::Range;

use lafs_caps::StorageIndex;
use lafs_hashtree::{
    empty_subtree_hash, node_hash, Hash, HashTree, NodeIndex, PartialTree, TaggedHasher,
};

use crate::format::{check_header, hash_at, BLOCK_TAG, HASH_LEN, MAX_TRAILER_LEN, UEB_LEN};
use crate::{Error, ShareLayout, SharePart, Ueb, HEADER_LEN};

/// Largest range [`ShareVerifier::next_read`] asks for (256 KiB).
pub const VERIFY_CHUNK: u64 = 256 * 1024;

/// A share that passed every check of [`ShareVerifier`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedShare {
    /// Share number.
    pub share: u16,
    /// The storage index the share belongs to (hash of its UEB).
    pub storage_index: StorageIndex,
    /// The parsed UEB.
    pub ueb: Ueb,
}

enum Stage {
    Trailer,
    Body(Box<Body>),
    Done(VerifiedShare),
    Failed(Error),
}

struct Body {
    verified: VerifiedShare,
    layout: ShareLayout,
    /// Block-tree root from the share hash chain (authenticated by the UEB's share root).
    chain_root: Hash,
    /// Next offset to feed.
    pos: u64,
    /// Segment whose block is being hashed, and the hasher over the part seen so far.
    segment: u64,
    hasher: TaggedHasher,
    block_leaves: Vec<Hash>,
    /// Tree computed from the blocks (after the last block).
    computed: Option<HashTree>,
    /// Stored ciphertext-tree nodes, root first (the root comes from the UEB).
    ciphertext_nodes: Vec<Hash>,
}

/// Sans-IO verifier of a whole share: checks every byte, with bounded memory.
///
/// Ask [`next_read`](Self::next_read) which bytes to read, read exactly that range and give it
/// to [`feed`](Self::feed); repeat until `next_read` returns `None`, then take the
/// [`result`](Self::result). The order is: the trailer (the last bytes: UEB and share hash
/// chain), the header, the blocks in order (in chunks of at most [`VERIFY_CHUNK`]), the
/// block-tree nodes, the ciphertext-tree nodes.
///
/// Checks: the UEB parses; the share number is below N; the total length is the one the UEB
/// implies; the chain leads from the stored block-tree root to the UEB's share root; the header
/// is exactly the expected one; the blocks hash to the block tree whose root is the chain's;
/// every stored block-tree node equals the computed one (padding included); the stored
/// ciphertext tree is consistent with itself, with padding, and with the UEB's ciphertext root.
/// So any change to any byte is reported, with the part (and segment or node) it hit.
///
/// Memory: O(1) besides 32 bytes per segment for the leaves and 64 bytes per segment for the
/// computed block tree and the stored ciphertext tree. The caller holds at most one chunk.
pub struct ShareVerifier {
    share: u16,
    share_len: u64,
    expected: Option<StorageIndex>,
    /// Header and block hashes computed as the share arrived (see [`IncomingShareHasher`]).
    prehashed: Option<IncomingShareHasher>,
    stage: Stage,
}

/// The header and block hashes of a share computed *while it arrives*, so that
/// [`ShareVerifier::with_prehashed`] does not read those bytes back.
///
/// Give it every write of the share, in any order, right after the bytes are stored, with
/// [`write`](Self::write). It keeps the longest prefix it has seen written in order: the header
/// (which names k and the segment size, hence the full block size), then each full-size block
/// hashed with the block tag. A write past that prefix is not hashed (the verifier reads those
/// bytes back at the end), and a write *into* the prefix (bytes written again) discards
/// everything, so the hashes always describe the bytes stored, provided the caller feeds
/// every write that succeeded and [`reset`](Self::reset)s after a write that failed.
///
/// Memory: the header, one hasher, and 32 bytes per full block.
#[derive(Clone, Default)]
pub struct IncomingShareHasher {
    /// Bytes `0..pos` are absorbed.
    pos: u64,
    header: Vec<u8>,
    /// Full block size, once the header is complete and valid.
    block_size: Option<u64>,
    /// The header is not a valid header: nothing more is absorbed.
    stopped: bool,
    hasher: Option<TaggedHasher>,
    in_block: u64,
    leaves: Vec<Hash>,
}

impl core::fmt::Debug for IncomingShareHasher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IncomingShareHasher")
            .field("pos", &self.pos)
            .field("blocks", &self.leaves.len())
            .field("stopped", &self.stopped)
            .finish()
    }
}

impl IncomingShareHasher {
    /// Nothing absorbed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Length of the prefix absorbed so far (header and blocks, contiguous from offset 0).
    pub fn absorbed(&self) -> u64 {
        self.pos
    }

    /// Full blocks hashed so far.
    pub fn blocks_hashed(&self) -> u64 {
        self.leaves.len() as u64
    }

    /// Forgets everything (after a failed write, whose bytes may be partly stored).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Records that `data` was just stored at `offset` of the share.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if offset < self.pos {
            // Bytes already hashed are written again: start over (from this write, if it is
            // at the very start).
            self.reset();
        }
        if offset != self.pos || self.stopped {
            return;
        }
        let mut d = data;
        if self.pos < HEADER_LEN {
            let take = ((HEADER_LEN - self.pos) as usize).min(d.len());
            self.header.extend_from_slice(&d[..take]);
            self.pos += take as u64;
            d = &d[take..];
            if self.pos == HEADER_LEN {
                match header_params(&self.header) {
                    Some(p) => self.block_size = Some(p.full_block_size()),
                    None => {
                        self.stopped = true;
                        return;
                    }
                }
            }
        }
        let Some(block_size) = self.block_size else {
            return;
        };
        while !d.is_empty() {
            let take = ((block_size - self.in_block) as usize).min(d.len());
            self.hasher
                .get_or_insert_with(|| TaggedHasher::new(BLOCK_TAG))
                .update(&d[..take]);
            self.in_block += take as u64;
            self.pos += take as u64;
            d = &d[take..];
            if self.in_block == block_size {
                if let Some(h) = self.hasher.take() {
                    self.leaves.push(h.finalize());
                }
                self.in_block = 0;
            }
        }
    }
}

/// The parameters a header names, if it is a well-formed header of this format.
fn header_params(header: &[u8]) -> Option<crate::Params> {
    let b = header.get(12..20)?;
    let k = u16::from_be_bytes([b[0], b[1]]);
    let n = u16::from_be_bytes([b[2], b[3]]);
    let seg = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    let params = crate::Params::new(k, n, seg).ok()?;
    let share = u16::from_be_bytes([*header.get(10)?, *header.get(11)?]);
    check_header(header, &params, share).ok()?;
    Some(params)
}

impl ShareVerifier {
    /// Starts verifying share `share`, whose total length is `share_len`.
    pub fn new(share: u16, share_len: u64) -> Self {
        let min = HEADER_LEN + 2 * HASH_LEN + UEB_LEN as u64;
        let stage = if share_len < min {
            Stage::Failed(Error::CorruptShare {
                share,
                part: SharePart::Length,
            })
        } else {
            Stage::Trailer
        };
        Self {
            share,
            share_len,
            expected: None,
            prehashed: None,
            stage,
        }
    }

    /// Like [`new`](Self::new), but takes the header and the block hashes computed while the
    /// share was written ([`IncomingShareHasher`]), so that only the rest is read: the trailer,
    /// the last block when it is short (or any block not hashed in order), and the trees.
    /// The checks are exactly those of `new`: the given header must be the expected one, and
    /// the given block hashes enter the same block-tree comparison as hashes computed here.
    pub fn with_prehashed(share: u16, share_len: u64, prehashed: IncomingShareHasher) -> Self {
        let mut v = Self::new(share, share_len);
        v.prehashed = Some(prehashed);
        v
    }

    /// Also requires the share to belong to `storage_index` (its UEB hash). Without this, the
    /// verifier *returns* the storage index; either way every byte is covered, because the UEB
    /// is authenticated by its hash (a changed UEB byte that no other check catches, such as the
    /// ciphertext root of a one-segment file, yields a different storage index).
    pub fn expect_storage_index(mut self, storage_index: StorageIndex) -> Self {
        self.expected = Some(storage_index);
        self
    }

    /// The byte range to feed next; `None` when finished (successfully or not).
    pub fn next_read(&self) -> Option<Range<u64>> {
        match &self.stage {
            Stage::Trailer => Some(self.share_len.saturating_sub(MAX_TRAILER_LEN)..self.share_len),
            Stage::Body(b) => Some(b.next_range()),
            Stage::Done(_) | Stage::Failed(_) => None,
        }
    }

    /// The UEB, once the trailer has been checked (the storage index is then known too).
    pub fn ueb(&self) -> Option<&Ueb> {
        match &self.stage {
            Stage::Body(b) => Some(&b.verified.ueb),
            Stage::Done(v) => Some(&v.ueb),
            _ => None,
        }
    }

    /// Feeds exactly the range [`next_read`](Self::next_read) asked for. After an error the
    /// verifier stays failed and returns the same error.
    pub fn feed(&mut self, offset: u64, data: &[u8]) -> Result<(), Error> {
        let Some(want) = self.next_read() else {
            return match &self.stage {
                Stage::Failed(e) => Err(e.clone()),
                _ => Err(Error::InvalidState("share already verified")),
            };
        };
        if offset != want.start || data.len() as u64 != want.end - want.start {
            // Caller error: does not fail the verification.
            return Err(Error::UnexpectedData {
                share: self.share,
                offset,
                len: data.len() as u64,
            });
        }
        let stage = core::mem::replace(&mut self.stage, Stage::Trailer);
        let next = match stage {
            Stage::Trailer => self.check_trailer(data),
            Stage::Body(mut b) => b.feed(self.share, data).map(|done| {
                if done {
                    Stage::Done(b.verified.clone())
                } else {
                    Stage::Body(b)
                }
            }),
            other => Ok(other),
        };
        match next {
            Ok(s) => {
                self.stage = s;
                Ok(())
            }
            Err(e) => {
                self.stage = Stage::Failed(e.clone());
                Err(e)
            }
        }
    }

    /// `None` while more input is needed; then the verified share or the first error.
    pub fn result(&self) -> Option<Result<&VerifiedShare, &Error>> {
        match &self.stage {
            Stage::Done(v) => Some(Ok(v)),
            Stage::Failed(e) => Some(Err(e)),
            _ => None,
        }
    }

    fn check_trailer(&self, suffix: &[u8]) -> Result<Stage, Error> {
        let share = self.share;
        let (ueb, layout, chain_root) = check_trailer(share, self.share_len, suffix)?;
        let storage_index = ueb.storage_index();
        if self.expected.is_some_and(|e| e != storage_index) {
            return Err(Error::CorruptShare {
                share,
                part: SharePart::Ueb,
            });
        }
        let verified = VerifiedShare {
            share,
            storage_index,
            ueb,
        };
        let ciphertext_nodes = vec![ueb.ciphertext_root];
        let mut body = Box::new(Body {
            verified,
            layout,
            chain_root,
            pos: 0,
            segment: 0,
            hasher: TaggedHasher::new(BLOCK_TAG),
            block_leaves: Vec::new(),
            computed: None,
            ciphertext_nodes,
        });
        if let Some(pre) = &self.prehashed {
            if body.resume(share, pre)? {
                return Ok(Stage::Done(body.verified.clone()));
            }
        }
        Ok(Stage::Body(body))
    }
}

/// Checks a share's suffix (at least its trailer): UEB, share number, total length and the
/// share hash chain. Returns the UEB, the layout and the authenticated block-tree root.
pub(crate) fn check_trailer(
    share: u16,
    share_len: u64,
    suffix: &[u8],
) -> Result<(Ueb, ShareLayout, Hash), Error> {
    let corrupt = |part| Error::CorruptShare { share, part };
    let slen = suffix.len() as u64;
    if slen < UEB_LEN as u64 || slen > share_len {
        return Err(Error::SuffixTooShort {
            share,
            have: slen,
            need: MAX_TRAILER_LEN,
        });
    }
    let ueb = Ueb::parse(&suffix[suffix.len() - UEB_LEN..]).map_err(|_| corrupt(SharePart::Ueb))?;
    if share >= ueb.params.n() {
        return Err(corrupt(SharePart::Ueb));
    }
    let layout = ueb.layout(share).map_err(|_| corrupt(SharePart::Ueb))?;
    if layout.share_len() != share_len {
        return Err(corrupt(SharePart::Length));
    }
    let chain = layout.chain_range();
    let base = share_len - slen;
    if chain.start < base {
        let need = share_len - chain.start;
        return Err(Error::SuffixTooShort {
            share,
            have: slen,
            need,
        });
    }
    let at = (chain.start - base) as usize;
    let root = hash_at(suffix, at).ok_or(corrupt(SharePart::ShareChain))?;
    let mut proof = Vec::with_capacity(layout.chain_indices().len());
    for (i, idx) in layout.chain_indices().iter().enumerate() {
        let h = hash_at(suffix, at + 32 * (i + 1)).ok_or(corrupt(SharePart::ShareChain))?;
        proof.push((*idx, h));
    }
    let n = usize::from(ueb.params.n());
    let mut tree = PartialTree::new(ueb.share_root, n).map_err(|_| corrupt(SharePart::Ueb))?;
    tree.add_nodes(&proof)
        .map_err(|_| corrupt(SharePart::ShareChain))?;
    tree.add_leaf(usize::from(share), root)
        .map_err(|_| corrupt(SharePart::ShareChain))?;
    if tree.verified_leaf(usize::from(share)) != Some(root) {
        return Err(corrupt(SharePart::ShareChain));
    }
    Ok((ueb, layout, root))
}

impl Body {
    /// Starts after what `pre` hashed while the share arrived: its header (checked here) and
    /// its full-size blocks. Returns whether verification is already complete.
    fn resume(&mut self, share: u16, pre: &IncomingShareHasher) -> Result<bool, Error> {
        let l = self.layout.clone();
        if pre.pos < HEADER_LEN || pre.stopped {
            return Ok(false);
        }
        check_header(&pre.header, &l.params(), share)?;
        self.pos = HEADER_LEN;
        // Every block but the last is full size; the last one only if the file's size says so.
        let full = l.params().full_block_size();
        let mut usable = (pre.leaves.len() as u64).min(l.num_segments());
        if usable > 0 && l.block_size(usable - 1) != Some(full) {
            usable -= 1;
        }
        if usable > 0 {
            let Some(end) = l.block_range(usable - 1).map(|r| r.end) else {
                return Ok(false);
            };
            self.block_leaves = pre.leaves[..usable as usize].to_vec();
            self.segment = usable;
            self.pos = end;
        }
        self.after_feed(share)
    }

    fn next_range(&self) -> Range<u64> {
        let l = &self.layout;
        let end = if self.pos < HEADER_LEN {
            HEADER_LEN
        } else if let Some(block) = l.block_range(self.segment) {
            block.end
        } else {
            let bt = l.block_tree_range();
            let ct = l.ciphertext_tree_range();
            if self.pos < bt.end {
                bt.end
            } else {
                ct.end
            }
        };
        self.pos..end.min(self.pos + VERIFY_CHUNK)
    }

    /// Returns whether verification is complete.
    fn feed(&mut self, share: u16, data: &[u8]) -> Result<bool, Error> {
        let l = self.layout.clone();
        let start = self.pos;
        self.pos += data.len() as u64;
        if start < HEADER_LEN {
            check_header(data, &l.params(), share)?;
        } else if let Some(block) = l.block_range(self.segment) {
            self.hasher.update(data);
            if self.pos == block.end {
                let h = core::mem::replace(&mut self.hasher, TaggedHasher::new(BLOCK_TAG));
                self.block_leaves.push(h.finalize());
                self.segment += 1;
            }
        } else if start < l.block_tree_range().end {
            self.check_block_tree_nodes(share, start, data)?;
        } else {
            for chunk in data.chunks(32) {
                self.ciphertext_nodes
                    .push(Hash::from_slice(chunk).unwrap_or_default());
            }
        }
        self.after_feed(share)
    }

    /// Closes the sections `pos` has reached; returns whether verification is complete.
    fn after_feed(&mut self, share: u16) -> Result<bool, Error> {
        let corrupt = |part| Error::CorruptShare { share, part };
        let l = &self.layout;
        // Section boundaries (several may coincide when sections are empty).
        if self.pos >= l.blocks_range().end && self.computed.is_none() {
            let computed = HashTree::from_leaves(&self.block_leaves);
            self.block_leaves = Vec::new();
            if l.stored_tree_nodes() == 0 && computed.root() != self.chain_root {
                return Err(corrupt(match l.num_segments() {
                    0 => SharePart::ShareChain,
                    _ => SharePart::Block { segment: 0 },
                }));
            }
            self.computed = Some(computed);
        }
        let done = self.pos >= l.blocks_range().end && self.pos == l.ciphertext_tree_range().end;
        if done {
            check_tree(&self.ciphertext_nodes, l.num_segments(), l.tree_width())
                .map_err(|node| corrupt(SharePart::CiphertextTreeNode { node }))?;
        }
        Ok(done)
    }

    fn check_block_tree_nodes(&mut self, share: u16, start: u64, data: &[u8]) -> Result<(), Error> {
        let corrupt = |part| Error::CorruptShare { share, part };
        let l = &self.layout;
        let Some(computed) = &self.computed else {
            return Err(Error::InvalidState("block tree before blocks"));
        };
        let blocks_ok = computed.root() == self.chain_root;
        let first = (start - l.block_tree_range().start) / HASH_LEN + 1;
        let leaf0 = l.tree_width() - 1;
        for (i, chunk) in data.chunks(32).enumerate() {
            let node = first + i as u64;
            let want = usize::try_from(node)
                .ok()
                .and_then(|n| computed.node(NodeIndex(n)));
            if Hash::from_slice(chunk) == want {
                continue;
            }
            if blocks_ok {
                return Err(corrupt(SharePart::BlockTreeNode { node }));
            }
            // The blocks do not lead to the authenticated root: blame the first block whose
            // hash differs from the stored leaf.
            if node >= leaf0 && node - leaf0 < l.num_segments() {
                return Err(corrupt(SharePart::Block {
                    segment: node - leaf0,
                }));
            }
        }
        if start + data.len() as u64 == l.block_tree_range().end && !blocks_ok {
            // Every stored leaf matches the blocks, yet the tree does not reach the chain's
            // root: the stored tree or the chain is inconsistent.
            return Err(corrupt(SharePart::ShareChain));
        }
        Ok(())
    }
}

/// Checks a full tree (root first, heap order, `2P - 1` nodes): padding leaves hold the padding
/// hash and every interior node is the hash of its children. On failure returns the deepest
/// node that disagrees with its children (or the padding leaf that is wrong).
fn check_tree(nodes: &[Hash], num_leaves: u64, width: u64) -> Result<(), u64> {
    if nodes.len() as u64 != 2 * width - 1 {
        return Err(0);
    }
    let pad = empty_subtree_hash(0);
    for leaf in num_leaves..width {
        let i = (width - 1 + leaf) as usize;
        if nodes[i] != pad {
            return Err(i as u64);
        }
    }
    for i in (0..(width - 1) as usize).rev() {
        if nodes[i] != node_hash(&nodes[2 * i + 1], &nodes[2 * i + 2]) {
            return Err(i as u64);
        }
    }
    Ok(())
}

/// Verifies a whole share held in memory (see [`ShareVerifier`]), optionally requiring it to
/// belong to `expected`.
pub fn verify_share(
    share: u16,
    bytes: &[u8],
    expected: Option<StorageIndex>,
) -> Result<VerifiedShare, Error> {
    let mut v = ShareVerifier::new(share, bytes.len() as u64);
    if let Some(si) = expected {
        v = v.expect_storage_index(si);
    }
    while let Some(r) = v.next_read() {
        v.feed(r.start, &bytes[r.start as usize..r.end as usize])?;
    }
    match v.result() {
        Some(Ok(s)) => Ok(s.clone()),
        Some(Err(e)) => Err(e.clone()),
        None => Err(Error::InvalidState("verifier stopped early")),
    }
}

#[cfg(test)]
mod tests {
    use lafs_caps::ReadKey;

    use super::*;
    use crate::{encode_to_shares, Params};

    fn data(len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    fn shares(k: u16, n: u16, seg: u32, len: usize) -> (Vec<Vec<u8>>, crate::Encoded) {
        let p = Params::new(k, n, seg).unwrap();
        encode_to_shares(p, ReadKey::from_bytes([3; 16]), &data(len)).unwrap()
    }

    #[test]
    fn good_shares_verify() {
        for (k, n, seg, len) in [
            (3, 10, 64, 0),
            (3, 10, 64, 1),
            (3, 10, 64, 64),
            (3, 10, 64, 65),
            (1, 1, 64, 200),
            (5, 5, 7, 100),
            (2, 3, 100_000, 300_000),
        ] {
            let (sh, enc) = shares(k, n, seg, len);
            for (i, s) in sh.iter().enumerate() {
                assert_eq!(s.len() as u64, enc.share_lens[i]);
                let v = verify_share(i as u16, s, None).unwrap();
                assert_eq!(v.storage_index, enc.storage_index);
                assert_eq!(v.ueb, enc.ueb);
            }
        }
    }

    #[test]
    fn chunks_are_bounded() {
        let (sh, _) = shares(1, 2, 1 << 20, 1 << 20);
        let mut v = ShareVerifier::new(1, sh[1].len() as u64);
        let mut reads = 0;
        while let Some(r) = v.next_read() {
            assert!(r.end - r.start <= VERIFY_CHUNK);
            v.feed(r.start, &sh[1][r.start as usize..r.end as usize])
                .unwrap();
            reads += 1;
        }
        assert!(reads >= 5);
        assert!(matches!(v.result(), Some(Ok(_))));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        for (k, n, seg, len) in [(3, 10, 16, 0), (3, 10, 16, 1), (2, 4, 16, 50), (1, 1, 8, 8)] {
            let (sh, enc) = shares(k, n, seg, len);
            let si = Some(enc.storage_index);
            for (i, s) in sh.iter().enumerate() {
                for pos in 0..s.len() {
                    let mut bad = s.clone();
                    bad[pos] ^= 0x40;
                    let err = verify_share(i as u16, &bad, si)
                        .map(|_| {
                            format!(
                                "undetected: k={k} len={len} share {i} pos {pos} of {}",
                                s.len()
                            )
                        })
                        .unwrap_err();
                    assert!(matches!(err, Error::CorruptShare { share, .. } if share == i as u16));
                }
            }
        }
    }

    #[test]
    fn errors_name_the_part() {
        let (sh, _) = shares(2, 4, 16, 50); // 4 segments of 16,16,16,2 → blocks 8,8,8,1
        let s = &sh[1];
        let l = ShareLayout::new(Params::new(2, 4, 16).unwrap(), 50, 1).unwrap();
        let flip = |pos: u64| {
            let mut b = s.clone();
            b[pos as usize] ^= 1;
            verify_share(1, &b, None).unwrap_err()
        };
        let part = |p| Error::CorruptShare { share: 1, part: p };
        assert_eq!(flip(3), part(SharePart::Header));
        assert_eq!(
            flip(l.block_range(2).unwrap().start + 3),
            part(SharePart::Block { segment: 2 })
        );
        assert_eq!(
            flip(l.block_range(3).unwrap().start),
            part(SharePart::Block { segment: 3 })
        );
        let node5 = l.block_tree_node_range(NodeIndex(5)).unwrap().start;
        assert_eq!(flip(node5), part(SharePart::BlockTreeNode { node: 5 }));
        let ct2 = l.ciphertext_tree_node_range(NodeIndex(2)).unwrap().start;
        assert_eq!(flip(ct2), part(SharePart::CiphertextTreeNode { node: 2 }));
        assert_eq!(flip(l.chain_range().start), part(SharePart::ShareChain));
        assert_eq!(flip(l.ueb_range().start + 1), part(SharePart::Ueb));
        assert_eq!(flip(l.ueb_range().start + 17), part(SharePart::Length));
        // Truncation, extension and a wrong share number.
        assert_eq!(
            verify_share(1, &s[..s.len() - 1], None).unwrap_err(),
            part(SharePart::Ueb)
        );
        assert!(verify_share(2, s, None).is_err());
        assert!(verify_share(4, s, None).is_err());
        let mut long = s.clone();
        long.insert(0, 0);
        assert!(verify_share(1, &long, None).is_err());
        assert!(verify_share(1, &[], None).is_err());
    }

    #[test]
    fn wrong_ranges_are_refused_without_failing() {
        let (sh, _) = shares(2, 4, 16, 50);
        let s = &sh[0];
        let mut v = ShareVerifier::new(0, s.len() as u64);
        let r = v.next_read().unwrap();
        assert!(matches!(
            v.feed(r.start + 1, &s[r.start as usize + 1..]),
            Err(Error::UnexpectedData { .. })
        ));
        v.feed(r.start, &s[r.start as usize..]).unwrap();
        assert!(v.ueb().is_some());
    }
}
