//! Shared by the gateway tests: the router over an in-memory grid with requests through
//! `tower::ServiceExt::oneshot`, and a real local grid (introducer, storage servers and the
//! gateway over HTTP on 127.0.0.1 ephemeral ports) with requests through reqwest.
// Each test binary compiles this module on its own and uses only part of it.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use ed25519_dalek::SigningKey;
use http_body_util::BodyExt;
use lafs_caps::{ImmutableVerifyCap, ReadKey};
use lafs_codec::{encrypt_at, random_key};
use lafs_gateway::{app, AppState, ClientGrid, Config, Grid, MemoryGrid};
use lafs_hashtree::{Hash, NodeIndex};
use lafs_introducer::announcer::{Announcer, AnnouncerConfig, ServerInfo};
use lafs_introducer::{Clock, IntroducerConfig, IntroducerState, INTRODUCER_PATH};
use lafs_storage::{MemoryStore, ShareStore};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

/// The router over `grid` with `config`.
pub fn router_on(config: Config, grid: impl Grid + 'static) -> Router {
    app(AppState::new(config, Arc::new(grid)))
}

/// The router over a fresh in-memory grid with `config`, and that grid.
pub fn memory_app(config: Config) -> (Router, MemoryGrid) {
    let grid = MemoryGrid::new();
    (router_on(config, grid.clone()), grid)
}

/// A response, fully read.
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

pub async fn call(app: &Router, req: Request<Body>) -> Resp {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Resp {
        status,
        headers,
        body,
    }
}

