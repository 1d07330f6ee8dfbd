//! The incremental verifier.

use std::collections::BTreeMap;

use core::ops::Range;

use crate::tree::{empty_subtree_hash, node_hash, proof_indices, NodeIndex, Shape};
use crate::{Error, Hash};

/// A tree known only by its trusted root, filled in as hashes arrive.
///
/// Node and leaf hashes may be added in any order. Each supplied hash is held as *pending* until
/// it, combined with its siblings, reproduces an already-verified node; then it and every node
/// computed on the way become *verified*. A supplied hash that leads to a different value than a
/// verified node is rejected with [`Error::Mismatch`] naming the node that started the failing
/// computation, and it is dropped (together with the pending siblings it was combined with, which
/// are equally unproven). A hash that disagrees with one already held for the same node is
/// rejected with [`Error::Conflict`] (or [`Error::Mismatch`] if the held one is verified).
///
/// Memory is proportional to the number of hashes added, not to the tree size.
#[derive(Clone, Debug)]
pub struct PartialTree {
    shape: Shape,
    verified: BTreeMap<usize, Hash>,
    pending: BTreeMap<usize, Hash>,
    /// Interior hashes computed from pending hashes during one `settle` pass: unproven, but
    /// usable as siblings so that two partial climbs (e.g. two leaves of one range) can meet.
    derived: BTreeMap<usize, Hash>,
}

impl PartialTree {
    /// Starts from a trusted `root` for a tree over `num_leaves` leaves.
    pub fn new(root: Hash, num_leaves: usize) -> Result<Self, Error> {
        let shape = Shape::new(num_leaves)?;
        let mut verified = BTreeMap::new();
        verified.insert(0, root);
        Ok(Self {
            shape,
            verified,
            pending: BTreeMap::new(),
            derived: BTreeMap::new(),
        })
    }

    /// Number of leaves of the tree.
    pub fn num_leaves(&self) -> usize {
        self.shape.num_leaves
    }

    /// The trusted root.
    pub fn root(&self) -> Hash {
        self.verified.get(&0).copied().unwrap_or_default()
    }

    /// Adds node hashes (typically a proof). Each is verified as soon as possible; see the type's
    /// documentation for the error rules. On error, hashes of the batch that passed the basic
    /// checks stay pending unless they took part in the failing computation.
    pub fn add_nodes(&mut self, nodes: &[(NodeIndex, Hash)]) -> Result<(), Error> {
        for (index, hash) in nodes {
            self.check_candidate(*index, hash)?;
        }
        let mut fresh = Vec::with_capacity(nodes.len());
        for (index, hash) in nodes {
            if !self.verified.contains_key(&index.0) && !self.shape.is_padding(*index) {
                self.pending.insert(index.0, *hash);
                fresh.push(index.0);
            }
        }
        self.settle(&fresh)
    }

    /// Adds the hash of leaf `index`.
    pub fn add_leaf(&mut self, index: usize, hash: Hash) -> Result<(), Error> {
        if index >= self.shape.num_leaves {
            return Err(Error::LeafOutOfRange {
                index,
                num_leaves: self.shape.num_leaves,
            });
        }
        self.add_nodes(&[(self.shape.leaf_node(index), hash)])
    }

    /// The verified hash of leaf `index`, if it has been verified.
    pub fn verified_leaf(&self, index: usize) -> Option<Hash> {
        if index >= self.shape.num_leaves {
            return None;
        }
        self.verified.get(&self.shape.leaf_node(index).0).copied()
    }

    /// The verified hash of a node, if any (padding nodes count as verified).
    pub fn verified_node(&self, index: NodeIndex) -> Option<Hash> {
        if index.0 >= self.shape.num_nodes() {
            return None;
        }
        if self.shape.is_padding(index) {
            return Some(empty_subtree_hash(self.shape.height(index)));
        }
        self.verified.get(&index.0).copied()
    }

    /// Number of hashes held (verified, pending and derived, the root included): the tree's
    /// memory is this times about 40 bytes plus map overhead.
    pub fn held_nodes(&self) -> usize {
        self.verified.len() + self.pending.len() + self.derived.len()
    }

    /// Forgets every hash except the root, the verified nodes on leaf `leaf`'s path to the root
    /// and the verified siblings of that path; pending (unproven) hashes are dropped too. What
    /// is kept is at most `2 × height + 1` hashes, and it is exactly what a proof of a
    /// neighbouring leaf shares with the proof of `leaf`, so a reader that calls this after
    /// each leaf it verifies holds O(log leaves) hashes however many leaves it reads, while a
    /// sequential reader asks for no more proof nodes than if nothing had been forgotten (a
    /// later leaf's proof only needs nodes right of `leaf`'s path). Forgotten nodes are
    /// simply asked for again by [`missing_for`](Self::missing_for) if needed. A `leaf` out of
    /// range keeps only the root.
    pub fn retain_path(&mut self, leaf: usize) {
        self.pending.clear();
        self.derived.clear();
        let mut keep = BTreeMap::new();
        keep.insert(0, self.root());
        if leaf < self.shape.num_leaves {
            let mut cur = self.shape.leaf_node(leaf);
            while let (Some(sib), Some(parent)) = (cur.sibling(), cur.parent()) {
                for n in [cur, sib] {
                    if let Some(h) = self.verified.get(&n.0) {
                        keep.insert(n.0, *h);
                    }
                }
                cur = parent;
            }
        }
        self.verified = keep;
    }

