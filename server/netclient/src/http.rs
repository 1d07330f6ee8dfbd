//! The HTTP storage transport.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use lafs_client::{parse_read_response, ReadPiece, ServerId, Transport, TransportError};
use lafs_proto::ids::storage_index_to_text;
use lafs_proto::signing::{sign_request, RequestParts};
use lafs_proto::storage::{
    AdvisoryRequest, AllocateRequest, AllocateResponse, ErrorBody, ErrorCode, FinishRequest,
    FinishResponse, PutShareResponse, SharesResponse, VersionResponse, WriteResponse,
};
use lafs_proto::{Nonce, ReadRequest, ShareNum, StorageIndex, UploadId};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

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

/// [`Transport`] over HTTP/1.1 (reqwest, connection pooling, plain HTTP).
///
/// Writes, allocations, finishes, aborts and advisories are signed with the account key; the
/// audience (each server's `server_id`) is learnt from `GET /storage/v1/version` and cached.
pub struct HttpTransport {
    http: reqwest::Client,
    directory: Arc<dyn Directory>,
    key: Arc<SigningKey>,
    audiences: Mutex<HashMap<ServerId, String>>,
    versions: Mutex<HashMap<ServerId, (Instant, VersionResponse)>>,
    version_ttl: Duration,
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
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Http(e.to_string()))?;
        Ok(Self {
            http,
            directory,
            key: Arc::new(key),
            audiences: Mutex::new(HashMap::new()),
            versions: Mutex::new(HashMap::new()),
            version_ttl: config.version_ttl,
        })
    }

    fn url(
        &self,
        server: &ServerId,
        path: &str,
        query: Option<&str>,
    ) -> Result<Url, TransportError> {
        let base = self
            .directory
            .url(server)
            .ok_or_else(|| TransportError::Unreachable(format!("server {server} is not known")))?;
        let mut url = Url::parse(&base)
            .map_err(|e| TransportError::Unreachable(format!("bad server URL {base:?}: {e}")))?;
        let prefix = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{prefix}{path}"));
        url.set_query(query);
        Ok(url)
    }

    async fn audience(&self, server: ServerId) -> Result<String, TransportError> {
        if let Some(a) = self
            .audiences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&server)
        {
            return Ok(a.clone());
        }
        let v = self.version(server).await?;
        Ok(v.server_id)
    }

    /// Sends a request; `sign` adds the signature headers. Returns the body of a 2xx answer.
    ///
    /// The request (body hashing for the signature, sending, receiving) runs as its own tokio
    /// task, so the hashing of many concurrent writes spreads over the runtime's threads.
    #[allow(clippy::too_many_arguments)] // private: each argument is one part of the request
    async fn send(
        &self,
        server: ServerId,
        method: Method,
        path: &str,
        query: Option<&str>,
        body: Bytes,
        sign: bool,
        json_body: bool,
    ) -> Result<Bytes, TransportError> {
        let url = self.url(&server, path, query)?;
        let signer = if sign {
            Some((Arc::clone(&self.key), self.audience(server).await?))
        } else {
            None
        };
        let job = send_request(self.http.clone(), method, url, body, signer, json_body);
        let r = match tokio::runtime::Handle::try_current() {
            Ok(h) => h
                .spawn(job)
                .await
                .map_err(|e| TransportError::Unreachable(format!("request task failed: {e}")))?,
            Err(_) => job.await,
        };
        if r.is_err() {
            self.versions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&server);
        }
        r
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        server: ServerId,
        path: &str,
    ) -> Result<T, TransportError> {
        let body = self
            .send(server, Method::GET, path, None, Bytes::new(), false, false)
            .await?;
        parse_json(&body)
    }

    async fn signed_json<Q: serde::Serialize, T: DeserializeOwned>(
        &self,
        server: ServerId,
        method: Method,
        path: &str,
        body: &Q,
    ) -> Result<T, TransportError> {
        let body = serde_json::to_vec(body).map_err(|e| TransportError::Protocol(e.to_string()))?;
        let out = self
            .send(server, method, path, None, Bytes::from(body), true, true)
            .await?;
        parse_json(&out)
    }
}

