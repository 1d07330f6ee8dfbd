//! [`Cap`] (any kind) and [`CapKind`].

use core::fmt;
use core::str::FromStr;

use crate::kinds::IMMUTABLE_PAYLOAD_LEN;
use crate::text::{data_part_chars, parse_text};
use crate::{
    DirReadCap, DirTraverseCap, DirVerifyCap, DirWriteCap, Error, ImmutableDirReadCap,
    ImmutableDirTraverseCap, ImmutableDirVerifyCap, ImmutableReadCap, ImmutableVerifyCap,
    LiteralCap, MutableReadCap, MutableVerifyCap, MutableWriteCap,
};

/// The kinds of cap this version knows, with their text prefix (HRP) and binary kind byte.
///
/// | kind | HRP | kind byte |
/// |---|---|---|
/// | [`CapKind::ImmutableRead`] | `lafsr` | `0x01` |
/// | [`CapKind::ImmutableVerify`] | `lafsv` | `0x02` |
/// | [`CapKind::Literal`] | `lafsl` | `0x03` |
/// | [`CapKind::MutableWrite`] | `lafsmw` | `0x11` |
/// | [`CapKind::MutableRead`] | `lafsmr` | `0x12` |
/// | [`CapKind::MutableVerify`] | `lafsmv` | `0x13` |
/// | [`CapKind::DirWrite`] | `lafsdw` | `0x21` |
/// | [`CapKind::DirRead`] | `lafsdr` | `0x22` |
/// | [`CapKind::DirTraverse`] | `lafsdt` | `0x23` |
/// | [`CapKind::DirVerify`] | `lafsdv` | `0x24` |
/// | [`CapKind::ImmutableDirRead`] | `lafsir` | `0x29` |
/// | [`CapKind::ImmutableDirTraverse`] | `lafsit` | `0x2a` |
/// | [`CapKind::ImmutableDirVerify`] | `lafsiv` | `0x2b` |
///
/// Kind bytes `0x10..=0x1f` are reserved for mutable-file caps and `0x20..=0x2f` for directory
/// caps; the unassigned ones (`0x10`, `0x14..`, `0x20`, ...) are unknown kinds.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CapKind {
    /// [`ImmutableReadCap`].
    ImmutableRead,
    /// [`ImmutableVerifyCap`].
    ImmutableVerify,
    /// [`LiteralCap`].
    Literal,
    /// [`MutableWriteCap`].
    MutableWrite,
    /// [`MutableReadCap`].
    MutableRead,
    /// [`MutableVerifyCap`].
    MutableVerify,
    /// [`DirWriteCap`].
    DirWrite,
    /// [`DirReadCap`].
    DirRead,
    /// [`DirTraverseCap`].
    DirTraverse,
    /// [`DirVerifyCap`].
    DirVerify,
    /// [`ImmutableDirReadCap`].
    ImmutableDirRead,
    /// [`ImmutableDirTraverseCap`].
    ImmutableDirTraverse,
    /// [`ImmutableDirVerifyCap`].
    ImmutableDirVerify,
}

impl CapKind {
    /// Every kind, in kind-byte order.
    pub const ALL: [Self; 13] = [
        Self::ImmutableRead,
        Self::ImmutableVerify,
        Self::Literal,
        Self::MutableWrite,
        Self::MutableRead,
        Self::MutableVerify,
        Self::DirWrite,
        Self::DirRead,
        Self::DirTraverse,
        Self::DirVerify,
        Self::ImmutableDirRead,
        Self::ImmutableDirTraverse,
        Self::ImmutableDirVerify,
    ];

