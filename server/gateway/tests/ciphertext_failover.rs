//! `PUT /ciphertext` goes through the grid client's uploader: storage servers whose disks fail
//! during the upload lose their shares to the other servers, and the file is stored happily.
//! An introducer, 10 storage servers (3 of them failing every write) and the gateway, all over
//! HTTP on 127.0.0.1 ephemeral ports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::data;
use ed25519_dalek::SigningKey;
use lafs_caps::ImmutableVerifyCap;
use lafs_gateway::{AppState, ClientGrid, Config};
use lafs_introducer::announcer::{Announcer, AnnouncerConfig, ServerInfo};
use lafs_introducer::{Clock, IntroducerConfig, IntroducerState, INTRODUCER_PATH};
use lafs_storage::{FaultPlan, FaultyStore, MemoryStore, ShareStore};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ciphertext_upload_fails_over_to_healthy_servers() {
    let (stop, rx) = watch::channel(false);
    let stopped = |rx: &watch::Receiver<bool>| {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut tasks = JoinSet::new();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let intro_url = format!("ws://{}{INTRODUCER_PATH}", l.local_addr().unwrap());
    let state = IntroducerState::new(IntroducerConfig::default());
    let s = stopped(&rx);
    tasks.spawn(async move {
        lafs_introducer::serve(l, state, s).await.unwrap();
    });
    let mut announcers = Vec::new();
    let mut faulty = Vec::new();
    for i in 0..10u8 {
        let store: Arc<dyn ShareStore> = if i < 3 {
            // The "disk" dies after the allocation, at the first write: the upload is under way
            // when the server starts failing (the gateway's former uploader gave up there).
            let f = Arc::new(FaultyStore::new(
                MemoryStore::new(1 << 30),
                FaultPlan {
                    crash_at_op: Some(1),
                    torn_write: false,
                },
            ));
            faulty.push(Arc::clone(&f));
            f
        } else {
            Arc::new(MemoryStore::new(1 << 30))
        };
        let state = lafs_storage::AppState::new(lafs_storage::Config::default(), store).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let s = stopped(&rx);
        tasks.spawn(async move {
            lafs_storage::serve(l, state, s).await.unwrap();
        });
        announcers.push(Announcer::spawn(
            AnnouncerConfig::new(intro_url.clone()),
            SigningKey::from_bytes(&[i + 1; 32]),
            Clock::system(),
            move || ServerInfo {
                url: url.clone(),
                protocol: 1,
                capacity: 1 << 30,
                available: 1 << 30,
                nickname: format!("s{i}"),
            },
        ));
    }
    let (client, _dir) = lafs_netclient::connect(
        &intro_url,
        SigningKey::from_bytes(&[200; 32]),
        10,
        Duration::from_secs(20),
        lafs_client::ClientConfig::default(),
    )
    .await
    .unwrap();
    let state = AppState::new(Config::default(), Arc::new(ClientGrid::new(client)));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let s = stopped(&rx);
    tasks.spawn(async move {
        lafs_gateway::serve(l, state, s).await.unwrap();
    });
    let http = reqwest::Client::new();

    // A larger file (allocate, merged writes, finish), then a small one (every share in one
    // whole-share request): both end up on the 7 healthy servers.
    for (len, seg) in [(5_000_000, 65_536), (200_000, 65_536)] {
        let key = lafs_codec::random_key().unwrap();
        let mut ct = data(len, len as u64);
        lafs_codec::encrypt_at(&key, 0, &mut ct).unwrap();
        let sel = hex::encode(lafs_caps::selection_index_for(&key).0);
        let r = http
            .put(format!(
                "{base}/ciphertext?selection_index={sel}&segment_size={seg}"
            ))
            .body(ct.clone())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let vc = r.text().await.unwrap();
        assert_eq!(status, 200, "{vc}");
        let vc: ImmutableVerifyCap = vc.parse().unwrap();
        let r = http
            .get(format!("{base}/ciphertext/{vc}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.bytes().await.unwrap() == ct, "size {len}");
    }
    assert!(
        faulty.iter().all(|f| f.crashed()),
        "every failing server was tried"
    );

    for a in announcers {
        a.stop().await;
    }
    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .expect("servers stop");
}
