//! Grid client benchmark on a local grid: 10 in-process storage servers (on disk) and an
//! introducer on 127.0.0.1, 3-of-10, 1 MiB segments.
//!
//! `cargo run --release -p lafs-netclient --example bench -- [--size 1G] [--small 1000]`
//!
//! Prints upload and download throughput of one large file, the time to the first byte of a
//! 1 MiB range in the middle, small-file uploads per second, and the process's peak RSS, next
//! to single-core SHA-256 speed and a plain loopback HTTP copy measured in the same run.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Benchmark tool: a panic is fine.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use common::{LocalGrid, Store};
use futures::stream::{self, StreamExt};
use lafs_client::{ClientConfig, UploadOptions};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
struct Args {
    /// Size of the large file (suffix K, M or G for KiB, MiB, GiB).
    #[arg(long, default_value = "1G")]
    size: String,
    /// Number of 4 KiB files to upload.
    #[arg(long, default_value_t = 1000)]
    small: usize,
    /// Storage servers.
    #[arg(long, default_value_t = 10)]
    servers: usize,
    /// Share store of the servers: `durable` (on disk, the server's default options: one fsync
    /// per share, when it is filed), `sync-writes` (on disk, fsync after every write too) or
    /// `memory`.
    #[arg(long, default_value = "durable")]
    store: String,
}

fn parse_size(s: &str) -> u64 {
    let (num, mul) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().expect("size") * mul
}

const MIB: usize = 1 << 20;

/// Deterministic content: MiB `i` of the file, regenerable on its own.
fn chunk(i: u64, len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(i ^ 0x5eed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds used by this process so far (user + system, all threads).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn sha256_speed() -> f64 {
    let data = chunk(1, 64 * MIB);
    let mut best = 0f64;
    for _ in 0..3 {
        let t = Instant::now();
        for seg in data.chunks(MIB) {
            std::hint::black_box(Sha256::digest(seg));
        }
        best = best.max(mbps(data.len() as u64, t.elapsed()));
    }
    best
}

/// A minimal HTTP/1.1 sink on 127.0.0.1: reads each request body and answers 200.
async fn http_sink() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                let mut head = Vec::new();
                loop {
                    // Headers.
                    let body_len;
                    loop {
                        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                            let text = String::from_utf8_lossy(&head[..end]).to_lowercase();
                            body_len = text
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .map_or(0, |v| v.trim().parse::<usize>().unwrap_or(0));
                            head.drain(..end + 4);
                            break;
                        }
                        let n = s.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        head.extend_from_slice(&buf[..n]);
                    }
                    let mut left = body_len.saturating_sub(head.len());
                    head.drain(..body_len.min(head.len()));
                    while left > 0 {
                        let n = s.read(&mut buf[..left.min(256 * 1024)]).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        left -= n;
                    }
                    if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}/sink")
}

