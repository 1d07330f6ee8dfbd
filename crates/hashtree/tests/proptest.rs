//! Property tests: every proof verifies, in any order; any flipped bit is rejected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lafs_hashtree::{tagged_hash, Hash, HashTree, NodeIndex, PartialTree};
use proptest::prelude::*;

fn leaves(n: usize, seed: u64) -> Vec<Hash> {
    (0..n as u64)
        .map(|i| tagged_hash("prop/leaf", &[&seed.to_be_bytes(), &i.to_be_bytes()]))
        .collect()
}

/// A tree size, a non-empty leaf range inside it, and a permutation seed.
fn case() -> impl Strategy<Value = (usize, usize, usize, u64)> {
    (1usize..300).prop_flat_map(|n| {
        (Just(n), 0..n).prop_flat_map(move |(n, a)| (Just(n), Just(a), (a + 1)..=n, any::<u64>()))
    })
}

/// Items to feed: proof nodes and leaves, interleaved in a seed-determined order.
enum Item {
    Node(NodeIndex, Hash),
    Leaf(usize, Hash),
}

fn items(tree: &HashTree, l: &[Hash], a: usize, b: usize, seed: u64) -> Vec<Item> {
    let mut v: Vec<Item> = tree
        .proof(a..b)
        .unwrap()
        .into_iter()
        .map(|(i, h)| Item::Node(i, h))
        .collect();
    v.extend((a..b).map(|i| Item::Leaf(i, l[i])));
    // Deterministic Fisher-Yates with a tiny LCG.
    let mut s = seed | 1;
    for i in (1..v.len()).rev() {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        v.swap(i, (s >> 33) as usize % (i + 1));
    }
    v
}

fn feed(p: &mut PartialTree, items: &[Item]) -> Result<(), lafs_hashtree::Error> {
    for it in items {
        match it {
            Item::Node(i, h) => p.add_nodes(&[(*i, *h)])?,
            Item::Leaf(i, h) => p.add_leaf(*i, *h)?,
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_proof_verifies_in_any_order((n, a, b, seed) in case()) {
        let l = leaves(n, seed);
        let tree = HashTree::from_leaves(&l);
        let mut p = PartialTree::new(tree.root(), n).unwrap();
        prop_assert_eq!(p.missing_for(a..b).unwrap().len(), tree.proof(a..b).unwrap().len());
        feed(&mut p, &items(&tree, &l, a, b, seed)).unwrap();
        for (i, leaf) in l.iter().enumerate().take(b).skip(a) {
            prop_assert_eq!(p.verified_leaf(i), Some(*leaf));
        }
        prop_assert!(p.missing_for(a..b).unwrap().is_empty());
    }

    #[test]
    fn proofs_are_minimal((n, a, b, seed) in case()) {
        // Dropping any one proof node leaves some leaf of the range unverified.
        let l = leaves(n, seed);
        let tree = HashTree::from_leaves(&l);
        let proof = tree.proof(a..b).unwrap();
        for skip in 0..proof.len() {
            let mut p = PartialTree::new(tree.root(), n).unwrap();
            let partial: Vec<_> = proof.iter().enumerate().filter(|(i, _)| *i != skip).map(|(_, x)| *x).collect();
            p.add_nodes(&partial).unwrap();
            for (i, leaf) in l.iter().enumerate().take(b).skip(a) {
                p.add_leaf(i, *leaf).unwrap();
            }
            prop_assert!((a..b).any(|i| p.verified_leaf(i).is_none()));
        }
    }

    #[test]
    fn any_flipped_bit_is_rejected((n, a, b, seed) in case(), which in any::<prop::sample::Index>(), bit in 0usize..256) {
        let l = leaves(n, seed);
        let tree = HashTree::from_leaves(&l);
        let mut its = items(&tree, &l, a, b, seed);
        let k = which.index(its.len());
        match &mut its[k] {
            Item::Node(_, h) | Item::Leaf(_, h) => h.0[bit / 8] ^= 1 << (bit % 8),
        }
        let mut p = PartialTree::new(tree.root(), n).unwrap();
        prop_assert!(feed(&mut p, &its).is_err());
        // And no wrong leaf is ever reported as verified.
        for (i, leaf) in l.iter().enumerate().take(b).skip(a) {
            prop_assert!(p.verified_leaf(i).is_none_or(|h| h == *leaf));
        }
    }
}