    /// The human-readable part of the text form (lowercase, without the `1` separator).
    pub const fn hrp(self) -> &'static str {
        match self {
            Self::ImmutableRead => "lafsr",
            Self::ImmutableVerify => "lafsv",
            Self::Literal => "lafsl",
            Self::MutableWrite => "lafsmw",
            Self::MutableRead => "lafsmr",
            Self::MutableVerify => "lafsmv",
            Self::DirWrite => "lafsdw",
            Self::DirRead => "lafsdr",
            Self::DirTraverse => "lafsdt",
            Self::DirVerify => "lafsdv",
            Self::ImmutableDirRead => "lafsir",
            Self::ImmutableDirTraverse => "lafsit",
            Self::ImmutableDirVerify => "lafsiv",
        }
    }

    /// The first byte of the binary form.
    pub const fn kind_byte(self) -> u8 {
        match self {
            Self::ImmutableRead => 0x01,
            Self::ImmutableVerify => 0x02,
            Self::Literal => 0x03,
            Self::MutableWrite => 0x11,
            Self::MutableRead => 0x12,
            Self::MutableVerify => 0x13,
            Self::DirWrite => 0x21,
            Self::DirRead => 0x22,
            Self::DirTraverse => 0x23,
            Self::DirVerify => 0x24,
            Self::ImmutableDirRead => 0x29,
            Self::ImmutableDirTraverse => 0x2a,
            Self::ImmutableDirVerify => 0x2b,
        }
    }

    /// The kind whose binary form starts with `byte`, if any.
    pub const fn from_kind_byte(byte: u8) -> Option<Self> {
        match byte {
            0x01 => Some(Self::ImmutableRead),
            0x02 => Some(Self::ImmutableVerify),
            0x03 => Some(Self::Literal),
            0x11 => Some(Self::MutableWrite),
            0x12 => Some(Self::MutableRead),
            0x13 => Some(Self::MutableVerify),
            0x21 => Some(Self::DirWrite),
            0x22 => Some(Self::DirRead),
            0x23 => Some(Self::DirTraverse),
            0x24 => Some(Self::DirVerify),
            0x29 => Some(Self::ImmutableDirRead),
            0x2a => Some(Self::ImmutableDirTraverse),
            0x2b => Some(Self::ImmutableDirVerify),
            _ => None,
        }
    }

    /// The kind whose text prefix is `hrp` (compared ignoring ASCII case), if any.
    pub fn from_hrp(hrp: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.hrp().eq_ignore_ascii_case(hrp))
    }

    /// Fewest characters after the `1` separator a valid text of this kind has (exact for the
    /// fixed-size immutable kinds).
    pub(crate) const fn min_data_part_chars(self) -> usize {
        match self.payload_len() {
            Some(len) => data_part_chars(len),
            None => data_part_chars(0),
        }
    }

    /// Payload length of the fixed-size kinds (every kind but the literal cap).
    pub const fn payload_len(self) -> Option<usize> {
        match self {
            Self::Literal => None,
            Self::ImmutableRead | Self::ImmutableVerify => Some(IMMUTABLE_PAYLOAD_LEN),
            Self::MutableWrite | Self::MutableVerify | Self::DirWrite | Self::DirVerify => Some(32),
            Self::MutableRead
            | Self::DirRead
            | Self::DirTraverse
            | Self::ImmutableDirRead
            | Self::ImmutableDirTraverse
            | Self::ImmutableDirVerify => Some(48),
        }
    }

    /// Whether this kind names a directory.
    pub const fn is_directory(self) -> bool {
        matches!(
            self,
            Self::DirWrite
                | Self::DirRead
                | Self::DirTraverse
                | Self::DirVerify
                | Self::ImmutableDirRead
                | Self::ImmutableDirTraverse
                | Self::ImmutableDirVerify
        )
    }

    /// Whether this kind names a mutable object (file or directory).
    pub const fn is_mutable(self) -> bool {
        matches!(
            self,
            Self::MutableWrite
                | Self::MutableRead
                | Self::MutableVerify
                | Self::DirWrite
                | Self::DirRead
                | Self::DirTraverse
                | Self::DirVerify
        )
    }
}