async fn send_request(
    http: reqwest::Client,
    method: Method,
    url: Url,
    body: Bytes,
    signer: Option<(Arc<SigningKey>, String)>,
    json_body: bool,
) -> Result<Bytes, TransportError> {
    let mut req = http.request(method.clone(), url.clone());
    if json_body {
        req = req.header("content-type", "application/json");
    }
    if let Some((key, audience)) = signer {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce)
            .map_err(|_| TransportError::Protocol("random number generator failed".into()))?;
        // Share data is bound by length only (no hashing); everything else by digest.
        let parts = RequestParts::for_body(
            method.as_str(),
            url.path(),
            url.query().unwrap_or(""),
            &body,
        );
        let headers = sign_request(&key, &audience, &parts, unix_now(), Nonce(nonce));
        for (name, value) in headers.header_values() {
            req = req.header(name, value);
        }
    }
    let resp = req.body(body).send().await.map_err(map_err)?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(map_err)?;
    if status.is_success() {
        return Ok(bytes);
    }
    Err(status_error(status, &bytes))
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, TransportError> {
    serde_json::from_slice(body)
        .map_err(|e| TransportError::Protocol(format!("unexpected response body: {e}")))
}

fn status_error(status: StatusCode, body: &[u8]) -> TransportError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => TransportError::Status {
            status: status.as_u16(),
            code: b.error,
            message: b.message,
        },
        Err(_) => TransportError::Status {
            status: status.as_u16(),
            code: ErrorCode::Unknown,
            message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        },
    }
}

#[async_trait]
impl Transport for HttpTransport {
    fn servers(&self) -> Vec<ServerId> {
        self.directory.servers()
    }

    fn sleep(&self, duration: Duration) -> lafs_client::BoxFut<()> {
        Box::pin(tokio::time::sleep(duration))
    }

