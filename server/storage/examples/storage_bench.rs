//! Storage server throughput over loopback, next to plain copies of the same bytes.
//!
//! ```text
//! cargo run --release -p lafs-storage --example storage_bench [-- <MiB>]
//! ```
//!
//! Encodes one real share of `<MiB>` (default 256) with the codec (1-of-1, 1 MiB segments), then
//! measures in the same run:
//! * memcpy of the share in 1 MiB pieces, and writing it to a file (with and without an fdatasync
//!   per MiB) — the floor the server cannot beat;
//! * PUT of 1 MiB requests (signed) into an `FsStore`, with `sync_each_write` on and off, with 1
//!   and 4 requests in flight; the finish (whole-share verification + commit);
//! * reads of 1 MiB ranges (`POST .../read`), 1 and 4 in flight.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use lafs_caps::ReadKey;
use lafs_codec::{encode_to_shares, Params};
use lafs_proto::signing::{sign_request, RequestParts};
use lafs_proto::{Nonce, UploadId};
use lafs_storage::{serve, AppState, Config, FsOptions, FsStore};

const MIB: usize = 1 << 20;

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

struct Signer {
    key: SigningKey,
    server_id: String,
    counter: std::sync::atomic::AtomicU64,
}

impl Signer {
    fn headers(&self, method: &str, path_q: &str, body: &[u8]) -> Vec<(&'static str, String)> {
        let (path, query) = path_q.split_once('?').unwrap_or((path_q, ""));
        let mut n = [7u8; 16];
        let c = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        n[8..].copy_from_slice(&c.to_be_bytes());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let req = RequestParts::for_body(method, path, query, body);
        sign_request(&self.key, &self.server_id, &req, now, Nonce(n))
            .header_values()
            .to_vec()
    }
}

async fn send(
    http: &reqwest::Client,
    base: &str,
    signer: Option<&Signer>,
    method: &str,
    path_q: &str,
    body: Vec<u8>,
) -> Vec<u8> {
    let mut rb = http.request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        format!("{base}{path_q}"),
    );
    if let Some(s) = signer {
        for (k, v) in s.headers(method, path_q, &body) {
            rb = rb.header(k, v);
        }
    }
    let r = rb.body(body).send().await.unwrap();
    let status = r.status();
    let bytes = r.bytes().await.unwrap().to_vec();
    assert!(
        status.is_success(),
        "{method} {path_q}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    bytes
}

