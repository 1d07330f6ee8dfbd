//! The connection loop of the lafs HTTP servers (storage server and gateway): serves an axum
//! [`Router`] over HTTP/1.1 on a TCP listener with a cap on open connections, a back-off on
//! accept errors, a header-read timeout and graceful shutdown.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use std::time::Duration;
//! use lafs_serve::{serve_connections, Limits};
//!
//! let router = axum::Router::new();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3456").await?;
//! let limits = Limits {
//!     max_connections: 1024,
//!     header_read_timeout: Duration::from_secs(10),
//! };
//! serve_connections(listener, router, limits, std::future::pending()).await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// How long [`serve_connections`] waits after a failed `accept` (out of file descriptors and
/// the like) before it tries again, instead of spinning on the error.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The limits [`serve_connections`] applies to connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest number of connections served at once (`0` counts as `1`); more wait in the
    /// listener's accept queue until one of them closes.
    pub max_connections: usize,
    /// Time a client has to send each request line and headers; a connection that takes
    /// longer is closed.
    pub header_read_timeout: Duration,
}

/// Serves `router` over HTTP/1.1 on `listener` until `shutdown` completes, then shuts down
/// gracefully and returns once every connection has ended.
///
/// Guarantees:
///
/// * **Connection limit**: at most [`Limits::max_connections`] connections are open at once.
///   A slot is taken *before* `accept`, so further connections are not accepted at all: they
///   wait in the kernel's accept queue and are served, in order, as open connections close.
/// * **Back-off**: a failed `accept` (out of file descriptors, a connection reset before it
///   was accepted, ...) is logged (`warn`) and retried after [`ACCEPT_BACKOFF`]; it never ends
///   the loop.
/// * **Timeouts**: every request must send its request line and headers within
///   [`Limits::header_read_timeout`], or its connection is closed. Bodies and handlers are
///   not timed here: a router that wants body or request timeouts adds them as layers.
/// * **Graceful shutdown**: once `shutdown` completes, no further connection is accepted
///   (those still in the accept queue are never served and are reset when the listener is
///   dropped on return). Every open connection is told to shut down: a request in progress
///   runs to the end and its response is sent, then the connection closes; an idle
///   keep-alive connection closes at once. The function returns when the last connection has
///   ended. Draining has no deadline of its own: a caller that wants one drops the returned
///   future, which aborts the connections still open.
///
/// Each accepted socket gets `TCP_NODELAY`. A connection that ends with an error (the
/// client went away, a header timeout, a malformed request) is logged at `debug` level and
/// affects no other connection.
pub async fn serve_connections(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let mut stop = stop_rx.clone();
        let header_timeout = limits.header_read_timeout;
        conns.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let res = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = res {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
        // Reap finished connection tasks so the set does not grow.
        while conns.try_join_next().is_some() {}
    }
    let _ = stop_tx.send(true);
    while conns.join_next().await.is_some() {}
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    use std::net::SocketAddr;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;
    use tokio::time::timeout;

    /// Bound on every wait for something that must happen.
    const WAIT: Duration = Duration::from_secs(10);

    /// A router whose `/hold` handler counts itself in `entered` and then waits for a permit
    /// of `gate`; `/quick` answers at once.
    fn router(entered: watch::Sender<usize>, gate: Arc<Semaphore>) -> Router {
        Router::new()
            .route(
                "/hold",
                get(move || {
                    let entered = entered.clone();
                    let gate = Arc::clone(&gate);
                    async move {
                        entered.send_modify(|n| *n += 1);
                        gate.acquire().await.unwrap().forget();
                        "held"
                    }
                }),
            )
            .route("/quick", get(|| async { "quick" }))
    }

    /// A running [`serve_connections`] over [`router`].
    struct Server {
        addr: SocketAddr,
        /// Sending (or dropping) this completes the shutdown future.
        stop: Option<oneshot::Sender<()>>,
        task: JoinHandle<()>,
        /// How many `/hold` requests reached the handler.
        entered: watch::Receiver<usize>,
        /// Each permit added lets one held `/hold` request answer.
        gate: Arc<Semaphore>,
    }

    async fn start(max_connections: usize, header_read_timeout: Duration) -> Server {
        let (entered_tx, entered) = watch::channel(0usize);
        let gate = Arc::new(Semaphore::new(0));
        let limits = Limits {
            max_connections,
            header_read_timeout,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let router = router(entered_tx, Arc::clone(&gate));
        let task = tokio::spawn(serve_connections(listener, router, limits, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task,
            entered,
            gate,
        }
    }

    async fn send(addr: SocketAddr, request: &str) -> TcpStream {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(request.as_bytes()).await.unwrap();
        c
    }

    /// Reads one response (headers and a `content-length` body) off a keep-alive connection.
    async fn read_response(c: &mut TcpStream) -> String {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            assert_eq!(
                c.read(&mut byte).await.unwrap(),
                1,
                "connection closed early"
            );
            buf.push(byte[0]);
        }
        let head = String::from_utf8(buf).unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(str::to_owned)
            })
            .expect("content-length")
            .trim()
            .parse()
            .unwrap();
        let mut body = vec![0; len];
        c.read_exact(&mut body).await.unwrap();
        head + &String::from_utf8(body).unwrap()
    }

    async fn read_to_close(mut c: TcpStream) -> String {
        let mut s = String::new();
        timeout(WAIT, c.read_to_string(&mut s))
            .await
            .expect("the server answers and closes")
            .unwrap();
        s
    }

    const HOLD_CLOSE: &str = "GET /hold HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

    #[tokio::test]
    async fn connections_beyond_the_limit_wait_until_one_closes() {
        let mut server = start(2, WAIT).await;

        let clients: Vec<TcpStream> = {
            let mut v = Vec::new();
            for _ in 0..3 {
                v.push(send(server.addr, HOLD_CLOSE).await);
            }
            v
        };
        timeout(WAIT, server.entered.wait_for(|n| *n >= 2))
            .await
            .expect("two connections are served")
            .unwrap();
        // The third connection was not accepted: its request has not reached the handler.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(*server.entered.borrow(), 2, "a third connection was served");

        // One held request finishes and its connection closes: the third one is served.
        server.gate.add_permits(1);
        timeout(WAIT, server.entered.wait_for(|n| *n >= 3))
            .await
            .expect("the waiting connection is served once a slot frees")
            .unwrap();
        server.gate.add_permits(2);
        for c in clients {
            let resp = read_to_close(c).await;
            assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
            assert!(resp.ends_with("held"), "{resp}");
        }
        drop(server.stop);
        timeout(WAIT, server.task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn shutdown_finishes_open_requests_and_closes_idle_connections() {
        let mut server = start(16, WAIT).await;

        // An idle keep-alive connection (one request answered) and a request in progress.
        let mut idle = send(server.addr, "GET /quick HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let resp = timeout(WAIT, read_response(&mut idle)).await.unwrap();
        assert!(resp.ends_with("quick"), "{resp}");
        let busy = send(server.addr, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n").await;
        timeout(WAIT, server.entered.wait_for(|n| *n == 1))
            .await
            .unwrap()
            .unwrap();

        server.stop.take().unwrap().send(()).unwrap();
        // The idle connection is closed by the server...
        let mut rest = Vec::new();
        let n = timeout(WAIT, idle.read_to_end(&mut rest))
            .await
            .expect("the idle connection is closed at shutdown")
            .unwrap();
        assert_eq!(n, 0, "nothing more is sent on the idle connection");
        // ...while the request in progress holds the server open.
        assert!(!server.task.is_finished(), "returned with a request open");

        server.gate.add_permits(1);
        let resp = read_to_close(busy).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.ends_with("held"), "{resp}");
        timeout(WAIT, server.task)
            .await
            .expect("returns once the last connection ended")
            .unwrap();
        assert!(
            TcpStream::connect(server.addr).await.is_err(),
            "no longer listening"
        );
    }

    #[tokio::test]
    async fn slow_headers_are_cut() {
        let server = start(1, Duration::from_millis(200)).await;
        let slow = send(server.addr, "GET /qu").await;
        // Closed without an answer (or with a 408 from hyper), well within the bound.
        let resp = read_to_close(slow).await;
        assert!(
            resp.is_empty() || resp.starts_with("HTTP/1.1 408"),
            "{resp}"
        );
        // With the one slot free again, a normal request is served.
        let mut c = send(server.addr, "GET /quick HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let resp = timeout(WAIT, read_response(&mut c)).await.unwrap();
        assert!(resp.ends_with("quick"), "{resp}");
        drop(c);
        drop(server.stop);
        timeout(WAIT, server.task).await.unwrap().unwrap();
    }
}
