//! Time to build, encode, parse and list a directory of 10 000 entries, at read and traverse
//! level.
//!
//! `cargo run --release -p lafs-dirnode --example dirnode_bench`
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark tool: a panic is a failed run

use std::time::Instant;

use lafs_caps::{Cap, DirWriteCap, ImmutableReadCap, ReadKey, SigningSeed, StorageIndex};
use lafs_dirnode::{DirKeys, Directory};

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn main() {
    let n = 10_000u32;
    let d = DirWriteCap::new(SigningSeed::from_bytes([1; 32]));
    let wk = DirKeys::from_cap(&d.clone().into()).unwrap();
    let t = Instant::now();
    let mut dir = Directory::new(wk.clone());
    for i in 0..n {
        let mut k = [0u8; 16];
        k[..4].copy_from_slice(&i.to_be_bytes());
        let cap: Cap = if i % 10 == 0 {
            DirWriteCap::new(SigningSeed::from_bytes([i as u8; 32])).into()
        } else {
            ImmutableReadCap::new(ReadKey::from_bytes(k), StorageIndex([7; 32])).into()
        };
        dir.add(
            &format!("file number {i:05}.dat"),
            &cap,
            b"{\"size\":1234,\"mtime\":1700000000}",
        )
        .unwrap();
    }
    let build = ms(t);
    let t = Instant::now();
    let bytes = dir.to_bytes().unwrap();
    let encode = ms(t);
    let rk = DirKeys::from_cap(&d.read_cap().into()).unwrap();
    let tk = DirKeys::from_cap(&d.traverse_cap().into()).unwrap();
    let mut best = [f64::MAX; 3];
    for _ in 0..5 {
        let t = Instant::now();
        let r = Directory::parse(&bytes, &rk).unwrap();
        let names = r.names().unwrap().len();
        best[0] = best[0].min(ms(t));
        let t = Instant::now();
        let r = Directory::parse(&bytes, &rk).unwrap();
        let e = r.entries().unwrap();
        best[1] = best[1].min(ms(t));
        let t = Instant::now();
        let tr = Directory::parse(&bytes, &tk).unwrap();
        let c = tr.traverse_caps().unwrap();
        best[2] = best[2].min(ms(t));
        assert_eq!(
            (names, e.len(), c.len()),
            (n as usize, n as usize, n as usize)
        );
    }
    println!(
        "{n} entries (10% mutable directories), dirnode {} bytes",
        bytes.len()
    );
    println!("build {build:.1} ms, encode {encode:.1} ms");
    println!("parse + names          {:.2} ms", best[0]);
    println!("parse + list all caps  {:.2} ms (read level)", best[1]);
    println!("parse + traverse caps  {:.2} ms (traverse level)", best[2]);
}
