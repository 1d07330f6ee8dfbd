//! `/storage/v1/mutable/{si}/...`: list, multi-range read and signed test-and-write of mutable
//! shares (see `docs/spec/storage-protocol.md`, "Mutable shares").

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use lafs_proto::mutable::{
    decode_writes, MutableWriteResponse, ShareWriteResult, WireWrite, WriteOutcome,
};
use lafs_proto::read::ReadRequest;
use lafs_proto::storage::{ErrorCode, SharesResponse};
use lafs_proto::ShareNum;

use super::{
    assemble_read, authenticate, blocking, json, parse_json, parse_si, path_error, plan_reads,
    read_body, read_response, refuse_if_read_only, JSON_LIMIT,
};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::mutable::{write_shares, MutableShares, WriteError};
use crate::AppState;

/// Framing overhead allowed on top of `max_request_body` for a write request.
const WRITE_FRAMING_ALLOWANCE: u64 = 64 * 1024;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/storage/v1/mutable/{si}/shares", get(list))
        .route("/storage/v1/mutable/{si}/read", post(read))
        .route("/storage/v1/mutable/{si}/write", post(write))
}

fn shares(st: &AppState) -> Result<&MutableShares, ApiError> {
    st.inner.mutable.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            ErrorCode::NotImplemented,
            "this storage server does not hold mutable shares",
        )
    })
}

async fn list(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(si) = path.map_err(path_error)?;
    let si = parse_si(&si)?;
    let m = shares(&st)?;
    let _guard = m.lock(si).await;
    let store = Arc::clone(&m.store);
    let shares = blocking(move || store.list(&si))
        .await?
        .map_err(|e| ApiError::from_store(e, "listing mutable shares"))?;
    Ok(json(
        StatusCode::OK,
        &SharesResponse {
            storage_index: si,
            shares,
        },
    ))
}

async fn read(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let Path(si) = path.map_err(path_error)?;
    let si = parse_si(&si)?;
    let m = shares(&st)?;
    let body = read_body(body, JSON_LIMIT).await?;
    let req: ReadRequest = parse_json(&body)?;
    let cfg = st.config();
    req.validate(cfg.max_read_ranges)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    // The lock makes every part of the answer come from the same version of each share.
    let _guard = m.lock(si).await;
    let store = Arc::clone(&m.store);
    let held = blocking(move || store.list(&si))
        .await?
        .map_err(|e| ApiError::from_store(e, "listing mutable shares"))?;
    let (plan, total) = plan_reads(&req, &held, "mutable share", cfg.max_read_bytes)?;
    let store = Arc::clone(&m.store);
    let out = blocking(move || {
        assemble_read(plan, total, |share, off, n| store.read(&si, share, off, n))
    })
    .await?
    .map_err(|e| ApiError::from_store(e, "reading mutable shares"))?;
    Metrics::add(&st.metrics().bytes_out, total);
    Ok(read_response(out))
}

fn to_share_write(w: WireWrite) -> lafs_mutable::ShareWrite {
    match w {
        WireWrite::Whole { share, data } => lafs_mutable::ShareWrite::Whole {
            share: u16::from(share.0),
            data,
        },
        WireWrite::Patch {
            share,
            new_len,
            patches,
        } => lafs_mutable::ShareWrite::Patch {
            share: u16::from(share.0),
            new_len,
            patches: patches
                .into_iter()
                .map(|p| lafs_mutable::Patch {
                    offset: p.offset,
                    data: p.data,
                })
                .collect(),
        },
    }
}

/// A refused write: 409 when another version is in the way (the writer must re-read), 422
/// when the share or patch itself is invalid.
fn refusal(e: &lafs_mutable::Error) -> ApiError {
    use lafs_mutable::Error as E;
    match e {
        E::SeqnumNotHigher { .. } => ApiError::conflict(format!(
            "{e}: another writer published this version number or a later one; re-read and retry"
        )),
        E::PatchWithoutStoredShare { .. } | E::StoredShareCorrupt { .. } => {
            ApiError::conflict(format!("{e}: send the whole share instead"))
        }
        E::StoredShareUnreadable { .. } => {
            ApiError::internal("reading a stored mutable share", &e.to_string())
        }
        other => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::ShareInvalid,
            format!("mutable share refused: {other}"),
        ),
    }
}

fn result_of(v: &lafs_mutable::Verdict, share: ShareNum) -> ShareWriteResult {
    match *v {
        lafs_mutable::Verdict::Accept {
            seqnum, previous, ..
        } => ShareWriteResult {
            share,
            outcome: WriteOutcome::Written,
            seqnum,
            previous,
        },
        lafs_mutable::Verdict::AlreadyStored { seqnum } => ShareWriteResult {
            share,
            outcome: WriteOutcome::AlreadyStored,
            seqnum,
            previous: Some(seqnum),
        },
    }
}

async fn write(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Path(si_text) = path.map_err(path_error)?;
    let si = parse_si(&si_text)?;
    refuse_if_read_only(&st)?;
    let m = shares(&st)?;
    let cfg = st.config();
    if !cfg.accepts_mutable {
        return Err(ApiError::forbidden(
            "this storage server does not accept mutable shares",
        ));
    }
    let limit = cfg.max_request_body.saturating_add(WRITE_FRAMING_ALLOWANCE);
    let signed = authenticate(&st, &method, &uri, &headers, body, limit).await?;
    let writes = decode_writes(&signed.body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    for w in &writes {
        let len = match w {
            WireWrite::Whole { data, .. } => data.len() as u64,
            WireWrite::Patch { new_len, .. } => *new_len,
        };
        if len > cfg.max_share_size {
            return Err(ApiError::too_large(format!(
                "share {} would be {len} bytes; the limit is {}",
                w.share(),
                cfg.max_share_size
            )));
        }
    }
    Metrics::add(&st.metrics().bytes_in, signed.body.len() as u64);
    // Check and store under the storage index's lock: concurrent writers are serialised, and
    // the second one is checked against the first one's share.
    let _guard = m.lock(si).await;
    let store = Arc::clone(&m.store);
    let results = blocking(move || -> Result<(Vec<ShareWriteResult>, u64), ApiError> {
        let shares: Vec<ShareNum> = writes.iter().map(WireWrite::share).collect();
        let writes: Vec<_> = writes.into_iter().map(to_share_write).collect();
        let done = write_shares(store.as_ref(), &si, &writes).map_err(|e| match e {
            WriteError::Refused(e) => refusal(&e),
            WriteError::Store(e) => ApiError::from_store(e, "storing mutable shares"),
        })?;
        let results = done
            .verdicts
            .iter()
            .zip(shares)
            .map(|(v, s)| result_of(v, s))
            .collect();
        Ok((results, done.bytes))
    })
    .await?;
    let results = match results {
        Ok((r, written)) => {
            Metrics::add(&st.metrics().mutable_bytes_written, written);
            r
        }
        Err(e) => {
            if e.code == ErrorCode::ShareInvalid {
                Metrics::add(&st.metrics().shares_invalid, 1);
            }
            return Err(e);
        }
    };
    Ok(json(StatusCode::OK, &MutableWriteResponse { results }))
}
