//! End to end on a real local grid: an introducer, storage servers (in-memory share stores)
//! and the gateway, all over HTTP on 127.0.0.1 ephemeral ports; requests with reqwest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::data;
use ed25519_dalek::SigningKey;
use lafs_caps::{Cap, ImmutableReadCap, ImmutableVerifyCap};
use lafs_codec::{decrypt_at, CIPHERTEXT_SEGMENT_TAG};
use lafs_gateway::{AppState, ClientGrid, Config};
use lafs_hashtree::{tagged_hash, Hash, NodeIndex, PartialTree};
use lafs_introducer::announcer::{Announcer, AnnouncerConfig, ServerInfo};
use lafs_introducer::{Clock, IntroducerConfig, IntroducerState, INTRODUCER_PATH};
use lafs_storage::{MemoryStore, ShareStore};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

struct TestGrid {
    base: String,
    http: reqwest::Client,
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
    async fn start(servers: u8) -> Self {
        let (stop, rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let (l, addr) = bind().await;
        let intro_url = format!("ws://{addr}{INTRODUCER_PATH}");
        let state = IntroducerState::new(IntroducerConfig::default());
        let s = stopped(&rx);
        tasks.spawn(async move {
            lafs_introducer::serve(l, state, s).await.unwrap();
        });
        let mut announcers = Vec::new();
        for i in 0..servers {
            let store: Arc<dyn ShareStore> = Arc::new(MemoryStore::new(1 << 30));
            let config = lafs_storage::Config {
                accepts_mutable: true,
                ..lafs_storage::Config::default()
            };
            let state = lafs_storage::AppState::new(config, store).unwrap();
            state.enable_mutable(Arc::new(lafs_storage::MemoryMutableStore::new()));
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
        let config = lafs_client::ClientConfig {
            happy: 5,
            ..lafs_client::ClientConfig::default()
        };
        let (client, dir) = lafs_netclient::connect(
            &intro_url,
            SigningKey::from_bytes(&[200; 32]),
            usize::from(servers),
            Duration::from_secs(20),
            config,
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

    async fn put(&self, path: &str, body: Vec<u8>) -> (u16, String) {
        let r = self
            .http
            .put(format!("{}{path}", self.base))
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn get(
        &self,
        path: &str,
        range: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(r) = range {
            req = req.header("range", r);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.bytes().await.unwrap().to_vec())
    }

    async fn shutdown(mut self) {
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

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_grid_round_trips_ranges_and_ciphertext() {
    let grid = TestGrid::start(7).await;
    let seg = 4096usize;
    for (i, len) in [0usize, 1, 56, seg - 1, seg, seg + 1]
        .into_iter()
        .enumerate()
    {
        let d = data(len, 100 + i as u64);
        let (status, cap) = grid
            .put(&format!("/uri?segment_size={seg}"), d.clone())
            .await;
        assert_eq!(status, 200, "{cap}");
        let (status, h, body) = grid.get(&format!("/uri/{cap}"), None).await;
        assert_eq!(status, 200);
        assert_eq!(header(&h, "content-length"), Some(len.to_string().as_str()));
        assert!(body == d, "size {len}");
        // A one-segment file's proof needs no stored node (the root is in the UEB): it is an
        // empty list, not an error (regression: the gateway used to send an empty share read).
        if (56..=seg).contains(&len) {
            let vc = cap.parse::<ImmutableReadCap>().unwrap().verify_cap();
            let (status, _, proof) = grid
                .get(&format!("/ciphertext/{vc}?t=proof&segments=0-0"), None)
                .await;
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&proof));
            let proof: serde_json::Value = serde_json::from_slice(&proof).unwrap();
            assert_eq!(proof["proof"].as_array().map(Vec::len), Some(0), "{proof}");
        }
    }

    // A few MiB with default parameters, and random ranges.
    let d = data((3 << 20) + 777, 5);
    let (status, cap) = grid.put("/uri", d.clone()).await;
    assert_eq!(status, 200, "{cap}");
    let (_, _, body) = grid.get(&format!("/uri/{cap}"), None).await;
    assert!(body == d);
    let mut rng = fastrand::Rng::with_seed(11);
    for _ in 0..8 {
        let a = rng.usize(..d.len());
        let b = rng.usize(a..d.len());
        let (status, h, body) = grid
            .get(&format!("/uri/{cap}"), Some(&format!("bytes={a}-{b}")))
            .await;
        assert_eq!(status, 206);
        assert_eq!(
            header(&h, "content-range"),
            Some(format!("bytes {a}-{b}/{}", d.len()).as_str())
        );
        assert!(body == d[a..=b]);
    }
    let (status, h, body) = grid.get(&format!("/uri/{cap}"), Some("bytes=-1000")).await;
    assert_eq!(status, 206);
    assert!(body == d[d.len() - 1000..]);
    assert_eq!(header(&h, "access-control-allow-origin"), Some("*"));
    let (status, h, _) = grid
        .get(&format!("/uri/{cap}"), Some(&format!("bytes={}-", d.len())))
        .await;
    assert_eq!(status, 416);
    assert_eq!(
        header(&h, "content-range"),
        Some(format!("bytes */{}", d.len()).as_str())
    );
    let r = grid
        .http
        .head(format!("{}/uri/{cap}", grid.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        header(r.headers(), "content-length"),
        Some(d.len().to_string().as_str())
    );

    // t=json
    let (_, _, body) = grid.get(&format!("/uri/{cap}?t=json"), None).await;
    let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(j[1]["size"], d.len());
    assert_eq!(j[1]["k"], 3);
    assert_eq!(j[1]["n"], 10);

    // Verified ciphertext through the verifycap, decrypted here, with a proof that verifies.
    let rc: ImmutableReadCap = cap.parse().unwrap();
    let vc = rc.verify_cap();
    let (status, _, ct) = grid
        .get(&format!("/ciphertext/{vc}"), Some("bytes=1048000-2100000"))
        .await;
    assert_eq!(status, 206);
    let mut plain = ct.clone();
    decrypt_at(rc.key(), 1_048_000, &mut plain).unwrap();
    assert!(plain == d[1_048_000..=2_100_000]);
    let (_, _, ueb) = grid.get(&format!("/ciphertext/{vc}?t=ueb"), None).await;
    let ueb = lafs_codec::parse_ueb(&ueb).unwrap();
    assert_eq!(ueb.storage_index(), *vc.storage_index());
    let (status, _, proof) = grid
        .get(&format!("/ciphertext/{vc}?t=proof&segments=1-2"), None)
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&proof));
    let proof: serde_json::Value = serde_json::from_slice(&proof).unwrap();
    let (_, _, segs) = grid
        .get(
            &format!("/ciphertext/{vc}"),
            Some(&format!("bytes={}-{}", 1 << 20, (3 << 20) - 1)),
        )
        .await;
    let mut tree = PartialTree::new(ueb.ciphertext_root, 4).unwrap();
    let nodes: Vec<(NodeIndex, Hash)> = proof["proof"]
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
        .collect();
    tree.add_nodes(&nodes).unwrap();
    for (j, seg) in segs.chunks(1 << 20).enumerate() {
        tree.add_leaf(1 + j, tagged_hash(CIPHERTEXT_SEGMENT_TAG, &[seg]))
            .unwrap();
    }
    assert!(tree.verified_leaf(1).is_some() && tree.verified_leaf(2).is_some());

    // Bad caps are 400 with the caps crate's text.
    let (status, _, body) = grid.get("/uri/lafsr1notacap", None).await;
    assert_eq!(status, 400);
    let expected = "lafsr1notacap".parse::<Cap>().unwrap_err().to_string();
    assert!(String::from_utf8_lossy(&body).contains(&expected));
    // A file that is not on the grid.
    let missing = ImmutableVerifyCap::new(
        lafs_caps::StorageIndex([9; 32]),
        lafs_caps::SelectionIndex([1; 16]),
    );
    let (status, _, _) = grid.get(&format!("/ciphertext/{missing}"), None).await;
    assert_eq!(status, 410);

    // Ciphertext encrypted here, stored through the gateway, read back both ways.
    let key = lafs_codec::random_key().unwrap();
    let plain = data(200_000, 77);
    let mut ct = plain.clone();
    lafs_codec::encrypt_at(&key, 0, &mut ct).unwrap();
    let sel = hex::encode(lafs_caps::selection_index_for(&key).0);
    let (status, vc) = grid
        .put(
            &format!("/ciphertext?selection_index={sel}&segment_size=65536"),
            ct.clone(),
        )
        .await;
    assert_eq!(status, 200, "{vc}");
    let vc: ImmutableVerifyCap = vc.parse().unwrap();
    let (status, _, back) = grid.get(&format!("/ciphertext/{vc}"), None).await;
    assert_eq!(status, 200);
    assert!(back == ct);
    let rc = ImmutableReadCap::new(key, *vc.storage_index());
    let (status, _, back) = grid.get(&format!("/uri/{rc}"), Some("bytes=100000-")).await;
    assert_eq!(status, 206);
    assert!(back == plain[100_000..]);

    // A form upload.
    let (ct_type, body) = common::multipart(&[], &plain);
    let r = grid
        .http
        .post(format!("{}/uri?t=upload", grid.base))
        .header("content-type", ct_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let cap = r.text().await.unwrap();
    let (_, _, back) = grid.get(&format!("/uri/{cap}"), None).await;
    assert!(back == plain);

    grid.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_and_mutable_files_on_a_real_grid() {
    let g = TestGrid::start(5).await;
    let http = &g.http;
    let base = g.base.clone();
    let post = |path: String, body: Vec<u8>| {
        let url = format!("{base}{path}");
        async move {
            let r = http.post(url).body(body).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (st, dir) = post("/uri?t=mkdir".into(), Vec::new()).await;
    assert_eq!(st, 200, "{dir}");
    let data = vec![9u8; 100_000];
    let (st, file) = g.put(&format!("/uri/{dir}/sub/x.bin"), data.clone()).await;
    assert_eq!(st, 404, "no subdirectory yet: {file}");
    let (st, _) = g.put(&format!("/uri/{dir}/sub?t=mkdir"), Vec::new()).await;
    assert_eq!(st, 201);
    let (st, file) = g.put(&format!("/uri/{dir}/sub/x.bin"), data.clone()).await;
    assert_eq!(st, 201, "{file}");
    // The path redirects to the file, which reqwest follows.
    let (st, _, body) = g.get(&format!("/uri/{dir}/sub/x.bin"), None).await;
    assert_eq!((st, body.len()), (200, data.len()));
    let (st, _, j) = g.get(&format!("/uri/{dir}/sub?t=json"), None).await;
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_slice(&j).unwrap();
    assert_eq!(v[1]["children"]["x.bin"][1]["ro_uri"], file.as_str());
    let (st, _) = post(
        format!("/uri/{dir}/sub?t=rename&from_name=x.bin&to_name=y.bin"),
        Vec::new(),
    )
    .await;
    assert_eq!(st, 200);
    let r = http
        .delete(format!("{}/uri/{dir}/sub/y.bin", g.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    // A mutable file, partially rewritten.
    let (st, m) = post("/uri?t=mutable".into(), b"0123456789".to_vec()).await;
    assert_eq!(st, 200, "{m}");
    let (st, _) = g.put(&format!("/uri/{m}?offset=8"), b"AB!".to_vec()).await;
    assert_eq!(st, 200);
    let (_, _, body) = g.get(&format!("/uri/{m}"), None).await;
    assert_eq!(body, b"01234567AB!");
    g.shutdown().await;
}
