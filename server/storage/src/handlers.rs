//! HTTP handlers of `/storage/v1/` (see `docs/spec/storage-protocol.md`).
//!
//! Every identifier from the URL is parsed into its type before use; every failure is an
//! [`ApiError`] with a JSON body. Blocking store calls run on the blocking pool.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use lafs_codec::IncomingShareHasher;
use lafs_proto::ids::{parse_decimal, parse_storage_index};
use lafs_proto::read::{encode_absent_header, encode_data_header, encode_preamble, ReadRequest};
use lafs_proto::signing::{
    check_signature, nonce_expiry, RequestParts, SignedHeaders, VerifyPolicy, SIGNING_HEADERS,
};
use lafs_proto::storage::{
    AdvisoryRequest, AllocateRequest, AllocateResponse, Capacity, FinishRequest, FinishResponse,
    Limits, PutShareResponse, ShareInfo, SharesResponse, VersionResponse, WriteResponse,
    MAX_ADVISORY_REASON, PROTOCOL, READ_RESPONSE_MEDIA_TYPE,
};
use lafs_proto::{AccountId, ShareNum, StorageIndex, UploadId};
use serde::Serialize;
use tower_http::cors::{Any, CorsLayer};
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::store::{Advisory, ShareStore, StoreError, UploadMeta};
use crate::uploads::lock_hasher;
use crate::verify::{verify_incoming, VerifyError};
use crate::AppState;

mod mutable;

/// A resolved range of a held share: offset, length, share length.
type PlannedRead = (u64, u64, u64);

/// Largest JSON request body (allocate, finish, read, advisory).
const JSON_LIMIT: u64 = 64 * 1024;

pub(crate) fn router(state: AppState) -> Router {
    let cfg = state.config().clone();
    let mut allow_headers: Vec<HeaderName> = vec![header::CONTENT_TYPE, header::RANGE];
    allow_headers.extend(SIGNING_HEADERS.iter().map(|h| HeaderName::from_static(h)));
    // Reads are open to any origin. Writes are allowed cross-origin too: they are authorised
    // by the signature, which a page can only make with the account key, never by ambient
    // credentials (there are no cookies), so CORS adds no protection for them.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers(allow_headers)
        .expose_headers([header::CONTENT_RANGE, header::CONTENT_LENGTH])
        .max_age(Duration::from_secs(3600));
    Router::new()
        .route("/storage/v1/version", get(version))
        .route("/storage/v1/immutable/{si}/shares", get(list_shares))
        .route("/storage/v1/immutable/{si}/read", post(read))
        .route(
            "/storage/v1/immutable/{si}/{share}",
            get(get_share).put(put_share),
        )
        .route("/storage/v1/immutable/{si}/{share}/corrupt", post(advisory))
        .route(
            "/storage/v1/upload/{upload}",
            post(allocate).get(status).delete(abort),
        )
        .route("/storage/v1/upload/{upload}/{share}", put(write))
        .route("/storage/v1/upload/{upload}/{share}/finish", post(finish))
        .route("/metrics", get(metrics))
        .merge(mutable::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .layer(RequestBodyTimeoutLayer::new(cfg.body_read_timeout))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            cfg.request_timeout,
        ))
        .layer(cors)
        .with_state(state)
}

async fn count(State(st): State<AppState>, req: Request, next: Next) -> Response {
    Metrics::add(&st.metrics().requests, 1);
    let resp = next.run(req).await;
    st.metrics().response(resp.status().as_u16());
    resp
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        lafs_proto::storage::ErrorCode::MethodNotAllowed,
        "method not allowed on this path",
    )
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut r = (status, bytes).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => ApiError::internal("encoding a response", &e.to_string()).into_response(),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn path_error(e: PathRejection) -> ApiError {
    ApiError::bad_request(format!("invalid path: {e}"))
}

fn parse_si(text: &str) -> Result<StorageIndex, ApiError> {
    parse_storage_index(text).map_err(|e| ApiError::bad_request(format!("{e}")))
}

fn parse_share(text: &str) -> Result<ShareNum, ApiError> {
    text.parse()
        .map_err(|e| ApiError::bad_request(format!("{e} (share numbers are 0..=255)")))
}

