//! Segments encoded apart (any order, as on several threads) and absorbed in order give exactly
//! the shares of the streaming encoder.

// Tests panic on failure on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lafs_caps::ReadKey;
use lafs_codec::{Encoded, Encoder, Error, Params, ShareWrite};
use proptest::prelude::*;

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn drain(enc: &mut Encoder, out: &mut Vec<ShareWrite>) {
    while let Some(w) = enc.poll_write() {
        out.push(w);
    }
}

/// The streaming path: push in chunks of `chunk` bytes.
fn streamed(
    params: Params,
    key: &ReadKey,
    input: &[u8],
    chunk: usize,
) -> (Vec<ShareWrite>, Encoded) {
    let mut enc = Encoder::new(params, key.clone()).unwrap();
    let mut out = Vec::new();
    for c in input.chunks(chunk.max(1)) {
        enc.push(c).unwrap();
        drain(&mut enc, &mut out);
    }
    let done = enc.finish().unwrap();
    drain(&mut enc, &mut out);
    (out, done)
}

/// The detached path: every segment encoded in the order `order` (a permutation), then
/// absorbed in index order.
fn detached(
    params: Params,
    key: &ReadKey,
    input: &[u8],
    order: &[usize],
) -> (Vec<ShareWrite>, Encoded) {
    let mut enc = Encoder::new(params, key.clone()).unwrap();
    let seg = params.segment_size() as usize;
    let segments: Vec<&[u8]> = input.chunks(seg).collect();
    let se = enc.segment_encoder();
    let mut encoded: Vec<Option<_>> = vec![None; segments.len()];
    for &i in order {
        encoded[i] = Some(se.encode(i as u64, segments[i]).unwrap());
    }
    let mut out = Vec::new();
    for e in encoded {
        enc.absorb(e.unwrap()).unwrap();
        drain(&mut enc, &mut out);
    }
    let done = enc.finish().unwrap();
    drain(&mut enc, &mut out);
    (out, done)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn detached_segments_give_identical_shares(
        len in 1usize..6000,
        seg in 1u32..1500,
        k in 1u16..5,
        extra in 0u16..6,
        chunk in 1usize..3000,
        seed in any::<u8>(),
        shuffle in any::<u64>(),
    ) {
        let params = Params::new(k, k + extra, seg).unwrap();
        let key = ReadKey::from_bytes([seed; 16]);
        let input = data(len, seed);
        let count = len.div_ceil(seg as usize);
        // A deterministic permutation of the segment indexes.
        let mut order: Vec<usize> = (0..count).collect();
        let mut x = shuffle | 1;
        for i in (1..count).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let a = streamed(params, &key, &input, chunk);
        let b = detached(params, &key, &input, &order);
        prop_assert_eq!(a, b);
    }
}

#[test]
fn out_of_order_and_after_short_segments_are_refused() {
    let params = Params::new(3, 10, 1000).unwrap();
    let key = ReadKey::from_bytes([9; 16]);
    let mut enc = Encoder::new(params, key).unwrap();
    let se = enc.segment_encoder();
    let input = data(2500, 1);
    let s1 = se.encode(1, &input[1000..2000]).unwrap();
    assert_eq!(
        enc.absorb(s1.clone()),
        Err(Error::SegmentOutOfOrder {
            expected: 0,
            got: 1
        })
    );
    // A short segment 0 ends the file: nothing may follow it.
    let short = se.encode(0, &input[..10]).unwrap();
    enc.absorb(short).unwrap();
    assert!(matches!(enc.absorb(s1), Err(Error::InvalidState(_))));
    // Nor may pushed bytes.
    assert!(matches!(
        enc.push(&input[..1000]),
        Err(Error::InvalidState(_))
    ));
    // Empty and oversized segments are refused when encoding.
    assert!(se.encode(0, &[]).is_err());
    assert!(se.encode(0, &data(1001, 0)).is_err());
    // Pushed bytes waiting for a full segment cannot be mixed with absorbed segments.
    let mut enc3 = Encoder::new(params, ReadKey::from_bytes([9; 16])).unwrap();
    enc3.push(&input[..5]).unwrap();
    assert!(matches!(
        enc3.absorb(se.encode(0, &input[..1000]).unwrap()),
        Err(Error::InvalidState(_))
    ));
}

#[test]
fn ciphertext_encoder_detaches_too() {
    let params = Params::new(2, 4, 512).unwrap();
    let sel = lafs_caps::selection_index_for(&ReadKey::from_bytes([3; 16]));
    let input = data(3000, 7);
    let mut a = Encoder::for_ciphertext(params, sel).unwrap();
    a.push(&input).unwrap();
    let mut wa = Vec::new();
    drain(&mut a, &mut wa);
    let da = a.finish().unwrap();
    drain(&mut a, &mut wa);
    let mut b = Encoder::for_ciphertext(params, sel).unwrap();
    let se = b.segment_encoder();
    let mut wb = Vec::new();
    // Encoded last segment first, absorbed in order.
    let mut segs: Vec<_> = input
        .chunks(512)
        .enumerate()
        .rev()
        .map(|(i, s)| se.encode(i as u64, s).unwrap())
        .collect();
    segs.reverse();
    for s in segs {
        b.absorb(s).unwrap();
        drain(&mut b, &mut wb);
    }
    let db = b.finish().unwrap();
    drain(&mut b, &mut wb);
    assert_eq!((wa, da), (wb, db));
}
