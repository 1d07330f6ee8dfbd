//! `/uri`: Tahoe-style upload and download of plaintext.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::{Bytes, BytesMut};
use futures_util::{stream, StreamExt, TryStreamExt};
use lafs_caps::{Cap, ImmutableVerifyCap, LiteralCap};
use lafs_codec::{random_key, Params};
use lafs_proto::ids::storage_index_to_text;
use serde_json::json;

use crate::content::{decide_range, from_filename, sniff, RangeDecision, SNIFF_LEN};
use crate::grid::{
    BoxFuture, ByteStream, Grid, GridError, GridFile, ShareView, UploadMode, UploadSpec,
};
use crate::{ApiError, AppState};

/// Query parameters of a download.
pub(crate) type QueryMap = HashMap<String, String>;

/// Parses a cap from a path segment, with the caps crate's error text on failure.
pub(crate) fn parse_cap(text: &str) -> Result<Cap, ApiError> {
    text.parse::<Cap>().map_err(ApiError::from)
}

/// Encoding parameters from `k`, `n`, `segment_size` query parameters over `defaults`.
pub(crate) fn params_from_query(q: &QueryMap, defaults: Params) -> Result<Params, ApiError> {
    fn num<T: std::str::FromStr>(q: &QueryMap, name: &str) -> Result<Option<T>, ApiError> {
        q.get(name)
            .map(|v| {
                v.parse::<T>().map_err(|_| {
                    ApiError::bad_request(format!("bad {name}: `{v}` is not a number in range"))
                })
            })
            .transpose()
    }
    let k = num::<u16>(q, "k")?.unwrap_or(defaults.k());
    let n = num::<u16>(q, "n")?.unwrap_or(defaults.n());
    let seg = num::<u32>(q, "segment_size")?.unwrap_or(defaults.segment_size());
    Params::new(k, n, seg).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Where the bytes of a download come from.
pub(crate) enum Source {
    /// The data of a literal cap.
    Literal(Bytes),
    /// An opened grid file, and how to open it again (to sniff its first bytes).
    Grid {
        file: Box<dyn GridFile>,
        grid: Arc<dyn Grid>,
        cap: Cap,
    },
}

impl Source {
    /// Opens `cap` (literal caps need no grid).
    pub(crate) async fn open(grid: &Arc<dyn Grid>, cap: Cap) -> Result<Self, ApiError> {
        if let Cap::Literal(l) = &cap {
            return Ok(Self::Literal(Bytes::copy_from_slice(l.data())));
        }
        let file = grid.open(cap.clone()).await?;
        Ok(Self::Grid {
            file,
            grid: Arc::clone(grid),
            cap,
        })
    }

    fn size(&self) -> u64 {
        match self {
            Self::Literal(b) => b.len() as u64,
            Self::Grid { file, .. } => file.size(),
        }
    }

    fn stream(self, start: u64, end: u64) -> ByteStream {
        match self {
            Self::Literal(b) => {
                let len = b.len();
                let s = usize::try_from(start).unwrap_or(len).min(len);
                let e = usize::try_from(end).unwrap_or(len).min(len).max(s);
                let slice = b.slice(s..e);
                Box::pin(stream::once(async move { Ok(slice) }))
            }
            Self::Grid { file, .. } => file.read(start..end),
        }
    }

    /// The first [`SNIFF_LEN`] bytes, read separately (the file is opened again).
    fn head(&self) -> BoxFuture<'static, Result<Bytes, ApiError>> {
        let end = SNIFF_LEN.min(self.size());
        match self {
            Self::Literal(b) => {
                let head = b.slice(..usize::try_from(end).unwrap_or(0).min(b.len()));
                Box::pin(async move { Ok(head) })
            }
            Self::Grid { grid, cap, .. } => {
                let open = grid.open(cap.clone());
                Box::pin(async move {
                    let (head, _) = take_head(open.await?.read(0..end), end).await?;
                    Ok(head)
                })
            }
        }
    }
}

