//! The ciphertext-tree leaf (`docs/spec/immutable.md` §3): computed from the ciphertext, from
//! the data blocks stored in shares `0..k`, and by the encoder, it is the same leaf; any change
//! of length, padding, block order or ciphertext byte changes it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a test failure.

mod common;

use lafs_caps::ReadKey;
use lafs_codec::{
    data_block_hashes, encode_to_shares, encrypt_at, segment_leaf, segment_leaf_of_ciphertext,
    Params, ShareLayout, BLOCK_TAG, SEGMENT_TAG,
};
use lafs_hashtree::{leaf_node_index, tagged_hash, Hash, HashTree};
use proptest::prelude::*;

const KEY: [u8; 16] = [9; 16];

/// Encodes `size` bytes and checks that the leaves computed from the ciphertext, and from the
/// data blocks of shares `0..k`, are the leaves the encoder stored and rebuild the UEB's root.
fn check_file(k: u16, n: u16, seg: u32, size: usize) {
    let params = Params::new(k, n, seg).unwrap();
    let key = ReadKey::from_bytes(KEY);
    let data = common::plaintext(size);
    let (shares, enc) = encode_to_shares(params, key.clone(), &data).unwrap();
    let mut ct = data;
    encrypt_at(&key, 0, &mut ct).unwrap();
    let leaves: Vec<Hash> = ct
        .chunks(seg as usize)
        .map(|s| segment_leaf_of_ciphertext(&params, s).unwrap())
        .collect();
    let ctx = format!("k={k} n={n} seg={seg} size={size}");
    assert_eq!(
        HashTree::from_leaves(&leaves).root(),
        enc.ueb.ciphertext_root,
        "{ctx}"
    );
    let layouts: Vec<ShareLayout> = (0..k)
        .map(|i| ShareLayout::new(params, size as u64, i).unwrap())
        .collect();
    for (j, want) in leaves.iter().enumerate() {
        // The leaf as stored in share 0's copy of the ciphertext tree (a one-leaf tree stores
        // none: its root is the leaf, checked above).
        if leaves.len() > 1 {
            let node = leaf_node_index(leaves.len(), j).unwrap();
            let r = layouts[0].ciphertext_tree_node_range(node).unwrap();
            let stored = Hash::from_slice(&shares[0][r.start as usize..r.end as usize]).unwrap();
            assert_eq!(stored, *want, "{ctx} segment {j}");
        }
        // From the data blocks as stored (padding included): the block-tree leaves.
        let hashes: Vec<Hash> = layouts
            .iter()
            .map(|l| {
                let r = l.block_range(j as u64).unwrap();
                let s = &shares[usize::from(l.share())];
                tagged_hash(BLOCK_TAG, &[&s[r.start as usize..r.end as usize]])
            })
            .collect();
        let seg_len = (size - j * seg as usize).min(seg as usize) as u64;
        assert_eq!(
            segment_leaf(&params, seg_len, &hashes).unwrap(),
            *want,
            "{ctx} segment {j}"
        );
        let start = j * seg as usize;
        assert_eq!(
            data_block_hashes(k, &ct[start..start + seg_len as usize]),
            hashes,
            "{ctx} segment {j}"
        );
    }
}

#[test]
fn leaf_from_ciphertext_equals_the_encoders() {
    for (k, n) in [(1u16, 1u16), (1, 3), (3, 10), (4, 4), (7, 12), (71, 255)] {
        let seg = 4096u32;
        let k_us = usize::from(k);
        let mut sizes = vec![1, k_us, k_us + 1, 4095, 4096, 4097, 3 * 4096 + 5];
        if k > 1 {
            sizes.push(k_us - 1);
        }
        for size in sizes {
            check_file(k, n, seg, size);
        }
    }
    // A segment size that k does not divide: full segments' last block is padded too.
    check_file(3, 10, 1000, 3 * 1000 + 1);
    check_file(7, 10, 100, 1000);
}

