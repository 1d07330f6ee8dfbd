//! Writers: encode a whole version, or update a byte range of the current one.

use std::collections::{BTreeMap, BTreeSet};

use lafs_codec::{ErasureCoder, Params};
use lafs_hashtree::{Hash, HashTree};

use crate::format::{
    chain_bytes, record_hash, to_usize, Entropy, Layout, SignedHeader, VersionInfo, WriteKeys,
    HASH_LEN, HEADER_LEN, SALT_LEN,
};
use crate::Error;

/// One write to one share, as sent to the server holding it (the server runs
/// [`check_write`](crate::check_write) on it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShareWrite {
    /// A whole share (first publish, a new encoding, or a repair).
    Whole {
        /// Share number.
        share: u16,
        /// The share bytes.
        data: Vec<u8>,
    },
    /// Changes to the stored share: resize it to `new_len` (cut, or zero-extend), then write
    /// each patch in order.
    Patch {
        /// Share number.
        share: u16,
        /// Share length after the write.
        new_len: u64,
        /// Byte ranges to write.
        patches: Vec<Patch>,
    },
}

impl ShareWrite {
    /// The share number.
    pub fn share(&self) -> u16 {
        match self {
            Self::Whole { share, .. } | Self::Patch { share, .. } => *share,
        }
    }

    /// Number of data bytes the write carries.
    pub fn bytes_written(&self) -> u64 {
        match self {
            Self::Whole { data, .. } => data.len() as u64,
            Self::Patch { patches, .. } => patches.iter().map(|p| p.data.len() as u64).sum(),
        }
    }

    /// Applies the write to a share held in memory (what a server does once
    /// [`check_write`](crate::check_write) accepted it).
    pub fn apply(&self, share: &mut Vec<u8>) -> Result<(), Error> {
        match self {
            Self::Whole { data, .. } => {
                share.clear();
                share.extend_from_slice(data);
            }
            Self::Patch {
                new_len, patches, ..
            } => {
                share.resize(to_usize(*new_len, "share length")?, 0);
                for p in patches {
                    let start = to_usize(p.offset, "patch offset")?;
                    let Some(dst) = share.get_mut(start..start.saturating_add(p.data.len())) else {
                        return Err(Error::PatchOutOfRange {
                            share: self.share(),
                            offset: p.offset,
                            end: p.end(),
                            len: *new_len,
                        });
                    };
                    dst.copy_from_slice(&p.data);
                }
            }
        }
        Ok(())
    }
}

/// Bytes to write at an offset of a share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patch {
    /// Offset in the share.
    pub offset: u64,
    /// The bytes.
    pub data: Vec<u8>,
}

impl Patch {
    /// End offset (exclusive).
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.data.len() as u64)
    }
}

/// What a writer must know of the current version to update it in place: the signed version
/// fields and the block-tree leaves of **every** share (read from the shares' tree regions,
/// see [`Layout::tree_range`] and [`VersionState::from_tree_bytes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionState {
    /// The version.
    pub info: VersionInfo,
    /// Per share (index = share number), the block-tree leaves (one per segment).
    pub leaves: Vec<Vec<Hash>>,
}

impl VersionState {
    /// Builds the state from each share's block-tree bytes (`Layout::tree_range` of each
    /// share, all N of them), checking every tree against the signed root.
    pub fn from_tree_bytes(
        info: VersionInfo,
        trees: &BTreeMap<u16, Vec<u8>>,
    ) -> Result<Self, Error> {
        let layout = Layout::of(&info)?;
        let nseg = to_usize(layout.num_segments, "segment count")?;
        let n = info.params.n();
        let mut leaves = Vec::with_capacity(usize::from(n));
        let mut roots = Vec::with_capacity(usize::from(n));
        for share in 0..n {
            let bytes = trees.get(&share).ok_or(Error::MissingBlockTree { share })?;
            let nodes = parse_nodes(share, bytes, layout.tree_nodes())?;
            let tree = HashTree::from_nodes(nseg, nodes).map_err(|e| match e {
                lafs_hashtree::Error::Mismatch { index, .. } => Error::TreeNodeMismatch {
                    share,
                    node: index.0 as u64,
                },
                _ => Error::TreeNodeMismatch { share, node: 0 },
            })?;
            roots.push(tree.root());
            leaves.push((0..nseg).filter_map(|j| tree.leaf(j)).collect());
        }
        if HashTree::from_leaves(&roots).root() != info.root {
            return Err(Error::ChainMismatch { share: 0 });
        }
        Ok(Self { info, leaves })
    }
}

pub(crate) fn parse_nodes(share: u16, bytes: &[u8], count: u64) -> Result<Vec<Hash>, Error> {
    let want = count * HASH_LEN;
    if bytes.len() as u64 != want {
        return Err(Error::Truncated {
            share,
            needed: want,
            available: bytes.len() as u64,
        });
    }
    Ok(bytes
        .chunks_exact(HASH_LEN as usize)
        .filter_map(Hash::from_slice)
        .collect())
}

