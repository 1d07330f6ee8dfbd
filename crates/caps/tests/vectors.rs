//! Known-answer vectors from `docs/spec/vectors/caps.json`, checked in both directions.
//!
//! The file was produced by `print_vectors` below (run it with
//! `cargo test -p lafs-caps --test vectors -- --ignored --nocapture`) and is checked by
//! `valid_vectors`/`invalid_*_vectors` independently of the generator: fields → text and
//! binary, text and binary → fields, and the selection index against a direct SHA-256.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use bech32::{Bech32, Bech32m, Fe32, Fe32IterExt, Hrp};
use lafs_caps::{
    selection_index_for, Cap, ImmutableReadCap, ImmutableVerifyCap, LiteralCap, ReadKey,
    SelectionIndex, StorageIndex,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const VECTORS: &str = include_str!("../../../docs/spec/vectors/caps.json");

#[derive(Serialize, Deserialize)]
struct Vectors {
    description: String,
    selection_index_tag: String,
    valid: Vec<Valid>,
    invalid_text: Vec<InvalidText>,
    invalid_binary: Vec<InvalidBinary>,
}

#[derive(Serialize, Deserialize)]
struct Valid {
    name: String,
    /// `immutable-read`, `immutable-verify` or `literal`.
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    storage_index: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    selection_index: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    text: String,
    text_len: usize,
    binary: String,
    /// For readcaps: the text of the derived verifycap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verify_cap_text: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct InvalidText {
    name: String,
    text: String,
    error: String,
    message: String,
}

#[derive(Serialize, Deserialize)]
struct InvalidBinary {
    name: String,
    binary: String,
    error: String,
    message: String,
}

fn unhex<const N: usize>(s: &Option<String>) -> [u8; N] {
    let bytes = hex::decode(s.as_deref().expect("field present")).unwrap();
    bytes.try_into().expect("field length")
}

/// The variant name of an error, from its `Debug` form.
fn variant(e: &lafs_caps::Error) -> String {
    let dbg = format!("{e:?}");
    dbg.split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap()
        .to_owned()
}

/// The cap a valid vector describes, built from its fields (not from its text or binary).
fn build(v: &Valid) -> Cap {
    match v.kind.as_str() {
        "immutable-read" => {
            let cap = ImmutableReadCap::new(
                ReadKey::from_bytes(unhex(&v.key)),
                StorageIndex(unhex(&v.storage_index)),
            );
            assert_eq!(
                cap.selection_index(),
                SelectionIndex(unhex(&v.selection_index))
            );
            cap.into()
        }
        "immutable-verify" => ImmutableVerifyCap::new(
            StorageIndex(unhex(&v.storage_index)),
            SelectionIndex(unhex(&v.selection_index)),
        )
        .into(),
        "literal" => LiteralCap::new(hex::decode(v.data.as_deref().unwrap()).unwrap())
            .unwrap()
            .into(),
        other => panic!("unknown kind {other} in {}", v.name),
    }
}

#[test]
fn valid_vectors() {
    let vectors: Vectors = serde_json::from_str(VECTORS).unwrap();
    assert_eq!(
        vectors.selection_index_tag,
        "lafs/v1/immutable/selection-index"
    );
    assert!(vectors.valid.len() >= 7);
    for v in &vectors.valid {
        let cap = build(v);
        // Fields → forms.
        assert_eq!(cap.to_string(), v.text, "{}", v.name);
        assert_eq!(hex::encode(cap.to_bytes()), v.binary, "{}", v.name);
        assert_eq!(v.text.len(), v.text_len, "{}", v.name);
        // Forms → fields.
        assert_eq!(v.text.parse::<Cap>().as_ref(), Ok(&cap), "{}", v.name);
        assert_eq!(
            v.text.to_ascii_uppercase().parse::<Cap>().as_ref(),
            Ok(&cap),
            "{}",
            v.name
        );
        assert_eq!(
            Cap::from_bytes(&hex::decode(&v.binary).unwrap()).as_ref(),
            Ok(&cap)
        );
        if let Some(vt) = &v.verify_cap_text {
            assert_eq!(cap.verify_cap().unwrap().to_string(), *vt, "{}", v.name);
        }
    }
}

/// The selection index in the vectors, recomputed with SHA-256 directly:
/// `SHA-256(u8(len(tag)) || tag || key)[..16]`.
#[test]
fn selection_index_is_tagged_sha256() {
    let vectors: Vectors = serde_json::from_str(VECTORS).unwrap();
    let tag = vectors.selection_index_tag.as_bytes();
    let mut checked = 0;
    for v in vectors.valid.iter().filter(|v| v.kind == "immutable-read") {
        let key: [u8; 16] = unhex(&v.key);
        let mut h = Sha256::new();
        h.update([u8::try_from(tag.len()).unwrap()]);
        h.update(tag);
        h.update(key);
        let digest = h.finalize();
        assert_eq!(
            hex::encode(&digest[..16]),
            *v.selection_index.as_ref().unwrap()
        );
        assert_eq!(
            selection_index_for(&ReadKey::from_bytes(key)).0,
            digest[..16]
        );
        checked += 1;
    }
    assert!(checked >= 2);
}

#[test]
fn invalid_text_vectors() {
    let vectors: Vectors = serde_json::from_str(VECTORS).unwrap();
    assert!(vectors.invalid_text.len() >= 10);
    for v in &vectors.invalid_text {
        let err = v.text.parse::<Cap>().expect_err(&v.name);
        assert_eq!(variant(&err), v.error, "{}", v.name);
        assert_eq!(err.to_string(), v.message, "{}", v.name);
    }
}

#[test]
fn invalid_binary_vectors() {
    let vectors: Vectors = serde_json::from_str(VECTORS).unwrap();
    assert!(vectors.invalid_binary.len() >= 5);
    for v in &vectors.invalid_binary {
        let err = Cap::from_bytes(&hex::decode(&v.binary).unwrap()).expect_err(&v.name);
        assert_eq!(variant(&err), v.error, "{}", v.name);
        assert_eq!(err.to_string(), v.message, "{}", v.name);
    }
}

// ---- generator -------------------------------------------------------------------------------

fn valid_entry(name: &str, cap: &Cap) -> Valid {
    let mut v = Valid {
        name: name.into(),
        kind: String::new(),
        key: None,
        storage_index: None,
        selection_index: None,
        data: None,
        text: cap.to_string(),
        text_len: cap.to_string().len(),
        binary: hex::encode(cap.to_bytes()),
        verify_cap_text: None,
    };
    match cap {
        Cap::ImmutableRead(c) => {
            v.kind = "immutable-read".into();
            v.key = Some(hex::encode(c.key().as_bytes()));
            v.storage_index = Some(hex::encode(c.storage_index().0));
            v.selection_index = Some(hex::encode(c.selection_index().0));
            v.verify_cap_text = Some(c.verify_cap().to_string());
        }
        Cap::ImmutableVerify(c) => {
            v.kind = "immutable-verify".into();
            v.storage_index = Some(hex::encode(c.storage_index().0));
            v.selection_index = Some(hex::encode(c.selection_index().0));
        }
        Cap::Literal(c) => {
            v.kind = "literal".into();
            v.data = Some(hex::encode(c.data()));
        }
        _ => unreachable!(),
    }
    v
}

fn counting<const N: usize>(start: u8) -> [u8; N] {
    core::array::from_fn(|i| start.wrapping_add(u8::try_from(i).unwrap()))
}

fn generate() -> Vectors {
    let r1 = ImmutableReadCap::new(
        ReadKey::from_bytes(counting(0x00)),
        StorageIndex(counting(0x10)),
    );
    let r2 = ImmutableReadCap::new(ReadKey::from_bytes([0xff; 16]), StorageIndex([0; 32]));
    let v_indep = ImmutableVerifyCap::new(StorageIndex([0xa5; 32]), SelectionIndex([0x5a; 16]));
    let valid = vec![
        valid_entry("readcap-counting", &r1.clone().into()),
        valid_entry("readcap-ff-key-zero-si", &r2.clone().into()),
        valid_entry("verifycap-of-readcap-counting", &r1.verify_cap().into()),
        valid_entry(
            "verifycap-of-readcap-ff-key-zero-si",
            &r2.verify_cap().into(),
        ),
        valid_entry("verifycap-a5-5a", &v_indep.into()),
        valid_entry("literal-empty", &LiteralCap::new(vec![]).unwrap().into()),
        valid_entry(
            "literal-hello",
            &LiteralCap::new(b"hello".to_vec()).unwrap().into(),
        ),
        valid_entry(
            "literal-max-55",
            &LiteralCap::new(counting::<55>(0).to_vec()).unwrap().into(),
        ),
    ];

    let r1t = r1.to_string();
    let typo = {
        let mut t = r1t.clone().into_bytes();
        t[20] = if t[20] == b'q' { b'p' } else { b'q' };
        String::from_utf8(t).unwrap()
    };
    let mut payload = r1.key().as_bytes().to_vec();
    payload.extend(r1.storage_index().0);
    let hrp = |s| Hrp::parse(s).unwrap();
    let texts: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("too-long", "q".repeat(201)),
        ("non-ascii", format!("{}é{}", &r1t[..10], &r1t[10..])),
        ("tahoe-cap", "URI:CHK:aaaa:bbbb:3:10:1000".into()),
        ("missing-separator", "lafsrqqqqqqqq".into()),
        ("unknown-prefix", "foo1qqqqqq".into()),
        ("surrounding-whitespace", format!(" {r1t}")),
        (
            "mixed-case",
            format!("{}{}", &r1t[..40], r1t[40..].to_ascii_uppercase()),
        ),
        ("invalid-char", format!("{}b{}", &r1t[..30], &r1t[31..])),
        ("truncated-readcap", r1t[..88].to_owned()),
        ("single-char-typo", typo),
        ("kind-prefix-swapped", format!("lafsv{}", &r1t[5..])),
        (
            "bech32-not-bech32m",
            bech32::encode::<Bech32>(hrp("lafsr"), &payload).unwrap(),
        ),
        (
            "non-canonical-padding",
            [Fe32::Q, Fe32::P]
                .into_iter()
                .with_checksum::<Bech32m>(&hrp("lafsl"))
                .chars()
                .collect(),
        ),
        (
            "readcap-payload-40-bytes",
            bech32::encode::<Bech32m>(hrp("lafsr"), &[1; 40]).unwrap(),
        ),
        (
            "literal-56-bytes",
            bech32::encode::<Bech32m>(hrp("lafsl"), &[1; 56]).unwrap(),
        ),
    ];
    let invalid_text = texts
        .into_iter()
        .map(|(name, text)| {
            let err = text.parse::<Cap>().unwrap_err();
            InvalidText {
                name: name.into(),
                text,
                error: variant(&err),
                message: err.to_string(),
            }
        })
        .collect();

    let r1b = r1.to_bytes();
    let mut trailing = r1b.clone();
    trailing.push(0);
    let binaries: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("unknown-kind-00", vec![0x00; 49]),
        ("reserved-mutable-10", vec![0x10; 49]),
        ("reserved-directory-20", vec![0x20; 49]),
        ("truncated-readcap", r1b[..48].to_vec()),
        ("truncated-literal", vec![0x03, 0x05, b'h']),
        ("literal-length-56", [vec![0x03, 56], vec![0; 56]].concat()),
        ("trailing-byte", trailing),
    ];
    let invalid_binary = binaries
        .into_iter()
        .map(|(name, bytes)| {
            let err = Cap::from_bytes(&bytes).unwrap_err();
            InvalidBinary {
                name: name.into(),
                binary: hex::encode(bytes),
                error: variant(&err),
                message: err.to_string(),
            }
        })
        .collect();

    Vectors {
        description: "lafs cap test vectors: see docs/spec/caps.md. Hex is lowercase; `text_len` \
                      is in characters; `error` is the lafs_caps::Error variant."
            .into(),
        selection_index_tag: "lafs/v1/immutable/selection-index".into(),
        valid,
        invalid_text,
        invalid_binary,
    }
}

#[test]
#[ignore = "generator: prints docs/spec/vectors/caps.json"]
fn print_vectors() {
    println!("{}", serde_json::to_string_pretty(&generate()).unwrap());
}

/// The committed file is what the generator produces (guards against hand edits drifting
/// from the generator; the tests above check the content itself).
#[test]
fn file_matches_generator() {
    let file: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    let generated = serde_json::to_value(generate()).unwrap();
    assert_eq!(file, generated);
}
