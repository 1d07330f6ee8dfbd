//! Property tests: parsers and the validity check never panic on hostile bytes; random updates
//! agree with a plain `Vec<u8>` model and every resulting share stays valid.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use std::collections::BTreeMap;

use lafs_caps::{MutableWriteCap, SigningSeed, StorageIndex};
use lafs_codec::Params;
use lafs_mutable::*;
use proptest::prelude::*;

struct TestEntropy(u64);

impl Entropy for TestEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        for b in buf {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (self.0 >> 56) as u8;
        }
        Ok(())
    }
}

fn sample() -> (StorageIndex, Encoded) {
    let w = MutableWriteCap::new(SigningSeed::from_bytes([1; 32]));
    let keys = WriteKeys::for_file(&w);
    let params = Params::new(2, 3, 32).unwrap();
    let e = encode_version(&keys, params, 3, &[5u8; 100], &mut TestEntropy(1)).unwrap();
    (w.storage_index(), e)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn header_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(h) = SignedHeader::parse(0, &bytes) {
            let _ = h.verify_signature();
            prop_assert_eq!(&h.to_bytes()[..], &bytes[..HEADER_LEN as usize]);
        }
    }

    #[test]
    fn validity_check_never_panics_on_whole_shares(
        bytes in proptest::collection::vec(any::<u8>(), 0..800),
        keep_header in any::<bool>(),
    ) {
        let (si, e) = sample();
        let mut data = bytes;
        if keep_header && data.len() >= HEADER_LEN as usize {
            data[..HEADER_LEN as usize].copy_from_slice(&e.shares[0][..HEADER_LEN as usize]);
        }
        let w = ShareWrite::Whole { share: 0, data };
        prop_assert!(check_write(&si, Some(&e.shares[0]), &w).is_err());
        let _ = verify_share(&si, 0, &e.shares[0]);
    }

    #[test]
    fn validity_check_never_panics_on_patches(
        patches in proptest::collection::vec((0u64..1200, proptest::collection::vec(any::<u8>(), 0..64)), 0..6),
        new_len in 0u64..1500,
        share in 0u16..4,
    ) {
        let (si, e) = sample();
        let patches = patches.into_iter().map(|(offset, data)| Patch { offset, data }).collect();
        let w = ShareWrite::Patch { share, new_len, patches };
        let stored = e.shares.get(usize::from(share)).map(Vec::as_slice);
        // Only a write that leaves the stored share as it is (a retry) passes.
        if let Ok(v) = check_write(&si, stored, &w) {
            prop_assert_eq!(v, Verdict::AlreadyStored { seqnum: 3 });
            let mut after = stored.unwrap().to_vec();
            w.apply(&mut after).unwrap();
            prop_assert_eq!(Some(after.as_slice()), stored);
        }
        // Arbitrary stored bytes too.
        prop_assert!(check_write(&si, Some(&[7u8; 200]), &w).is_err());
    }

    #[test]
    fn reader_never_panics_on_garbage(
        pieces in proptest::collection::vec((0u64..600, proptest::collection::vec(any::<u8>(), 0..400)), 0..6),
    ) {
        let (_, e) = sample();
        let w = MutableWriteCap::new(SigningSeed::from_bytes([1; 32]));
        let keys = WriteKeys::for_file(&w);
        let r = VersionReader::new(e.info, w.public_key(), keys.content_key().clone()).unwrap();
        let mut f = FetchedShare::default();
        for (o, d) in pieces {
            f.add(o, d);
        }
        let fetched = BTreeMap::from([(0u16, f.clone()), (1u16, f)]);
        prop_assert!(r.read(0..100, &fetched).is_err());
    }

    /// Random writes (overwrite, extend, gap) agree with a Vec model; each patch is accepted
    /// by the validity check and every share stays valid.
    #[test]
    fn updates_match_a_model(
        ops in proptest::collection::vec((0u64..400, proptest::collection::vec(any::<u8>(), 0..90)), 1..6),
        seg in 8u32..64,
        init in 0usize..200,
    ) {
        let w = MutableWriteCap::new(SigningSeed::from_bytes([2; 32]));
        let si = w.storage_index();
        let keys = WriteKeys::for_file(&w);
        let params = Params::new(2, 3, seg).unwrap();
        let mut model: Vec<u8> = (0..init).map(|i| i as u8).collect();
        let mut rng = TestEntropy(seg as u64);
        let e = encode_version(&keys, params, 1, &model, &mut rng).unwrap();
        let mut shares = e.shares.clone();
        let mut state = e.state;
        for (offset, data) in ops {
            let plan = plan_update(&state.info, offset, data.len() as u64).unwrap();
            let old: BTreeMap<u64, Vec<u8>> = plan.need_old.iter().map(|&j| {
                let s = (j * seg as u64) as usize;
                (j, model[s..(s + seg as usize).min(model.len())].to_vec())
            }).collect();
            let up = update(&keys, &state, offset, &data, &old, &mut rng).unwrap();
            for wr in &up.writes {
                let s = &mut shares[usize::from(wr.share())];
                let v = check_write(&si, Some(s), wr).unwrap();
                let accepted = matches!(v, Verdict::Accept { .. });
                prop_assert!(accepted);
                wr.apply(s).unwrap();
            }
            let end = offset as usize + data.len();
            if model.len() < end {
                model.resize(end, 0);
            }
            model[offset as usize..end].copy_from_slice(&data);
            state = up.state;
        }
        for (i, s) in shares.iter().enumerate() {
            verify_share(&si, i as u16, s).unwrap();
        }
        let r = VersionReader::new(state.info, w.public_key(), keys.content_key().clone()).unwrap();
        let fetched: BTreeMap<u16, FetchedShare> =
            shares.iter().enumerate().map(|(i, s)| (i as u16, FetchedShare::whole(s.clone()))).collect();
        prop_assert_eq!(r.read(0..model.len() as u64, &fetched).unwrap().plaintext, model);
    }
}
