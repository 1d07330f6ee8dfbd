//! Malformed input over every endpoint: always a 4xx with a JSON error body, never a 5xx.

// Test helpers panic on failed set-up steps on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use lafs_proto::storage::ErrorBody;
use lafs_storage::Config;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends bytes verbatim (no URL normalisation) and returns (status, body).
async fn raw_http(url: &str, request: &[u8]) -> (u16, Vec<u8>) {
    let addr = url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("no response")
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = match buf.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => buf[i + 4..].to_vec(),
        None => Vec::new(),
    };
    (status, body)
}

#[track_caller]
fn assert_client_error(case: &str, status: u16, body: &[u8]) {
    assert!(
        (400..500).contains(&status),
        "{case}: status {status}, body {}",
        String::from_utf8_lossy(body)
    );
    let e: Result<ErrorBody, _> = serde_json::from_slice(body);
    assert!(
        e.is_ok(),
        "{case}: error body is not JSON: {}",
        String::from_utf8_lossy(body)
    );
    assert!(!e.unwrap().message.is_empty(), "{case}: empty message");
}

#[tokio::test]
async fn malformed_input_never_yields_5xx() {
    let cfg = Config {
        max_request_body: 64 * 1024,
        max_read_ranges: 16,
        ..Config::default()
    };
    let srv = TestServer::memory(cfg).await;
    let c = srv.client(50);

    // A held share, so range checks have something to be checked against.
    let (shares, enc) = make_shares(9000, 50);
    let si = si_text(&enc);
    let up = upload_id(50);
    c.allocate(
        &up,
        json!({"shares": [0, 1], "share_size": shares[0].len()}),
    )
    .await
    .expect(201);
    c.write(&up, 0, 0, &shares[0]).await.expect(200);
    c.finish(&up, 0, shares[0].len() as u64).await.expect(200);
    let share_len = shares[0].len() as u64;

    let upper_si = si.to_ascii_uppercase();
    let long = "a".repeat(10_000);
    let bad_ids = [
        "",
        "..",
        "%2e%2e",
        "%2F",
        upper_si.as_str(),
        "zzzz",
        "a",
        long.as_str(),
        "%00",
        "%ff%fe",
    ];

    // Path tricks and bad identifiers, sent verbatim.
    for bad in bad_ids.iter().chain(["../..", "..%2f..", "./."].iter()) {
        for path in [
            format!("/storage/v1/immutable/{bad}/shares"),
            format!("/storage/v1/immutable/{bad}/0"),
            format!("/storage/v1/immutable/{si}/{bad}"),
            format!("/storage/v1/upload/{bad}"),
            format!("/storage/v1/upload/{up}/{bad}?offset=0"),
            format!("/storage/v1/../../../etc/passwd/{bad}"),
        ] {
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let (status, body) = raw_http(&srv.url, req.as_bytes()).await;
            assert!(
                status == 400 || status == 404 || status == 405 || status == 401,
                "{path}: {status}"
            );
            if status != 405 {
                assert_client_error(&path, status, &body);
            }
        }
    }

    // Share numbers out of range or non-canonical.
    for bad in [
        "256",
        "1000",
        "99999999999999999999999",
        "-1",
        "01",
        "1.0",
        "%EF%BC%90",
        "+1",
        "0x1",
    ] {
        let r = c.get(&format!("/storage/v1/immutable/{si}/{bad}")).await;
        assert_client_error(bad, r.status, &r.body);
        let r = c.write(&up, 0, 0, b"x").await; // share 0 finished: 409, still a 4xx
        assert_client_error("write to finished share", r.status, &r.body);
        let path = format!("/storage/v1/upload/{up}/{bad}?offset=0");
        let r = c.signed("PUT", &path, b"x".to_vec()).await;
        assert_client_error(&path, r.status, &r.body);
    }

    // Read request bodies.
    let many: Vec<_> = (0..17).map(|i| json!({"offset": i, "length": 1})).collect();
    let huge = format!(
        "{{\"reads\":[{}]}}",
        vec!["{\"share\":0,\"ranges\":[{\"suffix\":1}]}"; 3000].join(",")
    );
    let read_bodies: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"\x00\xff garbage".to_vec()),
        ("empty", Vec::new()),
        ("no reads", b"{}".to_vec()),
        ("empty reads", br#"{"reads":[]}"#.to_vec()),
        (
            "no ranges",
            br#"{"reads":[{"share":0,"ranges":[]}]}"#.to_vec(),
        ),
        (
            "too many ranges",
            json!({"reads":[{"share":0,"ranges":many}]})
                .to_string()
                .into_bytes(),
        ),
        (
            "zero length",
            br#"{"reads":[{"share":0,"ranges":[{"offset":0,"length":0}]}]}"#.to_vec(),
        ),
        (
            "zero suffix",
            br#"{"reads":[{"share":0,"ranges":[{"suffix":0}]}]}"#.to_vec(),
        ),
        (
            "overflow",
            br#"{"reads":[{"share":0,"ranges":[{"offset":18446744073709551615,"length":5}]}]}"#
                .to_vec(),
        ),
        (
            "past end",
            json!({"reads":[{"share":0,"ranges":[{"offset":share_len,"length":5}]}]})
                .to_string()
                .into_bytes(),
        ),
        (
            "share 256",
            br#"{"reads":[{"share":256,"ranges":[{"suffix":1}]}]}"#.to_vec(),
        ),
        (
            "negative",
            br#"{"reads":[{"share":0,"ranges":[{"offset":-1,"length":5}]}]}"#.to_vec(),
        ),
        ("unknown field", br#"{"reads":[],"x":1}"#.to_vec()),
        ("huge body", huge.into_bytes()),
        (
            "too much data",
            json!({"reads":[{"share":0,"ranges":[{"suffix":1}]}]})
                .to_string()
                .into_bytes(),
        ),
    ];
    for (case, body) in read_bodies {
        let r = c
            .raw(
                "POST",
                &format!("/storage/v1/immutable/{si}/read"),
                body,
                &[],
            )
            .await;
        if case == "too much data" {
            r.expect(200); // control: a valid request passes
            continue;
        }
        assert_client_error(case, r.status, &r.body);
    }
    let past = c
        .read(
            &si,
            json!({"reads":[{"share":0,"ranges":[{"offset":share_len,"length":5}]}]}),
        )
        .await;
    past.expect(416);

    // Range headers.
    for bad in [
        "bytes=abc",
        "bytes=999999999-",
        "bytes=0-1,5-6",
        "items=0-1",
        "bytes=5-1",
        "bytes=-0",
    ] {
        let r = c
            .raw(
                "GET",
                &format!("/storage/v1/immutable/{si}/0"),
                vec![],
                &[("range", bad.into())],
            )
            .await;
        assert_client_error(bad, r.status, &r.body);
    }

    // Write query strings and bodies.
    let up2 = upload_id(51);
    c.allocate(&up2, json!({"shares": [3], "share_size": 1000}))
        .await
        .expect(201);
    for (q, body) in [
        ("", b"x".to_vec()),
        ("?offset=", b"x".to_vec()),
        ("?offset=abc", b"x".to_vec()),
        ("?offset=-1", b"x".to_vec()),
        ("?offset=01", b"x".to_vec()),
        ("?offset=1&offset=2", b"x".to_vec()),
        ("?offset=1&extra=2", b"x".to_vec()),
        ("?offset=18446744073709551615", b"xy".to_vec()),
        ("?offset=999", b"xy".to_vec()), // past the declared size
        ("?offset=0", Vec::new()),       // empty write
        ("?offset=0", vec![0u8; 100 * 1024]), // larger than max_request_body
    ] {
        let path = format!("/storage/v1/upload/{up2}/3{q}");
        let r = c.signed("PUT", &path, body).await;
        assert_client_error(&path, r.status, &r.body);
    }
    let r = c
        .signed(
            "PUT",
            &format!("/storage/v1/upload/{up2}/4?offset=0"),
            b"x".to_vec(),
        )
        .await;
    assert_eq!(r.status, 404, "unallocated share");
    c.signed(
        "PUT",
        &format!("/storage/v1/upload/{up2}/3?offset=998"),
        b"xy".to_vec(),
    )
    .await
    .expect(200);

    // Oversize body without a signature is still a 413 or 401, never a 5xx.
    let r = c
        .raw(
            "PUT",
            &format!("/storage/v1/upload/{up2}/3?offset=0"),
            vec![0u8; 200 * 1024],
            &[],
        )
        .await;
    assert_client_error("unsigned oversize", r.status, &r.body);

    // Allocate bodies.
    for body in [
        "garbage",
        "{}",
        r#"{"shares":[]}"#,
        r#"{"shares":[1,1]}"#,
        r#"{"shares":[256]}"#,
        r#"{"shares":[-1]}"#,
        r#"{"shares":[1],"share_size":-5}"#,
        r#"{"shares":[1],"share_size":18446744073709551615}"#,
        r#"{"shares":[1],"expected_si":"nope"}"#,
        r#"{"shares":[1],"surprise":true}"#,
    ] {
        let r = c
            .allocate(
                &upload_id(52),
                serde_json::from_str(body).unwrap_or(json!(body)),
            )
            .await;
        assert_client_error(body, r.status, &r.body);
    }

    // Finish bodies.
    for body in [
        "garbage",
        "{}",
        r#"{"length":-1}"#,
        r#"{"length":5,"x":1}"#,
        r#"{"length":1000}"#,
    ] {
        let r = c
            .signed(
                "POST",
                &format!("/storage/v1/upload/{up2}/3/finish"),
                body.as_bytes().to_vec(),
            )
            .await;
        assert_client_error(body, r.status, &r.body);
    }
    let r = c
        .signed(
            "POST",
            &format!("/storage/v1/upload/{up2}/9/finish"),
            br#"{"length":5}"#.to_vec(),
        )
        .await;
    assert_eq!(r.status, 404);

    // Advisories.
    let long_reason = json!({"reason": "x".repeat(2000)}).to_string();
    for body in ["garbage", "{}", long_reason.as_str(), r#"{"reason":5}"#] {
        let r = c
            .signed(
                "POST",
                &format!("/storage/v1/immutable/{si}/0/corrupt"),
                body.as_bytes().to_vec(),
            )
            .await;
        assert_client_error(body, r.status, &r.body);
    }
    let r = c
        .signed(
            "POST",
            &format!("/storage/v1/immutable/{si}/0/corrupt"),
            br#"{"reason":"block 3 bad"}"#.to_vec(),
        )
        .await;
    r.expect(204);
    let adv = srv.state.store().advisories().unwrap();
    assert_eq!(adv.len(), 1);
    assert!(adv[0].held);

    // Unknown paths and methods.
    for (m, p) in [
        ("GET", "/"),
        ("GET", "/storage/v2/version"),
        ("POST", "/storage/v1/version"),
        ("DELETE", &format!("/storage/v1/immutable/{si}/shares")),
        ("PATCH", &format!("/storage/v1/upload/{up2}")),
    ] {
        let r = c.raw(m, p, vec![], &[]).await;
        assert_client_error(p, r.status, &r.body);
    }

    // Garbage requests at the HTTP level get a 4xx or a closed connection, never a 5xx.
    for req in [
        &b"\x00\x01\x02\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /storage/v1/version HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    ] {
        let (status, _) = raw_http(&srv.url, req).await;
        assert!(status == 0 || (400..500).contains(&status), "{status}");
    }

    let m = c.get("/metrics").await;
    let text = String::from_utf8(m.body.clone()).unwrap();
    assert!(
        text.contains("lafs_storage_responses_total{class=\"5xx\"} 0"),
        "{text}"
    );
    assert!(
        srv.state
            .metrics()
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
            > 150
    );
    srv.stop().await;
}
