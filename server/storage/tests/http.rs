//! End-to-end tests over HTTP on 127.0.0.1: uploads of real shares, resume, reads, signatures,
//! read-only mode, full disks, CORS and metrics.

// Test helpers panic on failed set-up steps on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::*;
use lafs_proto::read::{decode_response, PartContent};
use lafs_proto::storage::{
    AllocateResponse, ErrorCode, FinishResponse, ShareState, SharesResponse, UploadStatus,
    VersionResponse,
};
use lafs_proto::{AccountId, ShareNum};
use lafs_storage::{AppState, Config, FaultPlan, FaultyStore, MemoryStore, ShareStore};
use serde_json::json;

/// Writes `share` in chunks of `chunk` bytes, in an interleaved order (odd chunks first).
async fn upload_share(c: &Client, up: &str, n: u8, share: &[u8], chunk: usize) {
    let chunks: Vec<(usize, &[u8])> = share.chunks(chunk).enumerate().collect();
    for (i, data) in chunks
        .iter()
        .filter(|(i, _)| i % 2 == 1)
        .chain(chunks.iter().filter(|(i, _)| i % 2 == 0))
    {
        c.write(up, n, (*i * chunk) as u64, data).await.expect(200);
    }
}

#[tokio::test]
async fn full_upload_and_read_cycle_with_real_shares() {
    let Fixture {
        srv,
        c,
        shares,
        enc,
        si,
    } = fixture(50_000, 1).await;
    let size = *enc.share_lens.iter().max().unwrap();
    let up = upload_id(1);

    // Nothing is visible before the upload.
    let l: SharesResponse = c
        .get(&format!("/storage/v1/immutable/{si}/shares"))
        .await
        .json();
    assert!(l.shares.is_empty());

    let a: AllocateResponse = c
        .allocate(
            &up,
            json!({"shares": (0..10).collect::<Vec<u8>>(), "share_size": size}),
        )
        .await
        .expect(201)
        .json();
    assert_eq!(a.allocated.len(), 10);
    assert!(a.already_have.is_empty());

    for (n, share) in shares.iter().enumerate() {
        upload_share(&c, &up, n as u8, share, 3000).await;
    }
    // Written but unfinished shares are invisible to readers.
    let l: SharesResponse = c
        .get(&format!("/storage/v1/immutable/{si}/shares"))
        .await
        .json();
    assert!(l.shares.is_empty());

    for (n, share) in shares.iter().enumerate() {
        let f: FinishResponse = c
            .finish(&up, n as u8, share.len() as u64)
            .await
            .expect(200)
            .json();
        assert_eq!(f.storage_index, enc.storage_index);
        assert!(!f.already_had);
        assert_eq!(f.upload_complete, n == 9);
    }
    // The upload id is forgotten once complete.
    c.status(&up).await.expect(404);

    let l: SharesResponse = c
        .get(&format!("/storage/v1/immutable/{si}/shares"))
        .await
        .expect(200)
        .json();
    assert_eq!(l.shares.len(), 10);
    for s in &l.shares {
        assert_eq!(s.length, shares[s.share.0 as usize].len() as u64);
    }

    // One request: trailers of three shares, a span of one, and a share that is not held.
    let r = c
        .read(
            &si,
            json!({"reads": [
                {"share": 0, "ranges": [{"suffix": 300}, {"offset": 10, "length": 100}]},
                {"share": 5, "ranges": [{"suffix": 300}]},
                {"share": 9, "ranges": [{"offset": 0, "length": 1_000_000}]},
            ]}),
        )
        .await;
    r.expect(200);
    assert_eq!(r.headers["content-type"], "application/x-lafs-read-v1");
    let parts = decode_response(&r.body).unwrap();
    assert_eq!(parts.len(), 4);
    let check = |i: usize, share: usize, off: u64, len: usize| match parts[i].content {
        PartContent::Data {
            offset,
            share_len,
            data,
        } => {
            assert_eq!(parts[i].share, ShareNum(share as u8));
            assert_eq!(share_len, shares[share].len() as u64);
            assert_eq!(offset, off);
            assert_eq!(data, &shares[share][off as usize..off as usize + len]);
        }
        PartContent::Absent => panic!("part {i} absent"),
    };
    let l0 = shares[0].len() as u64;
    check(0, 0, l0 - 300, 300);
    check(1, 0, 10, 100);
    check(2, 5, shares[5].len() as u64 - 300, 300);
    check(3, 9, 0, shares[9].len()); // truncated at the end of the share

    // Single range with a Range header.
    let r = c
        .raw(
            "GET",
            &format!("/storage/v1/immutable/{si}/3"),
            vec![],
            &[("range", "bytes=5-14".into())],
        )
        .await;
    r.expect(206);
    assert_eq!(r.body, &shares[3][5..15]);
    assert_eq!(
        r.headers["content-range"],
        format!("bytes 5-14/{}", shares[3].len())
    );

    // A second upload of the same shares: expected_si reports them as held.
    let a: AllocateResponse = c
        .allocate(
            &upload_id(2),
            json!({"shares": [0, 1], "share_size": size, "expected_si": si}),
        )
        .await
        .expect(200)
        .json();
    assert!(a.allocated.is_empty());
    assert_eq!(a.already_have, vec![ShareNum(0), ShareNum(1)]);

    // Absent shares are reported as such.
    let r = c
        .read(
            &si,
            json!({"reads": [{"share": 200, "ranges": [{"suffix": 1}]}]}),
        )
        .await;
    let parts = decode_response(&r.body).unwrap();
    assert_eq!(parts[0].content, PartContent::Absent);
    srv.stop().await;
}