/// A readable name: "immutable readcap", "immutable verifycap", "literal cap".
impl fmt::Display for CapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ImmutableRead => "immutable readcap",
            Self::ImmutableVerify => "immutable verifycap",
            Self::Literal => "literal cap",
            Self::MutableWrite => "mutable writecap",
            Self::MutableRead => "mutable readcap",
            Self::MutableVerify => "mutable verifycap",
            Self::DirWrite => "directory writecap",
            Self::DirRead => "directory readcap",
            Self::DirTraverse => "directory traversal cap",
            Self::DirVerify => "directory verifycap",
            Self::ImmutableDirRead => "immutable directory readcap",
            Self::ImmutableDirTraverse => "immutable directory traversal cap",
            Self::ImmutableDirVerify => "immutable directory verifycap",
        })
    }
}

/// A cap of any kind, as found in a share link, a directory entry or a command line.
///
/// `Display`/`FromStr` use the text form, [`Cap::to_bytes`]/[`Cap::from_bytes`] the binary form;
/// both are specified in `docs/spec/caps.md`. `Debug` never prints a secret.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cap {
    /// Reads (and verifies) an immutable file.
    ImmutableRead(ImmutableReadCap),
    /// Verifies and repairs an immutable file without reading it.
    ImmutableVerify(ImmutableVerifyCap),
    /// A tiny file held inside the cap.
    Literal(LiteralCap),
    /// Writes (and reads, verifies) a mutable file.
    MutableWrite(MutableWriteCap),
    /// Reads (and verifies) a mutable file.
    MutableRead(MutableReadCap),
    /// Verifies and repairs a mutable file.
    MutableVerify(MutableVerifyCap),
    /// Modifies (and reads, traverses, verifies) a mutable directory.
    DirWrite(DirWriteCap),
    /// Lists a mutable directory (read-only, transitively).
    DirRead(DirReadCap),
    /// Walks a mutable directory tree to the children's verifycaps, without names.
    DirTraverse(DirTraverseCap),
    /// Verifies and repairs the file holding a mutable directory.
    DirVerify(DirVerifyCap),
    /// Lists an immutable directory.
    ImmutableDirRead(ImmutableDirReadCap),
    /// Walks an immutable directory tree to the children's verifycaps, without names.
    ImmutableDirTraverse(ImmutableDirTraverseCap),
    /// Verifies and repairs the file holding an immutable directory.
    ImmutableDirVerify(ImmutableDirVerifyCap),
}

/// Calls `$f` on the inner cap of every variant.
macro_rules! each_variant {
    ($self:expr, $c:ident => $e:expr) => {
        match $self {
            Cap::ImmutableRead($c) => $e,
            Cap::ImmutableVerify($c) => $e,
            Cap::Literal($c) => $e,
            Cap::MutableWrite($c) => $e,
            Cap::MutableRead($c) => $e,
            Cap::MutableVerify($c) => $e,
            Cap::DirWrite($c) => $e,
            Cap::DirRead($c) => $e,
            Cap::DirTraverse($c) => $e,
            Cap::DirVerify($c) => $e,
            Cap::ImmutableDirRead($c) => $e,
            Cap::ImmutableDirTraverse($c) => $e,
            Cap::ImmutableDirVerify($c) => $e,
        }
    };
}

impl Cap {
    /// The kind of this cap.
    pub fn kind(&self) -> CapKind {
        match self {
            Self::ImmutableRead(_) => CapKind::ImmutableRead,
            Self::ImmutableVerify(_) => CapKind::ImmutableVerify,
            Self::Literal(_) => CapKind::Literal,
            Self::MutableWrite(_) => CapKind::MutableWrite,
            Self::MutableRead(_) => CapKind::MutableRead,
            Self::MutableVerify(_) => CapKind::MutableVerify,
            Self::DirWrite(_) => CapKind::DirWrite,
            Self::DirRead(_) => CapKind::DirRead,
            Self::DirTraverse(_) => CapKind::DirTraverse,
            Self::DirVerify(_) => CapKind::DirVerify,
            Self::ImmutableDirRead(_) => CapKind::ImmutableDirRead,
            Self::ImmutableDirTraverse(_) => CapKind::ImmutableDirTraverse,
            Self::ImmutableDirVerify(_) => CapKind::ImmutableDirVerify,
        }
    }