    async fn version(&self, server: ServerId) -> Result<VersionResponse, TransportError> {
        if let Some((at, v)) = self
            .versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&server)
        {
            if at.elapsed() < self.version_ttl {
                return Ok(v.clone());
            }
        }
        let v: VersionResponse = self.get_json(server, "/storage/v1/version").await?;
        if !self.version_ttl.is_zero() {
            self.versions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(server, (Instant::now(), v.clone()));
        }
        self.audiences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(server, v.server_id.clone());
        Ok(v)
    }

    async fn mutable_list(
        &self,
        server: ServerId,
        si: StorageIndex,
    ) -> Result<Vec<lafs_proto::storage::ShareInfo>, TransportError> {
        let path = format!("/storage/v1/mutable/{}/shares", storage_index_to_text(&si));
        let r: SharesResponse = self.get_json(server, &path).await?;
        if r.storage_index != si {
            return Err(TransportError::Protocol(
                "shares listed for another storage index".into(),
            ));
        }
        Ok(r.shares)
    }

    async fn mutable_read(
        &self,
        server: ServerId,
        si: StorageIndex,
        req: ReadRequest,
    ) -> Result<Vec<ReadPiece>, TransportError> {
        let path = format!("/storage/v1/mutable/{}/read", storage_index_to_text(&si));
        let body = serde_json::to_vec(&req).map_err(|e| TransportError::Protocol(e.to_string()))?;
        let out = self
            .send(
                server,
                Method::POST,
                &path,
                None,
                Bytes::from(body),
                false,
                true,
            )
            .await?;
        parse_read_response(&out)
    }

    async fn mutable_write(
        &self,
        server: ServerId,
        si: StorageIndex,
        writes: Vec<lafs_proto::mutable::WireWrite>,
    ) -> Result<lafs_proto::mutable::MutableWriteResponse, TransportError> {
        let path = format!("/storage/v1/mutable/{}/write", storage_index_to_text(&si));
        let body = lafs_proto::mutable::encode_writes(&writes)
            .map_err(|e| TransportError::Protocol(e.to_string()))?;
        let out = self
            .send(
                server,
                Method::POST,
                &path,
                None,
                Bytes::from(body),
                true,
                false,
            )
            .await?;
        parse_json(&out)
    }

    async fn list_shares(
        &self,
        server: ServerId,
        si: StorageIndex,
    ) -> Result<Vec<lafs_proto::storage::ShareInfo>, TransportError> {
        let path = format!(
            "/storage/v1/immutable/{}/shares",
            storage_index_to_text(&si)
        );
        let r: SharesResponse = self.get_json(server, &path).await?;
        if r.storage_index != si {
            return Err(TransportError::Protocol(
                "shares listed for another storage index".into(),
            ));
        }
        Ok(r.shares)
    }

    async fn read(
        &self,
        server: ServerId,
        si: StorageIndex,
        req: ReadRequest,
    ) -> Result<Vec<ReadPiece>, TransportError> {
        let path = format!("/storage/v1/immutable/{}/read", storage_index_to_text(&si));
        let body = serde_json::to_vec(&req).map_err(|e| TransportError::Protocol(e.to_string()))?;
        let out = self
            .send(
                server,
                Method::POST,
                &path,
                None,
                Bytes::from(body),
                false,
                true,
            )
            .await?;
        parse_read_response(&out)
    }

    async fn allocate(
        &self,
        server: ServerId,
        upload: UploadId,
        req: AllocateRequest,
    ) -> Result<AllocateResponse, TransportError> {
        let path = format!("/storage/v1/upload/{upload}");
        self.signed_json(server, Method::POST, &path, &req).await
    }

    async fn write(
        &self,
        server: ServerId,
        upload: UploadId,
        share: ShareNum,
        offset: u64,
        data: Bytes,
    ) -> Result<WriteResponse, TransportError> {
        let path = format!("/storage/v1/upload/{upload}/{share}");
        let query = format!("offset={offset}");
        let out = self
            .send(server, Method::PUT, &path, Some(&query), data, true, false)
            .await?;
        parse_json(&out)
    }

    async fn finish(
        &self,
        server: ServerId,
        upload: UploadId,
        share: ShareNum,
        req: FinishRequest,
    ) -> Result<FinishResponse, TransportError> {
        let path = format!("/storage/v1/upload/{upload}/{share}/finish");
        self.signed_json(server, Method::POST, &path, &req).await
    }

    async fn put_share(
        &self,
        server: ServerId,
        si: StorageIndex,
        share: ShareNum,
        data: Bytes,
    ) -> Result<PutShareResponse, TransportError> {
        let path = format!(
            "/storage/v1/immutable/{}/{share}",
            storage_index_to_text(&si)
        );
        let out = self
            .send(server, Method::PUT, &path, None, data, true, false)
            .await?;
        let r: PutShareResponse = parse_json(&out)?;
        if r.storage_index != si || r.share != share {
            return Err(TransportError::Protocol(
                "whole-share answer names another share".into(),
            ));
        }
        Ok(r)
    }

    async fn abort(&self, server: ServerId, upload: UploadId) -> Result<(), TransportError> {
        let path = format!("/storage/v1/upload/{upload}");
        self.send(
            server,
            Method::DELETE,
            &path,
            None,
            Bytes::new(),
            true,
            false,
        )
        .await
        .map(|_| ())
    }

    async fn advise_corrupt(
        &self,
        server: ServerId,
        si: StorageIndex,
        share: ShareNum,
        reason: String,
    ) -> Result<(), TransportError> {
        let path = format!(
            "/storage/v1/immutable/{}/{share}/corrupt",
            storage_index_to_text(&si)
        );
        let mut reason = reason;
        reason.truncate(lafs_proto::storage::MAX_ADVISORY_REASON);
        let body = serde_json::to_vec(&AdvisoryRequest { reason })
            .map_err(|e| TransportError::Protocol(e.to_string()))?;
        self.send(
            server,
            Method::POST,
            &path,
            None,
            Bytes::from(body),
            true,
            true,
        )
        .await
        .map(|_| ())
    }
}
