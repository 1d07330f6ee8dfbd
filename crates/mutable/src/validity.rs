//! The storage server's validity check: accept a write only if the resulting share is validly
//! signed by the key behind the storage index and its sequence number is higher.
//!
//! The invariant a server keeps for every stored mutable share ("valid share"):
//!
//! 1. the header parses, its public key hashes to the storage index, its signature verifies;
//! 2. the share's length is the one its header implies, its share number is its slot;
//! 3. the block tree is consistent (each interior node hashes its children, padding leaves are
//!    padding) and its root, climbed through the chain, gives the signed root;
//! 4. every record (salt ‖ block) hashes to its leaf.
//!
//! A whole share is checked completely (cost ∝ its size, which the server receives anyway). A
//! patch is checked *incrementally*, relying on the stored share being valid: only the header,
//! the chain, the records the patch touches and the tree nodes above them are hashed, so the
//! cost is one signature verification plus hashing about as many bytes as the patch carries.

use std::borrow::Cow;
use std::collections::BTreeSet;

use core::ops::Range;

use lafs_caps::StorageIndex;
use lafs_hashtree::{empty_subtree_hash, node_hash, Hash, HashTree};

use crate::format::{chain_root, record_hash, Layout, SignedHeader, HASH_LEN, HEADER_LEN};
use crate::publish::{parse_nodes, Patch, ShareWrite};
use crate::Error;

/// An accepted write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The write makes a valid share with a higher sequence number: store it.
    Accept {
        /// Share number.
        share: u16,
        /// The new sequence number.
        seqnum: u64,
        /// The stored share's sequence number, if there was one.
        previous: Option<u64>,
    },
    /// The write leaves the stored share exactly as it is (a retried write): nothing to do.
    AlreadyStored {
        /// The sequence number.
        seqnum: u64,
    },
}

/// Read access to the share a server holds, for [`check_write_in`]: a server can check a
/// patch by reading only the few ranges the check needs (header, chain, patched records, tree
/// paths) instead of loading the whole share.
pub trait StoredShare {
    /// The stored share's length in bytes.
    fn len(&self) -> u64;

    /// Whether the stored share is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Exactly the bytes `range` (the caller keeps it inside `0..len()`). A failure is
    /// reported as [`Error::StoredShareUnreadable`].
    fn read_range(&self, range: Range<u64>) -> Result<Cow<'_, [u8]>, Error>;
}

impl StoredShare for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_range(&self, range: Range<u64>) -> Result<Cow<'_, [u8]>, Error> {
        let r = usize::try_from(range.start).unwrap_or(usize::MAX)
            ..usize::try_from(range.end).unwrap_or(usize::MAX);
        self.get(r)
            .map(Cow::Borrowed)
            .ok_or_else(|| Error::StoredShareUnreadable {
                share: 0,
                start: range.start,
                end: range.end,
                reason: "outside the stored share".into(),
            })
    }
}

/// `stored.read_range(range)` with errors naming share `slot`.
fn read_stored<'s>(
    stored: &'s dyn StoredShare,
    slot: u16,
    range: Range<u64>,
) -> Result<Cow<'s, [u8]>, Error> {
    let want = range.end.saturating_sub(range.start);
    let got = stored.read_range(range.clone()).map_err(|e| match e {
        Error::StoredShareUnreadable {
            start, end, reason, ..
        } => Error::StoredShareUnreadable {
            share: slot,
            start,
            end,
            reason,
        },
        other => other,
    })?;
    if got.len() as u64 != want {
        return Err(Error::StoredShareUnreadable {
            share: slot,
            start: range.start,
            end: range.end,
            reason: format!("{} bytes returned", got.len()),
        });
    }
    Ok(got)
}

/// The share a write would produce, read through the stored share and the patches without
/// materialising it.
struct View<'a> {
    share: u16,
    base: &'a dyn StoredShare,
    len: u64,
    patches: &'a [Patch],
}

