//! Identifiers as they appear in URLs, headers and JSON bodies.
//!
//! Binary identifiers are written in **lowercase RFC 4648 base32 without padding** (alphabet
//! `a-z2-7`). Parsing is strict: uppercase, padding, characters outside the alphabet and
//! non-zero trailing bits are rejected, so every value has exactly one text form (URLs and
//! signatures can compare text byte for byte). Numbers are decimal without sign or leading zeros.

use core::fmt;
use core::str::FromStr;

use data_encoding::BASE32_NOPAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use lafs_caps::StorageIndex;

use crate::Error;

/// Encodes bytes as lowercase unpadded base32.
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut s = BASE32_NOPAD.encode(bytes);
    s.make_ascii_lowercase();
    s
}

/// Decodes lowercase unpadded base32 into exactly `N` bytes.
///
/// `what` names the value in the error.
pub fn base32_decode<const N: usize>(text: &str, what: &'static str) -> Result<[u8; N], Error> {
    // Only the lowercase alphabet is accepted: a value has a single text form.
    if !text
        .bytes()
        .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    {
        return Err(Error::BadBase32 { what });
    }
    let upper = text.to_ascii_uppercase();
    let bytes = BASE32_NOPAD
        .decode(upper.as_bytes())
        .map_err(|_| Error::BadBase32 { what })?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| Error::BadLength {
        what,
        expected: N,
        got: bytes.len(),
    })
}

/// Parses a decimal `u64`: ASCII digits only, no sign, no leading zero (except `0` itself).
pub fn parse_decimal(text: &str, what: &'static str) -> Result<u64, Error> {
    let bad = || Error::BadNumber { what };
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if text.len() > 1 && text.starts_with('0') {
        return Err(bad());
    }
    text.parse::<u64>().map_err(|_| bad())
}

/// Text form of a storage index: 52 lowercase base32 characters.
pub fn storage_index_to_text(si: &StorageIndex) -> String {
    base32_encode(&si.0)
}

/// Parses the text form of a storage index.
pub fn parse_storage_index(text: &str) -> Result<StorageIndex, Error> {
    base32_decode::<32>(text, "storage index").map(StorageIndex)
}

/// Serde adapter writing a [`StorageIndex`] as its base32 text
/// (`#[serde(with = "lafs_proto::ids::si_text")]`).
pub mod si_text {
    use super::*;

    /// Serializes as base32 text.
    pub fn serialize<S: Serializer>(si: &StorageIndex, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&storage_index_to_text(si))
    }

    /// Deserializes from base32 text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<StorageIndex, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse_storage_index(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde adapter for an optional [`StorageIndex`] (`null` or base32 text).
pub mod opt_si_text {
    use super::*;

    /// Serializes as `null` or base32 text.
    pub fn serialize<S: Serializer>(si: &Option<StorageIndex>, s: S) -> Result<S::Ok, S::Error> {
        match si {
            Some(si) => s.serialize_some(&storage_index_to_text(si)),
            None => s.serialize_none(),
        }
    }

    /// Deserializes from `null` or base32 text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<StorageIndex>, D::Error> {
        let text = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        text.map(|t| parse_storage_index(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

macro_rules! base32_id {
    ($(#[$doc:meta])* $name:ident, $len:expr, $what:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// The base32 text form.
            pub fn to_text(&self) -> String {
                base32_encode(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_text())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.to_text())
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                base32_decode::<$len>(s, $what).map(Self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_text())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

base32_id!(
    /// Client-chosen random identifier of an immutable upload (16 bytes, 26 base32 characters).
    ///
    /// It names an upload session on one server until its shares are finished and filed under
    /// their storage index. It grants nothing: every upload operation is also signed, and only
    /// the account that allocated an upload may touch it.
    UploadId,
    16,
    "upload id"
);

base32_id!(
    /// An account: the 32-byte ed25519 public key that signs write requests
    /// (52 base32 characters).
    AccountId,
    32,
    "account key"
);

base32_id!(
    /// A request nonce: 16 random bytes chosen by the client for each signed request
    /// (26 base32 characters).
    Nonce,
    16,
    "nonce"
);

/// A share number: `0..=255`. Larger numbers are unrepresentable, so they are rejected at parse
/// time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShareNum(pub u8);

impl fmt::Display for ShareNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for ShareNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShareNum({})", self.0)
    }
}

impl FromStr for ShareNum {
    type Err = Error;
    /// Parses a decimal share number (`0`..`255`, no leading zeros).
    fn from_str(s: &str) -> Result<Self, Error> {
        let n = parse_decimal(s, "share number")?;
        u8::try_from(n).map(Self).map_err(|_| Error::BadNumber {
            what: "share number",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_is_lowercase_and_strict() {
        let id = UploadId([0x5a; 16]);
        let t = id.to_text();
        assert_eq!(t.len(), 26);
        assert_eq!(t, t.to_ascii_lowercase());
        assert_eq!(t.parse::<UploadId>().unwrap(), id);
        assert!(t.to_ascii_uppercase().parse::<UploadId>().is_err());
        assert!(format!("{t}=").parse::<UploadId>().is_err());
        assert!("..".parse::<UploadId>().is_err());
        assert!("".parse::<UploadId>().is_err());
        // Non-zero trailing bits: the last character of a 16-byte value carries 2 unused bits.
        let mut bad = t.clone();
        bad.pop();
        bad.push('7');
        assert!(bad.parse::<UploadId>().is_err());
    }

    #[test]
    fn wrong_length_is_reported() {
        let t = base32_encode(&[1u8; 15]);
        assert_eq!(
            t.parse::<UploadId>(),
            Err(Error::BadLength {
                what: "upload id",
                expected: 16,
                got: 15
            })
        );
    }

    #[test]
    fn storage_index_round_trip() {
        let si = StorageIndex([0x5a; 32]);
        let t = storage_index_to_text(&si);
        assert_eq!(t.len(), 52);
        assert_eq!(parse_storage_index(&t).unwrap(), si);
    }

    #[test]
    fn share_numbers() {
        assert_eq!("0".parse::<ShareNum>().unwrap(), ShareNum(0));
        assert_eq!("255".parse::<ShareNum>().unwrap(), ShareNum(255));
        for bad in [
            "256",
            "-1",
            "+1",
            "01",
            "",
            "1e3",
            "99999999999999999999999",
            " 1",
        ] {
            assert!(bad.parse::<ShareNum>().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<ShareNum>("256").is_err());
    }
}
