//! Merkle trees over 32-byte nodes with domain-separated SHA-256.
//!
//! This crate is pure logic: no IO, no threads, no clock. It provides
//!
//! * [`tagged_hash`] / [`TaggedHasher`]: SHA-256 with a domain-separation tag, so a hash made
//!   for one purpose can never be confused with a hash made for another;
//! * [`HashTree`]: a complete binary tree built from leaf hashes, with [`HashTree::proof`] giving
//!   the *minimal* set of node hashes needed to verify one leaf or a range of leaves;
//! * [`proof_indices`]: the same minimal set as a pure function of the tree shape, for planners
//!   that must decide what to fetch before they have any hash;
//! * [`PartialTree`]: an incremental verifier that starts from a trusted root and accepts node
//!   hashes and leaf hashes in any order, verifying each as soon as it connects to a verified node
//!   and rejecting an inconsistent one with an error that names it.
//!
//! The tree shape, node numbering and hash rules are specified in `docs/spec/hashtree.md`.
//!
//! ```
//! use lafs_hashtree::{tagged_hash, HashTree, PartialTree};
//!
//! let leaves: Vec<_> = (0u8..5).map(|i| tagged_hash("example/leaf", &[&[i]])).collect();
//! let tree = HashTree::from_leaves(&leaves);
//! let proof = tree.proof(3..5).unwrap();
//!
//! let mut partial = PartialTree::new(tree.root(), leaves.len()).unwrap();
//! partial.add_nodes(&proof).unwrap();
//! partial.add_leaf(3, leaves[3]).unwrap();
//! partial.add_leaf(4, leaves[4]).unwrap();
//! assert_eq!(partial.verified_leaf(4), Some(leaves[4]));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod hash;
mod partial;
mod tree;

pub use hash::{tagged_hash, Hash, TaggedHasher};
pub use partial::PartialTree;
pub use tree::{
    empty_subtree_hash, leaf_node_index, node_hash, proof_indices, tree_width, HashTree, NodeIndex,
    NODE_TAG, PADDING_LEAF_TAG,
};

/// Everything that can go wrong when building, proving or verifying a tree.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A leaf index is not below the tree's number of leaves.
    #[error("leaf {index} is out of range: the tree has {num_leaves} leaves")]
    LeafOutOfRange {
        /// The offending leaf index.
        index: usize,
        /// Number of leaves in the tree.
        num_leaves: usize,
    },
    /// A node index is outside the tree.
    #[error("node {index} is out of range: the tree has {num_nodes} nodes")]
    NodeOutOfRange {
        /// The offending node index.
        index: NodeIndex,
        /// Number of nodes in the tree (including padding nodes).
        num_nodes: usize,
    },
    /// A leaf range was empty or reversed, or ends past the last leaf.
    #[error("leaf range {start}..{end} is empty or outside a tree of {num_leaves} leaves")]
    BadRange {
        /// Start of the requested range.
        start: usize,
        /// End (exclusive) of the requested range.
        end: usize,
        /// Number of leaves in the tree.
        num_leaves: usize,
    },
    /// The tree would be larger than this implementation supports (2^40 leaves).
    #[error("a tree of {num_leaves} leaves is too large")]
    TooLarge {
        /// Requested number of leaves.
        num_leaves: u64,
    },
    /// A supplied hash (leaf or node), together with the other supplied hashes it was combined
    /// with, does not reproduce an already-verified node.
    #[error("hash supplied for node {index} does not match verified node {verified}")]
    Mismatch {
        /// The node whose supplied hash started the failing computation.
        index: NodeIndex,
        /// The verified node that the computation disagreed with.
        verified: NodeIndex,
    },
    /// A hash was supplied for a node that already has a different (supplied or verified) hash.
    #[error("conflicting hash supplied for node {index}")]
    Conflict {
        /// The node with two different hashes.
        index: NodeIndex,
    },
}
