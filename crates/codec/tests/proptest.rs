//! Property tests: any k shares decode any range; any corruption is detected and never yields
//! wrong bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a test failure.

mod common;

use common::{download, plaintext};
use lafs_caps::ReadKey;
use lafs_codec::{encode_to_shares, verify_share, Decoder, Error, Params};
use proptest::prelude::*;

/// (k, N, segment size, file size)
fn shape() -> impl Strategy<Value = (u16, u16, u32, usize)> {
    (
        1u16..=8,
        0u16..=6,
        prop_oneof![1u32..=64, 64u32..=8192],
        0usize..=100_000,
    )
        .prop_map(|(k, extra, seg, len)| {
            // Keep the segment count (and so the test time) bounded.
            let len = len.min(seg as usize * 400);
            (k, k + extra, seg, len)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn any_k_shares_decode_any_range(
        (k, n, seg, len) in shape(),
        drop_seed in any::<u64>(),
        a in any::<u64>(),
        b in any::<u64>(),
        suffix in prop_oneof![Just(370usize), Just(4096), Just(1 << 20)],
    ) {
        let data = plaintext(len);
        let params = Params::new(k, n, seg).unwrap();
        let (shares, enc) = encode_to_shares(params, ReadKey::from_bytes([4; 16]), &data).unwrap();
        // Drop N-k shares chosen by the seed.
        let mut keep: Vec<Option<Vec<u8>>> = shares.into_iter().map(Some).collect();
        let mut order: Vec<usize> = (0..usize::from(n)).collect();
        let mut x = drop_seed | 1;
        for i in (1..order.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        for &i in &order[..usize::from(n - k)] {
            keep[i] = None;
        }
        let mut dec = Decoder::new(enc.read_cap.as_ref().unwrap());
        let whole = download(&mut dec, &keep, 0..len as u64, suffix).unwrap();
        prop_assert_eq!(&whole.data, &data);
        let (lo, hi) = if len == 0 { (0, 0) } else { let (a, b) = (a % len as u64, b % len as u64); (a.min(b), a.max(b) + 1) };
        let part = download(&mut dec, &keep, lo..hi, suffix).unwrap();
        prop_assert_eq!(&part.data[..], &data[lo as usize..hi as usize]);
    }

    #[test]
    fn verifier_detects_any_corruption(
        (k, n, seg, len) in shape(),
        share_seed in any::<u16>(),
        pos_seed in any::<u64>(),
        xor in 1u8..=255,
    ) {
        let len = len.min(20_000);
        let params = Params::new(k, n, seg).unwrap();
        let (shares, enc) = encode_to_shares(params, ReadKey::from_bytes([5; 16]), &plaintext(len)).unwrap();
        let share = share_seed % n;
        let mut bad = shares[usize::from(share)].clone();
        let pos = (pos_seed % bad.len() as u64) as usize;
        bad[pos] ^= xor;
        let err = verify_share(share, &bad, Some(enc.storage_index)).unwrap_err();
        prop_assert!(matches!(err, Error::CorruptShare { share: s, .. } if s == share), "{err:?}");
        // Truncated or extended shares fail too.
        let good = &shares[usize::from(share)];
        prop_assert!(verify_share(share, &good[..good.len() - 1], None).is_err());
        let mut longer = good.clone();
        longer.push(0);
        prop_assert!(verify_share(share, &longer, None).is_err());
    }

    #[test]
    fn decoder_never_returns_wrong_bytes(
        (k, n, seg, len) in shape(),
        victims in proptest::collection::vec((any::<u16>(), any::<u64>(), 1u8..=255), 1..4),
        suffix in prop_oneof![Just(370usize), Just(4096)],
    ) {
        let len = len.min(30_000);
        let data = plaintext(len);
        let params = Params::new(k, n, seg).unwrap();
        let (shares, enc) = encode_to_shares(params, ReadKey::from_bytes([6; 16]), &data).unwrap();
        let mut shares: Vec<Option<Vec<u8>>> = shares.into_iter().map(Some).collect();
        // Corrupt one byte in each of up to 3 distinct shares.
        let mut hit = std::collections::BTreeSet::new();
        for (s, p, x) in victims {
            let s = s % n;
            let sh = shares[usize::from(s)].as_mut().unwrap();
            let pos = (p % sh.len() as u64) as usize;
            sh[pos] ^= x;
            hit.insert(s);
        }
        let mut dec = Decoder::new(enc.read_cap.as_ref().unwrap());
        match download(&mut dec, &shares, 0..len as u64, suffix) {
            Ok(got) => {
                prop_assert_eq!(&got.data, &data);
                for r in &got.reports {
                    let Error::CorruptShare { share, .. } = r else { panic!("{r:?}") };
                    prop_assert!(hit.contains(share), "blamed an intact share: {:?}", r);
                }
            }
            // Only possible when the corrupted shares leave fewer than k good ones.
            Err(Error::NotEnoughShares { .. }) => prop_assert!(usize::from(n - k) < hit.len()),
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
    }
}