fn parse_upload(text: &str) -> Result<UploadId, ApiError> {
    text.parse()
        .map_err(|e| ApiError::bad_request(format!("{e}")))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal("running a storage task", &e.to_string()))
}

/// Reads a body of at most `limit` bytes.
async fn read_body(body: Body, limit: u64) -> Result<Bytes, ApiError> {
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit_usize)
        .await
        .map_err(|e| body_error(e, limit))
}

/// Reads a body of at most `limit` bytes as the frames it arrived in, without joining them:
/// share data goes from these frames to the hasher and the file.
async fn read_frames(mut body: Body, limit: u64) -> Result<Vec<Bytes>, ApiError> {
    use http_body_util::BodyExt;
    let mut frames = Vec::new();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|e| body_error(e, limit))?.into_data() else {
            continue; // trailers carry no data
        };
        len = len.saturating_add(data.len() as u64);
        if len > limit {
            return Err(ApiError::too_large(format!(
                "request body is larger than the {limit}-byte limit"
            )));
        }
        if !data.is_empty() {
            frames.push(data);
        }
    }
    Ok(frames)
}

/// The answer to a body that could not be read: too large, too slow, or broken off.
fn body_error(e: axum::Error, limit: u64) -> ApiError {
    let inner = e.into_inner();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(inner.as_ref());
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return ApiError::too_large(format!(
                "request body is larger than the {limit}-byte limit"
            ));
        }
        if err.is::<tower_http::timeout::TimeoutError>() {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                lafs_proto::storage::ErrorCode::Timeout,
                "request body was not received in time",
            );
        }
        source = err.source();
    }
    ApiError::bad_request(format!("could not read the request body: {inner}"))
}

/// A verified signed request: the account and the body the signature covers.
struct Signed {
    account: AccountId,
    body: Bytes,
}

/// A verified signed request carrying immutable share data: the account and the body as it
/// arrived, in frames (none empty), `len` bytes in all.
struct SignedData {
    account: AccountId,
    frames: Vec<Bytes>,
    len: u64,
}

/// What a request signature covers of the body (`docs/spec/signed-requests.md`). Chosen by
/// the endpoint, never by the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Covered<'a> {
    /// Length and SHA-256 of the body (every request but share data).
    Digest(&'a [u8]),
    /// Length only: immutable share data, verified against its storage index before filing.
    Length(u64),
}

/// Reads the body and verifies the request signature, the replay cache and the allow-list.
async fn authenticate(
    st: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    limit: u64,
) -> Result<Signed, ApiError> {
    let body = read_body(body, limit).await?;
    let account = verify_signer(st, method, uri, headers, Covered::Digest(&body))?;
    Ok(Signed { account, body })
}

/// The signer of a request whose signature covers `covered`, once the signature, the replay
/// cache and the allow-list accept it.
fn verify_signer(
    st: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    covered: Covered<'_>,
) -> Result<AccountId, ApiError> {
    let result = check(st, method, uri, headers, covered);
    if result.is_err() {
        Metrics::add(&st.metrics().signature_failures, 1);
    }
    let account = result?;
    if let Some(allowed) = &st.config().allowed_accounts {
        if !allowed.contains(&account) {
            return Err(ApiError::forbidden(format!(
                "account {account} is not allowed to write to this server"
            )));
        }
    }
    Ok(account)
}

/// A signed request carrying immutable share data (a write or a whole share): authenticated with
/// the body bound by length, refused by a read-only server, and refused when the body is empty
/// (`what` names it in that message). Returns the signer and the non-empty data.
async fn share_data_request(
    st: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    what: &str,
) -> Result<SignedData, ApiError> {
    let limit = st.config().max_request_body;
    let frames = read_frames(body, limit).await?;
    let len = frames.iter().map(|f| f.len() as u64).sum();
    let account = verify_signer(st, method, uri, headers, Covered::Length(len))?;
    refuse_if_read_only(st)?;
    if len == 0 {
        return Err(ApiError::bad_request(format!("empty {what}")));
    }
    Ok(SignedData {
        account,
        frames,
        len,
    })
}