/// A whole encoded version: every share, ready to send as [`ShareWrite::Whole`].
#[derive(Clone, Debug)]
pub struct Encoded {
    /// The signed version fields.
    pub info: VersionInfo,
    /// The N shares (index = share number).
    pub shares: Vec<Vec<u8>>,
    /// The state a later [`update`] starts from.
    pub state: VersionState,
}

impl Encoded {
    /// The writes that store this version on the servers.
    pub fn writes(&self) -> Vec<ShareWrite> {
        self.shares
            .iter()
            .enumerate()
            .map(|(i, d)| ShareWrite::Whole {
                share: i as u16,
                data: d.clone(),
            })
            .collect()
    }
}

/// Encrypts and erasure-codes one segment: returns the N records (salt || block).
fn encode_segment(
    keys: &WriteKeys,
    coder: &ErasureCoder,
    params: &Params,
    plaintext: &[u8],
    salt: &[u8; 16],
) -> Result<Vec<Vec<u8>>, Error> {
    let k = usize::from(params.k());
    let n = usize::from(params.n());
    let b = plaintext.len().div_ceil(k);
    let mut buf = vec![0u8; k * b];
    buf[..plaintext.len()].copy_from_slice(plaintext);
    keys.content_key()
        .apply_segment_keystream(salt, &mut buf[..plaintext.len()]);
    let mut shards: Vec<Vec<u8>> = Vec::with_capacity(n);
    for i in 0..n {
        let mut rec = Vec::with_capacity(SALT_LEN as usize + b);
        rec.extend_from_slice(salt);
        if i < k {
            rec.extend_from_slice(&buf[i * b..(i + 1) * b]);
        } else {
            rec.resize(SALT_LEN as usize + b, 0);
        }
        shards.push(rec);
    }
    if b > 0 && n > k {
        // Code the blocks without their salts, then put the salts back.
        let mut blocks: Vec<Vec<u8>> = shards
            .iter_mut()
            .map(|r| r.split_off(SALT_LEN as usize))
            .collect();
        coder
            .encode(&mut blocks)
            .map_err(|e| Error::Erasure(e.to_string()))?;
        for (r, blk) in shards.iter_mut().zip(blocks) {
            r.extend_from_slice(&blk);
        }
    }
    Ok(shards)
}

fn fresh_salt(entropy: &mut dyn Entropy) -> Result<[u8; 16], Error> {
    let mut s = [0u8; 16];
    entropy.fill(&mut s)?;
    Ok(s)
}

/// Encodes a whole version of `plaintext` with sequence number `seqnum` (1 for a new file;
/// the highest seen + 1 to replace a version). Every segment gets a fresh salt.
pub fn encode_version(
    keys: &WriteKeys,
    params: Params,
    seqnum: u64,
    plaintext: &[u8],
    entropy: &mut dyn Entropy,
) -> Result<Encoded, Error> {
    let ss = u64::from(params.segment_size());
    encode_version_from(
        keys,
        params,
        seqnum,
        plaintext.len() as u64,
        &mut |j, out| {
            let start = to_usize(j * ss, "offset")?;
            let end = start.saturating_add(out.len());
            out.copy_from_slice(plaintext.get(start..end).ok_or(Error::OutOfRange {
                start: start as u64,
                end: end as u64,
                len: plaintext.len() as u64,
            })?);
            Ok(())
        },
        entropy,
    )
}

/// Produces the plaintext of segment `j` into a buffer of exactly that segment's length.
pub type SegmentSource<'a> = dyn FnMut(u64, &mut [u8]) -> Result<(), Error> + 'a;

