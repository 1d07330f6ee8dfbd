//! HTTP errors: a status and a readable one-line message (plain text, as Tahoe answers).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::grid::GridError;

/// An error answered to the HTTP client: `status` and a `text/plain` body holding `message`.
///
/// Bad input (caps, parameters, bodies) is always a 4xx; 5xx means the grid could not serve
/// the request (502/503) or a bug (500).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for a person.
    pub message: String,
}

impl ApiError {
    /// 400 Bad Request with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// An error with any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<lafs_caps::Error> for ApiError {
    fn from(e: lafs_caps::Error) -> Self {
        Self::bad_request(format!("bad cap: {e}"))
    }
}

impl From<GridError> for ApiError {
    fn from(e: GridError) -> Self {
        let status = match &e {
            // Tahoe answers 410 Gone when a file cannot be found or recovered.
            GridError::NotFound { .. } | GridError::NotEnoughShares { .. } => StatusCode::GONE,
            GridError::Body(_) => StatusCode::BAD_REQUEST,
            GridError::Codec(c) => match c {
                lafs_codec::Error::BadParams { .. } => StatusCode::BAD_REQUEST,
                // More segments than the format allows (e.g. a huge body with tiny segments).
                lafs_codec::Error::FileTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                lafs_codec::Error::NotEnoughShares { .. }
                | lafs_codec::Error::CorruptShare { .. }
                | lafs_codec::Error::InconsistentEncoding { .. } => StatusCode::GONE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            GridError::Upload(_) => StatusCode::SERVICE_UNAVAILABLE,
            GridError::Unavailable(_) => StatusCode::BAD_GATEWAY,
        };
        Self::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, message = %self.message, "request failed");
        } else {
            tracing::debug!(status = %self.status, message = %self.message, "request refused");
        }
        let mut resp = (self.status, format!("{}\n", self.message)).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let status = |e: GridError| ApiError::from(e).status;
        assert_eq!(
            status(GridError::NotFound {
                storage_index: "x".into()
            }),
            StatusCode::GONE
        );
        assert_eq!(
            status(GridError::NotEnoughShares {
                found: 1,
                needed: 3
            }),
            StatusCode::GONE
        );
        assert_eq!(
            status(GridError::Body("cut".into())),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(GridError::Codec(lafs_codec::Error::FileTooLarge {
                max_segments: 1
            })),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            status(GridError::Codec(
                lafs_codec::Params::new(0, 1, 1).unwrap_err()
            )),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(GridError::Upload("full".into())),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status(GridError::Unavailable("down".into())),
            StatusCode::BAD_GATEWAY
        );
        let e = ApiError::from("lafsr1x".parse::<lafs_caps::Cap>().unwrap_err());
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.starts_with("bad cap: "));
    }
}
