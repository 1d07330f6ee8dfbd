//! CPU cost of the storage server's validity check, next to raw Ed25519 verification measured
//! in the same run.
//!
//! `cargo run --release -p lafs-mutable --example validity_bench`
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark tool: a panic is a failed run

use std::collections::BTreeMap;
use std::time::Instant;

use ed25519_dalek::{Signer, SigningKey, Verifier};
use lafs_caps::{MutableWriteCap, SigningSeed};
use lafs_codec::Params;
use lafs_mutable::*;

/// µs per call of `f`, one round of `iters` calls.
fn round(iters: u32, f: &mut dyn FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(iters)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let sk = SigningKey::from_bytes(&[3; 32]);
    let msg = [7u8; 120];
    let sig = sk.sign(&msg);
    let vk = sk.verifying_key();

    let cap = MutableWriteCap::new(SigningSeed::from_bytes([9; 32]));
    let si = cap.storage_index();
    let keys = WriteKeys::for_file(&cap);

    // Scenario 1: a whole share of a small file (3-of-10).
    let small = encode_version(
        &keys,
        Params::new(3, 10, 4096).unwrap(),
        1,
        &[1u8; 1000],
        &mut OsEntropy,
    )
    .unwrap();
    let small_write = small.writes()[4].clone();

    // Scenarios 2 and 3: patch one segment of a file.
    let mut patches = Vec::new();
    for (seg, size) in [(4096u32, 1u64 << 20), (1 << 20, 16 << 20)] {
        let params = Params::new(3, 10, seg).unwrap();
        let v = encode_version_from(
            &keys,
            params,
            1,
            size,
            &mut |_, b| {
                b.fill(5);
                Ok(())
            },
            &mut OsEntropy,
        )
        .unwrap();
        let off = size / 2 + 10;
        let plan = plan_update(&v.info, off, 8).unwrap();
        let old: BTreeMap<u64, Vec<u8>> = plan
            .need_old
            .iter()
            .map(|&j| (j, vec![5u8; seg as usize]))
            .collect();
        let up = update(&keys, &v.state, off, b"12345678", &old, &mut OsEntropy).unwrap();
        patches.push((seg, size, v.shares[4].clone(), up.writes[4].clone()));
    }

    // Interleaved rounds, so load on the machine affects every measurement alike.
    let (mut raw, mut strict, mut whole) = (Vec::new(), Vec::new(), Vec::new());
    let mut patched: Vec<Vec<f64>> = vec![Vec::new(); patches.len()];
    for _ in 0..9 {
        raw.push(round(500, &mut || vk.verify(&msg, &sig).unwrap()));
        strict.push(round(500, &mut || vk.verify_strict(&msg, &sig).unwrap()));
        whole.push(round(500, &mut || {
            check_write(&si, None, &small_write).unwrap();
        }));
        for (i, (seg, _, stored, w)) in patches.iter().enumerate() {
            let iters = if *seg > 100_000 { 50 } else { 500 };
            patched[i].push(round(iters, &mut || {
                check_write(&si, Some(stored), w).unwrap();
            }));
        }
    }
    let raw = median(raw);
    println!(
        "raw Ed25519 verify                 {raw:8.1} µs   (verify_strict {:.1} µs)",
        median(strict)
    );
    let t = median(whole);
    println!(
        "whole share of a 1 KB file         {t:8.1} µs   ({:.2}× raw verify)",
        t / raw
    );
    for ((seg, size, stored, w), times) in patches.iter().zip(patched) {
        let t = median(times);
        println!(
            "patch 1 of {:4} segments of {:4} KiB {t:8.1} µs   ({:.2}× raw verify; {} bytes written of a {} byte share)",
            size / u64::from(*seg),
            seg / 1024,
            t / raw,
            w.bytes_written(),
            stored.len()
        );
    }
}