fn check(
    st: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    covered: Covered<'_>,
) -> Result<AccountId, ApiError> {
    let lookup = |name: &'static str| {
        let mut values = headers.get_all(name).iter();
        let first = values.next()?;
        if values.next().is_some() {
            // Repeated header: report it as malformed.
            return Some("");
        }
        Some(first.to_str().unwrap_or(""))
    };
    let signed = SignedHeaders::parse(lookup).map_err(ApiError::from_signature)?;
    let (path, query) = (uri.path(), uri.query().unwrap_or(""));
    let req = match covered {
        Covered::Digest(body) => RequestParts::new(method.as_str(), path, query, body),
        Covered::Length(len) => RequestParts::share_data(method.as_str(), path, query, len),
    };
    let policy = VerifyPolicy {
        max_skew_secs: st.config().max_clock_skew_secs,
    };
    let now = st.now_unix();
    let account = check_signature(st.server_id(), &req, &signed, now, &policy)
        .map_err(ApiError::from_signature)?;
    let mut guard = st.inner.replay.lock().unwrap_or_else(|p| p.into_inner());
    guard
        .check_and_insert(account, signed.nonce, nonce_expiry(&signed, &policy), now)
        .map_err(ApiError::from_signature)?;
    Ok(account)
}

fn refuse_if_read_only(st: &AppState) -> Result<(), ApiError> {
    if st.config().read_only {
        return Err(ApiError::read_only());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reads (unauthenticated)

async fn version(State(st): State<AppState>) -> Response {
    let store = Arc::clone(st.store());
    let space = match blocking(move || store.space()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return ApiError::from_store(e, "reading free space").into_response(),
        Err(e) => return e.into_response(),
    };
    let cfg = st.config();
    let body = VersionResponse {
        protocol: PROTOCOL.to_owned(),
        server_version: concat!("lafs-storage ", env!("CARGO_PKG_VERSION")).to_owned(),
        server_id: st.server_id().to_owned(),
        read_only: cfg.read_only,
        accepts_immutable: !cfg.read_only,
        accepts_mutable: !cfg.read_only && cfg.accepts_mutable && st.inner.mutable.get().is_some(),
        capacity: Capacity {
            total_bytes: space.total,
            available_bytes: space.available,
        },
        limits: Limits {
            max_request_body: cfg.max_request_body,
            max_share_size: cfg.max_share_size,
            max_read_ranges: cfg.max_read_ranges,
            max_read_bytes: cfg.max_read_bytes,
            upload_ttl_secs: cfg.upload_ttl.as_secs(),
            max_clock_skew_secs: cfg.max_clock_skew_secs,
        },
    };
    json(StatusCode::OK, &body)
}

async fn list_shares(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(si) = path.map_err(path_error)?;
    let si = parse_si(&si)?;
    let store = Arc::clone(st.store());
    let shares = blocking(move || store.list_shares(&si))
        .await?
        .map_err(|e| ApiError::from_store(e, "listing shares"))?;
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
    let body = read_body(body, JSON_LIMIT).await?;
    let req: ReadRequest = parse_json(&body)?;
    let cfg = st.config();
    req.validate(cfg.max_read_ranges)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let store = Arc::clone(st.store());
    let held = blocking(move || store.list_shares(&si))
        .await?
        .map_err(|e| ApiError::from_store(e, "listing shares"))?;
    let (plan, total) = plan_reads(&req, &held, "share", cfg.max_read_bytes)?;
    let store = Arc::clone(st.store());
    let out = blocking(move || {
        assemble_read(plan, total, |share, off, n| {
            store.read_share(&si, share, off, n)
        })
    })
    .await?
    .map_err(|e| ApiError::from_store(e, "reading shares"))?;
    Metrics::add(&st.metrics().bytes_out, total);
    Ok(read_response(out))
}

/// A multi-range read resolved against the shares held: per requested range, the share and,
/// if the share is held, `(offset, length, share length)`.
type ReadPlan = Vec<(ShareNum, Option<PlannedRead>)>;

/// Resolves every range of `req` against the shares held (immutable or mutable alike), so that
/// unsatisfiable and oversize requests are rejected before any IO. Returns the plan and the
/// total number of data bytes it will return. `kind` names the shares in error messages.
pub(super) fn plan_reads(
    req: &ReadRequest,
    held: &[ShareInfo],
    kind: &str,
    max_read_bytes: u64,
) -> Result<(ReadPlan, u64), ApiError> {
    let mut plan = Vec::new();
    let mut total: u64 = 0;
    for r in &req.reads {
        let len = held.iter().find(|s| s.share == r.share).map(|s| s.length);
        for range in &r.ranges {
            match len {
                None => plan.push((r.share, None)),
                Some(share_len) => {
                    let (off, n) = range.resolve(share_len).ok_or_else(|| {
                        ApiError::range(format!(
                            "range {range:?} is outside {kind} {} of {share_len} bytes",
                            r.share
                        ))
                    })?;
                    total = total.saturating_add(n);
                    plan.push((r.share, Some((off, n, share_len))));
                }
            }
        }
    }
    if total > max_read_bytes {
        return Err(ApiError::bad_request(format!(
            "request asks for {total} bytes; the limit per read request is {max_read_bytes}"
        )));
    }
    Ok((plan, total))
}

/// Builds the binary read response (`lafs_proto::read`) for `plan`, reading each held range
/// with `read(share, offset, length)`. Runs on a blocking thread.
pub(super) fn assemble_read(
    plan: ReadPlan,
    total: u64,
    mut read: impl FnMut(ShareNum, u64, u64) -> Result<Vec<u8>, StoreError>,
) -> Result<Vec<u8>, StoreError> {
    let parts = u32::try_from(plan.len()).unwrap_or(u32::MAX);
    let cap = 12 + plan.len() * 24 + usize::try_from(total).unwrap_or(0);
    let mut out = Vec::with_capacity(cap);
    out.extend_from_slice(&encode_preamble(parts));
    for (share, p) in plan {
        match p {
            None => out.extend_from_slice(&encode_absent_header(share)),
            Some((off, n, share_len)) => {
                let data = read(share, off, n)?;
                if data.len() as u64 != n {
                    return Err(StoreError::Io(format!(
                        "share {share} is shorter than listed"
                    )));
                }
                // n <= max_read_bytes, which is far below 4 GiB in any sane config; a
                // larger value is clamped and caught by the length check above.
                let n32 = u32::try_from(n).unwrap_or(u32::MAX);
                out.extend_from_slice(&encode_data_header(share, off, n32, share_len));
                out.extend_from_slice(&data);
            }
        }
    }
    Ok(out)
}

/// A 200 response carrying an assembled read body.
pub(super) fn read_response(body: Vec<u8>) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(READ_RESPONSE_MEDIA_TYPE),
    );
    resp
}

