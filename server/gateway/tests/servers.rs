//! `GET /grid/servers`: the storage servers a browser may talk to directly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::{get, router_on};
use lafs_client::{sim::SimGrid, Client, ClientConfig, ServerId};
use lafs_gateway::{ClientGrid, Config, MemoryGrid};

#[tokio::test]
async fn lists_the_servers_of_the_grid() {
    let client = Client::new(Arc::new(SimGrid::new(3, 1)), ClientConfig::default());
    let list = vec![
        (ServerId([1; 32]), "http://127.0.0.1:1".to_owned()),
        (ServerId([2; 32]), "http://127.0.0.1:2".to_owned()),
    ];
    let grid = ClientGrid::new(client).with_server_list(Arc::new(move || list.clone()));
    let router = router_on(Config::default(), grid);
    let r = get(&router, "/grid/servers", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    let servers = v["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2);
    assert_eq!(servers[0]["id"], ServerId([1; 32]).to_string());
    assert_eq!(servers[0]["url"], "http://127.0.0.1:1");
    assert_eq!(servers[1]["url"], "http://127.0.0.1:2");
}

#[tokio::test]
async fn a_grid_without_servers_answers_501() {
    let router = router_on(Config::default(), MemoryGrid::new());
    let r = get(&router, "/grid/servers", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_IMPLEMENTED);
    let client = Client::new(Arc::new(SimGrid::new(3, 1)), ClientConfig::default());
    let router = router_on(Config::default(), ClientGrid::new(client));
    let r = get(&router, "/grid/servers", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_IMPLEMENTED);
}