/// Pulls chunks from `s` until `want` bytes are seen or it ends; returns them joined and the
/// stream with those chunks put back in front.
async fn take_head(s: ByteStream, want: u64) -> Result<(Bytes, ByteStream), ApiError> {
    // Fused: a stream may be polled again after it ended (it is chained behind the head).
    let mut s = s.fuse();
    let mut chunks = Vec::new();
    let mut have = 0u64;
    while have < want {
        match s.next().await {
            Some(Ok(b)) => {
                have += b.len() as u64;
                chunks.push(b);
            }
            Some(Err(e)) => return Err(e.into()),
            None => break,
        }
    }
    let head = if chunks.len() == 1 {
        chunks[0].clone()
    } else {
        let mut joined = BytesMut::new();
        for c in &chunks {
            joined.extend_from_slice(c);
        }
        joined.freeze()
    };
    let rest: ByteStream = Box::pin(stream::iter(chunks.into_iter().map(Ok)).chain(s));
    Ok((head, rest))
}

/// How the Content-Type of a download is chosen.
pub(crate) enum TypeRule {
    /// Always this type.
    Fixed(&'static str),
    /// From the `filename` query parameter, else sniffed from the first bytes.
    Guess(Option<String>),
}

/// Answers a GET or HEAD for `source`: Range handling, Content-Length, Content-Type, and a
/// streamed body. The first chunk is awaited before the status is sent, so a file that cannot
/// be read gets an error status rather than a cut-off 200.
pub(crate) async fn respond(
    source: Source,
    method: &Method,
    headers: &HeaderMap,
    rule: TypeRule,
    mut extra: HeaderMap,
    etag: Option<String>,
) -> Result<Response, ApiError> {
    if let Some(tag) = &etag {
        insert(&mut extra, header::ETAG, tag);
    }
    let size = source.size();
    let decision = decide_range(headers.get(header::RANGE), size);
    let (status, start, end) = match decision {
        RangeDecision::Full => (StatusCode::OK, 0, size),
        RangeDecision::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end),
        RangeDecision::Unsatisfiable => {
            let mut resp = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("range not satisfiable: the file has {size} bytes"),
            )
            .into_response();
            insert(
                resp.headers_mut(),
                header::CONTENT_RANGE,
                &format!("bytes */{size}"),
            );
            insert(resp.headers_mut(), header::ACCEPT_RANGES, "bytes");
            return Ok(resp);
        }
    };
    let head = method == Method::HEAD;
    let sniff_needed = matches!(rule, TypeRule::Guess(None)) && size > 0;
    let content_type = match rule {
        TypeRule::Fixed(t) => Some(t.to_owned()),
        TypeRule::Guess(Some(t)) => Some(t),
        TypeRule::Guess(None) if size == 0 => Some(sniff(&[]).to_owned()),
        // Sniffed from a separate read unless the body itself starts at byte 0.
        TypeRule::Guess(None) if head || start != 0 => {
            Some(sniff(&source.head().await?).to_owned())
        }
        TypeRule::Guess(None) => None,
    };
    let mut body = None;
    let mut content_type = content_type.unwrap_or_default();
    if !head && end > start {
        // Awaiting the first bytes before answering turns "cannot read" into an error status.
        let want = if sniff_needed && start == 0 {
            SNIFF_LEN
        } else {
            1
        };
        let (first, rest) = take_head(source.stream(start, end), want).await?;
        if content_type.is_empty() {
            content_type = sniff(&first).to_owned();
        }
        body = Some(rest);
    }
    let len = end - start;
    insert(&mut extra, header::CONTENT_TYPE, &content_type);
    insert(&mut extra, header::CONTENT_LENGTH, &len.to_string());
    insert(&mut extra, header::ACCEPT_RANGES, "bytes");
    insert(
        &mut extra,
        header::HeaderName::from_static("x-lafs-file-size"),
        &size.to_string(),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        insert(
            &mut extra,
            header::CONTENT_RANGE,
            &format!("bytes {start}-{}/{size}", end - 1),
        );
    }
    let body = match body {
        Some(rest) => {
            Body::from_stream(rest.map_err(|e| {
                // Headers are gone: the only way to tell the client is to cut the body short.
                tracing::warn!(error = %e, "download failed mid-stream");
                std::io::Error::other(e.to_string())
            }))
        }
        None => Body::empty(),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().extend(extra);
    Ok(resp)
}