impl<'a> View<'a> {
    fn read(&self, r: Range<u64>) -> Result<Cow<'a, [u8]>, Error> {
        if r.end > self.len || r.start > r.end {
            return Err(Error::Truncated {
                share: self.share,
                needed: r.end,
                available: self.len,
            });
        }
        let base_len = self.base.len();
        let untouched = r.end <= base_len && !self.touched(&r);
        let (s, e) = (r.start as usize, r.end as usize);
        if untouched {
            return read_stored(self.base, self.share, r);
        }
        let mut out = vec![0u8; e - s];
        // Read from the stored share only the parts no patch covers.
        let mut covered: Vec<(u64, u64)> = self
            .patches
            .iter()
            .map(|p| (p.offset.max(r.start), p.end().min(r.end)))
            .filter(|(a, b)| a < b)
            .collect();
        covered.sort_unstable();
        let mut at = r.start;
        let base_end = r.end.min(base_len);
        for (a, b) in covered.into_iter().chain(core::iter::once((r.end, r.end))) {
            let gap_end = a.min(base_end);
            if at < gap_end {
                let bytes = read_stored(self.base, self.share, at..gap_end)?;
                let o = (at - r.start) as usize;
                out[o..o + bytes.len()].copy_from_slice(&bytes);
            }
            at = at.max(b);
        }
        for p in self.patches {
            let a = p.offset.max(r.start);
            let b = p.end().min(r.end);
            if a < b {
                let src = (a - p.offset) as usize..(b - p.offset) as usize;
                out[(a - r.start) as usize..(b - r.start) as usize].copy_from_slice(&p.data[src]);
            }
        }
        Ok(Cow::Owned(out))
    }

    fn touched(&self, r: &Range<u64>) -> bool {
        r.end > self.base.len()
            || self
                .patches
                .iter()
                .any(|p| p.offset < r.end && r.start < p.end())
    }

    fn hash_at(&self, r: Range<u64>) -> Result<Hash, Error> {
        let b = self.read(r)?;
        Ok(Hash::from_slice(&b).unwrap_or_default())
    }
}

/// Decides whether a storage server holding `stored` (the current share in slot
/// `write.share()` of storage index `si`, if any) accepts `write`.
///
/// Accepts iff the resulting share is valid (see the module docs) and its sequence number is
/// higher than the stored one (test-and-set). A write that changes nothing is
/// [`Verdict::AlreadyStored`], so retries are harmless. Errors say exactly what failed; a
/// [`Error::SeqnumNotHigher`] means another writer got there first.
///
/// A patch check reads only the header, the chain, the patched records and the tree nodes
/// above them (see `docs/spec/mutable.md`); [`check_write_in`] lets a server supply only
/// those ranges.
pub fn check_write(
    si: &StorageIndex,
    stored: Option<&[u8]>,
    write: &ShareWrite,
) -> Result<Verdict, Error> {
    let stored = stored.as_ref().map(|s| s as &dyn StoredShare);
    check_write_in(si, stored, write)
}

/// [`check_write`] reading the stored share through [`StoredShare`]: a patch check reads
/// O(patch bytes + log segments) of it, a whole write its header (and, for an equal seqnum,
/// the whole share to recognise a retry).
pub fn check_write_in(
    si: &StorageIndex,
    stored: Option<&dyn StoredShare>,
    write: &ShareWrite,
) -> Result<Verdict, Error> {
    let slot = write.share();
    match write {
        ShareWrite::Whole { data, .. } => {
            let bytes: &[u8] = data;
            let view = View {
                share: slot,
                base: &bytes,
                len: data.len() as u64,
                patches: &[],
            };
            let header = check_whole(si, slot, &view)?;
            // A stored share whose header does not parse may be replaced by a valid one; a
            // stored share that cannot be read refuses the write (its seqnum is unknown).
            let previous = match stored {
                Some(s) => {
                    let prefix = read_stored(s, slot, 0..HEADER_LEN.min(s.len()))?;
                    SignedHeader::parse(slot, &prefix).ok()
                }
                None => None,
            };
            let seqnum = header.info.seqnum;
            match previous {
                Some(p) if p.info.seqnum > seqnum => Err(Error::SeqnumNotHigher {
                    share: slot,
                    stored: p.info.seqnum,
                    proposed: seqnum,
                }),
                Some(p) if p.info.seqnum == seqnum => {
                    let same = match stored {
                        Some(s) if s.len() == data.len() as u64 => {
                            read_stored(s, slot, 0..s.len())?.as_ref() == data.as_slice()
                        }
                        _ => false,
                    };
                    if same {
                        Ok(Verdict::AlreadyStored { seqnum })
                    } else if stored.is_some_and(|s| stored_is_invalid(si, slot, s)) {
                        // A repairer replaces a stored copy that rotted (it fails the full
                        // check) by a valid share of the same version.
                        Ok(Verdict::Accept {
                            share: slot,
                            seqnum,
                            previous: Some(p.info.seqnum),
                        })
                    } else {
                        Err(Error::SeqnumNotHigher {
                            share: slot,
                            stored: p.info.seqnum,
                            proposed: seqnum,
                        })
                    }
                }
                p => Ok(Verdict::Accept {
                    share: slot,
                    seqnum,
                    previous: p.map(|p| p.info.seqnum),
                }),
            }
        }
        ShareWrite::Patch {
            new_len, patches, ..
        } => {
            let stored = stored.ok_or(Error::PatchWithoutStoredShare { share: slot })?;
            check_patch(si, slot, stored, *new_len, patches)
        }
    }
}

