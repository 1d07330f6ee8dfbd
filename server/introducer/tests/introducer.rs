//! End-to-end tests of the introducer on 127.0.0.1 ephemeral ports: real WebSockets and the
//! announcer and subscriber drivers.
//!
//! These run on the real clock with short TTLs (about a second): tokio's paused clock
//! auto-advances while loopback socket data is still in flight between tasks, which fires
//! timeouts that real time never would. The timing rules themselves are tested with a fake
//! clock in `registry.rs` and `backoff.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a test failure.

use std::net::SocketAddr;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use futures_util::{SinkExt, StreamExt};
use lafs_introducer::announcer::{Announcer, AnnouncerConfig, AnnouncerStatus, ServerInfo};
use lafs_introducer::backoff::BackoffConfig;
use lafs_introducer::registry::RegistryConfig;
use lafs_introducer::subscriber::{ServerView, Subscriber, SubscriberConfig};
use lafs_introducer::{serve, Clock, IntroducerConfig, IntroducerState, INTRODUCER_PATH};
use lafs_proto::introducer::{
    close_code, Announcement, ClientMessage, NodeKey, RejectCode, ServerMessage,
};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const T0: u64 = 1_800_000_000_000;
const TTL_MS: u64 = 1_500;
/// Bound on every wait.
const WAIT: Duration = Duration::from_secs(20);
const HEARTBEAT: Duration = Duration::from_millis(400);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn config() -> IntroducerConfig {
    IntroducerConfig {
        registry: RegistryConfig {
            ttl_ms: TTL_MS,
            max_clock_skew_ms: 60_000,
            max_servers: 16,
        },
        keepalive: Duration::from_millis(300),
        ..IntroducerConfig::default()
    }
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    fn url(&self) -> String {
        format!("ws://{}{}", self.addr, INTRODUCER_PATH)
    }

    async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        timeout(WAIT, &mut self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

async fn start(addr: SocketAddr, clock: Clock) -> Running {
    init_tracing();
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = IntroducerState::with_clock(config(), clock);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, state, async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

fn backoff() -> BackoffConfig {
    BackoffConfig {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(500),
    }
}

fn announcer(url: &str, seed: u8, clock: Clock) -> Announcer {
    let cfg = AnnouncerConfig {
        heartbeat: HEARTBEAT,
        reply_timeout: Duration::from_secs(2),
        backoff: backoff(),
        seed: u64::from(seed),
        ..AnnouncerConfig::new(url)
    };
    let info = move || ServerInfo {
        url: format!("http://127.0.0.1:{}", 10_000 + u16::from(seed)),
        protocol: 1,
        capacity: 1 << 40,
        available: 1 << 39,
        nickname: format!("storage-{seed}"),
    };
    Announcer::spawn(cfg, SigningKey::from_bytes(&[seed; 32]), clock, info)
}

fn subscriber(url: &str) -> Subscriber {
    Subscriber::spawn(SubscriberConfig {
        idle_timeout: Duration::from_millis(1_500),
        backoff: backoff(),
        seed: 99,
        ..SubscriberConfig::new(url)
    })
}

fn key(seed: u8) -> NodeKey {
    NodeKey::from_signing_key(&SigningKey::from_bytes(&[seed; 32]))
}

fn keys(v: &ServerView) -> Vec<NodeKey> {
    v.servers.servers().map(|s| s.node_key()).collect()
}

async fn wait_view(
    rx: &mut watch::Receiver<ServerView>,
    what: &str,
    f: impl FnMut(&ServerView) -> bool,
) -> ServerView {
    let got = timeout(WAIT, rx.wait_for(f))
        .await
        .ok()
        .and_then(|r| r.ok())
        .map(|v| v.clone());
    got.unwrap_or_else(|| {
        panic!(
            "timed out waiting for {what}; view: {:?}",
            keys(&rx.borrow())
        )
    })
}

/// The seqnum of the announcer's last accepted announcement: the clock's time, in ms, when the
/// announcer made it (`seqnum = max(previous + 1, now)`, and heartbeats are far more than 1 ms
/// apart).
fn announced_seqnum(a: &Announcer) -> u64 {
    match *a.status().borrow() {
        AnnouncerStatus::Announced { seqnum } => seqnum,
        ref other => panic!("announcer not announced: {other:?}"),
    }
}

fn sorted(mut v: Vec<NodeKey>) -> Vec<NodeKey> {
    v.sort();
    v
}

#[tokio::test]
async fn tracks_joins_and_expires_a_dropped_server() {
    let clock = Clock::starting_at(T0);
    let intro = start("127.0.0.1:0".parse().unwrap(), clock).await;
    let sub = subscriber(&intro.url());
    let mut view = sub.view();
    let a: Vec<Announcer> = (1..=4).map(|s| announcer(&intro.url(), s, clock)).collect();

    let v = wait_view(&mut view, "4 servers", |v| {
        v.connected && v.servers.len() == 4
    })
    .await;
    assert_eq!(keys(&v), sorted((1..=4).map(key).collect()));
    let s2 = v.servers.get(&key(2)).unwrap();
    assert_eq!(s2.announcement.url, "http://127.0.0.1:10002");
    assert_eq!(s2.announcement.nickname, "storage-2");
    s2.verify().unwrap();

    // Heartbeats keep everyone alive across several TTLs.
    tokio::time::sleep(Duration::from_millis(2 * TTL_MS)).await;
    assert_eq!(view.borrow().servers.len(), 4);

    // Drop server 2 abruptly: it leaves only once its TTL has run out. The bound is taken from
    // its last accepted announcement that we know of, not from the drop: a heartbeat delayed by
    // a loaded machine moves the last announcement further before the drop, and the server then
    // rightly leaves sooner after it. Its seqnum is the clock's time when it was made, and the
    // introducer accepted it (or a later one) no earlier, so the registry cannot expire the
    // server before `seqnum + TTL` on the shared clock, however the tasks are scheduled.
    let mut a = a;
    let dropped = a.remove(1);
    assert_eq!(dropped.node_key(), key(2));
    let last = announced_seqnum(&dropped);
    let t_drop = Instant::now();
    drop(dropped);
    let v = wait_view(&mut view, "server 2 to leave", |v| {
        v.servers.get(&key(2)).is_none()
    })
    .await;
    let took = t_drop.elapsed();
    let left_at = clock.now_ms();
    assert!(
        left_at >= last + TTL_MS,
        "left too early: {} ms after its announcement {last}",
        left_at - last
    );
    // Its last announcement was accepted before the drop (or, in flight, just after), so its
    // TTL runs out about TTL after the drop and the expiry timer fires at that deadline: the
    // 1.5 s over the TTL is for scheduling delay only.
    assert!(
        took <= Duration::from_millis(TTL_MS + 1_500),
        "left too late: {took:?}"
    );
    assert_eq!(keys(&v), sorted(vec![key(1), key(3), key(4)]));
    assert!(v.connected);

    // A clean stop withdraws at once; the others stay. Left by its TTL, server 4 could not go
    // before `seqnum + TTL` of its last announcement (see above): leaving before that proves the
    // withdrawal. Stopping right after a heartbeat was accepted leaves nearly the whole TTL for
    // the withdrawal to reach the subscriber (about 50 ms when measured under load).
    let s4 = a.pop().unwrap();
    let before = announced_seqnum(&s4);
    let mut status = s4.status();
    timeout(
        WAIT,
        status.wait_for(|s| matches!(s, AnnouncerStatus::Announced { seqnum } if *seqnum > before)),
    )
    .await
    .expect("server 4 heartbeats")
    .unwrap();
    let last = announced_seqnum(&s4);
    s4.stop().await;
    let v = wait_view(&mut view, "server 4 to leave", |v| v.servers.len() == 2).await;
    let left_at = clock.now_ms();
    assert!(
        left_at < last + TTL_MS,
        "left {} ms after its announcement {last}, as late as its TTL",
        left_at - last
    );
    assert_eq!(keys(&v), sorted(vec![key(1), key(3)]));

    for x in a {
        x.stop().await;
    }
    sub.stop().await;
    intro.shutdown().await;
}

#[tokio::test]
async fn announcer_and_subscriber_reconnect_after_introducer_restart() {
    let clock = Clock::starting_at(T0);
    let intro = start("127.0.0.1:0".parse().unwrap(), clock).await;
    let addr = intro.addr;
    let url = intro.url();
    let sub = subscriber(&url);
    let mut view = sub.view();
    let ann = announcer(&url, 7, clock);
    let mut status = ann.status();
    let v = wait_view(&mut view, "server 7", |v| v.servers.len() == 1).await;
    assert_eq!(v.snapshots, 1);

    intro.shutdown().await;
    wait_view(&mut view, "disconnect", |v| !v.connected).await;
    // The last known servers are kept while disconnected.
    assert_eq!(keys(&view.borrow()), vec![key(7)]);
    timeout(
        WAIT,
        status.wait_for(|s| matches!(s, AnnouncerStatus::Connecting { .. })),
    )
    .await
    .unwrap()
    .unwrap();

    // Let both sides fail a few times (backoff grows), then restart on the same port.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(matches!(*status.borrow(), AnnouncerStatus::Connecting { attempt } if attempt >= 2));
    let intro = start(addr, clock).await;
    let v = wait_view(&mut view, "resubscribed with server 7", |v| {
        v.connected && v.snapshots >= 2 && v.servers.get(&key(7)).is_some()
    })
    .await;
    assert_eq!(keys(&v), vec![key(7)]);
    timeout(
        WAIT,
        status.wait_for(|s| matches!(s, AnnouncerStatus::Announced { .. })),
    )
    .await
    .unwrap()
    .unwrap();

    ann.stop().await;
    sub.stop().await;
    intro.shutdown().await;
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn raw(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn send(ws: &mut Ws, msg: &ClientMessage) {
    ws.send(Message::text(serde_json::to_string(msg).unwrap()))
        .await
        .unwrap();
}

/// Next text message, skipping pings.
async fn recv(ws: &mut Ws) -> ServerMessage {
    loop {
        match timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

async fn close_code_of(ws: &mut Ws) -> u16 {
    loop {
        match timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

fn announcement(seed: u8, seqnum: u64, ts: u64) -> Announcement {
    Announcement {
        node_key: key(seed),
        seqnum,
        timestamp_ms: ts,
        protocol: 1,
        url: "http://127.0.0.1:9999".into(),
        capacity: 100,
        available: 50,
        nickname: String::new(),
    }
}

#[tokio::test]
async fn forged_and_replayed_announcements_are_rejected() {
    let clock = Clock::starting_at(T0);
    let intro = start("127.0.0.1:0".parse().unwrap(), clock).await;
    let url = intro.url();

    // Watch as a raw subscriber: snapshot first.
    let mut sub = raw(&url).await;
    send(&mut sub, &ClientMessage::Subscribe).await;
    assert_eq!(
        recv(&mut sub).await,
        ServerMessage::Snapshot { servers: vec![] }
    );

    // Forged: claims node 1's key, signed by node 2.
    let mut forged = announcement(2, 1, T0)
        .sign(&SigningKey::from_bytes(&[2; 32]))
        .unwrap();
    forged.announcement.node_key = key(1);
    let mut ws = raw(&url).await;
    send(&mut ws, &ClientMessage::Announce { server: forged }).await;
    match recv(&mut ws).await {
        ServerMessage::Rejected { code, reason, .. } => {
            assert_eq!(code, RejectCode::BadSignature);
            assert!(reason.contains("signature"), "{reason}");
        }
        other => panic!("expected rejection, got {other:?}"),
    }
    assert_eq!(close_code_of(&mut ws).await, close_code::BAD_SIGNATURE);

    // Tampered after signing (URL hijack).
    let mut tampered = announcement(3, 1, T0)
        .sign(&SigningKey::from_bytes(&[3; 32]))
        .unwrap();
    tampered.announcement.url = "http://attacker.example".into();
    let mut ws = raw(&url).await;
    send(&mut ws, &ClientMessage::Announce { server: tampered }).await;
    assert!(matches!(
        recv(&mut ws).await,
        ServerMessage::Rejected {
            code: RejectCode::BadSignature,
            ..
        }
    ));
    assert_eq!(close_code_of(&mut ws).await, close_code::BAD_SIGNATURE);

    // A genuine announcement is accepted and reaches the subscriber.
    let good = announcement(4, 10, T0)
        .sign(&SigningKey::from_bytes(&[4; 32]))
        .unwrap();
    let mut ws = raw(&url).await;
    send(
        &mut ws,
        &ClientMessage::Announce {
            server: good.clone(),
        },
    )
    .await;
    assert_eq!(
        recv(&mut ws).await,
        ServerMessage::Accepted {
            seqnum: 10,
            ttl_ms: TTL_MS
        }
    );
    assert_eq!(
        recv(&mut sub).await,
        ServerMessage::Joined {
            server: good.clone()
        }
    );

    // Replaying it (same seqnum) on another connection is refused and says where to continue.
    let mut replay = raw(&url).await;
    send(
        &mut replay,
        &ClientMessage::Announce {
            server: good.clone(),
        },
    )
    .await;
    assert_eq!(
        recv(&mut replay).await,
        ServerMessage::Rejected {
            code: RejectCode::StaleSeqnum,
            reason: format!(
                "seqnum 10 is not above 10 already accepted for node {}",
                key(4)
            ),
            last_seqnum: Some(10),
        }
    );
    assert_eq!(close_code_of(&mut replay).await, close_code::STALE_SEQNUM);

    // One connection cannot announce two keys.
    let other = announcement(5, 1, T0)
        .sign(&SigningKey::from_bytes(&[5; 32]))
        .unwrap();
    send(&mut ws, &ClientMessage::Announce { server: other }).await;
    assert!(matches!(
        recv(&mut ws).await,
        ServerMessage::Rejected {
            code: RejectCode::KeyChanged,
            ..
        }
    ));
    assert_eq!(close_code_of(&mut ws).await, close_code::KEY_CHANGED);

    // Withdraw as the first message is refused; after an accepted announcement it removes
    // the server at once and closes normally.
    let mut w = raw(&url).await;
    send(&mut w, &ClientMessage::Withdraw).await;
    assert!(matches!(
        recv(&mut w).await,
        ServerMessage::Rejected {
            code: RejectCode::BadMessage,
            ..
        }
    ));
    let s6 = SigningKey::from_bytes(&[6; 32]);
    let mut w = raw(&url).await;
    send(
        &mut w,
        &ClientMessage::Announce {
            server: announcement(6, 1, T0).sign(&s6).unwrap(),
        },
    )
    .await;
    assert!(matches!(
        recv(&mut w).await,
        ServerMessage::Accepted { seqnum: 1, .. }
    ));
    assert!(
        matches!(recv(&mut sub).await, ServerMessage::Joined { server } if server.node_key() == key(6))
    );
    send(&mut w, &ClientMessage::Withdraw).await;
    assert_eq!(close_code_of(&mut w).await, 1000);
    assert_eq!(
        recv(&mut sub).await,
        ServerMessage::Left { node_key: key(6) }
    );

    // Garbage is a bad message.
    let mut junk = raw(&url).await;
    junk.send(Message::text("{\"type\":\"hello\"}"))
        .await
        .unwrap();
    assert!(matches!(
        recv(&mut junk).await,
        ServerMessage::Rejected {
            code: RejectCode::BadMessage,
            ..
        }
    ));
    assert_eq!(close_code_of(&mut junk).await, close_code::BAD_MESSAGE);

    // Only the genuine server is live; it leaves after its TTL and the subscriber hears it.
    assert_eq!(
        recv(&mut sub).await,
        ServerMessage::Left { node_key: key(4) }
    );

    // Shutdown closes subscribers with 1001.
    intro.shutdown().await;
    assert_eq!(close_code_of(&mut sub).await, u16::from(CloseCode::Away));
}

#[tokio::test]
async fn http_snapshot_and_info() {
    use axum::body::{to_bytes, Body};
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    let state = IntroducerState::new(IntroducerConfig::default());
    let app = lafs_introducer::app(state);
    let resp = app
        .clone()
        .oneshot(Request::get("/v1/servers").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    assert_eq!(
        serde_json::from_slice::<ServerMessage>(&body).unwrap(),
        ServerMessage::Snapshot { servers: vec![] }
    );
    let resp = app
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let body: serde_json::Value =
        serde_json::from_slice(&to_bytes(resp.into_body(), 1 << 20).await.unwrap()).unwrap();
    assert_eq!(body["service"], "lafs-introducer");
    assert_eq!(body["endpoint"], INTRODUCER_PATH);
    // Without an upgrade the WebSocket endpoint refuses plain GETs.
    let resp = app
        .oneshot(Request::get(INTRODUCER_PATH).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(resp.status().is_client_error());
}

#[tokio::test(start_paused = true)]
async fn announcer_backs_off_exponentially_while_the_introducer_is_unreachable() {
    // A port nothing listens on: every attempt is refused at once, so only the backoff paces
    // the retries (virtual time).
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}{}", free.local_addr().unwrap(), INTRODUCER_PATH);
    drop(free);
    let cfg = AnnouncerConfig {
        reply_timeout: Duration::from_secs(1),
        backoff: BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1600),
        },
        seed: 5,
        ..AnnouncerConfig::new(url)
    };
    let a = Announcer::spawn(
        cfg,
        SigningKey::from_bytes(&[1; 32]),
        Clock::starting_at(T0),
        || ServerInfo {
            url: "http://127.0.0.1:1".into(),
            protocol: 1,
            capacity: 1,
            available: 1,
            nickname: String::new(),
        },
    );
    let status = a.status();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let attempts = match *status.borrow() {
        AnnouncerStatus::Connecting { attempt } => attempt,
        ref other => panic!("unexpected status {other:?}"),
    };
    // Delays are in [c/2, c] for c = 100, 200, 400, 800, 1600, 1600, ... ms: between 9 and 16
    // attempts fit in 10 s (a fixed 100 ms retry would make 100).
    assert!((8..=17).contains(&attempts), "{attempts} attempts in 10 s");
    a.stop().await;
    assert_eq!(*status.borrow(), AnnouncerStatus::Stopped);
}

#[tokio::test]
async fn connections_beyond_the_cap_get_503() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}{}", listener.local_addr().unwrap(), INTRODUCER_PATH);
    let state = IntroducerState::new(IntroducerConfig {
        max_connections: 1,
        ..config()
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, state, async {
        let _ = stopped.await;
    }));
    let mut first = raw(&url).await;
    send(&mut first, &ClientMessage::Subscribe).await;
    assert_eq!(
        recv(&mut first).await,
        ServerMessage::Snapshot { servers: vec![] }
    );
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        other => panic!("expected 503, got {other:?}"),
    }
    // Closing the first frees the slot.
    first.close(None).await.unwrap();
    drop(first);
    let deadline = Instant::now() + WAIT;
    let mut second = loop {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(url.as_str()).await {
            break ws;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    send(&mut second, &ClientMessage::Subscribe).await;
    assert!(matches!(
        recv(&mut second).await,
        ServerMessage::Snapshot { .. }
    ));
    let _ = stop.send(());
    timeout(WAIT, task).await.unwrap().unwrap().unwrap();
}
