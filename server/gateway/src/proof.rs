//! Ciphertext-tree proofs: what a client needs to verify ciphertext segments it fetched from
//! `GET /ciphertext/$VERIFYCAP` against the UEB (whose hash is the storage index in its cap).

use core::ops::Range;

use lafs_hashtree::{leaf_node_index, proof_indices, Hash, NodeIndex, PartialTree};
use serde::{Deserialize, Serialize};

use crate::grid::{GridError, ShareView};

/// Most segments one proof request may cover.
pub const MAX_PROOF_SEGMENTS: u64 = 4096;

/// One node of the ciphertext tree (heap numbering, root 0; see `docs/spec/hashtree.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofNode {
    /// Node index.
    pub node: u64,
    /// Node hash, lowercase hex.
    pub hash: String,
}

/// The answer of `GET /ciphertext/$VERIFYCAP?t=proof&segments=a-b`, verified by the gateway
/// before it is sent (and checkable by the client without trusting the gateway).
///
/// To verify segments `a..=b` of ciphertext: check that the UEB (`?t=ueb`) hashes to the
/// storage index, take its ciphertext root, start a `PartialTree` at that root over
/// `num_segments` leaves, add the `proof` nodes, then add
/// segment `j`'s leaf (`lafs_codec::segment_leaf_of_ciphertext`: the hash of its length and of
/// its k zero-padded data blocks, k from the UEB; `docs/spec/immutable.md` §3) as leaf `j` for
/// each segment: every leaf verifies or the data is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiphertextProof {
    /// The UEB's ciphertext-tree root, hex.
    pub ciphertext_root: String,
    /// Number of segments (leaves of the tree).
    pub num_segments: u64,
    /// Segment size of the file (the last segment may be shorter).
    pub segment_size: u32,
    /// First segment covered.
    pub first_segment: u64,
    /// Last segment covered (inclusive).
    pub last_segment: u64,
    /// The minimal proof of the leaves `first..=last` (`proof_indices`), increasing order.
    pub proof: Vec<ProofNode>,
    /// The leaf hashes of segments `first..=last`, in order (what the client's hashes of the
    /// ciphertext must equal).
    pub leaves: Vec<String>,
}