/// Like [`encode_version`], with the plaintext produced segment by segment by `source`
/// (called with the segment number and a buffer of exactly that segment's length), so a large
/// file need not be in memory as plaintext.
pub fn encode_version_from(
    keys: &WriteKeys,
    params: Params,
    seqnum: u64,
    file_size: u64,
    source: &mut SegmentSource<'_>,
    entropy: &mut dyn Entropy,
) -> Result<Encoded, Error> {
    let layout = Layout::new(params, file_size)?;
    let n = usize::from(params.n());
    let coder = ErasureCoder::new(&params).map_err(|e| Error::Erasure(e.to_string()))?;
    let share_len = to_usize(layout.share_len(), "share length")?;
    let mut shares: Vec<Vec<u8>> = (0..n).map(|_| Vec::with_capacity(share_len)).collect();
    // Reserve header and chain; filled in at the end.
    for s in &mut shares {
        s.resize(to_usize(layout.records_offset(), "offset")?, 0);
    }
    let mut leaves: Vec<Vec<Hash>> = vec![Vec::new(); n];
    let mut buf = Vec::new();
    for j in 0..layout.num_segments {
        buf.resize(to_usize(layout.segment_len(j), "segment")?, 0);
        source(j, &mut buf)?;
        let salt = fresh_salt(entropy)?;
        let records = encode_segment(keys, &coder, &params, &buf, &salt)?;
        for (i, rec) in records.into_iter().enumerate() {
            leaves[i].push(record_hash(&rec));
            shares[i].extend_from_slice(&rec);
        }
    }
    let state = VersionState {
        info: VersionInfo {
            seqnum,
            root: Hash::default(),
            params,
            file_size,
        },
        leaves,
    };
    let (info, trees, share_tree) = build_trees(&state);
    let header = SignedHeader::sign(keys, info);
    for (i, s) in shares.iter_mut().enumerate() {
        s[..HEADER_LEN as usize].copy_from_slice(&header.for_share(i as u16).to_bytes());
        let chain = chain_bytes(i as u16, share_tree.1, share_tree.0.nodes());
        s[HEADER_LEN as usize..HEADER_LEN as usize + chain.len()].copy_from_slice(&chain);
        for node in trees[i].nodes() {
            s.extend_from_slice(&node.0);
        }
    }
    Ok(Encoded {
        info,
        shares,
        state: VersionState {
            info,
            leaves: state.leaves,
        },
    })
}

/// Builds every block tree and the share tree (with its width) of `state`, and the version
/// fields with the new root.
fn build_trees(state: &VersionState) -> (VersionInfo, Vec<HashTree>, (HashTree, usize)) {
    let trees: Vec<HashTree> = state
        .leaves
        .iter()
        .map(|l| HashTree::from_leaves(l))
        .collect();
    let roots: Vec<Hash> = trees.iter().map(HashTree::root).collect();
    let share_tree = HashTree::from_leaves(&roots);
    let width = usize::from(state.info.params.n()).next_power_of_two();
    let info = VersionInfo {
        root: share_tree.root(),
        ..state.info
    };
    (info, trees, (share_tree, width))
}

/// What an [`update`] needs before it can run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdatePlan {
    /// File size after the update.
    pub new_size: u64,
    /// Segments that are rewritten (in every share).
    pub segments: core::ops::Range<u64>,
    /// Segments whose current plaintext the caller must read and pass to [`update`]: the
    /// rewritten segments that the new data covers only partly.
    pub need_old: Vec<u64>,
}

/// Plans writing `len` bytes at `offset` of the version `info` (an append is
/// `offset = file_size`; an offset past the end fills the gap with zeros).
pub fn plan_update(info: &VersionInfo, offset: u64, len: u64) -> Result<UpdatePlan, Error> {
    let old = Layout::of(info)?;
    let end = offset
        .checked_add(len)
        .ok_or(Error::BadParams("offset overflow"))?;
    let new_size = old.file_size.max(end);
    Layout::new(info.params, new_size)?;
    let ss = u64::from(info.params.segment_size());
    let lo = offset.min(old.file_size);
    let segments = if end > lo {
        lo / ss..end.div_ceil(ss)
    } else {
        0..0
    };
    let need_old = segments
        .clone()
        .filter(|&j| j < old.num_segments)
        .filter(|&j| {
            let s = j * ss;
            let e = s + old.segment_len(j);
            !(offset <= s && e <= end)
        })
        .collect();
    Ok(UpdatePlan {
        new_size,
        segments,
        need_old,
    })
}

/// The result of an [`update`]: the new version and the patches that turn each stored share
/// of the old version into a share of the new one.
#[derive(Clone, Debug)]
pub struct Update {
    /// The new version (seqnum = old + 1).
    pub info: VersionInfo,
    /// One [`ShareWrite::Patch`] per share.
    pub writes: Vec<ShareWrite>,
    /// The state the next update starts from.
    pub state: VersionState,
}

