//! Text form: bech32m over the kind's payload, with the kind's human-readable prefix.

use core::fmt;

use bech32::primitives::decode::{ChecksumError, UncheckedHrpstring};
use bech32::{Bech32m, ByteIterExt, Fe32, Hrp};
use zeroize::Zeroizing;

use crate::{CapKind, Error};

/// Longest text any parser looks at, in bytes. The longest cap (a 55-byte literal) is 100
/// characters; anything beyond this limit is rejected before decoding.
pub const MAX_TEXT_LEN: usize = 200;

/// Length of the bech32m checksum, in characters.
const CHECKSUM_CHARS: usize = 6;

/// Writes `payload` in the text form of `kind`: `hrp || "1" || bech32m data || checksum`,
/// lowercase.
pub(crate) fn write_text(f: &mut fmt::Formatter<'_>, kind: CapKind, payload: &[u8]) -> fmt::Result {
    let hrp = Hrp::parse_unchecked(kind.hrp());
    bech32::encode_lower_to_fmt::<Bech32m, _>(f, hrp, payload).map_err(|_| fmt::Error)
}

/// Number of characters after the separator for a payload of `payload_len` bytes.
pub(crate) const fn data_part_chars(payload_len: usize) -> usize {
    (payload_len * 8).div_ceil(5) + CHECKSUM_CHARS
}

/// Parses the text form of any cap into its kind and payload bytes. The payload length is not
/// checked here (that is the kind's job), but the encoding is: the result is the only payload
/// whose canonical text is `s` (up to case).
pub(crate) fn parse_text(s: &str) -> Result<(CapKind, Zeroizing<Vec<u8>>), Error> {
    if s.is_empty() {
        return Err(Error::EmptyText);
    }
    if s.len() > MAX_TEXT_LEN {
        return Err(Error::TextTooLong {
            len: s.len(),
            max: MAX_TEXT_LEN,
        });
    }
    if let Some((index, ch)) = s.char_indices().find(|(_, c)| !c.is_ascii()) {
        return Err(Error::NonAscii { ch, index });
    }
    if s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("uri:")) {
        return Err(Error::TahoeCap);
    }
    // Bech32 splits at the *last* `1`: the data alphabet has no `1`.
    let Some(sep) = s.rfind('1') else {
        return Err(Error::MissingSeparator);
    };
    let (prefix, data) = (&s[..sep], &s[sep + 1..]);
    let Some(kind) = CapKind::from_hrp(prefix) else {
        return Err(Error::UnknownPrefix {
            prefix: prefix.to_owned(),
        });
    };
    let has_lower = s.bytes().any(|b| b.is_ascii_lowercase());
    let has_upper = s.bytes().any(|b| b.is_ascii_uppercase());
    if has_lower && has_upper {
        return Err(Error::MixedCase);
    }
    for (i, ch) in data.char_indices() {
        if Fe32::from_char(ch).is_err() {
            return Err(Error::InvalidChar {
                ch,
                index: sep + 1 + i,
            });
        }
    }

    let min_chars = kind.min_data_part_chars();
    let truncated = Error::Truncated {
        kind,
        expected: min_chars,
        found: data.len(),
    };
    if data.len() < CHECKSUM_CHARS {
        return Err(truncated);
    }
    // The checks above cover everything `UncheckedHrpstring::new` rejects; map defensively.
    let unchecked = UncheckedHrpstring::new(s).map_err(|_| Error::MissingSeparator)?;
    match unchecked.validate_checksum::<Bech32m>() {
        Ok(()) => {}
        Err(_) if data.len() < min_chars => return Err(truncated),
        Err(ChecksumError::InvalidResidue(e)) if e.matches_bech32_checksum() => {
            return Err(Error::Bech32NotBech32m)
        }
        Err(ChecksumError::CodeLength(_)) => {
            return Err(Error::TextTooLong {
                len: s.len(),
                max: MAX_TEXT_LEN,
            })
        }
        Err(_) => return Err(Error::BadChecksum),
    }
    let checked = unchecked.remove_checksum::<Bech32m>();
    let payload: Zeroizing<Vec<u8>> = Zeroizing::new(checked.byte_iter().collect());
    // Canonical form: re-encoding the bytes must give back exactly the data characters, which
    // rules out excess padding characters and non-zero padding bits.
    if !payload
        .iter()
        .copied()
        .bytes_to_fes()
        .eq(checked.fe32_iter())
    {
        return Err(Error::NonCanonical);
    }
    Ok((kind, payload))
}

#[cfg(test)]
mod tests {
    use bech32::{Bech32, Fe32IterExt};

    use super::*;
    use crate::{
        Cap, ImmutableReadCap, ImmutableVerifyCap, LiteralCap, ReadKey, SelectionIndex,
        StorageIndex,
    };

