//! Directories and mutable files through the web API, over a grid client on the simulated
//! grid (every request goes through the real router).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::router_on;
use lafs_client::{sim::SimGrid, Client, ClientConfig};
use lafs_gateway::{ClientGrid, Config, MemoryGrid};

async fn call(
    router: &axum::Router,
    method: &str,
    uri: &str,
    body: &[u8],
) -> (StatusCode, Vec<u8>) {
    let r = common::request(router, method.parse().unwrap(), uri, &[], body.to_vec()).await;
    (r.status, r.body)
}

fn router() -> axum::Router {
    let client = Client::new(Arc::new(SimGrid::new(10, 3)), ClientConfig::default());
    router_on(Config::default(), ClientGrid::new(client))
}

fn s(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

#[tokio::test]
async fn directory_api_round_trip() {
    let r = router();
    let (st, dir) = call(&r, "POST", "/uri?t=mkdir", b"").await;
    assert_eq!(st, StatusCode::OK, "{}", s(&dir));
    let dir = s(&dir);
    assert!(dir.starts_with("lafsdw1"), "{dir}");

    // Upload into the directory, in a new subdirectory.
    let (st, _) = call(&r, "PUT", &format!("/uri/{dir}/docs?t=mkdir"), b"").await;
    assert_eq!(st, StatusCode::CREATED);
    let content = vec![b'z'; 3000];
    let (st, file) = call(&r, "PUT", &format!("/uri/{dir}/docs/a.txt"), &content).await;
    assert_eq!(st, StatusCode::CREATED, "{}", s(&file));
    let file = s(&file);

    // The entry records the size; a body of several segments streams through the same way,
    // and a tiny one becomes a literal cap.
    let (_, j) = call(&r, "GET", &format!("/uri/{dir}/docs?t=json"), b"").await;
    let v: serde_json::Value = serde_json::from_slice(&j).unwrap();
    assert_eq!(
        v[1]["children"]["a.txt"][1]["metadata"]["size"], 3000,
        "{v}"
    );
    let big: Vec<u8> = (0..2_600_000u32).map(|i| (i % 253) as u8).collect();
    let (st, big_cap) = call(&r, "PUT", &format!("/uri/{dir}/docs/big.bin"), &big).await;
    assert_eq!(st, StatusCode::CREATED, "{}", s(&big_cap));
    let (st, body) = call(&r, "GET", &format!("/uri/{}", s(&big_cap)), b"").await;
    assert_eq!((st, body.len()), (StatusCode::OK, big.len()));
    assert!(body == big);
    let (st, tiny) = call(&r, "PUT", &format!("/uri/{dir}/docs/tiny"), b"hi").await;
    assert_eq!(st, StatusCode::CREATED);
    assert!(s(&tiny).starts_with("lafsl1"), "{}", s(&tiny));
    let (_, j) = call(&r, "GET", &format!("/uri/{dir}/docs?t=json"), b"").await;
    let v: serde_json::Value = serde_json::from_slice(&j).unwrap();
    assert_eq!(
        v[1]["children"]["big.bin"][1]["metadata"]["size"],
        2_600_000
    );
    assert_eq!(v[1]["children"]["tiny"][1]["metadata"]["size"], 2);
    for name in ["big.bin", "tiny"] {
        let (st, _) = call(&r, "DELETE", &format!("/uri/{dir}/docs/{name}"), b"").await;
        assert_eq!(st, StatusCode::NO_CONTENT);
    }

    // Path traversal: an immutable file redirects to its cap.
    let (st, _) = call(&r, "GET", &format!("/uri/{dir}/docs/a.txt"), b"").await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (st, body) = call(&r, "GET", &format!("/uri/{file}"), b"").await;
    assert_eq!((st, body), (StatusCode::OK, content.clone()));

    // Listings.
    let (st, j) = call(&r, "GET", &format!("/uri/{dir}/docs?t=json"), b"").await;
    assert_eq!(st, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&j).unwrap();
    assert_eq!(v[0], "dirnode");
    assert_eq!(v[1]["children"]["a.txt"][0], "filenode");
    assert_eq!(v[1]["children"]["a.txt"][1]["ro_uri"], file.as_str());
    let (_, j) = call(&r, "GET", &format!("/uri/{dir}?t=json"), b"").await;
    let v: serde_json::Value = serde_json::from_slice(&j).unwrap();
    assert_eq!(v[1]["children"]["docs"][0], "dirnode");
    assert!(v[1]["rw_uri"].is_string());
    let ro = v[1]["ro_uri"].as_str().unwrap().to_owned();

    // Rename, then delete.
    let (st, _) = call(
        &r,
        "POST",
        &format!("/uri/{dir}/docs?t=rename&from_name=a.txt&to_name=b.txt"),
        b"",
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = call(&r, "GET", &format!("/uri/{dir}/docs/a.txt?t=json"), b"").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = call(&r, "GET", &format!("/uri/{ro}/docs/b.txt?t=json"), b"").await;
    assert_eq!(st, StatusCode::OK);
    // The read cap cannot write.
    let (st, _) = call(&r, "PUT", &format!("/uri/{ro}/docs/c.txt"), b"x").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = call(&r, "DELETE", &format!("/uri/{dir}/docs/b.txt"), b"").await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, j) = call(&r, "GET", &format!("/uri/{dir}/docs?t=json"), b"").await;
    let v: serde_json::Value = serde_json::from_slice(&j).unwrap();
    assert_eq!(v[1]["children"], serde_json::json!({}));

    // Immutable directory.
    let body = serde_json::json!({ "f.txt": file }).to_string();
    let (st, imm) = call(&r, "POST", "/uri?t=mkdir-immutable", body.as_bytes()).await;
    assert_eq!(st, StatusCode::OK, "{}", s(&imm));
    let imm = s(&imm);
    let (st, _) = call(&r, "GET", &format!("/uri/{imm}/f.txt"), b"").await;
    assert_eq!(st, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn mutable_file_api() {
    let r = router();
    let (st, cap) = call(&r, "POST", "/uri?t=mutable", b"hello world").await;
    assert_eq!(st, StatusCode::OK, "{}", s(&cap));
    let cap = s(&cap);
    assert_eq!(
        call(&r, "GET", &format!("/uri/{cap}"), b"").await.1,
        b"hello world"
    );
    let (st, _) = call(&r, "PUT", &format!("/uri/{cap}?offset=6"), b"WORLD!").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        call(&r, "GET", &format!("/uri/{cap}"), b"").await.1,
        b"hello WORLD!"
    );
    let (st, _) = call(&r, "PUT", &format!("/uri/{cap}"), b"new").await;
    assert_eq!(st, StatusCode::OK);
    let (_, j) = call(&r, "GET", &format!("/uri/{cap}?t=json"), b"").await;
    let v: serde_json::Value = serde_json::from_slice(&j).unwrap();
    assert_eq!(v[1]["seqnum"], 3);
    assert_eq!(v[1]["size"], 3);
    // The read cap reads but cannot write.
    let ro = v[1]["ro_uri"].as_str().unwrap().to_owned();
    assert_eq!(call(&r, "GET", &format!("/uri/{ro}"), b"").await.1, b"new");
    assert_eq!(
        call(&r, "PUT", &format!("/uri/{ro}"), b"x").await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn memory_grid_answers_501() {
    let r = router_on(Config::default(), MemoryGrid::new());
    assert_eq!(
        call(&r, "POST", "/uri?t=mkdir", b"").await.0,
        StatusCode::NOT_IMPLEMENTED
    );
}
