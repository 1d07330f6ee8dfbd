//! Storage-server side: keep this server announced to an introducer.
//!
//! [`Announcer::spawn`] starts a task that connects to the introducer URL, sends a signed
//! announcement, re-announces every heartbeat (at most a third of the introducer's TTL, so two
//! heartbeats may be lost before the server expires), and reconnects with capped, jittered
//! exponential backoff whenever the connection fails, the introducer restarts, or an
//! announcement is refused. Its progress is observable through a `watch` of
//! [`AnnouncerStatus`].
//!
//! Sequence numbers are `max(previous + 1, now in ms)`, so they keep increasing across restarts
//! of the storage server as long as its clock does not go back; if the introducer still reports
//! a stale seqnum, the announcer continues above the `last_seqnum` it is told.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info, warn};

use crate::backoff::{Backoff, BackoffConfig};
use crate::Clock;
use lafs_proto::introducer::{Announcement, ClientMessage, NodeKey, RejectCode, ServerMessage};

/// Announcer settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnouncerConfig {
    /// The introducer URL (`ws://host:port/v1/introducer`).
    pub introducer_url: String,
    /// Longest interval between announcements (shortened to a third of the introducer's TTL).
    pub heartbeat: Duration,
    /// How long to wait for the TCP/WebSocket handshake and for each `accepted` reply.
    pub reply_timeout: Duration,
    /// Reconnect backoff.
    pub backoff: BackoffConfig,
    /// Seed of the backoff jitter.
    pub seed: u64,
}

impl AnnouncerConfig {
    /// Defaults for `introducer_url`: heartbeat 30 s, reply timeout 10 s, default backoff.
    pub fn new(introducer_url: impl Into<String>) -> Self {
        Self {
            introducer_url: introducer_url.into(),
            heartbeat: Duration::from_secs(30),
            reply_timeout: Duration::from_secs(10),
            backoff: BackoffConfig::default(),
            seed: fastrand::u64(..),
        }
    }
}

/// What a storage server says about itself; the announcer adds key, seqnum and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// Base URL of the storage HTTP API.
    pub url: String,
    /// Storage protocol version.
    pub protocol: u32,
    /// Total space offered, bytes.
    pub capacity: u64,
    /// Space available, bytes.
    pub available: u64,
    /// Human-readable name.
    pub nickname: String,
}

/// Where the announcer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnnouncerStatus {
    /// Connecting; `attempt` failed attempts since the last success.
    Connecting {
        /// Failed attempts so far.
        attempt: u32,
    },
    /// The introducer accepted the announcement with this seqnum.
    Announced {
        /// Latest accepted seqnum.
        seqnum: u64,
    },
    /// The introducer refused the announcement (the announcer retries after a backoff).
    Rejected {
        /// Why.
        code: RejectCode,
        /// Human-readable reason.
        reason: String,
    },
    /// Stopped by [`Announcer::stop`].
    Stopped,
}

/// Handle to a running announcer task. Dropping it aborts the task (the connection drops and
/// the server expires from the introducer after its TTL); [`Self::stop`] withdraws the server
/// (it leaves the introducer's set at once) and closes the connection.
pub struct Announcer {
    status: watch::Receiver<AnnouncerStatus>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    node_key: NodeKey,
}

impl Announcer {
    /// Starts announcing. `info` is called before every announcement (so capacity changes
    /// reach the introducer within one heartbeat). Must be called inside a tokio runtime.
    pub fn spawn<F>(config: AnnouncerConfig, key: SigningKey, clock: Clock, info: F) -> Self
    where
        F: Fn() -> ServerInfo + Send + Sync + 'static,
    {
        let (status_tx, status) = watch::channel(AnnouncerStatus::Connecting { attempt: 0 });
        let (stop, stop_rx) = watch::channel(false);
        let node_key = NodeKey::from_signing_key(&key);
        let task = tokio::spawn(run(config, Arc::new(key), clock, info, status_tx, stop_rx));
        Self {
            status,
            stop,
            task: Some(task),
            node_key,
        }
    }

    /// The node key being announced.
    pub fn node_key(&self) -> NodeKey {
        self.node_key
    }

    /// A receiver of status changes.
    pub fn status(&self) -> watch::Receiver<AnnouncerStatus> {
        self.status.clone()
    }

    /// Withdraws the server from the introducer (if connected), closes the connection and waits
    /// for the task to end.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

enum SessionEnd {
    Stopped,
    Failed,
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn run<F>(
    config: AnnouncerConfig,
    key: Arc<SigningKey>,
    clock: Clock,
    info: F,
    status: watch::Sender<AnnouncerStatus>,
    mut stop: watch::Receiver<bool>,
) where
    F: Fn() -> ServerInfo + Send + Sync + 'static,
{
    let mut backoff = Backoff::new(config.backoff, config.seed);
    let mut last_seqnum = 0u64;
    loop {
        status.send_replace(AnnouncerStatus::Connecting {
            attempt: backoff.attempts(),
        });
        let ctx = Ctx {
            config: &config,
            key: &key,
            clock: &clock,
            info: &info,
            status: &status,
        };
        let end = session(&ctx, &mut last_seqnum, &mut backoff, &mut stop).await;
        if let SessionEnd::Stopped = end {
            break;
        }
        let delay = backoff.next_delay();
        debug!(?delay, url = %config.introducer_url, "announcer reconnecting after backoff");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(&mut stop) => break,
        }
    }
    status.send_replace(AnnouncerStatus::Stopped);
}

/// What a session reads but does not change.
struct Ctx<'a, F> {
    config: &'a AnnouncerConfig,
    key: &'a SigningKey,
    clock: &'a Clock,
    info: &'a F,
    status: &'a watch::Sender<AnnouncerStatus>,
}

