//! The tab as a grid client: a `fetch`-based [`Transport`] that talks to the storage servers'
//! HTTP API directly (`docs/spec/storage-protocol.md`; the servers answer any origin), and the
//! JavaScript class [`LafsGrid`] over [`DirSession`].
//!
//! What is sent: storage indexes, share numbers and ranges, ciphertext shares and signed
//! mutable shares (to the storage servers), and one `GET /grid/servers` to the gateway for the
//! servers' ids and URLs. Never a cap or a key: those stay in this module's memory. Write
//! requests are signed (`docs/spec/signed-requests.md`) with an ed25519 account key drawn
//! afresh for each [`LafsGrid`] (servers accept any key unless their operator restricts
//! writers).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use lafs_client::{
    parse_read_response, BoxFut, Client, ClientConfig, ReadPiece, ServerId, Transport,
    TransportError,
};
use lafs_proto::ids::storage_index_to_text;
use lafs_proto::mutable::{MutableWriteResponse, WireWrite};
use lafs_proto::signing::{sign_request, RequestParts};
use lafs_proto::storage::{
    AdvisoryRequest, AllocateRequest, AllocateResponse, ErrorBody, ErrorCode, FinishRequest,
    FinishResponse, ShareInfo, SharesResponse, VersionResponse, WriteResponse,
};
use lafs_proto::{Nonce, ReadRequest, ShareNum, StorageIndex, UploadId};
use serde::de::DeserializeOwned;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use crate::dirs::{parse_server_list, split_base};
use crate::{DirSession, DirUpload, Error, LafsError};

/// Whole-request timeout of one storage request.
const REQUEST_TIMEOUT_MS: i32 = 60_000;

/// A storage server: id, base URL (no trailing `/`) and the path prefix of that URL.
struct Server {
    id: ServerId,
    base: String,
    prefix: String,
}

/// [`Transport`] over the browser's `fetch`.
struct FetchTransport {
    servers: Vec<Server>,
    key: SigningKey,
    audiences: Mutex<HashMap<ServerId, String>>,
}

fn window() -> Result<web_sys::Window, TransportError> {
    web_sys::window().ok_or_else(|| TransportError::Unreachable("no window".into()))
}

fn js_text(v: &JsValue) -> String {
    v.as_string()
        .or_else(|| {
            v.dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
        })
        .unwrap_or_else(|| "unknown error".into())
}

/// A promise resolved after `ms` milliseconds.
fn sleep_ms(ms: i32) -> JsFuture {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    JsFuture::from(promise)
}

