//! Known-answer vectors from `docs/spec/vectors/dirnode.json`: a mutable and an immutable
//! dirnode built with fixed salts, parsed back at every level.
//!
//! Regenerate with `cargo test -p lafs-dirnode --test vectors -- --ignored --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use lafs_caps::{
    Cap, DirWriteCap, ImmutableDirReadCap, ImmutableReadCap, LiteralCap, MutableWriteCap, ReadKey,
    SigningSeed, StorageIndex,
};
use lafs_dirnode::*;
use serde::{Deserialize, Serialize};

const VECTORS: &str = include_str!("../../../docs/spec/vectors/dirnode.json");

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct VEntry {
    name: String,
    /// Strongest cap given when building (text form).
    cap: String,
    metadata: String,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct VDir {
    /// Text form of the write cap (mutable) or read cap (immutable) used to build it.
    cap: String,
    read_cap: String,
    traverse_cap: String,
    entries: Vec<VEntry>,
    stats: [u64; 3],
    dirnode: String,
    /// Traversal caps a traverse-level holder sees (text).
    traverse_caps: Vec<String>,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Vectors {
    description: String,
    mutable: VDir,
    immutable: VDir,
}

fn salts() -> impl FnMut(&mut [u8; 16]) -> Result<(), Error> {
    let mut n = 0u8;
    move |s: &mut [u8; 16]| {
        for (i, b) in s.iter_mut().enumerate() {
            *b = n.wrapping_mul(16).wrapping_add(i as u8);
        }
        n += 1;
        Ok(())
    }
}

fn build_dir(
    cap: Cap,
    read_cap: Cap,
    traverse_cap: Cap,
    entries: Vec<(&str, Cap, &[u8])>,
    stats: Stats,
) -> VDir {
    let keys = DirKeys::from_cap(&cap).unwrap();
    let mut d = Directory::new(keys);
    d.set_stats(stats);
    for (n, c, m) in &entries {
        d.add(n, c, m).unwrap();
    }
    let bytes = d.to_bytes_with(&mut salts()).unwrap();
    let t = Directory::parse(&bytes, &DirKeys::from_cap(&traverse_cap).unwrap()).unwrap();
    VDir {
        cap: cap.to_string(),
        read_cap: read_cap.to_string(),
        traverse_cap: traverse_cap.to_string(),
        entries: entries
            .into_iter()
            .map(|(n, c, m)| VEntry {
                name: n.into(),
                cap: c.to_string(),
                metadata: hex::encode(m),
            })
            .collect(),
        stats: [stats.files, stats.directories, stats.bytes],
        dirnode: hex::encode(bytes),
        traverse_caps: t
            .traverse_caps()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect(),
    }
}

fn build() -> Vectors {
    let dw = DirWriteCap::new(SigningSeed::from_bytes([0x11; 32]));
    let file: Cap =
        ImmutableReadCap::new(ReadKey::from_bytes([0x22; 16]), StorageIndex([0x33; 32])).into();
    let sub = DirWriteCap::new(SigningSeed::from_bytes([0x44; 32]));
    let mf = MutableWriteCap::new(SigningSeed::from_bytes([0x55; 32]));
    let lit: Cap = LiteralCap::new(b"tiny".to_vec()).unwrap().into();
    let mutable = build_dir(
        dw.clone().into(),
        dw.read_cap().into(),
        dw.traverse_cap().into(),
        vec![
            ("report.pdf", file.clone(), b"{\"size\":1000}"),
            ("Caf\u{e9}", sub.into(), b""),
            ("notes", mf.into(), b"m"),
            ("tiny.txt", lit.clone(), b""),
        ],
        Stats::default(),
    );
    let ir = ImmutableDirReadCap::new(ReadKey::from_bytes([0x66; 16]), StorageIndex([0x77; 32]));
    let immutable = build_dir(
        ir.clone().into(),
        ir.clone().into(),
        ir.traverse_cap().into(),
        vec![("a.txt", file, b""), ("b", lit, b"x")],
        Stats {
            files: 2,
            directories: 1,
            bytes: 1004,
        },
    );
    Vectors {
        description:
            "lafs dirnodes: a mutable and an immutable directory, column salts s*16+i for \
                      the s-th column sealed (names, traverse, read, write order)"
                .into(),
        mutable,
        immutable,
    }
}

#[test]
fn vectors_match() {
    let want: Vectors = serde_json::from_str(VECTORS).unwrap();
    assert_eq!(build(), want);
}

/// Parses the stored bytes at every level, independently of the builder.
#[test]
fn stored_vectors_parse_at_every_level() {
    let v: Vectors = serde_json::from_str(VECTORS).unwrap();
    for d in [&v.mutable, &v.immutable] {
        let bytes = hex::decode(&d.dirnode).unwrap();
        let read: Cap = d.read_cap.parse().unwrap();
        let r = Directory::parse(&bytes, &DirKeys::from_cap(&read).unwrap()).unwrap();
        let names: Vec<&str> = d.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(r.names().unwrap(), names);
        for (e, want) in r.entries().unwrap().iter().zip(&d.entries) {
            assert_eq!(hex::encode(&e.metadata), want.metadata);
            let given: Cap = want.cap.parse().unwrap();
            assert_eq!(
                e.write_cap
                    .clone()
                    .unwrap_or(e.read_cap.clone())
                    .kind()
                    .is_mutable(),
                given.kind().is_mutable()
            );
        }
        assert_eq!(
            r.stats(),
            Stats {
                files: d.stats[0],
                directories: d.stats[1],
                bytes: d.stats[2]
            }
        );
        let t: Cap = d.traverse_cap.parse().unwrap();
        let tr = Directory::parse(&bytes, &DirKeys::from_cap(&t).unwrap()).unwrap();
        let caps: Vec<String> = tr
            .traverse_caps()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(caps, d.traverse_caps);
    }
}

#[test]
#[ignore = "generator: prints docs/spec/vectors/dirnode.json"]
fn print_vectors() {
    println!("{}", serde_json::to_string_pretty(&build()).unwrap());
}
