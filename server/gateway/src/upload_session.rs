//! `/ciphertext/uploads`: a ciphertext upload sent in chunks, for clients that cannot stream
//! one long request body (browsers stream request bodies only over HTTP/2).
//!
//! A session is one run of the grid's uploader ([`Grid::upload`](crate::Grid::upload)), whose
//! input stream is fed by the chunks as they arrive, in order: `PUT …?offset=N` must start
//! exactly where the bytes received so far end. Memory stays bounded by the channel between
//! a chunk's request body and the uploader (a few body frames) plus the uploader's own buffers,
//! whatever the file size; the gateway never sees a key. An interrupted chunk keeps what arrived
//! before the interruption; the client asks how much (`GET`) and goes on from there. A session
//! with no activity for [`Config::upload_session_idle`](crate::Config) expires: its uploader is
//! stopped (the storage servers drop the unfinished shares on their own timeout).
//!
//! Specified in `docs/spec/gateway.md` ("Chunked ciphertext uploads").

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use lafs_caps::{ImmutableVerifyCap, SelectionIndex};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

use crate::uri::{json_response, params_from_query, QueryMap};
use crate::{ApiError, AppState, ByteStream, GridError, UploadMode, UploadSpec, Uploaded};

/// Body frames queued between a chunk's request and the uploader (backpressure beyond this).
const QUEUE_FRAMES: usize = 4;

/// Header naming the number of bytes a session has received (on every session answer).
pub(crate) const UPLOAD_OFFSET: &str = "upload-offset";

/// The open upload sessions of a gateway.
#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
}

struct Session {
    size: u64,
    /// Stops the uploader (expiry, `DELETE`).
    abort: AbortHandle,
    /// Bytes handed to the uploader so far (readable without the feed lock).
    received: AtomicU64,
    /// Last time a request touched the session (a received frame counts).
    last_active: Mutex<Instant>,
    /// Held by the one request that may feed or finish the session.
    feed: tokio::sync::Mutex<Feed>,
}

struct Feed {
    /// Closed (dropped) once `size` bytes were received: the uploader then finishes.
    tx: Option<mpsc::Sender<Result<Bytes, GridError>>>,
    /// The uploader, until its outcome was collected.
    task: Option<JoinHandle<Result<Uploaded, GridError>>>,
    /// The uploader's outcome, once known (kept so that a repeated `finish` answers the same).
    outcome: Option<Result<ImmutableVerifyCap, ApiError>>,
}

impl Session {
    fn touch(&self) {
        if let Ok(mut t) = self.last_active.lock() {
            *t = Instant::now();
        }
    }

    fn idle_since(&self) -> Instant {
        self.last_active
            .lock()
            .map(|t| *t)
            .unwrap_or_else(|_| Instant::now())
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }
}

impl Feed {
    /// Waits for the uploader's outcome (it has ended or is ending) and keeps it.
    async fn collect(&mut self) -> Result<ImmutableVerifyCap, ApiError> {
        if let Some(outcome) = &self.outcome {
            return outcome.clone();
        }
        self.tx = None;
        let outcome = match self.task.take() {
            Some(task) => match task.await {
                Ok(Ok(done)) => Ok(done.verify_cap),
                Ok(Err(e)) => Err(ApiError::from(e)),
                Err(e) if e.is_cancelled() => Err(ApiError::new(
                    StatusCode::GONE,
                    "this upload session was deleted or expired; start the upload again",
                )),
                Err(e) => Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the uploader stopped: {e}"),
                )),
            },
            None => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the upload session has no uploader",
            )),
        };
        self.outcome = Some(outcome.clone());
        outcome
    }
}

impl Sessions {
    fn get(&self, id: &str) -> Result<Arc<Session>, ApiError> {
        self.map
            .lock()
            .ok()
            .and_then(|m| m.get(id).cloned())
            .ok_or_else(|| not_found(id))
    }

    fn remove(&self, id: &str) -> Option<Arc<Session>> {
        self.map.lock().ok().and_then(|mut m| m.remove(id))
    }

    /// Sessions still receiving or storing (finished and failed ones do not count).
    fn active(&self) -> usize {
        self.map
            .lock()
            .map(|m| {
                m.values()
                    .filter(|s| s.feed.try_lock().map_or(true, |f| f.outcome.is_none()))
                    .count()
            })
            .unwrap_or(0)
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no upload session `{id}`: it expired, was deleted, or never existed; start the \
             upload again"
        ),
    )
}

fn with_offset(mut resp: Response, received: u64) -> Response {
    resp.headers_mut()
        .insert(UPLOAD_OFFSET, HeaderValue::from(received));
    resp
}

fn error_at(e: ApiError, received: u64) -> Response {
    with_offset(e.into_response(), received)
}

