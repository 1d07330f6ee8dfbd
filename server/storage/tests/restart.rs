//! Crash and restart on the same data directory.
//!
//! * a server task dropped mid-upload, restarted on the same directory: the upload resumes;
//! * a simulated crash at every mutating store operation of an upload (with torn writes): after
//!   reopening, no partial share is ever listed or served, and the upload can be completed;
//! * a server in a child process killed with SIGKILL while writes are in flight.

// Test helpers panic on failed set-up steps on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::BufRead;
use std::sync::Arc;

use common::*;
use lafs_proto::read::{decode_response, PartContent};
use lafs_proto::storage::{FinishResponse, ShareState, SharesResponse, UploadStatus};
use lafs_storage::{AppState, Config, FaultPlan, FaultyStore, FsOptions, FsStore, ShareStore};
use serde_json::json;

fn open(dir: &std::path::Path) -> Arc<FsStore> {
    Arc::new(FsStore::open(dir, FsOptions::default()).unwrap())
}

async fn read_whole(c: &Client, si: &str, share: u8, len: u64) -> Option<Vec<u8>> {
    let r = c
        .read(
            si,
            json!({"reads": [{"share": share, "ranges": [{"offset": 0, "length": len}]}]}),
        )
        .await;
    r.expect(200);
    match decode_response(&r.body).unwrap()[0].content {
        PartContent::Data { data, .. } => Some(data.to_vec()),
        PartContent::Absent => None,
    }
}

/// Brings an upload of `share` (share number `n`) to completion on a fresh server over `store`,
/// whatever state a crash left it in, and checks the invariants on the way.
async fn complete_after_restart(
    store: Arc<dyn ShareStore>,
    up: &str,
    n: u8,
    share: &[u8],
    si: &str,
) {
    let srv = TestServer::start(AppState::new(Config::default(), store).unwrap()).await;
    let c = srv.client(70);
    let len = share.len() as u64;
    // Invariant: the share is either absent or complete and exact.
    let l: SharesResponse = c
        .get(&format!("/storage/v1/immutable/{si}/shares"))
        .await
        .json();
    if let Some(held) = l.shares.iter().find(|s| s.share.0 == n) {
        assert_eq!(held.length, len, "partial share listed");
        assert_eq!(
            read_whole(&c, si, n, len).await.unwrap(),
            share,
            "wrong bytes served"
        );
    } else {
        assert!(l.shares.is_empty());
        assert_eq!(read_whole(&c, si, n, len).await, None);
    }
    let st = c.status(up).await;
    match st.status {
        200 => {
            let st: UploadStatus = st.json();
            let sh = &st.shares[0];
            if sh.state == ShareState::Receiving {
                for gap in sh.missing.clone().unwrap() {
                    c.write(
                        up,
                        n,
                        gap.start,
                        &share[gap.start as usize..gap.end as usize],
                    )
                    .await
                    .expect(200);
                }
                let f: FinishResponse = c.finish(up, n, len).await.expect(200).json();
                assert_eq!(lafs_proto::ids::storage_index_to_text(&f.storage_index), si);
            }
        }
        404 => {
            if l.shares.is_empty() {
                // The allocation itself was lost (or never acknowledged): start again.
                c.allocate(up, json!({"shares": [n], "share_size": len}))
                    .await
                    .expect(201);
                c.write(up, n, 0, share).await.expect(200);
                c.finish(up, n, len).await.expect(200);
            }
        }
        other => panic!("status {other}"),
    }
    assert_eq!(read_whole(&c, si, n, len).await.unwrap(), share);
    srv.stop().await;
}

