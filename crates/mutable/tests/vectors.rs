//! Known-answer vectors from `docs/spec/vectors/mutable.json`: caps, keys and storage index
//! derived from a seed, and a whole small version (every share byte) plus an in-place update,
//! built with fixed salts. Ed25519 signatures are deterministic, so the shares are too.
//!
//! Regenerate with `cargo test -p lafs-mutable --test vectors -- --ignored --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use std::collections::BTreeMap;

use lafs_caps::{DirWriteCap, MutableWriteCap, SigningSeed};
use lafs_codec::Params;
use lafs_mutable::*;
use serde::{Deserialize, Serialize};

const VECTORS: &str = include_str!("../../../docs/spec/vectors/mutable.json");

/// Salts 0x00.., 0x01.., ...: byte i of salt number s is `s * 16 + i`.
struct CountingSalts(u8);

impl Entropy for CountingSalts {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.0.wrapping_mul(16).wrapping_add(i as u8);
        }
        self.0 = self.0.wrapping_add(1);
        Ok(())
    }
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Vectors {
    description: String,
    seed: String,
    write_cap: String,
    read_cap: String,
    verify_cap: String,
    public_key: String,
    read_key: String,
    storage_index: String,
    file_content_key: String,
    dir_write_cap: String,
    dir_read_cap: String,
    dir_traverse_cap: String,
    dir_verify_cap: String,
    dir_traverse_key: String,
    dir_content_key: String,
    k: u16,
    n: u16,
    segment_size: u32,
    plaintext: String,
    seqnum: u64,
    root: String,
    shares: Vec<String>,
    update_offset: u64,
    update_data: String,
    update_root: String,
    update_patches: Vec<Vec<(u64, String)>>,
}

fn build() -> Vectors {
    let seed: [u8; 32] = core::array::from_fn(|i| i as u8);
    let w = MutableWriteCap::new(SigningSeed::from_bytes(seed));
    let d = DirWriteCap::new(SigningSeed::from_bytes(seed));
    let keys = WriteKeys::for_file(&w);
    let params = Params::new(2, 3, 16).unwrap();
    let plaintext = b"hello, mutable world! (40 bytes of text)".to_vec();
    let v = encode_version(&keys, params, 1, &plaintext, &mut CountingSalts(0)).unwrap();
    let off = 20u64;
    let data = b"WORLD".to_vec();
    let plan = plan_update(&v.info, off, data.len() as u64).unwrap();
    let old: BTreeMap<u64, Vec<u8>> = plan
        .need_old
        .iter()
        .map(|&j| {
            (
                j,
                plaintext[(j * 16) as usize..((j * 16 + 16) as usize).min(40)].to_vec(),
            )
        })
        .collect();
    let up = update(&keys, &v.state, off, &data, &old, &mut CountingSalts(100)).unwrap();
    let update_patches = up
        .writes
        .iter()
        .map(|w| match w {
            ShareWrite::Patch { patches, .. } => patches
                .iter()
                .map(|p| (p.offset, hex::encode(&p.data)))
                .collect(),
            ShareWrite::Whole { .. } => panic!("update writes patches"),
        })
        .collect();
    let dt = d.traverse_cap();
    Vectors {
        description: "lafs mutable files: caps and keys from a seed; a 40-byte file, 2-of-3, \
                      16-byte segments, seqnum 1, salts s*16+i for salt number s (update: from 100); \
                      then WORLD written at offset 20 as patches"
            .into(),
        seed: hex::encode(seed),
        write_cap: w.to_string(),
        read_cap: w.read_cap().to_string(),
        verify_cap: w.verify_cap().to_string(),
        public_key: hex::encode(w.public_key().as_bytes()),
        read_key: hex::encode(w.read_cap().read_key().as_bytes()),
        storage_index: hex::encode(w.storage_index().0),
        file_content_key: hex::encode(keys.content_key().as_bytes()),
        dir_write_cap: d.to_string(),
        dir_read_cap: d.read_cap().to_string(),
        dir_traverse_cap: dt.to_string(),
        dir_verify_cap: d.verify_cap().to_string(),
        dir_traverse_key: hex::encode(dt.traverse_key().as_bytes()),
        dir_content_key: hex::encode(WriteKeys::for_dir(&d).content_key().as_bytes()),
        k: 2,
        n: 3,
        segment_size: 16,
        plaintext: hex::encode(&plaintext),
        seqnum: 1,
        root: hex::encode(v.info.root.0),
        shares: v.shares.iter().map(hex::encode).collect(),
        update_offset: off,
        update_data: hex::encode(&data),
        update_root: hex::encode(up.info.root.0),
        update_patches,
    }
}

#[test]
fn vectors_match() {
    let want: Vectors = serde_json::from_str(VECTORS).unwrap();
    assert_eq!(build(), want);
}

/// Checks the stored shares independently of the encoder: each is valid under the storage
/// index, the patches are accepted, and the result reads back.
#[test]
fn stored_vectors_verify_and_decode() {
    let v: Vectors = serde_json::from_str(VECTORS).unwrap();
    let w: MutableWriteCap = v.write_cap.parse().unwrap();
    let si = w.storage_index();
    assert_eq!(hex::encode(si.0), v.storage_index);
    let mut shares: Vec<Vec<u8>> = v.shares.iter().map(|s| hex::decode(s).unwrap()).collect();
    for (i, s) in shares.iter().enumerate() {
        verify_share(&si, i as u16, s).unwrap();
    }
    for (i, patches) in v.update_patches.iter().enumerate() {
        let s = &mut shares[i];
        let info = SignedHeader::parse(i as u16, s).unwrap().info;
        let _ = info;
        let patches: Vec<Patch> = patches
            .iter()
            .map(|(o, d)| Patch {
                offset: *o,
                data: hex::decode(d).unwrap(),
            })
            .collect();
        let new_len = s.len() as u64; // same size: 40 bytes stay 40 bytes
        let wr = ShareWrite::Patch {
            share: i as u16,
            new_len,
            patches,
        };
        assert!(matches!(
            check_write(&si, Some(s), &wr).unwrap(),
            Verdict::Accept { seqnum: 2, .. }
        ));
        wr.apply(s).unwrap();
    }
    let rc = w.read_cap();
    let headers: Vec<SignedHeader> = shares
        .iter()
        .enumerate()
        .map(|(i, s)| SignedHeader::parse(i as u16, s).unwrap())
        .collect();
    let sel = select_latest(rc.public_key(), &headers).unwrap();
    assert_eq!(hex::encode(sel.info.root.0), v.update_root);
    let r = VersionReader::new(
        sel.info,
        rc.public_key(),
        ContentKey::for_file(rc.read_key()),
    )
    .unwrap();
    let fetched: BTreeMap<u16, FetchedShare> = shares
        .into_iter()
        .enumerate()
        .map(|(i, s)| (i as u16, FetchedShare::whole(s)))
        .collect();
    let mut want = hex::decode(&v.plaintext).unwrap();
    want[20..25].copy_from_slice(b"WORLD");
    assert_eq!(r.read(0..40, &fetched).unwrap().plaintext, want);
}

#[test]
#[ignore = "generator: prints docs/spec/vectors/mutable.json"]
fn print_vectors() {
    println!("{}", serde_json::to_string_pretty(&build()).unwrap());
}
