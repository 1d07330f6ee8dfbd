//! A local grid on 127.0.0.1: one introducer and N in-process storage servers announcing
//! themselves to it (shared by the integration tests and the benchmark example).
// Test support code: panicking on a failed set-up step is the desired behaviour.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use lafs_client::{Client, ClientConfig, ServerId};
use lafs_introducer::announcer::{Announcer, AnnouncerConfig, ServerInfo};
use lafs_introducer::{Clock, IntroducerConfig, IntroducerState};
use lafs_netclient::Grid;
use lafs_storage::{serve, AppState, Config, FsOptions, FsStore, MemoryStore, ShareStore};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct StorageNode {
    pub id: ServerId,
    pub url: String,
    pub state: AppState,
    pub store: Arc<dyn ShareStore>,
    pub root: Option<PathBuf>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    announcer: Option<Announcer>,
}

impl StorageNode {
    /// Abrupt death: the server task and every connection are dropped mid-flight; the
    /// announcement is withdrawn.
    pub fn kill(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.stop.take();
        self.announcer.take();
    }

    pub fn alive(&self) -> bool {
        self.task.is_some()
    }
}

/// Where the storage servers keep shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// In memory.
    Memory,
    /// On disk with the server's default options: one fsync per share, when it is filed.
    Durable,
    /// On disk, fsync after every write too (`FsOptions::sync_each_write`).
    SyncWrites,
}

pub struct LocalGrid {
    pub introducer_url: String,
    pub nodes: Vec<StorageNode>,
    intro_stop: Option<oneshot::Sender<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl LocalGrid {
    /// `n` storage servers, on disk (`on_disk`, the server's default options) or in memory.
    pub async fn start(n: usize, on_disk: bool) -> Self {
        Self::start_with(
            n,
            if on_disk {
                Store::Durable
            } else {
                Store::Memory
            },
        )
        .await
    }

    pub async fn start_with(n: usize, kind: Store) -> Self {
        Self::start_in(n, kind, None).await
    }

    /// Like [`Self::start_with`], the on-disk servers keeping their shares under `root`
    /// (which must exist; removing it is the caller's job), or in a fresh temporary
    /// directory removed on drop when `root` is `None`.
    pub async fn start_in(n: usize, kind: Store, root: Option<&Path>) -> Self {
        let on_disk = kind != Store::Memory;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let introducer_url = format!(
            "ws://{}{}",
            listener.local_addr().unwrap(),
            lafs_introducer::INTRODUCER_PATH
        );
        let (intro_stop, rx) = oneshot::channel::<()>();
        let state = IntroducerState::new(IntroducerConfig::default());
        tokio::spawn(lafs_introducer::serve(listener, state, async move {
            let _ = rx.await;
        }));
        let dir = (on_disk && root.is_none()).then(|| tempfile::tempdir().unwrap());
        let base: Option<PathBuf> = match (&dir, root) {
            _ if !on_disk => None,
            (Some(d), _) => Some(d.path().to_path_buf()),
            (None, r) => r.map(Path::to_path_buf),
        };
        let mut nodes = Vec::new();
        for i in 0..n {
            let (store, root): (Arc<dyn ShareStore>, Option<PathBuf>) = match &base {
                Some(d) => {
                    let root = d.join(format!("storage-{i}"));
                    let opts = FsOptions {
                        sync_each_write: kind == Store::SyncWrites,
                        ..FsOptions::default()
                    };
                    let s = FsStore::open(&root, opts).unwrap();
                    (Arc::new(s), Some(root))
                }
                None => (Arc::new(MemoryStore::new(8 << 30)), None),
            };
            let config = Config {
                accepts_mutable: true,
                ..Config::default()
            };
            let state = AppState::new(config, store.clone()).unwrap();
            let mutable: Arc<dyn lafs_storage::MutableStore> = match &root {
                Some(r) => Arc::new(lafs_storage::FsMutableStore::open(r.join("mutable")).unwrap()),
                None => Arc::new(lafs_storage::MemoryMutableStore::new()),
            };
            state.enable_mutable(mutable);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let (stop, rx) = oneshot::channel::<()>();
            let task = tokio::spawn(serve(listener, state.clone(), async move {
                let _ = rx.await;
            }));
            let key = SigningKey::from_bytes(&[i as u8 + 1; 32]);
            let id = ServerId(key.verifying_key().to_bytes());
            let info_url = url.clone();
            let announcer = Announcer::spawn(
                AnnouncerConfig::new(introducer_url.clone()),
                key,
                Clock::system(),
                move || ServerInfo {
                    url: info_url.clone(),
                    protocol: 1,
                    capacity: 8 << 30,
                    available: 8 << 30,
                    nickname: format!("storage-{i}"),
                },
            );
            nodes.push(StorageNode {
                id,
                url,
                state,
                store,
                root,
                stop: Some(stop),
                task: Some(task),
                announcer: Some(announcer),
            });
        }
        Self {
            introducer_url,
            nodes,
            intro_stop: Some(intro_stop),
            _dir: dir,
        }
    }

    /// A client subscribed to this grid's introducer, once every server is known.
    pub async fn client(&self, config: ClientConfig) -> (Client, Arc<Grid>) {
        let account = SigningKey::from_bytes(&[0xac; 32]);
        lafs_netclient::connect(
            &self.introducer_url,
            account,
            self.nodes.len(),
            Duration::from_secs(20),
            config,
        )
        .await
        .unwrap()
    }

    pub fn node(&mut self, id: ServerId) -> &mut StorageNode {
        self.nodes.iter_mut().find(|n| n.id == id).unwrap()
    }
}
