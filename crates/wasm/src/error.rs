//! The crate's error type and its JavaScript projection.

use wasm_bindgen::prelude::wasm_bindgen;

/// Everything the API can reject.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The cap text is not a valid lafs cap; the inner error says which check failed and where.
    #[error(transparent)]
    Cap(#[from] lafs_caps::Error),
    /// A share-link fragment holds no cap (nothing before the first `&`).
    #[error("the link holds no cap: nothing follows `#`")]
    NoCapInLink,
    /// A hash tag given to [`tagged_hash_hex`](crate::tagged_hash_hex) is longer than its
    /// one-byte length prefix allows (255 bytes).
    #[error("hash tag of {len} bytes is longer than 255 bytes")]
    TagTooLong {
        /// Length of the tag, in bytes.
        len: usize,
    },
    /// Leaf hashes given to [`merkle_root_hex`](crate::merkle_root_hex) are not whole 32-byte
    /// hashes.
    #[error("leaf hashes must be whole 32-byte hashes: {len} bytes is not a multiple of 32")]
    LeafBytes {
        /// Number of bytes given.
        len: usize,
    },
    /// File data (UEB, proof or segment) failed verification against the cap: a damaged or
    /// tampered share, a dishonest server, or a cap for another file. Nothing of it is used.
    #[error("integrity check failed: {what}")]
    Integrity {
        /// What did not verify.
        what: String,
    },
    /// A [`FileReader`](crate::FileReader) or [`FileWriter`](crate::FileWriter) method was
    /// called before its inputs were given, or with a number that is not a valid offset/index.
    #[error("called out of order or with an invalid offset or index")]
    InvalidUse,
    /// A directory or grid operation failed; `code` says how (see [`Error::code`]), `what`
    /// explains it (it never holds a cap or key).
    #[error("{what}")]
    Grid {
        /// Stable code: `not-permitted`, `exists`, `no-such-entry`, `bad-name`,
        /// `not-a-directory`, `not-a-file`, `not-found`, `not-enough-shares`, `no-servers`,
        /// `conflict`, `unreachable`, `grid`.
        code: &'static str,
        /// What happened.
        what: String,
    },
}

impl From<lafs_dirnode::Error> for Error {
    fn from(e: lafs_dirnode::Error) -> Self {
        use lafs_dirnode::Error as D;
        let code = match &e {
            D::NotPermitted { .. } => "not-permitted",
            D::AlreadyExists { .. } => "exists",
            D::NotFound { .. } => "no-such-entry",
            D::BadName { .. } => "bad-name",
            D::NotADirectoryCap { .. } => "not-a-directory",
            _ => "integrity",
        };
        if code == "integrity" {
            return Self::Integrity {
                what: e.to_string(),
            };
        }
        Self::Grid {
            code,
            what: e.to_string(),
        }
    }
}

impl From<lafs_client::Error> for Error {
    fn from(e: lafs_client::Error) -> Self {
        use lafs_client::Error as C;
        let code = match &e {
            C::Dirnode(d) => return d.clone().into(),
            C::Codec(c) => return c.clone().into(),
            C::Cap(c) => return c.clone().into(),
            C::NotFound { .. } => "not-found",
            C::NotEnoughShares { .. } => "not-enough-shares",
            C::NoServers | C::NotHappy { .. } => "no-servers",
            C::UncoordinatedWrite { .. } => "conflict",
            C::MutableWrite { .. } => "unreachable",
            _ => "grid",
        };
        Self::Grid {
            code,
            what: e.to_string(),
        }
    }
}

impl From<lafs_codec::Error> for Error {
    fn from(e: lafs_codec::Error) -> Self {
        Self::Integrity {
            what: e.to_string(),
        }
    }
}

impl From<lafs_hashtree::Error> for Error {
    fn from(e: lafs_hashtree::Error) -> Self {
        Self::Integrity {
            what: e.to_string(),
        }
    }
}