#[tokio::test]
async fn resume_after_disconnect_reports_missing_ranges() {
    let Fixture {
        srv,
        c,
        shares,
        enc,
        ..
    } = fixture(20_000, 2).await;
    let share = &shares[4];
    let len = share.len() as u64;
    let up = upload_id(3);
    c.allocate_share(&up, 4, len).await.expect(201);
    c.write(&up, 4, 0, &share[..1000]).await.expect(200);
    c.write(&up, 4, 2000, &share[2000..]).await.expect(200);

    // Finishing now fails and says what is missing.
    let e = c.finish(&up, 4, len).await.expect(409).error();
    assert!(e.message.contains("1000..2000"), "{}", e.message);

    let st: UploadStatus = c.status(&up).await.expect(200).json();
    assert_eq!(st.shares[0].state, ShareState::Receiving);
    let missing = st.shares[0].missing.clone().unwrap();
    assert_eq!(missing.len(), 1);
    assert_eq!((missing[0].start, missing[0].end), (1000, 2000));

    c.write(&up, 4, 1000, &share[1000..2000]).await.expect(200);
    let f: FinishResponse = c.finish(&up, 4, len).await.expect(200).json();
    assert_eq!(f.storage_index, enc.storage_index);
    assert!(f.upload_complete);
    srv.stop().await;
}

#[tokio::test]
async fn corrupt_or_foreign_shares_are_refused_and_can_be_repaired() {
    let srv = TestServer::memory(Config::default()).await;
    let c = srv.client(3);
    let (shares, enc) = make_shares(10_000, 3);
    let (other, other_enc) = make_shares(10_000, 4);
    let share = &shares[1];
    let len = share.len() as u64;
    let up = upload_id(4);
    c.allocate(&up, json!({"shares": [1, 2]})).await.expect(201);

    let mut bad = share.clone();
    bad[100] ^= 1;
    c.write(&up, 1, 0, &bad).await.expect(200);
    let e = c.finish(&up, 1, len).await.expect(422).error();
    assert_eq!(e.error, ErrorCode::ShareInvalid);
    // Nothing became visible.
    let l: SharesResponse = c
        .get(&format!("/storage/v1/immutable/{}/shares", si_text(&enc)))
        .await
        .json();
    assert!(l.shares.is_empty());
    // Rewrite the bad byte and finish.
    c.write(&up, 1, 100, &share[100..101]).await.expect(200);
    c.finish(&up, 1, len).await.expect(200);

    // A share with the wrong number does not verify either (share 3's bytes as share 2).
    c.write(&up, 2, 0, &shares[3]).await.expect(200);
    c.finish(&up, 2, shares[3].len() as u64).await.expect(422);

    // expected_si that does not match is a conflict.
    let up2 = upload_id(5);
    c.allocate(&up2, json!({"shares": [2]})).await.expect(201);
    c.write(&up2, 2, 0, &other[2]).await.expect(200);
    let body = json!({"length": other[2].len(), "expected_si": si_text(&enc)});
    let r = c
        .signed(
            "POST",
            &format!("/storage/v1/upload/{up2}/2/finish"),
            body.to_string().into_bytes(),
        )
        .await;
    assert_eq!(r.expect(409).error().error, ErrorCode::Conflict);
    let f: FinishResponse = c
        .finish(&up2, 2, other[2].len() as u64)
        .await
        .expect(200)
        .json();
    assert_eq!(f.storage_index, other_enc.storage_index);

    // Writes after finishing are refused; abort removes the rest of an upload.
    c.write(&up, 1, 0, &share[..10]).await.expect(409);
    let r = c
        .signed("DELETE", &format!("/storage/v1/upload/{up}"), vec![])
        .await;
    r.expect(204);
    c.status(&up).await.expect(404);
    // The finished share survived the abort.
    let l: SharesResponse = c
        .get(&format!("/storage/v1/immutable/{}/shares", si_text(&enc)))
        .await
        .json();
    assert_eq!(l.shares.len(), 1);
    srv.stop().await;
}