/// Runs `jobs` (index → future) with `parallel` in flight.
async fn run_parallel<F, Fut>(count: usize, parallel: usize, f: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for i in 0..count {
        if set.len() >= parallel {
            set.join_next().await.unwrap().unwrap();
        }
        set.spawn(f(i));
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}

async fn upload(
    base: &str,
    signer: &Arc<Signer>,
    share: &Arc<Vec<u8>>,
    upload: UploadId,
    parallel: usize,
) -> (Duration, Duration) {
    let http = reqwest::Client::new();
    let up = upload.to_text();
    let body = format!("{{\"shares\":[0],\"share_size\":{}}}", share.len()).into_bytes();
    send(
        &http,
        base,
        Some(signer),
        "POST",
        &format!("/storage/v1/upload/{up}"),
        body,
    )
    .await;
    let chunks = share.len().div_ceil(MIB);
    let t = Instant::now();
    run_parallel(chunks, parallel, |i| {
        let (http, base, signer, share, up) = (
            http.clone(),
            base.to_owned(),
            signer.clone(),
            share.clone(),
            up.clone(),
        );
        async move {
            let end = ((i + 1) * MIB).min(share.len());
            let path = format!("/storage/v1/upload/{up}/0?offset={}", i * MIB);
            send(
                &http,
                &base,
                Some(&signer),
                "PUT",
                &path,
                share[i * MIB..end].to_vec(),
            )
            .await;
        }
    })
    .await;
    let write = t.elapsed();
    let t = Instant::now();
    let body = format!("{{\"length\":{}}}", share.len()).into_bytes();
    send(
        &http,
        base,
        Some(signer),
        "POST",
        &format!("/storage/v1/upload/{up}/0/finish"),
        body,
    )
    .await;
    (write, t.elapsed())
}

#[tokio::main]
async fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().unwrap())
        .unwrap_or(256);
    println!("encoding a {mib} MiB file into one share (1-of-1, 1 MiB segments)...");
    let plain: Vec<u8> = (0..mib * MIB)
        .map(|i| (i as u32).wrapping_mul(2654435761) as u8)
        .collect();
    let (mut shares, enc) = encode_to_shares(
        Params::new(1, 1, MIB as u32).unwrap(),
        ReadKey::from_bytes([3; 16]),
        &plain,
    )
    .unwrap();
    drop(plain);
    let share = Arc::new(shares.swap_remove(0));
    let si = lafs_proto::ids::storage_index_to_text(&enc.storage_index);
    let total = share.len();
    println!("share: {total} bytes\n");

    // --- Baselines.
    let mut dst = vec![0u8; MIB];
    let t = Instant::now();
    for c in share.chunks(MIB) {
        dst[..c.len()].copy_from_slice(c);
        std::hint::black_box(&dst);
    }
    let memcpy = t.elapsed();
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let file_write = |sync_each: bool| {
        let path = dir.path().join(format!("plain-{sync_each}"));
        let f = std::fs::File::create(&path).unwrap();
        let t = Instant::now();
        for (i, c) in share.chunks(MIB).enumerate() {
            f.write_all_at(c, (i * MIB) as u64).unwrap();
            if sync_each {
                f.sync_data().unwrap();
            }
        }
        f.sync_all().unwrap();
        let d = t.elapsed();
        std::fs::remove_file(&path).unwrap();
        d
    };
    let file_nosync = file_write(false);
    let file_sync = file_write(true);

    let mut rows: Vec<(String, Duration)> = vec![
        ("memcpy, 1 MiB pieces".into(), memcpy),
        (
            "file write, 1 MiB pwrite, one fsync at end".into(),
            file_nosync,
        ),
        (
            "file write, 1 MiB pwrite + fdatasync each".into(),
            file_sync,
        ),
    ];

    // --- Server.
    for durable in [true, false] {
        let store_dir = tempfile::tempdir_in(dir.path()).unwrap();
        let store = FsStore::open(
            store_dir.path(),
            FsOptions {
                sync_each_write: durable,
                ..FsOptions::default()
            },
        )
        .unwrap();
        let cfg = Config {
            max_read_bytes: 64 << 20,
            ..Config::default()
        };
        let state = AppState::new(cfg, Arc::new(store)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let signer = Arc::new(Signer {
            key: SigningKey::from_bytes(&[9; 32]),
            server_id: state.server_id().to_owned(),
            counter: Default::default(),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, state, async move {
            let _ = rx.await;
        }));
        for parallel in [1usize, 4] {
            let id = UploadId([durable as u8 * 16 + parallel as u8; 16]);
            let (w, f) = upload(&base, &signer, &share, id, parallel).await;
            rows.push((
                format!("server PUT 1 MiB, sync_each_write={durable}, {parallel} in flight"),
                w,
            ));
            if parallel == 1 {
                rows.push((
                    format!("server finish (verify {mib} MiB + commit), durable={durable}"),
                    f,
                ));
            }
        }
        if durable {
            let http = reqwest::Client::new();
            let chunks = total.div_ceil(MIB);
            for parallel in [1usize, 4] {
                let t = Instant::now();
                run_parallel(chunks, parallel, |i| {
                    let (http, base, si) = (http.clone(), base.clone(), si.clone());
                    async move {
                        let body = format!(
                            "{{\"reads\":[{{\"share\":0,\"ranges\":[{{\"offset\":{},\"length\":{MIB}}}]}}]}}",
                            i * MIB
                        );
                        let r = send(&http, &base, None, "POST", &format!("/storage/v1/immutable/{si}/read"), body.into_bytes()).await;
                        assert!(r.len() > 36);
                    }
                })
                .await;
                rows.push((
                    format!("server read 1 MiB ranges (POST read), {parallel} in flight"),
                    t.elapsed(),
                ));
            }
        }
        let _ = tx.send(());
        server.await.unwrap().unwrap();
    }

    println!("{:<62} {:>10} {:>9}", "operation", "MB/s", "vs memcpy");
    let base = mbps(total, memcpy);
    let mut out = std::io::stdout();
    for (name, d) in rows {
        let r = mbps(total, d);
        writeln!(out, "{name:<62} {r:>10.0} {:>8.3}x", r / base).unwrap();
    }
}
