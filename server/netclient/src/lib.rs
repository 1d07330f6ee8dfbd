//! The native driver of the lafs grid client.
//!
//! * [`HttpTransport`] implements [`lafs_client::Transport`] over HTTP with reqwest: every
//!   request has a timeout, writes are signed with the node's account key
//!   ([`lafs_proto::signing`]), read responses are parsed without copying.
//! * [`Directory`] says which storage servers exist and where: [`Grid`] keeps the live set
//!   from the introducer (a reconnecting [`lafs_introducer::subscriber::Subscriber`]);
//!   [`StaticDirectory`] is a fixed list (tests, benchmarks).
//! * [`connect`] puts both together into a ready [`lafs_client::Client`].
//!
//! All the upload/download/check logic lives in `lafs-client`; this crate only moves bytes.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod grid;
mod http;

pub use grid::{Directory, Grid, StaticDirectory};
pub use http::{HttpConfig, HttpTransport};

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use lafs_client::{BoxFut, Client, ClientConfig, Spawn, Spawner};

/// Errors of this crate (setting up; the grid operations return [`lafs_client::Error`]).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    /// Fewer servers than wanted appeared within the time allowed.
    #[error("only {have} storage server(s) known after {waited:?}, {want} wanted")]
    TooFewServers {
        /// Servers known.
        have: usize,
        /// Servers wanted.
        want: usize,
        /// Time waited.
        waited: Duration,
    },
}

/// Runs the client's spawned work (a download's pipelined segments) on the current tokio
/// runtime, so verification and decoding use every worker thread.
pub struct TokioSpawner(tokio::runtime::Handle);

impl Spawn for TokioSpawner {
    fn spawn(&self, fut: BoxFut<()>) {
        self.0.spawn(fut);
    }
}

/// A [`Spawner`] on the current tokio runtime. Panics outside a runtime.
pub fn tokio_spawner() -> Spawner {
    Spawner(Arc::new(TokioSpawner(tokio::runtime::Handle::current())))
}

/// Subscribes to the introducer at `introducer_url`, waits until at least `min_servers`
/// storage servers are known (at most `wait`), and returns a client signing with `account`.
/// The returned [`Grid`] keeps the server set live; keep it alive as long as the client.
pub async fn connect(
    introducer_url: &str,
    account: SigningKey,
    min_servers: usize,
    wait: Duration,
    mut config: ClientConfig,
) -> Result<(Client, Arc<Grid>), Error> {
    if config.spawner.is_none() {
        config.spawner = Some(tokio_spawner());
    }
    let grid = Arc::new(Grid::subscribe(introducer_url));
    grid.wait_for(min_servers, wait).await?;
    let transport = HttpTransport::new(grid.clone(), account, HttpConfig::default())?;
    Ok((Client::new(Arc::new(transport), config), grid))
}
