//! The lafs introducer: storage servers announce themselves, clients subscribe to the live set.
//!
//! | module | what | IO |
//! |---|---|---|
//! | [`lafs_proto::introducer`] | JSON messages, canonical signing bytes, verifying `ServerSet` | none |
//! | [`registry`] | the registry state machine (announce / expire, clock passed in) | none |
//! | [`backoff`] | capped, jittered exponential backoff | none |
//! | this file | the axum driver: [`app`], [`serve`], the expiry timer | tokio, axum |
//! | [`announcer`] | storage side: keep announcing, reconnect with backoff | tokio-tungstenite |
//! | [`subscriber`] | client side: keep a live `watch` of the server set, reconnect | tokio-tungstenite |
//!
//! One WebSocket endpoint, [`INTRODUCER_PATH`], serves both roles: the first message a peer sends
//! (`announce` or `subscribe`) decides what the connection is. The protocol is specified in
//! `docs/spec/introducer.md`.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use lafs_introducer::{serve, IntroducerConfig, IntroducerState};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let state = IntroducerState::new(IntroducerConfig::default());
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! # drop(stop);
//! serve(listener, state, async { let _ = stopped.await; }).await
//! # }
//! ```

use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::{debug, info, warn};

pub mod announcer;
pub mod backoff;
pub mod registry;
pub mod subscriber;

use lafs_proto::introducer::{self as wire, ClientMessage, NodeKey, RejectCode, ServerMessage};
use registry::{Event, Registry, RegistryConfig, Rejection};

/// Path of the introducer's WebSocket endpoint. An *introducer URL* is `ws://host:port` plus
/// this path (`wss://` behind TLS).
pub const INTRODUCER_PATH: &str = "/v1/introducer";

/// Path of the read-only JSON snapshot of the live set (same body as the `snapshot` message).
pub const SERVERS_PATH: &str = "/v1/servers";

/// WebSocket close code after a withdrawal (RFC 6455 "normal closure").
pub const CLOSE_NORMAL: u16 = 1000;

/// WebSocket close code sent to every peer when the introducer shuts down (RFC 6455 "going away").
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// A wall clock that advances with tokio's clock, so tests using `tokio::time::pause` see
/// consistent time in the registry (milliseconds since the Unix epoch) and in timers.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_unix_ms: u64,
    base: Instant,
}

impl Clock {
    /// Anchored at the system clock now.
    pub fn system() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Self::starting_at(ms)
    }

    /// Reads `unix_ms` now and advances with tokio's clock from there (for tests).
    pub fn starting_at(unix_ms: u64) -> Self {
        Self {
            base_unix_ms: unix_ms,
            base: Instant::now(),
        }
    }

    /// Current time, milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.base_unix_ms.saturating_add(elapsed)
    }

    /// The tokio instant at which [`Self::now_ms`] reaches `unix_ms`.
    pub fn instant_at(&self, unix_ms: u64) -> Instant {
        self.base + Duration::from_millis(unix_ms.saturating_sub(self.base_unix_ms))
    }
}

/// Introducer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntroducerConfig {
    /// Registry timing and limits (TTL, clock skew, server cap).
    pub registry: RegistryConfig,
    /// Most simultaneous WebSocket connections; more get `503 Service Unavailable`.
    pub max_connections: usize,
    /// Largest WebSocket message accepted, bytes.
    pub max_message_bytes: usize,
    /// Interval between WebSocket pings to every peer (lets peers detect a dead introducer).
    pub keepalive: Duration,
    /// How long a new connection may take to send its first message.
    pub hello_timeout: Duration,
}

impl Default for IntroducerConfig {
    fn default() -> Self {
        Self {
            registry: RegistryConfig::default(),
            max_connections: 4096,
            max_message_bytes: 16 * 1024,
            keepalive: Duration::from_secs(20),
            hello_timeout: Duration::from_secs(10),
        }
    }
}

/// Shared state of one introducer: the registry, the subscriber broadcast, connection permits.
/// Cheap to clone.
#[derive(Clone)]
pub struct IntroducerState {
    inner: Arc<Inner>,
}

struct Inner {
    config: IntroducerConfig,
    clock: Clock,
    registry: Mutex<Registry>,
    events: broadcast::Sender<Arc<ServerMessage>>,
    joined: Notify,
    connections: Arc<Semaphore>,
    shutdown: watch::Sender<bool>,
}

