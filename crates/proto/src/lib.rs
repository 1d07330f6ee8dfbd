//! Wire types of the lafs storage protocol, shared by the storage server, clients and the browser.
//!
//! This crate is pure: no IO, no clock, no randomness (callers pass the time and the nonce in),
//! and it builds for `wasm32-unknown-unknown`. It provides
//!
//! * [`ids`]: identifiers as they appear in URLs and JSON: [`StorageIndex`] (base32),
//!   [`UploadId`], [`ShareNum`], [`AccountId`], [`Nonce`], all parsed strictly so a value has
//!   exactly one textual form;
//! * [`storage`]: the JSON request and response bodies of `/storage/v1/` and the error body;
//! * [`read`]: the multi-range read request and the binary framing of its response;
//! * [`signing`]: signed requests (ed25519 account keys, timestamp, nonce), the pure
//!   verification function and the [`ReplayGuard`] that remembers seen nonces.
//!
//! The protocol is specified in `docs/spec/storage-protocol.md` and request signing in
//! `docs/spec/signed-requests.md`.
//!
//! ```
//! use lafs_proto::signing::{sign_request, verify_request, ReplayGuard, RequestParts, VerifyPolicy};
//! use lafs_proto::ids::Nonce;
//! use ed25519_dalek::SigningKey;
//!
//! let key = SigningKey::from_bytes(&[7u8; 32]);
//! let body = br#"{"shares":[0,1]}"#;
//! let req = RequestParts::new("POST", "/storage/v1/immutable/upload/aaaaaaaaaaaaaaaaaaaaaaaaaa", "", body);
//! let headers = sign_request(&key, "server-1", &req, 1_700_000_000, Nonce([1; 16]));
//!
//! let mut guard = ReplayGuard::new(1000);
//! let policy = VerifyPolicy::default();
//! let account = verify_request("server-1", &req, &headers, 1_700_000_010, &policy, &mut guard).unwrap();
//! assert_eq!(account, headers.account);
//! // The same request a second time is a replay.
//! assert!(verify_request("server-1", &req, &headers, 1_700_000_011, &policy, &mut guard).is_err());
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod ids;
pub mod introducer;
pub mod mutable;
pub mod read;
pub mod signing;
pub mod storage;

pub use ids::{AccountId, Nonce, ShareNum, StorageIndex, UploadId};
pub use read::{ReadPart, ReadRange, ReadRequest, ShareRead};
pub use signing::{ReplayGuard, RequestParts, SignedHeaders, VerifyPolicy};

/// Everything that can go wrong when parsing protocol values or verifying a signed request.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A value that should be lowercase unpadded base32 is not (wrong alphabet, uppercase,
    /// padding, or non-zero trailing bits).
    #[error("{what} is not valid lowercase unpadded base32")]
    BadBase32 {
        /// Which value.
        what: &'static str,
    },
    /// A decoded value has the wrong number of bytes.
    #[error("{what} must be {expected} bytes, got {got}")]
    BadLength {
        /// Which value.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Length found.
        got: usize,
    },
    /// A decimal number is malformed (empty, sign, leading zero, non-digit) or out of range.
    #[error("{what} is not a valid number in range")]
    BadNumber {
        /// Which value.
        what: &'static str,
    },
    /// A read request is invalid.
    #[error("read request: {reason}")]
    BadReadRequest {
        /// Why.
        reason: &'static str,
    },
    /// A mutable write body is malformed.
    #[error("mutable write: {reason}")]
    BadMutableWrite {
        /// Why.
        reason: &'static str,
    },
    /// A read response does not start with the expected magic bytes.
    #[error("read response: bad magic")]
    BadMagic,
    /// A read response ends in the middle of a part.
    #[error("read response: truncated at byte {offset} (part {part})")]
    Truncated {
        /// Byte offset where more data was expected.
        offset: u64,
        /// Index of the part being read.
        part: u32,
    },
    /// A read response part header is invalid.
    #[error("read response: part {part} has an invalid header: {reason}")]
    BadPart {
        /// Index of the part.
        part: u32,
        /// Why.
        reason: &'static str,
    },
    /// A read response has bytes after its last part.
    #[error("read response: {extra} trailing bytes after the last part")]
    TrailingBytes {
        /// Number of unexpected bytes.
        extra: u64,
    },
    /// A signing header is absent.
    #[error("missing header {header}")]
    MissingHeader {
        /// Header name.
        header: &'static str,
    },
    /// A signing header is present but cannot be parsed.
    #[error("malformed header {header}")]
    MalformedHeader {
        /// Header name.
        header: &'static str,
    },
    /// The request's timestamp is too far from the verifier's clock.
    #[error(
        "timestamp {timestamp} is more than {max_skew} s away from the server's clock ({now})"
    )]
    StaleTimestamp {
        /// Timestamp in the request (Unix seconds).
        timestamp: u64,
        /// Verifier's clock (Unix seconds).
        now: u64,
        /// Allowed difference in seconds.
        max_skew: u64,
    },
    /// The account key is not a valid ed25519 public key.
    #[error("account key is not a valid ed25519 public key")]
    BadAccountKey,
    /// The signature does not verify for this request and account key.
    #[error("signature does not verify")]
    BadSignature,
    /// The (account, nonce) pair was already used within the validity window.
    #[error("nonce already used: replayed request")]
    ReplayedNonce,
    /// The replay cache is full of unexpired nonces; the request cannot be checked now.
    #[error("replay cache is full ({capacity} unexpired nonces); retry later")]
    ReplayCacheFull {
        /// Cache capacity.
        capacity: usize,
    },
}
