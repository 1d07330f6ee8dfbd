//! Readers: choose the latest version from the servers' signed headers, then fetch, verify and
//! decode segments.

use std::collections::{BTreeMap, BTreeSet};

use core::ops::Range;

use lafs_caps::MutablePublicKey;
use lafs_codec::ErasureCoder;
use lafs_hashtree::{proof_indices, Hash, PartialTree};

use crate::format::{
    chain_root, record_hash, to_usize, ContentKey, Layout, SignedHeader, VersionInfo, HEADER_LEN,
    SALT_LEN,
};
use crate::Error;

/// The version a reader settled on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selected {
    /// The version (highest seqnum with at least k shares).
    pub info: VersionInfo,
    /// Share numbers seen for it.
    pub shares: Vec<u16>,
    /// A version with a higher seqnum was seen, but with fewer than k shares (a publish in
    /// progress or a failed one). Read again later, or repair.
    pub newer_unrecoverable: bool,
    /// Headers that were rejected (wrong key, bad signature), with why.
    pub rejected: Vec<Error>,
}

/// Chooses the latest recoverable version from the headers collected from servers (parse each
/// share's first [`crate::MAX_PREFIX_LEN`] bytes with [`SignedHeader::parse`]).
///
/// Every header is verified against `public`; bad ones are ignored (and listed). The answer is
/// the highest seqnum among versions with at least k distinct shares. If two *different*
/// versions carry the same seqnum at or above it, two writers published without coordinating:
/// [`Error::UncoordinatedWrite`].
pub fn select_latest(
    public: &MutablePublicKey,
    headers: &[SignedHeader],
) -> Result<Selected, Error> {
    if headers.is_empty() {
        return Err(Error::NoShares);
    }
    let mut rejected = Vec::new();
    let mut versions: BTreeMap<(u64, [u8; 32]), (VersionInfo, BTreeSet<u16>)> = BTreeMap::new();
    for h in headers {
        if let Err(e) = h.verify_for(public) {
            rejected.push(e);
            continue;
        }
        // Key by seqnum and a digest of the other fields so different versions stay apart.
        let id = lafs_hashtree::tagged_hash(
            "lafs/v1/mutable/version-id",
            &[
                &h.info.params.to_bytes(),
                &h.info.file_size.to_be_bytes(),
                &h.info.root.0,
            ],
        )
        .0;
        versions
            .entry((h.info.seqnum, id))
            .or_insert_with(|| (h.info, BTreeSet::new()))
            .1
            .insert(h.share);
    }
    let best = versions
        .values()
        .filter(|(info, shares)| shares.len() >= usize::from(info.params.k()))
        .max_by_key(|(info, _)| info.seqnum);
    let Some((info, shares)) = best else {
        let found = versions.values().map(|(_, s)| s.len()).max().unwrap_or(0);
        let needed = versions
            .values()
            .map(|(i, _)| usize::from(i.params.k()))
            .min()
            .unwrap_or(1);
        return Err(Error::NotEnoughShares { found, needed });
    };
    let mut per_seqnum: BTreeMap<u64, usize> = BTreeMap::new();
    for (seq, _) in versions.keys() {
        *per_seqnum.entry(*seq).or_default() += 1;
    }
    if let Some((&seqnum, _)) = per_seqnum
        .iter()
        .rev()
        .find(|(&s, &count)| s >= info.seqnum && count > 1)
    {
        return Err(Error::UncoordinatedWrite { seqnum });
    }
    let newer_unrecoverable = versions.keys().any(|(s, _)| *s > info.seqnum);
    Ok(Selected {
        info: *info,
        shares: shares.iter().copied().collect(),
        newer_unrecoverable,
        rejected,
    })
}

/// Bytes of one share fetched so far: pieces at offsets (any order, may overlap).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchedShare {
    pieces: Vec<(u64, Vec<u8>)>,
}

impl FetchedShare {
    /// A whole share.
    pub fn whole(bytes: Vec<u8>) -> Self {
        Self {
            pieces: vec![(0, bytes)],
        }
    }

    /// Adds the bytes read at `offset`.
    pub fn add(&mut self, offset: u64, bytes: Vec<u8>) {
        self.pieces.push((offset, bytes));
    }

    /// The bytes of `r` if one piece covers them.
    pub fn get(&self, r: Range<u64>) -> Option<&[u8]> {
        self.pieces.iter().find_map(|(off, b)| {
            let end = off + b.len() as u64;
            (*off <= r.start && r.end <= end)
                .then(|| b.get((r.start - off) as usize..(r.end - off) as usize))
                .flatten()
        })
    }
}

