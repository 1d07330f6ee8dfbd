//! Share data bound by length only (`docs/spec/signed-requests.md`), the combined whole-share
//! request, and one fsync per share:
//!
//! * a write whose body is altered in flight is accepted (its length is signed, not its bytes)
//!   but the share then fails verification at finish and is never filed; a body of another
//!   length is refused; a replayed write is refused;
//! * `PUT /storage/v1/immutable/{si}/{share}` files a verified share in one request, reports
//!   shares already held, refuses tampered or foreign shares, and a crash while filing leaves
//!   nothing visible;
//! * `FsStore` fsyncs a share once, at finish, however many writes it took; an unfinished
//!   upload whose incoming bytes went stale (power failure without per-write fsync) is never
//!   filed; a share flushed behind its writes (`FsOptions::flush_behind`) is filed whole.

// Test helpers panic on failed set-up steps on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::*;
use lafs_proto::storage::{ErrorCode, PutShareResponse, UploadStatus};
use lafs_storage::{AppState, Config, FaultPlan, FaultyStore, FsOptions, FsStore, ShareStore};

#[tokio::test]
async fn tampered_write_is_never_filed_and_replays_are_refused() {
    let Fixture {
        srv, c, shares, si, ..
    } = fixture(20_000, 20).await;
    let share = &shares[1];
    let len = share.len() as u64;
    let up = upload_id(20);
    c.allocate_share(&up, 1, len).await.expect(201);
    let path = format!("/storage/v1/upload/{up}/1?offset=0");

    // Signed for the real bytes, one byte changed in flight: same length, so accepted...
    let h = c.sign("PUT", &path, share, now_unix());
    let mut tampered = share.clone();
    tampered[len as usize / 2] ^= 0x40;
    c.raw("PUT", &path, tampered, &h).await.expect(200);
    // ... but the share does not verify at finish and is not filed.
    let e = c.finish(&up, 1, len).await.expect(422).error();
    assert_eq!(e.error, ErrorCode::ShareInvalid);
    assert!(c.listed(&si).await.is_empty());
    assert_eq!(
        srv.state.metrics().shares_invalid.load(Ordering::Relaxed),
        1
    );

    // A body of another length than signed is refused outright.
    let h = c.sign("PUT", &path, share, now_unix());
    c.raw("PUT", &path, share[..share.len() - 1].to_vec(), &h)
        .await
        .expect(401);

    // The genuine write, then the same request replayed: refused.
    let h = c.sign("PUT", &path, share, now_unix());
    c.raw("PUT", &path, share.clone(), &h).await.expect(200);
    let e = c
        .raw("PUT", &path, share.clone(), &h)
        .await
        .expect(401)
        .error();
    assert!(e.message.contains("replay"), "{}", e.message);
    // The replay changed nothing: the share finishes and is exact.
    c.finish(&up, 1, len).await.expect(200);
    assert_eq!(c.listed(&si).await, vec![1]);
    srv.stop().await;
}

