//! Chunked ciphertext uploads (`/ciphertext/uploads`): order, resumption, errors, expiry, limits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use common::{call, data, delete, encrypt, get, put, router_on, sel_hex, Resp};
use futures_util::StreamExt;
use lafs_caps::{Cap, ImmutableReadCap, ImmutableVerifyCap, ReadKey};
use lafs_gateway::{
    BoxFuture, ByteStream, Config, Grid, GridError, GridFile, MemoryGrid, ShareView, UploadSpec,
    Uploaded,
};

fn setup(config: Config) -> (Router, MemoryGrid) {
    common::memory_app(config)
}

/// `POST {uri}` without a body.
async fn post(app: &Router, uri: &str) -> Resp {
    common::request(app, Method::POST, uri, &[], Body::empty()).await
}

/// Opens a session for `size` bytes; returns its id.
async fn open(app: &Router, key: &ReadKey, size: usize, extra: &str) -> String {
    let r = post(
        app,
        &format!(
            "/ciphertext/uploads?selection_index={}&size={size}{extra}",
            sel_hex(key)
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let j = r.json();
    assert_eq!(j["received"], 0);
    assert_eq!(j["size"], size as u64);
    let id = j["id"].as_str().unwrap().to_owned();
    assert_eq!(
        r.header("location"),
        Some(format!("/ciphertext/uploads/{id}").as_str())
    );
    id
}

async fn chunk(app: &Router, id: &str, offset: usize, bytes: &[u8]) -> Resp {
    put(
        app,
        &format!("/ciphertext/uploads/{id}?offset={offset}"),
        bytes.to_vec(),
    )
    .await
}

/// Asks the session `id` to finish.
async fn finish(app: &Router, id: &str) -> Resp {
    post(app, &format!("/ciphertext/uploads/{id}/finish")).await
}

/// The state of the session `id`.
async fn session(app: &Router, id: &str) -> Resp {
    get(app, &format!("/ciphertext/uploads/{id}"), &[]).await
}

/// A chunk at `offset` whose body arrives as the stream of `frames`.
fn streamed_chunk(
    id: &str,
    offset: usize,
    frames: Vec<Result<Bytes, std::io::Error>>,
) -> Request<Body> {
    Request::builder()
        .method(Method::PUT)
        .uri(format!("/ciphertext/uploads/{id}?offset={offset}"))
        .body(Body::from_stream(futures_util::stream::iter(frames)))
        .unwrap()
}

/// Reads the file back through the gateway's plaintext endpoint with the client's readcap.
async fn read_back(app: &Router, key: &ReadKey, verifycap: &str) -> Vec<u8> {
    let vc: ImmutableVerifyCap = match verifycap.parse::<Cap>().unwrap() {
        Cap::ImmutableVerify(v) => v,
        other => panic!("not a verifycap: {other}"),
    };
    let rc = ImmutableReadCap::new(key.clone(), *vc.storage_index());
    let r = get(app, &format!("/uri/{}", Cap::ImmutableRead(rc)), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.body
}

/// Sends the rest of `ct` from `offset` in one chunk, finishes, and checks that the file reads
/// back as `plain`.
async fn complete(app: &Router, id: &str, key: &ReadKey, ct: &[u8], offset: usize, plain: &[u8]) {
    assert_eq!(
        chunk(app, id, offset, &ct[offset..]).await.status,
        StatusCode::OK
    );
    let r = finish(app, id).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(read_back(app, key, &r.text()).await == plain);
}

#[tokio::test]
async fn chunks_in_order_make_the_same_file_as_one_put() {
    let (app, _) = setup(Config::default());
    let plain = data((3 << 20) + 12345, 1);
    let (key, ct) = encrypt(&plain);
    let id = open(&app, &key, ct.len(), "").await;
    let sizes = [1 << 20, 7, (1 << 20) + 3, 100_000];
    let mut off = 0;
    for (i, n) in sizes.iter().cycle().enumerate() {
        if off == ct.len() {
            break;
        }
        let end = (off + n).min(ct.len());
        let r = chunk(&app, &id, off, &ct[off..end]).await;
        assert_eq!(r.status, StatusCode::OK, "chunk {i}: {}", r.text());
        assert_eq!(r.json()["received"], end as u64);
        assert_eq!(r.header("upload-offset"), Some(end.to_string().as_str()));
        off = end;
    }
    let r = session(&app, &id).await;
    assert_eq!(r.json()["received"], ct.len() as u64);
    let r = finish(&app, &id).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let vc = r.text();
    // The same ciphertext in one PUT gives the same verifycap (convergent on the ciphertext).
    let one = put(
        &app,
        &format!("/ciphertext?selection_index={}", sel_hex(&key)),
        ct.clone(),
    )
    .await;
    assert_eq!(one.text(), vc);
    assert!(read_back(&app, &key, &vc).await == plain);
    // Finishing again answers the same verifycap.
    let again = finish(&app, &id).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.text(), vc);
}

#[tokio::test]
async fn out_of_order_duplicate_and_overlapping_chunks_are_refused_with_the_offset() {
    let (app, _) = setup(Config::default());
    let plain = data(300_000, 2);
    let (key, ct) = encrypt(&plain);
    let id = open(&app, &key, ct.len(), "&segment_size=65536").await;
    assert_eq!(
        chunk(&app, &id, 0, &ct[..100_000]).await.status,
        StatusCode::OK
    );
    // A gap.
    let r = chunk(&app, &id, 200_000, &ct[200_000..]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.header("upload-offset"), Some("100000"));
    assert!(
        r.text()
            .contains("must start at offset 100000, not 200000 (a gap)"),
        "{}",
        r.text()
    );
    // The same chunk again.
    let r = chunk(&app, &id, 0, &ct[..100_000]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.text().contains("already received"), "{}", r.text());
    // Overlapping the received bytes.
    let r = chunk(&app, &id, 50_000, &ct[50_000..150_000]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.header("upload-offset"), Some("100000"));
    // Past the announced size: refused before a byte is taken.
    let mut long = ct[100_000..].to_vec();
    long.push(0);
    let r = chunk(&app, &id, 100_000, &long).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.text().contains("past the end"), "{}", r.text());
    assert_eq!(r.header("upload-offset"), Some("100000"));
    // No offset at all.
    let r = put(&app, &format!("/ciphertext/uploads/{id}"), vec![1]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // The refusals changed nothing: the rest completes the file.
    complete(&app, &id, &key, &ct, 100_000, &plain).await;
}

#[tokio::test]
async fn a_truncated_session_cannot_finish_and_resumes_where_it_stopped() {
    let (app, _) = setup(Config::default());
    let plain = data(200_000, 3);
    let (key, ct) = encrypt(&plain);
    let id = open(&app, &key, ct.len(), "").await;
    assert_eq!(
        chunk(&app, &id, 0, &ct[..150_000]).await.status,
        StatusCode::OK
    );
    let r = finish(&app, &id).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.header("upload-offset"), Some("150000"));
    assert!(
        r.text()
            .contains("incomplete: 150000 of 200000 bytes received"),
        "{}",
        r.text()
    );
    // A chunk cut by the network: the frames that arrived count, the client resumes after them.
    let frames: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::copy_from_slice(&ct[150_000..160_000])),
        Err(std::io::Error::other("connection reset")),
    ];
    let req = streamed_chunk(&id, 150000, frames);
    let r = call(&app, req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.header("upload-offset"), Some("160000"));
    let s = session(&app, &id).await;
    assert_eq!(s.json()["received"], 160_000);
    assert_eq!(s.json()["state"], "receiving");
    complete(&app, &id, &key, &ct, 160_000, &plain).await;
}

