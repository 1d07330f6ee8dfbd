//! Directories at every cap level, traversal through mutable and immutable files, name rules,
//! column re-encryption, 10 000 entries.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use lafs_caps::{
    Cap, DirReadCap, DirWriteCap, ImmutableDirReadCap, ImmutableReadCap, LiteralCap,
    MutableWriteCap, ReadKey, SigningSeed, StorageIndex,
};
use lafs_codec::Params;
use lafs_dirnode::*;
use lafs_mutable::{
    encode_version, select_latest, Entropy, FetchedShare, ReadKeys, SignedHeader, VersionReader,
    WriteKeys,
};

struct TestEntropy(u64);

impl Entropy for TestEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), lafs_mutable::Error> {
        for b in buf {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1);
            *b = (self.0 >> 56) as u8;
        }
        Ok(())
    }
}

fn imm_file(n: u8) -> Cap {
    ImmutableReadCap::new(ReadKey::from_bytes([n; 16]), StorageIndex([n; 32])).into()
}

fn dir_cap(n: u8) -> DirWriteCap {
    DirWriteCap::new(SigningSeed::from_bytes([n; 32]))
}

fn keys(cap: impl Into<Cap>) -> DirKeys {
    DirKeys::from_cap(&cap.into()).unwrap()
}

#[test]
fn round_trip_at_every_level() {
    let d = dir_cap(1);
    let child_dir = dir_cap(2);
    let child_mut = MutableWriteCap::new(SigningSeed::from_bytes([3; 32]));
    let lit: Cap = LiteralCap::new(b"tiny".to_vec()).unwrap().into();
    let mut dir = Directory::new(keys(d.clone()));
    dir.add("file", &imm_file(4), b"meta-file").unwrap();
    dir.add("sub", &child_dir.clone().into(), b"").unwrap();
    dir.add("doc", &child_mut.clone().into(), b"m").unwrap();
    dir.add("lit", &lit, b"").unwrap();
    let bytes = dir.to_bytes().unwrap();

    // Write level: everything, including the children's write caps.
    let w = Directory::parse(&bytes, &keys(d.clone())).unwrap();
    assert_eq!(w.level(), Level::Write);
    let e = w.get("sub").unwrap();
    assert_eq!(e.write_cap, Some(child_dir.clone().into()));
    assert_eq!(e.read_cap, child_dir.read_cap().into());
    assert_eq!(
        w.get("doc").unwrap().write_cap,
        Some(child_mut.clone().into())
    );
    assert_eq!(w.get("file").unwrap().metadata, b"meta-file");

    // Read level: names, metadata, read caps; never a write cap (read-only is transitive).
    let r = Directory::parse(&bytes, &keys(d.read_cap())).unwrap();
    assert_eq!(r.level(), Level::Read);
    assert_eq!(r.names().unwrap(), vec!["file", "sub", "doc", "lit"]);
    let entries = r.entries().unwrap();
    assert!(entries.iter().all(|e| e.write_cap.is_none()));
    assert_eq!(entries[1].read_cap, child_dir.read_cap().into());
    assert_eq!(entries[2].read_cap, child_mut.read_cap().into());
    assert_eq!(entries[3].read_cap, lit);
    let mut r2 = r.clone();
    assert_eq!(
        r2.add("x", &imm_file(9), b""),
        Err(Error::NotPermitted {
            needed: Level::Write,
            held: Level::Read
        })
    );
    assert!(matches!(r2.to_bytes(), Err(Error::NotPermitted { .. })));

    // Traverse level: the count and the children's traversal/verify caps only.
    let t = Directory::parse(&bytes, &keys(d.traverse_cap())).unwrap();
    assert_eq!(t.level(), Level::Traverse);
    assert_eq!(t.len(), 4);
    assert_eq!(
        t.traverse_caps().unwrap(),
        vec![
            imm_file(4).verify_cap().unwrap().into(),
            child_dir.traverse_cap().into(),
            child_mut.verify_cap().into(),
        ]
    );
    assert_eq!(
        t.names(),
        Err(Error::NotPermitted {
            needed: Level::Read,
            held: Level::Traverse
        })
    );
    assert!(matches!(t.get("file"), Err(Error::NotPermitted { .. })));
    assert!(matches!(t.entries(), Err(Error::NotPermitted { .. })));
}