async fn http_copy_speed() -> f64 {
    let url = http_sink().await;
    let http = reqwest::Client::new();
    let body = Bytes::from(chunk(2, 4 * MIB));
    let total = 256 * MIB as u64;
    let t = Instant::now();
    for _ in 0..total / body.len() as u64 {
        let r = http.put(&url).body(body.clone()).send().await.unwrap();
        assert!(r.status().is_success());
    }
    mbps(total, t.elapsed())
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let size = parse_size(&args.size);
    println!("# lafs grid client benchmark");
    println!(
        "servers {} (in-process, store {}), 3-of-10, 1 MiB segments, file {} MiB",
        args.servers,
        args.store,
        size >> 20
    );
    let sha = sha256_speed();
    println!("SHA-256 (1 core)              {sha:8.0} MB/s");
    let copy = http_copy_speed().await;
    println!("loopback HTTP copy (reqwest)  {copy:8.0} MB/s");

    let kind = match args.store.as_str() {
        "memory" => Store::Memory,
        "sync-writes" => Store::SyncWrites,
        _ => Store::Durable,
    };
    let grid = LocalGrid::start_with(args.servers, kind).await;
    let (client, _g) = grid.client(ClientConfig::default()).await;

    // Upload, streamed 1 MiB at a time.
    let cpu = cpu_secs();
    let t = Instant::now();
    let mut up = client.upload(UploadOptions::default());
    let mut i = 0u64;
    let mut sent = 0u64;
    while sent < size {
        let len = (size - sent).min(MIB as u64) as usize;
        up.write(&chunk(i, len)).await.unwrap();
        sent += len as u64;
        i += 1;
    }
    let written = t.elapsed();
    let r = up.finish().await.unwrap();
    let up_time = t.elapsed();
    let up_cpu = cpu_secs() - cpu;
    println!(
        "upload                        {:8.0} MB/s  ({:.2} s = {:.2} s writing + {:.2} s finishing, {:.2}x SHA-256; {:.2} CPU-s, i.e. {:.0} MB per CPU-second, client and servers)",
        mbps(size, up_time),
        up_time.as_secs_f64(),
        written.as_secs_f64(),
        (up_time - written).as_secs_f64(),
        mbps(size, up_time) / sha,
        up_cpu,
        size as f64 / up_cpu / 1e6
    );

    // Download of the whole file.
    let cpu = cpu_secs();
    let t = Instant::now();
    let mut dl = client.open(&r.cap).await.unwrap();
    let mut got = 0u64;
    let mut first = None;
    while let Some(c) = dl.next_chunk().await {
        let c = c.unwrap();
        if first.is_none() {
            first = Some(c.clone());
        }
        got += c.len() as u64;
    }
    let down_time = t.elapsed();
    let down_cpu = cpu_secs() - cpu;
    assert_eq!(got, size);
    if let Some(f) = first {
        assert_eq!(&f[..], &chunk(0, f.len())[..], "first chunk differs");
    }
    println!(
        "download                      {:8.0} MB/s  ({:.2} s, {:.2}x SHA-256; {:.2} CPU-s, i.e. {:.0} MB per CPU-second, client and servers)",
        mbps(size, down_time),
        down_time.as_secs_f64(),
        mbps(size, down_time) / sha,
        down_cpu,
        size as f64 / down_cpu / 1e6
    );

    // Time to first byte of a 1 MiB range in the middle.
    let mid = (size / 2) / MIB as u64 * MIB as u64;
    let mut ttfb_open = Vec::new();
    let mut ttfb_seek = Vec::new();
    let mut range_time = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let mut dl = client.open(&r.cap).await.unwrap();
        dl.seek(mid..mid + MIB as u64);
        let c = dl.next_chunk().await.unwrap().unwrap();
        ttfb_open.push(t.elapsed());
        assert_eq!(&c[..], &chunk(mid / MIB as u64, c.len())[..]);
        let t = Instant::now();
        dl.seek(mid / 2..mid / 2 + MIB as u64);
        let _ = dl.next_chunk().await.unwrap().unwrap();
        ttfb_seek.push(t.elapsed());
        let t = Instant::now();
        dl.seek(mid..mid + MIB as u64);
        let _ = dl.read_all().await.unwrap();
        range_time.push(t.elapsed());
    }
    ttfb_open.sort();
    ttfb_seek.sort();
    range_time.sort();
    println!(
        "TTFB, 1 MiB range mid-file    {:8.2} ms  (open + first byte; {:.2} ms on an open file; whole 1 MiB range {:.2} ms) medians of 5",
        ttfb_open[2].as_secs_f64() * 1e3,
        ttfb_seek[2].as_secs_f64() * 1e3,
        range_time[2].as_secs_f64() * 1e3
    );

    // Small files: sequentially, then 16 at a time.
    let n = args.small;
    let requests = || -> u64 {
        grid.nodes
            .iter()
            .map(|n| {
                n.state
                    .metrics()
                    .requests
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum()
    };
    let req0 = requests();
    let cpu = cpu_secs();
    let t = Instant::now();
    for j in 0..n / 2 {
        client
            .upload_bytes(&chunk(1_000_000 + j as u64, 4096), UploadOptions::default())
            .await
            .unwrap();
    }
    let seq = (n / 2) as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let done = stream::iter(n / 2..n)
        .map(|j| {
            let c = client.clone();
            async move {
                c.upload_bytes(&chunk(1_000_000 + j as u64, 4096), UploadOptions::default())
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(16)
        .count()
        .await;
    let par = done as f64 / t.elapsed().as_secs_f64();
    let small_cpu = cpu_secs() - cpu;
    let per_file = (requests() - req0) as f64 / n.max(1) as f64;
    println!("4 KiB uploads                 {seq:8.0} files/s one at a time, {par:.0} files/s 16 at a time ({n} files; {per_file:.1} requests per file over {} servers; {:.2} CPU-ms per file)", grid.nodes.len(), small_cpu * 1e3 / n.max(1) as f64);
    println!("peak RSS (VmHWM)              {:8.0} MiB", peak_rss_mib());
}
