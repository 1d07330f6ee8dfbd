//! The grid client against real storage servers and a real introducer on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a test failure.

mod common;

use std::time::Instant;

use common::LocalGrid;
use lafs_caps::Cap;
use lafs_client::{Client, ClientConfig, UploadOptions};
use lafs_codec::Params;
use sha2::{Digest, Sha256};

const SEG: u32 = 64 * 1024;

fn config(seg: u32) -> ClientConfig {
    ClientConfig {
        params: Params::new(3, 10, seg).unwrap(),
        ..ClientConfig::default()
    }
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
}

async fn read(c: &Client, cap: &Cap) -> Vec<u8> {
    c.open(cap).await.unwrap().read_all().await.unwrap()
}

fn si(cap: &Cap) -> lafs_caps::StorageIndex {
    match cap {
        Cap::ImmutableRead(c) => *c.storage_index(),
        _ => panic!("not an immutable readcap"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_and_random_ranges() {
    let grid = LocalGrid::start(10, false).await;
    let (c, _g) = grid.client(config(SEG)).await;
    let s = SEG as usize;
    for (i, len) in [0, 1, s - 1, s, s + 1, 5 * s + 77].into_iter().enumerate() {
        let d = data(len, i as u64);
        let up = c.upload_bytes(&d, UploadOptions::default()).await.unwrap();
        assert_eq!(read(&c, &up.cap).await, d, "size {len}");
        if len > 55 {
            assert_eq!(up.happiness, 10);
            let report = c.check(&up.cap, true).await.unwrap();
            assert!(report.healthy, "{report:?}");
            assert_eq!(report.copies.len(), 10);
        }
    }
    let d = data(5 * s + 77, 5);
    let up = c.upload_bytes(&d, UploadOptions::default()).await.unwrap();
    let mut dl = c.open(&up.cap).await.unwrap();
    let mut rng = fastrand::Rng::with_seed(1);
    for _ in 0..30 {
        let a = rng.u64(..d.len() as u64);
        let b = rng.u64(a..=d.len() as u64);
        dl.seek(a..b);
        assert_eq!(dl.read_all().await.unwrap(), &d[a as usize..b as usize]);
    }
}

/// 50 MiB with 1 MiB segments, compared by hash. Kept to one upload and one download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_mib_round_trip() {
    let grid = LocalGrid::start(10, false).await;
    let (c, _g) = grid.client(config(1 << 20)).await;
    let d = data(50 << 20, 50);
    let t = Instant::now();
    let up = c.upload_bytes(&d, UploadOptions::default()).await.unwrap();
    let up_time = t.elapsed();
    let t = Instant::now();
    let mut dl = c.open(&up.cap).await.unwrap();
    let mut h = Sha256::new();
    let mut n = 0;
    while let Some(chunk) = dl.next_chunk().await {
        let chunk = chunk.unwrap();
        n += chunk.len();
        h.update(&chunk);
    }
    let down_time = t.elapsed();
    assert_eq!(n, d.len());
    assert_eq!(h.finalize()[..], Sha256::digest(&d)[..]);
    eprintln!("50 MiB: upload {up_time:?}, download {down_time:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seven_servers_die_during_a_download() {
    let mut grid = LocalGrid::start(10, false).await;
    let (c, _g) = grid.client(config(SEG)).await;
    let d = data(20 * SEG as usize, 7);
    let up = c.upload_bytes(&d, UploadOptions::default()).await.unwrap();
    let mut dl = c.open(&up.cap).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.extend_from_slice(&dl.next_chunk().await.unwrap().unwrap());
    }
    // Kill the holders of shares 0..7: the data shares in use and four more.
    for (share, server) in &up.shares {
        if *share < 7 {
            grid.node(*server).kill();
        }
    }
    while let Some(chunk) = dl.next_chunk().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(got, d);
    assert_eq!(dl.failed_servers().len(), 7);
    // A fresh open works from the three survivors too.
    assert_eq!(read(&c, &up.cap).await, d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_die_during_an_upload() {
    let mut grid = LocalGrid::start(10, false).await;
    let (c, _g) = grid.client(config(SEG)).await;
    let d = data(40 * SEG as usize, 9);
    let mut up = c.upload(UploadOptions::default());
    let (first, rest) = d.split_at(10 * SEG as usize);
    up.write(first).await.unwrap();
    let ids: Vec<_> = grid.nodes.iter().map(|n| n.id).collect();
    for id in &ids[..3] {
        grid.node(*id).kill();
    }
    for chunk in rest.chunks(100_000) {
        up.write(chunk).await.unwrap();
    }
    let r = up.finish().await.unwrap();
    assert_eq!(r.happiness, 7, "{r:?}");
    assert_eq!(r.failed_servers.len(), 3);
    // Shares with nothing written yet moved to live servers; partly written ones are lost.
    assert_eq!(r.shares.len() + r.lost.len(), 10);
    assert!(r.shares.values().all(|s| !ids[..3].contains(s)));
    assert_eq!(read(&c, &r.cap).await, d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_byte_on_disk_is_detected_routed_around_and_reported() {
    let mut grid = LocalGrid::start(10, true).await;
    let (c, _g) = grid.client(config(SEG)).await;
    let d = data(4 * SEG as usize + 10, 11);
    let up = c.upload_bytes(&d, UploadOptions::default()).await.unwrap();
    let server = up.shares[&0];
    let node = grid.node(server);
    let text = lafs_proto::ids::storage_index_to_text(&si(&up.cap));
    let path = node
        .root
        .clone()
        .unwrap()
        .join("shares")
        .join(&text[..2])
        .join(&text)
        .join("0");
    let mut bytes = std::fs::read(&path).unwrap();
    // A byte of the block of segment 1 of share 0.
    let block = Params::new(3, 10, SEG).unwrap().full_block_size();
    bytes[(20 + block + 100) as usize] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    let mut dl = c.open(&up.cap).await.unwrap();
    assert_eq!(dl.read_all().await.unwrap(), d);
    assert_eq!(dl.advisories().len(), 1);
    let recorded = node.store.advisories().unwrap();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(u16::from(recorded[0].share.0), 0);
    assert!(
        recorded[0].reason.contains("segment 1"),
        "{}",
        recorded[0].reason
    );
    let report = c.check(&up.cap, true).await.unwrap();
    assert!(report.recoverable && !report.healthy);
    assert_eq!(report.good_shares, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_file_is_one_request_per_server() {
    use std::sync::atomic::Ordering;
    let grid = LocalGrid::start(10, true).await;
    let (c, _g) = grid.client(config(SEG)).await;
    let requests = || -> u64 {
        grid.nodes
            .iter()
            .map(|n| n.state.metrics().requests.load(Ordering::Relaxed))
            .sum()
    };
    // The first upload also learns every server's version (cached by the transport).
    let first = c
        .upload_bytes(&data(4096, 40), UploadOptions::default())
        .await
        .unwrap();
    assert_eq!(first.happiness, 10);
    let before = requests();
    let d = data(4096, 41);
    let up = c.upload_bytes(&d, UploadOptions::default()).await.unwrap();
    assert_eq!((up.uploaded, up.happiness), (10, 10));
    assert_eq!(requests() - before, 10, "one request per server");
    let finished: u64 = grid
        .nodes
        .iter()
        .map(|n| n.state.metrics().shares_finished.load(Ordering::Relaxed))
        .sum();
    assert_eq!(finished, 20);
    assert_eq!(read(&c, &up.cap).await, d);
}