impl IntroducerState {
    /// A fresh introducer with the system clock.
    pub fn new(config: IntroducerConfig) -> Self {
        Self::with_clock(config, Clock::system())
    }

    /// A fresh introducer reading time from `clock`.
    pub fn with_clock(config: IntroducerConfig, clock: Clock) -> Self {
        let (events, _) = broadcast::channel(256);
        let (shutdown, _) = watch::channel(false);
        Self {
            inner: Arc::new(Inner {
                config,
                clock,
                registry: Mutex::new(Registry::new(config.registry)),
                events,
                joined: Notify::new(),
                connections: Arc::new(Semaphore::new(config.max_connections)),
                shutdown,
            }),
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the registry half-updated in a way that
        // matters more than losing the introducer, so recover the guard instead of poisoning.
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Every live server's latest announcement.
    pub fn snapshot(&self) -> Vec<wire::SignedAnnouncement> {
        self.registry().snapshot()
    }

    /// Handles one announcement now; broadcasts the resulting event (under the registry lock,
    /// so subscribers never see an event out of order with their snapshot).
    fn announce(&self, ann: wire::SignedAnnouncement) -> Result<(), Rejection> {
        let now = self.inner.clock.now_ms();
        let key = ann.node_key();
        let mut reg = self.registry();
        match reg.announce(ann, now)? {
            Some(Event::Joined(a)) => {
                info!(node = %key, url = %a.announcement.url, "storage server joined");
                let _ = self
                    .inner
                    .events
                    .send(Arc::new(ServerMessage::Joined { server: a }));
                self.inner.joined.notify_one();
            }
            Some(Event::Updated(a)) => {
                debug!(node = %key, "storage server updated");
                let _ = self
                    .inner
                    .events
                    .send(Arc::new(ServerMessage::Updated { server: a }));
            }
            Some(Event::Left(_)) | None => {}
        }
        Ok(())
    }

    /// Removes a server at its own request (see [`Registry::withdraw`]) and tells subscribers.
    fn withdraw(&self, key: &NodeKey, seqnum: u64) {
        let mut reg = self.registry();
        if let Some(Event::Left(k)) = reg.withdraw(key, seqnum) {
            info!(node = %k, "storage server withdrew");
            let _ = self
                .inner
                .events
                .send(Arc::new(ServerMessage::Left { node_key: k }));
        }
    }

    fn subscribe(
        &self,
    ) -> (
        Vec<wire::SignedAnnouncement>,
        broadcast::Receiver<Arc<ServerMessage>>,
    ) {
        let reg = self.registry();
        (reg.snapshot(), self.inner.events.subscribe())
    }

    /// Expires servers on time until [`Self::shutdown`]. [`serve`] runs this; call it yourself
    /// only when mounting [`app`] in another server.
    pub async fn run_expiry(self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        loop {
            let deadline = self.registry().next_deadline();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(self.inner.clock.instant_at(d)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                _ = self.inner.joined.notified() => continue,
                () = stopped(&mut shutdown) => return,
            }
            let now = self.inner.clock.now_ms();
            let mut reg = self.registry();
            for ev in reg.expire(now) {
                if let Event::Left(key) = ev {
                    info!(node = %key, "storage server left (no announcement within the TTL)");
                    let _ = self
                        .inner
                        .events
                        .send(Arc::new(ServerMessage::Left { node_key: key }));
                }
            }
        }
    }

    /// Asks every WebSocket handler and the expiry timer to stop; handlers close their
    /// connections with [`CLOSE_GOING_AWAY`].
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Waits (at most `limit`) until every WebSocket connection has closed.
    pub async fn connections_closed(&self, limit: Duration) -> bool {
        let all = u32::try_from(self.inner.config.max_connections).unwrap_or(u32::MAX);
        tokio::time::timeout(limit, self.inner.connections.acquire_many(all))
            .await
            .is_ok()
    }
}

/// The introducer's HTTP routes: `GET /` (service info), [`SERVERS_PATH`] (JSON snapshot) and
/// the WebSocket endpoint [`INTRODUCER_PATH`]. Expiry needs [`IntroducerState::run_expiry`]
/// running too ([`serve`] does that).
pub fn app(state: IntroducerState) -> Router {
    Router::new()
        .route("/", get(info_handler))
        .route(SERVERS_PATH, get(servers_handler))
        .route(INTRODUCER_PATH, get(ws_handler))
        .with_state(state)
}

/// Serves [`app`] on `listener` and runs the expiry timer until `shutdown` resolves, then
/// closes every WebSocket (code 1001) and returns once they are closed (at most 5 s).
pub async fn serve(
    listener: TcpListener,
    state: IntroducerState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let expiry = tokio::spawn(state.clone().run_expiry());
    let st = state.clone();
    let result = axum::serve(listener, app(state.clone()))
        .with_graceful_shutdown(async move {
            shutdown.await;
            st.shutdown();
        })
        .await;
    state.shutdown();
    let _ = expiry.await;
    if !state.connections_closed(Duration::from_secs(5)).await {
        warn!("some introducer connections did not close within 5 s");
    }
    result
}

/// Browsers on other origins may read the (public) server list.
const ANY_ORIGIN: [(header::HeaderName, &str); 1] = [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")];

async fn info_handler(State(state): State<IntroducerState>) -> impl IntoResponse {
    (
        ANY_ORIGIN,
        Json(serde_json::json!({
            "service": "lafs-introducer",
            "version": env!("CARGO_PKG_VERSION"),
            "endpoint": INTRODUCER_PATH,
            "servers": state.registry().len(),
            "ttl_ms": state.inner.config.registry.ttl_ms,
        })),
    )
}

async fn servers_handler(State(state): State<IntroducerState>) -> impl IntoResponse {
    (
        ANY_ORIGIN,
        Json(ServerMessage::Snapshot {
            servers: state.snapshot(),
        }),
    )
}

async fn ws_handler(State(state): State<IntroducerState>, ws: WebSocketUpgrade) -> Response {
    let Ok(permit) = state.inner.connections.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many introducer connections\n",
        )
            .into_response();
    };
    if *state.inner.shutdown.borrow() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "introducer shutting down\n",
        )
            .into_response();
    }
    let max = state.inner.config.max_message_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| connection(socket, state, permit))
}