#[test]
fn the_leaf_is_byte_exact() {
    // tagged_hash(SEGMENT_TAG, be64(len) || H_0 || H_1 || H_2), written out.
    let params = Params::new(3, 10, 4096).unwrap();
    let ct: Vec<u8> = (0..10u8).collect();
    // b = 4: blocks 0..4, 4..8, 8..10 + two zero bytes.
    let h = |b: &[u8]| tagged_hash(BLOCK_TAG, &[b]);
    let blocks = [h(&[0, 1, 2, 3]), h(&[4, 5, 6, 7]), h(&[8, 9, 0, 0])];
    assert_eq!(data_block_hashes(3, &ct), blocks);
    let mut input = 10u64.to_be_bytes().to_vec();
    for b in &blocks {
        input.extend_from_slice(b.as_bytes());
    }
    let want = tagged_hash(SEGMENT_TAG, &[&input]);
    assert_eq!(segment_leaf_of_ciphertext(&params, &ct).unwrap(), want);
    assert_eq!(segment_leaf(&params, 10, &blocks).unwrap(), want);
    assert_eq!(SEGMENT_TAG, "lafs/v1/immutable/segment-blocks");
    // Fewer bytes than k: blocks of one byte, the last ones all padding.
    let p7 = Params::new(7, 10, 4096).unwrap();
    let hs = data_block_hashes(7, &[5, 6]);
    assert_eq!(hs[0], h(&[5]));
    assert_eq!(hs[1], h(&[6]));
    for x in &hs[2..] {
        assert_eq!(*x, h(&[0]));
    }
    assert_eq!(
        segment_leaf_of_ciphertext(&p7, &[5, 6]).unwrap(),
        segment_leaf(&p7, 2, &hs).unwrap()
    );
}

#[test]
fn length_and_padding_are_committed() {
    let params = Params::new(3, 10, 4096).unwrap();
    // 10 bytes and the same 10 bytes plus a zero byte cut into the same padded blocks
    // (b = 4 for both): only the length tells them apart, and it does.
    let ct: Vec<u8> = (1..=10u8).collect();
    let mut longer = ct.clone();
    longer.push(0);
    assert_eq!(data_block_hashes(3, &ct), data_block_hashes(3, &longer));
    assert_ne!(
        segment_leaf_of_ciphertext(&params, &ct).unwrap(),
        segment_leaf_of_ciphertext(&params, &longer).unwrap()
    );
    let blocks = data_block_hashes(3, &ct);
    let leaf = segment_leaf(&params, 10, &blocks).unwrap();
    for other in [9, 11, 12] {
        assert_ne!(
            segment_leaf(&params, other, &blocks).unwrap(),
            leaf,
            "{other}"
        );
    }
    // A non-zero byte in the padding of the last block changes its hash, so the leaf.
    let mut padded = blocks.clone();
    padded[2] = tagged_hash(BLOCK_TAG, &[&[9, 10, 0, 1]]);
    assert_ne!(segment_leaf(&params, 10, &padded).unwrap(), leaf);
    // Blocks in another order, or a changed ciphertext byte.
    let mut swapped = blocks.clone();
    swapped.swap(0, 1);
    assert_ne!(segment_leaf(&params, 10, &swapped).unwrap(), leaf);
    let mut flipped = ct.clone();
    flipped[9] ^= 1;
    assert_ne!(segment_leaf_of_ciphertext(&params, &flipped).unwrap(), leaf);
    // Misuse: not k hashes, an empty segment, more than the segment size.
    assert!(segment_leaf(&params, 10, &blocks[..2]).is_err());
    assert!(segment_leaf(&params, 0, &blocks).is_err());
    assert!(segment_leaf(&params, 4097, &blocks).is_err());
    assert!(segment_leaf_of_ciphertext(&params, &[]).is_err());
    assert!(segment_leaf_of_ciphertext(&params, &[0; 4097]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_shape_has_matching_leaves(
        k in 1u16..=12,
        extra in 0u16..6,
        seg in 1u32..700,
        size in 1usize..3000,
    ) {
        check_file(k, k + extra, seg, size);
    }
}
