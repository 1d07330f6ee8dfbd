//! Tree shape, node numbering and the full (builder-side) tree.
//!
//! A tree over `n` leaves is a complete binary tree of width `P = max(1, n.next_power_of_two())`.
//! Nodes are numbered in heap order: the root is 0, the children of node `i` are `2i+1` and
//! `2i+2`, and leaf `j` is node `P - 1 + j`. Leaves `n..P` are *padding*: their hash is the fixed
//! [`PADDING_LEAF_TAG`] hash, so every node whose subtree holds only padding has a hash anyone can
//! compute ([`empty_subtree_hash`]); such nodes never appear in proofs.

use core::{fmt, ops::Range};

use crate::{tagged_hash, Error, Hash};

/// Tag of the hash of a padding leaf (hashed over no data).
pub const PADDING_LEAF_TAG: &str = "lafs/v1/hashtree/padding";
/// Tag of an interior node: `tagged_hash(NODE_TAG, left || right)`.
pub const NODE_TAG: &str = "lafs/v1/hashtree/node";

/// Largest supported number of leaves (2^40). Larger trees are rejected with
/// [`Error::TooLarge`] rather than overflowing index arithmetic on 32-bit targets.
const MAX_LEAVES: u64 = 1 << 40;

/// Index of a node in heap order (root = 0, children of `i` = `2i+1`, `2i+2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeIndex(pub usize);

impl fmt::Display for NodeIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl NodeIndex {
    /// The root node.
    pub const ROOT: Self = Self(0);

    /// Parent node; `None` for the root.
    pub fn parent(self) -> Option<Self> {
        (self.0 > 0).then(|| Self((self.0 - 1) / 2))
    }

    /// The other child of this node's parent; `None` for the root.
    pub fn sibling(self) -> Option<Self> {
        match self.0 {
            0 => None,
            i if i % 2 == 1 => Some(Self(i + 1)),
            i => Some(Self(i - 1)),
        }
    }

    /// Whether this node is the left child of its parent.
    pub fn is_left(self) -> bool {
        self.0 % 2 == 1
    }

    /// Depth below the root (root = 0).
    pub fn depth(self) -> u32 {
        (self.0 + 1).ilog2()
    }
}

/// Width (number of leaf slots, a power of two ≥ 1) of a tree over `num_leaves` leaves.
pub fn tree_width(num_leaves: usize) -> Result<usize, Error> {
    if num_leaves as u64 > MAX_LEAVES {
        return Err(Error::TooLarge {
            num_leaves: num_leaves as u64,
        });
    }
    Ok(num_leaves.max(1).next_power_of_two())
}

/// Node index of leaf `leaf` in a tree over `num_leaves` leaves.
pub fn leaf_node_index(num_leaves: usize, leaf: usize) -> Result<NodeIndex, Error> {
    let width = tree_width(num_leaves)?;
    if leaf >= num_leaves {
        return Err(Error::LeafOutOfRange {
            index: leaf,
            num_leaves,
        });
    }
    Ok(NodeIndex(width - 1 + leaf))
}

/// Hash of an interior node from its two children.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    tagged_hash(NODE_TAG, &[left.as_bytes(), right.as_bytes()])
}

/// Hash of a subtree of height `height` (0 = a leaf) that holds only padding leaves.
pub fn empty_subtree_hash(height: u32) -> Hash {
    let mut h = tagged_hash(PADDING_LEAF_TAG, &[]);
    for _ in 0..height {
        h = node_hash(&h, &h);
    }
    h
}

/// Shape facts shared by [`HashTree`], [`proof_indices`] and [`crate::PartialTree`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub(crate) num_leaves: usize,
    pub(crate) width: usize,
    pub(crate) levels: u32,
}

impl Shape {
    pub(crate) fn new(num_leaves: usize) -> Result<Self, Error> {
        let width = tree_width(num_leaves)?;
        Ok(Self {
            num_leaves,
            width,
            levels: width.ilog2(),
        })
    }

    pub(crate) fn num_nodes(&self) -> usize {
        2 * self.width - 1
    }

    pub(crate) fn check_node(&self, index: NodeIndex) -> Result<(), Error> {
        if index.0 >= self.num_nodes() {
            return Err(Error::NodeOutOfRange {
                index,
                num_nodes: self.num_nodes(),
            });
        }
        Ok(())
    }