/// Plaintext decoded by [`VersionReader::read`], with the shares that failed verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOutput {
    /// The plaintext of the requested range.
    pub plaintext: Vec<u8>,
    /// Shares whose bytes failed verification (report them as corrupt).
    pub bad_shares: Vec<Error>,
}

/// Reads one version: plans which share bytes to fetch, verifies them against the signed root,
/// decodes and decrypts.
#[derive(Clone, Debug)]
pub struct VersionReader {
    info: VersionInfo,
    public: [u8; 32],
    layout: Layout,
    content_key: ContentKey,
}

impl VersionReader {
    /// A reader of the version `selected` (from [`select_latest`]) of the file with public key
    /// `public`, decrypting with `content_key`.
    pub fn new(
        info: VersionInfo,
        public: &MutablePublicKey,
        content_key: ContentKey,
    ) -> Result<Self, Error> {
        Ok(Self {
            layout: Layout::of(&info)?,
            info,
            public: *public.as_bytes(),
            content_key,
        })
    }

    /// The version's layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Segments covering plaintext bytes `range`.
    pub fn segments_for(&self, range: Range<u64>) -> Result<Range<u64>, Error> {
        if range.start > range.end || range.end > self.info.file_size {
            return Err(Error::OutOfRange {
                start: range.start,
                end: range.end,
                len: self.info.file_size,
            });
        }
        let ss = u64::from(self.info.params.segment_size());
        if range.start == range.end {
            return Ok(0..0);
        }
        Ok(range.start / ss..range.end.div_ceil(ss))
    }

