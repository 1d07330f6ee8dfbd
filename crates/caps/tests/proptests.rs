//! Property tests: round trips of both forms for every kind, typo detection, and no panic on
//! hostile input for every parser.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use lafs_caps::{
    Cap, CapKind, Error, ImmutableReadCap, ImmutableVerifyCap, LiteralCap, ReadKey, SelectionIndex,
    StorageIndex,
};
use proptest::prelude::*;

/// The bech32 data alphabet.
const CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";

fn readcap() -> impl Strategy<Value = ImmutableReadCap> {
    (any::<[u8; 16]>(), any::<[u8; 32]>())
        .prop_map(|(k, si)| ImmutableReadCap::new(ReadKey::from_bytes(k), StorageIndex(si)))
}

fn verifycap() -> impl Strategy<Value = ImmutableVerifyCap> {
    (any::<[u8; 32]>(), any::<[u8; 16]>())
        .prop_map(|(si, sel)| ImmutableVerifyCap::new(StorageIndex(si), SelectionIndex(sel)))
}

fn literal() -> impl Strategy<Value = LiteralCap> {
    proptest::collection::vec(any::<u8>(), 0..=LiteralCap::MAX_LEN)
        .prop_map(|d| LiteralCap::new(d).unwrap())
}

fn any_cap() -> impl Strategy<Value = Cap> {
    prop_oneof![
        readcap().prop_map(Cap::from),
        verifycap().prop_map(Cap::from),
        literal().prop_map(Cap::from),
    ]
}