    /// Height of a node above the leaf level (leaves = 0).
    pub(crate) fn height(&self, index: NodeIndex) -> u32 {
        self.levels - index.depth()
    }

    /// First leaf slot covered by a node.
    pub(crate) fn first_leaf(&self, index: NodeIndex) -> usize {
        let h = self.height(index);
        let first_at_depth = (1usize << index.depth()) - 1;
        (index.0 - first_at_depth) << h
    }

    /// Whether every leaf slot under `index` is padding.
    pub(crate) fn is_padding(&self, index: NodeIndex) -> bool {
        self.first_leaf(index) >= self.num_leaves
    }

    pub(crate) fn leaf_node(&self, leaf: usize) -> NodeIndex {
        NodeIndex(self.width - 1 + leaf)
    }

    pub(crate) fn check_range(&self, range: &Range<usize>) -> Result<(), Error> {
        if range.start >= range.end || range.end > self.num_leaves {
            return Err(Error::BadRange {
                start: range.start,
                end: range.end,
                num_leaves: self.num_leaves,
            });
        }
        Ok(())
    }
}

/// The minimal set of nodes, in increasing index order, needed to verify leaves `range` against
/// the root when only those leaves' hashes are known.
///
/// Minimal means: every returned node is the sibling of a node on the path from some leaf in the
/// range to the root, is not itself computable from the leaves in the range, and is not a padding
/// node (whose hash is fixed). Returns an empty set for a single-leaf tree.
pub fn proof_indices(num_leaves: usize, range: Range<usize>) -> Result<Vec<NodeIndex>, Error> {
    let shape = Shape::new(num_leaves)?;
    shape.check_range(&range)?;
    let mut out = Vec::new();
    // Walk level by level: at each level the covered nodes are a contiguous run [lo, hi].
    let mut lo = shape.leaf_node(range.start).0;
    let mut hi = shape.leaf_node(range.end - 1).0;
    while lo > 0 {
        // A left boundary that is a right child needs its left sibling.
        if lo % 2 == 0 {
            out.push(NodeIndex(lo - 1));
        }
        // A right boundary that is a left child needs its right sibling, unless it is padding.
        if hi % 2 == 1 && !shape.is_padding(NodeIndex(hi + 1)) {
            out.push(NodeIndex(hi + 1));
        }
        lo = (lo - 1) / 2;
        hi = (hi - 1) / 2;
    }
    out.sort_unstable();
    Ok(out)
}

/// A complete tree, built by whoever holds all the leaves (an encoder).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashTree {
    shape_leaves: usize,
    /// All `2P - 1` nodes in heap order, padding included.
    nodes: Vec<Hash>,
}

impl HashTree {
    /// Builds the tree over `leaves` (which may be empty: the root is then the padding hash).
    ///
    /// # Panics
    /// If there are more than 2^40 leaves (which cannot fit in memory anyway).
    pub fn from_leaves(leaves: &[Hash]) -> Self {
        #[allow(clippy::expect_used)] // 2^40 hashes would be 32 TiB of input: cannot happen.
        let shape = Shape::new(leaves.len()).expect("tree too large");
        let mut nodes = vec![Hash::default(); shape.num_nodes()];
        let first_leaf = shape.width - 1;
        let pad = empty_subtree_hash(0);
        for (slot, node) in nodes[first_leaf..].iter_mut().enumerate() {
            *node = leaves.get(slot).copied().unwrap_or(pad);
        }
        for i in (0..first_leaf).rev() {
            nodes[i] = node_hash(&nodes[2 * i + 1], &nodes[2 * i + 2]);
        }
        Self {
            shape_leaves: leaves.len(),
            nodes,
        }
    }

