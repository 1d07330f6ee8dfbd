//! Test harness: an in-process server on 127.0.0.1:0 and a signing HTTP client.
// Test support code: panicking on a failed set-up step is the desired behaviour.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use lafs_caps::ReadKey;
use lafs_codec::{encode_to_shares, Encoded, Params};
use lafs_proto::signing::{sign_request, RequestParts};
use lafs_proto::storage::{ErrorBody, SharesResponse};
use lafs_proto::Nonce;
use lafs_storage::{serve, AppState, Config, MemoryStore, ShareStore};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestServer {
    pub url: String,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    pub async fn start(state: AppState) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(serve(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        Self {
            url,
            state,
            shutdown: Some(tx),
            handle,
        }
    }

    pub async fn memory(config: Config) -> Self {
        let store: Arc<dyn ShareStore> = Arc::new(MemoryStore::new(1 << 30));
        Self::start(AppState::new(config, store).unwrap()).await
    }

    /// Graceful stop.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(std::time::Duration::from_secs(10), &mut self.handle)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }

    /// Abrupt stop: the serving task is dropped mid-flight.
    pub fn kill(self) {
        self.handle.abort();
    }

    pub fn client(&self, seed: u8) -> Client {
        Client::new(&self.url, self.state.server_id(), seed)
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "bad JSON ({e}) in {} response: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn error(&self) -> ErrorBody {
        assert!(self.status >= 400, "expected an error, got {}", self.status);
        self.json()
    }

    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }
}

pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub key: SigningKey,
    pub server_id: String,
    seed: u8,
    instance: u32,
    counter: AtomicU64,
}

/// Distinguishes clients of one test process, so two clients with the same key never reuse a
/// nonce (the server would rightly reject the second use as a replay).
static INSTANCES: AtomicU64 = AtomicU64::new(0);

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Client {
    pub fn new(base: &str, server_id: &str, seed: u8) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.to_owned(),
            key: SigningKey::from_bytes(&[seed; 32]),
            server_id: server_id.to_owned(),
            seed,
            instance: INSTANCES.fetch_add(1, Ordering::SeqCst) as u32,
            counter: AtomicU64::new(0),
        }
    }

    pub fn nonce(&self) -> Nonce {
        let mut n = [self.seed; 16];
        n[..4].copy_from_slice(&self.instance.to_be_bytes());
        n[8..].copy_from_slice(&self.counter.fetch_add(1, Ordering::SeqCst).to_be_bytes());
        Nonce(n)
    }

    /// Headers signing `method path?query` with `body` at `timestamp`.
    pub fn sign(
        &self,
        method: &str,
        path_q: &str,
        body: &[u8],
        timestamp: u64,
    ) -> Vec<(&'static str, String)> {
        let (path, query) = path_q.split_once('?').unwrap_or((path_q, ""));
        let req = RequestParts::for_body(method, path, query, body);
        sign_request(&self.key, &self.server_id, &req, timestamp, self.nonce())
            .header_values()
            .to_vec()
    }

    pub async fn raw(
        &self,
        method: &str,
        path_q: &str,
        body: Vec<u8>,
        headers: &[(&str, String)],
    ) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self
            .http
            .request(m, format!("{}{}", self.base, path_q))
            .body(body);
        for (k, v) in headers {
            rb = rb.header(*k, v);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().await.unwrap().to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn signed(&self, method: &str, path_q: &str, body: Vec<u8>) -> Resp {
        let h = self.sign(method, path_q, &body, now_unix());
        self.raw(method, path_q, body, &h).await
    }

    pub async fn get(&self, path_q: &str) -> Resp {
        self.raw("GET", path_q, Vec::new(), &[]).await
    }

    pub async fn allocate(&self, upload: &str, body: serde_json::Value) -> Resp {
        self.signed(
            "POST",
            &format!("/storage/v1/upload/{upload}"),
            body.to_string().into_bytes(),
        )
        .await
    }

    /// Allocates the one share `share` of `share_size` bytes in `upload`.
    pub async fn allocate_share(&self, upload: &str, share: u8, share_size: u64) -> Resp {
        self.allocate(
            upload,
            serde_json::json!({"shares": [share], "share_size": share_size}),
        )
        .await
    }

    /// The share numbers the server lists as held for `si` (asserting a 200).
    pub async fn listed(&self, si: &str) -> Vec<u8> {
        let l: SharesResponse = self
            .get(&format!("/storage/v1/immutable/{si}/shares"))
            .await
            .expect(200)
            .json();
        l.shares.iter().map(|s| s.share.0).collect()
    }

    pub async fn write(&self, upload: &str, share: u8, offset: u64, data: &[u8]) -> Resp {
        self.signed(
            "PUT",
            &format!("/storage/v1/upload/{upload}/{share}?offset={offset}"),
            data.to_vec(),
        )
        .await
    }

    pub async fn finish(&self, upload: &str, share: u8, length: u64) -> Resp {
        let body = serde_json::json!({ "length": length })
            .to_string()
            .into_bytes();
        self.signed(
            "POST",
            &format!("/storage/v1/upload/{upload}/{share}/finish"),
            body,
        )
        .await
    }

    /// The combined whole-share request.
    pub async fn put_share(&self, si: &str, share: u8, data: &[u8]) -> Resp {
        self.signed(
            "PUT",
            &format!("/storage/v1/immutable/{si}/{share}"),
            data.to_vec(),
        )
        .await
    }

    pub async fn status(&self, upload: &str) -> Resp {
        self.signed("GET", &format!("/storage/v1/upload/{upload}"), Vec::new())
            .await
    }

    pub async fn read(&self, si: &str, body: serde_json::Value) -> Resp {
        self.raw(
            "POST",
            &format!("/storage/v1/immutable/{si}/read"),
            body.to_string().into_bytes(),
            &[],
        )
        .await
    }
}

/// A random-looking but deterministic upload id.
pub fn upload_id(seed: u8) -> String {
    lafs_proto::UploadId([seed.wrapping_mul(37).wrapping_add(11); 16]).to_text()
}

/// Real shares of a deterministic file: 3-of-10, 4 KiB segments.
pub fn make_shares(len: usize, seed: u8) -> (Vec<Vec<u8>>, Encoded) {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let params = Params::new(3, 10, 4096).unwrap();
    encode_to_shares(params, ReadKey::from_bytes([seed; 16]), &data).unwrap()
}

pub fn si_text(e: &Encoded) -> String {
    lafs_proto::ids::storage_index_to_text(&e.storage_index)
}

/// The usual set-up: a memory server with the default config, a client signing with key
/// `seed`, and the shares of a `len`-byte file made from the same seed.
pub struct Fixture {
    pub srv: TestServer,
    pub c: Client,
    pub shares: Vec<Vec<u8>>,
    pub enc: Encoded,
    pub si: String,
}

pub async fn fixture(len: usize, seed: u8) -> Fixture {
    let srv = TestServer::memory(Config::default()).await;
    let c = srv.client(seed);
    let (shares, enc) = make_shares(len, seed);
    let si = si_text(&enc);
    Fixture {
        srv,
        c,
        shares,
        enc,
        si,
    }
}