#[tokio::test]
async fn whole_share_put_is_one_request() {
    let Fixture {
        srv,
        c,
        shares,
        enc,
        si,
    } = fixture(9_000, 21).await;
    let m = srv.state.metrics();
    let before = m.requests.load(Ordering::Relaxed);
    let r: PutShareResponse = c.put_share(&si, 3, &shares[3]).await.expect(201).json();
    assert_eq!(m.requests.load(Ordering::Relaxed) - before, 1);
    assert!(!r.already_had);
    assert_eq!(r.length, shares[3].len() as u64);
    assert_eq!(r.storage_index, enc.storage_index);
    assert_eq!(
        r.held.iter().map(|s| s.share.0).collect::<Vec<_>>(),
        vec![3]
    );
    assert_eq!(m.shares_finished.load(Ordering::Relaxed), 1);

    // Another share; then a repeat reports what is already held without storing anything.
    c.put_share(&si, 5, &shares[5]).await.expect(201);
    let r: PutShareResponse = c.put_share(&si, 3, &shares[3]).await.expect(200).json();
    assert!(r.already_had);
    assert_eq!(
        r.held.iter().map(|s| s.share.0).collect::<Vec<_>>(),
        vec![3, 5]
    );
    assert_eq!(m.shares_finished.load(Ordering::Relaxed), 2);

    // Tampered bytes, the wrong share number, a share of another file: 422, nothing filed.
    let mut bad = shares[7].clone();
    bad[100] ^= 1;
    let e = c.put_share(&si, 7, &bad).await.expect(422).error();
    assert_eq!(e.error, ErrorCode::ShareInvalid);
    c.put_share(&si, 8, &shares[7]).await.expect(422);
    let (other, _) = make_shares(9_000, 22);
    c.put_share(&si, 7, &other[7]).await.expect(422);
    assert_eq!(c.listed(&si).await, vec![3, 5]);
    assert_eq!(m.shares_invalid.load(Ordering::Relaxed), 3);

    // Signed like any write: unsigned 401, replay 401, tampered in flight 422.
    let path = format!("/storage/v1/immutable/{si}/7");
    c.raw("PUT", &path, shares[7].clone(), &[])
        .await
        .expect(401);
    let h = c.sign("PUT", &path, &shares[7], now_unix());
    c.raw("PUT", &path, bad.clone(), &h).await.expect(422);
    let h = c.sign("PUT", &path, &shares[7], now_unix());
    c.raw("PUT", &path, shares[7].clone(), &h).await.expect(201);
    c.raw("PUT", &path, shares[7].clone(), &h).await.expect(401);
    c.signed("PUT", &format!("{path}?x=1"), shares[7].clone())
        .await
        .expect(400);
    assert_eq!(c.listed(&si).await, vec![3, 5, 7]);
    srv.stop().await;

    // Read-only servers refuse it.
    let srv = TestServer::memory(Config {
        read_only: true,
        ..Config::default()
    })
    .await;
    let e = srv
        .client(21)
        .put_share(&si, 3, &shares[3])
        .await
        .expect(403)
        .error();
    assert_eq!(e.error, ErrorCode::ReadOnly);
    srv.stop().await;
}

#[tokio::test]
async fn fs_store_fsyncs_each_share_once() {
    let (shares, enc) = make_shares(60_000, 23);
    let si = si_text(&enc);
    for sync_each_write in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            FsStore::open(
                dir.path(),
                FsOptions {
                    sync_each_write,
                    ..FsOptions::default()
                },
            )
            .unwrap(),
        );
        let srv = TestServer::start(AppState::new(Config::default(), store.clone()).unwrap()).await;
        let c = srv.client(23);
        let up = upload_id(23);
        let len = shares[0].len() as u64;
        c.allocate_share(&up, 0, len).await.expect(201);
        let chunks = shares[0].chunks(4096).count() as u64;
        assert!(chunks >= 5);
        for (i, d) in shares[0].chunks(4096).enumerate() {
            c.write(&up, 0, i as u64 * 4096, d).await.expect(200);
        }
        c.finish(&up, 0, len).await.expect(200);
        let per_write = if sync_each_write { chunks } else { 0 };
        assert_eq!(store.share_file_syncs(), per_write + 1);
        c.put_share(&si, 1, &shares[1]).await.expect(201);
        assert_eq!(store.share_file_syncs(), per_write + 2);
        assert_eq!(c.listed(&si).await, vec![0, 1]);
        srv.stop().await;
    }
}

#[tokio::test]
async fn a_share_flushed_behind_its_writes_is_filed_whole() {
    let (shares, enc) = make_shares(60_000, 24);
    let dir = tempfile::tempdir().unwrap();
    // Flush-behind every 8 KiB: several background flushes run during the writes below.
    let options = FsOptions {
        flush_behind: 8192,
        ..FsOptions::default()
    };
    let store = Arc::new(FsStore::open(dir.path(), options).unwrap());
    let srv = TestServer::start(AppState::new(Config::default(), store.clone()).unwrap()).await;
    let c = srv.client(24);
    let up = upload_id(24);
    let share = &shares[0];
    let len = share.len() as u64;
    assert!(len > 16_384, "{len}");
    c.allocate_share(&up, 0, len).await.expect(201);
    for (i, d) in share.chunks(4096).enumerate() {
        c.write(&up, 0, i as u64 * 4096, d).await.expect(200);
    }
    c.finish(&up, 0, len).await.expect(200);
    assert!(store.background_flushes() >= 1);
    // The commit's fsync is still the only one counted per share.
    assert_eq!(store.share_file_syncs(), 1);
    assert_eq!(c.listed(&si_text(&enc)).await, vec![0]);
    let stored = store
        .read_share(&enc.storage_index, lafs_proto::ShareNum(0), 0, len)
        .unwrap();
    assert!(
        stored == *share,
        "the filed share differs from the written one"
    );
    srv.stop().await;
}

