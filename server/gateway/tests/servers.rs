//! `GET /grid/servers`: the storage servers a browser may talk to directly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use lafs_client::{sim::SimGrid, Client, ClientConfig, ServerId};
use lafs_gateway::{app, AppState, ClientGrid, Config, MemoryGrid};
use tower::ServiceExt;

async fn get(router: axum::Router, uri: &str) -> (StatusCode, String, Vec<u8>) {
    let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
    let resp = router.oneshot(req).await.unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, ctype, body)
}

#[tokio::test]
async fn lists_the_servers_of_the_grid() {
    let client = Client::new(Arc::new(SimGrid::new(3, 1)), ClientConfig::default());
    let list = vec![
        (ServerId([1; 32]), "http://127.0.0.1:1".to_owned()),
        (ServerId([2; 32]), "http://127.0.0.1:2".to_owned()),
    ];
    let grid = ClientGrid::new(client).with_server_list(Arc::new(move || list.clone()));
    let router = app(AppState::new(Config::default(), Arc::new(grid)));
    let (st, ctype, body) = get(router, "/grid/servers").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(ctype, "application/json");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let servers = v["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2);
    assert_eq!(servers[0]["id"], ServerId([1; 32]).to_string());
    assert_eq!(servers[0]["url"], "http://127.0.0.1:1");
    assert_eq!(servers[1]["url"], "http://127.0.0.1:2");
}

#[tokio::test]
async fn a_grid_without_servers_answers_501() {
    let router = app(AppState::new(
        Config::default(),
        Arc::new(MemoryGrid::new()),
    ));
    let (st, _, _) = get(router, "/grid/servers").await;
    assert_eq!(st, StatusCode::NOT_IMPLEMENTED);
    let client = Client::new(Arc::new(SimGrid::new(3, 1)), ClientConfig::default());
    let router = app(AppState::new(
        Config::default(),
        Arc::new(ClientGrid::new(client)),
    ));
    let (st, _, _) = get(router, "/grid/servers").await;
    assert_eq!(st, StatusCode::NOT_IMPLEMENTED);
}