/// Merges sorted ranges that touch.
fn merge(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// Reads the proof and leaves of `segments` from the file's shares, one share at a time, and
/// returns the first set that verifies against the UEB's ciphertext root.
pub(crate) async fn ciphertext_proof(
    file: &dyn ShareView,
    segments: Range<u64>,
) -> Result<CiphertextProof, ProofError> {
    let ueb = file.ueb();
    let num = ueb.num_segments();
    if segments.start >= segments.end || segments.end > num {
        return Err(ProofError::BadRange { num_segments: num });
    }
    if segments.end - segments.start > MAX_PROOF_SEGMENTS {
        return Err(ProofError::TooMany);
    }
    let leaves_n = usize::try_from(num).map_err(|_| ProofError::BadRange { num_segments: num })?;
    let (Ok(a), Ok(b)) = (
        usize::try_from(segments.start),
        usize::try_from(segments.end),
    ) else {
        return Err(ProofError::BadRange { num_segments: num });
    };
    let proof_nodes =
        proof_indices(leaves_n, a..b).map_err(|_| ProofError::BadRange { num_segments: num })?;
    let leaf_nodes: Vec<NodeIndex> = (a..b)
        .map(|j| leaf_node_index(leaves_n, j))
        .collect::<Result<_, _>>()
        .map_err(|_| ProofError::BadRange { num_segments: num })?;
    let wanted: Vec<NodeIndex> = proof_nodes.iter().chain(&leaf_nodes).copied().collect();
    let mut last_err = GridError::NotEnoughShares {
        found: 0,
        needed: 1,
    };
    for share in file.shares() {
        match proof_from_share(file, share, &wanted).await {
            Ok(hashes) => {
                let mut tree = PartialTree::new(ueb.ciphertext_root, leaves_n)
                    .map_err(|_| ProofError::BadRange { num_segments: num })?;
                // A one-segment file's only leaf is the root: nothing to read or check.
                let pairs: Vec<(NodeIndex, Hash)> = wanted.iter().copied().zip(hashes).collect();
                if tree.add_nodes(&pairs).is_err()
                    || (a..b).any(|j| tree.verified_leaf(j).is_none())
                {
                    tracing::warn!(share, "ciphertext-tree nodes of share do not verify");
                    last_err = GridError::Unavailable(format!(
                        "share {share} holds a ciphertext tree that does not match the UEB"
                    ));
                    continue;
                }
                let lookup = |n: &NodeIndex| {
                    pairs
                        .iter()
                        .find(|(i, _)| i == n)
                        .map(|(_, h)| h.to_hex())
                        .unwrap_or_default()
                };
                return Ok(CiphertextProof {
                    ciphertext_root: ueb.ciphertext_root.to_hex(),
                    num_segments: num,
                    segment_size: ueb.params.segment_size(),
                    first_segment: segments.start,
                    last_segment: segments.end - 1,
                    proof: proof_nodes
                        .iter()
                        .map(|n| ProofNode {
                            node: n.0 as u64,
                            hash: lookup(n),
                        })
                        .collect(),
                    leaves: leaf_nodes.iter().map(lookup).collect(),
                });
            }
            Err(e) => {
                tracing::warn!(share, error = %e, "reading ciphertext-tree nodes failed");
                last_err = e;
            }
        }
    }
    Err(ProofError::Grid(last_err))
}

/// The hashes of `nodes` as stored in share `share` (the root is taken from the UEB).
async fn proof_from_share(
    file: &dyn ShareView,
    share: u16,
    nodes: &[NodeIndex],
) -> Result<Vec<Hash>, GridError> {
    let ueb = file.ueb();
    let layout = ueb.layout(share)?;
    let mut ranges = Vec::new();
    for n in nodes {
        if n.0 != 0 {
            let r = layout
                .ciphertext_tree_node_range(*n)
                .ok_or_else(|| GridError::Unavailable(format!("node {} outside the tree", n.0)))?;
            ranges.push(r);
        }
    }
    let merged = merge(ranges);
    // A proof may need no stored node at all (e.g. a one-segment file, whose only node is the
    // root from the UEB): then there is nothing to read, and a read of zero ranges is invalid.
    let bufs = if merged.is_empty() {
        Vec::new()
    } else {
        file.read_share(share, merged.clone()).await?
    };
    let mut out = Vec::with_capacity(nodes.len());
    for n in nodes {
        if n.0 == 0 {
            out.push(ueb.ciphertext_root);
            continue;
        }
        let r = layout
            .ciphertext_tree_node_range(*n)
            .ok_or_else(|| GridError::Unavailable(format!("node {} outside the tree", n.0)))?;
        let (buf, base) = merged
            .iter()
            .zip(&bufs)
            .find(|(m, _)| m.start <= r.start && r.end <= m.end)
            .map(|(m, b)| (b, m.start))
            .ok_or_else(|| GridError::Unavailable("short share read".into()))?;
        let off =
            usize::try_from(r.start - base).map_err(|_| GridError::Unavailable("offset".into()))?;
        let hash = buf
            .get(off..off + 32)
            .and_then(Hash::from_slice)
            .ok_or_else(|| GridError::Unavailable(format!("share {share} read was short")))?;
        out.push(hash);
    }
    Ok(out)
}

/// Why a proof could not be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProofError {
    /// The segment range is empty or past the end.
    #[error("segments out of range: the file has {num_segments} segment(s) (give segments=a-b with a <= b < {num_segments})")]
    BadRange { num_segments: u64 },
    /// Too many segments in one request.
    #[error("at most {MAX_PROOF_SEGMENTS} segments per proof request")]
    TooMany,
    /// No share gave a verifying proof.
    #[error("{0}")]
    Grid(GridError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging() {
        assert_eq!(merge(vec![10..20, 0..5, 5..8, 19..30]), vec![0..8, 10..30]);
        assert_eq!(merge(vec![]), Vec::<Range<u64>>::new());
    }
}
