//! The decoder's retained state does not grow with the number of segments read: after each
//! segment only the verified path of that segment (and its siblings) is kept per tree.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a test failure.

mod common;

use common::{download, plaintext};
use lafs_caps::ReadKey;
use lafs_codec::{encode_to_shares, Decoder, Error, Params, ShareLayout, SharePart};

const K: u16 = 3;
const N: u16 = 5;
const SEG: u32 = 48;
const SEGMENTS: usize = 3000;

/// Hashes one tree may keep: root plus, per level under it, the path node and its sibling.
fn per_tree_bound(segments: usize) -> usize {
    let height = usize::BITS - (segments - 1).leading_zeros(); // ceil(log2(segments))
    2 * height as usize + 1
}

fn setup() -> (Vec<u8>, Vec<Option<Vec<u8>>>, lafs_codec::Encoded) {
    let data = plaintext(SEG as usize * SEGMENTS - 5);
    let p = Params::new(K, N, SEG).unwrap();
    let (shares, enc) = encode_to_shares(p, ReadKey::from_bytes([3; 16]), &data).unwrap();
    (data, shares.into_iter().map(Some).collect(), enc)
}

#[test]
fn tree_state_stays_logarithmic_over_a_long_sequential_read() {
    let (data, shares, enc) = setup();
    let bound = (usize::from(N) + 1) * per_tree_bound(SEGMENTS);
    let mut dec = Decoder::new(enc.read_cap.as_ref().unwrap());
    let seg = u64::from(SEG);
    let mut got = Vec::new();
    let mut most = 0;
    for j in 0..SEGMENTS as u64 {
        let r = download(&mut dec, &shares, j * seg..(j + 1) * seg, 256).unwrap();
        assert!(r.reports.is_empty());
        got.extend_from_slice(&r.data);
        most = most.max(dec.held_tree_nodes());
        assert!(
            dec.held_tree_nodes() <= bound,
            "segment {j}: {} tree nodes held (bound {bound})",
            dec.held_tree_nodes()
        );
    }
    assert_eq!(got, data);
    // k block trees and the ciphertext tree hold a path each; had every verified node been
    // kept this would be several per segment (tens of thousands here).
    assert!(most > usize::from(K), "{most}");

    // One read over the whole file (one segment at a time inside the decoder) is bounded too.
    let mut whole = Decoder::new(enc.read_cap.as_ref().unwrap());
    let r = download(&mut whole, &shares, 0..u64::MAX, 256).unwrap();
    assert_eq!(r.data, data);
    assert!(whole.held_tree_nodes() <= bound);
    // Sequential reading needs one round trip per segment: no refetch of forgotten nodes.
    assert_eq!(r.round_trips, SEGMENTS);

    // Random access after forgetting: proofs are asked for again and still checked.
    for (a, b) in [(5, 6), (2_999, 3_000), (1_234, 1_236), (0, 1)] {
        let r = download(&mut whole, &shares, a * seg..b * seg, 256).unwrap();
        let want = &data[(a * seg) as usize..((b * seg) as usize).min(data.len())];
        assert_eq!(r.data, want, "segments {a}..{b}");
        assert!(whole.held_tree_nodes() <= bound);
    }
}

#[test]
fn late_corrupt_block_is_still_caught_after_forgetting() {
    let (data, mut shares, enc) = setup();
    let ueb_params = Params::new(K, N, SEG).unwrap();
    let layout = ShareLayout::new(ueb_params, data.len() as u64, 0).unwrap();
    let target = 2_500u64;
    let block = layout.block_range(target).unwrap();
    shares[0].as_mut().unwrap()[block.start as usize] ^= 1;
    let mut dec = Decoder::new(enc.read_cap.as_ref().unwrap());
    let r = download(&mut dec, &shares, 0..u64::MAX, 256).unwrap();
    assert_eq!(r.data, data);
    assert_eq!(
        r.reports,
        vec![Error::CorruptShare {
            share: 0,
            part: SharePart::Block { segment: target }
        }]
    );
}