#[tokio::test]
async fn bad_requests_to_open_a_session() {
    let (app, _) = setup(Config {
        max_upload_size: Some(1000),
        ..Config::default()
    });
    let key = ReadKey::from_bytes([7; 16]);
    let sel = sel_hex(&key);
    let r = post(&app, "/ciphertext/uploads?size=10").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("selection_index"), "{}", r.text());
    let r = post(&app, &format!("/ciphertext/uploads?selection_index={sel}")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("size="), "{}", r.text());
    let r = post(
        &app,
        &format!("/ciphertext/uploads?selection_index={sel}&size=-1"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = post(
        &app,
        &format!("/ciphertext/uploads?selection_index={sel}&size=1001"),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.text().contains("at most 1000 bytes"), "{}", r.text());
    let r = post(
        &app,
        &format!("/ciphertext/uploads?selection_index={sel}&size=10&k=0"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = chunk(&app, "0123", 0, b"x").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.text().contains("no upload session"), "{}", r.text());
    let r = post(&app, "/ciphertext/uploads/0123/finish").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn concurrent_sessions_are_limited_and_finished_or_deleted_ones_free_a_place() {
    let (app, _) = setup(Config {
        max_upload_sessions: 2,
        ..Config::default()
    });
    let (key, ct) = encrypt(&data(1000, 4));
    let a = open(&app, &key, ct.len(), "").await;
    let b = open(&app, &key, ct.len(), "").await;
    let r = post(
        &app,
        &format!(
            "/ciphertext/uploads?selection_index={}&size=5",
            sel_hex(&key)
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.text().contains("too many uploads"), "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("10"));
    // Finishing one frees its place.
    assert_eq!(chunk(&app, &a, 0, &ct).await.status, StatusCode::OK);
    assert_eq!(finish(&app, &a).await.status, StatusCode::OK);
    let c = open(&app, &key, ct.len(), "").await;
    // Deleting one frees its place; the deleted session is gone.
    assert_eq!(
        delete(&app, &format!("/ciphertext/uploads/{b}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(chunk(&app, &b, 0, &ct).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        delete(&app, &format!("/ciphertext/uploads/{b}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let _d = open(&app, &key, ct.len(), "").await;
    let _ = c;
}

#[tokio::test(start_paused = true)]
async fn an_idle_session_expires_and_an_active_one_does_not() {
    let (app, _) = setup(Config {
        upload_session_idle: Duration::from_secs(60),
        ..Config::default()
    });
    let (key, ct) = encrypt(&data(3000, 5));
    let idle = open(&app, &key, ct.len(), "").await;
    let busy = open(&app, &key, ct.len(), "").await;
    for i in 0..3 {
        tokio::time::sleep(Duration::from_secs(40)).await;
        // `busy` gets a chunk every 40 s; `idle` nothing.
        let r = chunk(&app, &busy, i * 1000, &ct[i * 1000..(i + 1) * 1000]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let r = session(&app, &idle).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = chunk(&app, &idle, 0, &ct[..1000]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.text().contains("expired"), "{}", r.text());
    let r = finish(&app, &busy).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // A finished session is kept for a repeated finish, then expires too.
    tokio::time::sleep(Duration::from_secs(61)).await;
    let r = session(&app, &busy).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// A grid whose uploads count what they took from the body, optionally wait at a gate after
/// the first item, and optionally fail once they have taken `fail_after` bytes.
#[derive(Clone)]
struct Probe {
    inner: MemoryGrid,
    taken: Arc<AtomicU64>,
    gate: Arc<tokio::sync::Semaphore>,
    fail_after: Option<u64>,
}

impl Grid for Probe {
    fn open(&self, cap: Cap) -> BoxFuture<'static, Result<Box<dyn GridFile>, GridError>> {
        self.inner.open(cap)
    }

    fn inspect(
        &self,
        cap: ImmutableVerifyCap,
    ) -> BoxFuture<'static, Result<Arc<dyn ShareView>, GridError>> {
        self.inner.inspect(cap)
    }

    fn upload(
        &self,
        spec: UploadSpec,
        mut body: ByteStream,
    ) -> BoxFuture<'static, Result<Uploaded, GridError>> {
        let taken = Arc::clone(&self.taken);
        let gate = Arc::clone(&self.gate);
        let fail_after = self.fail_after;
        let inner = self.inner.clone();
        Box::pin(async move {
            let mut all = Vec::new();
            let mut first = true;
            while let Some(item) = body.next().await {
                let item = item?;
                taken.fetch_add(item.len() as u64, Ordering::SeqCst);
                all.extend_from_slice(&item);
                if fail_after.is_some_and(|n| all.len() as u64 >= n) {
                    return Err(GridError::Upload(
                        "only 2 storage servers accepted shares, 7 are needed".into(),
                    ));
                }
                if first {
                    first = false;
                    let _ = gate.acquire().await.unwrap();
                }
            }
            let one: ByteStream = Box::pin(futures_util::stream::iter([Ok(Bytes::from(all))]));
            inner.upload(spec, one).await
        })
    }
}

fn probe(fail_after: Option<u64>, open_gate: bool) -> (Router, Probe) {
    let p = Probe {
        inner: MemoryGrid::new(),
        taken: Arc::default(),
        gate: Arc::new(tokio::sync::Semaphore::new(usize::from(open_gate))),
        fail_after,
    };
    (router_on(Config::default(), p.clone()), p)
}

#[tokio::test]
async fn a_chunk_waits_for_the_uploader_the_gateway_does_not_buffer_it() {
    let (app, p) = probe(None, false);
    let (key, ct) = encrypt(&data(200 * 1024, 6));
    let id = open(&app, &key, ct.len(), "").await;
    // 200 frames of 1 KiB while the uploader is stuck after its first item.
    let frames: Vec<Result<Bytes, std::io::Error>> = ct
        .chunks(1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let req = streamed_chunk(&id, 0, frames);
    let app2 = app.clone();
    let sending = tokio::spawn(async move { call(&app2, req).await });
    for _ in 0..50 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let s = session(&app, &id).await;
    assert_eq!(s.json()["state"], "busy");
    let received = s.json()["received"].as_u64().unwrap();
    // Taken: one frame; queued: at most a few more.
    assert!(
        received <= 6 * 1024,
        "received {received} bytes with a stuck uploader"
    );
    assert!(p.taken.load(Ordering::SeqCst) <= 1024);
    // Another chunk meanwhile is refused, and so is finishing.
    let r = chunk(&app, &id, received as usize, b"x").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.text().contains("one chunk at a time"), "{}", r.text());
    let r = finish(&app, &id).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    p.gate.add_permits(1);
    let r = sending.await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = finish(&app, &id).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(p.taken.load(Ordering::SeqCst), ct.len() as u64);
}

#[tokio::test]
async fn a_failing_grid_answers_its_error_to_the_chunk_and_to_finish() {
    let (app, _) = probe(Some(100_000), true);
    let (key, ct) = encrypt(&data(300_000, 7));
    let id = open(&app, &key, ct.len(), "").await;
    let mut statuses = Vec::new();
    for off in (0..ct.len()).step_by(50_000) {
        let r = chunk(&app, &id, off, &ct[off..off + 50_000]).await;
        statuses.push(r.status);
        if r.status != StatusCode::OK {
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(
                r.text().contains("only 2 storage servers accepted"),
                "{}",
                r.text()
            );
            break;
        }
    }
    assert!(
        statuses.contains(&StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    let r = finish(&app, &id).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        r.text().contains("only 2 storage servers accepted"),
        "{}",
        r.text()
    );
    let s = session(&app, &id).await;
    assert_eq!(s.json()["state"], "failed");
}

#[tokio::test]
async fn an_empty_file() {
    let (app, _) = setup(Config::default());
    let key = ReadKey::from_bytes([9; 16]);
    let id = open(&app, &key, 0, "").await;
    let r = finish(&app, &id).await;
    let one = put(
        &app,
        &format!("/ciphertext?selection_index={}", sel_hex(&key)),
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, one.status, "{} / {}", r.text(), one.text());
    assert_eq!(r.text(), one.text());
}
