//! The downloader core: verified random access to a file from any k shares.

use core::ops::Range;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use lafs_caps::{ImmutableReadCap, ImmutableVerifyCap, ReadKey, StorageIndex};
use lafs_hashtree::{leaf_node_index, node_hash, tagged_hash, Hash, NodeIndex, PartialTree};

use crate::crypto::decrypt_at;
use crate::erasure::Coder;
use crate::format::{segment_leaf_unchecked, BLOCK_TAG};
use crate::verifier::check_trailer;
use crate::{Error, ShareLayout, SharePart, Ueb};

/// Byte ranges to read from one share (sorted, non-overlapping, adjacent ranges merged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareRead {
    /// Share number.
    pub share: u16,
    /// Ranges of the share's bytes to read.
    pub ranges: Vec<Range<u64>>,
}

/// Verified file bytes (plaintext for a readcap, ciphertext for a verifycap) at `offset`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputChunk {
    /// File offset of the first byte.
    pub offset: u64,
    /// The bytes.
    pub data: Vec<u8>,
}

struct ShareState {
    layout: ShareLayout,
    block_tree: PartialTree,
    /// Bytes of the share starting at `prefetch_at` (the suffix given with the trailer).
    prefetch_at: u64,
    prefetch: Vec<u8>,
}

impl ShareState {
    fn prefetched(&self, r: &Range<u64>) -> Option<Vec<u8>> {
        let start = usize::try_from(r.start.checked_sub(self.prefetch_at)?).ok()?;
        let end = usize::try_from(r.end - self.prefetch_at).ok()?;
        self.prefetch.get(start..end).map(<[u8]>::to_vec)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ItemKind {
    Block,
    BlockNode(NodeIndex),
    CiphertextNode(NodeIndex),
}

struct Item {
    kind: ItemKind,
    range: Range<u64>,
    data: Option<Vec<u8>>,
}

#[derive(Default)]
struct Slot {
    issued: bool,
    items: Vec<Item>,
    /// The block once verified against its share's block tree, with its hash (the leaf).
    block: Option<(Vec<u8>, Hash)>,
}

impl Slot {
    fn complete(&self) -> bool {
        self.items.iter().all(|i| i.data.is_some())
    }

    fn ciphertext_nodes(&self) -> Vec<(NodeIndex, Hash)> {
        self.items
            .iter()
            .filter_map(|i| match (i.kind, &i.data) {
                (ItemKind::CiphertextNode(n), Some(d)) => Hash::from_slice(d).map(|h| (n, h)),
                _ => None,
            })
            .collect()
    }
}

struct SegmentFetch {
    segment: u64,
    slots: BTreeMap<u16, Slot>,
    /// The decoded ciphertext and its ciphertext-tree leaf, kept when no ciphertext-tree proof
    /// received so far verified it: then `slots` holds one *probe* (ciphertext-tree nodes only)
    /// from another share.
    decoded: Option<(Vec<u8>, Hash)>,
    /// Shares whose ciphertext-tree nodes did not verify the decoded segment.
    tried: Vec<(u16, Vec<(NodeIndex, Hash)>)>,
}

struct ReadState {
    pos: u64,
    end: u64,
    fetch: Option<SegmentFetch>,
}

/// Sans-IO downloader of one immutable file: verifies shares' trailers, plans the minimal
/// reads for any byte range, verifies every block before use and decodes from any k shares.
///
/// Usage (see the crate documentation for a complete loop):
/// 1. [`add_trailer`](Self::add_trailer) for each share found, with a suffix of the share
///    (at least its trailer; a few KiB is a good default; a small file's whole share is fine).
/// 2. [`read`](Self::read) a byte range.
/// 3. Until [`is_done`](Self::is_done): send [`poll_requests`](Self::poll_requests), answer with
///    [`handle_response`](Self::handle_response) (any order, any split that covers what was
///    asked) or [`share_unavailable`](Self::share_unavailable), drain
///    [`poll_output`](Self::poll_output).
///
/// Shares are chosen k at a time per segment, data shares `0..k` first (decoding is then a
/// copy). A block that fails its share's block tree is reported as
/// [`Error::CorruptShare`] with [`SharePart::Block`] (share and segment); the share is marked bad
/// and the next [`poll_requests`](Self::poll_requests) asks another share. Such errors are
/// recoverable. After decoding, the segment's ciphertext is checked against the UEB's
/// ciphertext root, so no unverified byte is ever output.
///
/// Memory: one segment (k blocks, O(segment size)), the suffixes given to `add_trailer`, and
/// per tree (the ciphertext tree and each share's block tree) only the verified path of the
/// last segment read and its siblings: at most `2 × log2(S) + 1` hashes of 32 bytes, however
/// many segments are read ([`held_tree_nodes`](Self::held_tree_nodes)). Sequential reads ask
/// for no more proof nodes than if everything had been kept; a seek asks again for the upper
/// nodes it needs.
pub struct Decoder {
    storage_index: StorageIndex,
    key: Option<ReadKey>,
    ueb: Option<Ueb>,
    coder: Option<Coder>,
    ciphertext_tree: Option<PartialTree>,
    shares: BTreeMap<u16, ShareState>,
    bad: BTreeSet<u16>,
    unavailable: BTreeSet<u16>,
    read: Option<ReadState>,
    output: VecDeque<OutputChunk>,
    failed: Option<Error>,
}

impl Decoder {
    /// Decoder that outputs plaintext.
    pub fn new(cap: &ImmutableReadCap) -> Self {
        Self::build(*cap.storage_index(), Some(cap.key().clone()))
    }

    /// Decoder that outputs verified ciphertext (no key needed).
    pub fn for_verify_cap(cap: &ImmutableVerifyCap) -> Self {
        Self::build(*cap.storage_index(), None)
    }

    fn build(storage_index: StorageIndex, key: Option<ReadKey>) -> Self {
        Self {
            storage_index,
            key,
            ueb: None,
            coder: None,
            ciphertext_tree: None,
            shares: BTreeMap::new(),
            bad: BTreeSet::new(),
            unavailable: BTreeSet::new(),
            read: None,
            output: VecDeque::new(),
            failed: None,
        }
    }

    /// The verified UEB (after the first successful [`add_trailer`](Self::add_trailer)).
    pub fn ueb(&self) -> Option<&Ueb> {
        self.ueb.as_ref()
    }

    /// The file size, once known.
    pub fn file_size(&self) -> Option<u64> {
        self.ueb.map(|u| u.file_size)
    }

    /// Number of hash-tree nodes held over all trees (ciphertext tree and block trees): bounded
    /// by `(shares + 1) × (2 × log2(segments) + 1)` whatever the number of segments read.
    pub fn held_tree_nodes(&self) -> usize {
        self.ciphertext_tree
            .as_ref()
            .map_or(0, PartialTree::held_nodes)
            + self
                .shares
                .values()
                .map(|s| s.block_tree.held_nodes())
                .sum::<usize>()
    }

    /// Shares found corrupt so far.
    pub fn bad_shares(&self) -> impl Iterator<Item = u16> + '_ {
        self.bad.iter().copied()
    }

    /// Shares with a verified trailer that are neither bad nor unavailable.
    pub fn usable_shares(&self) -> impl Iterator<Item = u16> + '_ {
        self.shares
            .keys()
            .copied()
            .filter(|s| !self.bad.contains(s) && !self.unavailable.contains(s))
    }