/// One HTTP request; the body of a 2xx answer, else the error it maps to.
async fn fetch(
    method: &str,
    url: &str,
    headers: &[(&'static str, String)],
    body: &[u8],
) -> Result<Vec<u8>, TransportError> {
    let window = window()?;
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    init.set_cache(web_sys::RequestCache::NoStore);
    let h = web_sys::Headers::new().map_err(|e| TransportError::Protocol(js_text(&e)))?;
    for (name, value) in headers {
        h.append(name, value)
            .map_err(|e| TransportError::Protocol(js_text(&e)))?;
    }
    init.set_headers(&h);
    if method != "GET" {
        let array = js_sys::Uint8Array::from(body);
        init.set_body(&array);
    }
    let abort =
        web_sys::AbortController::new().map_err(|e| TransportError::Protocol(js_text(&e)))?;
    init.set_signal(Some(&abort.signal()));
    let request = JsFuture::from(window.fetch_with_str_and_init(url, &init));
    let timeout = sleep_ms(REQUEST_TIMEOUT_MS);
    futures::pin_mut!(request);
    futures::pin_mut!(timeout);
    let resp = match futures::future::select(request, timeout).await {
        futures::future::Either::Left((r, _)) => {
            r.map_err(|e| TransportError::Unreachable(js_text(&e)))?
        }
        futures::future::Either::Right(_) => {
            abort.abort();
            return Err(TransportError::Timeout);
        }
    };
    let resp: web_sys::Response = resp
        .dyn_into()
        .map_err(|_| TransportError::Protocol("fetch did not give a response".into()))?;
    let buf = resp
        .array_buffer()
        .map_err(|e| TransportError::Protocol(js_text(&e)))?;
    let bytes = JsFuture::from(buf)
        .await
        .map_err(|e| TransportError::Unreachable(js_text(&e)))?;
    let bytes = js_sys::Uint8Array::new(&bytes).to_vec();
    let status = resp.status();
    if (200..300).contains(&status) {
        return Ok(bytes);
    }
    Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(b) => TransportError::Status {
            status,
            code: b.error,
            message: b.message,
        },
        Err(_) => TransportError::Status {
            status,
            code: ErrorCode::Unknown,
            message: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
        },
    })
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, TransportError> {
    serde_json::from_slice(body)
        .map_err(|e| TransportError::Protocol(format!("unexpected response body: {e}")))
}

fn unix_now() -> u64 {
    (js_sys::Date::now() / 1000.0) as u64
}

impl FetchTransport {
    fn server(&self, id: ServerId) -> Result<&Server, TransportError> {
        self.servers
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| TransportError::Unreachable(format!("server {id} is not known")))
    }

    async fn audience(&self, server: ServerId) -> Result<String, TransportError> {
        let known = self
            .audiences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&server)
            .cloned();
        match known {
            Some(a) => Ok(a),
            None => Ok(self.version(server).await?.server_id),
        }
    }

    /// Sends `method path?query` to `server`, signed if `sign`.
    #[allow(clippy::too_many_arguments)] // private: each argument is one part of the request
    async fn send(
        &self,
        server: ServerId,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
        sign: bool,
        json_body: bool,
    ) -> Result<Vec<u8>, TransportError> {
        let s = self.server(server)?;
        let mut url = format!("{}{path}", s.base);
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        let mut headers: Vec<(&'static str, String)> = Vec::new();
        if json_body {
            headers.push(("content-type", "application/json".into()));
        }
        if sign {
            let audience = self.audience(server).await?;
            let mut nonce = [0u8; 16];
            getrandom::fill(&mut nonce)
                .map_err(|_| TransportError::Protocol("random number generator failed".into()))?;
            let signed_path = format!("{}{path}", s.prefix);
            // Share data is bound by length only, everything else by digest (as the servers
            // expect for each endpoint).
            let parts = RequestParts::for_body(method, &signed_path, query, body);
            let signed = sign_request(&self.key, &audience, &parts, unix_now(), Nonce(nonce));
            headers.extend(signed.header_values());
        }
        fetch(method, &url, &headers, body).await
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        server: ServerId,
        path: &str,
    ) -> Result<T, TransportError> {
        parse_json(
            &self
                .send(server, "GET", path, "", &[], false, false)
                .await?,
        )
    }

    async fn signed_json<Q: serde::Serialize, T: DeserializeOwned>(
        &self,
        server: ServerId,
        method: &str,
        path: &str,
        body: &Q,
    ) -> Result<T, TransportError> {
        let body = serde_json::to_vec(body).map_err(|e| TransportError::Protocol(e.to_string()))?;
        parse_json(
            &self
                .send(server, method, path, "", &body, true, true)
                .await?,
        )
    }

    async fn read_at(
        &self,
        server: ServerId,
        path: String,
        req: ReadRequest,
    ) -> Result<Vec<ReadPiece>, TransportError> {
        let body = serde_json::to_vec(&req).map_err(|e| TransportError::Protocol(e.to_string()))?;
        let out = self
            .send(server, "POST", &path, "", &body, false, true)
            .await?;
        parse_read_response(&Bytes::from(out))
    }
}

#[async_trait(?Send)]
impl Transport for FetchTransport {
    fn servers(&self) -> Vec<ServerId> {
        self.servers.iter().map(|s| s.id).collect()
    }

    fn sleep(&self, duration: core::time::Duration) -> BoxFut<()> {
        let ms = i32::try_from(duration.as_millis()).unwrap_or(i32::MAX);
        let wait = sleep_ms(ms);
        Box::pin(async move {
            let _ = wait.await;
        })
    }

    async fn version(&self, server: ServerId) -> Result<VersionResponse, TransportError> {
        let v: VersionResponse = self.get_json(server, "/storage/v1/version").await?;
        self.audiences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(server, v.server_id.clone());
        Ok(v)
    }

    async fn list_shares(
        &self,
        server: ServerId,
        si: StorageIndex,
    ) -> Result<Vec<ShareInfo>, TransportError> {
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
        self.read_at(server, path, req).await
    }