/// A `method` request to `uri` with `headers` and `body`.
pub async fn request(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> Resp {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    call(app, b.body(body.into()).unwrap()).await
}

pub async fn get(app: &Router, uri: &str, headers: &[(&str, &str)]) -> Resp {
    request(app, Method::GET, uri, headers, Body::empty()).await
}

pub async fn head(app: &Router, uri: &str, headers: &[(&str, &str)]) -> Resp {
    request(app, Method::HEAD, uri, headers, Body::empty()).await
}

pub async fn put(app: &Router, uri: &str, body: Vec<u8>) -> Resp {
    request(app, Method::PUT, uri, &[], body).await
}

pub async fn post(app: &Router, uri: &str, body: Vec<u8>) -> Resp {
    request(app, Method::POST, uri, &[], body).await
}

pub async fn delete(app: &Router, uri: &str) -> Resp {
    request(app, Method::DELETE, uri, &[], Body::empty()).await
}

/// `PUT /uri{query}` of `body`, which must succeed; the cap.
pub async fn upload(app: &Router, query: &str, body: &[u8]) -> String {
    let r = put(app, &format!("/uri{query}"), body.to_vec()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.text()
}

/// A multipart/form-data body with `fields` (name, value) and a `file` field last.
pub fn multipart(fields: &[(&str, &str)], file: &[u8]) -> (String, Vec<u8>) {
    let boundary = "lafs-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.bin\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Deterministic test data.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// The ciphertext of `plain` under a fresh key, and the key.
pub fn encrypt(plain: &[u8]) -> (ReadKey, Vec<u8>) {
    let key = random_key().unwrap();
    let mut ct = plain.to_vec();
    encrypt_at(&key, 0, &mut ct).unwrap();
    (key, ct)
}

/// The selection index of `key` in hex, as the `selection_index` parameter takes it.
pub fn sel_hex(key: &ReadKey) -> String {
    hex::encode(lafs_caps::selection_index_for(key).0)
}

/// The `proof` nodes of a `t=proof` answer.
pub fn proof_nodes(proof: &serde_json::Value) -> Vec<(NodeIndex, Hash)> {
    proof["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let h: [u8; 32] = hex::decode(p["hash"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            (NodeIndex(p["node"].as_u64().unwrap() as usize), Hash(h))
        })
        .collect()
}

/// What a [`TestGrid`] runs.
pub struct GridSpec {
    /// One storage server each.
    pub stores: Vec<Arc<dyn ShareStore>>,
    /// The storage servers accept mutable slots (in memory).
    pub mutable: bool,
    /// The gateway's grid client.
    pub client: lafs_client::ClientConfig,
}

/// An introducer, storage servers and the gateway over HTTP on 127.0.0.1 ephemeral ports.
pub struct TestGrid {
    pub base: String,
    pub http: reqwest::Client,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    announcers: Vec<Announcer>,
    _dir: Arc<lafs_netclient::Grid>,
}

fn stopped(rx: &watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

async fn bind() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

impl TestGrid {
    /// `servers` in-memory storage servers that accept mutable slots; the client is happy
    /// with 5 servers.
    pub async fn start(servers: u8) -> Self {
        Self::start_with(GridSpec {
            stores: (0..servers)
                .map(|_| Arc::new(MemoryStore::new(1 << 30)) as Arc<dyn ShareStore>)
                .collect(),
            mutable: true,
            client: lafs_client::ClientConfig {
                happy: 5,
                ..lafs_client::ClientConfig::default()
            },
        })
        .await
    }

    pub async fn start_with(spec: GridSpec) -> Self {
        let (stop, rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let (l, addr) = bind().await;
        let intro_url = format!("ws://{addr}{INTRODUCER_PATH}");
        let state = IntroducerState::new(IntroducerConfig::default());
        let s = stopped(&rx);
        tasks.spawn(async move {
            lafs_introducer::serve(l, state, s).await.unwrap();
        });
        let servers = spec.stores.len();
        let mut announcers = Vec::new();
        for (i, store) in spec.stores.into_iter().enumerate() {
            let i = u8::try_from(i).unwrap();
            let config = lafs_storage::Config {
                accepts_mutable: spec.mutable,
                ..lafs_storage::Config::default()
            };
            let state = lafs_storage::AppState::new(config, store).unwrap();
            if spec.mutable {
                state.enable_mutable(Arc::new(lafs_storage::MemoryMutableStore::new()));
            }
            let (l, addr) = bind().await;
            let s = stopped(&rx);
            tasks.spawn(async move {
                lafs_storage::serve(l, state, s).await.unwrap();
            });
            let url = format!("http://{addr}");
            announcers.push(Announcer::spawn(
                AnnouncerConfig::new(intro_url.clone()),
                SigningKey::from_bytes(&[i + 1; 32]),
                Clock::system(),
                move || ServerInfo {
                    url: url.clone(),
                    protocol: 1,
                    capacity: 1 << 30,
                    available: 1 << 30,
                    nickname: format!("s{i}"),
                },
            ));
        }
        let (client, dir) = lafs_netclient::connect(
            &intro_url,
            SigningKey::from_bytes(&[200; 32]),
            servers,
            Duration::from_secs(20),
            spec.client,
        )
        .await
        .unwrap();
        let state = AppState::new(Config::default(), Arc::new(ClientGrid::new(client)));
        let (l, addr) = bind().await;
        let s = stopped(&rx);
        tasks.spawn(async move {
            lafs_gateway::serve(l, state, s).await.unwrap();
        });
        Self {
            base: format!("http://{addr}"),
            // No connection reuse: the gateway answers a rejected upload before reading its body
            // and then closes the connection, which a pooled client may race with its next
            // request (hyper's IncompleteMessage).
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            stop,
            tasks,
            announcers,
            _dir: dir,
        }
    }

    /// `{method} {path}` of `body` with `headers`: the status and the body as text.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, String) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// `PUT {path}` of `body`: the status and the body as text.
    pub async fn put(&self, path: &str, body: Vec<u8>) -> (u16, String) {
        self.send(Method::PUT, path, &[], body).await
    }

    /// `POST {path}` of `body` with `headers`: the status and the body as text.
    pub async fn post(&self, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, String) {
        self.send(Method::POST, path, headers, body).await
    }

    /// `{method} {path}` without a body, with `headers`: the status, headers and body.
    pub async fn fetch(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, HeaderMap, Vec<u8>) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.bytes().await.unwrap().to_vec())
    }

    /// `GET {path}`, with a `range` header if given: the status, headers and body.
    pub async fn get(&self, path: &str, range: Option<&str>) -> (u16, HeaderMap, Vec<u8>) {
        let range: Vec<(&str, &str)> = range.map(|r| ("range", r)).into_iter().collect();
        self.fetch(Method::GET, path, &range).await
    }

    /// `HEAD {path}`: the status and headers.
    pub async fn head(&self, path: &str) -> (u16, HeaderMap) {
        let (status, headers, _) = self.fetch(Method::HEAD, path, &[]).await;
        (status, headers)
    }

    /// `DELETE {path}`: the status.
    pub async fn delete(&self, path: &str) -> u16 {
        self.fetch(Method::DELETE, path, &[]).await.0
    }

    /// `PUT /uri{query}` of `body`, which must succeed; the cap.
    pub async fn upload(&self, query: &str, body: Vec<u8>) -> String {
        let (status, cap) = self.put(&format!("/uri{query}"), body).await;
        assert_eq!(status, 200, "{cap}");
        cap
    }

    /// `PUT /ciphertext?selection_index=…{query}` of `ct`, encrypted with `key`, which must
    /// succeed; the verifycap.
    pub async fn put_ciphertext(
        &self,
        key: &ReadKey,
        query: &str,
        ct: Vec<u8>,
    ) -> ImmutableVerifyCap {
        let path = format!("/ciphertext?selection_index={}{query}", sel_hex(key));
        let (status, vc) = self.put(&path, ct).await;
        assert_eq!(status, 200, "{vc}");
        vc.parse().unwrap()
    }

    /// Stops the announcers, then every server, within 10 s.
    pub async fn shutdown(mut self) {
        for a in self.announcers.drain(..) {
            a.stop().await;
        }
        self.stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(10), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await
        .expect("servers stop");
    }
}
