//! The HTTP API over the in-memory grid, request by request (`oneshot`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::Router;
use common::{data, get, head, multipart, put, request, upload, Resp};
use lafs_caps::{Cap, ImmutableReadCap, ImmutableVerifyCap};
use lafs_codec::{decrypt_at, random_key, segment_leaf_of_ciphertext, Params};
use lafs_gateway::{Config, MemoryGrid};
use lafs_hashtree::{Hash, PartialTree};

fn setup() -> (Router, MemoryGrid) {
    common::memory_app(Config::default())
}

#[tokio::test]
async fn round_trips_of_many_sizes() {
    let (app, _) = setup();
    let seg = 1000usize;
    for (i, len) in [0, 1, 55, 56, seg - 1, seg, seg + 1, 3 * seg + 7]
        .into_iter()
        .enumerate()
    {
        let d = data(len, i as u64);
        let cap = upload(&app, &format!("?segment_size={seg}&k=3&n=5"), &d).await;
        let parsed: Cap = cap.parse().unwrap();
        if len <= 55 {
            assert!(
                matches!(parsed, Cap::Literal(_)),
                "{len} bytes should be a literal cap"
            );
        } else {
            assert!(matches!(parsed, Cap::ImmutableRead(_)));
        }
        let r = get(&app, &format!("/uri/{cap}"), &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, d, "size {len}");
        assert_eq!(r.header("content-length"), Some(len.to_string().as_str()));
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
    }
}

#[tokio::test]
async fn a_few_mib_with_default_params_and_random_ranges() {
    let (app, _) = setup();
    let d = data(3 << 20 | 12345, 99);
    let cap = upload(&app, "", &d).await;
    let r = get(&app, &format!("/uri/{cap}"), &[]).await;
    assert_eq!(r.body.len(), d.len());
    assert!(r.body == d);
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..12 {
        let a = rng.usize(..d.len());
        let b = rng.usize(a..d.len());
        let r = get(
            &app,
            &format!("/uri/{cap}"),
            &[("range", &format!("bytes={a}-{b}"))],
        )
        .await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {a}-{b}/{}", d.len()).as_str())
        );
        assert_eq!(
            r.header("content-length"),
            Some((b - a + 1).to_string().as_str())
        );
        assert!(r.body == d[a..=b], "range {a}-{b}");
    }
}

