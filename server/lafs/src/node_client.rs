//! What `lafs put`, `get` and `check` share: finding the node's grid, connecting, progress bars.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use ed25519_dalek::SigningKey;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use lafs_client::{Client, ClientConfig};
use lafs_netclient::{Grid, HttpConfig, HttpTransport};

use crate::config::NodeConfig;
use crate::keys::{self, key_path, ACCOUNT_KEY};
use crate::run::URL_FILE;

/// Options every grid command takes.
#[derive(Debug, Args)]
pub(crate) struct GridArgs {
    /// The client node to use (its introducer URL and account key). Default: `$HOME/.lafs`.
    #[arg(long, value_name = "DIR", global = true)]
    pub node: Option<PathBuf>,
    /// Talk to a gateway's web API instead of the grid (`put` and `get` only; the gateway
    /// then sees the file and its readcap).
    #[arg(long, value_name = "URL", global = true, conflicts_with = "node")]
    pub gateway: Option<String>,
    /// Machine-readable JSON on stdout (and no progress bars).
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for the introducer to list storage servers.
    #[arg(long, value_name = "SECS", default_value_t = 10, global = true)]
    pub wait: u64,
}

/// Where the grid commands send their requests.
pub(crate) enum Backend {
    /// Directly to the storage servers, as the node's client.
    Node {
        /// Introducer URL.
        introducer: String,
        /// Account key signing the writes.
        account: SigningKey,
    },
}

impl GridArgs {
    /// Resolves `--node` / `--gateway` into a backend.
    pub(crate) fn backend(&self) -> Result<Backend> {
        if let Some(url) = &self.gateway {
            bail!("--gateway {url}: only `lafs put` and `lafs get` work through a gateway; use --node");
        }
        let dir = match &self.node {
            Some(d) => d.clone(),
            None => default_node_dir()?,
        };
        node_backend(&dir)
    }
}

pub(crate) fn default_node_dir() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set; pass --node DIR")?;
    Ok(PathBuf::from(home).join(".lafs"))
}

/// The introducer URL and account key of the client node in `dir`.
fn node_backend(dir: &Path) -> Result<Backend> {
    let config = NodeConfig::load(dir)?;
    let account = keys::load(&key_path(dir, ACCOUNT_KEY))
        .context("this node has no account key: create it with the client role")?;
    let introducer = match &config.node.introducer {
        Some(u) => u.clone(),
        None => own_introducer(dir, &config)?,
    };
    Ok(Backend::Node {
        introducer,
        account,
    })
}

/// The URL of the node's own introducer: as bound by `lafs run` (`node.url`), else as
/// configured when the port is fixed.
fn own_introducer(dir: &Path, config: &NodeConfig) -> Result<String> {
    if let Ok(text) = std::fs::read_to_string(dir.join(URL_FILE)) {
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("introducer = ") {
                return Ok(v.trim_matches('"').to_owned());
            }
        }
    }
    match &config.introducer {
        Some(s) if s.listen.port() != 0 => Ok(format!(
            "ws://{}{}",
            s.listen,
            lafs_introducer::INTRODUCER_PATH
        )),
        _ => bail!(
            "{}: no introducer URL (set [node] introducer, or start the node with `lafs run`)",
            dir.display()
        ),
    }
}

/// A connected client. `min_servers`: wait (up to `--wait`) until that many storage servers
/// are known; fewer is not an error here (the operation reports what it could reach).
pub(crate) async fn connect(
    args: &GridArgs,
    mut config: ClientConfig,
    min_servers: usize,
) -> Result<(Client, Arc<Grid>)> {
    match args.backend()? {
        Backend::Node {
            introducer,
            account,
        } => {
            config.spawner = Some(lafs_netclient::tokio_spawner());
            let grid = Arc::new(Grid::subscribe(&introducer));
            let wait = Duration::from_secs(args.wait);
            if grid.wait_for(min_servers.max(1), wait).await.is_err() {
                // Proceed with what is known; zero servers is reported by the operation.
                grid.wait_for(1, Duration::from_millis(1)).await.ok();
            }
            let transport = HttpTransport::new(grid.clone(), account, HttpConfig::default())
                .context("setting up HTTP")?;
            Ok((Client::new(Arc::new(transport), config), grid))
        }
    }
}

/// Progress bars on stderr when it is a terminal and JSON output is off; hidden otherwise.
pub(crate) fn bars(args: &GridArgs) -> MultiProgress {
    let target = if !args.json && std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    MultiProgress::with_draw_target(target)
}

/// A byte-count bar (spinner when the total is unknown).
pub(crate) fn byte_bar(m: &MultiProgress, total: Option<u64>, label: &str) -> ProgressBar {
    let bar = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::new_spinner(),
    };
    let template = match total {
        Some(_) => "{prefix:>9} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}",
        None => "{prefix:>9} {spinner} {bytes} {binary_bytes_per_sec}",
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_owned());
    m.add(bar)
}