async fn get_share(
    State(st): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path((si, share)) = path.map_err(path_error)?;
    let si = parse_si(&si)?;
    let share = parse_share(&share)?;
    let store = Arc::clone(st.store());
    let held = blocking(move || store.list_shares(&si))
        .await?
        .map_err(|e| ApiError::from_store(e, "listing shares"))?;
    let len = held
        .iter()
        .find(|s| s.share == share)
        .map(|s| s.length)
        .ok_or_else(|| ApiError::not_found(format!("share {share} is not held")))?;
    let (start, end_incl, partial) = match headers.get(header::RANGE) {
        None => (0, len.saturating_sub(1), false),
        Some(v) => {
            let text = v
                .to_str()
                .map_err(|_| ApiError::bad_request("Range header is not ASCII"))?;
            let parsed = http_range_header::parse_range_header(text)
                .map_err(|e| ApiError::range(format!("bad Range header: {e}")))?;
            let ranges = parsed
                .validate(len)
                .map_err(|e| ApiError::range(format!("bad Range: {e}")))?;
            match ranges.as_slice() {
                [r] => (*r.start(), *r.end(), true),
                _ => {
                    return Err(ApiError::range(
                        "exactly one range per GET; use POST .../read for several",
                    ))
                }
            }
        }
    };
    let n = if len == 0 { 0 } else { end_incl - start + 1 };
    if n > st.config().max_read_bytes {
        return Err(ApiError::bad_request(format!(
            "share {share} is {len} bytes; ask for a Range of at most {} bytes",
            st.config().max_read_bytes
        )));
    }
    let store = Arc::clone(st.store());
    let data = blocking(move || store.read_share(&si, share, start, n))
        .await?
        .map_err(|e| ApiError::from_store(e, "reading a share"))?;
    Metrics::add(&st.metrics().bytes_out, data.len() as u64);
    let mut resp = if partial {
        let mut r = (StatusCode::PARTIAL_CONTENT, data).into_response();
        let cr = format!("bytes {start}-{end_incl}/{len}");
        if let Ok(v) = HeaderValue::from_str(&cr) {
            r.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        r
    } else {
        (StatusCode::OK, data).into_response()
    };
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp.headers_mut()
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    Ok(resp)
}

async fn metrics(State(st): State<AppState>) -> Response {
    let store = Arc::clone(st.store());
    let held = blocking(move || store.share_count())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    let text = st.metrics().render(held, st.active_uploads() as u64);
    let mut r = (StatusCode::OK, text).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

// ---------------------------------------------------------------------------------------------
// Advisory (signed)

async fn advisory(
    State(st): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Path((si, share)) = path.map_err(path_error)?;
    let si = parse_si(&si)?;
    let share = parse_share(&share)?;
    let signed = authenticate(&st, &method, &uri, &headers, body, JSON_LIMIT).await?;
    let req: AdvisoryRequest = parse_json(&signed.body)?;
    if req.reason.len() > MAX_ADVISORY_REASON {
        return Err(ApiError::bad_request(format!(
            "reason is longer than {MAX_ADVISORY_REASON} bytes"
        )));
    }
    let store = Arc::clone(st.store());
    let received_unix = st.now_unix();
    let reporter = signed.account;
    let held = blocking(move || -> Result<bool, StoreError> {
        let held = store.list_shares(&si)?.iter().any(|s| s.share == share);
        let adv = Advisory {
            received_unix,
            storage_index: si,
            share,
            reporter,
            held,
            reason: req.reason,
        };
        tracing::warn!(
            storage_index = %lafs_proto::ids::storage_index_to_text(&si),
            %share, %reporter, held, reason = %adv.reason,
            "corruption advisory"
        );
        store.record_advisory(&adv)?;
        Ok(held)
    })
    .await?
    .map_err(|e| ApiError::from_store(e, "recording an advisory"))?;
    let _ = held;
    Metrics::add(&st.metrics().advisories, 1);
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------------
// Uploads (signed)

async fn allocate(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Path(id) = path.map_err(path_error)?;
    let id = parse_upload(&id)?;
    let signed = authenticate(&st, &method, &uri, &headers, body, JSON_LIMIT).await?;
    refuse_if_read_only(&st)?;
    let req: AllocateRequest = parse_json(&signed.body)?;
    let cfg = st.config();
    let wanted: BTreeSet<ShareNum> = req.shares.iter().copied().collect();
    if wanted.is_empty() {
        return Err(ApiError::bad_request("no shares requested"));
    }
    if wanted.len() != req.shares.len() {
        return Err(ApiError::bad_request("duplicate share numbers"));
    }
    if let Some(size) = req.share_size {
        if size > cfg.max_share_size {
            return Err(ApiError::too_large(format!(
                "share size {size} exceeds this server's limit of {} bytes",
                cfg.max_share_size
            )));
        }
    }
    let now = tokio::time::Instant::now();
    let uploads = Arc::clone(&st.inner.uploads);
    let (existing, expired) = uploads.lookup(id, now);
    if expired {
        let store = Arc::clone(st.store());
        let _ = blocking(move || store.remove_upload(id)).await?;
    }
    if let Some(meta) = existing {
        // Repeating an allocation (e.g. after a lost response) returns the same session.
        if meta.owner != signed.account {
            return Err(ApiError::forbidden(
                "this upload id belongs to another account",
            ));
        }
        if meta.share_size != req.share_size {
            return Err(ApiError::conflict(
                "upload id already allocated with other parameters",
            ));
        }
        let resp = AllocateResponse {
            upload_id: id,
            allocated: meta.shares.clone(),
            already_have: wanted
                .iter()
                .filter(|s| !meta.shares.contains(s))
                .copied()
                .collect(),
            expires_in_secs: uploads.expires_in(id, now),
        };
        return Ok(json(StatusCode::OK, &resp));
    }
    if uploads.len() >= cfg.max_uploads {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            lafs_proto::storage::ErrorCode::Unavailable,
            "too many uploads in progress; retry later",
        ));
    }
    let store = Arc::clone(st.store());
    let expected = req.expected_si;
    let (already, space) = blocking(move || -> Result<_, StoreError> {
        let already: BTreeSet<ShareNum> = match expected {
            Some(si) => store.list_shares(&si)?.iter().map(|s| s.share).collect(),
            None => BTreeSet::new(),
        };
        Ok((already, store.space()?))
    })
    .await?
    .map_err(|e| ApiError::from_store(e, "allocating"))?;
    let already_have: Vec<ShareNum> = wanted.intersection(&already).copied().collect();
    let allocated: Vec<ShareNum> = wanted.difference(&already).copied().collect();
    if let Some(size) = req.share_size {
        let needed = size.saturating_mul(allocated.len() as u64);
        if needed > space.available {
            return Err(ApiError::full(format!(
                "{needed} bytes needed, {} available",
                space.available
            )));
        }
    }
    let ttl = cfg.upload_ttl.as_secs();
    if allocated.is_empty() {
        let resp = AllocateResponse {
            upload_id: id,
            allocated,
            already_have,
            expires_in_secs: ttl,
        };
        return Ok(json(StatusCode::OK, &resp));
    }
    let meta = UploadMeta {
        owner: signed.account,
        shares: allocated.clone(),
        share_size: req.share_size,
        created_unix: st.now_unix(),
    };
    let store = Arc::clone(st.store());
    let meta2 = meta.clone();
    blocking(move || store.create_upload(id, &meta2))
        .await?
        .map_err(|e| match e {
            StoreError::AlreadyExists => ApiError::conflict("upload id is in use"),
            e => ApiError::from_store(e, "creating the upload"),
        })?;
    uploads.insert(id, meta, now);
    let resp = AllocateResponse {
        upload_id: id,
        allocated,
        already_have,
        expires_in_secs: ttl,
    };
    Ok(json(StatusCode::CREATED, &resp))
}

async fn status(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Path(id) = path.map_err(path_error)?;
    let id = parse_upload(&id)?;
    let signed = authenticate(&st, &method, &uri, &headers, body, JSON_LIMIT).await?;
    let s = st
        .inner
        .uploads
        .status(id, &signed.account, tokio::time::Instant::now())?;
    Ok(json(StatusCode::OK, &s))
}

async fn abort(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Path(id) = path.map_err(path_error)?;
    let id = parse_upload(&id)?;
    let signed = authenticate(&st, &method, &uri, &headers, body, JSON_LIMIT).await?;
    st.inner
        .uploads
        .abort(id, &signed.account, tokio::time::Instant::now())?;
    let store = Arc::clone(st.store());
    match blocking(move || store.remove_upload(id)).await? {
        Ok(()) | Err(StoreError::NotFound) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) => Err(ApiError::from_store(e, "deleting the upload")),
    }
}

