//! Property tests: random operations agree with a `BTreeMap` model at every level; hostile
//! bytes never panic the parser.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use std::collections::BTreeMap;

use lafs_caps::{Cap, DirWriteCap, ImmutableReadCap, ReadKey, SigningSeed, StorageIndex};
use lafs_dirnode::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Add(u8, u8),
    Remove(u8),
    Rename(u8, u8),
    Replace(u8, u8),
    Roundtrip,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..12, any::<u8>()).prop_map(|(n, c)| Op::Add(n, c)),
        (0u8..12).prop_map(Op::Remove),
        (0u8..12, 0u8..12).prop_map(|(a, b)| Op::Rename(a, b)),
        (0u8..12, any::<u8>()).prop_map(|(n, c)| Op::Replace(n, c)),
        Just(Op::Roundtrip),
    ]
}

fn name(n: u8) -> String {
    ["a", "b", "Caf\u{e9}", "日本", "x y", "z"][usize::from(n % 6)].to_string() + &n.to_string()
}

fn child(c: u8) -> Cap {
    if c % 3 == 0 {
        DirWriteCap::new(SigningSeed::from_bytes([c; 32])).into()
    } else {
        ImmutableReadCap::new(ReadKey::from_bytes([c; 16]), StorageIndex([c; 32])).into()
    }
}

fn dir_cap() -> DirWriteCap {
    DirWriteCap::new(SigningSeed::from_bytes([42; 32]))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn operations_match_a_model(ops in proptest::collection::vec(op(), 1..25)) {
        let cap = dir_cap();
        let keys = DirKeys::from_cap(&cap.clone().into()).unwrap();
        let mut dir = Directory::new(keys.clone());
        let mut model: BTreeMap<String, Cap> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Add(n, c) => {
                    let r = dir.add(&name(n), &child(c), &[c]);
                    match model.entry(name(n)) {
                        std::collections::btree_map::Entry::Occupied(_) => {
                            prop_assert_eq!(r, Err(Error::AlreadyExists { name: name(n) }));
                        }
                        std::collections::btree_map::Entry::Vacant(v) => {
                            r.unwrap();
                            v.insert(child(c));
                        }
                    }
                }
                Op::Remove(n) => {
                    let r = dir.remove(&name(n));
                    prop_assert_eq!(r.is_ok(), model.remove(&name(n)).is_some());
                }
                Op::Rename(a, b) => {
                    let r = dir.rename(&name(a), &name(b));
                    if !model.contains_key(&name(a)) {
                        prop_assert!(r.is_err());
                    } else if a != b && model.contains_key(&name(b)) {
                        prop_assert_eq!(r, Err(Error::AlreadyExists { name: name(b) }));
                    } else {
                        r.unwrap();
                        let v = model.remove(&name(a)).unwrap();
                        model.insert(name(b), v);
                    }
                }
                Op::Replace(n, c) => {
                    dir.set(&name(n), &child(c), &[c]).unwrap();
                    model.insert(name(n), child(c));
                }
                Op::Roundtrip => {
                    let bytes = dir.to_bytes().unwrap();
                    dir = Directory::parse(&bytes, &keys).unwrap();
                }
            }
        }
        let bytes = dir.to_bytes().unwrap();
        // Write level sees write caps; read level only read caps; traverse level only the count
        // and the traversal caps.
        let w = Directory::parse(&bytes, &keys).unwrap();
        let got: BTreeMap<String, Cap> = w
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.write_cap.unwrap_or(e.read_cap)))
            .collect();
        prop_assert_eq!(&got, &model);
        let r = Directory::parse(&bytes, &DirKeys::from_cap(&cap.read_cap().into()).unwrap()).unwrap();
        for e in r.entries().unwrap() {
            prop_assert!(e.write_cap.is_none());
            let m = &model[&e.name];
            let want_read = match m {
                Cap::DirWrite(d) => Cap::from(d.read_cap()),
                other => other.clone(),
            };
            prop_assert_eq!(e.read_cap, want_read);
        }
        let t = Directory::parse(&bytes, &DirKeys::from_cap(&cap.traverse_cap().into()).unwrap()).unwrap();
        prop_assert_eq!(t.len(), model.len());
        prop_assert_eq!(t.traverse_caps().unwrap().len(), model.len());
    }

    #[test]
    fn parser_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let keys = DirKeys::from_cap(&dir_cap().into()).unwrap();
        let _ = Directory::parse(&bytes, &keys);
        // Behind a valid header too.
        let mut b = b"LAFSDIR1\x00\x01\x00\x00".to_vec();
        b.extend_from_slice(&bytes);
        if let Ok(d) = Directory::parse(&b, &keys) {
            let _ = d.entries();
            let _ = d.traverse_caps();
        }
    }

    #[test]
    fn mutated_dirnodes_never_panic(pos in any::<prop::sample::Index>(), val in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let cap = dir_cap();
        let keys = DirKeys::from_cap(&cap.clone().into()).unwrap();
        let mut dir = Directory::new(keys.clone());
        for i in 0..4u8 {
            dir.add(&name(i), &child(i), b"meta").unwrap();
        }
        let bytes = dir.to_bytes().unwrap();
        let mut bad = bytes.clone();
        let p = pos.index(bad.len());
        bad[p] = val;
        for k in [keys.clone(), DirKeys::from_cap(&cap.traverse_cap().into()).unwrap()] {
            if let Ok(d) = Directory::parse(&bad, &k) {
                let _ = d.entries();
                let _ = d.traverse_caps();
            }
            let _ = Directory::parse(&bytes[..cut.index(bytes.len())], &k);
        }
    }
}
