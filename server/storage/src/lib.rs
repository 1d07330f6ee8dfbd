//! The lafs storage server: an HTTP API (axum) over a [`ShareStore`].
//!
//! * [`app`] builds the router (`/storage/v1/...` and `/metrics`) for a [`AppState`];
//! * [`serve`] runs it on a listener with header/body timeouts, a connection cap, an idle-upload
//!   sweeper, and graceful shutdown;
//! * [`store`] holds the share stores: [`FsStore`] (on disk, crash-safe), [`MemoryStore`] and
//!   the fault-injecting [`FaultyStore`].
//!
//! The protocol is specified in `docs/spec/storage-protocol.md`; request signing in
//! `docs/spec/signed-requests.md`. Reads are open to anyone; every write is a signed request.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use lafs_storage::{serve, AppState, Config, FsOptions, FsStore};
//!
//! let store = FsStore::open("/var/lib/lafs/storage", FsOptions::default())?;
//! let state = AppState::new(Config::default(), Arc::new(store))?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3456").await?;
//! serve(listener, state, std::future::pending()).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod handlers;
mod metrics;
pub mod mutable;
mod ranges;
pub mod store;
mod uploads;
mod verify;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use lafs_proto::signing::DEFAULT_MAX_SKEW_SECS;
use lafs_proto::{AccountId, ReplayGuard};
use lafs_serve::{serve_connections, Limits};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use error::ApiError;
pub use metrics::Metrics;
pub use mutable::{
    write_shares, FsMutableStore, MemoryMutableStore, MutableStore, SharePatch, WriteError, Written,
};
pub use ranges::RangeSet;
pub use store::{
    FaultPlan, FaultyStore, FsOptions, FsStore, MemoryStore, ShareStore, StoreError,
    DEFAULT_FLUSH_BEHIND,
};

use uploads::Uploads;

/// Server configuration. `Default` gives sensible production values.
#[derive(Debug, Clone)]
pub struct Config {
    /// Refuse all uploads (reads, listing and advisories still work).
    pub read_only: bool,
    /// Audience that signed requests must name; `None` uses the store's persistent id.
    pub server_id: Option<String>,
    /// If set, only these accounts may write; otherwise any valid key may (no accounting yet).
    pub allowed_accounts: Option<BTreeSet<AccountId>>,
    /// Largest request body (bytes of one write).
    pub max_request_body: u64,
    /// Largest share accepted.
    pub max_share_size: u64,
    /// Largest number of ranges in one read request.
    pub max_read_ranges: u32,
    /// Largest number of data bytes one read request may return.
    pub max_read_bytes: u64,
    /// Idle time after which an upload is discarded.
    pub upload_ttl: Duration,
    /// Largest number of concurrent upload sessions.
    pub max_uploads: usize,
    /// Accepted clock difference for signed requests, seconds.
    pub max_clock_skew_secs: u64,
    /// Capacity of the replay cache (unexpired nonces).
    pub replay_cache_capacity: usize,
    /// Time allowed for a client to send the request line and headers.
    pub header_read_timeout: Duration,
    /// Time allowed to receive a request body.
    pub body_read_timeout: Duration,
    /// Time allowed for a whole request.
    pub request_timeout: Duration,
    /// Largest number of open connections; more wait in the accept queue.
    pub max_connections: usize,
    /// Accept writes of mutable shares (needs a store attached with
    /// [`AppState::enable_mutable`]; reads of held mutable shares work either way).
    pub accepts_mutable: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            read_only: false,
            server_id: None,
            allowed_accounts: None,
            max_request_body: 4 << 20,
            max_share_size: 1 << 40,
            max_read_ranges: 256,
            max_read_bytes: 16 << 20,
            upload_ttl: Duration::from_secs(3600),
            max_uploads: 10_000,
            max_clock_skew_secs: DEFAULT_MAX_SKEW_SECS,
            replay_cache_capacity: 1 << 20,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(300),
            max_connections: 1024,
            accepts_mutable: false,
        }
    }
}

