//! Directories on the simulated grid: mutable directories (add, replace, remove, rename,
//! paths), read and traversal levels, immutable directories, and a proptest of random
//! operations against an in-memory model.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::executor::block_on;
use lafs_caps::Cap;
use lafs_client::{sim::SimGrid, Client, ClientConfig, Error, UploadOptions};
use lafs_codec::Params;
use lafs_dirnode::Level;
use proptest::prelude::*;

fn client(grid: &Arc<SimGrid>) -> Client {
    Client::new(
        grid.clone(),
        ClientConfig {
            params: Params::new(2, 4, 4096).unwrap(),
            happy: 2,
            ..ClientConfig::default()
        },
    )
}

fn file(c: &Client, text: &str) -> Cap {
    block_on(c.upload_bytes(text.repeat(20).as_bytes(), UploadOptions::default()))
        .unwrap()
        .cap
}

fn names(c: &Client, cap: &Cap) -> Vec<String> {
    let d = block_on(c.open_dir(cap)).unwrap().dir;
    d.names().unwrap().into_iter().map(String::from).collect()
}

#[test]
fn mutable_directory_operations_and_paths() {
    let grid = Arc::new(SimGrid::new(4, 1));
    let c = client(&grid);
    let root = block_on(c.mkdir()).unwrap();
    let root_cap: Cap = root.clone().into();
    assert!(names(&c, &root_cap).is_empty());

    let f1 = file(&c, "one");
    let f2 = file(&c, "two");
    block_on(c.dir_set(&root, "a.txt", &f1, b"{}")).unwrap();
    let sub = block_on(c.mkdir()).unwrap();
    block_on(c.dir_set(&root, "sub", &sub.clone().into(), b"")).unwrap();
    block_on(c.dir_set(&sub, "deep.txt", &f2, b"")).unwrap();
    assert_eq!(names(&c, &root_cap), ["a.txt", "sub"]);

    // Paths.
    assert_eq!(block_on(c.resolve(&root_cap, "sub/deep.txt")).unwrap(), f2);
    assert_eq!(
        block_on(c.resolve(&root_cap, "/sub//")).unwrap(),
        Cap::from(sub.clone())
    );
    assert!(matches!(
        block_on(c.resolve(&root_cap, "sub/missing")),
        Err(Error::Dirnode(_))
    ));
    // Through a read cap, the walk yields read caps only.
    let rc: Cap = root.read_cap().into();
    assert_eq!(
        block_on(c.resolve(&rc, "sub")).unwrap(),
        Cap::from(sub.read_cap())
    );

    // Replace, rename, remove.
    block_on(c.dir_set(&root, "a.txt", &f2, b"")).unwrap();
    assert_eq!(block_on(c.resolve(&root_cap, "a.txt")).unwrap(), f2);
    block_on(c.dir_rename(&root, "a.txt", "b.txt")).unwrap();
    assert_eq!(names(&c, &root_cap), ["b.txt", "sub"]);
    assert!(block_on(c.dir_rename(&root, "nope", "x")).is_err());
    block_on(c.dir_remove(&root, "b.txt")).unwrap();
    assert_eq!(names(&c, &rc), ["sub"]);

    // A traversal cap walks and reaches verifycaps, but cannot read names.
    let tc: Cap = root.traverse_cap().into();
    let t = block_on(c.open_dir(&tc)).unwrap().dir;
    assert_eq!(t.level(), Level::Traverse);
    assert!(matches!(
        t.names(),
        Err(lafs_dirnode::Error::NotPermitted {
            needed: Level::Read,
            ..
        })
    ));
    let children = t.traverse_caps().unwrap();
    assert_eq!(children, vec![Cap::from(sub.traverse_cap())]);
    let t2 = block_on(c.open_dir(&children[0])).unwrap().dir;
    let leaves = t2.traverse_caps().unwrap();
    let Cap::ImmutableRead(f2r) = &f2 else {
        panic!()
    };
    assert_eq!(leaves, vec![Cap::from(f2r.verify_cap())]);
    // ... and a check of the child file works from its verifycap.
    let report = block_on(c.check(&leaves[0], false)).unwrap();
    assert!(report.healthy);
    // A file cap is not a directory.
    assert!(block_on(c.open_dir(&f1)).is_err());
}