#[tokio::test]
async fn range_semantics() {
    let (app, _) = setup();
    let d = data(5000, 3);
    let cap = upload(&app, "?segment_size=1024", &d).await;
    let uri = format!("/uri/{cap}");
    let r = get(&app, &uri, &[("range", "bytes=-100")]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.header("content-range"), Some("bytes 4900-4999/5000"));
    assert_eq!(r.body, &d[4900..]);
    let r = get(&app, &uri, &[("range", "bytes=4000-")]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.body, &d[4000..]);
    let r = get(&app, &uri, &[("range", "bytes=4990-9999")]).await;
    assert_eq!(r.header("content-range"), Some("bytes 4990-4999/5000"));
    assert_eq!(r.body, &d[4990..]);
    let r = get(&app, &uri, &[("range", "bytes=5000-")]).await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header("content-range"), Some("bytes */5000"));
    // Several ranges: the whole file.
    let r = get(&app, &uri, &[("range", "bytes=0-1,10-20")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, d);
    // Malformed: ignored.
    let r = get(&app, &uri, &[("range", "bytes=zz")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.len(), 5000);
    // HEAD: headers without a body.
    let r = head(&app, &uri, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-length"), Some("5000"));
    assert!(r.body.is_empty());
    let r = head(&app, &uri, &[("range", "bytes=10-19")]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.header("content-length"), Some("10"));
    assert_eq!(r.header("content-range"), Some("bytes 10-19/5000"));
    // Literal caps too.
    let lit = upload(&app, "", b"hello world").await;
    let r = get(&app, &format!("/uri/{lit}"), &[("range", "bytes=6-")]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.body, b"world");
    let r = get(&app, &format!("/uri/{lit}"), &[("range", "bytes=11-")]).await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header("content-range"), Some("bytes */11"));
    // Empty file.
    let empty = upload(&app, "", b"").await;
    let r = get(&app, &format!("/uri/{empty}"), &[("range", "bytes=0-")]).await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    let r = get(&app, &format!("/uri/{empty}"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-length"), Some("0"));
}

#[tokio::test]
async fn content_types() {
    let (app, _) = setup();
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(data(3000, 1));
    let cap = upload(&app, "?segment_size=10", &png).await;
    let r = get(&app, &format!("/uri/{cap}"), &[]).await;
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert_eq!(r.header("content-security-policy"), Some("sandbox"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    // The same type for a range that does not start at 0, and for HEAD.
    let r = get(&app, &format!("/uri/{cap}"), &[("range", "bytes=100-200")]).await;
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert_eq!(r.body, &png[100..=200]);
    let r = head(&app, &format!("/uri/{cap}"), &[]).await;
    assert_eq!(r.header("content-type"), Some("image/png"));
    let r = get(&app, &format!("/uri/{cap}?filename=x.txt"), &[]).await;
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let r = get(
        &app,
        &format!("/uri/{cap}?filename=my%20file.wasm&save=true"),
        &[],
    )
    .await;
    assert_eq!(r.header("content-type"), Some("application/wasm"));
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename*=UTF-8''my%20file.wasm")
    );
    let other = upload(&app, "", &data(100, 2)).await;
    let r = get(&app, &format!("/uri/{other}"), &[]).await;
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
}

#[tokio::test]
async fn t_json() {
    let (app, _) = setup();
    let d = data(2500, 5);
    let cap = upload(&app, "?segment_size=1000&k=2&n=4", &d).await;
    let rc: ImmutableReadCap = cap.parse().unwrap();
    let r = get(&app, &format!("/uri/{cap}?t=json"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let j = r.json();
    assert_eq!(j[0], "filenode");
    let info = &j[1];
    assert_eq!(info["size"], 2500);
    assert_eq!(info["k"], 2);
    assert_eq!(info["n"], 4);
    assert_eq!(info["segment_size"], 1000);
    assert_eq!(info["num_segments"], 3);
    assert_eq!(info["mutable"], false);
    assert_eq!(info["ro_uri"], cap);
    assert_eq!(info["verify_uri"], rc.verify_cap().to_string());
    assert_eq!(
        info["storage_index"],
        lafs_proto::ids::storage_index_to_text(rc.storage_index())
    );
    // A verifycap describes the file without the readcap.
    let vc = rc.verify_cap();
    let j = get(&app, &format!("/uri/{vc}?t=json"), &[]).await.json();
    assert!(j[1].get("ro_uri").is_none());
    assert_eq!(j[1]["size"], 2500);
    // Literal.
    let lit = upload(&app, "", b"tiny").await;
    let j = get(&app, &format!("/uri/{lit}?t=json"), &[]).await.json();
    assert_eq!(j[1]["format"], "literal");
    assert_eq!(j[1]["size"], 4);
    let r = get(&app, &format!("/uri/{cap}?t=bogus"), &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_caps_are_400_with_the_caps_error_text() {
    let (app, _) = setup();
    let cap = upload(&app, "", &data(100, 1)).await;
    let mut typo = cap.clone();
    let c = if &cap[20..21] == "q" { "p" } else { "q" };
    typo.replace_range(20..21, c);
    for bad in [
        typo.as_str(),
        "nonsense",
        "URI:CHK:abc:def:3:10:100",
        "lafsr1",
    ] {
        let r = get(&app, &format!("/uri/{bad}"), &[]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        let expected = bad.parse::<Cap>().unwrap_err().to_string();
        assert!(r.text().contains(&expected), "{} vs {expected}", r.text());
        let r = get(&app, &format!("/ciphertext/{bad}"), &[]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // A readcap on the ciphertext path, a verifycap on the plaintext path.
    let rc: ImmutableReadCap = cap.parse().unwrap();
    let r = get(&app, &format!("/ciphertext/{cap}"), &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("readcap"));
    let r = get(&app, &format!("/uri/{}", rc.verify_cap()), &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("/ciphertext/"));
    // Unknown file: 410 Gone.
    let other = ImmutableReadCap::new(random_key().unwrap(), lafs_caps::StorageIndex([1; 32]));
    let r = get(&app, &format!("/uri/{other}"), &[]).await;
    assert_eq!(r.status, StatusCode::GONE, "{}", r.text());
    // Bad parameters.
    for q in [
        "?k=0",
        "?k=5&n=3",
        "?segment_size=0",
        "?n=x",
        "?segment_size=99999999999",
    ] {
        let r = put(&app, &format!("/uri{q}"), data(100, 1)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.text());
    }
}

#[tokio::test]
async fn missing_and_corrupt_shares() {
    let (app, grid) = setup();
    let d = data(10_000, 8);
    let cap = upload(&app, "?segment_size=1000&k=3&n=6", &d).await;
    let rc: ImmutableReadCap = cap.parse().unwrap();
    let si = *rc.storage_index();
    grid.corrupt_share(&si, 0, 40);
    grid.remove_share(&si, 1);
    let r = get(&app, &format!("/uri/{cap}"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body == d);
    grid.remove_share(&si, 2);
    grid.remove_share(&si, 3);
    grid.remove_share(&si, 4);
    let r = get(&app, &format!("/uri/{cap}"), &[]).await;
    assert_eq!(r.status, StatusCode::GONE, "{}", r.text());
    assert!(r.text().contains("not enough shares"), "{}", r.text());
}

async fn form_post(app: &Router, uri: &str, fields: &[(&str, &str)], file: &[u8]) -> Resp {
    let (ct, body) = multipart(fields, file);
    request(app, Method::POST, uri, &[("content-type", &ct)], body).await
}

#[tokio::test]
async fn form_upload() {
    let (app, _) = setup();
    let d = data(4000, 11);
    let r = form_post(&app, "/uri?t=upload", &[("_charset", "utf-8")], &d).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let cap = r.text();
    assert_eq!(get(&app, &format!("/uri/{cap}"), &[]).await.body, d);
    let r = form_post(&app, "/uri", &[("when_done", "/done.html")], &d).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/done.html"));
    let r = form_post(&app, "/uri?when_done=https://evil.example/", &[], &d).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = form_post(&app, "/uri?redirect_to_result=true", &[], b"small").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let loc = r.header("location").unwrap().to_owned();
    assert!(loc.starts_with("/uri/lafsl1"), "{loc}");
    assert_eq!(get(&app, &loc, &[]).await.body, b"small");
    // No file field.
    let (ct, _) = multipart(&[], b"");
    let body = ("--lafs-test-boundary-7d1f\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\ny\r\n--lafs-test-boundary-7d1f--\r\n").to_owned();
    let r = request(&app, Method::POST, "/uri", &[("content-type", &ct)], body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("file"));
    // Not multipart at all.
    let r = request(&app, Method::POST, "/uri", &[], "x").await;
    assert!(r.status.is_client_error(), "{}", r.status);
    // GET /uri?uri=CAP redirects to /uri/CAP.
    let r = get(&app, &format!("/uri?uri={cap}"), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some(format!("/uri/{cap}").as_str()));
}

/// Verifies segments `first..=last` of `ciphertext` with the proof JSON, as a client would
/// (the leaf of a segment from its ciphertext and the file's k).
fn check_proof(proof: &serde_json::Value, ueb_root: Hash, params: Params, ciphertext: &[u8]) {
    let segment_size = params.segment_size() as usize;
    let n = proof["num_segments"].as_u64().unwrap() as usize;
    let first = proof["first_segment"].as_u64().unwrap() as usize;
    let last = proof["last_segment"].as_u64().unwrap() as usize;
    let mut tree = PartialTree::new(ueb_root, n).unwrap();
    tree.add_nodes(&common::proof_nodes(proof)).unwrap();
    for j in first..=last {
        let seg = &ciphertext[j * segment_size..((j + 1) * segment_size).min(ciphertext.len())];
        let leaf = segment_leaf_of_ciphertext(&params, seg).unwrap();
        assert_eq!(proof["leaves"][j - first], leaf.to_hex());
        tree.add_leaf(j, leaf).unwrap();
    }
    // Leaves of a range verify once the whole range is in (they climb together).
    for j in first..=last {
        assert!(tree.verified_leaf(j).is_some(), "segment {j} not verified");
    }
}

#[tokio::test]
async fn ciphertext_endpoints() {
    let (app, _) = setup();
    let d = data(10_500, 21);
    let cap = upload(&app, "?segment_size=1000&k=3&n=7", &d).await;
    let rc: ImmutableReadCap = cap.parse().unwrap();
    let vc = rc.verify_cap();
    let r = get(&app, &format!("/ciphertext/{vc}"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    let ciphertext = r.body.clone();
    assert_ne!(ciphertext, d);
    let mut plain = ciphertext.clone();
    decrypt_at(rc.key(), 0, &mut plain).unwrap();
    assert!(plain == d);
    // Ranges of ciphertext decrypt at their offset.
    let r = get(
        &app,
        &format!("/ciphertext/{vc}"),
        &[("range", "bytes=2500-3999")],
    )
    .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    let mut part = r.body.clone();
    decrypt_at(rc.key(), 2500, &mut part).unwrap();
    assert_eq!(part, &d[2500..4000]);
    // UEB: hashes to the storage index.
    let r = get(&app, &format!("/ciphertext/{vc}?t=ueb"), &[]).await;
    assert_eq!(r.body.len(), lafs_codec::UEB_LEN);
    let ueb = lafs_codec::parse_ueb(&r.body).unwrap();
    assert_eq!(ueb.storage_index(), *vc.storage_index());
    // Proofs for several segment ranges verify the ciphertext.
    for segs in ["0-10", "0", "10", "3-5", "7-9"] {
        let r = get(
            &app,
            &format!("/ciphertext/{vc}?t=proof&segments={segs}"),
            &[],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{segs}: {}", r.text());
        check_proof(&r.json(), ueb.ciphertext_root, ueb.params, &ciphertext);
    }
    for bad in ["11", "3-2", "x", "0-11"] {
        let r = get(
            &app,
            &format!("/ciphertext/{vc}?t=proof&segments={bad}"),
            &[],
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let r = get(&app, &format!("/ciphertext/{vc}?t=proof"), &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // t=json
    let j = get(&app, &format!("/ciphertext/{vc}?t=json"), &[])
        .await
        .json();
    assert_eq!(j["size"], 10_500);
    assert_eq!(j["ueb"], hex::encode(ueb.to_bytes()));
    // A one-segment file: the proof is empty and the leaf is the root.
    let small = upload(&app, "", &data(500, 4)).await;
    let src: ImmutableReadCap = small.parse().unwrap();
    let svc = src.verify_cap();
    let ct = get(&app, &format!("/ciphertext/{svc}"), &[]).await.body;
    let sueb = lafs_codec::parse_ueb(
        &get(&app, &format!("/ciphertext/{svc}?t=ueb"), &[])
            .await
            .body,
    )
    .unwrap();
    let p = get(&app, &format!("/ciphertext/{svc}?t=proof&segments=0"), &[]).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text());
    assert_eq!(p.json()["proof"].as_array().unwrap().len(), 0);
    check_proof(&p.json(), sueb.ciphertext_root, sueb.params, &ct);
}

#[tokio::test]
async fn ciphertext_put_then_get() {
    let (app, _) = setup();
    let plain = data(7777, 31);
    let (key, ct) = common::encrypt(&plain);
    let sel = common::sel_hex(&key);
    let r = put(
        &app,
        &format!("/ciphertext?selection_index={sel}&segment_size=2000&k=2&n=3"),
        ct.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let vc: ImmutableVerifyCap = r.text().parse().unwrap();
    assert_eq!(
        vc.selection_index().0,
        lafs_caps::selection_index_for(&key).0
    );
    let back = get(&app, &format!("/ciphertext/{vc}"), &[]).await;
    assert!(back.body == ct);
    // The client builds the readcap and reads the plaintext through /uri.
    let rc = ImmutableReadCap::new(key, *vc.storage_index());
    assert_eq!(get(&app, &format!("/uri/{rc}"), &[]).await.body, plain);
    for q in ["", "?selection_index=zz", "?selection_index=00"] {
        let r = put(&app, &format!("/ciphertext{q}"), ct.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
    }
}

#[tokio::test]
async fn cors() {
    let (app, _) = setup();
    let cap = upload(&app, "", &data(100, 1)).await;
    let r = get(
        &app,
        &format!("/uri/{cap}"),
        &[("origin", "https://example.org"), ("range", "bytes=0-9")],
    )
    .await;
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let exposed = r
        .header("access-control-expose-headers")
        .unwrap()
        .to_ascii_lowercase();
    for h in ["content-range", "content-length", "accept-ranges"] {
        assert!(exposed.contains(h), "{exposed}");
    }
    let r = request(
        &app,
        Method::OPTIONS,
        "/ciphertext",
        &[
            ("origin", "https://example.org"),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "range,content-type"),
        ],
        Body::empty(),
    )
    .await;
    assert!(r.status.is_success(), "{}", r.status);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r
        .header("access-control-allow-methods")
        .unwrap()
        .contains("PUT"));
}

#[tokio::test]
async fn static_files() {
    let dir = tempfile::tempdir().unwrap();
    let app = common::router_on(
        Config {
            static_dir: Some(dir.path().to_path_buf()),
            ..Config::default()
        },
        MemoryGrid::new(),
    );
    let r = get(&app, "/", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.text().contains("not built"), "{}", r.text());
    std::fs::write(
        dir.path().join("index.html"),
        "<!doctype html><title>lafs</title>",
    )
    .unwrap();
    std::fs::write(dir.path().join("app_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(dir.path().join("app.js"), "export {}").unwrap();
    let r = get(&app, "/", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let r = get(&app, "/app_bg.wasm", &[]).await;
    assert_eq!(r.header("content-type"), Some("application/wasm"));
    let r = get(&app, "/app.js", &[]).await;
    assert!(r.header("content-type").unwrap().contains("javascript"));
    let r = get(&app, "/missing.css", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // No static dir at all.
    let (api_only, _) = setup();
    let r = get(&api_only, "/", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.text().contains("/uri"));
}

#[tokio::test]
async fn proof_survives_a_share_with_a_bad_ciphertext_tree() {
    let (app, grid) = setup();
    let d = data(8000, 41);
    let cap = upload(&app, "?segment_size=1000&k=2&n=3", &d).await;
    let rc: ImmutableReadCap = cap.parse().unwrap();
    let vc = rc.verify_cap();
    let si = *rc.storage_index();
    let params = Params::new(2, 3, 1000).unwrap();
    let ct = get(&app, &format!("/ciphertext/{vc}"), &[]).await.body;
    let root = lafs_codec::parse_ueb(
        &get(&app, &format!("/ciphertext/{vc}?t=ueb"), &[])
            .await
            .body,
    )
    .unwrap()
    .ciphertext_root;
    let uri = format!("/ciphertext/{vc}?t=proof&segments=2-5");
    let corrupt_tree = |share: u16| {
        let layout = lafs_codec::ShareLayout::new(params, 8000, share).unwrap();
        // Every stored node of the ciphertext tree of this share is wrong.
        for off in layout.ciphertext_tree_range().step_by(32) {
            grid.corrupt_share(&si, share, off);
        }
    };
    corrupt_tree(0);
    let r = get(&app, &uri, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    check_proof(&r.json(), root, params, &ct);
    corrupt_tree(1);
    corrupt_tree(2);
    let r = get(&app, &uri, &[]).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    assert!(r.text().contains("does not match"), "{}", r.text());
    // Without any good ciphertext tree no segment can be verified: an error, never bad bytes.
    let r = get(&app, &format!("/ciphertext/{vc}"), &[]).await;
    assert_ne!(r.status, StatusCode::OK);
    assert!(
        r.status.is_server_error() || r.status == StatusCode::GONE,
        "{}",
        r.status
    );
}

#[tokio::test]
async fn etags_and_not_modified() {
    let (app, _) = setup();
    let cap = upload(&app, "", &data(3000, 9)).await;
    let rc: ImmutableReadCap = cap.parse().unwrap();
    let r = get(&app, &format!("/uri/{cap}"), &[]).await;
    let tag = r.header("etag").unwrap().to_owned();
    assert!(tag.starts_with("\"p-"), "{tag}");
    let r = get(&app, &format!("/uri/{cap}"), &[("if-none-match", &tag)]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());
    let r = get(
        &app,
        &format!("/uri/{cap}"),
        &[("if-none-match", "\"other\"")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let c = get(&app, &format!("/ciphertext/{}", rc.verify_cap()), &[]).await;
    let ctag = c.header("etag").unwrap();
    assert_ne!(
        ctag, tag,
        "plaintext and ciphertext are different representations"
    );
    let lit = upload(&app, "", b"tiny").await;
    let r = get(&app, &format!("/uri/{lit}"), &[]).await;
    let ltag = r.header("etag").unwrap().to_owned();
    assert!(!ltag.contains("tiny"));
    let r = head(&app, &format!("/uri/{lit}"), &[("if-none-match", &ltag)]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    // A cached copy is answered without asking the grid (this file is not even on it).
    let absent = ImmutableReadCap::new(random_key().unwrap(), lafs_caps::StorageIndex([3; 32]));
    let atag = format!(
        "\"p-{}\"",
        lafs_proto::ids::storage_index_to_text(absent.storage_index())
    );
    let r = get(&app, &format!("/uri/{absent}"), &[("if-none-match", &atag)]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert_eq!(
        get(&app, &format!("/uri/{absent}"), &[]).await.status,
        StatusCode::GONE
    );
}