#[tokio::test]
async fn stale_incoming_bytes_after_power_loss_are_never_filed() {
    let dir = tempfile::tempdir().unwrap();
    let (shares, enc) = make_shares(30_000, 24);
    let si = si_text(&enc);
    let share = &shares[4];
    let len = share.len() as u64;
    let up = upload_id(24);
    let open = || Arc::new(FsStore::open(dir.path(), FsOptions::default()).unwrap());
    let srv = TestServer::start(AppState::new(Config::default(), open()).unwrap()).await;
    let c = srv.client(24);
    c.allocate_share(&up, 4, len).await.expect(201);
    c.write(&up, 4, 0, share).await.expect(200);
    srv.kill();
    // Power failure: the range was recorded but its bytes never reached the disk.
    let data = dir.path().join("incoming").join(&up).join("4.data");
    std::fs::write(&data, vec![0u8; share.len()]).unwrap();

    let srv = TestServer::start(AppState::new(Config::default(), open()).unwrap()).await;
    let c = srv.client(24);
    // The server still lists the range as received...
    let st: UploadStatus = c.status(&up).await.expect(200).json();
    assert_eq!(st.shares[0].missing.clone().unwrap(), vec![]);
    // ... but the stale share fails verification and is not filed.
    let e = c.finish(&up, 4, len).await.expect(422).error();
    assert_eq!(e.error, ErrorCode::ShareInvalid);
    assert!(c.listed(&si).await.is_empty());
    // Re-sending the share (the client's fail-over, or a resume) completes it.
    c.write(&up, 4, 0, share).await.expect(200);
    c.finish(&up, 4, len).await.expect(200);
    assert_eq!(c.listed(&si).await, vec![4]);
    srv.stop().await;
}

#[tokio::test]
async fn crash_while_filing_a_whole_share_leaves_nothing() {
    let (shares, enc) = make_shares(9_000, 26);
    let si = si_text(&enc);
    for crash_at in 0..2u64 {
        let dir = tempfile::tempdir().unwrap();
        let faulty = Arc::new(FaultyStore::new(
            FsStore::open(dir.path(), FsOptions::default()).unwrap(),
            FaultPlan {
                crash_at_op: Some(crash_at),
                torn_write: true,
            },
        ));
        let srv =
            TestServer::start(AppState::new(Config::default(), faulty.clone()).unwrap()).await;
        let c = srv.client(26);
        // Op 0 is share 2's filing, op 1 share 6's.
        let r2 = c.put_share(&si, 2, &shares[2]).await;
        let r6 = c.put_share(&si, 6, &shares[6]).await;
        assert_eq!(r2.status, if crash_at == 0 { 500 } else { 201 });
        assert_eq!(r6.status, 500);
        srv.kill();
        drop(faulty);
        // A leftover temp file (crash between write and rename) is swept at open.
        std::fs::write(dir.path().join("incoming").join(".put-1.tmp"), b"junk").unwrap();
        let store = Arc::new(FsStore::open(dir.path(), FsOptions::default()).unwrap());
        assert_eq!(
            std::fs::read_dir(dir.path().join("incoming"))
                .unwrap()
                .count(),
            0
        );
        let srv = TestServer::start(AppState::new(Config::default(), store).unwrap()).await;
        let c = srv.client(26);
        let want: Vec<u8> = if crash_at == 0 { vec![] } else { vec![2] };
        assert_eq!(c.listed(&si).await, want);
        c.put_share(&si, 6, &shares[6]).await.expect(201);
        srv.stop().await;
    }
}