/// Whether the stored share fails the full check (an unreadable one counts as valid: it is
/// not replaced on a guess).
fn stored_is_invalid(si: &StorageIndex, slot: u16, stored: &dyn StoredShare) -> bool {
    let view = View {
        share: slot,
        base: stored,
        len: stored.len(),
        patches: &[],
    };
    match check_whole(si, slot, &view) {
        Ok(_) | Err(Error::StoredShareUnreadable { .. }) => false,
        Err(_) => true,
    }
}

/// Checks a whole share completely (what a checker holding the verifycap, a verifying crawler
/// or a server receiving a whole share does). Returns its header.
pub fn verify_share(si: &StorageIndex, share: u16, bytes: &[u8]) -> Result<SignedHeader, Error> {
    let view = View {
        share,
        base: &bytes,
        len: bytes.len() as u64,
        patches: &[],
    };
    check_whole(si, share, &view)
}

fn header_of(
    si: &StorageIndex,
    slot: u16,
    view: &View<'_>,
) -> Result<(SignedHeader, Layout), Error> {
    let header = SignedHeader::parse(slot, &view.read(0..HEADER_LEN.min(view.len))?)?;
    if header.share != slot {
        return Err(Error::ShareNumberMismatch {
            slot,
            header: header.share,
        });
    }
    header.verify_for_storage_index(si)?;
    let layout = Layout::of(&header.info)?;
    if view.len != layout.share_len() {
        return Err(Error::WrongLength {
            share: slot,
            expected: layout.share_len(),
            found: view.len,
        });
    }
    Ok((header, layout))
}

fn tree_error(share: u16, e: lafs_hashtree::Error) -> Error {
    match e {
        lafs_hashtree::Error::Mismatch { verified, .. } => Error::TreeNodeMismatch {
            share,
            node: verified.0 as u64,
        },
        _ => Error::TreeNodeMismatch { share, node: 0 },
    }
}

fn check_chain(
    share: u16,
    view: &View<'_>,
    layout: &Layout,
    header: &SignedHeader,
    block_root: Hash,
) -> Result<(), Error> {
    let chain = view.read(layout.chain_range())?;
    if chain_root(share, block_root, &chain) != header.info.root {
        return Err(Error::ChainMismatch { share });
    }
    Ok(())
}

fn check_whole(si: &StorageIndex, slot: u16, view: &View<'_>) -> Result<SignedHeader, Error> {
    let (header, layout) = header_of(si, slot, view)?;
    let nseg = usize::try_from(layout.num_segments).map_err(|_| Error::TooLarge("segments"))?;
    let nodes = parse_nodes(slot, &view.read(layout.tree_range())?, layout.tree_nodes())?;
    let tree = HashTree::from_nodes(nseg, nodes).map_err(|e| tree_error(slot, e))?;
    check_chain(slot, view, &layout, &header, tree.root())?;
    for j in 0..layout.num_segments {
        let rec = view.read(layout.record_range(j))?;
        if Some(record_hash(&rec)) != tree.leaf(j as usize) {
            return Err(Error::BlockHashMismatch {
                share: slot,
                segment: j,
            });
        }
    }
    Ok(header)
}