    fn readcap() -> ImmutableReadCap {
        ImmutableReadCap::new(ReadKey::from_bytes([7; 16]), StorageIndex([9; 32]))
    }

    fn readcap_text() -> String {
        readcap().to_string()
    }

    /// Bech32m text of arbitrary bytes under an arbitrary prefix (bypasses the cap types).
    fn raw(hrp: &str, payload: &[u8]) -> String {
        bech32::encode::<Bech32m>(Hrp::parse(hrp).unwrap(), payload).unwrap()
    }

    fn parse(s: &str) -> Result<Cap, Error> {
        s.parse::<Cap>()
    }

    #[test]
    fn lengths_of_each_kind() {
        assert_eq!(readcap_text().len(), 89);
        assert!(readcap_text().starts_with("lafsr1"));
        let v = readcap().verify_cap().to_string();
        assert_eq!(v.len(), 89);
        assert!(v.starts_with("lafsv1"));
        assert_eq!(LiteralCap::new(vec![]).unwrap().to_string().len(), 12);
        assert_eq!(LiteralCap::new(vec![0; 55]).unwrap().to_string().len(), 100);
        assert_eq!(data_part_chars(48), 83);
    }

    #[test]
    fn empty() {
        assert_eq!(parse(""), Err(Error::EmptyText));
    }

    #[test]
    fn too_long() {
        let s = "a".repeat(201);
        assert_eq!(parse(&s), Err(Error::TextTooLong { len: 201, max: 200 }));
        // 200 bytes is still looked at (and fails later for another reason).
        assert_eq!(parse(&"a".repeat(200)), Err(Error::MissingSeparator));
    }

    #[test]
    fn non_ascii() {
        let mut s = readcap_text();
        s.insert(10, 'é');
        assert_eq!(
            parse(&s),
            Err(Error::NonAscii {
                ch: 'é', index: 10
            })
        );
    }

    #[test]
    fn tahoe_cap() {
        let s = "URI:CHK:mysecretkey:mystorageindex:3:10:12345";
        assert_eq!(parse(s), Err(Error::TahoeCap));
        assert_eq!(parse("uri:lit:abc"), Err(Error::TahoeCap));
    }

    #[test]
    fn missing_separator() {
        assert_eq!(parse("lafsrqqqqqq"), Err(Error::MissingSeparator));
    }

    #[test]
    fn unknown_prefix() {
        assert_eq!(
            parse("foo1qqqqqq"),
            Err(Error::UnknownPrefix {
                prefix: "foo".into()
            })
        );
        assert_eq!(
            parse("1qqqqqq"),
            Err(Error::UnknownPrefix {
                prefix: String::new()
            })
        );
        // Bitcoin addresses are bech32 too.
        assert_eq!(
            parse("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"),
            Err(Error::UnknownPrefix {
                prefix: "bc".into()
            })
        );
        // A `1` inside the data moves the split point: the prefix is everything before it.
        let mut s = readcap_text();
        s.replace_range(20..21, "1");
        assert_eq!(
            parse(&s),
            Err(Error::UnknownPrefix {
                prefix: s[..20].to_owned()
            })
        );
        assert_eq!(
            Error::UnknownPrefix {
                prefix: "foo".into()
            }
            .to_string(),
            "not a lafs cap: unknown prefix `foo`"
        );
    }

    #[test]
    fn mixed_case() {
        let s = readcap_text();
        let mixed = format!("{}{}", &s[..40], s[40..].to_ascii_uppercase());
        assert_eq!(parse(&mixed), Err(Error::MixedCase));
        let mixed = format!("LAFSR{}", &s[5..]);
        assert_eq!(parse(&mixed), Err(Error::MixedCase));
    }

    #[test]
    fn upper_case_is_accepted() {
        let s = readcap_text().to_ascii_uppercase();
        assert_eq!(s.parse::<ImmutableReadCap>(), Ok(readcap()));
    }

    #[test]
    fn invalid_char() {
        let mut s = readcap_text();
        s.replace_range(30..31, "b");
        assert_eq!(parse(&s), Err(Error::InvalidChar { ch: 'b', index: 30 }));
        let mut s = readcap_text();
        s.replace_range(31..32, "-");
        assert_eq!(parse(&s), Err(Error::InvalidChar { ch: '-', index: 31 }));
    }

    #[test]
    fn truncated() {
        let s = readcap_text();
        let kind = CapKind::ImmutableRead;
        assert_eq!(
            parse(&s[..88]),
            Err(Error::Truncated {
                kind,
                expected: 83,
                found: 82
            })
        );
        assert_eq!(
            parse(&s[..6]),
            Err(Error::Truncated {
                kind,
                expected: 83,
                found: 0
            })
        );
        let kind = CapKind::Literal;
        assert_eq!(
            parse("lafsl1qqq"),
            Err(Error::Truncated {
                kind,
                expected: 6,
                found: 3
            })
        );
    }

