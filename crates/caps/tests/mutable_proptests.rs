//! Property tests for the mutable and directory cap kinds: round trips and no panic on hostile
//! bytes or text behind their kind bytes and prefixes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use lafs_caps::{
    Cap, CapKind, DirWriteCap, Error, ImmutableDirReadCap, MutableWriteCap, ReadKey, SigningSeed,
    StorageIndex,
};
use proptest::prelude::*;

fn any_new_cap() -> impl Strategy<Value = Cap> {
    (any::<[u8; 32]>(), any::<[u8; 16]>(), 0usize..10).prop_map(|(seed, key, which)| {
        let w = MutableWriteCap::new(SigningSeed::from_bytes(seed));
        let d = DirWriteCap::new(SigningSeed::from_bytes(seed));
        let i = ImmutableDirReadCap::new(ReadKey::from_bytes(key), StorageIndex(seed));
        match which {
            0 => w.into(),
            1 => w.read_cap().into(),
            2 => w.verify_cap().into(),
            3 => d.into(),
            4 => d.read_cap().into(),
            5 => d.traverse_cap().into(),
            6 => d.verify_cap().into(),
            7 => i.into(),
            8 => i.traverse_cap().into(),
            _ => i.verify_cap().into(),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn round_trips(cap in any_new_cap()) {
        prop_assert_eq!(cap.to_string().parse::<Cap>().unwrap(), cap.clone());
        prop_assert_eq!(Cap::from_bytes(&cap.to_bytes()).unwrap(), cap.clone());
        prop_assert_eq!(cap.to_bytes().len(), cap.binary_len());
    }

    #[test]
    fn new_kind_bytes_never_panic(
        kind in proptest::sample::select(vec![0x11u8, 0x12, 0x13, 0x21, 0x22, 0x23, 0x24, 0x29, 0x2a, 0x2b]),
        rest in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let mut bytes = vec![kind];
        bytes.extend(rest);
        match Cap::read_from(&bytes) {
            Ok((cap, used)) => prop_assert_eq!(cap.to_bytes(), &bytes[..used]),
            Err(e) => prop_assert!(
                matches!(e, Error::BinaryTruncated { .. } | Error::InvalidPublicKey),
                "unexpected error {:?}", e
            ),
        }
    }

    #[test]
    fn single_substitution_is_detected(cap in any_new_cap(), pos in any::<prop::sample::Index>(), c in proptest::sample::select(b"qpzry9x8gf2tvdw0s3jn54khce6mua7l".to_vec())) {
        let text = cap.to_string();
        let sep = text.rfind('1').unwrap();
        let i = sep + 1 + pos.index(text.len() - sep - 1);
        let mut b = text.into_bytes();
        prop_assume!(b[i] != c);
        b[i] = c;
        let s = String::from_utf8(b).unwrap();
        prop_assert!(s.parse::<Cap>().is_err());
    }
}

#[test]
fn kinds_are_listed() {
    for k in CapKind::ALL {
        assert_eq!(CapKind::from_kind_byte(k.kind_byte()), Some(k));
        assert_eq!(CapKind::from_hrp(k.hrp()), Some(k));
    }
}
