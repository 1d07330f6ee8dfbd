//! JSON bodies of the storage protocol (`/storage/v1/`), see `docs/spec/storage-protocol.md`.
//!
//! Request bodies reject unknown fields (a misspelt field is an error, not a silent default);
//! clients should ignore response fields they do not know, so servers may add fields.

use serde::{Deserialize, Serialize};

use crate::ids::{opt_si_text, si_text, ShareNum, StorageIndex, UploadId};

/// Protocol name and major version announced by `GET /storage/v1/version`.
pub const PROTOCOL: &str = "lafs-storage/1";

/// Path prefix of every endpoint of this protocol version.
pub const API_PREFIX: &str = "/storage/v1";

/// Media type of the binary multi-range read response (see [`crate::read`]).
pub const READ_RESPONSE_MEDIA_TYPE: &str = "application/x-lafs-read-v1";

/// Largest corruption-advisory reason accepted, in bytes.
pub const MAX_ADVISORY_REASON: usize = 1024;

/// Response of `GET /storage/v1/version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionResponse {
    /// Always [`PROTOCOL`] for this version.
    pub protocol: String,
    /// Implementation name and version, informational.
    pub server_version: String,
    /// Opaque identifier of this server; it is the *audience* every signed request must name
    /// (see [`crate::signing`]), so a request signed for one server is useless on another.
    pub server_id: String,
    /// The operator set the server read-only: no uploads are accepted.
    pub read_only: bool,
    /// Immutable uploads are accepted (`!read_only`).
    pub accepts_immutable: bool,
    /// Mutable shares are accepted. Always `false` for now: mutable shares are not implemented.
    pub accepts_mutable: bool,
    /// Space figures.
    pub capacity: Capacity,
    /// Limits the server enforces.
    pub limits: Limits,
}

/// Space figures, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// Size of the storage the server may use.
    pub total_bytes: u64,
    /// Space left for new shares (after the operator's reserve).
    pub available_bytes: u64,
}

/// Limits a server enforces; requests beyond them are rejected with a 4xx status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest request body in bytes (a write carries at most this many share bytes).
    pub max_request_body: u64,
    /// Largest share in bytes.
    pub max_share_size: u64,
    /// Largest number of ranges in one read request.
    pub max_read_ranges: u32,
    /// Largest total number of data bytes one read request may return.
    pub max_read_bytes: u64,
    /// An upload with no activity for this long is discarded.
    pub upload_ttl_secs: u64,
    /// Largest accepted difference between a signed request's timestamp and the server clock.
    pub max_clock_skew_secs: u64,
}

/// Body of `POST /storage/v1/immutable/upload/{upload_id}` (allocate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocateRequest {
    /// Share numbers the client wants to upload to this server (no duplicates, at most 256).
    pub shares: Vec<ShareNum>,
    /// Size of each share in bytes, if known (the largest, if they differ). Lets the server
    /// reserve space, refuse early, and report missing ranges; writes beyond it are rejected.
    #[serde(default)]
    pub share_size: Option<u64>,
    /// The storage index the client expects the shares to get, if it knows it already (for
    /// example when repairing). Shares the server already holds under it are reported in
    /// [`AllocateResponse::already_have`] and not allocated.
    #[serde(default, with = "opt_si_text", skip_serializing_if = "Option::is_none")]
    pub expected_si: Option<StorageIndex>,
}

/// Response to an allocate request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocateResponse {
    /// The upload identifier, echoed.
    pub upload_id: UploadId,
    /// Shares the client should now write (the requested ones minus `already_have`), ascending.
    pub allocated: Vec<ShareNum>,
    /// Requested shares already held, finished, under `expected_si`, ascending.
    pub already_have: Vec<ShareNum>,
    /// Seconds of inactivity after which the upload is discarded.
    pub expires_in_secs: u64,
}

/// A half-open byte range `start..end` of a share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte (`end > start`).
    pub end: u64,
}

/// Response of `PUT /storage/v1/immutable/upload/{upload_id}/{share}?offset=N` (write).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteResponse {
    /// The share written.
    pub share: ShareNum,
    /// Number of distinct bytes of this share the server now holds.
    pub received_bytes: u64,
}

/// State of one share of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShareState {
    /// Bytes are being received; not visible to readers.
    Receiving,
    /// Verified and filed under its storage index; visible to readers.
    Finished,
}

/// One share in an [`UploadStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareStatus {
    /// Share number.
    pub share: ShareNum,
    /// Receiving or finished.
    pub state: ShareState,
    /// Ranges received so far, ascending and non-overlapping (merged).
    pub received: Vec<ByteRange>,
    /// Ranges still missing below `share_size`; `null` when the size is not known.
    pub missing: Option<Vec<ByteRange>>,
    /// Storage index the share was filed under, once finished.
    #[serde(default, with = "opt_si_text", skip_serializing_if = "Option::is_none")]
    pub storage_index: Option<StorageIndex>,
}

/// Response of `GET /storage/v1/immutable/upload/{upload_id}` (resume after a disconnect).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadStatus {
    /// The upload identifier.
    pub upload_id: UploadId,
    /// Declared share size, if any.
    pub share_size: Option<u64>,
    /// One entry per allocated share, ascending.
    pub shares: Vec<ShareStatus>,
    /// Seconds of inactivity left before the upload is discarded.
    pub expires_in_secs: u64,
}