    /// The nodes still needed to verify leaves `range` given what is already verified: the
    /// subset of [`proof_indices`] that is neither verified nor computable from verified nodes.
    pub fn missing_for(&self, range: Range<usize>) -> Result<Vec<NodeIndex>, Error> {
        let all = proof_indices(self.shape.num_leaves, range)?;
        Ok(all
            .into_iter()
            .filter(|n| {
                let covered_sibling_verified = n
                    .sibling()
                    .is_some_and(|s| self.verified.contains_key(&s.0));
                !self.verified.contains_key(&n.0) && !covered_sibling_verified
            })
            .collect())
    }

    fn check_candidate(&self, index: NodeIndex, hash: &Hash) -> Result<(), Error> {
        self.shape.check_node(index)?;
        if let Some(v) = self.verified_node(index) {
            if v != *hash {
                return Err(Error::Mismatch {
                    index,
                    verified: index,
                });
            }
        }
        if let Some(p) = self.pending.get(&index.0) {
            if p != hash {
                return Err(Error::Conflict { index });
            }
        }
        Ok(())
    }

    /// Sibling hash usable in a computation: verified, padding, or pending (recorded in `used`).
    fn sibling_hash(&self, sib: NodeIndex, used: &mut Vec<usize>) -> Option<Hash> {
        if let Some(v) = self.verified_node(sib) {
            return Some(v);
        }
        let p = self
            .pending
            .get(&sib.0)
            .or_else(|| self.derived.get(&sib.0))
            .copied()?;
        used.push(sib.0);
        Some(p)
    }

    /// Tries to connect every pending hash to a verified node, until nothing more connects.
    /// The hashes just added (`fresh`) are tried first, so a failing computation is blamed on
    /// the newcomer rather than on an older pending hash it was combined with.
    fn settle(&mut self, fresh: &[usize]) -> Result<(), Error> {
        loop {
            let mut progress = false;
            self.derived.clear();
            let mut keys: Vec<usize> = fresh.to_vec();
            keys.extend(self.pending.keys().copied().filter(|k| !fresh.contains(k)));
            for start in keys {
                if self.pending.contains_key(&start) && self.try_verify(start)? {
                    progress = true;
                }
            }
            if !progress {
                return Ok(());
            }
        }
    }

    /// Climbs from pending node `start`; `Ok(true)` if it reached and matched a verified node.
    fn try_verify(&mut self, start: usize) -> Result<bool, Error> {
        let Some(mut hash) = self.pending.get(&start).copied() else {
            return Ok(false);
        };
        let mut cur = NodeIndex(start);
        let mut used = vec![start];
        let mut path = Vec::new();
        loop {
            if let Some(v) = self.verified.get(&cur.0).copied() {
                if v != hash {
                    for u in &used {
                        self.pending.remove(u);
                    }
                    return Err(Error::Mismatch {
                        index: NodeIndex(start),
                        verified: cur,
                    });
                }
                return self.commit(path, &used);
            }
            path.push((cur.0, hash));
            let (Some(sib), Some(parent)) = (cur.sibling(), cur.parent()) else {
                // Only the root lacks a parent, and the root is always verified.
                return Ok(false);
            };
            let Some(sib_hash) = self.sibling_hash(sib, &mut used) else {
                for (index, hash) in path {
                    if !self.pending.contains_key(&index) {
                        self.derived.insert(index, hash);
                    }
                }
                return Ok(false);
            };
            hash = if cur.is_left() {
                node_hash(&hash, &sib_hash)
            } else {
                node_hash(&sib_hash, &hash)
            };
            cur = parent;
        }
    }