    /// The immutable verifycap of the same file: derived from a readcap, itself for a
    /// verifycap, the verifycap of the file holding an immutable directory for the immutable
    /// directory kinds, and `None` for a literal cap (its file is in the cap: there are no
    /// shares to verify) and for the mutable kinds (see [`Cap::mutable_verify_cap`]).
    pub fn verify_cap(&self) -> Option<ImmutableVerifyCap> {
        match self {
            Self::ImmutableRead(c) => Some(c.verify_cap()),
            Self::ImmutableVerify(c) => Some(*c),
            Self::ImmutableDirRead(c) => Some(c.verify_cap().file_verify_cap()),
            Self::ImmutableDirTraverse(c) => Some(c.verify_cap().file_verify_cap()),
            Self::ImmutableDirVerify(c) => Some(c.file_verify_cap()),
            _ => None,
        }
    }

    /// The verifycap of the mutable file behind a mutable file or directory cap (for a
    /// directory: the file holding it); `None` for the immutable kinds.
    pub fn mutable_verify_cap(&self) -> Option<MutableVerifyCap> {
        let pk = match self {
            Self::MutableWrite(c) => c.public_key(),
            Self::MutableRead(c) => c.public_key(),
            Self::MutableVerify(c) => c.public_key(),
            Self::DirWrite(c) => c.public_key(),
            Self::DirRead(c) => c.public_key(),
            Self::DirTraverse(c) => c.public_key(),
            Self::DirVerify(c) => c.public_key(),
            _ => return None,
        };
        Some(MutableVerifyCap::new(*pk))
    }

    /// Length of the binary form in bytes.
    pub fn binary_len(&self) -> usize {
        match self {
            Self::Literal(c) => c.binary_len(),
            other => 1 + other.kind().payload_len().unwrap_or(0),
        }
    }

    /// Appends the binary form to `out`. Binary caps are self-delimiting, so several can be
    /// written one after another and read back with [`Cap::read_from`].
    pub fn write_to(&self, out: &mut Vec<u8>) {
        each_variant!(self, c => c.write_to(out))
    }

