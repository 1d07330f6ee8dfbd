//! `lafs demo`: a whole local grid in one process on 127.0.0.1: an introducer, N storage
//! nodes and a gateway serving the web app, plus a client node directory (`DIR/client`) for
//! `lafs put/get --node`.
//!
//! Layout of `DIR` (kept between runs, so uploaded files survive a restart):
//!
//! | path | what |
//! |---|---|
//! | `DIR/client/` | a client node (`lafs create client` format); its introducer URL is rewritten at each start |
//! | `DIR/storage-NN/` | storage node `NN`: `private/node.key` (its identity) and `storage/` (shares) |

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use lafs_introducer::announcer::{Announcer, AnnouncerConfig, ServerInfo};
use lafs_introducer::{Clock, IntroducerConfig, IntroducerState, INTRODUCER_PATH};
use lafs_storage::{AppState, FsOptions, FsStore, ShareStore};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::{NodeConfig, NodeSection, Role, CONFIG_FILE};
use crate::keys::{self, create_private_dir, key_path, ACCOUNT_KEY, NODE_KEY, PRIVATE_DIR};

/// Storage protocol version announced to the introducer.
const STORAGE_PROTOCOL: u32 = 1;
/// How long the gateway waits for the storage nodes to be announced.
const ANNOUNCE_WAIT: Duration = Duration::from_secs(30);
/// How long servers get to finish open requests after Ctrl-C.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Arguments of `lafs demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Directory for the demo grid's nodes (created if missing, reused if it exists).
    #[arg(long, value_name = "DIR", default_value = "lafs-demo")]
    pub dir: PathBuf,
    /// Port of the gateway (web UI and web API) on 127.0.0.1; 0 picks a free port.
    #[arg(long, value_name = "PORT", default_value_t = 3456)]
    pub port: u16,
    /// Number of storage nodes.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub storage_nodes: u16,
    /// Directory of the built web app (Trunk output).
    #[arg(long, value_name = "DIR", default_value = "web/dist")]
    pub web: PathBuf,
}

pub(crate) fn demo(args: &DemoArgs) -> Result<()> {
    if args.storage_nodes == 0 {
        bail!("--storage-nodes must be at least 1");
    }
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_demo(args))
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// Loads `dir/private/name`, generating it (and the directories) on first use.
fn load_or_generate(dir: &Path, name: &str) -> Result<ed25519_dalek::SigningKey> {
    let path = key_path(dir, name);
    if path.exists() {
        return keys::load(&path);
    }
    if !dir.exists() {
        std::fs::create_dir_all(dir.parent().unwrap_or(dir))
            .with_context(|| format!("creating {}", dir.display()))?;
        create_private_dir(dir)?;
    }
    let private = dir.join(PRIVATE_DIR);
    if !private.exists() {
        create_private_dir(&private)?;
    }
    keys::generate(&path)
}