/// `304 Not Modified` if the request's `If-None-Match` names `tag`. Immutable content never
/// changes under its tag, so this is answered without asking the grid anything.
pub(crate) fn not_modified(headers: &HeaderMap, tag: &str) -> Option<Response> {
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    if !matches {
        return None;
    }
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NOT_MODIFIED;
    insert(resp.headers_mut(), header::ETAG, tag);
    Some(resp)
}

/// The entity tag of a file's representation: `kind` `p` (plaintext) or `c` (ciphertext), then
/// the storage index (or, for a literal cap, a hash of its data). Never reveals a key.
pub(crate) fn etag_for(cap: &Cap, kind: &str) -> String {
    match cap.verify_cap() {
        Some(vc) => format!("\"{kind}-{}\"", storage_index_to_text(vc.storage_index())),
        None => {
            let data = match cap {
                Cap::Literal(l) => l.data(),
                _ => &[],
            };
            let h = lafs_hashtree::tagged_hash("lafs/v1/gateway/literal-etag", &[data]);
            format!("\"{kind}-l{}\"", &h.to_hex()[..32])
        }
    }
}

fn insert(h: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

/// Headers on every plaintext download: the content is the uploader's, so it must not run in
/// the gateway's origin (which serves the web app) and must not leak its URL (a readcap).
fn plaintext_headers(q: &QueryMap) -> HeaderMap {
    let mut h = HeaderMap::new();
    insert(&mut h, header::CONTENT_SECURITY_POLICY, "sandbox");
    insert(&mut h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    insert(&mut h, header::REFERRER_POLICY, "no-referrer");
    if q.get("save").is_some_and(|v| v == "true" || v == "1") {
        let name = q.get("filename").map_or("download", String::as_str);
        insert(
            &mut h,
            header::CONTENT_DISPOSITION,
            &format!("attachment; filename*=UTF-8''{}", percent_encode(name)),
        );
    }
    h
}

/// RFC 5987 `attr-char` encoding: everything but ALPHA / DIGIT / `!#$&+-.^_`|~` is %XX.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET /uri?uri=$CAP`: Tahoe's form of `GET /uri/$CAP` (a redirect).
pub(crate) async fn get_uri_query(Query(q): Query<QueryMap>) -> Result<Response, ApiError> {
    let Some(cap) = q.get("uri") else {
        return Err(ApiError::bad_request(
            "GET /uri needs a cap: /uri/$CAP or /uri?uri=$CAP",
        ));
    };
    let cap = parse_cap(cap)?;
    Ok(Redirect::to(&format!("/uri/{cap}")).into_response())
}

/// `GET`/`HEAD /uri/$CAP`.
pub(crate) async fn get_cap(
    State(state): State<AppState>,
    Path(cap): Path<String>,
    Query(q): Query<QueryMap>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let cap = parse_cap(&cap)?;
    if crate::dirs::handles(&cap) {
        return crate::dirs::get_cap(&state, cap, &q).await;
    }
    match q.get("t").map(String::as_str) {
        None | Some("") => {}
        Some("json") => return info_json(&state, &cap).await,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown t=`{other}` for a file (supported: t=json)"
            )))
        }
    }
    let etag = etag_for(&cap, "p");
    let source = match cap {
        Cap::Literal(_) | Cap::ImmutableRead(_) => {
            if let Some(resp) = not_modified(&headers, &etag) {
                return Ok(resp);
            }
            Source::open(state.grid(), cap).await?
        }
        Cap::ImmutableVerify(v) => {
            return Err(ApiError::bad_request(format!(
                "a verifycap cannot read the file's plaintext; GET /ciphertext/{v} gives its \
                 verified ciphertext"
            )))
        }
        _ => {
            return Err(ApiError::bad_request(
                "this kind of cap is not supported here",
            ))
        }
    };
    let rule = TypeRule::Guess(q.get("filename").and_then(|f| from_filename(f)));
    respond(
        source,
        &method,
        &headers,
        rule,
        plaintext_headers(&q),
        Some(etag),
    )
    .await
}