#[tokio::test]
async fn dropped_server_resumes_upload_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (shares, enc) = make_shares(40_000, 70);
    let si = si_text(&enc);
    let up = upload_id(70);
    let srv = TestServer::start(AppState::new(Config::default(), open(dir.path())).unwrap()).await;
    let server_id = srv.state.server_id().to_owned();
    let c = srv.client(70);
    let len0 = shares[0].len() as u64;
    c.allocate(&up, json!({"shares": [0, 1], "share_size": len0}))
        .await
        .expect(201);
    c.write(&up, 1, 0, &shares[1]).await.expect(200);
    c.finish(&up, 1, shares[1].len() as u64).await.expect(200);
    c.write(&up, 0, 0, &shares[0][..5000]).await.expect(200);
    c.write(&up, 0, 9000, &shares[0][9000..12000])
        .await
        .expect(200);
    srv.kill();

    let srv = TestServer::start(AppState::new(Config::default(), open(dir.path())).unwrap()).await;
    // The server id survives restarts, so clients' signatures stay valid.
    assert_eq!(srv.state.server_id(), server_id);
    let c = srv.client(70);
    let st: UploadStatus = c.status(&up).await.expect(200).json();
    assert_eq!(st.shares[0].state, ShareState::Receiving);
    assert_eq!(st.shares[1].state, ShareState::Finished);
    let missing: Vec<(u64, u64)> = st.shares[0]
        .missing
        .clone()
        .unwrap()
        .iter()
        .map(|r| (r.start, r.end))
        .collect();
    assert_eq!(missing, vec![(5000, 9000), (12000, len0)]);
    let l: SharesResponse = c
        .get(&format!("/storage/v1/immutable/{si}/shares"))
        .await
        .json();
    assert_eq!(l.shares.len(), 1, "only the finished share is visible");
    for (a, b) in missing {
        c.write(&up, 0, a, &shares[0][a as usize..b as usize])
            .await
            .expect(200);
    }
    let f: FinishResponse = c.finish(&up, 0, len0).await.expect(200).json();
    assert!(f.upload_complete);
    assert_eq!(read_whole(&c, &si, 0, len0).await.unwrap(), shares[0]);
    srv.stop().await;
    // A completed upload leaves nothing behind in incoming/.
    assert_eq!(
        std::fs::read_dir(dir.path().join("incoming"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn crash_at_every_store_operation_never_exposes_partial_shares() {
    let (shares, enc) = make_shares(30_000, 71);
    let si = si_text(&enc);
    let share = &shares[2];
    let len = share.len() as u64;
    let chunk = 4000;
    // Operations of a clean run: 1 allocate + writes + 1 commit + 1 removal.
    let writes = share.len().div_ceil(chunk) as u64;
    let total_ops = 1 + writes + 2;
    for torn in [false, true] {
        for crash_at in 0..=total_ops {
            let dir = tempfile::tempdir().unwrap();
            let plan = FaultPlan {
                crash_at_op: Some(crash_at),
                torn_write: torn,
            };
            let faulty = Arc::new(FaultyStore::new(
                FsStore::open(dir.path(), FsOptions::default()).unwrap(),
                plan,
            ));
            let srv =
                TestServer::start(AppState::new(Config::default(), faulty.clone()).unwrap()).await;
            let c = srv.client(70);
            let up = upload_id(71);
            // Run the upload until the store "dies"; every failure must be a clean error.
            'run: {
                let r = c
                    .allocate(&up, json!({"shares": [2], "share_size": len}))
                    .await;
                if r.status != 201 {
                    assert_eq!(r.status, 500, "crash_at {crash_at}");
                    break 'run;
                }
                for (i, data) in share.chunks(chunk).enumerate() {
                    let r = c.write(&up, 2, (i * chunk) as u64, data).await;
                    if r.status != 200 {
                        assert_eq!(r.status, 500);
                        break 'run;
                    }
                }
                let r = c.finish(&up, 2, len).await;
                assert!(r.status == 200 || r.status == 500, "{}", r.status);
            }
            assert_eq!(
                faulty.crashed(),
                crash_at < total_ops,
                "crash_at {crash_at}"
            );
            srv.kill();
            drop(faulty);
            complete_after_restart(open(dir.path()), &up, 2, share, &si).await;
        }
    }
}

/// Entry point of the child-process server (run by `kill_9_during_upload_then_resume`).
#[test]
#[ignore = "helper: runs only as a child process"]
fn child_server() {
    let Ok(dir) = std::env::var("LAFS_STORAGE_CHILD_DIR") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let state = AppState::new(Config::default(), open(std::path::Path::new(&dir))).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!(
            "LISTENING http://{} {}",
            listener.local_addr().unwrap(),
            state.server_id()
        );
        lafs_storage::serve(listener, state, std::future::pending())
            .await
            .unwrap();
    });
}