/// Parses the write query: exactly `offset=<decimal>`.
fn parse_offset(query: Option<&str>) -> Result<u64, ApiError> {
    let mut offset = None;
    for part in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some(("offset", v)) if offset.is_none() => {
                offset = Some(
                    parse_decimal(v, "offset").map_err(|e| ApiError::bad_request(e.to_string()))?,
                );
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unexpected query parameter {part:?}; a write takes exactly offset=N"
                )))
            }
        }
    }
    offset.ok_or_else(|| ApiError::bad_request("missing query parameter offset=N"))
}

async fn write(
    State(st): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Path((id, share)) = path.map_err(path_error)?;
    let id = parse_upload(&id)?;
    let share = parse_share(&share)?;
    let offset = parse_offset(uri.query())?;
    let cfg = st.config();
    let signed = share_data_request(&st, &method, &uri, &headers, body, "write").await?;
    let (frames, n) = (signed.frames, signed.len);
    let end = offset
        .checked_add(n)
        .ok_or_else(|| ApiError::range("offset + length overflows"))?;
    let ticket = st.inner.uploads.begin_write(
        id,
        &signed.account,
        share,
        offset..end,
        cfg.max_share_size,
        tokio::time::Instant::now(),
    )?;
    let store = Arc::clone(st.store());
    // The ticket is released inside the blocking task, which completes even if this handler
    // is dropped (client disconnect), so the share never stays "busy".
    let (res, received_bytes) = blocking(move || {
        // The share's hasher is held across the store write, so the hashes it keeps always
        // describe the bytes stored (a write into the hashed prefix resets it). The frames go
        // to the file and the hasher as they arrived, never joined into one buffer.
        let r = {
            let mut hasher = lock_hasher(&ticket.hasher);
            let parts: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
            let r = store.write_incoming_parts(id, share, offset, &parts);
            match &r {
                Ok(()) => {
                    let mut at = offset;
                    for frame in &frames {
                        hasher.stored(at, frame);
                        at += frame.len() as u64;
                    }
                }
                Err(_) => hasher.failed(),
            }
            r
        };
        let received = ticket.end(r.is_ok());
        (r, received)
    })
    .await?;
    res.map_err(|e| ApiError::from_store(e, "writing share data"))?;
    Metrics::add(&st.metrics().bytes_in, n);
    Ok(json(
        StatusCode::OK,
        &WriteResponse {
            share,
            received_bytes,
        },
    ))
}