    /// Checks a share's suffix: the last `suffix.len()` bytes of share `share`, whose total
    /// length is `share_len`. The suffix must hold at least the trailer
    /// ([`crate::trailer_len`]; [`crate::MAX_TRAILER_LEN`] always suffices). Its UEB must hash
    /// to the cap's storage index and its chain must reach the UEB's share root; the first
    /// valid UEB fixes the parameters. Bytes of the suffix before the trailer are kept and used
    /// instead of reads (so a small file needs no further request).
    ///
    /// A share that fails is marked bad: [`Error::CorruptShare`].
    pub fn add_trailer(&mut self, share: u16, share_len: u64, suffix: &[u8]) -> Result<(), Error> {
        let checked = check_trailer(share, share_len, suffix).and_then(|t| {
            if t.0.storage_index() == self.storage_index {
                Ok(t)
            } else {
                Err(Error::CorruptShare {
                    share,
                    part: SharePart::Ueb,
                })
            }
        });
        let (ueb, layout, root) = match checked {
            Ok(t) => t,
            Err(e @ Error::CorruptShare { .. }) => {
                self.bad.insert(share);
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let segments = usize::try_from(ueb.num_segments()).map_err(|_| Error::FileTooLarge {
            max_segments: crate::MAX_SEGMENTS,
        })?;
        if self.ueb.is_none() {
            self.coder = Some(Coder::new(&ueb.params)?);
            self.ciphertext_tree = Some(PartialTree::new(ueb.ciphertext_root, segments).map_err(
                |_| Error::FileTooLarge {
                    max_segments: crate::MAX_SEGMENTS,
                },
            )?);
            self.ueb = Some(ueb);
        }
        let block_tree = PartialTree::new(root, segments).map_err(|_| Error::FileTooLarge {
            max_segments: crate::MAX_SEGMENTS,
        })?;
        self.bad.remove(&share);
        self.unavailable.remove(&share);
        self.shares.insert(
            share,
            ShareState {
                layout,
                block_tree,
                prefetch_at: share_len - suffix.len() as u64,
                prefetch: suffix.to_vec(),
            },
        );
        Ok(())
    }

    /// Starts reading file bytes `range` (clamped to the file size), replacing any read in
    /// progress. Needs a verified UEB.
    pub fn read(&mut self, range: Range<u64>) -> Result<(), Error> {
        let ueb = self.ueb.ok_or(Error::NoUeb)?;
        if range.start > range.end {
            return Err(Error::BadRange {
                start: range.start,
                end: range.end,
            });
        }
        let end = range.end.min(ueb.file_size);
        let pos = range.start.min(end);
        self.read = Some(ReadState {
            pos,
            end,
            fetch: None,
        });
        Ok(())
    }

    /// Whether the current read is complete and all its output has been taken.
    pub fn is_done(&self) -> bool {
        self.output.is_empty() && self.read.as_ref().is_none_or(|r| r.pos >= r.end)
    }

    /// The next verified output, in file order.
    pub fn poll_output(&mut self) -> Option<OutputChunk> {
        self.output.pop_front()
    }

    /// Marks a share as unreachable; its outstanding requests are replaced by another share's.
    pub fn share_unavailable(&mut self, share: u16) {
        self.unavailable.insert(share);
        if let Some(f) = self.read.as_mut().and_then(|r| r.fetch.as_mut()) {
            if f.slots.get(&share).is_some_and(|s| s.block.is_none()) {
                f.slots.remove(&share);
            }
        }
    }

    /// The reads to send now (each request is returned once). Returns an empty list when
    /// waiting for responses or when done. Errors: [`Error::NotEnoughShares`] (add trailers of
    /// more shares, then call again), [`Error::CorruptShare`] for a prefetched block that fails
    /// (recoverable: call again), [`Error::InconsistentEncoding`] (fatal).
    pub fn poll_requests(&mut self) -> Result<Vec<ShareRead>, Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            let Some(read) = &self.read else {
                return Ok(Vec::new());
            };
            if read.pos >= read.end {
                return Ok(Vec::new());
            }
            self.plan()?;
            // Slots satisfied from prefetched bytes are verified before anything is issued.
            let ready: Vec<u16> = self
                .fetch()
                .map(|f| {
                    f.slots
                        .iter()
                        .filter(|(_, s)| s.block.is_none() && s.complete())
                        .map(|(k, _)| *k)
                        .collect()
                })
                .unwrap_or_default();
            for share in ready {
                self.verify_slot(share)?;
            }
            if self.segment_ready() {
                self.finish_segment()?;
                continue;
            }
            let mut out = Vec::new();
            if let Some(f) = self.fetch_mut() {
                for (share, slot) in f.slots.iter_mut() {
                    if slot.issued {
                        continue;
                    }
                    slot.issued = true;
                    let mut ranges: Vec<Range<u64>> = slot
                        .items
                        .iter()
                        .filter(|i| i.data.is_none())
                        .map(|i| i.range.clone())
                        .collect();
                    if !ranges.is_empty() {
                        ranges.sort_by_key(|r| r.start);
                        out.push(ShareRead {
                            share: *share,
                            ranges: merge(ranges),
                        });
                    }
                }
            }
            return Ok(out);
        }
    }

