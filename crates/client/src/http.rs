//! The storage protocol over HTTP, without the HTTP: a transport-neutral request planner.
//!
//! For each [`Transport`] operation a function here returns a [`Plan`]: the [`HttpRequest`] to
//! send (method, path, query, headers, body; [`HttpRequest::sign`] adds the signature headers)
//! and the [`Check`] that turns the answer ([`HttpResponse`]: status and body) into the typed
//! result or a [`TransportError`]. The checks refuse what an honest server never answers
//! (another storage index or share echoed, more list entries than share numbers exist, a read
//! answered with other parts than asked), so a hostile server gets an error, never a panic.
//!
//! A driver that only moves bytes implements [`HttpBackend`] (`fetch` in the browser, reqwest
//! natively) and gets [`Transport`] from the blanket implementation here, which also keeps the
//! per-server state every HTTP transport needs: each server's signing audience (its
//! `server_id`) and, optionally, its `version` answer for a while ([`ServerCache`]).
//!
//! Nothing here does IO or reads a clock: the backend supplies the time; the only randomness is
//! each signed request's nonce (`getrandom`).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use lafs_proto::ids::storage_index_to_text;
use lafs_proto::mutable::{encode_writes, MutableWriteResponse, WireWrite};
use lafs_proto::signing::{is_share_data_request, sign_request, RequestParts};
use lafs_proto::storage::{
    AdvisoryRequest, AllocateRequest, AllocateResponse, ErrorBody, ErrorCode, FinishRequest,
    FinishResponse, PutShareResponse, ShareInfo, SharesResponse, VersionResponse, WriteResponse,
    MAX_ADVISORY_REASON,
};
use lafs_proto::{Nonce, ReadRequest, ShareNum, StorageIndex, UploadId};
use serde::de::DeserializeOwned;

use crate::placement::ServerId;
use crate::transport::{parse_read_response, BoxFut, MaybeSendSync, Payload, ReadPiece, Transport};
use crate::TransportError;

/// The most entries a share list can honestly have: share numbers are `0..=255`.
pub const MAX_LISTED_SHARES: usize = 256;

/// How many bytes of a non-JSON error body are kept in [`TransportError::Status`]'s message.
pub const ERROR_TEXT_LIMIT: usize = 200;

/// `content-type` of JSON request bodies.
pub const JSON: &str = "application/json";

/// An HTTP method of the storage protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET` (no body is sent).
    Get,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `DELETE`.
    Delete,
}

impl Method {
    /// The method as sent and as signed: `"GET"`, `"POST"`, `"PUT"` or `"DELETE"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
        }
    }
}

/// Where a storage server is: its base URL without a trailing `/`, and the path part of it
/// (`""` or `"/prefix"`), which every path sent to it — and signed — starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    base: String,
    prefix: String,
}

impl ServerUrl {
    /// Splits a server URL as announced (`http://host:port[/prefix][/]`). The path part is
    /// taken as written (not re-encoded), so a signature covers exactly the path sent.
    pub fn parse(url: &str) -> Self {
        let base = url.trim_end_matches('/').to_owned();
        let after_scheme = base.find("://").map_or(0, |i| i + 3);
        let prefix = base[after_scheme..]
            .find('/')
            .map_or(String::new(), |i| base[after_scheme + i..].to_owned());
        Self { base, prefix }
    }

    /// The URL without a trailing `/`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The path part of the URL (`""` if none), without a trailing `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// One request, as plain data: what a backend puts on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// The method.
    pub method: Method,
    /// The path below the server's URL, starting with `/storage/v1/`.
    pub path: String,
    /// The query without `?` (`""` if none), sent exactly as it is.
    pub query: String,
    /// Headers to send: `content-type` for JSON bodies, the four `lafs-*` headers once signed.
    pub headers: Vec<(&'static str, String)>,
    /// The body (empty for `GET`, `DELETE` and the other body-less requests); share data may
    /// come in several pieces, to be sent back to back.
    pub body: Payload,
    /// Whether the protocol wants this request signed ([`HttpRequest::sign`]).
    pub signed: bool,
}

impl HttpRequest {
    fn new(method: Method, path: String) -> Self {
        Self {
            method,
            path,
            query: String::new(),
            headers: Vec::new(),
            body: Payload::new(),
            signed: false,
        }
    }

    fn json<Q: serde::Serialize>(mut self, body: &Q) -> Result<Self, TransportError> {
        let body = serde_json::to_vec(body).map_err(|e| TransportError::Protocol(e.to_string()))?;
        self.headers.push(("content-type", JSON.into()));
        self.body = Payload::from(body);
        Ok(self)
    }

    fn signed(mut self) -> Self {
        self.signed = true;
        self
    }

    /// The full URL of this request to `server`: base, path and `?query` if any.
    pub fn url(&self, server: &ServerUrl) -> String {
        let mut url = format!("{}{}", server.base, self.path);
        if !self.query.is_empty() {
            url.push('?');
            url.push_str(&self.query);
        }
        url
    }

    /// Adds the four signature headers (`docs/spec/signed-requests.md`) for the server whose
    /// id is `audience` at `server`: the signed path is the server's prefix plus
    /// [`HttpRequest::path`], the body bound by length for share data and by digest otherwise
    /// (`RequestParts::for_body`). `nonce` must be fresh random bytes.
    pub fn sign(
        &mut self,
        key: &SigningKey,
        audience: &str,
        server: &ServerUrl,
        timestamp: u64,
        nonce: Nonce,
    ) {
        let path = format!("{}{}", server.prefix, self.path);
        let method = self.method.as_str();
        let parts = if is_share_data_request(method, &path) {
            RequestParts::share_data(method, &path, &self.query, self.body.len() as u64)
        } else {
            RequestParts::new(method, &path, &self.query, &self.body.to_bytes())
        };
        let headers = sign_request(key, audience, &parts, timestamp, nonce);
        self.headers.extend(headers.header_values());
    }
}

/// An answer, as plain data: what a backend got back. No response header is needed by any
/// check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The whole body.
    pub body: Bytes,
}

impl HttpResponse {
    /// The body of a 2xx answer; any other status becomes [`TransportError::Status`] with the
    /// code and message of the JSON error body, or [`ErrorCode::Unknown`] and the first
    /// [`ERROR_TEXT_LIMIT`] bytes of the body (lossy UTF-8) when it is not one.
    pub fn success(self) -> Result<Bytes, TransportError> {
        if (200..300).contains(&self.status) {
            return Ok(self.body);
        }
        Err(status_error(self.status, &self.body))
    }
}

/// The error for an answer with a non-2xx `status` and this body (see
/// [`HttpResponse::success`]).
pub fn status_error(status: u16, body: &[u8]) -> TransportError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => TransportError::Status {
            status,
            code: b.error,
            message: b.message,
        },
        Err(_) => TransportError::Status {
            status,
            code: ErrorCode::Unknown,
            message: String::from_utf8_lossy(&body[..body.len().min(ERROR_TEXT_LIMIT)])
                .into_owned(),
        },
    }
}

/// How the answer to one planned request is checked and turned into its result.
pub trait Check {
    /// The typed result.
    type Output;