    /// The binary form: kind byte, then payload.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.binary_len());
        self.write_to(&mut out);
        out
    }

    /// Parses exactly one binary cap: bytes after it are [`Error::TrailingBytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let (cap, used) = Self::read_from(bytes)?;
        if used < bytes.len() {
            return Err(Error::TrailingBytes {
                kind: cap.kind(),
                extra: bytes.len() - used,
            });
        }
        Ok(cap)
    }

    /// Parses the binary cap at the start of `bytes`, returning it and the number of bytes it
    /// took; whatever follows is left alone. Never reads past `bytes`, never panics.
    pub fn read_from(bytes: &[u8]) -> Result<(Self, usize), Error> {
        let Some((&byte, rest)) = bytes.split_first() else {
            return Err(Error::EmptyBinary);
        };
        let Some(kind) = CapKind::from_kind_byte(byte) else {
            return Err(Error::UnknownKind { byte });
        };
        let available = bytes.len();
        match kind.payload_len() {
            Some(len) => {
                let needed = 1 + len;
                let Some(payload) = rest.get(..len) else {
                    return Err(Error::BinaryTruncated {
                        kind,
                        needed,
                        available,
                    });
                };
                Ok((Self::from_payload(kind, payload)?, needed))
            }
            None => {
                let Some((&len, rest)) = rest.split_first() else {
                    return Err(Error::BinaryTruncated {
                        kind,
                        needed: 2,
                        available,
                    });
                };
                let len = usize::from(len);
                if len > LiteralCap::MAX_LEN {
                    return Err(Error::LiteralTooLong {
                        len,
                        max: LiteralCap::MAX_LEN,
                    });
                }
                let needed = 2 + len;
                let Some(data) = rest.get(..len) else {
                    return Err(Error::BinaryTruncated {
                        kind,
                        needed,
                        available,
                    });
                };
                Ok((Self::Literal(LiteralCap::new(data.to_vec())?), needed))
            }
        }
    }

    /// Builds a cap of `kind` from its payload (the same bytes in text and binary form for the
    /// immutable kinds; the bare data for literals).
    fn from_payload(kind: CapKind, payload: &[u8]) -> Result<Self, Error> {
        Ok(match kind {
            CapKind::ImmutableRead => Self::ImmutableRead(ImmutableReadCap::from_payload(payload)?),
            CapKind::ImmutableVerify => {
                Self::ImmutableVerify(ImmutableVerifyCap::from_payload(payload)?)
            }
            CapKind::Literal => Self::Literal(LiteralCap::new(payload.to_vec())?),
            CapKind::MutableWrite => Self::MutableWrite(MutableWriteCap::from_payload(payload)?),
            CapKind::MutableRead => Self::MutableRead(MutableReadCap::from_payload(payload)?),
            CapKind::MutableVerify => Self::MutableVerify(MutableVerifyCap::from_payload(payload)?),
            CapKind::DirWrite => Self::DirWrite(DirWriteCap::from_payload(payload)?),
            CapKind::DirRead => Self::DirRead(DirReadCap::from_payload(payload)?),
            CapKind::DirTraverse => Self::DirTraverse(DirTraverseCap::from_payload(payload)?),
            CapKind::DirVerify => Self::DirVerify(DirVerifyCap::from_payload(payload)?),
            CapKind::ImmutableDirRead => {
                Self::ImmutableDirRead(ImmutableDirReadCap::from_payload(payload)?)
            }
            CapKind::ImmutableDirTraverse => {
                Self::ImmutableDirTraverse(ImmutableDirTraverseCap::from_payload(payload)?)
            }
            CapKind::ImmutableDirVerify => {
                Self::ImmutableDirVerify(ImmutableDirVerifyCap::from_payload(payload)?)
            }
        })
    }
}

/// The text form of the cap (see each kind's `Display`).
impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        each_variant!(self, c => fmt::Display::fmt(c, f))
    }
}

/// Parses the text form of any kind. Strict: no surrounding whitespace, no URI scheme, one
/// case throughout, bech32m checksum only, canonical padding.
impl FromStr for Cap {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let (kind, payload) = parse_text(s)?;
        Self::from_payload(kind, &payload)
    }
}

impl From<ImmutableReadCap> for Cap {
    fn from(c: ImmutableReadCap) -> Self {
        Self::ImmutableRead(c)
    }
}

impl From<ImmutableVerifyCap> for Cap {
    fn from(c: ImmutableVerifyCap) -> Self {
        Self::ImmutableVerify(c)
    }
}

