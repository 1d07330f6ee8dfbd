//! Idle uploads expire (paused tokio clock, handler calls through `oneshot`, no network).

// Test helpers panic on failed set-up steps on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use common::{now_unix, upload_id, Client};
use lafs_storage::{app, AppState, Config, MemoryStore, ShareStore};
use tower::ServiceExt;

async fn call(state: &AppState, c: &Client, method: &str, path: &str, body: &[u8]) -> u16 {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in c.sign(method, path, body, now_unix()) {
        req = req.header(k, v);
    }
    let resp = app(state.clone())
        .oneshot(req.body(Body::from(body.to_vec())).unwrap())
        .await
        .unwrap();
    resp.status().as_u16()
}

#[tokio::test(start_paused = true)]
async fn idle_uploads_expire_and_activity_keeps_them_alive() {
    let store = Arc::new(MemoryStore::new(1 << 20));
    let cfg = Config {
        upload_ttl: Duration::from_secs(60),
        ..Config::default()
    };
    let state = AppState::new(cfg, store.clone()).unwrap();
    let c = Client::new("http://unused", state.server_id(), 60);
    let up = upload_id(60);
    let base = format!("/storage/v1/upload/{up}");

    assert_eq!(
        call(&state, &c, "POST", &base, br#"{"shares":[0]}"#).await,
        201
    );
    tokio::time::advance(Duration::from_secs(45)).await;
    // Activity resets the idle timer.
    assert_eq!(
        call(&state, &c, "PUT", &format!("{base}/0?offset=0"), b"abc").await,
        200
    );
    tokio::time::advance(Duration::from_secs(45)).await;
    assert_eq!(state.expire_idle_uploads().await, 0);
    assert_eq!(call(&state, &c, "GET", &base, b"").await, 200);

    tokio::time::advance(Duration::from_secs(61)).await;
    // Expired: invisible at once, and the sweep deletes its data.
    assert_eq!(call(&state, &c, "GET", &base, b"").await, 404);
    assert_eq!(
        call(&state, &c, "PUT", &format!("{base}/0?offset=3"), b"d").await,
        404
    );
    assert_eq!(state.expire_idle_uploads().await, 1);
    assert!(store.load_uploads().unwrap().is_empty());
    assert_eq!(state.active_uploads(), 0);

    // The id can be allocated again afterwards.
    assert_eq!(
        call(&state, &c, "POST", &base, br#"{"shares":[0]}"#).await,
        201
    );
    // Re-allocating an expired id before the sweep also works (the old session is dropped).
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(
        call(&state, &c, "POST", &base, br#"{"shares":[0]}"#).await,
        201
    );
    assert_eq!(store.load_uploads().unwrap().len(), 1);
}