fn status_json(id: &str, s: &Session, state: &str) -> Response {
    with_offset(
        json_response(&serde_json::json!({
            "id": id,
            "size": s.size,
            "received": s.received(),
            "state": state,
        })),
        s.received(),
    )
}

fn parse_selection_index(q: &QueryMap) -> Result<SelectionIndex, ApiError> {
    let Some(sel) = q.get("selection_index") else {
        return Err(ApiError::bad_request(
            "POST /ciphertext/uploads needs selection_index=<32 hex digits> (derived from the key)",
        ));
    };
    let sel: [u8; 16] = hex::decode(sel)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| ApiError::bad_request("selection_index must be 32 lowercase hex digits"))?;
    Ok(SelectionIndex(sel))
}

fn parse_u64(q: &QueryMap, name: &str, what: &str) -> Result<u64, ApiError> {
    let Some(v) = q.get(name) else {
        return Err(ApiError::bad_request(format!(
            "{name}=<{what}> is required"
        )));
    };
    v.parse()
        .map_err(|_| ApiError::bad_request(format!("bad {name}: `{v}` is not a byte count")))
}

fn new_id() -> Result<String, ApiError> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("no randomness for a session id: {e}"),
        )
    })?;
    Ok(hex::encode(id))
}

/// `POST /ciphertext/uploads?selection_index=HEX&size=N[&k=&n=&segment_size=]`: opens a session
/// for `N` bytes of ciphertext; answers `201` with `{"id", "size", "received": 0, "state"}`.
pub(crate) async fn create(
    State(state): State<AppState>,
    Query(q): Query<QueryMap>,
) -> Result<Response, ApiError> {
    let config = state.config();
    let params = params_from_query(&q, config.default_params)?;
    let sel = parse_selection_index(&q)?;
    let size = parse_u64(&q, "size", "the ciphertext's length in bytes")?;
    if let Some(max) = config.max_upload_size {
        if size > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("this gateway takes uploads of at most {max} bytes; this one is {size}"),
            ));
        }
    }
    let sessions = state.uploads();
    let active = sessions.active();
    if active >= config.max_upload_sessions {
        let mut resp = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many uploads in progress on this gateway ({active}, the limit is {}); \
                 try again later",
                config.max_upload_sessions
            ),
        )
        .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        return Ok(resp);
    }
    let id = new_id()?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, GridError>>(QUEUE_FRAMES);
    let body: ByteStream = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let spec = UploadSpec {
        params,
        mode: UploadMode::Ciphertext(sel),
    };
    let task = tokio::spawn(state.grid().upload(spec, body));
    let session = Arc::new(Session {
        size,
        abort: task.abort_handle(),
        received: AtomicU64::new(0),
        last_active: Mutex::new(Instant::now()),
        feed: tokio::sync::Mutex::new(Feed {
            // An empty file is complete at once.
            tx: (size > 0).then_some(tx),
            task: Some(task),
            outcome: None,
        }),
    });
    if let Ok(mut m) = sessions.map.lock() {
        m.insert(id.clone(), Arc::clone(&session));
    }
    tokio::spawn(expire(
        Arc::downgrade(sessions),
        id.clone(),
        Arc::downgrade(&session),
        config.upload_session_idle,
    ));
    tracing::info!(size, "ciphertext upload session opened");
    let mut resp = status_json(&id, &session, "receiving");
    *resp.status_mut() = StatusCode::CREATED;
    if let Ok(v) = HeaderValue::from_str(&format!("/ciphertext/uploads/{id}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// Removes `id` once it has been idle for `idle`, stopping its uploader.
async fn expire(
    sessions: Weak<Sessions>,
    id: String,
    session: Weak<Session>,
    idle: std::time::Duration,
) {
    loop {
        let Some(s) = session.upgrade() else { return };
        let deadline = s.idle_since() + idle;
        drop(s);
        tokio::time::sleep_until(deadline).await;
        let Some(s) = session.upgrade() else { return };
        if s.idle_since() + idle > Instant::now() {
            continue;
        }
        // A request still holding the session (a slow uploader may hold one frame for long,
        // `finish` waits for the last shares) keeps it alive.
        if s.feed.try_lock().is_err() {
            s.touch();
            continue;
        }
        s.abort.abort();
        tracing::info!(
            received = s.received(),
            size = s.size,
            "ciphertext upload session expired"
        );
        if let Some(all) = sessions.upgrade() {
            all.remove(&id);
        }
        return;
    }
}

/// `GET /ciphertext/uploads/{id}`: `{"id", "size", "received", "state"}` (`receiving`,
/// `storing`, `done`, `failed`, or `busy` while a request holds the session).
pub(crate) async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let s = state.uploads().get(&id)?;
    let st = match s.feed.try_lock() {
        Err(_) => "busy",
        Ok(f) => match &f.outcome {
            Some(Ok(_)) => "done",
            Some(Err(_)) => "failed",
            None if f.tx.is_some() => "receiving",
            None => "storing",
        },
    };
    Ok(status_json(&id, &s, st))
}

/// `PUT /ciphertext/uploads/{id}?offset=N`: the body is the ciphertext at `N`, which must be the
/// number of bytes received so far. Answers the new count once the uploader has taken the bytes.
pub(crate) async fn put_chunk(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<QueryMap>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let s = state.uploads().get(&id)?;
    s.touch();
    let offset = parse_u64(&q, "offset", "where this chunk starts in the ciphertext")?;
    let Ok(mut feed) = s.feed.try_lock() else {
        return Ok(error_at(
            ApiError::new(
                StatusCode::CONFLICT,
                "another request is sending to this upload session; send one chunk at a time",
            ),
            s.received(),
        ));
    };
    if let Some(Err(e)) = &feed.outcome {
        return Ok(error_at(e.clone(), s.received()));
    }
    let received = s.received();
    if offset != received {
        let why = if offset < received {
            "already received"
        } else {
            "a gap"
        };
        return Ok(error_at(
            ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "this upload has received {received} bytes; the next chunk must start at \
                     offset {received}, not {offset} ({why})"
                ),
            ),
            received,
        ));
    }
    let declared: Option<u64> = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let past_end = |len: u64| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "this chunk goes past the end: {len} bytes at offset {offset}, the upload was \
                 opened for {} bytes",
                s.size
            ),
        )
    };
    if let Some(len) = declared {
        if offset.saturating_add(len) > s.size {
            return Ok(error_at(past_end(len), received));
        }
    }
    let mut frames = body.into_data_stream();
    while let Some(frame) = frames.next().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                // The client went away mid-chunk: what arrived stays; it resumes at `received`.
                s.touch();
                return Ok(error_at(
                    ApiError::bad_request(format!("reading the chunk: {e}")),
                    s.received(),
                ));
            }
        };
        if frame.is_empty() {
            continue;
        }
        let at = s.received();
        let len = frame.len() as u64;
        if at.saturating_add(len) > s.size {
            return Ok(error_at(past_end(at + len - offset), at));
        }
        let Some(tx) = &feed.tx else {
            return Ok(error_at(past_end(len), at));
        };
        if tx.send(Ok(frame)).await.is_err() {
            // The uploader has stopped: it failed (its error is the answer).
            let e = match feed.collect().await {
                Err(e) => e,
                Ok(_) => ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the uploader finished before all the bytes arrived",
                ),
            };
            return Ok(error_at(e, at));
        }
        s.received.store(at + len, Ordering::SeqCst);
        s.touch();
        if at + len == s.size {
            // Everything arrived: the uploader's input ends, it encodes the last segment.
            feed.tx = None;
        }
    }
    let received = s.received();
    Ok(status_json(
        &id,
        &s,
        if feed.tx.is_some() {
            "receiving"
        } else {
            "storing"
        },
    )
    .into_response())
    .map(|r| with_offset(r, received))
}