async fn finish(
    State(st): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Path((id, share)) = path.map_err(path_error)?;
    let id = parse_upload(&id)?;
    let share = parse_share(&share)?;
    let signed = authenticate(&st, &method, &uri, &headers, body, JSON_LIMIT).await?;
    refuse_if_read_only(&st)?;
    let req: FinishRequest = parse_json(&signed.body)?;
    let uploads = Arc::clone(&st.inner.uploads);
    let prehashed = uploads.begin_finish(
        id,
        &signed.account,
        share,
        req.length,
        tokio::time::Instant::now(),
    )?;
    let store = Arc::clone(st.store());
    let st2 = st.clone();
    let len = req.length;
    // Verification, commit and the state change all happen in the blocking task, so an
    // abandoned request still leaves the share either finished or receiving.
    let outcome = blocking(move || -> Result<(StorageIndex, bool, bool), ApiError> {
        let source = ShareSource::Upload { id, len, prehashed };
        let (si, new) = match verify_and_file(&st2, store.as_ref(), share, source, req.expected_si)
        {
            Ok(x) => x,
            Err(e) => {
                uploads.end_finish(id, share, None);
                return Err(e);
            }
        };
        let complete = uploads.end_finish(id, share, Some((si, len)));
        if complete {
            if let Err(e) = store.remove_upload(id) {
                tracing::warn!(upload = %id, error = %e, "could not delete a completed upload");
            }
        }
        Ok((si, !new, complete))
    })
    .await?;
    let (si, already_had, upload_complete) = outcome?;
    Metrics::add(&st.metrics().shares_finished, 1);
    let resp = FinishResponse {
        share,
        storage_index: si,
        length: len,
        already_had,
        upload_complete,
    };
    Ok(json(StatusCode::OK, &resp))
}

