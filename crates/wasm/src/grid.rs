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
use std::rc::Rc;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use lafs_client::http::{
    HttpBackend, HttpRequest, HttpResponse, HttpSession, ServerUrl, SessionConfig,
};
use lafs_client::{BoxFut, Client, ClientConfig, ServerId, TransportError};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use crate::dirs::parse_server_list;
use crate::{DirSession, DirUpload, Error, GridFile, LafsError};

/// Whole-request timeout of one storage request.
const REQUEST_TIMEOUT_MS: i32 = 60_000;

/// [`lafs_client::Transport`] over the browser's `fetch`: it only moves bytes; requests,
/// signatures and answer checks are `lafs_client::http`'s (through [`HttpBackend`]). Versions
/// are not cached (each upload asks), audiences are; whole shares go through allocate, write
/// and finish.
struct FetchTransport {
    servers: Vec<(ServerId, ServerUrl)>,
    session: HttpSession,
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

/// One HTTP exchange: the status and whole body of the answer. Only a failure to get one is
/// an error (unreachable, timed out after [`REQUEST_TIMEOUT_MS`]).
async fn fetch(
    method: &str,
    url: &str,
    headers: &[(&'static str, String)],
    body: &[Bytes],
) -> Result<HttpResponse, TransportError> {
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
        // As a Blob: with a typed-array body, a browser whose DevTools network log is open (as
        // in Playwright) copies every request body into that log, which made uploads from the
        // tab run at a tenth of their speed; a Blob costs one more copy of the body.
        // Several pieces (share data merged from blocks) become one Blob without being joined.
        let pieces = js_sys::Array::new();
        for part in body {
            pieces.push(&js_sys::Uint8Array::from(&part[..]));
        }
        let blob = web_sys::Blob::new_with_u8_array_sequence(&pieces)
            .map_err(|e| TransportError::Protocol(js_text(&e)))?;
        init.set_body(&blob);
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
    Ok(HttpResponse {
        status: resp.status(),
        body: Bytes::from(js_sys::Uint8Array::new(&bytes).to_vec()),
    })
}

#[async_trait(?Send)]
impl HttpBackend for FetchTransport {
    fn session(&self) -> &HttpSession {
        &self.session
    }

    fn known_servers(&self) -> Vec<ServerId> {
        self.servers.iter().map(|(id, _)| *id).collect()
    }

    fn server_url(&self, server: ServerId) -> Result<ServerUrl, TransportError> {
        self.servers
            .iter()
            .find(|(id, _)| *id == server)
            .map(|(_, url)| url.clone())
            .ok_or_else(|| TransportError::Unreachable(format!("server {server} is not known")))
    }

    fn unix_now(&self) -> u64 {
        (js_sys::Date::now() / 1000.0) as u64
    }

    fn monotonic_ms(&self) -> u64 {
        // Only read with a version TTL, which this transport does not set.
        js_sys::Date::now() as u64
    }

    fn timer(&self, duration: core::time::Duration) -> BoxFut<()> {
        let ms = i32::try_from(duration.as_millis()).unwrap_or(i32::MAX);
        let wait = sleep_ms(ms);
        Box::pin(async move {
            let _ = wait.await;
        })
    }

    async fn send(
        &self,
        url: String,
        request: HttpRequest,
    ) -> Result<HttpResponse, TransportError> {
        fetch(
            request.method.as_str(),
            &url,
            &request.headers,
            request.body.parts(),
        )
        .await
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
            let body = fetch("GET", &url, &[], &[])
                .await
                .and_then(HttpResponse::success)
                .map_err(|e| {
                    rejected(Error::Grid {
                        code: "unreachable",
                        what: format!("the gateway did not list the storage servers: {e}"),
                    })
                })?;
            Self::from_list(&body).map(JsValue::from).map_err(rejected)
        })
    }

    /// A `LafsGrid` over the storage servers of `list` (the JSON of the gateway's `GET
    /// /grid/servers`, or of `introducerServers(…)` for an introducer's verified list), with a
    /// fresh random account key; no request is made.
    #[wasm_bindgen(js_name = fromServerList)]
    pub fn from_server_list(list: &str) -> Result<Self, LafsError> {
        Self::from_list(list.as_bytes()).map_err(LafsError::from)
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

    /// Links an immutable file already stored (`file_cap`: its read cap, e.g. from an upload
    /// through the gateway's upload session) as `name` in the directory of `dir_cap` (a write
    /// cap), with metadata `{"size": size}`; resolves to the cap. A folder of that name is not
    /// replaced (code `exists`).
    #[wasm_bindgen(js_name = linkFile)]
    pub fn link_file(
        &self,
        dir_cap: String,
        name: String,
        file_cap: String,
        size: f64,
    ) -> js_sys::Promise {
        let s = self.session.clone();
        future_to_promise(async move {
            let size = byte_count(size, "bad-size", "file size").map_err(JsValue::from)?;
            s.link_file(&dir_cap, &name, &file_cap, size)
                .await
                .map(JsValue::from)
                .map_err(rejected)
        })
    }

    /// Starts adding a file `name` to the directory of `dir_cap` (a write cap) piece by
    /// piece: `await up.write(bytes)` any number of times, then `await up.finish()` → the
    /// file's read cap. Throws at once for a cap without write access or a bad name.
    #[wasm_bindgen(js_name = startUpload)]
    pub fn start_upload(&self, dir_cap: &str, name: &str) -> Result<LafsUpload, LafsError> {
        let up = self.session.start_upload(dir_cap, name)?;
        Ok(LafsUpload {
            inner: Rc::new(RefCell::new(Some(up))),
        })
    }

    /// Starts uploading a file that is not linked into any directory: `await up.write(bytes)`
    /// any number of times, then `await up.finish()` → its read cap. Encrypted, erasure-coded
    /// and hashed in wasm in this tab; the shares go to the storage servers as segments fill.
    #[wasm_bindgen(js_name = startFileUpload)]
    pub fn start_file_upload(&self) -> LafsUpload {
        LafsUpload {
            inner: Rc::new(RefCell::new(Some(self.session.start_file_upload()))),
        }
    }

    /// Opens a file cap (immutable readcap, literal cap, mutable write or read cap) for
    /// reading from the storage servers; resolves to a `LafsFile` (`size`, `stream(start,
    /// end)`), after the shares' trailers were checked against the cap.
    #[wasm_bindgen(js_name = openFile)]
    pub fn open_file(&self, cap: String) -> js_sys::Promise {
        let s = self.session.clone();
        future_to_promise(async move {
            let file = s.open_file(&cap).await.map_err(rejected)?;
            Ok(JsValue::from(LafsFile {
                inner: RefCell::new(file),
                subtle: webcrypto::checked().await,
            }))
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

impl LafsGrid {
    /// A grid client over the servers of a `/grid/servers`-shaped JSON list, with a fresh
    /// random ed25519 account key for signed writes.
    fn from_list(body: &[u8]) -> Result<Self, Error> {
        let list = parse_server_list(body)?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|_| Error::Grid {
            code: "grid",
            what: "random number generator failed".into(),
        })?;
        let servers: Vec<(ServerId, ServerUrl)> = list
            .into_iter()
            .map(|(id, url)| (id, ServerUrl::parse(&url)))
            .collect();
        let count = servers.len();
        let transport = FetchTransport {
            servers,
            session: HttpSession::new(
                SigningKey::from_bytes(&seed),
                SessionConfig {
                    version_ttl_ms: 0,
                    whole_share_put: false,
                },
            ),
        };
        let defaults = ClientConfig::default();
        let happy = defaults
            .happy
            .min(u16::try_from(count).unwrap_or(u16::MAX))
            .max(defaults.params.k());
        let client = Client::new(Arc::new(transport), ClientConfig { happy, ..defaults });
        Ok(Self {
            session: DirSession::new(client),
            servers: count,
        })
    }
}

/// The storage servers an introducer lists (the body of `GET <introducer>/v1/servers`), each
/// announcement's signature checked, as the JSON of the gateway's `GET /grid/servers` (for
/// `LafsGrid.fromServerList` and the page's direct reads). Throws (code `no-servers`) if no
/// validly signed server is left.
#[wasm_bindgen(js_name = introducerServers)]
pub fn introducer_servers(body: &[u8]) -> Result<String, LafsError> {
    crate::dirs::introducer_server_list(body).map_err(LafsError::from)
}

/// A file opened with `grid.openFile(cap)`: its `size`, and `stream(start, end)` for any byte
/// range as a `ReadableStream` of verified, decrypted `Uint8Array` pieces.
#[wasm_bindgen]
pub struct LafsFile {
    inner: RefCell<GridFile>,
    /// WebCrypto, when the browser has it and it agrees with lafs' AES-CTR (else Rust).
    subtle: Option<web_sys::SubtleCrypto>,
}

impl core::fmt::Debug for LafsFile {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LafsFile").finish_non_exhaustive()
    }
}

/// A byte count or offset given by JavaScript (a number): a non-negative integer below 2^53,
/// else an error with `code` naming `what`.
fn byte_count(x: f64, code: &'static str, what: &str) -> Result<u64, LafsError> {
    if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x < 9.0e15 {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        return Ok(x as u64); // checked: a non-negative integer < 2^53
    }
    Err(LafsError::from(Error::Grid {
        code,
        what: format!("{x} is not a {what}"),
    }))
}

#[wasm_bindgen]
impl LafsFile {
    /// The file's size in bytes.
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> f64 {
        self.inner.borrow().size() as f64
    }

    /// Bytes `[start, end)` (clamped to the file; `end` omitted: to the end) as a
    /// `ReadableStream` of `Uint8Array` pieces, each checked against the cap and decrypted
    /// before it is enqueued; a piece that fails errors the stream (a `LafsError`, code
    /// `integrity` when no k good shares remain) and nothing of it is delivered. Pulled: a
    /// reader that stops reading stops the fetching; streams are independent of each other.
    pub fn stream(
        &self,
        start: Option<f64>,
        end: Option<f64>,
    ) -> Result<web_sys::ReadableStream, LafsError> {
        use futures::StreamExt;
        let start = byte_count(start.unwrap_or(0.0), "bad-range", "byte offset (start)")?;
        let end = match end {
            Some(e) => byte_count(e, "bad-range", "byte offset (end)")?,
            None => u64::MAX,
        };
        let to_js = |r: Result<Bytes, Error>| {
            r.map(|b| JsValue::from(js_sys::Uint8Array::from(&b[..])))
                .map_err(rejected)
        };
        let mut file = self.inner.borrow_mut();
        let Some(subtle) = self.subtle.clone() else {
            let pieces = file.stream(start, end).map(to_js);
            return Ok(wasm_streams::ReadableStream::from_stream(pieces).into_raw());
        };
        let pieces = match file.ciphertext(start, end) {
            // WebCrypto decrypts each verified piece (≈ 3.5× the Rust AES in wasm); the
            // plaintext goes from WebCrypto's output straight into the stream.
            Ok((ciphertext, key)) => {
                let key = Rc::new(webcrypto::Key::new(key));
                ciphertext
                    .then(move |piece| {
                        let (subtle, key) = (subtle.clone(), Rc::clone(&key));
                        async move {
                            let (offset, ct) = piece.map_err(rejected)?;
                            key.decrypt(&subtle, offset, &ct).await.map(JsValue::from)
                        }
                    })
                    .boxed_local()
            }
            Err(plain) => plain.map(to_js).boxed_local(),
        };
        Ok(wasm_streams::ReadableStream::from_stream(pieces).into_raw())
    }

    /// What decrypts this file's streams: `"webcrypto"` (the browser's AES-CTR, checked
    /// against lafs' own when the file was opened) or `"wasm"` (Rust).
    #[wasm_bindgen(getter)]
    pub fn crypto(&self) -> String {
        if self.subtle.is_some() {
            "webcrypto"
        } else {
            "wasm"
        }
        .to_owned()
    }
}

/// AES-CTR through the browser's WebCrypto, with lafs' counter layout (the 16-byte big-endian
/// block number of the file offset, as `lafs_codec::decrypt_at`).
mod webcrypto {
    use lafs_caps::ReadKey;
    use wasm_bindgen::prelude::*;
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;

    /// The global scope's `crypto.subtle` (window or worker), if any.
    fn subtle() -> Option<web_sys::SubtleCrypto> {
        let crypto = js_sys::Reflect::get(&js_sys::global(), &"crypto".into()).ok()?;
        Some(crypto.dyn_into::<web_sys::Crypto>().ok()?.subtle())
    }

    thread_local! {
        /// The outcome of the first [`checked`], kept for the page's life.
        static CHECKED: std::cell::RefCell<Option<Option<web_sys::SubtleCrypto>>> =
            const { std::cell::RefCell::new(None) };
    }

    /// WebCrypto if it is there and encrypts a test vector (an unaligned offset included)
    /// exactly as `lafs_codec::encrypt_at` does; else `None` (the caller uses Rust). Checked
    /// once per page.
    pub(super) async fn checked() -> Option<web_sys::SubtleCrypto> {
        if let Some(known) = CHECKED.with(|c| c.borrow().clone()) {
            return known;
        }
        let found = check().await;
        CHECKED.with(|c| *c.borrow_mut() = Some(found.clone()));
        found
    }

    async fn check() -> Option<web_sys::SubtleCrypto> {
        let subtle = subtle()?;
        let key = ReadKey::from_bytes([7; 16]);
        let data: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(3)).collect();
        let k = Key::new(key.clone());
        for offset in [48u64, 37, (1 << 40) + 5] {
            let mut want = data.clone();
            lafs_codec::encrypt_at(&key, offset, &mut want).ok()?;
            let got = k.decrypt(&subtle, offset, &data).await.ok()?;
            if got.to_vec() != want {
                return None;
            }
        }
        Some(subtle)
    }

    /// A file key, imported into WebCrypto on first use.
    pub(super) struct Key {
        raw: ReadKey,
        imported: std::cell::RefCell<Option<web_sys::CryptoKey>>,
    }

    impl Key {
        pub(super) fn new(raw: ReadKey) -> Self {
            Self {
                raw,
                imported: std::cell::RefCell::new(None),
            }
        }

        async fn imported(
            &self,
            subtle: &web_sys::SubtleCrypto,
        ) -> Result<web_sys::CryptoKey, JsValue> {
            if let Some(k) = self.imported.borrow().as_ref() {
                return Ok(k.clone());
            }
            let usages = js_sys::Array::of1(&"encrypt".into());
            let raw = js_sys::Uint8Array::from(&self.raw.as_bytes()[..]);
            let p = subtle.import_key_with_str("raw", &raw, "AES-CTR", false, &usages)?;
            raw.fill(0, 0, 16);
            let key: web_sys::CryptoKey = JsFuture::from(p).await?.dyn_into()?;
            *self.imported.borrow_mut() = Some(key.clone());
            Ok(key)
        }

        /// `data`, the bytes at file offset `offset`, XORed with the file's keystream.
        pub(super) async fn decrypt(
            &self,
            subtle: &web_sys::SubtleCrypto,
            offset: u64,
            data: &[u8],
        ) -> Result<js_sys::Uint8Array, JsValue> {
            let key = self.imported(subtle).await?;
            // WebCrypto starts at a block boundary: the piece goes after `pad` filler bytes.
            let pad = (offset % 16) as usize;
            let mut input = vec![0u8; pad + data.len()];
            input[pad..].copy_from_slice(data);
            let mut counter = u128::from(offset / 16).to_be_bytes();
            let params = web_sys::AesCtrParams::new_with_u8_slice("AES-CTR", &mut counter, 128);
            let p = subtle.encrypt_with_object_and_u8_array(&params, &key, &input)?;
            let out = js_sys::Uint8Array::new(&JsFuture::from(p).await?);
            let (from, to) = (pad as u32, (pad + data.len()) as u32);
            Ok(out.subarray(from, to))
        }
    }
}

/// A file being uploaded (`grid.startFileUpload()`) or added to a directory
/// (`grid.startUpload(dirCap, name)`): each `write` encrypts, erasure-codes and sends what fills
/// segments; `finish` stores the rest (and links the file into the directory) and resolves to
/// its read cap. One call at a time: a call made while another is pending rejects with code
/// `invalid-use`.
#[wasm_bindgen]
pub struct LafsUpload {
    inner: Rc<RefCell<Option<DirUpload>>>,
}

impl core::fmt::Debug for LafsUpload {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LafsUpload").finish_non_exhaustive()
    }
}

#[wasm_bindgen]
impl LafsUpload {
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