    /// Accepts bytes `data` read at `offset` of share `share`: any piece that covers whole
    /// requested items (a block, a tree node) is used. When a share's items are complete its
    /// block is verified; when k blocks are verified the segment is decoded, checked and output.
    ///
    /// Errors: [`Error::CorruptShare`] names the share and segment (recoverable: the share is
    /// marked bad); [`Error::UnexpectedData`] if nothing in `data` was asked for (harmless);
    /// [`Error::InconsistentEncoding`] (fatal).
    pub fn handle_response(&mut self, share: u16, offset: u64, data: &[u8]) -> Result<(), Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let unexpected = Error::UnexpectedData {
            share,
            offset,
            len: data.len() as u64,
        };
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(unexpected.clone())?;
        let Some(slot) = self.fetch_mut().and_then(|f| f.slots.get_mut(&share)) else {
            return Err(unexpected);
        };
        let mut used = false;
        for item in slot.items.iter_mut().filter(|i| i.data.is_none()) {
            if item.range.start >= offset && item.range.end <= end {
                let a = (item.range.start - offset) as usize;
                let b = (item.range.end - offset) as usize;
                item.data = Some(data[a..b].to_vec());
                used = true;
            }
        }
        if !used {
            return Err(unexpected);
        }
        if slot.block.is_none() && slot.complete() {
            self.verify_slot(share)?;
            if self.segment_ready() {
                self.finish_segment()?;
            }
        }
        Ok(())
    }

    fn fetch(&self) -> Option<&SegmentFetch> {
        self.read.as_ref().and_then(|r| r.fetch.as_ref())
    }

    fn fetch_mut(&mut self) -> Option<&mut SegmentFetch> {
        self.read.as_mut().and_then(|r| r.fetch.as_mut())
    }

    fn k(&self) -> usize {
        self.ueb.map_or(1, |u| usize::from(u.params.k()))
    }

    fn segment_ready(&self) -> bool {
        self.fetch().is_some_and(|f| match f.decoded {
            Some(_) => f.slots.values().any(Slot::complete),
            None => f.slots.values().filter(|s| s.block.is_some()).count() >= self.k(),
        })
    }

    /// Makes sure the current segment has k slots (share choices) with their items.
    fn plan(&mut self) -> Result<(), Error> {
        let ueb = self.ueb.ok_or(Error::NoUeb)?;
        let k = usize::from(ueb.params.k());
        let Some(read) = &mut self.read else {
            return Ok(());
        };
        let segment = read.pos / u64::from(ueb.params.segment_size());
        let fetch = read.fetch.get_or_insert_with(|| SegmentFetch {
            segment,
            slots: BTreeMap::new(),
            decoded: None,
            tried: Vec::new(),
        });
        let have = fetch.slots.len();
        if have >= k || (fetch.decoded.is_some() && have > 0) {
            return Ok(());
        }
        // Data shares first (systematic: decoding is a copy), then the rest in order.
        let mut candidates: Vec<u16> = self
            .shares
            .keys()
            .copied()
            .filter(|s| {
                !self.bad.contains(s)
                    && !self.unavailable.contains(s)
                    && !fetch.slots.contains_key(s)
            })
            .collect();
        candidates.sort_by_key(|s| (usize::from(*s) >= k, *s));
        let j = segment as usize;
        if fetch.decoded.is_some() {
            // Ask one more share for the ciphertext-tree proof of the decoded segment.
            let tried = &fetch.tried;
            let next = candidates
                .into_iter()
                .find(|s| tried.iter().all(|(t, _)| t != s));
            let (Some(share), Some(tree)) = (next, self.ciphertext_tree.as_ref()) else {
                // With proofs from only one share, a corrupt copy of the ciphertext tree in that
                // share cannot be told apart from an inconsistent upload: ask for more shares
                // (recoverable) instead of blaming the uploader.
                if fetch.tried.len() < 2 {
                    let usable = self
                        .shares
                        .keys()
                        .filter(|s| !self.bad.contains(s) && !self.unavailable.contains(s))
                        .count();
                    return Err(Error::NotEnoughShares {
                        need: ueb.params.k(),
                        usable: u16::try_from(usable).unwrap_or(u16::MAX),
                    });
                }
                let e = Error::InconsistentEncoding { segment };
                self.failed = Some(e.clone());
                return Err(e);
            };
            let missing = tree
                .missing_for(j..j + 1)
                .map_err(|_| Error::InvalidState("segment outside the ciphertext tree"))?;
            let Some(st) = self.shares.get(&share) else {
                return Err(Error::InvalidState("unknown share"));
            };
            let mut items = Vec::new();
            for n in missing {
                if let Some(range) = st.layout.ciphertext_tree_node_range(n) {
                    let data = st.prefetched(&range);
                    items.push(Item {
                        kind: ItemKind::CiphertextNode(n),
                        range,
                        data,
                    });
                }
            }
            fetch.slots.insert(
                share,
                Slot {
                    issued: false,
                    items,
                    block: None,
                },
            );
            return Ok(());
        }
        if have + candidates.len() < k {
            let usable = self
                .shares
                .keys()
                .filter(|s| !self.bad.contains(s) && !self.unavailable.contains(s))
                .count();
            return Err(Error::NotEnoughShares {
                need: ueb.params.k(),
                usable: usable as u16,
            });
        }
        let ct_missing = self
            .ciphertext_tree
            .as_ref()
            .map(|t| t.missing_for(j..j + 1))
            .transpose()
            .map_err(|_| Error::InvalidState("segment outside the ciphertext tree"))?
            .unwrap_or_default();
        for share in candidates.into_iter().take(k - have) {
            let Some(st) = self.shares.get(&share) else {
                continue;
            };
            let l = &st.layout;
            let mut items = Vec::new();
            let block = l
                .block_range(segment)
                .ok_or(Error::InvalidState("segment out of range"))?;
            items.push(Item {
                kind: ItemKind::Block,
                range: block,
                data: None,
            });
            let block_missing = st
                .block_tree
                .missing_for(j..j + 1)
                .map_err(|_| Error::InvalidState("segment outside the block tree"))?;
            for n in block_missing {
                if let Some(range) = l.block_tree_node_range(n) {
                    items.push(Item {
                        kind: ItemKind::BlockNode(n),
                        range,
                        data: None,
                    });
                }
            }
            for n in &ct_missing {
                if let Some(range) = l.ciphertext_tree_node_range(*n) {
                    items.push(Item {
                        kind: ItemKind::CiphertextNode(*n),
                        range,
                        data: None,
                    });
                }
            }
            for item in &mut items {
                item.data = st.prefetched(&item.range);
            }
            fetch.slots.insert(
                share,
                Slot {
                    issued: false,
                    items,
                    block: None,
                },
            );
        }
        Ok(())
    }

    /// Verifies a complete slot's block against its share's block tree.
    fn verify_slot(&mut self, share: u16) -> Result<(), Error> {
        let Some(read) = &mut self.read else {
            return Ok(());
        };
        let Some(fetch) = &mut read.fetch else {
            return Ok(());
        };
        let segment = fetch.segment;
        if fetch.decoded.is_some() {
            // A probe carries no block.
            return Ok(());
        }
        let Some(slot) = fetch.slots.get_mut(&share) else {
            return Ok(());
        };
        let mut block = Vec::new();
        let mut nodes = Vec::new();
        for item in &mut slot.items {
            match item.kind {
                ItemKind::Block => block = item.data.take().unwrap_or_default(),
                ItemKind::BlockNode(n) => {
                    if let Some(h) = item.data.as_deref().and_then(Hash::from_slice) {
                        nodes.push((n, h));
                    }
                }
                ItemKind::CiphertextNode(_) => {}
            }
        }
        let leaf = tagged_hash(BLOCK_TAG, &[&block]);
        let j = segment as usize;
        let ok = self.shares.get_mut(&share).is_some_and(|st| {
            st.block_tree.add_nodes(&nodes).is_ok()
                && st.block_tree.add_leaf(j, leaf).is_ok()
                && st.block_tree.verified_leaf(j) == Some(leaf)
        });
        if ok {
            // Only this leaf's path (and its siblings) is worth keeping: later segments' proofs
            // share nothing else with it, so the tree stays O(log segments) however much is read.
            if let Some(st) = self.shares.get_mut(&share) {
                st.block_tree.retain_path(j);
            }
            slot.block = Some((block, leaf));
            Ok(())
        } else {
            fetch.slots.remove(&share);
            self.bad.insert(share);
            Err(Error::CorruptShare {
                share,
                part: SharePart::Block { segment },
            })
        }
    }

    /// Decodes the current segment from k verified blocks, checks its ciphertext, outputs the
    /// requested part and moves to the next segment.
    fn finish_segment(&mut self) -> Result<(), Error> {
        let ueb = self.ueb.ok_or(Error::NoUeb)?;
        let Some(read) = &mut self.read else {
            return Ok(());
        };
        let Some(fetch) = read.fetch.take() else {
            return Ok(());
        };
        let segment = fetch.segment;
        let seg_range = ueb
            .segment_range(segment)
            .ok_or(Error::InvalidState("segment out of range"))?;
        let mut suppliers = Vec::new();
        let (ciphertext, leaf) = match fetch.decoded {
            Some(c) => {
                for (share, slot) in &fetch.slots {
                    suppliers.push((*share, slot.ciphertext_nodes()));
                }
                c
            }
            None => {
                let n = usize::from(ueb.params.n());
                let k = usize::from(ueb.params.k());
                let mut blocks: Vec<Option<Vec<u8>>> = vec![None; n];
                // Hashes of the data blocks received (verified against their block trees).
                let mut data_hashes: Vec<Option<Hash>> = vec![None; k];
                for (share, slot) in fetch.slots {
                    let nodes = slot.ciphertext_nodes();
                    if let Some((b, h)) = slot.block {
                        if let Some(place) = blocks.get_mut(usize::from(share)) {
                            *place = Some(b);
                        }
                        if let Some(place) = data_hashes.get_mut(usize::from(share)) {
                            *place = Some(h);
                        }
                        suppliers.push((share, nodes));
                    }
                }
                let coder = self.coder.as_ref().ok_or(Error::NoUeb)?;
                let data = coder.decode(blocks)?;
                let len = (seg_range.end - seg_range.start) as usize;
                let mut ciphertext = Vec::with_capacity(len);
                for d in &data {
                    let take = (len - ciphertext.len()).min(d.len());
                    ciphertext.extend_from_slice(&d[..take]);
                }
                // The leaf covers the data blocks: the k received ones were hashed for their
                // block trees; data blocks rebuilt from parity are hashed here (padding
                // included, as they were encoded), so the leaf is always that of the blocks the
                // ciphertext was cut from.
                let hashes: Vec<Hash> = data_hashes
                    .into_iter()
                    .zip(&data)
                    .map(|(h, d)| h.unwrap_or_else(|| tagged_hash(BLOCK_TAG, &[d])))
                    .collect();
                let leaf = segment_leaf_unchecked(len as u64, &hashes);
                (ciphertext, leaf)
            }
        };

        // Check the leaf with already verified nodes, or the first share's proof that works.
        let tree = self.ciphertext_tree.as_mut().ok_or(Error::NoUeb)?;
        let j = segment as usize;
        let num_leaves = tree.num_leaves();
        let good = core::iter::once(Vec::new())
            .chain(suppliers.iter().map(|(_, n)| n.clone()))
            .find(|nodes| proof_reaches_root(tree, num_leaves, j, leaf, nodes));
        let proof_needed = tree.missing_for(j..j + 1).is_ok_and(|m| !m.is_empty());
        let Some(nodes) = good else {
            if proof_needed {
                // Either the proofs received so far are corrupt or the blocks decode to the
                // wrong ciphertext: ask another share for the proof before deciding.
                let mut tried = fetch.tried;
                tried.extend(suppliers);
                read.fetch = Some(SegmentFetch {
                    segment,
                    slots: BTreeMap::new(),
                    decoded: Some((ciphertext, leaf)),
                    tried,
                });
                return Ok(());
            }
            let e = Error::InconsistentEncoding { segment };
            self.failed = Some(e.clone());
            return Err(e);
        };
        suppliers.extend(fetch.tried);
        let fresh: Vec<_> = nodes
            .into_iter()
            .filter(|(i, _)| tree.verified_node(*i).is_none())
            .collect();
        if tree
            .add_nodes(&fresh)
            .and_then(|()| tree.add_leaf(j, leaf))
            .is_err()
        {
            let e = Error::InconsistentEncoding { segment };
            self.failed = Some(e.clone());
            return Err(e);
        }
        // Any share whose ciphertext-tree nodes disagree with the verified tree is corrupt.
        let mut corrupt = None;
        for (share, nodes) in &suppliers {
            if let Some((i, _)) = nodes
                .iter()
                .find(|(i, h)| tree.verified_node(*i) != Some(*h))
            {
                self.bad.insert(*share);
                corrupt.get_or_insert(Error::CorruptShare {
                    share: *share,
                    part: SharePart::CiphertextTreeNode { node: i.0 as u64 },
                });
            }
        }
        // As for the block trees: keep only what the next segments' proofs can share.
        tree.retain_path(j);

        let out_start = read.pos.max(seg_range.start);
        let out_end = read.end.min(seg_range.end);
        let a = (out_start - seg_range.start) as usize;
        let b = (out_end - seg_range.start) as usize;
        let mut out = ciphertext;
        out.truncate(b);
        out.drain(..a);
        if let Some(key) = &self.key {
            decrypt_at(key, out_start, &mut out)?;
        }
        self.output.push_back(OutputChunk {
            offset: out_start,
            data: out,
        });
        read.pos = out_end;
        match corrupt {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Whether `leaf` at leaf index `j`, climbing with verified nodes and then `supplied` nodes,
/// reaches a verified node with the same hash.
fn proof_reaches_root(
    tree: &PartialTree,
    num_leaves: usize,
    j: usize,
    leaf: Hash,
    supplied: &[(NodeIndex, Hash)],
) -> bool {
    let Ok(mut cur) = leaf_node_index(num_leaves, j) else {
        return false;
    };
    let mut h = leaf;
    loop {
        if let Some(v) = tree.verified_node(cur) {
            return v == h;
        }
        let (Some(sib), Some(parent)) = (cur.sibling(), cur.parent()) else {
            return false;
        };
        let s = tree
            .verified_node(sib)
            .or_else(|| supplied.iter().find(|(i, _)| *i == sib).map(|(_, h)| *h));
        let Some(s) = s else { return false };
        h = if cur.is_left() {
            node_hash(&h, &s)
        } else {
            node_hash(&s, &h)
        };
        cur = parent;
    }
}

fn merge(ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Encoder, Params};

    #[test]
    fn inconsistent_parity_is_caught_by_the_ciphertext_tree() {
        let p = Params::new(2, 3, 100).unwrap();
        let mut enc = Encoder::new(p, ReadKey::from_bytes([1; 16])).unwrap();
        enc.tamper_parity = true;
        let data = vec![5u8; 250];
        enc.push(&data).unwrap();
        let done = enc.finish().unwrap();
        let mut shares = vec![Vec::new(); 3];
        while let Some(w) = enc.poll_write() {
            let s = &mut shares[usize::from(w.share)];
            s.resize(s.len().max(w.offset as usize + w.data.len()), 0);
            s[w.offset as usize..w.offset as usize + w.data.len()].copy_from_slice(&w.data);
        }
        // Every share passes the server's checks: only decoding can notice.
        for (i, s) in shares.iter().enumerate() {
            crate::verify_share(i as u16, s, Some(done.storage_index)).unwrap();
        }
        let cap = done.read_cap.unwrap();
        let run = |use_shares: &[u16]| {
            let mut dec = Decoder::new(&cap);
            for &i in use_shares {
                let s = &shares[usize::from(i)];
                dec.add_trailer(i, s.len() as u64, s).unwrap();
            }
            dec.read(0..250).unwrap();
            let mut out = Vec::new();
            let r = dec.poll_requests();
            while let Some(c) = dec.poll_output() {
                out.extend(c.data);
            }
            (r.map(|v| v.len()), out)
        };
        // Data shares: consistent, and the decoder never needs the parity.
        assert_eq!(run(&[0, 1]), (Ok(0), data.clone()));
        // Parity involved: segment 0 decodes to wrong ciphertext, which is refused.
        let (r, out) = run(&[0, 2]);
        assert_eq!(r, Err(Error::InconsistentEncoding { segment: 0 }));
        assert!(out.is_empty());
    }

    #[test]
    fn merge_ranges() {
        assert_eq!(merge(vec![0..2, 2..4, 6..7, 6..9]), vec![0..4, 6..9]);
    }
}