    /// Byte ranges of share `share` needed to verify and decode `segments` (header and chain,
    /// block-tree root, proof nodes, leaves, records), sorted and merged.
    pub fn ranges(&self, segments: Range<u64>) -> Result<Vec<Range<u64>>, Error> {
        let l = &self.layout;
        let mut rs = vec![0..l.records_offset(), l.node_range(0)];
        if segments.start < segments.end {
            self.check_segments(&segments)?;
            let n = to_usize(l.num_segments, "segments")?;
            let seg = to_usize(segments.start, "segment")?..to_usize(segments.end, "segment")?;
            for node in proof_indices(n, seg).map_err(|_| Error::OutOfRange {
                start: segments.start,
                end: segments.end,
                len: l.num_segments,
            })? {
                rs.push(l.node_range(node.0 as u64));
            }
            for j in segments.clone() {
                rs.push(l.node_range(l.tree_width() - 1 + j));
                rs.push(l.record_range(j));
            }
        }
        rs.sort_by_key(|r| r.start);
        let mut out: Vec<Range<u64>> = Vec::new();
        for r in rs {
            match out.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => out.push(r),
            }
        }
        Ok(out)
    }

    fn check_segments(&self, segments: &Range<u64>) -> Result<(), Error> {
        if segments.start > segments.end || segments.end > self.layout.num_segments {
            return Err(Error::OutOfRange {
                start: segments.start,
                end: segments.end,
                len: self.layout.num_segments,
            });
        }
        Ok(())
    }

    /// Verifies share `share`'s bytes for `segments`; returns its records (salt ‖ block).
    fn verify_share(
        &self,
        share: u16,
        f: &FetchedShare,
        segments: &Range<u64>,
    ) -> Result<Vec<Vec<u8>>, Error> {
        let l = &self.layout;
        let get = |r: Range<u64>| {
            f.get(r.clone()).ok_or(Error::MissingBytes {
                share,
                start: r.start,
                end: r.end,
            })
        };
        let header = SignedHeader::parse(share, get(0..HEADER_LEN)?)?;
        if header.share != share {
            return Err(Error::ShareNumberMismatch {
                slot: share,
                header: header.share,
            });
        }
        if header.public != self.public {
            return Err(Error::WrongPublicKey { share });
        }
        if header.info != self.info {
            // Another version: not usable for this read (not corrupt either).
            return Err(Error::ChainMismatch { share });
        }
        let block_root = Hash::from_slice(get(l.node_range(0))?).unwrap_or_default();
        if chain_root(share, block_root, get(l.chain_range())?) != self.info.root {
            return Err(Error::ChainMismatch { share });
        }
        let mut records = Vec::new();
        if segments.start == segments.end {
            return Ok(records);
        }
        let n = to_usize(l.num_segments, "segments")?;
        let mut pt = PartialTree::new(block_root, n).map_err(|_| Error::TooLarge("tree"))?;
        let seg = to_usize(segments.start, "segment")?..to_usize(segments.end, "segment")?;
        let proof = proof_indices(n, seg).map_err(|_| Error::TooLarge("tree"))?;
        let mut nodes = Vec::with_capacity(proof.len());
        for node in proof {
            let h = Hash::from_slice(get(l.node_range(node.0 as u64))?).unwrap_or_default();
            nodes.push((node, h));
        }
        pt.add_nodes(&nodes)
            .map_err(|_| Error::TreeNodeMismatch { share, node: 0 })?;
        for j in segments.clone() {
            let rec = get(l.record_range(j))?;
            // Compare with the stored leaf first, so a bad record is named precisely.
            let leaf = get(l.node_range(l.tree_width() - 1 + j))?;
            let h = record_hash(rec);
            if h.0[..] != *leaf {
                return Err(Error::BlockHashMismatch { share, segment: j });
            }
            pt.add_leaf(to_usize(j, "segment")?, h)
                .map_err(|_| Error::TreeNodeMismatch {
                    share,
                    node: l.tree_width() - 1 + j,
                })?;
            records.push(rec.to_vec());
        }
        // Every leaf must now be verified against the block root.
        for j in segments.clone() {
            if pt.verified_leaf(to_usize(j, "segment")?).is_none() {
                return Err(Error::TreeNodeMismatch {
                    share,
                    node: l.tree_width() - 1 + j,
                });
            }
        }
        Ok(records)
    }

    /// Verifies the fetched shares and decodes `segments` from any k good ones (data shares
    /// first). Returns the segments' plaintext, concatenated.
    pub fn read_segments(
        &self,
        segments: Range<u64>,
        shares: &BTreeMap<u16, FetchedShare>,
    ) -> Result<ReadOutput, Error> {
        self.check_segments(&segments)?;
        let k = usize::from(self.info.params.k());
        let n = usize::from(self.info.params.n());
        let mut good: Vec<(u16, Vec<Vec<u8>>)> = Vec::new();
        let mut bad = Vec::new();
        for (&share, f) in shares {
            if good.len() == k {
                break;
            }
            if usize::from(share) >= n {
                bad.push(Error::ShareOutOfRange {
                    share,
                    n: self.info.params.n(),
                });
                continue;
            }
            match self.verify_share(share, f, &segments) {
                Ok(recs) => good.push((share, recs)),
                Err(e) => bad.push(e),
            }
        }
        if good.len() < k {
            return Err(Error::NotEnoughShares {
                found: good.len(),
                needed: k,
            });
        }
        let coder =
            ErasureCoder::new(&self.info.params).map_err(|e| Error::Erasure(e.to_string()))?;
        let mut plaintext = Vec::new();
        for (idx, j) in segments.clone().enumerate() {
            let seg_len = to_usize(self.layout.segment_len(j), "segment")?;
            let mut blocks: Vec<Option<Vec<u8>>> = vec![None; n];
            let mut salt = [0u8; 16];
            for (share, recs) in &good {
                let rec = &recs[idx];
                salt.copy_from_slice(&rec[..SALT_LEN as usize]);
                blocks[usize::from(*share)] = Some(rec[SALT_LEN as usize..].to_vec());
            }
            let mut seg = Vec::with_capacity(seg_len);
            if seg_len > 0 {
                for b in coder
                    .decode(blocks)
                    .map_err(|e| Error::Erasure(e.to_string()))?
                {
                    seg.extend_from_slice(&b);
                }
            }
            seg.truncate(seg_len);
            self.content_key.apply_segment_keystream(&salt, &mut seg);
            plaintext.extend_from_slice(&seg);
        }
        Ok(ReadOutput {
            plaintext,
            bad_shares: bad,
        })
    }

    /// Reads plaintext bytes `range` (fetch [`Self::ranges`] of
    /// [`Self::segments_for`]`(range)` first).
    pub fn read(
        &self,
        range: Range<u64>,
        shares: &BTreeMap<u16, FetchedShare>,
    ) -> Result<ReadOutput, Error> {
        let segs = self.segments_for(range.clone())?;
        let mut out = self.read_segments(segs.clone(), shares)?;
        let ss = u64::from(self.info.params.segment_size());
        let skip = to_usize(range.start - segs.start * ss, "offset")?;
        let len = to_usize(range.end - range.start, "length")?;
        out.plaintext = out
            .plaintext
            .get(skip..skip + len)
            .unwrap_or_default()
            .to_vec();
        Ok(out)
    }
}