    /// Rebuilds a tree from all `2P - 1` node hashes in heap order (as stored in a share),
    /// checking that every interior node is the hash of its children and that padding leaves
    /// hold the padding hash. Returns the first inconsistent node as [`Error::Mismatch`].
    pub fn from_nodes(num_leaves: usize, nodes: Vec<Hash>) -> Result<Self, Error> {
        let shape = Shape::new(num_leaves)?;
        if nodes.len() != shape.num_nodes() {
            return Err(Error::NodeOutOfRange {
                index: NodeIndex(nodes.len()),
                num_nodes: shape.num_nodes(),
            });
        }
        let pad = empty_subtree_hash(0);
        for leaf in num_leaves..shape.width {
            let idx = shape.leaf_node(leaf);
            if nodes[idx.0] != pad {
                return Err(Error::Mismatch {
                    index: idx,
                    verified: idx,
                });
            }
        }
        for i in (0..shape.width - 1).rev() {
            if nodes[i] != node_hash(&nodes[2 * i + 1], &nodes[2 * i + 2]) {
                return Err(Error::Mismatch {
                    index: NodeIndex(2 * i + 1),
                    verified: NodeIndex(i),
                });
            }
        }
        Ok(Self {
            shape_leaves: num_leaves,
            nodes,
        })
    }

    /// The root hash.
    pub fn root(&self) -> Hash {
        self.nodes[0]
    }

    /// Number of (non-padding) leaves.
    pub fn num_leaves(&self) -> usize {
        self.shape_leaves
    }

    /// All nodes in heap order, padding included (`2P - 1` of them).
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// One node's hash.
    pub fn node(&self, index: NodeIndex) -> Option<Hash> {
        self.nodes.get(index.0).copied()
    }

    /// Leaf `index`'s hash.
    pub fn leaf(&self, index: usize) -> Option<Hash> {
        if index >= self.shape_leaves {
            return None;
        }
        let width = self.nodes.len().div_ceil(2);
        self.nodes.get(width - 1 + index).copied()
    }

    /// The minimal proof for leaves `range` (see [`proof_indices`]) with hashes.
    pub fn proof(&self, range: Range<usize>) -> Result<Vec<(NodeIndex, Hash)>, Error> {
        Ok(proof_indices(self.shape_leaves, range)?
            .into_iter()
            .map(|i| (i, self.nodes[i.0]))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n as u32)
            .map(|i| tagged_hash("test/leaf", &[&i.to_be_bytes()]))
            .collect()
    }

    #[test]
    fn shapes() {
        assert_eq!(tree_width(0).unwrap(), 1);
        assert_eq!(tree_width(1).unwrap(), 1);
        assert_eq!(tree_width(5).unwrap(), 8);
        let s = Shape::new(5).unwrap();
        assert_eq!(s.first_leaf(NodeIndex(0)), 0);
        assert_eq!(s.first_leaf(NodeIndex(2)), 4);
        assert_eq!(s.first_leaf(NodeIndex(6)), 6);
        assert!(s.is_padding(NodeIndex(6)));
        assert!(!s.is_padding(NodeIndex(5)));
        assert_eq!(NodeIndex(7).depth(), 3);
    }

    #[test]
    fn single_leaf_tree_root_is_leaf() {
        let l = leaves(1);
        let t = HashTree::from_leaves(&l);
        assert_eq!(t.root(), l[0]);
        assert!(t.proof(0..1).unwrap().is_empty());
    }

    #[test]
    fn empty_tree_root_is_padding() {
        assert_eq!(HashTree::from_leaves(&[]).root(), empty_subtree_hash(0));
    }

    #[test]
    fn proof_of_one_leaf_is_log_n() {
        let t = HashTree::from_leaves(&leaves(8));
        assert_eq!(
            proof_indices(8, 5..6).unwrap(),
            vec![NodeIndex(1), NodeIndex(6), NodeIndex(11)]
        );
        assert_eq!(t.proof(0..8).unwrap(), vec![]);
        // Padding siblings are omitted: leaf 4 of 5 needs only node 1.
        assert_eq!(proof_indices(5, 4..5).unwrap(), vec![NodeIndex(1)]);
    }

    #[test]
    fn from_nodes_round_trip_and_rejects_tampering() {
        let t = HashTree::from_leaves(&leaves(6));
        assert_eq!(HashTree::from_nodes(6, t.nodes().to_vec()).unwrap(), t);
        let mut bad = t.nodes().to_vec();
        bad[9].0[0] ^= 1;
        assert!(matches!(
            HashTree::from_nodes(6, bad),
            Err(Error::Mismatch { .. })
        ));
        assert!(HashTree::from_nodes(6, vec![Hash::default(); 3]).is_err());
    }

    #[test]
    fn bad_ranges() {
        assert!(proof_indices(4, 2..2).is_err());
        assert!(proof_indices(4, 3..5).is_err());
        assert!(proof_indices(0, 0..1).is_err());
    }
}