/// Wall clock in Unix seconds (injectable for tests of signature timestamps).
pub type WallClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Shared state of a running server. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    server_id: String,
    store: Arc<dyn ShareStore>,
    uploads: Arc<Uploads>,
    replay: Mutex<ReplayGuard>,
    metrics: Metrics,
    clock: WallClock,
    mutable: std::sync::OnceLock<mutable::MutableShares>,
}

fn system_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl AppState {
    /// State over `store`, resuming the upload sessions it holds.
    pub fn new(config: Config, store: Arc<dyn ShareStore>) -> Result<Self, StoreError> {
        Self::with_clock(config, store, Arc::new(system_clock))
    }

    /// Like [`AppState::new`] with an explicit wall clock (Unix seconds).
    pub fn with_clock(
        config: Config,
        store: Arc<dyn ShareStore>,
        clock: WallClock,
    ) -> Result<Self, StoreError> {
        let uploads = Arc::new(Uploads::new(config.upload_ttl));
        uploads.restore(store.load_uploads()?, tokio::time::Instant::now());
        let server_id = config
            .server_id
            .clone()
            .unwrap_or_else(|| store.server_id());
        let replay = Mutex::new(ReplayGuard::new(config.replay_cache_capacity));
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                server_id,
                store,
                uploads,
                replay,
                metrics: Metrics::default(),
                clock,
                mutable: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The audience signed requests must name.
    pub fn server_id(&self) -> &str {
        &self.inner.server_id
    }

    /// The share store.
    pub fn store(&self) -> &Arc<dyn ShareStore> {
        &self.inner.store
    }

    /// Attaches the store of mutable shares (once; returns `false` if one was already
    /// attached). Until then the mutable endpoints answer 501.
    pub fn enable_mutable(&self, store: Arc<dyn MutableStore>) -> bool {
        self.inner
            .mutable
            .set(mutable::MutableShares::new(store))
            .is_ok()
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Number of upload sessions in progress.
    pub fn active_uploads(&self) -> usize {
        self.inner.uploads.len()
    }

    /// Discards upload sessions idle for longer than the TTL (and their data). Returns how many.
    /// [`serve`] calls this periodically.
    pub async fn expire_idle_uploads(&self) -> usize {
        let ids = self.inner.uploads.expire(tokio::time::Instant::now());
        let n = ids.len();
        if n > 0 {
            Metrics::add(&self.inner.metrics.uploads_expired, n as u64);
            let store = Arc::clone(&self.inner.store);
            let res = tokio::task::spawn_blocking(move || {
                for id in ids {
                    if let Err(e) = store.remove_upload(id) {
                        if e != StoreError::NotFound {
                            tracing::warn!(upload = %id, error = %e, "could not delete expired upload");
                        }
                    }
                }
            })
            .await;
            if let Err(e) = res {
                tracing::warn!(error = %e, "expiry task failed");
            }
            tracing::info!(count = n, "expired idle uploads");
        }
        n
    }

    fn now_unix(&self) -> u64 {
        (self.inner.clock)()
    }
}

/// The router: every endpoint of `/storage/v1/` plus `/metrics`, with CORS and timeouts.
pub fn app(state: AppState) -> Router {
    handlers::router(state)
}

/// Serves `app(state)` on `listener` until `shutdown` completes, then stops accepting, lets
/// open requests finish (graceful shutdown) and returns.
///
/// Each connection gets the configured header-read timeout (slow clients are disconnected);
/// at most `max_connections` are served at once. Idle uploads are swept every
/// `upload_ttl / 4` (at least every second). The connection loop is
/// [`lafs_serve::serve_connections`], which says what happens to open connections at shutdown.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = state.config().clone();
    let router = app(state.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let sweeper = {
        let state = state.clone();
        let mut stop = stop_rx;
        let period = (config.upload_ttl / 4).max(Duration::from_secs(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = tick.tick() => { state.expire_idle_uploads().await; }
                    _ = stop.changed() => break,
                }
            }
        })
    };
    let limits = Limits {
        max_connections: config.max_connections,
        header_read_timeout: config.header_read_timeout,
    };
    // The sweeper stops when `shutdown` completes, while open requests drain.
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    serve_connections(listener, router, limits, shutdown).await;
    let _ = sweeper.await;
    Ok(())
}