    async fn allocate(
        &self,
        server: ServerId,
        upload: UploadId,
        req: AllocateRequest,
    ) -> Result<AllocateResponse, TransportError> {
        let path = format!("/storage/v1/upload/{upload}");
        self.signed_json(server, "POST", &path, &req).await
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
        parse_json(
            &self
                .send(server, "PUT", &path, &query, &data, true, false)
                .await?,
        )
    }

    async fn finish(
        &self,
        server: ServerId,
        upload: UploadId,
        share: ShareNum,
        req: FinishRequest,
    ) -> Result<FinishResponse, TransportError> {
        let path = format!("/storage/v1/upload/{upload}/{share}/finish");
        self.signed_json(server, "POST", &path, &req).await
    }

    async fn abort(&self, server: ServerId, upload: UploadId) -> Result<(), TransportError> {
        let path = format!("/storage/v1/upload/{upload}");
        self.send(server, "DELETE", &path, "", &[], true, false)
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
        self.send(server, "POST", &path, "", &body, true, true)
            .await
            .map(|_| ())
    }

    async fn mutable_list(
        &self,
        server: ServerId,
        si: StorageIndex,
    ) -> Result<Vec<ShareInfo>, TransportError> {
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
        self.read_at(server, path, req).await
    }

    async fn mutable_write(
        &self,
        server: ServerId,
        si: StorageIndex,
        writes: Vec<WireWrite>,
    ) -> Result<MutableWriteResponse, TransportError> {
        let path = format!("/storage/v1/mutable/{}/write", storage_index_to_text(&si));
        let body = lafs_proto::mutable::encode_writes(&writes)
            .map_err(|e| TransportError::Protocol(e.to_string()))?;
        parse_json(
            &self
                .send(server, "POST", &path, "", &body, true, false)
                .await?,
        )
    }
}

/// The tab's own grid client: reads and writes the storage servers directly, with caps and
/// keys kept in the tab. Created by `LafsGrid.connect(gatewayUrl)`; every operation returns a
/// `Promise` that rejects with a [`LafsError`].
#[wasm_bindgen]
pub struct LafsGrid {
    session: DirSession,
    servers: usize,
}

impl core::fmt::Debug for LafsGrid {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LafsGrid")
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}

fn rejected(e: Error) -> JsValue {
    JsValue::from(LafsError::from(e))
}