/// Resolves once `rx` reads true (drops the watch guard before returning, keeping futures Send).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

fn text(msg: &ServerMessage) -> Message {
    // Serializing these types cannot fail (only strings, integers and string-keyed structs).
    Message::text(serde_json::to_string(msg).unwrap_or_default())
}

fn close(code: u16, reason: &str) -> Message {
    // RFC 6455 limits a close reason to 123 bytes.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: reason[..end].into(),
    }))
}

enum Incoming {
    Text(String),
    Closed,
    Other,
}

fn classify(msg: Option<Result<Message, axum::Error>>) -> Incoming {
    match msg {
        Some(Ok(Message::Text(t))) => Incoming::Text(t.as_str().to_owned()),
        Some(Ok(Message::Binary(_))) => Incoming::Text(String::from("<binary>")),
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Incoming::Other,
        Some(Ok(Message::Close(_)) | Err(_)) | None => Incoming::Closed,
    }
}

async fn reject(
    socket: &mut WebSocket,
    code: RejectCode,
    reason: String,
    last_seqnum: Option<u64>,
) {
    debug!(?code, %reason, "rejecting introducer peer");
    let msg = ServerMessage::Rejected {
        code,
        reason: reason.clone(),
        last_seqnum,
    };
    let _ = socket.send(text(&msg)).await;
    let _ = socket.send(close(code.close_code(), &reason)).await;
}

async fn connection(mut socket: WebSocket, state: IntroducerState, _permit: OwnedSemaphorePermit) {
    let mut shutdown = state.inner.shutdown.subscribe();
    let first = tokio::select! {
        m = tokio::time::timeout(state.inner.config.hello_timeout, socket.recv()) => m,
        () = stopped(&mut shutdown) => {
            let _ = socket.send(close(CLOSE_GOING_AWAY, "introducer shutting down")).await;
            return;
        }
    };
    let first = match first {
        Ok(m) => classify(m),
        Err(_) => {
            let _ = socket
                .send(close(wire::close_code::BAD_MESSAGE, "no hello in time"))
                .await;
            return;
        }
    };
    let hello = match first {
        Incoming::Text(t) => t,
        Incoming::Closed => return,
        Incoming::Other => {
            reject(
                &mut socket,
                RejectCode::BadMessage,
                "expected announce or subscribe".into(),
                None,
            )
            .await;
            return;
        }
    };
    match serde_json::from_str::<ClientMessage>(&hello) {
        Ok(ClientMessage::Subscribe) => subscriber_loop(socket, state, shutdown).await,
        Ok(ClientMessage::Announce { server }) => {
            announcer_loop(socket, state, shutdown, server).await
        }
        Ok(ClientMessage::Withdraw) => {
            let reason = "withdraw is only valid after an announcement".to_owned();
            reject(&mut socket, RejectCode::BadMessage, reason, None).await;
        }
        Err(e) => {
            reject(
                &mut socket,
                RejectCode::BadMessage,
                format!("bad message: {e}"),
                None,
            )
            .await
        }
    }
}