/// Where the bytes of a share to verify and file are.
enum ShareSource {
    /// Bytes `0..len` of an incoming share of an upload session, with what was hashed as they
    /// arrived.
    Upload {
        id: UploadId,
        len: u64,
        prehashed: IncomingShareHasher,
    },
    /// A whole share received in one request.
    Whole(Bytes),
}

/// The one path by which an immutable share is filed: every byte of it is verified (the
/// codec's `ShareVerifier`: header, blocks, trees, share chain, UEB), the storage index its UEB
/// hashes to must be `expected` when given, and only then is it filed under that storage
/// index. Returns the storage index and whether the share is new on this server. Counts an
/// invalid share in the metrics.
fn verify_and_file(
    st: &AppState,
    store: &dyn ShareStore,
    share: ShareNum,
    source: ShareSource,
    expected: Option<StorageIndex>,
) -> Result<(StorageIndex, bool), ApiError> {
    let invalid = |msg: String| {
        Metrics::add(&st.metrics().shares_invalid, 1);
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            lafs_proto::storage::ErrorCode::ShareInvalid,
            msg,
        )
    };
    let si = match &source {
        ShareSource::Upload { id, len, prehashed } => {
            let mut read_back = 0;
            let r = verify_incoming(store, *id, share, *len, prehashed.clone(), &mut read_back);
            Metrics::add(&st.metrics().bytes_read_to_verify, read_back);
            match r {
                Ok(si) => si,
                Err(VerifyError::Invalid(msg)) => {
                    return Err(invalid(format!("share {share} does not verify: {msg}")))
                }
                Err(VerifyError::Store(e)) => {
                    return Err(ApiError::from_store(e, "reading the share to verify it"))
                }
            }
        }
        ShareSource::Whole(data) => {
            match lafs_codec::verify_share(u16::from(share.0), data, expected) {
                Ok(v) => v.storage_index,
                Err(e) => {
                    let against = expected.map(|si| {
                        format!(
                            " against storage index {}",
                            lafs_proto::ids::storage_index_to_text(&si)
                        )
                    });
                    return Err(invalid(format!(
                        "share {share} does not verify{}: {e}",
                        against.unwrap_or_default()
                    )));
                }
            }
        }
    };
    if let Some(expected) = expected {
        if expected != si {
            return Err(ApiError::conflict(format!(
                "share {share} belongs to storage index {}, not the expected {}",
                lafs_proto::ids::storage_index_to_text(&si),
                lafs_proto::ids::storage_index_to_text(&expected)
            )));
        }
    }
    let new = match &source {
        ShareSource::Upload { id, len, .. } => store
            .commit_share(*id, share, &si, *len)
            .map_err(|e| ApiError::from_store(e, "storing the finished share"))?,
        ShareSource::Whole(data) => store
            .store_share(&si, share, data)
            .map_err(|e| ApiError::from_store(e, "storing the share"))?,
    };
    Ok((si, new))
}

