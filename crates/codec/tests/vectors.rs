//! Test vectors: `docs/spec/vectors/immutable.json`.
//!
//! `check_vectors` re-encodes every case and compares every value. To regenerate the file after
//! a deliberate format change: `cargo test -p lafs-codec --test vectors -- --ignored write_vectors`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a test failure.

mod common;

use std::path::PathBuf;

use lafs_caps::ReadKey;
use lafs_codec::{
    convergent_key, encode_to_shares, encrypt_at, segment_leaf_of_ciphertext, verify_share, Params,
};
use lafs_hashtree::{Hash, HashTree};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Key of every fixed-key vector: bytes 00 01 02 ... 0f.
const FIXED_KEY: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
const SECRET: &[u8] = b"lafs test convergence secret";

/// (name, k, N, segment size, file size, convergent?)
const CASES: &[(&str, u16, u16, u32, u64, bool)] = &[
    ("3of10-4k-empty", 3, 10, 4096, 0, false),
    ("3of10-4k-1", 3, 10, 4096, 1, false),
    ("3of10-4k-4095", 3, 10, 4096, 4095, false),
    ("3of10-4k-4096", 3, 10, 4096, 4096, false),
    ("3of10-4k-4097", 3, 10, 4096, 4097, false),
    ("1of1-4k-4097", 1, 1, 4096, 4097, false),
    ("71of255-4k-4097", 71, 255, 4096, 4097, false),
    ("3of10-1MiB-1048577", 3, 10, 1 << 20, (1 << 20) + 1, false),
    ("3of10-4k-10000-convergent", 3, 10, 4096, 10_000, true),
];

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/spec/vectors/immutable.json")
}

fn generate() -> Value {
    let cases: Vec<Value> = CASES
        .iter()
        .map(|&(name, k, n, seg, size, convergent)| {
            let params = Params::new(k, n, seg).unwrap();
            let data = common::plaintext(size as usize);
            let key = if convergent {
                convergent_key(SECRET, &params, &data).unwrap()
            } else {
                ReadKey::from_bytes(FIXED_KEY)
            };
            let (shares, enc) = encode_to_shares(params, key.clone(), &data).unwrap();
            for (i, s) in shares.iter().enumerate() {
                verify_share(i as u16, s, Some(enc.storage_index)).unwrap();
            }
            let read_cap = enc.read_cap.as_ref().unwrap();
            // The ciphertext-tree leaves, computed from the ciphertext (not by the encoder):
            // they must rebuild the UEB's ciphertext root.
            let mut ct = data.clone();
            encrypt_at(&key, 0, &mut ct).unwrap();
            let leaves: Vec<Hash> = ct
                .chunks(seg as usize)
                .map(|s| segment_leaf_of_ciphertext(&params, s).unwrap())
                .collect();
            assert_eq!(HashTree::from_leaves(&leaves).root(), enc.ueb.ciphertext_root, "{name}");
            json!({
                "name": name,
                "k": k,
                "n": n,
                "segment_size": seg,
                "file_size": size,
                "plaintext": "byte m = (m * 31 + 7) mod 251",
                "convergence_secret": if convergent { Value::from(String::from_utf8_lossy(SECRET)) } else { Value::Null },
                "key": hex::encode(key.as_bytes()),
                "ueb": hex::encode(enc.ueb.to_bytes()),
                "ciphertext_leaves": leaves.iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
                "storage_index": hex::encode(enc.storage_index.0),
                "read_cap": read_cap.to_string(),
                "verify_cap": enc.verify_cap.to_string(),
                "share_lengths": enc.share_lens,
                "share_sha256": shares.iter().map(|s| hex::encode(Sha256::digest(s))).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "description": "lafs immutable format v1 test vectors (docs/spec/immutable.md section 9)",
        "cases": cases,
    })
}

#[test]
fn check_vectors() {
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(path()).expect("vector file")).unwrap();
    let fresh = generate();
    let (s, f) = (
        stored["cases"].as_array().unwrap(),
        fresh["cases"].as_array().unwrap(),
    );
    assert_eq!(s.len(), f.len());
    for (s, f) in s.iter().zip(f) {
        let obj = f.as_object().unwrap();
        for (field, value) in obj {
            assert_eq!(&s[field], value, "case {} field {field}", f["name"]);
        }
        assert_eq!(
            s.as_object().unwrap().len(),
            obj.len(),
            "case {}",
            f["name"]
        );
    }
}

#[test]
#[ignore = "writes docs/spec/vectors/immutable.json"]
fn write_vectors() {
    let text = serde_json::to_string_pretty(&generate()).unwrap();
    std::fs::write(path(), text + "\n").unwrap();
}