struct Child {
    proc: std::process::Child,
    url: String,
    server_id: String,
}

fn spawn_child(dir: &std::path::Path) -> Child {
    let mut proc = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "child_server",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LAFS_STORAGE_CHILD_DIR", dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = proc.stdout.take().unwrap();
    // libtest prints "test child_server ... " before the marker, on the same line.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(i) = line.find("LISTENING ") {
                let rest = &line[i + "LISTENING ".len()..];
                if let Some((url, id)) = rest.split_once(' ') {
                    let _ = tx.send((url.to_owned(), id.to_owned()));
                }
            }
        }
    });
    let (url, server_id) = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("child server did not start");
    Child {
        proc,
        url,
        server_id,
    }
}

#[tokio::test]
async fn kill_9_during_upload_then_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (shares, enc) = make_shares(2_000_000, 72);
    let si = si_text(&enc);
    let share = shares[0].clone();
    let len = share.len() as u64;
    let up = upload_id(72);

    let mut child = tokio::task::spawn_blocking({
        let d = dir.path().to_owned();
        move || spawn_child(&d)
    })
    .await
    .unwrap();
    // One client (one nonce sequence) for every request of the first run.
    let c = Arc::new(Client::new(&child.url, &child.server_id, 72));
    c.allocate(&up, json!({"shares": [0], "share_size": len}))
        .await
        .expect(201);
    // Keep writing from a task while the process is killed.
    let acks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let acks = acks.clone();
        let share = share.clone();
        let up = up.clone();
        let url = child.url.clone();
        let c = c.clone();
        tokio::spawn(async move {
            let mut ok = 0;
            for (i, data) in share.chunks(1000).enumerate() {
                let r = c.http.put(format!(
                    "{url}/storage/v1/upload/{up}/0?offset={}",
                    i * 1000
                ));
                let path = format!("/storage/v1/upload/{up}/0?offset={}", i * 1000);
                let mut rb = r.body(data.to_vec());
                for (k, v) in c.sign("PUT", &path, data, now_unix()) {
                    rb = rb.header(k, v);
                }
                match rb.send().await {
                    Ok(resp) if resp.status() == 200 => {
                        ok += 1;
                        acks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    _ => break,
                }
            }
            ok
        })
    };
    // Let some writes land, then SIGKILL while more are in flight.
    for _ in 0..6000 {
        if acks.load(std::sync::atomic::Ordering::SeqCst) >= 20 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    child.proc.kill().unwrap();
    child.proc.wait().unwrap();
    let acknowledged = writer.await.unwrap();
    assert!(acknowledged >= 20, "writes did not start");
    assert!(
        acknowledged < share.len() / 1000,
        "the kill came after the last write"
    );

    let mut child = tokio::task::spawn_blocking({
        let d = dir.path().to_owned();
        move || spawn_child(&d)
    })
    .await
    .unwrap();
    let c = Client::new(&child.url, &child.server_id, 72);
    let l: SharesResponse = c
        .get(&format!("/storage/v1/immutable/{si}/shares"))
        .await
        .json();
    assert!(l.shares.is_empty(), "nothing finished, nothing visible");
    let st: UploadStatus = c.status(&up).await.expect(200).json();
    let received: u64 = st.shares[0].received.iter().map(|r| r.end - r.start).sum();
    // Every acknowledged write is still there (writes went in order, 1000 bytes each).
    assert!(
        received >= (acknowledged as u64 * 1000).min(len),
        "{received} < {acknowledged} acks"
    );
    for gap in st.shares[0].missing.clone().unwrap() {
        c.write(
            &up,
            0,
            gap.start,
            &share[gap.start as usize..gap.end as usize],
        )
        .await
        .expect(200);
    }
    c.finish(&up, 0, len).await.expect(200);
    assert_eq!(read_whole(&c, &si, 0, len).await.unwrap(), share);
    child.proc.kill().unwrap();
    child.proc.wait().unwrap();
}