    fn commit(&mut self, path: Vec<(usize, Hash)>, used: &[usize]) -> Result<bool, Error> {
        for u in used {
            if let Some(h) = self
                .pending
                .remove(u)
                .or_else(|| self.derived.get(u).copied())
            {
                self.verified.insert(*u, h);
            }
        }
        let mut conflict = None;
        for (index, hash) in path {
            if let Some(p) = self.pending.remove(&index) {
                if p != hash && conflict.is_none() {
                    conflict = Some(index);
                }
            }
            self.verified.insert(index, hash);
        }
        match conflict {
            // A supplied interior hash disagreed with the value just proven from below.
            Some(index) => Err(Error::Mismatch {
                index: NodeIndex(index),
                verified: NodeIndex(index),
            }),
            None => Ok(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{tagged_hash, HashTree};

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n as u32)
            .map(|i| tagged_hash("test/leaf", &[&i.to_be_bytes()]))
            .collect()
    }

    #[test]
    fn leaf_before_proof_and_proof_before_leaf() {
        let l = leaves(7);
        let t = HashTree::from_leaves(&l);
        let proof = t.proof(2..3).unwrap();

        let mut a = PartialTree::new(t.root(), 7).unwrap();
        a.add_leaf(2, l[2]).unwrap();
        assert_eq!(a.verified_leaf(2), None);
        a.add_nodes(&proof).unwrap();
        assert_eq!(a.verified_leaf(2), Some(l[2]));

        let mut b = PartialTree::new(t.root(), 7).unwrap();
        b.add_nodes(&proof).unwrap();
        b.add_leaf(2, l[2]).unwrap();
        assert_eq!(b.verified_leaf(2), Some(l[2]));
        // Its neighbour now needs only itself (its sibling, leaf 2, is verified).
        assert_eq!(b.missing_for(3..4).unwrap(), vec![]);
    }

    #[test]
    fn retain_path_bounds_memory_and_keeps_sequential_proofs_minimal() {
        let n = 1000;
        let l = leaves(n);
        let t = HashTree::from_leaves(&l);
        let mut full = PartialTree::new(t.root(), n).unwrap();
        let mut pruned = PartialTree::new(t.root(), n).unwrap();
        let height = 10; // 1000 leaves: a tree of 1024 leaves, 10 levels under the root.
        for (j, leaf) in l.iter().enumerate() {
            let need_full = full.missing_for(j..j + 1).unwrap();
            let need_pruned = pruned.missing_for(j..j + 1).unwrap();
            // Reading in order, forgetting costs no extra proof node.
            assert_eq!(need_full, need_pruned, "leaf {j}");
            for p in [&mut full, &mut pruned] {
                let nodes: Vec<_> = need_full
                    .iter()
                    .map(|i| (*i, t.node(*i).unwrap()))
                    .collect();
                p.add_nodes(&nodes).unwrap();
                p.add_leaf(j, *leaf).unwrap();
                assert_eq!(p.verified_leaf(j), Some(*leaf));
            }
            pruned.retain_path(j);
            assert!(pruned.held_nodes() <= 2 * height + 1, "leaf {j}");
        }
        assert!(full.held_nodes() > n, "without forgetting every leaf stays");
        // Random access after forgetting still verifies, asking for the proof again.
        let need = pruned.missing_for(3..4).unwrap();
        assert!(!need.is_empty());
        let nodes: Vec<_> = need.iter().map(|i| (*i, t.node(*i).unwrap())).collect();
        pruned.add_nodes(&nodes).unwrap();
        assert!(
            pruned.add_leaf(3, l[4]).is_err(),
            "a wrong leaf is still refused"
        );
        pruned.add_nodes(&nodes).unwrap();
        pruned.add_leaf(3, l[3]).unwrap();
        assert_eq!(pruned.verified_leaf(3), Some(l[3]));
        pruned.retain_path(n);
        assert_eq!(pruned.held_nodes(), 1);
        assert_eq!(pruned.root(), t.root());
    }

    #[test]
    fn wrong_leaf_names_itself() {
        let l = leaves(4);
        let t = HashTree::from_leaves(&l);
        let mut p = PartialTree::new(t.root(), 4).unwrap();
        p.add_nodes(&t.proof(1..2).unwrap()).unwrap();
        let err = p.add_leaf(1, l[0]).unwrap_err();
        assert_eq!(
            err,
            Error::Mismatch {
                index: NodeIndex(4),
                verified: NodeIndex(0)
            }
        );
        // The correct leaf is still accepted afterwards once the proof is resupplied.
        p.add_nodes(&t.proof(1..2).unwrap()).unwrap();
        p.add_leaf(1, l[1]).unwrap();
        assert_eq!(p.verified_leaf(1), Some(l[1]));
    }

    #[test]
    fn conflicting_and_out_of_range() {
        let l = leaves(4);
        let t = HashTree::from_leaves(&l);
        let mut p = PartialTree::new(t.root(), 4).unwrap();
        p.add_nodes(&[(NodeIndex(4), l[1])]).unwrap();
        assert_eq!(
            p.add_nodes(&[(NodeIndex(4), l[2])]),
            Err(Error::Conflict {
                index: NodeIndex(4)
            })
        );
        assert!(matches!(
            p.add_leaf(4, l[0]),
            Err(Error::LeafOutOfRange { .. })
        ));
        assert!(matches!(
            p.add_nodes(&[(NodeIndex(7), l[0])]),
            Err(Error::NodeOutOfRange { .. })
        ));
        // Root mismatch is immediate.
        assert!(p.add_nodes(&[(NodeIndex(0), l[0])]).is_err());
    }

    #[test]
    fn supplied_interior_node_that_is_wrong_is_reported() {
        let l = leaves(4);
        let t = HashTree::from_leaves(&l);
        let mut p = PartialTree::new(t.root(), 4).unwrap();
        // Wrong node 1 supplied together with a full correct left subtree.
        let err = p
            .add_nodes(&[
                (NodeIndex(1), l[3]),
                (NodeIndex(3), l[0]),
                (NodeIndex(4), l[1]),
            ])
            .and_then(|_| p.add_nodes(&[(NodeIndex(2), t.node(NodeIndex(2)).unwrap())]));
        assert!(err.is_err());
    }
}