/// Writes `DIR/client/lafs.toml` (a client node using `introducer`), creating the node with
/// its account key on first use.
fn write_client_node(dir: &Path, introducer: &str) -> Result<()> {
    load_or_generate(dir, NODE_KEY)?;
    load_or_generate(dir, ACCOUNT_KEY)?;
    let config = NodeConfig {
        node: NodeSection {
            nickname: "demo client".into(),
            roles: [Role::Client].into_iter().collect(),
            introducer: Some(introducer.to_owned()),
        },
        introducer: None,
        storage: None,
    };
    config.check()?;
    let path = dir.join(CONFIG_FILE);
    let tmp = dir.join(format!("{CONFIG_FILE}.tmp"));
    std::fs::write(&tmp, config.to_toml()?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

async fn run_demo(args: &DemoArgs) -> Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("resolving {}", args.dir.display()))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |rx: watch::Receiver<bool>| async move {
        let mut rx = rx;
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut servers: JoinSet<(String, std::io::Result<()>)> = JoinSet::new();

    // Introducer.
    let listener = TcpListener::bind(localhost(0))
        .await
        .context("introducer: binding")?;
    let introducer_url = format!("ws://{}{INTRODUCER_PATH}", listener.local_addr()?);
    let state = IntroducerState::new(IntroducerConfig::default());
    let shutdown = stopped(stop_rx.clone());
    servers.spawn(async move {
        (
            "introducer".into(),
            lafs_introducer::serve(listener, state, shutdown).await,
        )
    });
    info!(url = %introducer_url, "introducer listening");

    // Storage nodes.
    let mut announcers = Vec::new();
    for i in 0..args.storage_nodes {
        let node_dir = dir.join(format!("storage-{i:02}"));
        let node_key = load_or_generate(&node_dir, NODE_KEY)?;
        let store_dir = node_dir.join(crate::run::STORAGE_DIR);
        let store = FsStore::open(&store_dir, FsOptions::default())
            .with_context(|| format!("opening the share store in {}", store_dir.display()))?;
        let store: Arc<dyn ShareStore> = Arc::new(store);
        let storage_config = lafs_storage::Config {
            accepts_mutable: true,
            ..lafs_storage::Config::default()
        };
        let state = AppState::new(storage_config, Arc::clone(&store))
            .context("starting a storage server")?;
        // Mutable files and directories, as `lafs run` keeps them.
        let mutable_dir = store_dir.join("mutable");
        let mutable = lafs_storage::FsMutableStore::open(&mutable_dir).with_context(|| {
            format!(
                "opening the mutable share store in {}",
                mutable_dir.display()
            )
        })?;
        state.enable_mutable(Arc::new(mutable));
        let listener = TcpListener::bind(localhost(0))
            .await
            .context("storage: binding")?;
        let url = format!("http://{}", listener.local_addr()?);
        let shutdown = stopped(stop_rx.clone());
        let name = format!("storage-{i:02}");
        servers.spawn(async move { (name, lafs_storage::serve(listener, state, shutdown).await) });
        let nickname = format!("demo-{i:02}");
        let info = move || {
            let (capacity, available) = match store.space() {
                Ok(s) => (s.total, s.available.min(s.total)),
                Err(_) => (0, 0),
            };
            ServerInfo {
                url: url.clone(),
                protocol: STORAGE_PROTOCOL,
                capacity,
                available,
                nickname: nickname.clone(),
            }
        };
        announcers.push(Announcer::spawn(
            AnnouncerConfig::new(introducer_url.clone()),
            node_key,
            Clock::system(),
            info,
        ));
    }
    info!(count = args.storage_nodes, "storage nodes started");

    // The client node directory, then the gateway as that client.
    let client_dir = dir.join("client");
    write_client_node(&client_dir, &introducer_url)?;
    let account = keys::load(&key_path(&client_dir, ACCOUNT_KEY))?;
    let (client, grid) = lafs_netclient::connect(
        &introducer_url,
        account,
        usize::from(args.storage_nodes),
        ANNOUNCE_WAIT,
        lafs_client::ClientConfig {
            happy: lafs_client::ClientConfig::default()
                .happy
                .min(args.storage_nodes),
            ..lafs_client::ClientConfig::default()
        },
    )
    .await
    .context("connecting the gateway to the demo grid")?;
    let gateway_config = lafs_gateway::Config {
        static_dir: Some(args.web.clone()),
        ..lafs_gateway::Config::default()
    };
    let state = lafs_gateway::AppState::new(
        gateway_config,
        Arc::new(lafs_gateway::ClientGrid::new(client).with_server_list(server_list(&grid))),
    );
    let listener = TcpListener::bind(localhost(args.port))
        .await
        .with_context(|| format!("gateway: binding 127.0.0.1:{} (try --port 0)", args.port))?;
    let gateway_url = format!("http://{}/", listener.local_addr()?);
    let shutdown = stopped(stop_rx.clone());
    servers.spawn(async move {
        (
            "gateway".into(),
            lafs_gateway::serve(listener, state, shutdown).await,
        )
    });

    if !args.web.join("index.html").is_file() {
        warn!(dir = %args.web.display(), "the web app is not built: the gateway serves the API only");
    }
    println!(
        "lafs demo grid: {} storage nodes, introducer {introducer_url}",
        args.storage_nodes
    );
    println!(
        "client node:    {}  (lafs put --node {} FILE)",
        client_dir.display(),
        client_dir.display()
    );
    println!("web UI:         {gateway_url}");
    println!("press Ctrl-C to stop");

    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let failure = tokio::select! {
        _ = sigterm.recv() => None,
        _ = sigint.recv() => None,
        Some(done) = servers.join_next() => Some(done),
    };
    info!("stopping the demo grid");
    drop(grid);
    for a in announcers {
        a.stop().await;
    }
    stop_tx.send_replace(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while servers.join_next().await.is_some() {}
    })
    .await;
    match failure {
        Some(Ok((name, Err(e)))) => bail!("{name} failed: {e}"),
        Some(Ok((name, Ok(())))) => bail!("{name} stopped unexpectedly"),
        Some(Err(e)) => bail!("a server task panicked: {e}"),
        None => {}
    }
    if drained.is_err() {
        warn!("some connections were still open after {SHUTDOWN_GRACE:?}; stopping anyway");
    }
    println!("lafs demo stopped");
    Ok(())
}

/// The live storage servers of `grid` with their URLs, for the gateway's `GET /grid/servers`.
fn server_list(grid: &Arc<lafs_netclient::Grid>) -> lafs_gateway::ServerList {
    use lafs_netclient::Directory;
    let grid = Arc::clone(grid);
    Arc::new(move || {
        grid.servers()
            .into_iter()
            .filter_map(|s| grid.url(&s).map(|u| (s, u)))
            .collect()
    })
}
