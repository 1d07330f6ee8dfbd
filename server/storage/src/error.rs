//! HTTP errors: every failure becomes a status code and a JSON [`ErrorBody`].

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use lafs_proto::storage::{ErrorBody, ErrorCode};

use crate::store::StoreError;

/// An error response: status, machine code and a readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Error code of the body.
    pub code: ErrorCode,
    /// Message of the body.
    pub message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 bad-request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    /// 404 not-found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// 409 conflict.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
    }

    /// 403 forbidden.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    /// 416 range-not-satisfiable.
    pub fn range(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::RangeNotSatisfiable,
            message,
        )
    }

    /// 413 payload-too-large.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            message,
        )
    }

    /// 507 insufficient-storage.
    pub fn full(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::InsufficientStorage,
            message,
        )
    }

    /// 403 read-only.
    pub fn read_only() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ErrorCode::ReadOnly,
            "this storage server is in read-only mode: it accepts no uploads",
        )
    }

    /// 500 internal (the detail goes to the log, not to the client).
    pub fn internal(context: &str, detail: &str) -> Self {
        tracing::error!(%context, %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            format!("internal storage error while {context}; see the server log"),
        )
    }

    /// Maps a store error that occurred while doing `context`.
    pub fn from_store(e: StoreError, context: &str) -> Self {
        match e {
            StoreError::NotFound => Self::not_found(format!("not found while {context}")),
            StoreError::AlreadyExists => Self::conflict(format!("already exists while {context}")),
            StoreError::Full => Self::full(format!("no space left on this server while {context}")),
            StoreError::Io(detail) => Self::internal(context, &detail),
        }
    }

    /// Maps a request-signature failure.
    pub fn from_signature(e: lafs_proto::Error) -> Self {
        match e {
            lafs_proto::Error::ReplayCacheFull { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                format!("{e}"),
            ),
            other => Self::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                format!("signed request rejected: {other}"),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: self.message,
        };
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = (self.status, json).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}
