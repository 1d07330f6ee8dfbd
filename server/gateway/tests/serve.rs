//! `serve`: slow clients are disconnected, requests are answered over TCP, shutdown is graceful.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use lafs_gateway::{serve, AppState, Config, MemoryGrid};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

#[tokio::test]
async fn slow_headers_are_cut_and_shutdown_is_graceful() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config {
        header_read_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let state = AppState::new(config, Arc::new(MemoryGrid::new()));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, state, async {
        let _ = stop_rx.await;
    }));

    // A client that sends half a request line and then nothing is disconnected.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /uri/lafsl1").await.unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf))
        .await
        .expect("the server closes a connection that sends no headers");
    let _ = n;

    // A normal request works: PUT a literal-sized file and read it back.
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(
        b"PUT /uri HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await
    .unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let cap = resp.rsplit("\r\n\r\n").next().unwrap().to_owned();
    assert!(cap.starts_with("lafsl1"), "{cap}");
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(
        format!("GET /uri/{cap} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).await.unwrap();
    assert!(resp.ends_with("\r\n\r\nhello"), "{resp}");

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}