#[test]
fn immutable_directory() {
    let grid = Arc::new(SimGrid::new(4, 2));
    let c = client(&grid);
    let f = file(&c, "xyz");
    let m = block_on(c.mkdir()).unwrap();
    let inner = block_on(c.mkdir_immutable(&[("f".into(), f.clone(), b"meta".to_vec())])).unwrap();
    // The format keeps immutable directories deeply immutable: no mutable children.
    assert!(matches!(
        block_on(c.mkdir_immutable(&[("mutable".into(), m.clone().into(), vec![])])),
        Err(Error::Dirnode(
            lafs_dirnode::Error::MutableChildInImmutableDir { .. }
        ))
    ));
    let top = block_on(c.mkdir_immutable(&[
        ("inner".into(), inner.clone(), vec![]),
        ("file".into(), f.clone(), vec![]),
    ]))
    .unwrap();
    assert_eq!(names(&c, &top), ["inner", "file"]);
    assert_eq!(block_on(c.resolve(&top, "inner/f")).unwrap(), f);
    let e = block_on(c.open_dir(&inner)).unwrap().dir.get("f").unwrap();
    assert_eq!(e.metadata, b"meta");
    // Traversal.
    let Cap::ImmutableDirRead(t) = &top else {
        panic!()
    };
    let tv = block_on(c.open_dir(&t.traverse_cap().into())).unwrap().dir;
    assert!(tv.names().is_err());
    assert_eq!(tv.traverse_caps().unwrap().len(), 2);
}

#[derive(Debug, Clone)]
enum Op {
    Set(u8, u8),
    Remove(u8),
    Rename(u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..5u8, 0..3u8).prop_map(|(n, f)| Op::Set(n, f)),
        (0..5u8).prop_map(Op::Remove),
        (0..5u8, 0..5u8).prop_map(|(a, b)| Op::Rename(a, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn directory_matches_model(ops in proptest::collection::vec(op(), 1..10)) {
        let grid = Arc::new(SimGrid::new(3, 7));
        let c = client(&grid);
        let files: Vec<Cap> = (0..3).map(|i| file(&c, &format!("f{i}"))).collect();
        let dir = block_on(c.mkdir()).unwrap();
        let cap: Cap = dir.clone().into();
        let mut model: BTreeMap<String, Cap> = BTreeMap::new();
        let name = |n: u8| format!("n{n}");
        for o in ops {
            match o {
                Op::Set(n, f) => {
                    block_on(c.dir_set(&dir, &name(n), &files[f as usize], b"")).unwrap();
                    model.insert(name(n), files[f as usize].clone());
                }
                Op::Remove(n) => {
                    let r = block_on(c.dir_remove(&dir, &name(n)));
                    prop_assert_eq!(r.is_ok(), model.remove(&name(n)).is_some());
                }
                Op::Rename(a, b) => {
                    let r = block_on(c.dir_rename(&dir, &name(a), &name(b)));
                    let ok = model.contains_key(&name(a)) && (a == b || !model.contains_key(&name(b)));
                    prop_assert_eq!(r.is_ok(), ok, "rename {} -> {}", a, b);
                    if ok && a != b {
                        let v = model.remove(&name(a)).unwrap();
                        model.insert(name(b), v);
                    }
                }
            }
            let d = block_on(c.open_dir(&cap)).unwrap().dir;
            let got: BTreeMap<String, Cap> = d.entries().unwrap().into_iter().map(|e| (e.name, e.read_cap)).collect();
            prop_assert_eq!(&got, &model);
        }
    }
}