    #[test]
    fn bad_checksum() {
        let mut s = readcap_text();
        let c = if &s[50..51] == "q" { "p" } else { "q" };
        s.replace_range(50..51, c);
        assert_eq!(parse(&s), Err(Error::BadChecksum));
        // Changing the prefix to another kind is caught too: the checksum covers the prefix.
        let s = format!("lafsv{}", &readcap_text()[5..]);
        assert_eq!(parse(&s), Err(Error::BadChecksum));
        // An extra character at the end.
        let s = format!("{}q", readcap_text());
        assert_eq!(parse(&s), Err(Error::BadChecksum));
        assert_eq!(
            Error::BadChecksum.to_string(),
            "cap checksum does not match: probably a typo"
        );
    }

    #[test]
    fn bech32_checksum_is_rejected() {
        let mut payload = vec![7; 16];
        payload.extend([9; 32]);
        let s = bech32::encode::<Bech32>(Hrp::parse("lafsr").unwrap(), &payload).unwrap();
        assert_eq!(parse(&s), Err(Error::Bech32NotBech32m));
    }

    #[test]
    fn non_canonical_padding() {
        // One zero byte is 8 bits: two characters, the second with 2 padding bits. Setting a
        // padding bit keeps a valid checksum but is not the canonical text of the byte.
        let hrp = Hrp::parse("lafsl").unwrap();
        let fes = [Fe32::Q, Fe32::try_from(1u8).unwrap()];
        let s: String = fes
            .into_iter()
            .with_checksum::<Bech32m>(&hrp)
            .chars()
            .collect();
        assert_eq!(parse(&s), Err(Error::NonCanonical));
        // A whole excess character of padding.
        let fes = [Fe32::Q, Fe32::Q, Fe32::Q];
        let s: String = fes
            .into_iter()
            .with_checksum::<Bech32m>(&hrp)
            .chars()
            .collect();
        assert_eq!(parse(&s), Err(Error::NonCanonical));
        // The canonical text of the same byte parses.
        let fes = [Fe32::Q, Fe32::Q];
        let s: String = fes
            .into_iter()
            .with_checksum::<Bech32m>(&hrp)
            .chars()
            .collect();
        assert_eq!(
            parse(&s),
            Ok(Cap::Literal(LiteralCap::new(vec![0]).unwrap()))
        );
    }

    #[test]
    fn wrong_payload_length() {
        let s = raw("lafsr", &[1; 40]);
        let e = Error::WrongPayloadLength {
            kind: CapKind::ImmutableRead,
            expected: 48,
            found: 40,
        };
        assert_eq!(parse(&s), Err(e));
        let s = raw("lafsv", &[1; 49]);
        let e = Error::WrongPayloadLength {
            kind: CapKind::ImmutableVerify,
            expected: 48,
            found: 49,
        };
        assert_eq!(parse(&s), Err(e));
    }

    #[test]
    fn literal_too_long() {
        let s = raw("lafsl", &[1; 56]);
        assert_eq!(parse(&s), Err(Error::LiteralTooLong { len: 56, max: 55 }));
    }

    #[test]
    fn wrong_kind() {
        let r = readcap_text();
        let v = readcap().verify_cap().to_string();
        assert_eq!(
            r.parse::<ImmutableVerifyCap>(),
            Err(Error::WrongKind {
                expected: CapKind::ImmutableVerify,
                found: CapKind::ImmutableRead
            })
        );
        assert_eq!(
            v.parse::<ImmutableReadCap>(),
            Err(Error::WrongKind {
                expected: CapKind::ImmutableRead,
                found: CapKind::ImmutableVerify
            })
        );
        assert_eq!(
            r.parse::<LiteralCap>(),
            Err(Error::WrongKind {
                expected: CapKind::Literal,
                found: CapKind::ImmutableRead
            })
        );
        assert_eq!(
            r.parse::<ImmutableVerifyCap>().unwrap_err().to_string(),
            "expected immutable verifycap, found immutable readcap"
        );
    }

    #[test]
    fn whitespace_is_rejected() {
        let s = format!(" {}", readcap_text());
        assert_eq!(
            parse(&s),
            Err(Error::UnknownPrefix {
                prefix: " lafsr".into()
            })
        );
        let s = format!("{}\n", readcap_text());
        assert_eq!(
            parse(&s),
            Err(Error::InvalidChar {
                ch: '\n',
                index: 89
            })
        );
    }

    #[test]
    fn selection_index_in_verifycap_text_is_checked_only_by_checksum() {
        // A verifycap names any (storage index, selection index) pair; nothing ties them.
        let v = ImmutableVerifyCap::new(StorageIndex([1; 32]), SelectionIndex([2; 16]));
        assert_eq!(v.to_string().parse::<ImmutableVerifyCap>(), Ok(v));
    }
}