impl Error {
    /// A stable, machine-readable name for the failure, for scripts that react to it
    /// (the message may be reworded; the code is not).
    ///
    /// | code | cause |
    /// |---|---|
    /// | `empty` | the text is empty |
    /// | `too-long` | longer than any cap |
    /// | `non-ascii` | a character outside ASCII |
    /// | `tahoe-cap` | a Tahoe-LAFS `URI:…` cap |
    /// | `missing-separator` | no `1` after the prefix |
    /// | `unknown-prefix` | the prefix names no kind of cap |
    /// | `mixed-case` | upper and lower case mixed |
    /// | `invalid-char` | a character outside the bech32 alphabet |
    /// | `truncated` | the cap was cut off |
    /// | `bad-checksum` | the checksum does not match (a typo) |
    /// | `bech32-not-bech32m` | old bech32 checksum |
    /// | `non-canonical` | not the canonical encoding |
    /// | `wrong-payload-length` | payload of the wrong size for its kind |
    /// | `literal-too-long` | literal data over 55 bytes |
    /// | `wrong-kind` | a cap of another kind where one kind was expected |
    /// | `invalid-cap` | any other cap error |
    /// | `no-cap-in-link` | [`Error::NoCapInLink`] |
    /// | `tag-too-long` | [`Error::TagTooLong`] |
    /// | `leaf-bytes` | [`Error::LeafBytes`] |
    /// | `integrity` | [`Error::Integrity`] |
    /// | `invalid-use` | [`Error::InvalidUse`] |
    /// | `not-permitted`, `exists`, `no-such-entry`, `bad-name`, `not-a-directory`, `not-a-file`, `not-found`, `not-enough-shares`, `no-servers`, `conflict`, `unreachable`, `grid` | [`Error::Grid`] |
    pub fn code(&self) -> &'static str {
        use lafs_caps::Error as E;
        match self {
            Self::Cap(e) => match e {
                E::EmptyText => "empty",
                E::TextTooLong { .. } => "too-long",
                E::NonAscii { .. } => "non-ascii",
                E::TahoeCap => "tahoe-cap",
                E::MissingSeparator => "missing-separator",
                E::UnknownPrefix { .. } => "unknown-prefix",
                E::MixedCase => "mixed-case",
                E::InvalidChar { .. } => "invalid-char",
                E::Truncated { .. } => "truncated",
                E::BadChecksum => "bad-checksum",
                E::Bech32NotBech32m => "bech32-not-bech32m",
                E::NonCanonical => "non-canonical",
                E::WrongPayloadLength { .. } => "wrong-payload-length",
                E::LiteralTooLong { .. } => "literal-too-long",
                E::WrongKind { .. } => "wrong-kind",
                _ => "invalid-cap",
            },
            Self::NoCapInLink => "no-cap-in-link",
            Self::TagTooLong { .. } => "tag-too-long",
            Self::LeafBytes { .. } => "leaf-bytes",
            Self::Integrity { .. } => "integrity",
            Self::InvalidUse => "invalid-use",
            Self::Grid { code, .. } => code,
        }
    }
}

/// An [`Error`] as JavaScript sees it: thrown by every fallible function of this API.
///
/// It carries no secret: cap errors name positions and characters, never a key.
#[wasm_bindgen]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LafsError {
    code: &'static str,
    message: String,
}

#[wasm_bindgen]
impl LafsError {
    /// Stable machine-readable code (see [`Error::code`] for the list).
    #[wasm_bindgen(getter)]
    pub fn code(&self) -> String {
        self.code.to_owned()
    }

    /// Human-readable explanation, suitable for showing to the user.
    #[wasm_bindgen(getter)]
    pub fn message(&self) -> String {
        self.message.clone()
    }

    /// The message, so that `String(e)` and template literals read well in JS.
    #[wasm_bindgen(js_name = toString)]
    pub fn to_js_string(&self) -> String {
        self.message.clone()
    }
}

impl core::fmt::Display for LafsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LafsError {}

impl From<Error> for LafsError {
    fn from(e: Error) -> Self {
        Self {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl From<lafs_caps::Error> for LafsError {
    fn from(e: lafs_caps::Error) -> Self {
        Error::from(e).into()
    }
}