fn check_patch(
    si: &StorageIndex,
    slot: u16,
    stored: &dyn StoredShare,
    new_len: u64,
    patches: &[Patch],
) -> Result<Verdict, Error> {
    for p in patches {
        if p.end() > new_len || p.offset.checked_add(p.data.len() as u64).is_none() {
            return Err(Error::PatchOutOfRange {
                share: slot,
                offset: p.offset,
                end: p.end(),
                len: new_len,
            });
        }
    }
    let prefix = read_stored(stored, slot, 0..HEADER_LEN.min(stored.len()))?;
    let old = SignedHeader::parse(slot, &prefix).map_err(|e| Error::StoredShareCorrupt {
        share: slot,
        reason: e.to_string(),
    })?;
    let old_layout = Layout::of(&old.info).map_err(|e| Error::StoredShareCorrupt {
        share: slot,
        reason: e.to_string(),
    })?;
    if old_layout.share_len() != stored.len() {
        return Err(Error::StoredShareCorrupt {
            share: slot,
            reason: "length does not match its header".into(),
        });
    }
    let view = View {
        share: slot,
        base: stored,
        len: new_len,
        patches,
    };
    let (header, layout) = header_of(si, slot, &view)?;
    let seqnum = header.info.seqnum;
    if seqnum <= old.info.seqnum {
        let unchanged = || -> Result<bool, Error> {
            if new_len != stored.len() {
                return Ok(false);
            }
            for p in patches {
                if read_stored(stored, slot, p.offset..p.end())?.as_ref() != p.data.as_slice() {
                    return Ok(false);
                }
            }
            Ok(true)
        };
        if seqnum == old.info.seqnum && unchanged()? {
            return Ok(Verdict::AlreadyStored { seqnum });
        }
        return Err(Error::SeqnumNotHigher {
            share: slot,
            stored: old.info.seqnum,
            proposed: seqnum,
        });
    }
    if header.info.params != old.info.params {
        return Err(Error::PatchChangesParams { share: slot });
    }

    // Segments whose record may differ from the stored one.
    let nseg = layout.num_segments;
    let mut changed: BTreeSet<u64> = BTreeSet::new();
    if layout.file_size != old_layout.file_size {
        let from = nseg.min(old_layout.num_segments).saturating_sub(1);
        changed.extend(from..nseg);
    }
    let rec_full = crate::format::SALT_LEN + layout.full_block();
    let (ro, to) = (layout.records_offset(), layout.tree_offset());
    for p in patches {
        let a = p.offset.max(ro);
        let b = p.end().min(to);
        if a < b {
            let first = (a - ro) / rec_full;
            let last = ((b - 1 - ro) / rec_full).min(nseg.saturating_sub(1));
            changed.extend(first..=last);
        }
    }

    let same_place = layout.tree_offset() == old_layout.tree_offset()
        && layout.tree_nodes() == old_layout.tree_nodes();
    let block_root = if same_place {
        check_tree_paths(&view, &layout, &changed, patches)?
    } else {
        let n = usize::try_from(nseg).map_err(|_| Error::TooLarge("segments"))?;
        let nodes = parse_nodes(slot, &view.read(layout.tree_range())?, layout.tree_nodes())?;
        let tree = HashTree::from_nodes(n, nodes).map_err(|e| tree_error(slot, e))?;
        for j in 0..nseg {
            let leaf = tree.leaf(j as usize).unwrap_or_default();
            let unchanged = !changed.contains(&j)
                && j < old_layout.num_segments
                && Hash::from_slice(&read_stored(
                    stored,
                    slot,
                    old_layout.node_range(old_layout.tree_width() - 1 + j),
                )?) == Some(leaf);
            if !unchanged && record_hash(&view.read(layout.record_range(j))?) != leaf {
                return Err(Error::BlockHashMismatch {
                    share: slot,
                    segment: j,
                });
            }
        }
        tree.root()
    };
    check_chain(slot, &view, &layout, &header, block_root)?;
    Ok(Verdict::Accept {
        share: slot,
        seqnum,
        previous: Some(old.info.seqnum),
    })
}

/// Checks the tree nodes a patch could have invalidated (same tree position and shape as the
/// stored share): every node whose bytes were patched or that sits above a changed record, and
/// all their ancestors. Returns the (new) block-tree root.
fn check_tree_paths(
    view: &View<'_>,
    layout: &Layout,
    changed: &BTreeSet<u64>,
    patches: &[Patch],
) -> Result<Hash, Error> {
    let share = view.share;
    let first_leaf = layout.tree_width() - 1;
    let mut dirty: BTreeSet<u64> = changed.iter().map(|j| first_leaf + j).collect();
    let tr = layout.tree_range();
    for p in patches {
        let a = p.offset.max(tr.start);
        let b = p.end().min(tr.end);
        if a < b {
            dirty.extend((a - tr.start) / HASH_LEN..=(b - 1 - tr.start) / HASH_LEN);
        }
    }
    let mut checked: BTreeSet<u64> = BTreeSet::new();
    for &d in &dirty {
        let mut node = d;
        loop {
            if !checked.insert(node) {
                break;
            }
            let h = view.hash_at(layout.node_range(node))?;
            if node >= first_leaf {
                let j = node - first_leaf;
                let ok = if j < layout.num_segments {
                    record_hash(&view.read(layout.record_range(j))?) == h
                } else {
                    h == empty_subtree_hash(0)
                };
                if !ok {
                    return Err(if j < layout.num_segments {
                        Error::BlockHashMismatch { share, segment: j }
                    } else {
                        Error::TreeNodeMismatch { share, node }
                    });
                }
            } else {
                let l = view.hash_at(layout.node_range(2 * node + 1))?;
                let r = view.hash_at(layout.node_range(2 * node + 2))?;
                if node_hash(&l, &r) != h {
                    return Err(Error::TreeNodeMismatch { share, node });
                }
            }
            if node == 0 {
                break;
            }
            node = (node - 1) / 2;
        }
    }
    view.hash_at(layout.node_range(0))
}