#[wasm_bindgen]
impl LafsGrid {
    /// Asks the gateway at `gateway_url` for the storage servers (`GET /grid/servers`, public
    /// data) and resolves to a `LafsGrid` with a fresh random account key.
    pub fn connect(gateway_url: String) -> js_sys::Promise {
        future_to_promise(async move {
            let url = format!("{}/grid/servers", gateway_url.trim_end_matches('/'));
            let body = fetch("GET", &url, &[], &[]).await.map_err(|e| {
                rejected(Error::Grid {
                    code: "unreachable",
                    what: format!("the gateway did not list the storage servers: {e}"),
                })
            })?;
            let list = parse_server_list(&body).map_err(rejected)?;
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|_| {
                rejected(Error::Grid {
                    code: "grid",
                    what: "random number generator failed".into(),
                })
            })?;
            let servers: Vec<Server> = list
                .into_iter()
                .map(|(id, url)| {
                    let (base, prefix) = split_base(&url);
                    Server { id, base, prefix }
                })
                .collect();
            let count = servers.len();
            let transport = FetchTransport {
                servers,
                key: SigningKey::from_bytes(&seed),
                audiences: Mutex::new(HashMap::new()),
            };
            let defaults = ClientConfig::default();
            let happy = defaults
                .happy
                .min(u16::try_from(count).unwrap_or(u16::MAX))
                .max(defaults.params.k());
            let client = Client::new(Arc::new(transport), ClientConfig { happy, ..defaults });
            Ok(JsValue::from(Self {
                session: DirSession::new(client),
                servers: count,
            }))
        })
    }

    /// Number of storage servers the gateway listed.
    #[wasm_bindgen(getter, js_name = serverCount)]
    pub fn server_count(&self) -> u32 {
        u32::try_from(self.servers).unwrap_or(u32::MAX)
    }

    /// Opens a directory cap and resolves to its listing as JSON text (shape:
    /// [`DirSession::open`]).
    #[wasm_bindgen(js_name = openDir)]
    pub fn open_dir(&self, cap: String) -> js_sys::Promise {
        let s = self.session.clone();
        future_to_promise(async move { s.open(&cap).await.map(JsValue::from).map_err(rejected) })
    }

    /// Creates a new, unlinked mutable directory; resolves to its write cap.
    #[wasm_bindgen(js_name = createDir)]
    pub fn create_dir(&self) -> js_sys::Promise {
        let s = self.session.clone();
        future_to_promise(async move { s.create_dir().await.map(JsValue::from).map_err(rejected) })
    }

    /// Creates a folder `name` in the directory of `dir_cap` (a write cap); resolves to the
    /// new folder's write cap.
    pub fn mkdir(&self, dir_cap: String, name: String) -> js_sys::Promise {
        let s = self.session.clone();
        future_to_promise(async move {
            s.mkdir(&dir_cap, &name)
                .await
                .map(JsValue::from)
                .map_err(rejected)
        })
    }

    /// Encrypts `data` in the tab, stores its shares on the storage servers and links it as
    /// `name` in the directory of `dir_cap` (a write cap); resolves to the file's read cap.
    #[wasm_bindgen(js_name = addFile)]
    pub fn add_file(&self, dir_cap: String, name: String, data: Vec<u8>) -> js_sys::Promise {
        let s = self.session.clone();
        future_to_promise(async move {
            s.add_file(&dir_cap, &name, &data)
                .await
                .map(JsValue::from)
                .map_err(rejected)
        })
    }

    /// Starts adding a file `name` to the directory of `dir_cap` (a write cap) piece by
    /// piece: `await up.write(bytes)` any number of times, then `await up.finish()` → the
    /// file's read cap. Throws at once for a cap without write access or a bad name.
    #[wasm_bindgen(js_name = startUpload)]
    pub fn start_upload(&self, dir_cap: &str, name: &str) -> Result<LafsDirUpload, LafsError> {
        let up = self.session.start_upload(dir_cap, name)?;
        Ok(LafsDirUpload {
            inner: Rc::new(RefCell::new(Some(up))),
        })
    }

    /// Reads a whole file (immutable readcap, literal cap, mutable write or read cap) from
    /// the storage servers, verified and decrypted; resolves to a `Uint8Array`.
    #[wasm_bindgen(js_name = readFile)]
    pub fn read_file(&self, cap: String) -> js_sys::Promise {
        let s = self.session.clone();
        future_to_promise(async move {
            s.read_file(&cap)
                .await
                .map(|b| JsValue::from(js_sys::Uint8Array::from(b.as_slice())))
                .map_err(rejected)
        })
    }
}

/// A file being added to a directory (`grid.startUpload(dirCap, name)`): each `write` encrypts,
/// erasure-codes and sends what fills segments; `finish` links the file. One call at a time:
/// a call made while another is pending rejects with code `invalid-use`.
#[wasm_bindgen]
pub struct LafsDirUpload {
    inner: Rc<RefCell<Option<DirUpload>>>,
}

impl core::fmt::Debug for LafsDirUpload {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LafsDirUpload").finish_non_exhaustive()
    }
}

#[wasm_bindgen]
impl LafsDirUpload {
    /// Appends `data`; resolves when it is encoded and its full segments are acknowledged.
    pub fn write(&self, data: Vec<u8>) -> js_sys::Promise {
        let inner = Rc::clone(&self.inner);
        future_to_promise(async move {
            let mut up = inner
                .borrow_mut()
                .take()
                .ok_or_else(|| rejected(Error::InvalidUse))?;
            let r = up.write(&data).await;
            *inner.borrow_mut() = Some(up);
            r.map(|()| JsValue::UNDEFINED).map_err(rejected)
        })
    }

    /// Finishes the upload and links the file; resolves to its read cap.
    pub fn finish(&self) -> js_sys::Promise {
        let inner = Rc::clone(&self.inner);
        future_to_promise(async move {
            let mut up = inner
                .borrow_mut()
                .take()
                .ok_or_else(|| rejected(Error::InvalidUse))?;
            up.finish().await.map(JsValue::from).map_err(rejected)
        })
    }
}