async fn announcer_loop(
    mut socket: WebSocket,
    state: IntroducerState,
    mut shutdown: watch::Receiver<bool>,
    first: wire::SignedAnnouncement,
) {
    let key: NodeKey = first.node_key();
    let ttl_ms = state.inner.config.registry.ttl_ms;
    let mut next = Some(first);
    let mut keepalive = tokio::time::interval(state.inner.config.keepalive);
    keepalive.reset();
    // A connection that neither announces nor answers for two TTLs is dead.
    let idle = Duration::from_millis(ttl_ms.saturating_mul(2));
    let mut last_heard = Instant::now();
    let mut accepted = None;
    loop {
        if let Some(ann) = next.take() {
            if ann.node_key() != key {
                let reason = format!(
                    "this connection announces node {key}, not {}",
                    ann.node_key()
                );
                reject(&mut socket, RejectCode::KeyChanged, reason, None).await;
                return;
            }
            let seqnum = ann.announcement.seqnum;
            match state.announce(ann) {
                Ok(()) => {
                    accepted = Some(seqnum);
                    if socket
                        .send(text(&ServerMessage::Accepted { seqnum, ttl_ms }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(r) => {
                    reject(&mut socket, r.code, r.reason, r.last_seqnum).await;
                    return;
                }
            }
        }
        tokio::select! {
            m = socket.recv() => {
                last_heard = Instant::now();
                match classify(m) {
                    Incoming::Closed => return,
                    Incoming::Other => {}
                    Incoming::Text(t) => match serde_json::from_str::<ClientMessage>(&t) {
                        Ok(ClientMessage::Announce { server }) => next = Some(server),
                        Ok(ClientMessage::Withdraw) => {
                            if let Some(seqnum) = accepted {
                                state.withdraw(&key, seqnum);
                            }
                            let _ = socket.send(close(CLOSE_NORMAL, "withdrawn")).await;
                            return;
                        }
                        Ok(ClientMessage::Subscribe) => {
                            let reason = "an announcing connection cannot subscribe".to_owned();
                            reject(&mut socket, RejectCode::BadMessage, reason, None).await;
                            return;
                        }
                        Err(e) => {
                            reject(&mut socket, RejectCode::BadMessage, format!("bad message: {e}"), None).await;
                            return;
                        }
                    },
                }
            }
            _ = keepalive.tick() => {
                if last_heard.elapsed() > idle || socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
            () = stopped(&mut shutdown) => {
                let _ = socket.send(close(CLOSE_GOING_AWAY, "introducer shutting down")).await;
                return;
            }
        }
    }
}

async fn subscriber_loop(
    mut socket: WebSocket,
    state: IntroducerState,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut keepalive = tokio::time::interval(state.inner.config.keepalive);
    keepalive.reset();
    'resync: loop {
        let (servers, mut rx) = state.subscribe();
        if socket
            .send(text(&ServerMessage::Snapshot { servers }))
            .await
            .is_err()
        {
            return;
        }
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(msg) => {
                        if socket.send(text(&msg)).await.is_err() {
                            return;
                        }
                    }
                    // Fell behind: start over from a fresh snapshot rather than skip events.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue 'resync,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                m = socket.recv() => match classify(m) {
                    Incoming::Closed => return,
                    Incoming::Other => {}
                    Incoming::Text(_) => {
                        let reason = "a subscribing connection sends nothing after subscribe".to_owned();
                        reject(&mut socket, RejectCode::BadMessage, reason, None).await;
                        return;
                    }
                },
                _ = keepalive.tick() => {
                    if socket.send(Message::Ping(Default::default())).await.is_err() {
                        return;
                    }
                }
                () = stopped(&mut shutdown) => {
                    let _ = socket.send(close(CLOSE_GOING_AWAY, "introducer shutting down")).await;
                    return;
                }
            }
        }
    }
}
