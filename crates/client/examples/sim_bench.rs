//! Client-side cost of uploads and downloads on the in-memory simulated grid (no network):
//! `cargo run --release -p lafs-client --example sim_bench`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Benchmark tool: a panic is fine.

use std::sync::Arc;
use std::time::Instant;

use futures::executor::block_on;
use lafs_client::sim::SimGrid;
use lafs_client::{Client, ClientConfig, UploadOptions};

fn main() {
    let size = 128usize << 20;
    let mut data = vec![0u8; size];
    fastrand::Rng::with_seed(1).fill(&mut data);
    let grid = Arc::new(SimGrid::new(10, 1));
    let c = Client::new(grid, ClientConfig::default());
    let t = Instant::now();
    let mut up = c.upload(UploadOptions::default());
    for ch in data.chunks(1 << 20) {
        block_on(up.write(ch)).unwrap();
    }
    let r = block_on(up.finish()).unwrap();
    let e = t.elapsed().as_secs_f64();
    println!(
        "upload   {:6.0} MB/s (includes the simulated servers' verification)",
        size as f64 / e / 1e6
    );
    let t = Instant::now();
    let mut d = block_on(c.open(&r.cap)).unwrap();
    let mut n = 0;
    while let Some(ch) = block_on(d.next_chunk()) {
        n += ch.unwrap().len();
    }
    let e = t.elapsed().as_secs_f64();
    assert_eq!(n, size);
    println!("download {:6.0} MB/s", size as f64 / e / 1e6);
}
