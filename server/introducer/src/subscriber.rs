//! Client side: keep a live, verified view of the grid's storage servers.
//!
//! [`Subscriber::spawn`] starts a task that connects to the introducer URL, subscribes, and
//! applies every message to a [`ServerSet`] (which verifies each announcement's signature), then
//! publishes the result as a [`ServerView`] on a `watch` channel. When the connection fails, is
//! closed, or stays silent longer than `idle_timeout` (the introducer pings every 20 s by
//! default), the task reconnects with capped, jittered exponential backoff. While disconnected
//! the view keeps the last known servers with `connected: false`; the snapshot received on
//! reconnection replaces them.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info, warn};

use crate::backoff::{Backoff, BackoffConfig};
use lafs_proto::introducer::{Change, ClientMessage, ServerMessage, ServerSet};

/// Subscriber settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberConfig {
    /// The introducer URL (`ws://host:port/v1/introducer`).
    pub introducer_url: String,
    /// Reconnect if nothing (not even a ping) arrives for this long.
    pub idle_timeout: Duration,
    /// Timeout of the TCP/WebSocket handshake.
    pub connect_timeout: Duration,
    /// Reconnect backoff.
    pub backoff: BackoffConfig,
    /// Seed of the backoff jitter.
    pub seed: u64,
}

impl SubscriberConfig {
    /// Defaults for `introducer_url`: idle timeout 60 s, connect timeout 10 s, default backoff.
    pub fn new(introducer_url: impl Into<String>) -> Self {
        Self {
            introducer_url: introducer_url.into(),
            idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            backoff: BackoffConfig::default(),
            seed: fastrand::u64(..),
        }
    }
}

/// The subscriber's current knowledge of the grid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerView {
    /// True between receiving a snapshot and losing the connection.
    pub connected: bool,
    /// The live servers (last known ones while disconnected). Every entry was verified.
    pub servers: ServerSet,
    /// Number of snapshots received so far (increases on every (re)connection).
    pub snapshots: u64,
}

/// Handle to a running subscriber task. Dropping it aborts the task.
pub struct Subscriber {
    view: watch::Receiver<ServerView>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Subscriber {
    /// Starts subscribing. Must be called inside a tokio runtime.
    pub fn spawn(config: SubscriberConfig) -> Self {
        let (view_tx, view) = watch::channel(ServerView::default());
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(config, view_tx, stop_rx));
        Self {
            view,
            stop,
            task: Some(task),
        }
    }

    /// A receiver of the live view (use `wait_for` / `changed`).
    pub fn view(&self) -> watch::Receiver<ServerView> {
        self.view.clone()
    }

    /// Closes the connection and waits for the task to end.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn run(
    config: SubscriberConfig,
    view: watch::Sender<ServerView>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(config.backoff, config.seed);
    loop {
        tokio::select! {
            () = session(&config, &view, &mut backoff) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        view.send_modify(|v| v.connected = false);
        let delay = backoff.next_delay();
        debug!(?delay, url = %config.introducer_url, "subscriber reconnecting after backoff");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    view.send_modify(|v| v.connected = false);
}

async fn session(
    config: &SubscriberConfig,
    view: &watch::Sender<ServerView>,
    backoff: &mut Backoff,
) {
    let connect = tokio_tungstenite::connect_async(config.introducer_url.as_str());
    let mut ws = match tokio::time::timeout(config.connect_timeout, connect).await {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(e)) => {
            debug!(error = %e, url = %config.introducer_url, "subscriber cannot connect");
            return;
        }
        Err(_) => return,
    };
    let Ok(hello) = serde_json::to_string(&ClientMessage::Subscribe) else {
        return;
    };
    if ws.send(Message::text(hello)).await.is_err() {
        return;
    }
    let mut synced = false;
    loop {
        let msg = match tokio::time::timeout(config.idle_timeout, ws.next()).await {
            Err(_) => {
                warn!(url = %config.introducer_url, "introducer silent too long; reconnecting");
                return;
            }
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(Message::Close(frame)))) => {
                debug!(?frame, "introducer closed the subscription");
                return;
            }
            Ok(Some(Err(_)) | None) => return,
            Ok(Some(Ok(_))) => continue,
        };
        let msg = match serde_json::from_str::<ServerMessage>(&msg) {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "unparseable message from introducer; reconnecting");
                return;
            }
        };
        let is_snapshot = matches!(msg, ServerMessage::Snapshot { .. });
        if !synced && !is_snapshot {
            warn!("introducer did not start with a snapshot; reconnecting");
            return;
        }
        let mut result = Ok(Vec::new());
        view.send_modify(|v| {
            result = v.servers.apply(&msg);
            if is_snapshot && result.is_ok() {
                v.connected = true;
                v.snapshots += 1;
            }
        });
        match result {
            Ok(changes) => {
                if is_snapshot && !synced {
                    synced = true;
                    backoff.reset();
                    info!(url = %config.introducer_url, servers = view.borrow().servers.len(), "subscribed to introducer");
                }
                for c in changes {
                    match c {
                        Change::Joined(k) => info!(node = %k, "storage server available"),
                        Change::Updated(k) => debug!(node = %k, "storage server updated"),
                        Change::Left(k) => info!(node = %k, "storage server gone"),
                    }
                }
            }
            // A bad announcement means the introducer is lying or broken: drop the connection
            // (and its partial view) rather than act on it.
            Err(e) => {
                warn!(error = %e, "introducer sent an invalid announcement; reconnecting");
                return;
            }
        }
    }
}