    /// Checks the body of a 2xx answer.
    fn check(&self, body: Bytes) -> Result<Self::Output, TransportError>;

    /// Checks a whole answer: the status ([`HttpResponse::success`]), then the body.
    fn response(&self, response: HttpResponse) -> Result<Self::Output, TransportError> {
        self.check(response.success()?)
    }
}

/// A planned operation: the request to send and the check of its answer.
#[derive(Debug, Clone)]
pub struct Plan<C> {
    /// The request.
    pub request: HttpRequest,
    /// The check of the answer.
    pub check: C,
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, TransportError> {
    serde_json::from_slice(body)
        .map_err(|e| TransportError::Protocol(format!("unexpected response body: {e}")))
}

fn protocol(what: &str) -> TransportError {
    TransportError::Protocol(what.into())
}

fn check_listed(shares: &[ShareInfo]) -> Result<(), TransportError> {
    if shares.len() > MAX_LISTED_SHARES {
        return Err(TransportError::Protocol(format!(
            "{} shares listed, more than share numbers exist",
            shares.len()
        )));
    }
    Ok(())
}

/// Check: a JSON body of type `T`, no further condition.
#[derive(Debug)]
pub struct Json<T>(PhantomData<fn() -> T>);

impl<T> Clone for Json<T> {
    fn clone(&self) -> Self {
        Self(PhantomData)
    }
}

impl<T: DeserializeOwned> Check for Json<T> {
    type Output = T;
    fn check(&self, body: Bytes) -> Result<T, TransportError> {
        parse_json(&body)
    }
}

/// Check: any 2xx answer, body ignored.
#[derive(Debug, Clone, Copy)]
pub struct NoBody;

impl Check for NoBody {
    type Output = ();
    fn check(&self, _body: Bytes) -> Result<(), TransportError> {
        Ok(())
    }
}

/// Check of a share list: names the storage index asked about, at most
/// [`MAX_LISTED_SHARES`] entries.
#[derive(Debug, Clone, Copy)]
pub struct SharesOf(StorageIndex);

impl Check for SharesOf {
    type Output = Vec<ShareInfo>;
    fn check(&self, body: Bytes) -> Result<Vec<ShareInfo>, TransportError> {
        let r: SharesResponse = parse_json(&body)?;
        if r.storage_index != self.0 {
            return Err(protocol("shares listed for another storage index"));
        }
        check_listed(&r.shares)?;
        Ok(r.shares)
    }
}

/// Check of a multi-range read: a valid `application/x-lafs-read-v1` body with exactly one
/// part per requested range, of the requested share, in request order.
#[derive(Debug, Clone)]
pub struct ReadParts(Vec<ShareNum>);

impl Check for ReadParts {
    type Output = Vec<ReadPiece>;
    fn check(&self, body: Bytes) -> Result<Vec<ReadPiece>, TransportError> {
        let pieces = parse_read_response(&body)?;
        if pieces.len() != self.0.len() {
            return Err(TransportError::Protocol(format!(
                "read answered with {} parts for {} ranges",
                pieces.len(),
                self.0.len()
            )));
        }
        for (i, (piece, want)) in pieces.iter().zip(&self.0).enumerate() {
            let share = match piece {
                ReadPiece::Data { share, .. } | ReadPiece::Absent { share } => *share,
            };
            if share != u16::from(want.0) {
                return Err(TransportError::Protocol(format!(
                    "read part {i} is of share {share}, share {} was asked",
                    want.0
                )));
            }
        }
        Ok(pieces)
    }
}

/// Check of an allocation: echoes the upload id; lists at most [`MAX_LISTED_SHARES`] shares.
#[derive(Debug, Clone, Copy)]
pub struct Allocated(UploadId);

impl Check for Allocated {
    type Output = AllocateResponse;
    fn check(&self, body: Bytes) -> Result<AllocateResponse, TransportError> {
        let r: AllocateResponse = parse_json(&body)?;
        if r.upload_id != self.0 {
            return Err(protocol("allocation answered for another upload"));
        }
        if r.allocated.len() > MAX_LISTED_SHARES || r.already_have.len() > MAX_LISTED_SHARES {
            return Err(protocol("allocation lists more shares than exist"));
        }
        Ok(r)
    }
}

/// Check of a write or finish: the answer names the share written.
#[derive(Debug)]
pub struct ShareAnswer<T>(ShareNum, PhantomData<fn() -> T>);

impl<T> Clone for ShareAnswer<T> {
    fn clone(&self) -> Self {
        Self(self.0, PhantomData)
    }
}

/// An answer that names one share.
pub trait NamesShare: DeserializeOwned {
    /// The share the answer is about.
    fn share(&self) -> ShareNum;
}

impl NamesShare for WriteResponse {
    fn share(&self) -> ShareNum {
        self.share
    }
}

impl NamesShare for FinishResponse {
    fn share(&self) -> ShareNum {
        self.share
    }
}

impl<T: NamesShare> Check for ShareAnswer<T> {
    type Output = T;
    fn check(&self, body: Bytes) -> Result<T, TransportError> {
        let r: T = parse_json(&body)?;
        if r.share() != self.0 {
            return Err(TransportError::Protocol(format!(
                "answer names share {} instead of {}",
                r.share(),
                self.0
            )));
        }
        Ok(r)
    }
}

/// Check of a whole-share PUT: the answer names the storage index and share sent, and lists
/// at most [`MAX_LISTED_SHARES`] held shares.
#[derive(Debug, Clone, Copy)]
pub struct PutShare(StorageIndex, ShareNum);

impl Check for PutShare {
    type Output = PutShareResponse;
    fn check(&self, body: Bytes) -> Result<PutShareResponse, TransportError> {
        let r: PutShareResponse = parse_json(&body)?;
        if r.storage_index != self.0 || r.share != self.1 {
            return Err(protocol("whole-share answer names another share"));
        }
        check_listed(&r.held)?;
        Ok(r)
    }
}

/// Check of a mutable test-and-write: one result per write, of that write's share, in
/// request order.
#[derive(Debug, Clone)]
pub struct MutableWritten(Vec<ShareNum>);

impl Check for MutableWritten {
    type Output = MutableWriteResponse;
    fn check(&self, body: Bytes) -> Result<MutableWriteResponse, TransportError> {
        let r: MutableWriteResponse = parse_json(&body)?;
        if r.results.len() != self.0.len()
            || r.results.iter().zip(&self.0).any(|(r, s)| r.share != *s)
        {
            return Err(TransportError::Protocol(format!(
                "mutable write answered with {} results that do not match the {} writes sent",
                r.results.len(),
                self.0.len()
            )));
        }
        Ok(r)
    }
}

fn si_path(kind: &str, si: &StorageIndex, rest: &str) -> String {
    format!("/storage/v1/{kind}/{}/{rest}", storage_index_to_text(si))
}

/// `GET /storage/v1/version`.
pub fn version() -> Plan<Json<VersionResponse>> {
    Plan {
        request: HttpRequest::new(Method::Get, "/storage/v1/version".into()),
        check: Json(PhantomData),
    }
}

/// `GET /storage/v1/immutable/{si}/shares`.
pub fn list_shares(si: StorageIndex) -> Plan<SharesOf> {
    Plan {
        request: HttpRequest::new(Method::Get, si_path("immutable", &si, "shares")),
        check: SharesOf(si),
    }
}

/// `GET /storage/v1/mutable/{si}/shares`.
pub fn mutable_list(si: StorageIndex) -> Plan<SharesOf> {
    Plan {
        request: HttpRequest::new(Method::Get, si_path("mutable", &si, "shares")),
        check: SharesOf(si),
    }
}

fn read_at(path: String, req: &ReadRequest) -> Result<Plan<ReadParts>, TransportError> {
    let wanted = req
        .reads
        .iter()
        .flat_map(|r| r.ranges.iter().map(|_| r.share))
        .collect();
    Ok(Plan {
        request: HttpRequest::new(Method::Post, path).json(req)?,
        check: ReadParts(wanted),
    })
}

/// `POST /storage/v1/immutable/{si}/read` (JSON body, not signed).
pub fn read(si: StorageIndex, req: &ReadRequest) -> Result<Plan<ReadParts>, TransportError> {
    read_at(si_path("immutable", &si, "read"), req)
}

/// `POST /storage/v1/mutable/{si}/read` (JSON body, not signed).
pub fn mutable_read(
    si: StorageIndex,
    req: &ReadRequest,
) -> Result<Plan<ReadParts>, TransportError> {
    read_at(si_path("mutable", &si, "read"), req)
}

/// `POST /storage/v1/upload/{upload}` (signed, JSON body).
pub fn allocate(
    upload: UploadId,
    req: &AllocateRequest,
) -> Result<Plan<Allocated>, TransportError> {
    Ok(Plan {
        request: HttpRequest::new(Method::Post, format!("/storage/v1/upload/{upload}"))
            .json(req)?
            .signed(),
        check: Allocated(upload),
    })
}

/// `PUT /storage/v1/upload/{upload}/{share}?offset=N` (signed, body bound by length).
pub fn write(
    upload: UploadId,
    share: ShareNum,
    offset: u64,
    data: impl Into<Payload>,
) -> Plan<ShareAnswer<WriteResponse>> {
    let mut request = HttpRequest::new(Method::Put, format!("/storage/v1/upload/{upload}/{share}"));
    request.query = format!("offset={offset}");
    request.body = data.into();
    Plan {
        request: request.signed(),
        check: ShareAnswer(share, PhantomData),
    }
}

/// `POST /storage/v1/upload/{upload}/{share}/finish` (signed, JSON body).
pub fn finish(
    upload: UploadId,
    share: ShareNum,
    req: &FinishRequest,
) -> Result<Plan<ShareAnswer<FinishResponse>>, TransportError> {
    Ok(Plan {
        request: HttpRequest::new(
            Method::Post,
            format!("/storage/v1/upload/{upload}/{share}/finish"),
        )
        .json(req)?
        .signed(),
        check: ShareAnswer(share, PhantomData),
    })
}

/// `PUT /storage/v1/immutable/{si}/{share}` (signed, body bound by length).
pub fn put_share(si: StorageIndex, share: ShareNum, data: impl Into<Payload>) -> Plan<PutShare> {
    let mut request = HttpRequest::new(Method::Put, si_path("immutable", &si, &share.to_string()));
    request.body = data.into();
    Plan {
        request: request.signed(),
        check: PutShare(si, share),
    }
}

/// `DELETE /storage/v1/upload/{upload}` (signed, no body).
pub fn abort(upload: UploadId) -> Plan<NoBody> {
    Plan {
        request: HttpRequest::new(Method::Delete, format!("/storage/v1/upload/{upload}")).signed(),
        check: NoBody,
    }
}

/// `POST /storage/v1/immutable/{si}/{share}/corrupt` (signed, JSON body); `reason` is cut to
/// [`MAX_ADVISORY_REASON`] bytes (at a character boundary).
pub fn advise_corrupt(
    si: StorageIndex,
    share: ShareNum,
    reason: &str,
) -> Result<Plan<NoBody>, TransportError> {
    let mut end = reason.len().min(MAX_ADVISORY_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let body = AdvisoryRequest {
        reason: reason[..end].to_owned(),
    };
    Ok(Plan {
        request: HttpRequest::new(
            Method::Post,
            si_path("immutable", &si, &format!("{share}/corrupt")),
        )
        .json(&body)?
        .signed(),
        check: NoBody,
    })
}

/// `POST /storage/v1/mutable/{si}/write` (signed, binary body `lafsmw`, no `content-type`).
pub fn mutable_write(
    si: StorageIndex,
    writes: &[WireWrite],
) -> Result<Plan<MutableWritten>, TransportError> {
    let body = encode_writes(writes).map_err(|e| TransportError::Protocol(e.to_string()))?;
    let mut request = HttpRequest::new(Method::Post, si_path("mutable", &si, "write"));
    request.body = Payload::from(body);
    Ok(Plan {
        request: request.signed(),
        check: MutableWritten(writes.iter().map(WireWrite::share).collect()),
    })
}

/// What an HTTP transport remembers about each server: the audience its signed requests
/// name (its `server_id`, learnt from `version`, kept) and its `version` answer (kept for
/// `version_ttl_ms`, dropped by any failed request to it). Time is the caller's, in
/// milliseconds of any monotonic clock.
#[derive(Debug, Clone, Default)]
pub struct ServerCache {
    version_ttl_ms: u64,
    audiences: HashMap<ServerId, String>,
    versions: HashMap<ServerId, (u64, VersionResponse)>,
}

impl ServerCache {
    /// A cache keeping `version` answers for `version_ttl_ms` (0: not at all).
    pub fn new(version_ttl_ms: u64) -> Self {
        Self {
            version_ttl_ms,
            ..Self::default()
        }
    }

    /// The version answer of `server` recorded less than the TTL before `now_ms`.
    pub fn version(&self, server: &ServerId, now_ms: u64) -> Option<VersionResponse> {
        self.versions
            .get(server)
            .filter(|(at, _)| now_ms.saturating_sub(*at) < self.version_ttl_ms)
            .map(|(_, v)| v.clone())
    }

    /// The audience of `server`, once any version answer of it was recorded.
    pub fn audience(&self, server: &ServerId) -> Option<String> {
        self.audiences.get(server).cloned()
    }

    /// Records `server`'s version answer at `now_ms` (the answer itself only with a TTL).
    pub fn record_version(&mut self, server: ServerId, now_ms: u64, version: &VersionResponse) {
        if self.version_ttl_ms > 0 {
            self.versions.insert(server, (now_ms, version.clone()));
        }
        self.audiences.insert(server, version.server_id.clone());
    }

    /// A request to `server` failed: its version answer is asked again next time.
    pub fn request_failed(&mut self, server: &ServerId) {
        self.versions.remove(server);
    }
}

/// Settings of an [`HttpSession`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// How long a server's `version` answer is reused ([`ServerCache`]); 0 asks every time.
    pub version_ttl_ms: u64,
    /// Whether whole shares go in one `PUT /storage/v1/immutable/{si}/{share}`; if not,
    /// [`Transport::put_share`] answers 501 and the client allocates, writes and finishes.
    pub whole_share_put: bool,
}

/// The state an [`HttpBackend`] holds for the [`Transport`] built on it: the account key that
/// signs writes and the [`ServerCache`].
pub struct HttpSession {
    key: SigningKey,
    cache: Mutex<ServerCache>,
    config: SessionConfig,
}

impl core::fmt::Debug for HttpSession {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HttpSession")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl HttpSession {
    /// A session signing with `key`.
    pub fn new(key: SigningKey, config: SessionConfig) -> Self {
        Self {
            key,
            cache: Mutex::new(ServerCache::new(config.version_ttl_ms)),
            config,
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, ServerCache> {
        // The cache holds plain data: a panic while it was locked left it usable.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A driver that moves bytes: everything else of an HTTP [`Transport`] (paths, signing,
/// checks, audiences, version cache) comes from the blanket implementation of [`Transport`]
/// for every `HttpBackend`.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait HttpBackend: MaybeSendSync {
    /// The session (key and per-server cache) of this transport.
    fn session(&self) -> &HttpSession;

    /// The storage servers currently known ([`Transport::servers`]).
    fn known_servers(&self) -> Vec<ServerId>;

    /// Where `server` is; [`TransportError::Unreachable`] if it is not known.
    fn server_url(&self, server: ServerId) -> Result<ServerUrl, TransportError>;

    /// Unix time in seconds, for signatures.
    fn unix_now(&self) -> u64;

    /// Milliseconds of a monotonic clock, for the version cache (unused with a TTL of 0).
    fn monotonic_ms(&self) -> u64;

    /// A timer ([`Transport::sleep`]); the default never resolves.
    fn timer(&self, duration: core::time::Duration) -> BoxFut<()> {
        let _ = duration;
        Box::pin(futures::future::pending())
    }

    /// Sends `request` to `url` (from [`HttpRequest::url`]) with its headers and body and
    /// returns the status and whole body of any answer. Only failures to get an answer are
    /// errors ([`TransportError::Unreachable`], [`TransportError::Timeout`]); the request
    /// must resolve in bounded time.
    async fn send(&self, url: String, request: HttpRequest)
        -> Result<HttpResponse, TransportError>;
}

/// Sends a (signed, if need be) request and checks the answer; any failure to get a 2xx
/// answer drops the server's cached version.
async fn exchange<B, C>(
    backend: &B,
    server: ServerId,
    url: &ServerUrl,
    request: HttpRequest,
    check: &C,
) -> Result<C::Output, TransportError>
where
    B: HttpBackend + ?Sized,
    C: Check,
{
    let answer = backend
        .send(request.url(url), request)
        .await
        .and_then(HttpResponse::success);
    match answer {
        Ok(body) => check.check(body),
        Err(e) => {
            backend.session().cache().request_failed(&server);
            Err(e)
        }
    }
}

/// `server`'s version answer: cached, or asked (and recorded with its audience).
async fn version_of<B: HttpBackend + ?Sized>(
    backend: &B,
    server: ServerId,
) -> Result<VersionResponse, TransportError> {
    let cached = backend
        .session()
        .cache()
        .version(&server, backend.monotonic_ms());
    if let Some(v) = cached {
        return Ok(v);
    }
    let url = backend.server_url(server)?;
    let Plan { request, check } = version();
    let v = exchange(backend, server, &url, request, &check).await?;
    backend
        .session()
        .cache()
        .record_version(server, backend.monotonic_ms(), &v);
    Ok(v)
}

/// Runs a planned operation against `server`: signs it if the protocol wants it signed (the
/// audience from the cache, else from a `version` request), sends it, checks the answer.
async fn run<B, C>(
    backend: &B,
    server: ServerId,
    plan: Plan<C>,
) -> Result<C::Output, TransportError>
where
    B: HttpBackend + ?Sized,
    C: Check,
{
    let Plan { mut request, check } = plan;
    let url = backend.server_url(server)?;
    if request.signed {
        let known = backend.session().cache().audience(&server);
        let audience = match known {
            Some(a) => a,
            None => version_of(backend, server).await?.server_id,
        };
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce)
            .map_err(|_| TransportError::Protocol("random number generator failed".into()))?;
        let session = backend.session();
        request.sign(
            &session.key,
            &audience,
            &url,
            backend.unix_now(),
            Nonce(nonce),
        );
    }
    exchange(backend, server, &url, request, &check).await
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl<B: HttpBackend> Transport for B {
    fn servers(&self) -> Vec<ServerId> {
        self.known_servers()
    }

    fn sleep(&self, duration: core::time::Duration) -> BoxFut<()> {
        self.timer(duration)
    }

    async fn version(&self, server: ServerId) -> Result<VersionResponse, TransportError> {
        version_of(self, server).await
    }

    async fn list_shares(
        &self,
        server: ServerId,
        si: StorageIndex,
    ) -> Result<Vec<ShareInfo>, TransportError> {
        run(self, server, list_shares(si)).await
    }

    async fn read(
        &self,
        server: ServerId,
        si: StorageIndex,
        req: ReadRequest,
    ) -> Result<Vec<ReadPiece>, TransportError> {
        run(self, server, read(si, &req)?).await
    }

    async fn allocate(
        &self,
        server: ServerId,
        upload: UploadId,
        req: AllocateRequest,
    ) -> Result<AllocateResponse, TransportError> {
        run(self, server, allocate(upload, &req)?).await
    }

    async fn write(
        &self,
        server: ServerId,
        upload: UploadId,
        share: ShareNum,
        offset: u64,
        data: Payload,
    ) -> Result<WriteResponse, TransportError> {
        run(self, server, write(upload, share, offset, data)).await
    }

    async fn finish(
        &self,
        server: ServerId,
        upload: UploadId,
        share: ShareNum,
        req: FinishRequest,
    ) -> Result<FinishResponse, TransportError> {
        run(self, server, finish(upload, share, &req)?).await
    }

    async fn put_share(
        &self,
        server: ServerId,
        si: StorageIndex,
        share: ShareNum,
        data: Payload,
    ) -> Result<PutShareResponse, TransportError> {
        if !self.session().config.whole_share_put {
            return Err(TransportError::Status {
                status: 501,
                code: ErrorCode::NotImplemented,
                message: "this transport does not support whole-share uploads".into(),
            });
        }
        run(self, server, put_share(si, share, data)).await
    }

    async fn abort(&self, server: ServerId, upload: UploadId) -> Result<(), TransportError> {
        run(self, server, abort(upload)).await
    }

    async fn advise_corrupt(
        &self,
        server: ServerId,
        si: StorageIndex,
        share: ShareNum,
        reason: String,
    ) -> Result<(), TransportError> {
        run(self, server, advise_corrupt(si, share, &reason)?).await
    }

    async fn mutable_list(
        &self,
        server: ServerId,
        si: StorageIndex,
    ) -> Result<Vec<ShareInfo>, TransportError> {
        run(self, server, mutable_list(si)).await
    }

    async fn mutable_read(
        &self,
        server: ServerId,
        si: StorageIndex,
        req: ReadRequest,
    ) -> Result<Vec<ReadPiece>, TransportError> {
        run(self, server, mutable_read(si, &req)?).await
    }

    async fn mutable_write(
        &self,
        server: ServerId,
        si: StorageIndex,
        writes: Vec<WireWrite>,
    ) -> Result<MutableWriteResponse, TransportError> {
        run(self, server, mutable_write(si, &writes)?).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use futures::executor::block_on;
    use lafs_proto::read::{encode_response, PartContent, ReadPart};
    use lafs_proto::signing::{verify_request, ReplayGuard, SignedHeaders, VerifyPolicy};
    use lafs_proto::storage::{Capacity, Limits};
    use lafs_proto::{ReadRange, ShareRead};

    use super::*;

    const SI: StorageIndex = StorageIndex([7; 32]);
    const OTHER_SI: StorageIndex = StorageIndex([8; 32]);
    const UP: UploadId = UploadId([0x5a; 16]);
    const T: u64 = 1_700_000_000;

    fn si_text() -> String {
        storage_index_to_text(&SI)
    }

    fn ok(body: impl Into<Bytes>) -> HttpResponse {
        HttpResponse {
            status: 200,
            body: body.into(),
        }
    }

    fn content_type(r: &HttpRequest) -> Option<&str> {
        r.headers
            .iter()
            .find(|(n, _)| *n == "content-type")
            .map(|(_, v)| v.as_str())
    }

    fn version_body(server_id: &str) -> VersionResponse {
        VersionResponse {
            protocol: "lafs-storage/1".into(),
            server_version: "test".into(),
            server_id: server_id.into(),
            read_only: false,
            accepts_immutable: true,
            accepts_mutable: true,
            capacity: Capacity {
                total_bytes: 1,
                available_bytes: 1,
            },
            limits: Limits {
                max_request_body: 1,
                max_share_size: 1,
                max_read_ranges: 1,
                max_read_bytes: 1,
                upload_ttl_secs: 1,
                max_clock_skew_secs: 1,
            },
        }
    }

    fn read_req() -> ReadRequest {
        ReadRequest {
            reads: vec![
                ShareRead {
                    share: ShareNum(0),
                    ranges: vec![
                        ReadRange::Suffix { length: 10 },
                        ReadRange::Span {
                            offset: 0,
                            length: 3,
                        },
                    ],
                },
                ShareRead {
                    share: ShareNum(5),
                    ranges: vec![ReadRange::Suffix { length: 4 }],
                },
            ],
        }
    }

    fn read_body(shares: &[u8]) -> Vec<u8> {
        let parts: Vec<ReadPart<'_>> = shares
            .iter()
            .map(|&s| ReadPart {
                share: ShareNum(s),
                content: if s == 5 {
                    PartContent::Absent
                } else {
                    PartContent::Data {
                        offset: 0,
                        share_len: 10,
                        data: b"abc",
                    }
                },
            })
            .collect();
        encode_response(&parts).unwrap()
    }

    fn shares_json(si: &StorageIndex, count: usize) -> String {
        let shares: Vec<String> = (0..count)
            .map(|i| format!(r#"{{"share":{},"length":10}}"#, i % 256))
            .collect();
        format!(
            r#"{{"storage_index":"{}","shares":[{}]}}"#,
            storage_index_to_text(si),
            shares.join(",")
        )
    }

    fn protocol_error(r: Result<impl core::fmt::Debug, TransportError>) -> String {
        match r {
            Err(TransportError::Protocol(m)) => m,
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    // ---- request shapes ----

    type Case<'a> = (HttpRequest, Method, String, &'a str, bool, Option<&'a str>);

    #[test]
    fn request_shapes() {
        let data = Bytes::from_static(b"share bytes");
        let si = si_text();
        let up = UP.to_string();
        // (request, method, path, query, signed, content type)
        let cases: Vec<Case<'_>> = vec![
            (
                version().request,
                Method::Get,
                "/storage/v1/version".into(),
                "",
                false,
                None,
            ),
            (
                list_shares(SI).request,
                Method::Get,
                format!("/storage/v1/immutable/{si}/shares"),
                "",
                false,
                None,
            ),
            (
                mutable_list(SI).request,
                Method::Get,
                format!("/storage/v1/mutable/{si}/shares"),
                "",
                false,
                None,
            ),
            (
                read(SI, &read_req()).unwrap().request,
                Method::Post,
                format!("/storage/v1/immutable/{si}/read"),
                "",
                false,
                Some(JSON),
            ),
            (
                mutable_read(SI, &read_req()).unwrap().request,
                Method::Post,
                format!("/storage/v1/mutable/{si}/read"),
                "",
                false,
                Some(JSON),
            ),
            (
                allocate(
                    UP,
                    &AllocateRequest {
                        shares: vec![ShareNum(1)],
                        share_size: Some(5),
                        expected_si: None,
                    },
                )
                .unwrap()
                .request,
                Method::Post,
                format!("/storage/v1/upload/{up}"),
                "",
                true,
                Some(JSON),
            ),
            (
                write(UP, ShareNum(3), 4096, data.clone()).request,
                Method::Put,
                format!("/storage/v1/upload/{up}/3"),
                "offset=4096",
                true,
                None,
            ),
            (
                finish(
                    UP,
                    ShareNum(3),
                    &FinishRequest {
                        length: 9,
                        expected_si: Some(SI),
                    },
                )
                .unwrap()
                .request,
                Method::Post,
                format!("/storage/v1/upload/{up}/3/finish"),
                "",
                true,
                Some(JSON),
            ),
            (
                put_share(SI, ShareNum(9), data.clone()).request,
                Method::Put,
                format!("/storage/v1/immutable/{si}/9"),
                "",
                true,
                None,
            ),
            (
                abort(UP).request,
                Method::Delete,
                format!("/storage/v1/upload/{up}"),
                "",
                true,
                None,
            ),
            (
                advise_corrupt(SI, ShareNum(2), "bad block")
                    .unwrap()
                    .request,
                Method::Post,
                format!("/storage/v1/immutable/{si}/2/corrupt"),
                "",
                true,
                Some(JSON),
            ),
            (
                mutable_write(
                    SI,
                    &[WireWrite::Whole {
                        share: ShareNum(1),
                        data: b"abc".to_vec(),
                    }],
                )
                .unwrap()
                .request,
                Method::Post,
                format!("/storage/v1/mutable/{si}/write"),
                "",
                true,
                None,
            ),
        ];
        for (req, method, path, query, signed, ctype) in cases {
            assert_eq!(req.method, method, "{path}");
            assert_eq!(req.path, path);
            assert_eq!(req.query, query, "{path}");
            assert_eq!(req.signed, signed, "{path}");
            assert_eq!(content_type(&req), ctype, "{path}");
            // Nothing is signed yet: only the content type, if any.
            assert_eq!(req.headers.len(), usize::from(ctype.is_some()), "{path}");
        }
    }

    #[test]
    fn request_bodies() {
        assert!(version().request.body.is_empty());
        assert!(abort(UP).request.body.is_empty());
        let r = read(SI, &read_req()).unwrap().request;
        assert_eq!(
            serde_json::from_slice::<ReadRequest>(&r.body.to_bytes()).unwrap(),
            read_req()
        );
        let f = finish(
            UP,
            ShareNum(3),
            &FinishRequest {
                length: 9,
                expected_si: None,
            },
        )
        .unwrap()
        .request;
        assert_eq!(&f.body.to_bytes()[..], br#"{"length":9}"#);
        let data = Bytes::from_static(b"xyz");
        assert_eq!(
            write(UP, ShareNum(0), 0, data.clone()).request.body,
            data.clone().into()
        );
        assert_eq!(
            put_share(SI, ShareNum(0), data.clone()).request.body,
            data.into()
        );
        let w = vec![WireWrite::Whole {
            share: ShareNum(2),
            data: b"abc".to_vec(),
        }];
        assert_eq!(
            mutable_write(SI, &w).unwrap().request.body,
            encode_writes(&w).unwrap().into()
        );
        // No writes is not a request the protocol has.
        assert!(matches!(
            mutable_write(SI, &[]),
            Err(TransportError::Protocol(_))
        ));
    }

    #[test]
    fn advisory_reason_is_cut_at_the_limit_on_a_character_boundary() {
        let long = "é".repeat(MAX_ADVISORY_REASON); // 2 bytes each
        let r = advise_corrupt(SI, ShareNum(0), &long).unwrap().request;
        let body: AdvisoryRequest = serde_json::from_slice(&r.body.to_bytes()).unwrap();
        assert_eq!(body.reason.len(), MAX_ADVISORY_REASON);
        let odd = format!("a{long}");
        let r = advise_corrupt(SI, ShareNum(0), &odd).unwrap().request;
        let body: AdvisoryRequest = serde_json::from_slice(&r.body.to_bytes()).unwrap();
        assert_eq!(body.reason.len(), MAX_ADVISORY_REASON - 1);
    }

    #[test]
    fn urls_and_prefixes() {
        let plain = ServerUrl::parse("http://127.0.0.1:8/");
        assert_eq!(plain.base(), "http://127.0.0.1:8");
        assert_eq!(plain.prefix(), "");
        let nested = ServerUrl::parse("https://h/a/b/");
        assert_eq!(nested.base(), "https://h/a/b");
        assert_eq!(nested.prefix(), "/a/b");
        let w = write(UP, ShareNum(1), 7, Bytes::new()).request;
        assert_eq!(
            w.url(&nested),
            format!("https://h/a/b/storage/v1/upload/{UP}/1?offset=7")
        );
        assert_eq!(
            version().request.url(&plain),
            "http://127.0.0.1:8/storage/v1/version"
        );
    }

    // ---- signing ----

    fn signed_headers(r: &HttpRequest) -> SignedHeaders {
        SignedHeaders::parse(|name| {
            let mut it = r.headers.iter().filter(|(n, _)| *n == name);
            let v = it.next().map(|(_, v)| v.as_str());
            if it.next().is_some() {
                None
            } else {
                v
            }
        })
        .unwrap()
    }

    #[test]
    fn signing_matches_the_spec_vectors() {
        let vectors: serde_json::Value = serde_json::from_str(include_str!(
            "../../../docs/spec/vectors/signed-request.json"
        ))
        .unwrap();
        let key = SigningKey::from_bytes(&[0x2a; 32]);
        for v in vectors.as_array().unwrap() {
            let method = match v["method"].as_str().unwrap() {
                "POST" => Method::Post,
                "PUT" => Method::Put,
                m => panic!("vector method {m}"),
            };
            let mut req = HttpRequest::new(method, v["path"].as_str().unwrap().into());
            req.query = v["query"].as_str().unwrap().into();
            req.body = Bytes::from(v["body"].as_str().unwrap().to_owned()).into();
            req.sign(
                &key,
                v["audience"].as_str().unwrap(),
                &ServerUrl::parse("http://server:1"),
                v["timestamp"].as_u64().unwrap(),
                Nonce([9; 16]),
            );
            for (name, value) in v["headers"].as_object().unwrap() {
                let got: Vec<&String> = req
                    .headers
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, v)| v)
                    .collect();
                assert_eq!(
                    got,
                    vec![value.as_str().unwrap()],
                    "{name} of {}",
                    v["path"]
                );
            }
        }
    }

    #[test]
    fn signatures_cover_the_prefixed_path_and_the_protocols_binding() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let server = ServerUrl::parse("http://h:1/grid/node1/");
        let data = Bytes::from_static(b"0123456789");
        let mut plans = vec![
            write(UP, ShareNum(1), 0, data.clone()).request,
            put_share(SI, ShareNum(1), data.clone()).request,
            abort(UP).request,
            advise_corrupt(SI, ShareNum(1), "x").unwrap().request,
        ];
        for req in &mut plans {
            req.sign(&key, "srv", &server, T, Nonce([1; 16]));
            let headers = signed_headers(req);
            let path = format!("/grid/node1{}", req.path);
            let parts = RequestParts::for_body(
                req.method.as_str(),
                &path,
                &req.query,
                &req.body.to_bytes(),
            );
            let mut guard = ReplayGuard::new(10);
            let policy = VerifyPolicy::default();
            verify_request("srv", &parts, &headers, T, &policy, &mut guard).unwrap();
            // Not valid for the path without the prefix, nor for another server.
            let bare = RequestParts::for_body(
                req.method.as_str(),
                &req.path,
                &req.query,
                &req.body.to_bytes(),
            );
            assert!(verify_request("srv", &bare, &headers, T, &policy, &mut guard).is_err());
            let mut guard = ReplayGuard::new(10);
            assert!(verify_request("other", &parts, &headers, T, &policy, &mut guard).is_err());
        }
        // At a server without a prefix, share data is bound by length only: the signature
        // holds for any body of that length, and not under the digest binding.
        let mut w = write(UP, ShareNum(1), 0, data.clone()).request;
        w.sign(
            &key,
            "srv",
            &ServerUrl::parse("http://h:1"),
            T,
            Nonce([2; 16]),
        );
        let headers = signed_headers(&w);
        let policy = VerifyPolicy::default();
        let by_length = RequestParts::share_data("PUT", &w.path, &w.query, 10);
        let mut guard = ReplayGuard::new(10);
        verify_request("srv", &by_length, &headers, T, &policy, &mut guard).unwrap();
        let by_digest = RequestParts::new("PUT", &w.path, &w.query, &data);
        let mut guard = ReplayGuard::new(10);
        assert!(verify_request("srv", &by_digest, &headers, T, &policy, &mut guard).is_err());
    }

    // ---- answer checks ----

    #[test]
    fn statuses_map_to_errors() {
        let json = HttpResponse {
            status: 409,
            body: Bytes::from_static(br#"{"error":"conflict","message":"share is finished"}"#),
        };
        assert_eq!(
            NoBody.response(json),
            Err(TransportError::Status {
                status: 409,
                code: ErrorCode::Conflict,
                message: "share is finished".into(),
            })
        );
        // Not an error body: the first bytes as text, code unknown.
        let junk = HttpResponse {
            status: 502,
            body: Bytes::from(vec![b'x'; 10_000]),
        };
        match version().check.response(junk) {
            Err(TransportError::Status {
                status: 502,
                code: ErrorCode::Unknown,
                message,
            }) => assert_eq!(message.len(), ERROR_TEXT_LIMIT),
            other => panic!("{other:?}"),
        }
        // Not UTF-8, cut in the middle of a character: still no panic.
        let bytes = HttpResponse {
            status: 500,
            body: Bytes::from("é".repeat(150).into_bytes()),
        };
        assert!(matches!(
            NoBody.response(bytes),
            Err(TransportError::Status { status: 500, .. })
        ));
        // 1xx/3xx are not success either.
        for status in [101, 304] {
            assert!(matches!(
                NoBody.response(HttpResponse {
                    status,
                    body: Bytes::new()
                }),
                Err(TransportError::Status { .. })
            ));
        }
        assert_eq!(NoBody.response(ok(Bytes::new())), Ok(()));
        assert_eq!(
            abort(UP).check.response(HttpResponse {
                status: 204,
                body: Bytes::new()
            }),
            Ok(())
        );
    }

    #[test]
    fn share_lists_are_checked() {
        let check = list_shares(SI).check;
        let good = check.response(ok(shares_json(&SI, 3))).unwrap();
        assert_eq!(good.len(), 3);
        assert_eq!(
            protocol_error(check.response(ok(shares_json(&OTHER_SI, 3)))),
            "shares listed for another storage index"
        );
        assert_eq!(
            protocol_error(
                mutable_list(SI)
                    .check
                    .response(ok(shares_json(&OTHER_SI, 0)))
            ),
            "shares listed for another storage index"
        );
        assert!(protocol_error(check.response(ok(shares_json(&SI, 257)))).contains("257 shares"));
        assert_eq!(
            check.response(ok(shares_json(&SI, 256))).unwrap().len(),
            256
        );
        // Truncated.
        let full = shares_json(&SI, 2);
        assert!(
            protocol_error(check.response(ok(full[..full.len() - 3].to_owned())))
                .starts_with("unexpected response body")
        );
    }

    #[test]
    fn read_answers_are_checked() {
        let check = read(SI, &read_req()).unwrap().check;
        let pieces = check.response(ok(read_body(&[0, 0, 5]))).unwrap();
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces[2], ReadPiece::Absent { share: 5 });
        // Too few, too many, another share, out of order.
        for shares in [&[0, 0][..], &[0, 0, 5, 5], &[0, 1, 5], &[0, 5, 0]] {
            let m = protocol_error(check.response(ok(read_body(shares))));
            assert!(m.starts_with("read "), "{shares:?}: {m}");
        }
        // Truncated or not a read answer at all.
        let body = read_body(&[0, 0, 5]);
        for cut in [0, 5, 12, body.len() - 1] {
            let m = protocol_error(check.response(ok(body[..cut].to_vec())));
            assert!(m.starts_with("read response"), "cut at {cut}: {m}");
        }
        let m = protocol_error(
            mutable_read(SI, &read_req())
                .unwrap()
                .check
                .response(ok(Bytes::from_static(b"{\"not\":\"binary\"}"))),
        );
        assert!(m.starts_with("read response"));
    }

    #[test]
    fn upload_answers_are_checked() {
        let req = AllocateRequest {
            shares: vec![ShareNum(1)],
            share_size: None,
            expected_si: None,
        };
        let alloc = allocate(UP, &req).unwrap().check;
        let body = |id: UploadId, n: usize| {
            let list: Vec<String> = (0..n).map(|i| (i % 256).to_string()).collect();
            format!(
                r#"{{"upload_id":"{id}","allocated":[{}],"already_have":[],"expires_in_secs":60}}"#,
                list.join(",")
            )
        };
        assert_eq!(
            alloc.response(ok(body(UP, 1))).unwrap().allocated,
            vec![ShareNum(0)]
        );
        assert_eq!(
            protocol_error(alloc.response(ok(body(UploadId([1; 16]), 1)))),
            "allocation answered for another upload"
        );
        assert_eq!(
            protocol_error(alloc.response(ok(body(UP, 300)))),
            "allocation lists more shares than exist"
        );

        let w = write(UP, ShareNum(3), 0, Bytes::new()).check;
        assert_eq!(
            w.response(ok(r#"{"share":3,"received_bytes":10}"#))
                .unwrap()
                .received_bytes,
            10
        );
        assert!(
            protocol_error(w.response(ok(r#"{"share":4,"received_bytes":10}"#)))
                .contains("share 4 instead of 3")
        );
        assert!(protocol_error(w.response(ok(r#"{"share":3,"received_"#)))
            .starts_with("unexpected response body"));

        let f = finish(
            UP,
            ShareNum(3),
            &FinishRequest {
                length: 1,
                expected_si: None,
            },
        )
        .unwrap()
        .check;
        let fin = |share: u8| {
            format!(
                r#"{{"share":{share},"storage_index":"{}","length":1,"already_had":false,"upload_complete":true}}"#,
                si_text()
            )
        };
        assert!(f.response(ok(fin(3))).unwrap().upload_complete);
        assert!(protocol_error(f.response(ok(fin(0)))).contains("share 0 instead of 3"));
    }

    #[test]
    fn whole_share_answers_are_checked() {
        let check = put_share(SI, ShareNum(3), Bytes::new()).check;
        let answer = |si: &StorageIndex, share: u8, held: usize| {
            let list: Vec<String> = (0..held)
                .map(|i| format!(r#"{{"share":{},"length":5}}"#, i % 256))
                .collect();
            format!(
                r#"{{"share":{share},"storage_index":"{}","length":5,"already_had":false,"held":[{}]}}"#,
                storage_index_to_text(si),
                list.join(",")
            )
        };
        assert_eq!(check.response(ok(answer(&SI, 3, 4))).unwrap().held.len(), 4);
        for bad in [answer(&OTHER_SI, 3, 1), answer(&SI, 2, 1)] {
            assert_eq!(
                protocol_error(check.response(ok(bad))),
                "whole-share answer names another share"
            );
        }
        assert!(protocol_error(check.response(ok(answer(&SI, 3, 1000)))).contains("1000 shares"));
    }

    #[test]
    fn mutable_write_answers_are_checked() {
        let writes = [
            WireWrite::Whole {
                share: ShareNum(2),
                data: b"a".to_vec(),
            },
            WireWrite::Whole {
                share: ShareNum(0),
                data: b"b".to_vec(),
            },
        ];
        let check = mutable_write(SI, &writes).unwrap().check;
        let result =
            |s: u8| format!(r#"{{"share":{s},"outcome":"written","seqnum":2,"previous":1}}"#);
        let answer = |shares: &[u8]| {
            let r: Vec<String> = shares.iter().map(|&s| result(s)).collect();
            format!(r#"{{"results":[{}]}}"#, r.join(","))
        };
        assert_eq!(
            check.response(ok(answer(&[2, 0]))).unwrap().results.len(),
            2
        );
        for bad in [&[2][..], &[0, 2], &[2, 0, 0]] {
            assert!(protocol_error(check.response(ok(answer(bad))))
                .starts_with("mutable write answered"));
        }
        let huge = answer(&[1; 5000]);
        assert!(protocol_error(check.response(ok(huge))).contains("5000 results"));
    }

    #[test]
    fn server_cache_keeps_audiences_and_versions_for_their_ttl() {
        let a = ServerId([1; 32]);
        let mut cache = ServerCache::new(100);
        assert_eq!(cache.version(&a, 0), None);
        assert_eq!(cache.audience(&a), None);
        cache.record_version(a, 1000, &version_body("srv-a"));
        assert_eq!(cache.version(&a, 1099).unwrap().server_id, "srv-a");
        assert_eq!(cache.version(&a, 1100), None);
        cache.request_failed(&a);
        assert_eq!(cache.version(&a, 1001), None);
        assert_eq!(cache.audience(&a).as_deref(), Some("srv-a"));

        let mut none = ServerCache::new(0);
        none.record_version(a, 5, &version_body("srv-a"));
        assert_eq!(none.version(&a, 5), None);
        assert_eq!(none.audience(&a).as_deref(), Some("srv-a"));
    }

    // ---- the transport over a backend ----

    /// A backend answering from a function, recording what it was sent.
    struct Fake {
        session: HttpSession,
        now_ms: AtomicU64,
        sent: Mutex<Vec<(String, HttpRequest)>>,
        answer: fn(&HttpRequest) -> Result<HttpResponse, TransportError>,
    }

    impl Fake {
        fn new(
            config: SessionConfig,
            answer: fn(&HttpRequest) -> Result<HttpResponse, TransportError>,
        ) -> Self {
            Self {
                session: HttpSession::new(SigningKey::from_bytes(&[4; 32]), config),
                now_ms: AtomicU64::new(0),
                sent: Mutex::new(Vec::new()),
                answer,
            }
        }

        fn paths(&self) -> Vec<String> {
            self.sent
                .lock()
                .unwrap()
                .iter()
                .map(|(_, r)| format!("{} {}", r.method.as_str(), r.path))
                .collect()
        }
    }

    const SERVER: ServerId = ServerId([9; 32]);

    #[async_trait]
    impl HttpBackend for Fake {
        fn session(&self) -> &HttpSession {
            &self.session
        }
        fn known_servers(&self) -> Vec<ServerId> {
            vec![SERVER]
        }
        fn server_url(&self, server: ServerId) -> Result<ServerUrl, TransportError> {
            if server == SERVER {
                Ok(ServerUrl::parse("http://s/p"))
            } else {
                Err(TransportError::Unreachable(format!(
                    "server {server} is not known"
                )))
            }
        }
        fn unix_now(&self) -> u64 {
            T
        }
        fn monotonic_ms(&self) -> u64 {
            self.now_ms.load(Ordering::SeqCst)
        }
        async fn send(
            &self,
            url: String,
            request: HttpRequest,
        ) -> Result<HttpResponse, TransportError> {
            let answer = (self.answer)(&request);
            self.sent.lock().unwrap().push((url, request));
            answer
        }
    }

    fn honest(r: &HttpRequest) -> Result<HttpResponse, TransportError> {
        if r.path == "/storage/v1/version" {
            return Ok(ok(serde_json::to_vec(&version_body("srv-9")).unwrap()));
        }
        if r.method == Method::Delete {
            let h = signed_headers(r);
            let path = format!("/p{}", r.path);
            let parts = RequestParts::for_body("DELETE", &path, "", &r.body.to_bytes());
            let mut guard = ReplayGuard::new(10);
            if verify_request("srv-9", &parts, &h, T, &VerifyPolicy::default(), &mut guard).is_err()
            {
                return Ok(HttpResponse {
                    status: 401,
                    body: Bytes::from_static(br#"{"error":"unauthorized","message":"bad"}"#),
                });
            }
            return Ok(HttpResponse {
                status: 204,
                body: Bytes::new(),
            });
        }
        Ok(HttpResponse {
            status: 500,
            body: Bytes::from_static(b"boom"),
        })
    }

    const CACHING: SessionConfig = SessionConfig {
        version_ttl_ms: 1000,
        whole_share_put: true,
    };

    #[test]
    fn signed_requests_learn_the_audience_first_and_verify() {
        let t = Fake::new(CACHING, honest);
        block_on(t.abort(SERVER, UP)).unwrap();
        block_on(t.abort(SERVER, UP)).unwrap();
        let up = format!("/storage/v1/upload/{UP}");
        assert_eq!(
            t.paths(),
            vec![
                "GET /storage/v1/version".to_owned(),
                format!("DELETE {up}"),
                format!("DELETE {up}")
            ]
        );
        let sent = t.sent.lock().unwrap();
        assert_eq!(sent[1].0, format!("http://s/p{up}"));
        // Each request has its own nonce.
        assert_ne!(
            signed_headers(&sent[1].1).nonce,
            signed_headers(&sent[2].1).nonce
        );
    }

    #[test]
    fn versions_are_cached_for_the_ttl_and_dropped_on_failure() {
        let t = Fake::new(CACHING, honest);
        block_on(t.version(SERVER)).unwrap();
        block_on(t.version(SERVER)).unwrap();
        assert_eq!(t.paths().len(), 1);
        t.now_ms.store(1000, Ordering::SeqCst);
        block_on(t.version(SERVER)).unwrap();
        assert_eq!(t.paths().len(), 2);
        // A failed request drops the cached answer.
        let e = block_on(t.list_shares(SERVER, SI)).unwrap_err();
        assert_eq!(
            e,
            TransportError::Status {
                status: 500,
                code: ErrorCode::Unknown,
                message: "boom".into()
            }
        );
        block_on(t.version(SERVER)).unwrap();
        assert_eq!(t.paths().len(), 4);

        // Without a TTL every call asks.
        let t = Fake::new(
            SessionConfig {
                version_ttl_ms: 0,
                whole_share_put: true,
            },
            honest,
        );
        block_on(t.version(SERVER)).unwrap();
        block_on(t.version(SERVER)).unwrap();
        assert_eq!(t.paths().len(), 2);
    }

    #[test]
    fn unknown_servers_and_unsent_requests_fail_without_panicking() {
        let t = Fake::new(CACHING, |_| Err(TransportError::Timeout));
        assert!(matches!(
            block_on(t.list_shares(ServerId([0; 32]), SI)),
            Err(TransportError::Unreachable(_))
        ));
        assert_eq!(block_on(t.abort(SERVER, UP)), Err(TransportError::Timeout));
        assert_eq!(t.paths(), vec!["GET /storage/v1/version".to_owned()]);
    }

    #[test]
    fn whole_share_put_can_be_left_to_the_fallback() {
        let t = Fake::new(
            SessionConfig {
                version_ttl_ms: 0,
                whole_share_put: false,
            },
            honest,
        );
        let e = block_on(t.put_share(SERVER, SI, ShareNum(0), Payload::new())).unwrap_err();
        assert!(e.is_unsupported());
        assert!(t.paths().is_empty());
    }
}
