//! Decoder behaviour: round trips, random access, lost and corrupt shares, request counts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a test failure.

mod common;

use common::{download, plaintext};
use lafs_caps::ReadKey;
use lafs_codec::{encode_to_shares, encrypt_at, Decoder, Error, Params, ShareLayout, SharePart};
use lafs_hashtree::NodeIndex;

fn setup(
    k: u16,
    n: u16,
    seg: u32,
    len: usize,
) -> (Vec<u8>, Vec<Option<Vec<u8>>>, lafs_codec::Encoded) {
    let data = plaintext(len);
    let p = Params::new(k, n, seg).unwrap();
    let (shares, enc) = encode_to_shares(p, ReadKey::from_bytes([9; 16]), &data).unwrap();
    (data, shares.into_iter().map(Some).collect(), enc)
}

#[test]
fn round_trips_for_many_shapes() {
    for (k, n, seg, len) in [
        (3, 10, 4096, 0),
        (3, 10, 4096, 1),
        (3, 10, 4096, 4095),
        (3, 10, 4096, 4096),
        (3, 10, 4096, 4097),
        (1, 1, 100, 1000),
        (4, 4, 10, 95),
        (71, 255, 1000, 2500),
        (2, 256, 64, 300),
        (5, 7, 1, 20),
    ] {
        let (data, shares, enc) = setup(k, n, seg, len);
        let mut dec = Decoder::new(enc.read_cap.as_ref().unwrap());
        let got = download(&mut dec, &shares, 0..u64::MAX, 4096).unwrap();
        assert_eq!(got.data, data, "k={k} n={n} seg={seg} len={len}");
        assert!(got.reports.is_empty());
    }
}

#[test]
fn decodes_from_parity_only() {
    let (data, mut shares, enc) = setup(3, 10, 1000, 10_000);
    for s in &mut shares[..7] {
        *s = None;
    }
    let mut dec = Decoder::new(enc.read_cap.as_ref().unwrap());
    assert_eq!(
        download(&mut dec, &shares, 0..10_000, 4096).unwrap().data,
        data
    );
}

#[test]
fn random_access_and_clamping() {
    let (data, shares, enc) = setup(3, 10, 1000, 10_000);
    let mut dec = Decoder::new(enc.read_cap.as_ref().unwrap());
    for (a, b) in [
        (0, 1),
        (999, 1001),
        (5_500, 5_501),
        (9_999, 20_000),
        (3_000, 3_000),
        (12_000, 13_000),
    ] {
        let got = download(&mut dec, &shares, a..b, 4096).unwrap();
        let want = &data[(a as usize).min(10_000)..(b as usize).min(10_000)];
        assert_eq!(got.data, want, "{a}..{b}");
    }
    assert_eq!(
        dec.read(core::ops::Range { start: 5, end: 4 }),
        Err(Error::BadRange { start: 5, end: 4 })
    );
}

#[test]
fn two_round_trips_for_any_segment_and_one_for_small_files() {
    // Big file, tiny suffix: trailer read + one round trip per segment.
    let (data, shares, enc) = setup(3, 10, 1000, 100_000);
    let mut dec = Decoder::new(enc.read_cap.as_ref().unwrap());
    let got = download(&mut dec, &shares, 73_500..73_600, 400).unwrap();
    assert_eq!(got.data, &data[73_500..73_600]);
    assert_eq!(got.round_trips, 1);
    // Small file: the suffix read holds whole shares, no further request.
    let (data, shares, enc) = setup(3, 10, 4096, 10_000);
    let mut dec = Decoder::new(enc.read_cap.as_ref().unwrap());
    let got = download(&mut dec, &shares, 0..10_000, 65_536).unwrap();
    assert_eq!(got.data, data);
    assert_eq!(got.round_trips, 0);
}

#[test]
fn verify_cap_yields_ciphertext() {
    let (data, shares, enc) = setup(3, 10, 1000, 5_000);
    let mut dec = Decoder::for_verify_cap(&enc.verify_cap);
    let got = download(&mut dec, &shares, 100..4_000, 4096).unwrap();
    let mut ct = data[100..4_000].to_vec();
    encrypt_at(&ReadKey::from_bytes([9; 16]), 100, &mut ct).unwrap();
    assert_eq!(got.data, ct);
}