#[test]
fn wrong_keys_fail_authentication_not_garbage() {
    let d = dir_cap(1);
    let mut dir = Directory::new(keys(d.clone()));
    dir.add("secret name", &imm_file(4), b"").unwrap();
    let bytes = dir.to_bytes().unwrap();
    // The traverse key used as if it were the read key: names do not authenticate.
    let t = d.traverse_cap();
    let fake = DirReadCap::new(
        ReadKey::from_bytes(*t.traverse_key().as_bytes()),
        *t.public_key(),
    );
    assert_eq!(
        Directory::parse(&bytes, &keys(fake)).unwrap_err(),
        Error::Unauthenticated {
            column: Column::Names
        }
    );
    // Another directory's caps.
    assert_eq!(
        Directory::parse(&bytes, &keys(dir_cap(2).read_cap())).unwrap_err(),
        Error::Unauthenticated {
            column: Column::Names
        }
    );
    assert_eq!(
        Directory::parse(&bytes, &keys(dir_cap(2).traverse_cap())).unwrap_err(),
        Error::Unauthenticated {
            column: Column::Traverse
        }
    );
    // Tampering with any byte of a sealed column is caught.
    let n = bytes.len();
    for pos in [n - 1, n - 40, n - 60] {
        let mut bad = bytes.clone();
        bad[pos] ^= 1;
        assert!(matches!(
            Directory::parse(&bad, &keys(d.clone())),
            Err(Error::Unauthenticated { .. })
        ));
    }
    // A mutable cap on an immutable dirnode, and non-directory caps.
    assert!(matches!(
        DirKeys::from_cap(&imm_file(1)),
        Err(Error::NotADirectoryCap { .. })
    ));
}

#[test]
fn names_are_nfc_and_checked() {
    let d = dir_cap(1);
    let mut dir = Directory::new(keys(d.clone()));
    dir.add("Cafe\u{301}", &imm_file(1), b"").unwrap();
    // The precomposed form is the same name.
    assert_eq!(
        dir.add("Caf\u{e9}", &imm_file(2), b""),
        Err(Error::AlreadyExists {
            name: "Caf\u{e9}".into()
        })
    );
    assert_eq!(dir.get("Caf\u{e9}").unwrap().read_cap, imm_file(1));
    assert_eq!(dir.names().unwrap(), vec!["Caf\u{e9}"]);
    for (bad, reason) in [
        ("", "empty"),
        ("a/b", "contains '/'"),
        ("a\0b", "contains NUL"),
    ] {
        assert_eq!(
            dir.add(bad, &imm_file(3), b""),
            Err(Error::BadName { reason })
        );
    }
    let long = "x".repeat(256);
    assert!(matches!(
        dir.add(&long, &imm_file(3), b""),
        Err(Error::BadName { .. })
    ));
    dir.add(&"é".repeat(127), &imm_file(3), b"").unwrap(); // 254 bytes
    assert!(matches!(
        dir.add("m", &imm_file(3), &vec![0; MAX_METADATA_LEN + 1]),
        Err(Error::MetadataTooLarge { .. })
    ));
    // Caps too weak for an entry.
    assert!(matches!(
        dir.add("v", &imm_file(3).verify_cap().unwrap().into(), b""),
        Err(Error::ChildCapTooWeak { .. })
    ));
    assert!(matches!(
        dir.add("t", &dir_cap(5).traverse_cap().into(), b""),
        Err(Error::ChildCapTooWeak { .. })
    ));
}

