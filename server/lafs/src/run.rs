//! `lafs run`: every role of a node in one process, until SIGINT or SIGTERM.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use lafs_introducer::announcer::{Announcer, AnnouncerConfig, ServerInfo};
use lafs_introducer::registry::RegistryConfig;
use lafs_introducer::subscriber::{Subscriber, SubscriberConfig};
use lafs_introducer::{Clock, IntroducerConfig, IntroducerState, INTRODUCER_PATH};
use lafs_storage::{AppState, FsOptions, FsStore, ShareStore};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

use crate::config::{NodeConfig, Role};
use crate::keys::{self, key_path, ACCOUNT_KEY, NODE_KEY};

/// File listing the URLs the running node actually bound (removed on clean exit).
pub(crate) const URL_FILE: &str = "node.url";
/// Subdirectory holding the storage role's shares.
pub(crate) const STORAGE_DIR: &str = "storage";
/// Storage protocol version announced to the introducer.
const STORAGE_PROTOCOL: u32 = 1;
/// How long servers get to finish open requests after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub(crate) fn run(dir: &Path) -> Result<()> {
    let config = NodeConfig::load(dir)?;
    let node_key = keys::load(&key_path(dir, NODE_KEY))?;
    if config.node.roles.contains(&Role::Client) {
        // Not used by any running role yet, but a client node without it is broken.
        keys::load(&key_path(dir, ACCOUNT_KEY))?;
    }
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_node(dir, config, node_key))
}

fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// A future that resolves once `rx` reads true.
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

async fn bind(addr: SocketAddr, role: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("{role}: binding {addr}"))
}

async fn run_node(
    dir: &Path,
    config: NodeConfig,
    node_key: ed25519_dalek::SigningKey,
) -> Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers: JoinSet<(&'static str, std::io::Result<()>)> = JoinSet::new();
    let mut urls = String::new();

    let mut own_introducer = None;
    if let Some(section) = &config.introducer {
        let listener = bind(section.listen, "introducer").await?;
        let addr = listener.local_addr()?;
        let url = format!("ws://{addr}{INTRODUCER_PATH}");
        let state = IntroducerState::new(IntroducerConfig {
            registry: RegistryConfig {
                ttl_ms: section.ttl_secs.saturating_mul(1000),
                ..RegistryConfig::default()
            },
            ..IntroducerConfig::default()
        });
        let shutdown = stopped(stop_rx.clone());
        servers.spawn(async move {
            (
                "introducer",
                lafs_introducer::serve(listener, state, shutdown).await,
            )
        });
        info!(%url, "introducer listening");
        let _ = writeln!(urls, "introducer = \"{url}\"");
        own_introducer = Some(url);
    }
    let introducer_url = config.node.introducer.clone().or(own_introducer);

    let mut announcer = None;
    if let Some(section) = &config.storage {
        let Some(introducer_url) = introducer_url.clone() else {
            bail!("the storage role needs an introducer URL");
        };
        let path = dir.join(STORAGE_DIR);
        let options = FsOptions {
            reserved_space: section.reserved_space,
            ..FsOptions::default()
        };
        let store = FsStore::open(&path, options)
            .with_context(|| format!("opening the share store in {}", path.display()))?;
        let store: Arc<dyn ShareStore> = Arc::new(store);
        let storage_config = lafs_storage::Config {
            read_only: section.read_only,
            accepts_mutable: true,
            ..lafs_storage::Config::default()
        };
        let state = AppState::new(storage_config, Arc::clone(&store))
            .context("starting the storage server")?;
        let mutable_dir = path.join("mutable");
        let mutable = lafs_storage::FsMutableStore::open(&mutable_dir).with_context(|| {
            format!(
                "opening the mutable share store in {}",
                mutable_dir.display()
            )
        })?;
        state.enable_mutable(Arc::new(mutable));
        let listener = bind(section.listen, "storage").await?;
        let addr = listener.local_addr()?;
        let url = match &section.url {
            Some(u) => u.clone(),
            None if addr.ip().is_unspecified() => {
                bail!("storage listens on {addr} (all interfaces): set [storage] url to the URL clients should use")
            }
            None => format!("http://{addr}"),
        };
        let shutdown = stopped(stop_rx.clone());
        servers.spawn(async move {
            (
                "storage",
                lafs_storage::serve(listener, state, shutdown).await,
            )
        });
        info!(%url, "storage server listening");
        let _ = writeln!(urls, "storage = \"{url}\"");

        let nickname = config.node.nickname.clone();
        let read_only = section.read_only;
        let info = move || {
            let (capacity, available) = match store.space() {
                // A read-only server has no room for new shares.
                Ok(s) if read_only => (s.total, 0),
                Ok(s) => (s.total, s.available.min(s.total)),
                Err(e) => {
                    warn!(error = %e, "cannot read free space; announcing none");
                    (0, 0)
                }
            };
            ServerInfo {
                url: url.clone(),
                protocol: STORAGE_PROTOCOL,
                capacity,
                available,
                nickname: nickname.clone(),
            }
        };
        announcer = Some(Announcer::spawn(
            AnnouncerConfig::new(introducer_url),
            node_key.clone(),
            Clock::system(),
            info,
        ));
    }

    let mut subscriber = None;
    if config.node.roles.contains(&Role::Client) {
        let Some(introducer_url) = introducer_url.clone() else {
            bail!("the client role needs an introducer URL");
        };
        info!(url = %introducer_url, "client subscribing to the introducer");
        subscriber = Some(Subscriber::spawn(SubscriberConfig::new(introducer_url)));
    }

    write_url_file(dir, &urls)?;
    print!("{urls}");

    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let failure = tokio::select! {
        _ = sigterm.recv() => { info!("SIGTERM: shutting down"); None }
        _ = sigint.recv() => { info!("SIGINT: shutting down"); None }
        Some(done) = servers.join_next() => Some(done),
    };

    if let Some(a) = announcer {
        a.stop().await;
    }
    if let Some(s) = subscriber {
        s.stop().await;
    }
    stop_tx.send_replace(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        let mut failed = false;
        while let Some(done) = servers.join_next().await {
            if let Ok((role, Err(e))) = done {
                error!(role, error = %e, "server failed");
                failed = true;
            }
        }
        failed
    })
    .await;
    let _ = std::fs::remove_file(dir.join(URL_FILE));
    match failure {
        Some(Ok((role, Err(e)))) => bail!("{role} server failed: {e}"),
        Some(Ok((role, Ok(())))) => bail!("{role} server stopped unexpectedly"),
        Some(Err(e)) => bail!("a server task panicked: {e}"),
        None => {}
    }
    match drained {
        Err(_) => bail!("servers did not stop within {SHUTDOWN_GRACE:?}"),
        Ok(true) => bail!("a server failed while shutting down"),
        Ok(false) => {
            info!("stopped");
            Ok(())
        }
    }
}

/// Writes `DIR/node.url` atomically (temporary file + rename).
fn write_url_file(dir: &Path, urls: &str) -> Result<()> {
    let tmp = dir.join(format!("{URL_FILE}.tmp"));
    let path = dir.join(URL_FILE);
    std::fs::write(&tmp, urls).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
