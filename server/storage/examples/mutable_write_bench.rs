//! Server CPU cost of one mutable share write: `lafs_storage::write_shares` (the write
//! endpoint's work after the request signature check: validity check reading the stored
//! share range by range, test-and-set, store) per write, next to raw Ed25519 verification.
//!
//! `cargo run --release -p lafs-storage --example mutable_write_bench`
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark tool: a panic is a failed run

use std::collections::BTreeMap;
use std::time::Instant;

use ed25519_dalek::{Signer, SigningKey};
use lafs_caps::{MutableWriteCap, SigningSeed, StorageIndex};
use lafs_codec::Params;
use lafs_mutable::{
    encode_version, encode_version_from, plan_update, update, OsEntropy, ShareWrite, WriteKeys,
};
use lafs_storage::{write_shares, FsMutableStore, MemoryMutableStore, MutableStore};

const ROUNDS: usize = 5;
const ITERS: usize = 40;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A chain of `ROUNDS * ITERS` patches of share 4, each one segment, each valid on top of
/// the previous one; plus the first version's share 4.
fn patch_chain(keys: &WriteKeys, seg: u32, size: u64) -> (Vec<u8>, Vec<ShareWrite>) {
    let params = Params::new(3, 10, seg).unwrap();
    let v = encode_version_from(
        keys,
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
    let mut state = v.state.clone();
    let mut info = v.info;
    let mut out = Vec::new();
    for i in 0..ROUNDS * ITERS {
        let off = (size / 7 * (i as u64 % 7)) + 10;
        let plan = plan_update(&info, off, 8).unwrap();
        let old: BTreeMap<u64, Vec<u8>> = plan
            .need_old
            .iter()
            .map(|&j| (j, vec![5u8; seg as usize]))
            .collect();
        let up = update(keys, &state, off, &[5u8; 8], &old, &mut OsEntropy).unwrap();
        state = up.state;
        info = up.info;
        out.push(up.writes[4].clone());
    }
    (v.shares[4].clone(), out)
}

/// µs per write of applying `writes` in order.
fn time_writes(store: &dyn MutableStore, si: &StorageIndex, writes: &[ShareWrite]) -> f64 {
    let t = Instant::now();
    for w in writes {
        write_shares(store, si, std::slice::from_ref(w)).unwrap();
    }
    t.elapsed().as_secs_f64() * 1e6 / writes.len() as f64
}

fn raw_verify_round() -> f64 {
    let sk = SigningKey::from_bytes(&[3; 32]);
    let msg = [7u8; 120];
    let sig = sk.sign(&msg);
    let vk = sk.verifying_key();
    let t = Instant::now();
    for _ in 0..ITERS {
        vk.verify_strict(&msg, &sig).unwrap();
    }
    t.elapsed().as_secs_f64() * 1e6 / ITERS as f64
}

fn main() {
    let cap = MutableWriteCap::new(SigningSeed::from_bytes([9; 32]));
    let si = cap.storage_index();
    let keys = WriteKeys::for_file(&cap);

    // Whole shares of a 1 KB file (3-of-10): each write a new version.
    let wholes: Vec<ShareWrite> = (1..=(ROUNDS * ITERS) as u64)
        .map(|seq| {
            encode_version(
                &keys,
                Params::new(3, 10, 4096).unwrap(),
                seq,
                &[1u8; 1000],
                &mut OsEntropy,
            )
            .unwrap()
            .writes()[4]
                .clone()
        })
        .collect();
    let (first_small, chain_small) = patch_chain(&keys, 4096, 1 << 20);
    let (first_big, chain_big) = patch_chain(&keys, 1 << 20, 16 << 20);
    let share = lafs_proto::ShareNum(4);
    let mem_whole = MemoryMutableStore::new();
    let mem_small = MemoryMutableStore::new();
    mem_small.replace(&si, share, &first_small).unwrap();
    let mem_big = MemoryMutableStore::new();
    mem_big.replace(&si, share, &first_big).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fs = FsMutableStore::open(dir.path()).unwrap();
    fs.replace(&si, share, &first_small).unwrap();
    let fs_before = fs.bytes_written();

    // Interleaved rounds, so load on the shared machine affects every measurement alike.
    let mut t: Vec<Vec<f64>> = vec![Vec::new(); 5];
    for r in 0..ROUNDS {
        let part = r * ITERS..(r + 1) * ITERS;
        t[0].push(raw_verify_round());
        t[1].push(time_writes(&mem_whole, &si, &wholes[part.clone()]));
        t[2].push(time_writes(&mem_small, &si, &chain_small[part.clone()]));
        t[3].push(time_writes(&mem_big, &si, &chain_big[part.clone()]));
        t[4].push(time_writes(&fs, &si, &chain_small[part]));
    }
    let m: Vec<f64> = t.into_iter().map(median).collect();
    let raw = m[0];
    println!("{:<64} {raw:>9.1} µs", "raw Ed25519 verify_strict");
    let rows = [
        (
            "whole share, 1 KB file, 3-of-10 (memory store)",
            m[1],
            &wholes[0],
        ),
        (
            "patch 1 segment, 1 MiB file, 4 KiB segments (memory store)",
            m[2],
            &chain_small[0],
        ),
        (
            "patch 1 segment, 16 MiB file, 1 MiB segments (memory store)",
            m[3],
            &chain_big[0],
        ),
        (
            "patch 1 segment, 1 MiB file, 4 KiB segments (FsMutableStore)",
            m[4],
            &chain_small[0],
        ),
    ];
    for (label, us, w) in rows {
        println!(
            "{label:<64} {us:>9.1} µs/write {:>8.0} writes/s {:>5.1} × verify  ({} bytes sent)",
            1e6 / us,
            us / raw,
            w.bytes_written()
        );
    }
    println!(
        "FsMutableStore disk bytes per patch write: {} (share bytes + journal)",
        (fs.bytes_written() - fs_before) / (ROUNDS * ITERS) as u64
    );
}
