//! Which storage servers exist and where they are.

use std::time::Duration;

use lafs_client::ServerId;
use lafs_introducer::subscriber::{ServerView, Subscriber, SubscriberConfig};
use tokio::sync::watch;

use crate::Error;

/// A source of storage servers: identity (node key) and base URL of each.
pub trait Directory: Send + Sync {
    /// The servers known now.
    fn servers(&self) -> Vec<ServerId>;
    /// Base URL of `server` (`http://host:port`), if known.
    fn url(&self, server: &ServerId) -> Option<String>;
}

/// A fixed list of servers.
#[derive(Debug, Clone, Default)]
pub struct StaticDirectory {
    servers: Vec<(ServerId, String)>,
}

impl StaticDirectory {
    /// The given (identity, base URL) pairs.
    pub fn new(servers: Vec<(ServerId, String)>) -> Self {
        Self { servers }
    }
}

impl Directory for StaticDirectory {
    fn servers(&self) -> Vec<ServerId> {
        self.servers.iter().map(|(id, _)| *id).collect()
    }

    fn url(&self, server: &ServerId) -> Option<String> {
        self.servers
            .iter()
            .find(|(id, _)| id == server)
            .map(|(_, u)| u.clone())
    }
}

/// The live set of storage servers announced to an introducer. Every announcement is
/// signature-checked by the subscriber; the set follows joins, updates and departures, and
/// survives introducer restarts (the last known servers stay usable while reconnecting).
pub struct Grid {
    subscriber: Subscriber,
    view: watch::Receiver<ServerView>,
}

impl Grid {
    /// Starts subscribing to `introducer_url` (`ws://host:port/v1/introducer`). Must be
    /// called inside a tokio runtime.
    pub fn subscribe(introducer_url: &str) -> Self {
        let subscriber = Subscriber::spawn(SubscriberConfig::new(introducer_url));
        let view = subscriber.view();
        Self { subscriber, view }
    }

    /// Waits until at least `n` servers are known, for at most `wait`.
    pub async fn wait_for(&self, n: usize, wait: Duration) -> Result<(), Error> {
        let mut rx = self.view.clone();
        let r = tokio::time::timeout(wait, rx.wait_for(|v| v.servers.len() >= n)).await;
        match r {
            Ok(Ok(_)) => Ok(()),
            _ => Err(Error::TooFewServers {
                have: self.view.borrow().servers.len(),
                want: n,
                waited: wait,
            }),
        }
    }

    /// Whether the subscriber is connected to the introducer now.
    pub fn connected(&self) -> bool {
        self.view.borrow().connected
    }

    /// Stops the subscription.
    pub async fn stop(self) {
        self.subscriber.stop().await;
    }
}

impl Directory for Grid {
    fn servers(&self) -> Vec<ServerId> {
        self.view
            .borrow()
            .servers
            .servers()
            .map(|s| ServerId(s.announcement.node_key.0))
            .collect()
    }

    fn url(&self, server: &ServerId) -> Option<String> {
        self.view
            .borrow()
            .servers
            .servers()
            .find(|s| s.announcement.node_key.0 == server.0)
            .map(|s| s.announcement.url.clone())
    }
}