#[tokio::test]
async fn signatures_are_required_and_checked() {
    let srv = TestServer::memory(Config::default()).await;
    let alice = srv.client(10);
    let mallory = srv.client(11);
    let up = upload_id(6);
    let path = format!("/storage/v1/upload/{up}");
    let body = json!({"shares": [0]}).to_string().into_bytes();

    // Unsigned.
    let r = alice.raw("POST", &path, body.clone(), &[]).await;
    assert_eq!(r.expect(401).error().error, ErrorCode::Unauthorized);

    // Valid, then replayed verbatim.
    let h = alice.sign("POST", &path, &body, now_unix());
    alice.raw("POST", &path, body.clone(), &h).await.expect(201);
    let e = alice
        .raw("POST", &path, body.clone(), &h)
        .await
        .expect(401)
        .error();
    assert!(e.message.contains("replay"), "{}", e.message);

    // Forged: alice's headers, mallory's account key.
    let mut h = alice.sign("POST", &path, &body, now_unix());
    h[0].1 = AccountId(mallory.key.verifying_key().to_bytes()).to_text();
    let e = alice
        .raw("POST", &path, body.clone(), &h)
        .await
        .expect(401)
        .error();
    assert!(e.message.contains("signature"), "{}", e.message);

    // Signed body differs from the body sent.
    let h = alice.sign("POST", &path, &body, now_unix());
    alice
        .raw("POST", &path, b"{\"shares\":[1]}".to_vec(), &h)
        .await
        .expect(401);

    // Stale and future timestamps.
    for ts in [now_unix() - 3600, now_unix() + 3600] {
        let h = alice.sign("POST", &path, &body, ts);
        let e = alice
            .raw("POST", &path, body.clone(), &h)
            .await
            .expect(401)
            .error();
        assert!(e.message.contains("timestamp"), "{}", e.message);
    }

    // Signed for another server (audience).
    let elsewhere = Client::new(&srv.url, "some-other-server", 10);
    elsewhere
        .allocate(&upload_id(7), json!({"shares": [0]}))
        .await
        .expect(401);

    // Malformed headers.
    let mut h = alice.sign("POST", &path, &body, now_unix());
    h[3].1 = "NOT-BASE32".into();
    alice.raw("POST", &path, body.clone(), &h).await.expect(401);

    // Another account may not touch alice's upload.
    mallory.write(&up, 0, 0, b"x").await.expect(403);
    mallory.status(&up).await.expect(403);
    mallory.signed("DELETE", &path, vec![]).await.expect(403);
    alice.write(&up, 0, 0, b"x").await.expect(200);
    srv.stop().await;

    // Allow-list.
    let allowed: BTreeSet<AccountId> = [AccountId(srv_key(10))].into_iter().collect();
    let srv = TestServer::memory(Config {
        allowed_accounts: Some(allowed),
        ..Config::default()
    })
    .await;
    srv.client(10)
        .allocate(&upload_id(8), json!({"shares": [0]}))
        .await
        .expect(201);
    let e = srv
        .client(11)
        .allocate(&upload_id(9), json!({"shares": [0]}))
        .await
        .expect(403)
        .error();
    assert_eq!(e.error, ErrorCode::Forbidden);
    srv.stop().await;
}

fn srv_key(seed: u8) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
        .verifying_key()
        .to_bytes()
}

#[tokio::test]
async fn read_only_mode_refuses_uploads_but_serves_reads() {
    // Fill a store first, then serve it read-only.
    let store: Arc<dyn ShareStore> = Arc::new(MemoryStore::new(1 << 30));
    let srv = TestServer::start(AppState::new(Config::default(), store.clone()).unwrap()).await;
    let c = srv.client(20);
    let (shares, enc) = make_shares(5000, 20);
    let up = upload_id(20);
    c.allocate(&up, json!({"shares": [0, 1]})).await.expect(201);
    c.write(&up, 0, 0, &shares[0]).await.expect(200);
    c.finish(&up, 0, shares[0].len() as u64).await.expect(200);
    srv.stop().await;

    let cfg = Config {
        read_only: true,
        ..Config::default()
    };
    let srv = TestServer::start(AppState::new(cfg, store).unwrap()).await;
    let c = srv.client(20);
    let v: VersionResponse = c.get("/storage/v1/version").await.expect(200).json();
    assert!(v.read_only && !v.accepts_immutable && !v.accepts_mutable);
    let e = c
        .allocate(&upload_id(21), json!({"shares": [0]}))
        .await
        .expect(403)
        .error();
    assert_eq!(e.error, ErrorCode::ReadOnly);
    assert!(e.message.contains("read-only"));
    // The resumed upload cannot be written or finished either.
    assert_eq!(
        c.write(&up, 1, 0, &shares[1])
            .await
            .expect(403)
            .error()
            .error,
        ErrorCode::ReadOnly
    );
    // Reads still work.
    let r = c
        .read(
            &si_text(&enc),
            json!({"reads": [{"share": 0, "ranges": [{"suffix": 10}]}]}),
        )
        .await;
    r.expect(200);
    srv.stop().await;
}