/// The `t=json` description of a file (Tahoe's `["filenode", {...}]` shape).
pub(crate) async fn info_json(state: &AppState, cap: &Cap) -> Result<Response, ApiError> {
    let value = match cap {
        Cap::Literal(l) => json!(["filenode", {
            "mutable": false,
            "format": "literal",
            "ro_uri": cap.to_string(),
            "size": l.data().len(),
        }]),
        Cap::ImmutableRead(_) | Cap::ImmutableVerify(_) => {
            let Some(vc) = cap.verify_cap() else {
                return Err(ApiError::bad_request("cap has no verifycap"));
            };
            let view = state.grid().inspect(vc).await?;
            let mut info = file_json(&vc, &*view);
            if let (Cap::ImmutableRead(_), Some(obj)) = (cap, info.as_object_mut()) {
                obj.insert("ro_uri".into(), json!(cap.to_string()));
            }
            json!(["filenode", info])
        }
        _ => {
            return Err(ApiError::bad_request(
                "this kind of cap is not supported here",
            ))
        }
    };
    Ok(json_response(&value))
}

/// The grid facts about a file (no readcap in it).
pub(crate) fn file_json(vc: &ImmutableVerifyCap, file: &dyn ShareView) -> serde_json::Value {
    let ueb = file.ueb();
    json!({
        "mutable": false,
        "format": "lafs-immutable-v1",
        "verify_uri": vc.to_string(),
        "size": ueb.file_size,
        "storage_index": storage_index_to_text(vc.storage_index()),
        "k": ueb.params.k(),
        "n": ueb.params.n(),
        "segment_size": ueb.params.segment_size(),
        "num_segments": ueb.num_segments(),
        "ciphertext_root": ueb.ciphertext_root.to_hex(),
        "ueb": hex::encode(ueb.to_bytes()),
        "shares_found": file.shares().len(),
    })
}

pub(crate) fn json_response(value: &serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{value}\n"),
    )
        .into_response()
}

/// Files of at most this many bytes are stored in a literal cap, not on the grid.
const LITERAL_MAX: usize = LiteralCap::MAX_LEN;

/// Uploads `body`: if it ends within [`LITERAL_MAX`] bytes it becomes a literal cap (no grid);
/// otherwise it streams to the grid under a fresh random key. Returns the cap text.
pub(crate) async fn upload_plaintext(
    state: &AppState,
    params: Params,
    mut body: ByteStream,
) -> Result<Cap, ApiError> {
    let mut head = BytesMut::new();
    let mut ended = true;
    while let Some(chunk) = body.next().await {
        head.extend_from_slice(&chunk?);
        if head.len() > LITERAL_MAX {
            ended = false;
            break;
        }
    }
    if ended {
        return Ok(Cap::Literal(LiteralCap::new(head.to_vec())?));
    }
    let key = random_key()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let spec = UploadSpec {
        params,
        mode: UploadMode::Plaintext(key.clone()),
    };
    let body: ByteStream = Box::pin(stream::once(async move { Ok(head.freeze()) }).chain(body));
    let done = state.grid().upload(spec, body).await?;
    match done.read_cap {
        Some(rc) => Ok(Cap::ImmutableRead(rc)),
        None => Ok(Cap::ImmutableRead(lafs_caps::ImmutableReadCap::new(
            key,
            *done.verify_cap.storage_index(),
        ))),
    }
}

pub(crate) fn body_stream(body: Body) -> ByteStream {
    Box::pin(
        body.into_data_stream()
            .map_err(|e| GridError::Body(e.to_string())),
    )
}