/// Writes `data` at `offset` of the version in `state`, touching only the affected segments:
/// their records (in every share), the block-tree nodes above them, the chains and the
/// headers. `old` holds the current plaintext of each segment listed in
/// [`plan_update`]'s `need_old`. The new version's seqnum is the old one + 1: if a server
/// refuses it because its seqnum is not higher, another writer got there first
/// ([`Error::is_uncoordinated`]).
pub fn update(
    keys: &WriteKeys,
    state: &VersionState,
    offset: u64,
    data: &[u8],
    old: &BTreeMap<u64, Vec<u8>>,
    entropy: &mut dyn Entropy,
) -> Result<Update, Error> {
    let info = state.info;
    let plan = plan_update(&info, offset, data.len() as u64)?;
    let params = info.params;
    let n = usize::from(params.n());
    if state.leaves.len() != n {
        return Err(Error::MissingBlockTree {
            share: state.leaves.len() as u16,
        });
    }
    let old_layout = Layout::of(&info)?;
    let new_layout = Layout::new(params, plan.new_size)?;
    let coder = ErasureCoder::new(&params).map_err(|e| Error::Erasure(e.to_string()))?;
    let ss = u64::from(params.segment_size());
    let end = offset + data.len() as u64;

    let mut leaves = state.leaves.clone();
    let new_nseg = to_usize(new_layout.num_segments, "segment count")?;
    for (share, l) in leaves.iter_mut().enumerate() {
        if l.len() != to_usize(old_layout.num_segments, "segment count")? {
            return Err(Error::MissingBlockTree {
                share: share as u16,
            });
        }
        l.resize(new_nseg, Hash::default());
    }
    let mut records: Vec<Vec<(u64, Vec<u8>)>> = vec![Vec::new(); n];
    for j in plan.segments.clone() {
        let seg_start = j * ss;
        let mut seg = vec![0u8; to_usize(new_layout.segment_len(j), "segment")?];
        if plan.need_old.contains(&j) {
            let prev = old.get(&j).ok_or(Error::MissingOldSegment { segment: j })?;
            let want = to_usize(old_layout.segment_len(j), "segment")?;
            if prev.len() != want {
                return Err(Error::MissingOldSegment { segment: j });
            }
            seg[..want].copy_from_slice(prev);
        }
        // Overlay the new data.
        let a = offset.max(seg_start);
        let b = end.min(seg_start + seg.len() as u64);
        if a < b {
            let dst = to_usize(a - seg_start, "offset")?..to_usize(b - seg_start, "offset")?;
            let src = to_usize(a - offset, "offset")?..to_usize(b - offset, "offset")?;
            seg[dst].copy_from_slice(&data[src]);
        }
        let salt = fresh_salt(entropy)?;
        let recs = encode_segment(keys, &coder, &params, &seg, &salt)?;
        for (i, rec) in recs.into_iter().enumerate() {
            leaves[i][to_usize(j, "segment")?] = record_hash(&rec);
            records[i].push((new_layout.record_range(j).start, rec));
        }
    }
    let new_state = VersionState {
        info: VersionInfo {
            seqnum: info.seqnum + 1,
            file_size: plan.new_size,
            ..info
        },
        leaves,
    };
    let (new_info, trees, (share_tree, width)) = build_trees(&new_state);
    let header = SignedHeader::sign(keys, new_info);

    // Block-tree nodes that change: every node above a rewritten leaf.
    let same_tree_place = old_layout.tree_offset() == new_layout.tree_offset()
        && old_layout.tree_nodes() == new_layout.tree_nodes();
    let mut dirty: BTreeSet<u64> = BTreeSet::new();
    if same_tree_place {
        for j in plan.segments.clone() {
            let mut node = new_layout.tree_width() - 1 + j;
            loop {
                if !dirty.insert(node) {
                    break;
                }
                if node == 0 {
                    break;
                }
                node = (node - 1) / 2;
            }
        }
    }

    let mut writes = Vec::with_capacity(n);
    for (i, tree) in trees.iter().enumerate() {
        let share = i as u16;
        let mut patches = Vec::new();
        let mut head = header.for_share(share).to_bytes().to_vec();
        head.extend_from_slice(&chain_bytes(share, width, share_tree.nodes()));
        patches.push(Patch {
            offset: 0,
            data: head,
        });
        for (off, rec) in records[i].drain(..) {
            patches.push(Patch {
                offset: off,
                data: rec,
            });
        }
        if same_tree_place {
            // Runs of consecutive dirty nodes become one patch each.
            let mut run: Option<Patch> = None;
            for &node in &dirty {
                let off = new_layout.node_range(node).start;
                let h = tree.nodes()[to_usize(node, "node")?].0;
                match &mut run {
                    Some(p) if p.end() == off => p.data.extend_from_slice(&h),
                    _ => {
                        if let Some(p) = run.take() {
                            patches.push(p);
                        }
                        run = Some(Patch {
                            offset: off,
                            data: h.to_vec(),
                        });
                    }
                }
            }
            if let Some(p) = run {
                patches.push(p);
            }
        } else {
            let mut t = Vec::with_capacity(tree.nodes().len() * HASH_LEN as usize);
            for node in tree.nodes() {
                t.extend_from_slice(&node.0);
            }
            patches.push(Patch {
                offset: new_layout.tree_offset(),
                data: t,
            });
        }
        writes.push(ShareWrite::Patch {
            share,
            new_len: new_layout.share_len(),
            patches,
        });
    }
    Ok(Update {
        info: new_info,
        writes,
        state: VersionState {
            info: new_info,
            leaves: new_state.leaves,
        },
    })
}