#[tokio::test]
async fn full_disk_is_507_and_never_corrupts() {
    let (shares, enc) = make_shares(30_000, 30);
    let len = shares[0].len() as u64;
    // Declared size larger than the free space: refused at allocation.
    let store: Arc<dyn ShareStore> = Arc::new(MemoryStore::new(len * 2));
    let srv = TestServer::start(AppState::new(Config::default(), store).unwrap()).await;
    let c = srv.client(30);
    let e = c
        .allocate(
            &upload_id(30),
            json!({"shares": [0, 1, 2], "share_size": len}),
        )
        .await
        .expect(507)
        .error();
    assert_eq!(e.error, ErrorCode::InsufficientStorage);
    // Size unknown: the write that overflows fails with 507.
    c.allocate(&upload_id(31), json!({"shares": [0, 1, 2]}))
        .await
        .expect(201);
    c.write(&upload_id(31), 0, 0, &shares[0]).await.expect(200);
    c.write(&upload_id(31), 1, 0, &shares[1]).await.expect(200);
    c.write(&upload_id(31), 2, 0, &shares[2]).await.expect(507);
    srv.stop().await;

    // Disk full while finishing (fault-injecting store): nothing becomes visible; once space is
    // back, finishing succeeds.
    let faulty = Arc::new(FaultyStore::new(
        MemoryStore::new(1 << 30),
        FaultPlan::default(),
    ));
    let srv = TestServer::start(AppState::new(Config::default(), faulty.clone()).unwrap()).await;
    let c = srv.client(31);
    let up = upload_id(32);
    c.allocate(&up, json!({"shares": [0]})).await.expect(201);
    c.write(&up, 0, 0, &shares[0]).await.expect(200);
    faulty.set_full(true);
    c.write(&up, 0, 0, &shares[0][..10]).await.expect(507);
    c.finish(&up, 0, len).await.expect(507);
    let l: SharesResponse = c
        .get(&format!("/storage/v1/immutable/{}/shares", si_text(&enc)))
        .await
        .json();
    assert!(l.shares.is_empty());
    faulty.set_full(false);
    c.finish(&up, 0, len).await.expect(200);
    let r = c
        .read(
            &si_text(&enc),
            json!({"reads": [{"share": 0, "ranges": [{"offset": 0, "length": len}]}]}),
        )
        .await;
    match decode_response(&r.body).unwrap()[0].content {
        PartContent::Data { data, .. } => assert_eq!(data, &shares[0][..]),
        PartContent::Absent => panic!("absent"),
    }
    srv.stop().await;
}

#[tokio::test]
async fn cors_preflight_and_metrics() {
    let srv = TestServer::memory(Config::default()).await;
    let c = srv.client(40);
    let r = c
        .raw(
            "OPTIONS",
            &format!("/storage/v1/upload/{}/0?offset=0", upload_id(40)),
            vec![],
            &[
                ("origin", "https://app.example".into()),
                ("access-control-request-method", "PUT".into()),
                (
                    "access-control-request-headers",
                    "lafs-signature,lafs-nonce,lafs-account,lafs-timestamp".into(),
                ),
            ],
        )
        .await;
    assert!(r.status == 200 || r.status == 204, "{}", r.status);
    assert_eq!(r.headers["access-control-allow-origin"], "*");
    let allowed = r.headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for h in [
        "lafs-signature",
        "lafs-nonce",
        "lafs-account",
        "lafs-timestamp",
    ] {
        assert!(allowed.contains(h), "{allowed}");
    }
    let r = c
        .raw(
            "GET",
            "/storage/v1/version",
            vec![],
            &[("origin", "https://x.example".into())],
        )
        .await;
    assert_eq!(r.headers["access-control-allow-origin"], "*");

    c.get("/nope").await.expect(404);
    let m = c.get("/metrics").await;
    m.expect(200);
    let text = String::from_utf8(m.body.clone()).unwrap();
    assert!(text.contains("lafs_storage_requests_total 3"), "{text}");
    assert!(
        text.contains("lafs_storage_responses_total{class=\"4xx\"} 1"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));
    srv.stop().await;
}

#[tokio::test]
async fn slow_clients_are_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cfg = Config {
        header_read_timeout: std::time::Duration::from_millis(300),
        ..Config::default()
    };
    let srv = TestServer::memory(cfg).await;
    let addr = srv.url.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /storage/v1/version HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Never finish the headers: the server must close the connection.
    let mut buf = Vec::new();
    let res =
        tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(res.is_ok(), "connection was not closed");
    srv.stop().await;
}
