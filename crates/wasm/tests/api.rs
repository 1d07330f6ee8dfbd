//! The API against the spec's test vectors (`docs/spec/vectors/caps.json`) and hash known
//! answers computed independently of the crates (plain SHA-256 over the spec's byte layout).
//!
//! Runs natively (`cargo test -p lafs-wasm`) and, unchanged, inside headless Chromium
//! (`cargo test --target wasm32-unknown-unknown -p lafs-wasm`, via wasm-bindgen-test-runner), so
//! the caps and hash-tree code is checked as compiled for the browser.
// Test code: a failed unwrap is a failed test. (clippy's allow-in-tests does not see helpers nor
// `#[wasm_bindgen_test]` functions.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use lafs_wasm::{merkle_root_hex, parse_cap, parse_share_link, tagged_hash_hex};
use serde_json::Value;

const VECTORS: &str = include_str!("../../../docs/spec/vectors/caps.json");

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("caps.json parses")
}

fn field<'a>(v: &'a Value, name: &str) -> &'a str {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("vector field {name} missing in {v}"))
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn valid_vectors_parse_and_derive() {
    let vectors = vectors();
    let valid = vectors["valid"].as_array().expect("valid vectors");
    assert!(valid.len() >= 3);
    for v in valid {
        let name = field(v, "name");
        let text = field(v, "text");
        let info = parse_cap(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(info.text(), text, "{name}");
        match field(v, "kind") {
            "immutable-read" => {
                assert_eq!(info.kind(), "readcap", "{name}");
                assert_eq!(info.kind_name(), "immutable readcap");
                assert!(info.can_read());
                assert_eq!(
                    info.verify_cap().as_deref(),
                    Some(field(v, "verify_cap_text"))
                );
                assert_eq!(
                    info.storage_index().as_deref(),
                    Some(field(v, "storage_index"))
                );
                assert_eq!(
                    info.selection_index().as_deref(),
                    Some(field(v, "selection_index"))
                );
                assert_eq!(info.literal_data(), None);
                // The derived verifycap parses back to the same file's public facts.
                let verify = parse_cap(&info.verify_cap().unwrap_or_default()).unwrap();
                assert_eq!(verify.kind(), "verifycap");
                assert_eq!(verify.storage_index(), info.storage_index());
                // No public field leaks the key.
                let key = field(v, "key");
                for public in [
                    info.storage_index(),
                    info.selection_index(),
                    info.verify_cap(),
                ] {
                    assert!(!public.unwrap_or_default().contains(key), "{name}");
                }
            }
            "immutable-verify" => {
                assert_eq!(info.kind(), "verifycap", "{name}");
                assert!(!info.can_read());
                assert_eq!(info.verify_cap().as_deref(), Some(text));
                assert_eq!(
                    info.storage_index().as_deref(),
                    Some(field(v, "storage_index"))
                );
                assert_eq!(
                    info.selection_index().as_deref(),
                    Some(field(v, "selection_index"))
                );
            }
            "literal" => {
                assert_eq!(info.kind(), "literal", "{name}");
                assert!(info.can_read());
                let data = hex::decode(field(v, "data")).unwrap();
                assert_eq!(info.literal_size(), Some(data.len() as u32));
                assert_eq!(info.literal_data(), Some(data));
                assert_eq!(info.verify_cap(), None);
                assert_eq!(info.storage_index(), None);
            }
            other => panic!("{name}: unexpected kind {other}"),
        }
        // Uppercase (QR-code) form parses to the same cap.
        assert_eq!(
            parse_cap(&text.to_ascii_uppercase()).unwrap(),
            info,
            "{name}"
        );
        // As a share link, with and without parameters.
        let link = parse_share_link(&format!("#{text}&grid=g")).unwrap();
        assert_eq!(link.cap(), info);
        assert_eq!(link.grid().as_deref(), Some("g"));
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn invalid_vectors_fail_with_their_code_and_message() {
    let vectors = vectors();
    let invalid = vectors["invalid_text"].as_array().expect("invalid vectors");
    assert!(invalid.len() >= 10);
    for v in invalid {
        let name = field(v, "name");
        let want_code = match field(v, "error") {
            "EmptyText" => "empty",
            "TextTooLong" => "too-long",
            "NonAscii" => "non-ascii",
            "TahoeCap" => "tahoe-cap",
            "MissingSeparator" => "missing-separator",
            "UnknownPrefix" => "unknown-prefix",
            "MixedCase" => "mixed-case",
            "InvalidChar" => "invalid-char",
            "Truncated" => "truncated",
            "BadChecksum" => "bad-checksum",
            "Bech32NotBech32m" => "bech32-not-bech32m",
            "NonCanonical" => "non-canonical",
            "WrongPayloadLength" => "wrong-payload-length",
            "LiteralTooLong" => "literal-too-long",
            "WrongKind" => "wrong-kind",
            other => panic!("{name}: error {other} has no code in this test"),
        };
        let err = parse_cap(field(v, "text")).expect_err(name);
        assert_eq!(err.code(), want_code, "{name}");
        assert_eq!(err.message(), field(v, "message"), "{name}");
        assert_eq!(err.to_js_string(), err.message());
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn tagged_hash_known_answers() {
    // SHA-256(0x03 || "tag" || "data"), computed with a plain SHA-256.
    assert_eq!(
        tagged_hash_hex("tag", b"data").unwrap(),
        "abd8fcc777957908d4cf8f4870a0f9deac89bbfd3cc01f46b73c85e37eaab67e"
    );
    // The selection index of the spec's counting key is the first half of this tagged hash.
    let key = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
    let h = tagged_hash_hex("lafs/v1/immutable/selection-index", &key).unwrap();
    assert_eq!(&h[..32], "e1ca12640f8b6f610945c57d823ca2c8");
    // A tag longer than its one-byte length prefix is an error, not a panic.
    assert_eq!(
        tagged_hash_hex(&"t".repeat(255), b"").map(|h| h.len()),
        Ok(64)
    );
    let err = tagged_hash_hex(&"t".repeat(256), b"").unwrap_err();
    assert_eq!(err.code(), "tag-too-long");
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
#[cfg_attr(not(target_arch = "wasm32"), test)]
fn merkle_root_known_answers() {
    let leaves: Vec<u8> = (0u8..3)
        .flat_map(|i| hex::decode(tagged_hash_hex("example/leaf", &[i]).unwrap()).unwrap())
        .collect();
    // node(node(l0, l1), node(l2, padding)) per docs/spec/hashtree.md, with a plain SHA-256.
    assert_eq!(
        merkle_root_hex(&leaves).unwrap(),
        "9e7fe4b104d15dae0819b745c7c9516048a86186ba5753f031be4a5ab1404d1c"
    );
    // One leaf: the root is the leaf. No leaves: the padding hash.
    assert_eq!(
        merkle_root_hex(&leaves[..32]).unwrap(),
        hex::encode(&leaves[..32])
    );
    assert_eq!(
        merkle_root_hex(&[]).unwrap(),
        "05d39f50a8464ecde9fb2b813f5c78294c76454c8cd0d935e6b18212d13f6969"
    );
    let err = merkle_root_hex(&leaves[..33]).unwrap_err();
    assert_eq!(err.code(), "leaf-bytes");
    assert_eq!(
        err.message(),
        "leaf hashes must be whole 32-byte hashes: 33 bytes is not a multiple of 32"
    );
}