/// Body of `POST /storage/v1/immutable/upload/{upload_id}/{share}/finish`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinishRequest {
    /// Total length of the share. The server must hold exactly bytes `0..length`.
    pub length: u64,
    /// If given, finishing fails unless the verified share belongs to this storage index.
    #[serde(default, with = "opt_si_text", skip_serializing_if = "Option::is_none")]
    pub expected_si: Option<StorageIndex>,
}

/// Response to a successful finish: the share is verified and visible to readers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishResponse {
    /// Share number.
    pub share: ShareNum,
    /// Storage index (UEB hash) the server computed and filed the share under.
    #[serde(with = "si_text")]
    pub storage_index: StorageIndex,
    /// Share length in bytes.
    pub length: u64,
    /// The server already held this share under this storage index (the new copy was dropped).
    pub already_had: bool,
    /// Every allocated share of the upload is now finished; the upload id is forgotten.
    pub upload_complete: bool,
}

/// Response of `PUT /storage/v1/immutable/{si}/{share}` (a whole share in one signed request:
/// allocate, write, verify and file in one step).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutShareResponse {
    /// Share number.
    pub share: ShareNum,
    /// Storage index the share was verified against and filed under (the one in the path).
    #[serde(with = "si_text")]
    pub storage_index: StorageIndex,
    /// Share length in bytes.
    pub length: u64,
    /// The server already held this share under this storage index: the bytes sent were not
    /// verified and not stored again.
    pub already_had: bool,
    /// Every finished share the server holds for this storage index after the request,
    /// ascending by share number (this share included): lets the uploader count shares that
    /// were already present.
    pub held: Vec<ShareInfo>,
}

/// One share held by a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareInfo {
    /// Share number.
    pub share: ShareNum,
    /// Length in bytes.
    pub length: u64,
}

/// Response of `GET /storage/v1/immutable/{si}/shares`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharesResponse {
    /// The storage index asked about.
    #[serde(with = "si_text")]
    pub storage_index: StorageIndex,
    /// Finished shares held, ascending by share number (empty if none).
    pub shares: Vec<ShareInfo>,
}

/// Body of `POST /storage/v1/immutable/{si}/{share}/corrupt` (corruption advisory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvisoryRequest {
    /// Human-readable description (at most [`MAX_ADVISORY_REASON`] bytes), e.g. which block
    /// failed its hash check.
    pub reason: String,
}

/// Machine-readable error code of an [`ErrorBody`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The request is malformed (bad identifier, bad query, bad JSON...). 400.
    BadRequest,
    /// The signature headers are missing or malformed, the signature does not verify, the
    /// timestamp is stale or the nonce was replayed. 401.
    Unauthorized,
    /// The account may not do this (not on the allow-list, or not the upload's owner). 403.
    Forbidden,
    /// The server is in read-only mode. 403.
    ReadOnly,
    /// No such share, storage index, upload or endpoint. 404.
    NotFound,
    /// The method is not allowed on this path. 405.
    MethodNotAllowed,
    /// The request conflicts with the current state (e.g. writing to a finished share, a
    /// storage index that differs from the expected one). 409.
    Conflict,
    /// The body is larger than the limit. 413.
    PayloadTooLarge,
    /// A requested range lies outside the share. 416.
    RangeNotSatisfiable,
    /// The share did not verify: its bytes do not form a valid share. 422.
    ShareInvalid,
    /// The request took too long. 408.
    Timeout,
    /// The server's disk is full or its quota exhausted. 507.
    InsufficientStorage,
    /// The server cannot check the request now (e.g. replay cache full). 503.
    Unavailable,
    /// The feature is not implemented by this server. 501.
    NotImplemented,
    /// A server-side failure (IO error). 500.
    Internal,
    /// A code this client does not know.
    #[serde(other)]
    Unknown,
}

/// JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code.
    pub error: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocate_request_json() {
        let r: AllocateRequest =
            serde_json::from_str(r#"{"shares":[0,3],"share_size":1000}"#).unwrap();
        assert_eq!(r.shares, vec![ShareNum(0), ShareNum(3)]);
        assert_eq!(r.share_size, Some(1000));
        assert_eq!(r.expected_si, None);
        assert!(serde_json::from_str::<AllocateRequest>(r#"{"shares":[256]}"#).is_err());
        assert!(serde_json::from_str::<AllocateRequest>(r#"{"shares":[1],"x":1}"#).is_err());
        assert!(
            serde_json::from_str::<AllocateRequest>(r#"{"shares":[1],"expected_si":"A"}"#).is_err()
        );
    }

    #[test]
    fn error_codes_round_trip() {
        let b = ErrorBody {
            error: ErrorCode::InsufficientStorage,
            message: "full".into(),
        };
        let j = serde_json::to_string(&b).unwrap();
        assert_eq!(j, r#"{"error":"insufficient-storage","message":"full"}"#);
        let unknown: ErrorBody =
            serde_json::from_str(r#"{"error":"brand-new","message":"m"}"#).unwrap();
        assert_eq!(unknown.error, ErrorCode::Unknown);
    }
}
