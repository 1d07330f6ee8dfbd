//! The HTTP storage transport.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use lafs_client::http::{
    HttpBackend, HttpRequest, HttpResponse, HttpSession, Method, ServerUrl, SessionConfig,
};
use lafs_client::{ServerId, TransportError};

use crate::{Directory, Error};

/// Timeouts of the HTTP transport.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Whole-request timeout (a request still running then fails with
    /// [`TransportError::Timeout`]).
    pub request_timeout: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// How long a server's `version` answer is reused (uploads ask every server for its
    /// version; a burst of small uploads then costs one round less). Any failed request to a
    /// server drops its cached answer. Zero disables the cache.
    pub version_ttl: Duration,
}

impl Default for HttpConfig {
    /// 60 s per request, 5 s to connect, versions reused for 5 s.
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            version_ttl: Duration::from_secs(5),
        }
    }
}

/// How long an idle pooled connection may be reused: half the servers' default header-read
/// timeout, after which they close idle connections.
const POOL_IDLE: Duration = Duration::from_secs(5);

/// [`lafs_client::Transport`] over HTTP/1.1 (reqwest, connection pooling, plain HTTP).
///
/// Only moves bytes: the requests, their signatures (writes, allocations, finishes, aborts and
/// advisories are signed with the account key; each server's audience is learnt from
/// `GET /storage/v1/version` and kept), the answer checks and the version cache are
/// `lafs_client::http`'s, through [`HttpBackend`].
pub struct HttpTransport {
    http: reqwest::Client,
    directory: Arc<dyn Directory>,
    session: HttpSession,
    started: Instant,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn map_err(e: reqwest::Error) -> TransportError {
    if e.is_timeout() {
        TransportError::Timeout
    } else if e.is_decode() || e.is_body() {
        TransportError::Protocol(e.to_string())
    } else {
        TransportError::Unreachable(e.to_string())
    }
}

impl HttpTransport {
    /// A transport for the servers of `directory`, signing with `key`.
    pub fn new(
        directory: Arc<dyn Directory>,
        key: SigningKey,
        config: HttpConfig,
    ) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            // Storage servers close a keep-alive connection that stays idle for their header-read
            // timeout (10 s by default; hyper times the wait for the next request). A request
            // sent on a pooled connection as the server closes it fails, is not retried, and an
            // upload then counts that server as unreachable. Pooled connections are dropped well
            // before: only ones idle for less than 5 s are reused.
            .pool_idle_timeout(POOL_IDLE)
            .build()
            .map_err(|e| Error::Http(e.to_string()))?;
        let session = HttpSession::new(
            key,
            SessionConfig {
                version_ttl_ms: u64::try_from(config.version_ttl.as_millis()).unwrap_or(u64::MAX),
                whole_share_put: true,
            },
        );
        Ok(Self {
            http,
            directory,
            session,
            started: Instant::now(),
        })
    }
}

/// Sends one request and reads the whole answer.
async fn send_request(
    http: reqwest::Client,
    url: String,
    request: HttpRequest,
) -> Result<HttpResponse, TransportError> {
    let url = reqwest::Url::parse(&url)
        .map_err(|e| TransportError::Unreachable(format!("bad server URL {url:?}: {e}")))?;
    let method = match request.method {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Delete => reqwest::Method::DELETE,
    };
    let mut req = http.request(method, url);
    for (name, value) in request.headers {
        req = req.header(name, value);
    }
    let body = match request.body.parts() {
        [] => reqwest::Body::from(Bytes::new()),
        [one] => reqwest::Body::from(one.clone()),
        parts => reqwest::Body::wrap(PartsBody::new(parts)),
    };
    let resp = req.body(body).send().await.map_err(map_err)?;
    let status = resp.status().as_u16();
    let body: Bytes = resp.bytes().await.map_err(map_err)?;
    Ok(HttpResponse { status, body })
}

/// A request body of several pieces sent back to back, without joining them: each piece is
/// one frame, and the exact total length is known up front (so it goes out with a
/// `Content-Length`, not chunked).
struct PartsBody {
    parts: std::collections::VecDeque<Bytes>,
    remaining: u64,
}

impl PartsBody {
    fn new(parts: &[Bytes]) -> Self {
        Self {
            parts: parts.iter().cloned().collect(),
            remaining: parts.iter().map(|p| p.len() as u64).sum(),
        }
    }
}

impl http_body::Body for PartsBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        std::task::Poll::Ready(this.parts.pop_front().map(|part| {
            this.remaining -= part.len() as u64;
            Ok(http_body::Frame::data(part))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

#[async_trait]
impl HttpBackend for HttpTransport {
    fn session(&self) -> &HttpSession {
        &self.session
    }

    fn known_servers(&self) -> Vec<ServerId> {
        self.directory.servers()
    }

    fn server_url(&self, server: ServerId) -> Result<ServerUrl, TransportError> {
        self.directory
            .url(&server)
            .map(|u| ServerUrl::parse(&u))
            .ok_or_else(|| TransportError::Unreachable(format!("server {server} is not known")))
    }

    fn unix_now(&self) -> u64 {
        unix_now()
    }

    fn monotonic_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn timer(&self, duration: Duration) -> lafs_client::BoxFut<()> {
        Box::pin(tokio::time::sleep(duration))
    }

    /// The exchange runs as its own tokio task (when there is a runtime), so many concurrent
    /// requests spread over the runtime's threads.
    async fn send(
        &self,
        url: String,
        request: HttpRequest,
    ) -> Result<HttpResponse, TransportError> {
        let job = send_request(self.http.clone(), url, request);
        match tokio::runtime::Handle::try_current() {
            Ok(h) => h
                .spawn(job)
                .await
                .map_err(|e| TransportError::Unreachable(format!("request task failed: {e}")))?,
            Err(_) => job.await,
        }
    }
}