/// `POST /ciphertext/uploads/{id}/finish`: once every byte arrived, waits for the uploader and
/// answers the verifycap (`text/plain`), as `PUT /ciphertext` does. Repeating it answers the
/// same until the session expires.
pub(crate) async fn finish(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let s = state.uploads().get(&id)?;
    s.touch();
    let Ok(mut feed) = s.feed.try_lock() else {
        return Ok(error_at(
            ApiError::new(
                StatusCode::CONFLICT,
                "a chunk is still being received by this upload session; finish after it",
            ),
            s.received(),
        ));
    };
    let received = s.received();
    if received < s.size && feed.outcome.is_none() {
        return Ok(error_at(
            ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "the upload is incomplete: {received} of {} bytes received; send the rest \
                     from offset {received}",
                    s.size
                ),
            ),
            received,
        ));
    }
    let outcome = feed.collect().await;
    s.touch();
    match outcome {
        Ok(vc) => {
            tracing::info!(size = s.size, "uploaded ciphertext in chunks");
            Ok(with_offset(
                (
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    vc.to_string(),
                )
                    .into_response(),
                received,
            ))
        }
        Err(e) => Ok(error_at(e, received)),
    }
}

/// `DELETE /ciphertext/uploads/{id}`: stops the uploader and forgets the session (`204`).
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let Some(s) = state.uploads().remove(&id) else {
        return Err(not_found(&id));
    };
    s.abort.abort();
    tracing::info!(received = s.received(), "ciphertext upload session deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}