/// `PUT /uri[?k=&n=&segment_size=]`: the body is the file; answers the cap (text).
pub(crate) async fn put_uri(
    State(state): State<AppState>,
    Query(q): Query<QueryMap>,
    body: Body,
) -> Result<Response, ApiError> {
    let params = params_from_query(&q, state.config().default_params)?;
    let cap = upload_plaintext(&state, params, body_stream(body)).await?;
    tracing::info!(kind = %cap.kind(), "uploaded");
    Ok(cap_response(&cap))
}

fn cap_response(cap: &Cap) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        cap.to_string(),
    )
        .into_response()
}

/// Whether a `when_done` target is a same-origin path (no open redirect to other sites).
fn local_path(url: &str) -> bool {
    url.starts_with('/') && !url.starts_with("//") && !url.contains('\\')
}

/// `POST /uri[?t=upload]` with a `multipart/form-data` body: field `file` is uploaded (streamed);
/// `when_done` (query or form field) redirects there (303) afterwards, `redirect_to_result=true`
/// redirects to `/uri/$CAP`; otherwise the answer is the cap (text).
pub(crate) async fn post_uri(
    State(state): State<AppState>,
    Query(q): Query<QueryMap>,
    mut form: Multipart,
) -> Result<Response, ApiError> {
    match q.get("t").map(String::as_str) {
        None | Some("upload") | Some("") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "POST /uri supports t=upload only, not t=`{other}`"
            )))
        }
    }
    let params = params_from_query(&q, state.config().default_params)?;
    let mut fields: QueryMap = q.clone();
    let mut cap = None;
    loop {
        let field = form
            .next_field()
            .await
            .map_err(|e| ApiError::bad_request(format!("bad multipart form: {e}")))?;
        let Some(field) = field else { break };
        let name = field.name().unwrap_or("").to_owned();
        if name == "file" {
            if cap.is_some() {
                return Err(ApiError::bad_request("the form has two `file` fields"));
            }
            // The field borrows the form, the grid wants a 'static stream: a small bounded
            // channel between them keeps the upload streaming (backpressure, no buffering).
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, GridError>>(2);
            let pump = async move {
                let mut field = field;
                loop {
                    let item = match field.chunk().await {
                        Ok(Some(b)) => Ok(b),
                        Ok(None) => break,
                        Err(e) => Err(GridError::Body(e.to_string())),
                    };
                    let failed = item.is_err();
                    if tx.send(item).await.is_err() || failed {
                        break;
                    }
                }
            };
            let body: ByteStream = Box::pin(stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            }));
            let ((), result) = tokio::join!(pump, upload_plaintext(&state, params, body));
            cap = Some(result?);
        } else if matches!(name.as_str(), "when_done" | "redirect_to_result" | "t") {
            let text = field
                .text()
                .await
                .map_err(|e| ApiError::bad_request(format!("bad multipart form: {e}")))?;
            fields.insert(name, text);
        } else {
            // Unknown fields are read and ignored (Tahoe forms carry e.g. `_charset`).
            let _ = field.bytes().await;
        }
    }
    let Some(cap) = cap else {
        return Err(ApiError::bad_request(
            "the form has no `file` field (multipart/form-data, field name `file`)",
        ));
    };
    tracing::info!(kind = %cap.kind(), "uploaded (form)");
    if let Some(target) = fields.get("when_done").filter(|s| !s.is_empty()) {
        if !local_path(target) {
            return Err(ApiError::bad_request(
                "when_done must be a path on this gateway (starting with a single /)",
            ));
        }
        return Ok(Redirect::to(target).into_response());
    }
    if fields
        .get("redirect_to_result")
        .is_some_and(|v| v == "true")
    {
        return Ok(Redirect::to(&format!("/uri/{cap}")).into_response());
    }
    Ok(cap_response(&cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_and_paths() {
        assert_eq!(percent_encode("a b.txt"), "a%20b.txt");
        assert_eq!(percent_encode("é"), "%C3%A9");
        assert!(local_path("/done"));
        assert!(!local_path("//evil.example/"));
        assert!(!local_path("https://evil.example/"));
        assert!(!local_path("/\\evil"));
    }
}