async fn session<F>(
    ctx: &Ctx<'_, F>,
    last_seqnum: &mut u64,
    backoff: &mut Backoff,
    stop: &mut watch::Receiver<bool>,
) -> SessionEnd
where
    F: Fn() -> ServerInfo,
{
    let Ctx {
        config,
        key,
        clock,
        info,
        status,
    } = *ctx;
    let connect = tokio_tungstenite::connect_async(config.introducer_url.as_str());
    let connect = tokio::select! {
        c = tokio::time::timeout(config.reply_timeout, connect) => c,
        () = stopped(stop) => return SessionEnd::Stopped,
    };
    let mut ws = match connect {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(e)) => {
            debug!(error = %e, url = %config.introducer_url, "announcer cannot connect");
            return SessionEnd::Failed;
        }
        Err(_) => {
            debug!(url = %config.introducer_url, "announcer connect timed out");
            return SessionEnd::Failed;
        }
    };
    loop {
        let i = info();
        let now = clock.now_ms();
        let seqnum = last_seqnum.saturating_add(1).max(now);
        let ann = Announcement {
            node_key: NodeKey::from_signing_key(key),
            seqnum,
            timestamp_ms: now,
            protocol: i.protocol,
            url: i.url,
            capacity: i.capacity,
            available: i.available,
            nickname: i.nickname,
        };
        let signed = match ann.sign(key) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot build a valid announcement");
                status.send_replace(AnnouncerStatus::Rejected {
                    code: RejectCode::InvalidField,
                    reason: e.to_string(),
                });
                return SessionEnd::Failed;
            }
        };
        *last_seqnum = seqnum;
        let json = match serde_json::to_string(&ClientMessage::Announce { server: signed }) {
            Ok(j) => j,
            Err(_) => return SessionEnd::Failed,
        };
        if ws.send(Message::text(json)).await.is_err() {
            return SessionEnd::Failed;
        }
        // Wait for the reply, answering pings meanwhile.
        let reply = tokio::time::timeout(config.reply_timeout, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        return serde_json::from_str::<ServerMessage>(&t).ok()
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
                    Some(Ok(_)) => {}
                }
            }
        });
        let reply = tokio::select! {
            r = reply => r,
            () = stopped(stop) => return SessionEnd::Stopped,
        };
        let heartbeat = match reply {
            Ok(Some(ServerMessage::Accepted { seqnum: s, ttl_ms })) if s == seqnum => {
                if !matches!(*status.borrow(), AnnouncerStatus::Announced { .. }) {
                    info!(url = %config.introducer_url, seqnum, "announced to introducer");
                }
                status.send_replace(AnnouncerStatus::Announced { seqnum });
                backoff.reset();
                config
                    .heartbeat
                    .min(Duration::from_millis(ttl_ms / 3).max(Duration::from_millis(1)))
            }
            Ok(Some(ServerMessage::Rejected {
                code,
                reason,
                last_seqnum: last,
            })) => {
                warn!(?code, %reason, "introducer refused our announcement");
                if let Some(l) = last {
                    *last_seqnum = (*last_seqnum).max(l);
                }
                status.send_replace(AnnouncerStatus::Rejected { code, reason });
                return SessionEnd::Failed;
            }
            Ok(_) | Err(_) => return SessionEnd::Failed,
        };
        // Idle until the next heartbeat, reading so pings are answered and a close is noticed.
        let idle = tokio::time::sleep(heartbeat);
        tokio::pin!(idle);
        loop {
            tokio::select! {
                _ = &mut idle => break,
                m = ws.next() => match m {
                    Some(Ok(Message::Close(frame))) => {
                        debug!(?frame, "introducer closed the announcer connection");
                        return SessionEnd::Failed;
                    }
                    Some(Err(_)) | None => return SessionEnd::Failed,
                    Some(Ok(_)) => {}
                },
                () = stopped(stop) => {
                    withdraw(&mut ws, config.reply_timeout).await;
                    return SessionEnd::Stopped;
                }
            }
        }
    }
}

/// Asks the introducer to drop this server now (rather than after its TTL) and waits, at most
/// `limit`, for it to close the connection.
async fn withdraw<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, limit: Duration)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Ok(json) = serde_json::to_string(&ClientMessage::Withdraw) else {
        return;
    };
    if ws.send(Message::text(json)).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(limit, async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Close(_) = m {
                break;
            }
        }
    })
    .await;
    debug!("withdrawn from the introducer");
}