impl From<LiteralCap> for Cap {
    fn from(c: LiteralCap) -> Self {
        Self::Literal(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ReadKey, SelectionIndex, StorageIndex};

    fn readcap() -> ImmutableReadCap {
        ImmutableReadCap::new(ReadKey::from_bytes([7; 16]), StorageIndex([9; 32]))
    }

    fn all_caps() -> Vec<Cap> {
        vec![
            readcap().into(),
            readcap().verify_cap().into(),
            LiteralCap::new(b"hello".to_vec()).unwrap().into(),
            LiteralCap::new(vec![]).unwrap().into(),
        ]
    }

    #[test]
    fn kind_table() {
        for kind in CapKind::ALL {
            assert_eq!(CapKind::from_kind_byte(kind.kind_byte()), Some(kind));
            assert_eq!(CapKind::from_hrp(kind.hrp()), Some(kind));
            assert_eq!(
                CapKind::from_hrp(&kind.hrp().to_ascii_uppercase()),
                Some(kind)
            );
        }
        assert_eq!(CapKind::from_kind_byte(0), None);
        assert_eq!(CapKind::from_hrp("lafs"), None);
    }

    #[test]
    fn layouts() {
        let b = readcap().to_bytes();
        assert_eq!(b.len(), 49);
        assert_eq!(b[0], 0x01);
        assert_eq!(&b[1..17], &[7; 16]);
        assert_eq!(&b[17..], &[9; 32]);
        let v = readcap().verify_cap();
        let b = v.to_bytes();
        assert_eq!(b[0], 0x02);
        assert_eq!(&b[1..33], &[9; 32]);
        assert_eq!(&b[33..], &v.selection_index().0);
        let b = LiteralCap::new(b"hi".to_vec()).unwrap().to_bytes();
        assert_eq!(b, [0x03, 2, b'h', b'i']);
        for cap in all_caps() {
            assert_eq!(cap.to_bytes().len(), cap.binary_len());
        }
    }

    #[test]
    fn verify_cap_of_each_kind() {
        let r = readcap();
        let v = r.verify_cap();
        assert_eq!(v.storage_index(), r.storage_index());
        assert_eq!(*v.selection_index(), r.selection_index());
        assert_eq!(Cap::from(r).verify_cap(), Some(v));
        assert_eq!(Cap::from(v).verify_cap(), Some(v));
        assert_eq!(
            Cap::from(LiteralCap::new(vec![1]).unwrap()).verify_cap(),
            None
        );
    }

    #[test]
    fn debug_never_prints_secrets() {
        let r = readcap();
        let text = r.to_string();
        let dbg = format!("{:?} {:?}", r, Cap::from(r.clone()));
        assert!(!dbg.contains(&text[6..20]), "{dbg}");
        assert!(!dbg.contains("07, 07") && !dbg.contains("0707"), "{dbg}");
        let lit = LiteralCap::new(b"secret words".to_vec()).unwrap();
        let dbg = format!("{lit:?} {:?}", Cap::from(lit.clone()));
        assert!(!dbg.contains("115") && !dbg.contains("secret"), "{dbg}");
        assert_eq!(format!("{lit:?}"), "LiteralCap { len: 12, .. }");
    }

    #[test]
    fn empty_binary() {
        assert_eq!(Cap::read_from(&[]), Err(Error::EmptyBinary));
        assert_eq!(Cap::from_bytes(&[]), Err(Error::EmptyBinary));
        assert_eq!(ImmutableReadCap::from_bytes(&[]), Err(Error::EmptyBinary));
    }

    #[test]
    fn unknown_kind() {
        for byte in [0x00, 0x04, 0x10, 0x1f, 0x20, 0x2f, 0xff] {
            assert_eq!(
                Cap::from_bytes(&[byte; 60]),
                Err(Error::UnknownKind { byte })
            );
        }
        assert_eq!(
            Error::UnknownKind { byte: 0x10 }.to_string(),
            "unknown cap kind byte 0x10 (reserved for mutable-file caps, not supported by this \
             version)"
        );
        assert_eq!(
            Error::UnknownKind { byte: 0x21 }.to_string(),
            "unknown cap kind byte 0x21 (reserved for directory caps, not supported by this \
             version)"
        );
        assert_eq!(
            Error::UnknownKind { byte: 0 }.to_string(),
            "unknown cap kind byte 0x00"
        );
    }

    #[test]
    fn binary_truncated() {
        let b = readcap().to_bytes();
        let kind = CapKind::ImmutableRead;
        assert_eq!(
            Cap::from_bytes(&b[..48]),
            Err(Error::BinaryTruncated {
                kind,
                needed: 49,
                available: 48
            })
        );
        assert_eq!(
            Cap::read_from(&b[..1]),
            Err(Error::BinaryTruncated {
                kind,
                needed: 49,
                available: 1
            })
        );
        let b = readcap().verify_cap().to_bytes();
        let kind = CapKind::ImmutableVerify;
        assert_eq!(
            Cap::from_bytes(&b[..10]),
            Err(Error::BinaryTruncated {
                kind,
                needed: 49,
                available: 10
            })
        );
        let kind = CapKind::Literal;
        assert_eq!(
            Cap::from_bytes(&[3]),
            Err(Error::BinaryTruncated {
                kind,
                needed: 2,
                available: 1
            })
        );
        assert_eq!(
            Cap::from_bytes(&[3, 5, 1, 2]),
            Err(Error::BinaryTruncated {
                kind,
                needed: 7,
                available: 4
            })
        );
    }

    #[test]
    fn binary_literal_too_long() {
        let mut b = vec![3, 56];
        b.extend([0; 56]);
        assert_eq!(
            Cap::from_bytes(&b),
            Err(Error::LiteralTooLong { len: 56, max: 55 })
        );
        assert_eq!(
            Cap::from_bytes(&[3, 255]),
            Err(Error::LiteralTooLong { len: 255, max: 55 })
        );
    }

    #[test]
    fn trailing_bytes() {
        let mut b = readcap().to_bytes();
        b.extend([0, 0]);
        let kind = CapKind::ImmutableRead;
        assert_eq!(
            Cap::from_bytes(&b),
            Err(Error::TrailingBytes { kind, extra: 2 })
        );
        assert_eq!(
            ImmutableReadCap::from_bytes(&b),
            Err(Error::TrailingBytes { kind, extra: 2 })
        );
        assert_eq!(
            LiteralCap::from_bytes(&[3, 0, 3, 0]),
            Err(Error::TrailingBytes {
                kind: CapKind::Literal,
                extra: 2
            })
        );
    }

    #[test]
    fn binary_wrong_kind() {
        let b = readcap().to_bytes();
        assert_eq!(
            ImmutableVerifyCap::from_bytes(&b),
            Err(Error::WrongKind {
                expected: CapKind::ImmutableVerify,
                found: CapKind::ImmutableRead
            })
        );
        assert_eq!(
            LiteralCap::from_bytes(&b),
            Err(Error::WrongKind {
                expected: CapKind::Literal,
                found: CapKind::ImmutableRead
            })
        );
        let b = readcap().verify_cap().to_bytes();
        assert_eq!(
            ImmutableReadCap::from_bytes(&b),
            Err(Error::WrongKind {
                expected: CapKind::ImmutableRead,
                found: CapKind::ImmutableVerify
            })
        );
    }

    #[test]
    fn concatenated_caps() {
        let caps = all_caps();
        let mut buf = Vec::new();
        for c in &caps {
            c.write_to(&mut buf);
        }
        let mut rest = &buf[..];
        let mut back = Vec::new();
        while !rest.is_empty() {
            let (cap, used) = Cap::read_from(rest).unwrap();
            back.push(cap);
            rest = &rest[used..];
        }
        assert_eq!(back, caps);
    }

    #[test]
    fn typed_round_trips() {
        let r = readcap();
        assert_eq!(ImmutableReadCap::from_bytes(&r.to_bytes()), Ok(r.clone()));
        assert_eq!(r.to_string().parse::<ImmutableReadCap>(), Ok(r.clone()));
        let v = r.verify_cap();
        assert_eq!(ImmutableVerifyCap::from_bytes(&v.to_bytes()), Ok(v));
        assert_eq!(v.to_string().parse::<ImmutableVerifyCap>(), Ok(v));
        let l = LiteralCap::new(vec![1, 2, 3]).unwrap();
        assert_eq!(LiteralCap::from_bytes(&l.to_bytes()), Ok(l.clone()));
        assert_eq!(l.to_string().parse::<LiteralCap>(), Ok(l));
        let v2 = ImmutableVerifyCap::new(StorageIndex([0; 32]), SelectionIndex([0xff; 16]));
        assert_eq!(Cap::from(v2).to_string().parse::<Cap>(), Ok(Cap::from(v2)));
    }
}
