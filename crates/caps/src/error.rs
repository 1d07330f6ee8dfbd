//! The crate's error type.

use crate::CapKind;

/// Everything that can go wrong when parsing or building a cap.
///
/// Text-form errors are reported in the order the checks run (see `docs/spec/caps.md`): shape
/// of the string first, then the prefix, then characters, then the checksum, then the payload.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A literal cap's data is longer than [`LiteralCap::MAX_LEN`](crate::LiteralCap::MAX_LEN).
    #[error("literal data of {len} bytes is longer than the {max}-byte limit")]
    LiteralTooLong {
        /// Length given.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// The text is empty.
    #[error("not a lafs cap: the text is empty")]
    EmptyText,
    /// The text is longer than any cap can be; it was rejected before decoding.
    #[error("not a lafs cap: {len} bytes is longer than any cap ({max} at most)")]
    TextTooLong {
        /// Length of the text, in bytes.
        len: usize,
        /// Longest text accepted.
        max: usize,
    },
    /// The text contains a character outside ASCII.
    #[error("not a lafs cap: non-ASCII character {ch:?} at byte {index}")]
    NonAscii {
        /// The offending character.
        ch: char,
        /// Its byte offset in the text.
        index: usize,
    },
    /// The text is a Tahoe-LAFS cap (`URI:...`), which this format does not read.
    #[error("this is a Tahoe-LAFS cap (`URI:...`), not a lafs cap")]
    TahoeCap,
    /// The text has no `1` separating the prefix from the data.
    #[error("not a lafs cap: no `1` separating the prefix from the data")]
    MissingSeparator,
    /// The prefix (the part before the last `1`) names no known kind of cap.
    #[error("not a lafs cap: unknown prefix `{prefix}`")]
    UnknownPrefix {
        /// The prefix as given.
        prefix: String,
    },
    /// The text mixes upper and lower case letters (a cap is all one case).
    #[error("cap mixes upper and lower case: a cap is written all in one case")]
    MixedCase,
    /// The data part contains a character outside the bech32 alphabet.
    #[error("cap contains {ch:?} at byte {index}, which is not a bech32 character (the data part never contains 1, b, i or o)")]
    InvalidChar {
        /// The offending character.
        ch: char,
        /// Its byte offset in the text.
        index: usize,
    },
    /// The data part is shorter than the kind needs (the cap was cut off).
    #[error("{kind} is truncated: {found} characters after the prefix, {expected} expected")]
    Truncated {
        /// Kind named by the prefix.
        kind: CapKind,
        /// Characters after the separator a cap of this kind has (at least, for literals).
        expected: usize,
        /// Characters after the separator found.
        found: usize,
    },
    /// The bech32m checksum does not match.
    #[error("cap checksum does not match: probably a typo")]
    BadChecksum,
    /// The text carries a valid bech32 (original BIP-173) checksum; lafs caps use bech32m.
    #[error("cap has a bech32 checksum, but lafs caps use bech32m")]
    Bech32NotBech32m,
    /// The checksum matches but the text is not the canonical encoding of its bytes
    /// (non-zero or excess padding bits), so it is not the form lafs writes.
    #[error("cap is not in canonical form (non-zero or excess padding bits)")]
    NonCanonical,
    /// The payload (text or binary) has the wrong number of bytes for its kind.
    #[error("{kind} payload must be {expected} bytes, found {found}")]
    WrongPayloadLength {
        /// Kind of the cap.
        kind: CapKind,
        /// Payload length of that kind.
        expected: usize,
        /// Payload length found.
        found: usize,
    },
    /// A valid cap of another kind was given where a specific kind is expected
    /// (for example a readcap where a verifycap is expected).
    #[error("expected {expected}, found {found}")]
    WrongKind {
        /// The kind the caller asked for.
        expected: CapKind,
        /// The kind found.
        found: CapKind,
    },

    /// The binary cap is empty (no kind byte).
    #[error("binary cap is empty")]
    EmptyBinary,
    /// The binary cap's kind byte names no kind this version knows.
    #[error("unknown cap kind byte {byte:#04x}{hint}", hint = kind_byte_hint(*.byte))]
    UnknownKind {
        /// The kind byte.
        byte: u8,
    },
    /// The binary cap ends before its payload does.
    #[error("binary {kind} is truncated: needs {needed} bytes, only {available} available")]
    BinaryTruncated {
        /// Kind named by the kind byte.
        kind: CapKind,
        /// Bytes the cap needs, kind byte included (as far as known).
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// A mutable cap's public key is not a valid Ed25519 point encoding.
    #[error("the public key in this mutable cap is not a valid Ed25519 key")]
    InvalidPublicKey,
    /// Bytes follow a complete binary cap where exactly one cap was expected.
    #[error("binary {kind} is followed by {extra} trailing byte(s)")]
    TrailingBytes {
        /// Kind of the cap.
        kind: CapKind,
        /// Number of bytes after the cap.
        extra: usize,
    },
}

/// Explains reserved kind-byte ranges in [`Error::UnknownKind`] messages.
fn kind_byte_hint(byte: u8) -> &'static str {
    match byte {
        0x10..=0x1f => " (reserved for mutable-file caps, not supported by this version)",
        0x20..=0x2f => " (reserved for directory caps, not supported by this version)",
        _ => "",
    }
}