#[test]
fn changes_reencrypt_only_their_columns() {
    let d = dir_cap(1);
    let mut dir = Directory::new(keys(d.clone()));
    for i in 0..20u8 {
        let child: Cap = if i % 2 == 0 {
            imm_file(i)
        } else {
            dir_cap(i + 100).into()
        };
        dir.add(&format!("e{i}"), &child, b"m").unwrap();
    }
    let b1 = dir.to_bytes().unwrap();
    assert_eq!(
        dir.reencrypted_columns(),
        &[Column::Names, Column::Traverse, Column::Read, Column::Write]
    );
    let mut dir = Directory::parse(&b1, &keys(d.clone())).unwrap();
    dir.rename("e3", "renamed").unwrap();
    let b2 = dir.to_bytes().unwrap();
    assert_eq!(dir.reencrypted_columns(), &[Column::Names]);
    dir.set_metadata("e4", b"new metadata").unwrap();
    dir.to_bytes().unwrap();
    assert_eq!(dir.reencrypted_columns(), &[Column::Read]);
    dir.set("e6", &imm_file(66), b"m").unwrap();
    dir.to_bytes().unwrap();
    assert_eq!(dir.reencrypted_columns(), &[Column::Traverse, Column::Read]);
    dir.set("e7", &dir_cap(77).into(), b"m").unwrap();
    dir.to_bytes().unwrap();
    assert_eq!(
        dir.reencrypted_columns(),
        &[Column::Traverse, Column::Read, Column::Write]
    );
    // Nothing changed: nothing re-encrypted, identical bytes.
    let b3 = dir.to_bytes().unwrap();
    assert!(dir.reencrypted_columns().is_empty());
    assert_eq!(dir.to_bytes().unwrap(), b3);
    // The unchanged columns' ciphertext is byte-identical after a rename.
    let names_col = |b: &[u8], c: usize| {
        let off = u32::from_be_bytes(b[40 + 8 * c..44 + 8 * c].try_into().unwrap()) as usize;
        let len = u32::from_be_bytes(b[44 + 8 * c..48 + 8 * c].try_into().unwrap()) as usize;
        b[off..off + len].to_vec()
    };
    assert_ne!(names_col(&b1, 0), names_col(&b2, 0));
    for c in 1..4 {
        assert_eq!(names_col(&b1, c), names_col(&b2, c));
    }
    dir.remove("e0").unwrap();
    assert_eq!(
        dir.get("e0").unwrap_err(),
        Error::NotFound { name: "e0".into() }
    );
    assert_eq!(dir.len(), 19);
    let b4 = dir.to_bytes().unwrap();
    assert_eq!(
        Directory::parse(&b4, &keys(d.read_cap())).unwrap().len(),
        19
    );
}

#[test]
fn immutable_directory_through_an_immutable_file() {
    let r = ReadKey::from_bytes([8; 16]);
    let mut dir = Directory::new(DirKeys::immutable(&r));
    assert!(matches!(
        dir.add("m", &dir_cap(1).into(), b""),
        Err(Error::MutableChildInImmutableDir { .. })
    ));
    let sub = ImmutableDirReadCap::new(ReadKey::from_bytes([9; 16]), StorageIndex([9; 32]));
    dir.add("a", &imm_file(1), b"x").unwrap();
    dir.add("sub", &sub.clone().into(), b"").unwrap();
    let stats = Stats {
        files: 12,
        directories: 3,
        bytes: 123_456,
    };
    dir.set_stats(stats);
    let bytes = dir.to_bytes().unwrap();
    // The file key is the traverse key T = H(R).
    let t = lafs_caps::TraverseKey::for_immutable_dir(&r);
    let params = Params::new(2, 3, 4096).unwrap();
    let (_shares, done) =
        lafs_codec::encode_to_shares(params, ReadKey::from_bytes(*t.as_bytes()), &bytes).unwrap();
    let cap = ImmutableDirReadCap::new(r, done.storage_index);
    assert_eq!(
        cap.traverse_cap().file_read_cap(),
        done.read_cap.clone().unwrap()
    );
    assert_eq!(
        Cap::from(cap.clone()).verify_cap(),
        Some(done.read_cap.unwrap().verify_cap())
    );
    let rd = Directory::parse(&bytes, &keys(cap.clone())).unwrap();
    assert_eq!(rd.stats(), stats);
    assert_eq!(rd.get("sub").unwrap().read_cap, sub.clone().into());
    let td = Directory::parse(&bytes, &keys(cap.traverse_cap())).unwrap();
    assert_eq!(td.stats(), stats);
    assert_eq!(
        td.traverse_caps().unwrap(),
        vec![
            imm_file(1).verify_cap().unwrap().into(),
            sub.traverse_cap().into()
        ]
    );
    // Mutable keys do not open an immutable dirnode.
    assert!(matches!(
        Directory::parse(&bytes, &keys(dir_cap(1))),
        Err(Error::WrongDirKind { .. })
    ));
}