#[test]
fn corrupt_block_is_named_and_avoided() {
    let (data, mut shares, enc) = setup(3, 10, 1000, 5_000);
    let p = Params::new(3, 10, 1000).unwrap();
    let l = ShareLayout::new(p, 5_000, 1).unwrap();
    shares[1].as_mut().unwrap()[l.block_range(2).unwrap().start as usize + 5] ^= 1;
    let mut dec = Decoder::new(enc.read_cap.as_ref().unwrap());
    let got = download(&mut dec, &shares, 0..5_000, 300).unwrap();
    assert_eq!(got.data, data);
    assert_eq!(
        got.reports,
        vec![Error::CorruptShare {
            share: 1,
            part: SharePart::Block { segment: 2 }
        }]
    );
    assert_eq!(dec.bad_shares().collect::<Vec<_>>(), vec![1]);
}

#[test]
fn corrupt_ciphertext_tree_node_is_named() {
    let (data, mut shares, enc) = setup(3, 10, 1000, 5_000);
    let p = Params::new(3, 10, 1000).unwrap();
    let l = ShareLayout::new(p, 5_000, 0).unwrap();
    // Segment 0's proof in an 8-wide tree uses node 8 (its sibling leaf).
    let at = l.ciphertext_tree_node_range(NodeIndex(8)).unwrap().start as usize;
    shares[0].as_mut().unwrap()[at] ^= 1;
    let mut dec = Decoder::new(enc.read_cap.as_ref().unwrap());
    let got = download(&mut dec, &shares, 0..5_000, 300).unwrap();
    assert_eq!(got.data, data);
    assert_eq!(
        got.reports,
        vec![Error::CorruptShare {
            share: 0,
            part: SharePart::CiphertextTreeNode { node: 8 }
        }]
    );
}

#[test]
fn bad_trailers_and_too_few_shares() {
    let (_, mut shares, enc) = setup(3, 10, 1000, 5_000);
    let mut dec = Decoder::new(enc.read_cap.as_ref().unwrap());
    assert_eq!(dec.read(0..1), Err(Error::NoUeb));
    // A share of another file is refused.
    let (_, other, _) = setup(3, 10, 1000, 5_001);
    let o = other[0].as_ref().unwrap();
    assert_eq!(
        dec.add_trailer(0, o.len() as u64, o),
        Err(Error::CorruptShare {
            share: 0,
            part: SharePart::Ueb
        })
    );
    let s = shares[4].as_ref().unwrap().clone();
    assert!(dec.add_trailer(4, s.len() as u64 + 1, &s).is_err());
    assert!(matches!(
        dec.add_trailer(4, s.len() as u64, &s[s.len() - 50..]),
        Err(Error::SuffixTooShort { .. })
    ));
    for s in &mut shares[2..] {
        *s = None;
    }
    let mut dec = Decoder::new(enc.read_cap.as_ref().unwrap());
    assert_eq!(
        download(&mut dec, &shares, 0..10, 4096).err(),
        Some(Error::NotEnoughShares { need: 3, usable: 2 })
    );
}

#[test]
fn unavailable_share_is_replaced() {
    let (data, shares, enc) = setup(3, 10, 1000, 5_000);
    let mut dec = Decoder::new(enc.read_cap.as_ref().unwrap());
    for (i, s) in shares.iter().enumerate() {
        let s = s.as_ref().unwrap();
        dec.add_trailer(i as u16, s.len() as u64, &s[s.len() - 300..])
            .unwrap();
    }
    // Trailers were fine, but share 0's server is now gone.
    let mut gone = shares.clone();
    gone[0] = None;
    let got = download(&mut dec, &gone, 0..5_000, 300).unwrap();
    assert_eq!(got.data, data);
}

#[test]
fn corrupt_ciphertext_proof_with_k_1_is_resolved_by_a_probe() {
    // With k = 1 only one share supplies the ciphertext-tree proof; when it fails, the decoder
    // asks another share before deciding between "corrupt proof" and "bad encoding".
    let (data, mut shares, enc) = setup(1, 3, 1000, 5_000);
    let p = Params::new(1, 3, 1000).unwrap();
    let l = ShareLayout::new(p, 5_000, 0).unwrap();
    let at = l.ciphertext_tree_node_range(NodeIndex(8)).unwrap().start as usize;
    shares[0].as_mut().unwrap()[at] ^= 1;
    let mut dec = Decoder::new(enc.read_cap.as_ref().unwrap());
    let got = download(&mut dec, &shares, 0..5_000, 300).unwrap();
    assert_eq!(got.data, data);
    assert_eq!(
        got.reports,
        vec![Error::CorruptShare {
            share: 0,
            part: SharePart::CiphertextTreeNode { node: 8 }
        }]
    );
}