/// Strings likely to get past the early checks: a real prefix (any case), a separator, and
/// characters mostly from the bech32 alphabet.
fn cap_like_string() -> impl Strategy<Value = String> {
    let prefix = prop_oneof![
        Just("lafsr"),
        Just("lafsv"),
        Just("lafsl"),
        Just("LAFSR"),
        Just("x")
    ];
    let ch = prop_oneof![
        8 => proptest::sample::select(CHARSET.to_vec()).prop_map(char::from),
        1 => any::<char>(),
    ];
    (prefix, proptest::collection::vec(ch, 0..120))
        .prop_map(|(p, data)| format!("{p}1{}", data.into_iter().collect::<String>()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn text_round_trip(cap in any_cap()) {
        let text = cap.to_string();
        prop_assert!(text.starts_with(cap.kind().hrp()));
        prop_assert_eq!(text.to_ascii_lowercase(), text.clone());
        prop_assert_eq!(text.parse::<Cap>(), Ok(cap.clone()));
        prop_assert_eq!(text.to_ascii_uppercase().parse::<Cap>(), Ok(cap));
    }

    #[test]
    fn typed_text_round_trips(r in readcap(), v in verifycap(), l in literal()) {
        prop_assert_eq!(r.to_string().parse::<ImmutableReadCap>(), Ok(r.clone()));
        prop_assert_eq!(v.to_string().parse::<ImmutableVerifyCap>(), Ok(v));
        prop_assert_eq!(l.to_string().parse::<LiteralCap>(), Ok(l.clone()));
        prop_assert_eq!(r.to_string().len(), 89);
        prop_assert_eq!(v.to_string().len(), 89);
        // 12 characters of overhead, then 8 bits per 5-bit character.
        prop_assert_eq!(l.to_string().len(), 12 + (l.data().len() * 8).div_ceil(5));
    }

    #[test]
    fn binary_round_trip(cap in any_cap()) {
        let bytes = cap.to_bytes();
        prop_assert_eq!(bytes.len(), cap.binary_len());
        prop_assert_eq!(bytes[0], cap.kind().kind_byte());
        prop_assert_eq!(Cap::from_bytes(&bytes), Ok(cap.clone()));
        prop_assert_eq!(Cap::read_from(&bytes), Ok((cap, bytes.len())));
    }

    #[test]
    fn typed_binary_round_trips(r in readcap(), v in verifycap(), l in literal()) {
        prop_assert_eq!(ImmutableReadCap::from_bytes(&r.to_bytes()), Ok(r));
        prop_assert_eq!(ImmutableVerifyCap::from_bytes(&v.to_bytes()), Ok(v));
        prop_assert_eq!(LiteralCap::from_bytes(&l.to_bytes()), Ok(l));
    }

    #[test]
    fn concatenated_binary_caps(caps in proptest::collection::vec(any_cap(), 0..8), tail in any::<u8>()) {
        let mut buf = Vec::new();
        for c in &caps {
            c.write_to(&mut buf);
        }
        let mut rest = &buf[..];
        for c in &caps {
            let (got, used) = Cap::read_from(rest).unwrap();
            prop_assert_eq!(&got, c);
            rest = &rest[used..];
        }
        prop_assert!(rest.is_empty());
        // One more byte after a list: read_from leaves it, from_bytes of the last cap rejects it.
        if let Some(last) = caps.last() {
            let mut one = last.to_bytes();
            one.push(tail);
            prop_assert_eq!(
                Cap::from_bytes(&one),
                Err(Error::TrailingBytes { kind: last.kind(), extra: 1 })
            );
        }
    }

    /// Bech32m detects every single-character substitution in the data part (checksum
    /// included), and it is reported as a checksum error (the length is unchanged).
    #[test]
    fn single_substitution_is_detected(
        cap in any_cap(),
        pos in any::<prop::sample::Index>(),
        replacement in any::<prop::sample::Index>(),
    ) {
        let text = cap.to_string();
        let data_start = cap.kind().hrp().len() + 1;
        let i = data_start + pos.index(text.len() - data_start);
        let old = text.as_bytes()[i];
        let candidates: Vec<u8> = CHARSET.iter().copied().filter(|&c| c != old).collect();
        let new = candidates[replacement.index(candidates.len())];
        let mut typo = text.into_bytes();
        typo[i] = new;
        let typo = String::from_utf8(typo).unwrap();
        prop_assert_eq!(typo.parse::<Cap>(), Err(Error::BadChecksum));
    }

    /// Swapping two adjacent different characters is detected as well.
    #[test]
    fn adjacent_transposition_is_detected(cap in any_cap(), pos in any::<prop::sample::Index>()) {
        let text = cap.to_string();
        let data_start = cap.kind().hrp().len() + 1;
        let i = data_start + pos.index(text.len() - data_start - 1);
        let mut typo = text.clone().into_bytes();
        typo.swap(i, i + 1);
        prop_assume!(typo[i] != typo[i + 1]);
        let typo = String::from_utf8(typo).unwrap();
        prop_assert!(typo.parse::<Cap>().is_err());
    }

    /// Giving a cap of one kind to the parser of another is a `WrongKind` error.
    #[test]
    fn wrong_kind_is_reported(cap in any_cap()) {
        let text = cap.to_string();
        let bytes = cap.to_bytes();
        let found = cap.kind();
        let wrong = |expected| Error::WrongKind { expected, found };
        if found != CapKind::ImmutableRead {
            prop_assert_eq!(text.parse::<ImmutableReadCap>().err(), Some(wrong(CapKind::ImmutableRead)));
            prop_assert_eq!(ImmutableReadCap::from_bytes(&bytes).err(), Some(wrong(CapKind::ImmutableRead)));
        }
        if found != CapKind::ImmutableVerify {
            prop_assert_eq!(text.parse::<ImmutableVerifyCap>().err(), Some(wrong(CapKind::ImmutableVerify)));
            prop_assert_eq!(ImmutableVerifyCap::from_bytes(&bytes).err(), Some(wrong(CapKind::ImmutableVerify)));
        }
        if found != CapKind::Literal {
            prop_assert_eq!(text.parse::<LiteralCap>().err(), Some(wrong(CapKind::Literal)));
            prop_assert_eq!(LiteralCap::from_bytes(&bytes).err(), Some(wrong(CapKind::Literal)));
        }
    }

    #[test]
    fn text_parsers_never_panic(s in "\\PC{0,250}") {
        let _ = s.parse::<Cap>();
        let _ = s.parse::<ImmutableReadCap>();
        let _ = s.parse::<ImmutableVerifyCap>();
        let _ = s.parse::<LiteralCap>();
    }

    #[test]
    fn cap_like_strings_never_panic(s in cap_like_string()) {
        if let Ok(cap) = s.parse::<Cap>() {
            // Whatever parses is canonical: it prints back as the input (up to case).
            prop_assert_eq!(cap.to_string(), s.to_ascii_lowercase());
        }
        let _ = s.parse::<ImmutableReadCap>();
        let _ = s.parse::<ImmutableVerifyCap>();
        let _ = s.parse::<LiteralCap>();
    }

    #[test]
    fn mutated_caps_never_panic(cap in any_cap(), cut in any::<prop::sample::Index>(), extra in "\\PC{0,5}") {
        let text = cap.to_string();
        let cut = cut.index(text.len() + 1);
        let s = format!("{}{extra}", &text[..cut]);
        if let Ok(parsed) = s.parse::<Cap>() {
            prop_assert_eq!(parsed.to_string(), s.to_ascii_lowercase());
        }
    }

    #[test]
    fn binary_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        if let Ok((cap, used)) = Cap::read_from(&bytes) {
            prop_assert!(used <= bytes.len());
            prop_assert_eq!(cap.to_bytes(), &bytes[..used]);
        }
        let _ = Cap::from_bytes(&bytes);
        let _ = ImmutableReadCap::from_bytes(&bytes);
        let _ = ImmutableVerifyCap::from_bytes(&bytes);
        let _ = LiteralCap::from_bytes(&bytes);
    }

    /// Arbitrary bytes behind a valid kind byte reach the payload checks.
    #[test]
    fn binary_with_valid_kind_never_panics(
        kind in proptest::sample::select(vec![1u8, 2, 3]),
        rest in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let mut bytes = vec![kind];
        bytes.extend(rest);
        match Cap::read_from(&bytes) {
            Ok((cap, used)) => prop_assert_eq!(cap.to_bytes(), &bytes[..used]),
            Err(e) => {
                let expected =
                    matches!(e, Error::BinaryTruncated { .. } | Error::LiteralTooLong { .. });
                prop_assert!(expected, "unexpected error {:?}", e);
            }
        }
    }
}