/// A tree of mutable directories stored as mutable files: a traversal-cap holder walks it to
/// every child's verifycap and never sees a name.
#[test]
fn traversal_walks_a_tree_without_names() {
    let params = Params::new(2, 3, 1024).unwrap();
    let mut store: BTreeMap<[u8; 32], Vec<Vec<u8>>> = BTreeMap::new();
    let mut rng = TestEntropy(5);
    let mut publish = |cap: &DirWriteCap, dir: &mut Directory, rng: &mut TestEntropy| {
        let plain = dir.to_bytes().unwrap();
        let enc = encode_version(&WriteKeys::for_dir(cap), params, 1, &plain, rng).unwrap();
        store.insert(cap.storage_index().0, enc.shares);
    };
    let root = dir_cap(10);
    let sub = dir_cap(11);
    let subsub = dir_cap(12);
    let file_a = imm_file(20);
    let file_b = MutableWriteCap::new(SigningSeed::from_bytes([21; 32]));
    let mut d3 = Directory::new(keys(subsub.clone()));
    d3.add("deep secret.txt", &file_a, b"").unwrap();
    publish(&subsub, &mut d3, &mut rng);
    let mut d2 = Directory::new(keys(sub.clone()));
    d2.add("private notes", &file_b.clone().into(), b"")
        .unwrap();
    d2.add("nested", &subsub.clone().into(), b"").unwrap();
    publish(&sub, &mut d2, &mut rng);
    let mut d1 = Directory::new(keys(root.clone()));
    d1.add("projects", &sub.clone().into(), b"").unwrap();
    d1.add(
        "hello",
        &LiteralCap::new(b"hi".to_vec()).unwrap().into(),
        b"",
    )
    .unwrap();
    publish(&root, &mut d1, &mut rng);

    // The walk: fetch, select, decrypt the file layer with keys from the traversal cap, parse.
    let mut found = BTreeSet::new();
    let mut seen_plaintext = Vec::new();
    let mut todo = vec![root.traverse_cap()];
    while let Some(t) = todo.pop() {
        let shares = &store[&t.storage_index().0];
        let headers: Vec<SignedHeader> = shares
            .iter()
            .enumerate()
            .map(|(i, s)| SignedHeader::parse(i as u16, s).unwrap())
            .collect();
        let sel = select_latest(t.public_key(), &headers).unwrap();
        let rk = ReadKeys::for_dir(&t);
        let reader =
            VersionReader::new(sel.info, rk.public_key(), rk.content_key().clone()).unwrap();
        let fetched: BTreeMap<u16, FetchedShare> = shares
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u16, FetchedShare::whole(s.clone())))
            .collect();
        let plain = reader
            .read(0..sel.info.file_size, &fetched)
            .unwrap()
            .plaintext;
        let dir = Directory::parse(&plain, &keys(t.clone())).unwrap();
        seen_plaintext.extend_from_slice(&plain);
        for cap in dir.traverse_caps().unwrap() {
            if let Cap::DirTraverse(c) = &cap {
                todo.push(c.clone());
            }
            found.insert(cap.to_string());
        }
    }
    let want: BTreeSet<String> = [
        Cap::from(sub.traverse_cap()),
        Cap::from(subsub.traverse_cap()),
        Cap::from(file_b.verify_cap()),
        file_a.verify_cap().unwrap().into(),
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(found, want);
    for name in [
        "deep secret",
        "private notes",
        "nested",
        "projects",
        "hello",
    ] {
        assert!(
            !seen_plaintext
                .windows(name.len())
                .any(|w| w == name.as_bytes()),
            "{name} visible to the traverser"
        );
    }
}

#[test]
fn ten_thousand_entries_build_and_list_quickly() {
    let d = dir_cap(1);
    let mut dir = Directory::new(keys(d.clone()));
    for i in 0..10_000u32 {
        let mut k = [0u8; 16];
        k[..4].copy_from_slice(&i.to_be_bytes());
        let cap: Cap = ImmutableReadCap::new(ReadKey::from_bytes(k), StorageIndex([7; 32])).into();
        dir.add(&format!("file number {i:05}.dat"), &cap, b"{\"size\":1234}")
            .unwrap();
    }
    let bytes = dir.to_bytes().unwrap();
    let t = Instant::now();
    let r = Directory::parse(&bytes, &keys(d.read_cap())).unwrap();
    let entries = r.entries().unwrap();
    let took = t.elapsed();
    assert_eq!(entries.len(), 10_000);
    assert_eq!(entries[4321].name, "file number 04321.dat");
    assert_eq!(
        r.get("file number 09999.dat").unwrap().metadata,
        b"{\"size\":1234}"
    );
    assert!(
        took.as_secs_f64() < 1.0,
        "parse + list of 10k entries took {took:?}"
    );
    let t = Instant::now();
    let tr = Directory::parse(&bytes, &keys(d.traverse_cap())).unwrap();
    assert_eq!(tr.traverse_caps().unwrap().len(), 10_000);
    assert!(t.elapsed().as_secs_f64() < 1.0);
}