/// `PUT /storage/v1/immutable/{si}/{share}`: a whole share in one signed request. Allocates,
/// writes, verifies (against the storage index of the path) and files it in one step; answers
/// with every share held for the storage index.
async fn put_share(
    State(st): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Path((si, share)) = path.map_err(path_error)?;
    let si = parse_si(&si)?;
    let share = parse_share(&share)?;
    if uri.query().is_some_and(|q| !q.is_empty()) {
        return Err(ApiError::bad_request(
            "a whole-share PUT takes no query parameters",
        ));
    }
    let cfg = st.config();
    let signed = share_data_request(&st, &method, &uri, &headers, body, "share").await?;
    let len = signed.len;
    // A whole share is verified in one piece (it is small: at most one request body).
    let data = match signed.frames.as_slice() {
        [one] => one.clone(),
        frames => Bytes::from(frames.concat()),
    };
    if len > cfg.max_share_size {
        return Err(ApiError::too_large(format!(
            "share size {len} exceeds this server's limit of {} bytes",
            cfg.max_share_size
        )));
    }
    let store = Arc::clone(st.store());
    let st2 = st.clone();
    // Everything happens in the blocking task, so an abandoned request still either files the
    // whole verified share or nothing.
    let outcome = blocking(move || -> Result<(bool, Vec<ShareInfo>), ApiError> {
        let held = store
            .list_shares(&si)
            .map_err(|e| ApiError::from_store(e, "listing shares"))?;
        if held.iter().any(|s| s.share == share) {
            return Ok((true, held));
        }
        let space = store
            .space()
            .map_err(|e| ApiError::from_store(e, "reading free space"))?;
        if len > space.available {
            return Err(ApiError::full(format!(
                "{len} bytes needed, {} available",
                space.available
            )));
        }
        let (_, new) = verify_and_file(
            &st2,
            store.as_ref(),
            share,
            ShareSource::Whole(data),
            Some(si),
        )?;
        let held = store
            .list_shares(&si)
            .map_err(|e| ApiError::from_store(e, "listing shares"))?;
        Ok((!new, held))
    })
    .await?;
    let (already_had, held) = outcome?;
    if !already_had {
        Metrics::add(&st.metrics().bytes_in, len);
        Metrics::add(&st.metrics().shares_finished, 1);
    }
    let resp = PutShareResponse {
        share,
        storage_index: si,
        length: len,
        already_had,
        held,
    };
    Ok(json(
        if already_had {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        &resp,
    ))
}
