//! `ShareVerifier::with_prehashed` (block hashes computed as the writes arrived) accepts
//! exactly the shares the plain verifier accepts, whatever the order of the writes, rewrites
//! and corruption, and reads back only what was not hashed.

// Tests panic on failure on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lafs_caps::ReadKey;
use lafs_codec::{encode_to_shares, verify_share, IncomingShareHasher, Params, ShareVerifier};
use proptest::prelude::*;

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
        .collect()
}

/// Verifies `stored` with the hashes of `pre`; returns the result and the bytes read.
fn verify_prehashed(
    share: u16,
    stored: &[u8],
    pre: IncomingShareHasher,
) -> (Result<lafs_caps::StorageIndex, String>, u64) {
    let mut v = ShareVerifier::with_prehashed(share, stored.len() as u64, pre);
    let mut read = 0;
    while let Some(r) = v.next_read() {
        read += r.end - r.start;
        if let Err(e) = v.feed(r.start, &stored[r.start as usize..r.end as usize]) {
            return (Err(e.to_string()), read);
        }
    }
    match v.result() {
        Some(Ok(ok)) => (Ok(ok.storage_index), read),
        Some(Err(e)) => (Err(e.to_string()), read),
        None => (Err("stopped".into()), read),
    }
}

#[test]
fn in_order_writes_leave_only_the_tail_to_read() {
    let params = Params::new(3, 10, 4096).unwrap();
    let (shares, enc) =
        encode_to_shares(params, ReadKey::from_bytes([1; 16]), &data(100_000, 1)).unwrap();
    for (i, share) in shares.iter().enumerate() {
        let mut pre = IncomingShareHasher::new();
        for (j, c) in share.chunks(1000).enumerate() {
            pre.write((j * 1000) as u64, c);
        }
        assert_eq!(pre.absorbed(), share.len() as u64);
        let (r, read) = verify_prehashed(i as u16, share, pre);
        assert_eq!(r, Ok(enc.storage_index));
        // 25 segments: the last (short) block, two trees of 64 nodes, the trailer.
        assert!(read < 6000, "read {read} of {}", share.len());
    }
    // A file whose last segment is full: every block is hashed on arrival.
    let (shares, enc) =
        encode_to_shares(params, ReadKey::from_bytes([2; 16]), &data(4096 * 3, 2)).unwrap();
    let mut pre = IncomingShareHasher::new();
    pre.write(0, &shares[0]);
    // Three full blocks of 1366 bytes (the 626 bytes of trees and trailer after them are
    // shorter than a block).
    assert_eq!(pre.blocks_hashed(), 3);
    let (r, _) = verify_prehashed(0, &shares[0], pre);
    assert_eq!(r, Ok(enc.storage_index));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prehashed_agrees_with_the_plain_verifier(
        len in 1usize..20_000,
        seg in prop::sample::select(vec![7u32, 100, 1000, 4096]),
        share in 0u16..5,
        chunk in 1usize..3000,
        rotate in 0usize..64,
        rewrite in prop::option::of((0usize..64, any::<bool>())),
        flip in prop::option::of((any::<prop::sample::Index>(), 1u8..=255)),
    ) {
        let params = Params::new(2, 5, seg).unwrap();
        let (shares, _) = encode_to_shares(params, ReadKey::from_bytes([3; 16]), &data(len, 3)).unwrap();
        let good = &shares[usize::from(share)];
        let pieces: Vec<(usize, &[u8])> = good.chunks(chunk).enumerate().map(|(i, c)| (i * chunk, c)).collect();
        let n = pieces.len();
        let mut stored = vec![0u8; good.len()];
        let mut pre = IncomingShareHasher::new();
        // The writes in a rotated order (in order when rotate % n == 0), one of them possibly
        // corrupt in flight.
        let corrupt_piece = flip.map(|(ix, _)| ix.index(n));
        for k in 0..n {
            let (off, bytes) = pieces[(k + rotate) % n];
            let mut b = bytes.to_vec();
            if let (Some(c), Some((_, x))) = (corrupt_piece, flip) {
                if c == (k + rotate) % n {
                    let mid = b.len() / 2;
                    b[mid] ^= x;
                }
            }
            stored[off..off + b.len()].copy_from_slice(&b);
            pre.write(off as u64, &b);
        }
        // Optionally one piece written again, correctly or not.
        if let Some((which, correct)) = rewrite {
            let (off, bytes) = pieces[which % n];
            let mut b = bytes.to_vec();
            if !correct {
                b[0] ^= 1;
            }
            stored[off..off + b.len()].copy_from_slice(&b);
            pre.write(off as u64, &b);
        }
        let plain = verify_share(share, &stored, None).map(|v| v.storage_index).map_err(|e| e.to_string());
        let (fast, _) = verify_prehashed(share, &stored, pre);
        prop_assert_eq!(fast.is_ok(), plain.is_ok());
        prop_assert_eq!(fast.is_ok(), &stored == good);
        if let (Ok(a), Ok(b)) = (&fast, &plain) {
            prop_assert_eq!(a, b);
        }
    }
}
