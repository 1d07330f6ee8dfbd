//! Grid client benchmark on a local grid: an introducer and 10 storage servers (on disk) on
//! 127.0.0.1 in a **child process**, the client in this one; 3-of-10, 1 MiB segments.
//!
//! `cargo run --release -p lafs-netclient --example grid_bench -- [--size 1G] [--small 1000]`
//!
//! Prints upload and download throughput of one large file, the time to the first byte of a
//! 1 MiB range in the middle and small-file uploads per second, next to single-core SHA-256
//! speed and a plain loopback HTTP copy measured in the same run (in a short-lived child of
//! their own, so that their buffers do not count in the client's memory). Memory and CPU are
//! reported separately for the client (this process) and the grid (the child): the client's
//! peak RSS is this process's `VmHWM`, reset (`/proc/self/clear_refs`) at the start of each
//! phase so that each phase has its own peak, and sampled every tenth of the upload and the
//! download so that any growth with the file size shows.
//!
//! The grid child is killed when the benchmark ends, panics or gets Ctrl-C, and exits by
//! itself when its standard input closes (the benchmark died some other way); the share
//! directory is removed in every one of these cases except a `SIGKILL` of the benchmark.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Benchmark tool: a panic is fine.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use common::{LocalGrid, Store};
use ed25519_dalek::SigningKey;
use futures::stream::{self, StreamExt};
use lafs_client::{ClientConfig, UploadOptions};
use lafs_codec::Params;
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
    /// Skip the small files.
    #[arg(long)]
    skip_small: bool,
    /// Storage servers.
    #[arg(long, default_value_t = 10)]
    servers: usize,
    /// Shares needed to read a file (k).
    #[arg(long, default_value_t = 3)]
    k: u16,
    /// Shares written (N).
    #[arg(long, default_value_t = 10)]
    n: u16,
    /// Servers-of-happiness threshold (default: 7, at most N).
    #[arg(long)]
    happy: Option<u16>,
    /// Segments in flight (`ClientConfig::pipeline_depth`; default: the client's default).
    #[arg(long)]
    pipeline_depth: Option<usize>,
    /// Bytes merged into one write per share (`ClientConfig::write_chunk`; default: the
    /// client's default).
    #[arg(long)]
    write_chunk: Option<usize>,
    /// Share store of the servers: `durable` (on disk, the server's default options: one fsync
    /// per share, when it is filed), `sync-writes` (on disk, fsync after every write too) or
    /// `memory` (counts every share in the grid process's RSS).
    #[arg(long, default_value = "durable")]
    store: String,
    /// Directory in which the share directory is made (default: the system's temporary
    /// directory); it is removed at the end.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Abort (grid killed, shares removed) if the free space on the share directory's file
    /// system falls below this many GB (10^9 bytes); checked every second.
    #[arg(long, default_value_t = 8.0)]
    min_free_gb: f64,
    /// Whole-request timeout of the HTTP transport in seconds (default: the transport's, 60 s).
    /// The request that finishes an upload returns once the server has verified the whole
    /// share: a share of several GB on a loaded machine needs more.
    #[arg(long)]
    request_timeout: Option<u64>,
    /// Go on with the next steps when the download or a ranged read fails (the error is
    /// printed) instead of stopping.
    #[arg(long)]
    keep_going: bool,
    /// Internal: run the grid and report on standard output (used by the benchmark itself).
    #[arg(long, hide = true)]
    serve_grid: bool,
    /// Internal: measure SHA-256 and the loopback HTTP copy and print them.
    #[arg(long, hide = true)]
    calibrate: bool,
    /// Internal: the share directory of `--serve-grid`.
    #[arg(long, hide = true)]
    share_dir: Option<PathBuf>,
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

fn store_kind(s: &str) -> Store {
    match s {
        "memory" => Store::Memory,
        "sync-writes" => Store::SyncWrites,
        "durable" => Store::Durable,
        other => panic!("unknown store {other:?} (durable, sync-writes or memory)"),
    }
}

// ---------------------------------------------------------------------------------------
// /proc measurements (of this process: "self", or of the grid child: its pid).

/// A `kB` field of `/proc/<who>/status` in MiB (0 if unreadable).
fn status_mib(who: &str, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{who}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Peak resident set size since the start or the last [`reset_peak`].
fn peak_rss_mib(who: &str) -> f64 {
    status_mib(who, "VmHWM:")
}

fn rss_mib(who: &str) -> f64 {
    status_mib(who, "VmRSS:")
}

/// Resets `VmHWM` to the current RSS (Linux ≥ 4.0); false if the kernel refused.
fn reset_peak(who: &str) -> bool {
    std::fs::write(format!("/proc/{who}/clear_refs"), "5").is_ok()
}

/// CPU seconds used by a process so far (user + system, all threads).
fn cpu_secs(who: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{who}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Free bytes on the file system holding `path` (`df`), `None` if unknown.
fn free_bytes(path: &Path) -> Option<u64> {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------
// Calibration (run in a child of its own).

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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn calibrate() {
    let sha = sha256_speed();
    let copy = runtime().block_on(http_copy_speed());
    println!("{sha} {copy}");
}

/// Runs `--calibrate` in a child: (SHA-256 MB/s, loopback HTTP copy MB/s).
fn calibrate_in_child() -> (f64, f64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("--calibrate")
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "calibration failed: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = text.split_whitespace().map(|v| v.parse::<f64>().unwrap());
    (f.next().unwrap(), f.next().unwrap())
}

// ---------------------------------------------------------------------------------------
// The grid child.

/// `--serve-grid`: starts the introducer and the servers, prints `introducer <url>` and
/// `ready`, then answers `requests` (requests received by all servers so far) line by line on
/// standard input; exits when standard input closes.
fn serve_grid(args: &Args) {
    let rt = runtime();
    let kind = store_kind(&args.store);
    let grid = rt.block_on(LocalGrid::start_in(
        args.servers,
        kind,
        args.share_dir.as_deref(),
    ));
    let states: Vec<_> = grid.nodes.iter().map(|n| n.state.clone()).collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "introducer {}", grid.introducer_url).unwrap();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "requests" {
            let total: u64 = states
                .iter()
                .map(|s| s.metrics().requests.load(Ordering::Relaxed))
                .sum();
            writeln!(out, "requests {total}").unwrap();
            out.flush().unwrap();
        }
    }
    // The benchmark is gone (or done): no orphan servers. The share directory is the parent's.
    std::process::exit(0);
}

/// The grid child and its share directory; dropping it kills the child, then removes the
/// directory.
struct GridGuard {
    child: Child,
    dir: Option<tempfile::TempDir>,
}

impl Drop for GridGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(d) = self.dir.take() {
            let path = d.path().to_path_buf();
            if let Err(e) = d.close() {
                eprintln!("could not remove {}: {e}", path.display());
            }
        }
    }
}

/// The running grid, reachable from the panic hook, the Ctrl-C handler and the disk watch.
static GRID: Mutex<Option<GridGuard>> = Mutex::new(None);

/// Set when a signal stops the benchmark.
static STOPPING: AtomicBool = AtomicBool::new(false);

fn stop_grid() {
    // A poisoned lock still holds the guard: take it anyway.
    let guard = match GRID.lock() {
        Ok(mut g) => g.take(),
        Err(p) => p.into_inner().take(),
    };
    drop(guard);
}

/// The pipes to the grid child.
struct GridLink {
    pid: String,
    introducer_url: String,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl GridLink {
    fn line(&mut self) -> String {
        let mut l = String::new();
        let n = self.stdout.read_line(&mut l).unwrap();
        assert!(n > 0, "the grid process exited");
        l.trim().to_string()
    }

    /// Requests received by all servers so far.
    fn requests(&mut self) -> u64 {
        writeln!(self.stdin, "requests").unwrap();
        self.stdin.flush().unwrap();
        let l = self.line();
        l.strip_prefix("requests ").unwrap().parse().unwrap()
    }
}

fn start_grid(args: &Args) -> (GridLink, Option<PathBuf>) {
    let kind = store_kind(&args.store);
    let dir = (kind != Store::Memory).then(|| {
        let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&parent)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        tempfile::Builder::new()
            .prefix("lafs-bench-shares-")
            .tempdir_in(&parent)
            .unwrap_or_else(|e| {
                panic!("cannot make a share directory in {}: {e}", parent.display())
            })
    });
    let share_dir = dir.as_ref().map(|d| d.path().to_path_buf());
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--serve-grid", "--store", &args.store])
        .args(["--servers", &args.servers.to_string()]);
    if let Some(d) = &share_dir {
        cmd.arg("--share-dir").arg(d);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let pid = child.id().to_string();
    *GRID.lock().unwrap() = Some(GridGuard { child, dir });
    let mut link = GridLink {
        pid,
        introducer_url: String::new(),
        stdin,
        stdout,
    };
    loop {
        let l = link.line();
        if let Some(url) = l.strip_prefix("introducer ") {
            link.introducer_url = url.to_string();
        } else if l == "ready" {
            break;
        }
    }
    (link, share_dir)
}

// ---------------------------------------------------------------------------------------
// The client (this process).

/// Memory and CPU of one phase, client and grid.
struct Phase {
    grid_pid: String,
    cpu: f64,
    grid_cpu: f64,
    /// RSS of the client at each tenth of the phase.
    samples: Vec<f64>,
}

impl Phase {
    fn start(grid_pid: &str) -> Self {
        reset_peak("self");
        reset_peak(grid_pid);
        Self {
            grid_pid: grid_pid.to_string(),
            cpu: cpu_secs("self"),
            grid_cpu: cpu_secs(grid_pid),
            samples: Vec::new(),
        }
    }

    /// Samples the client's RSS when `done` crosses the next tenth of `total`.
    fn progress(&mut self, done: u64, total: u64) {
        let next = (self.samples.len() as u64 + 1) * total / 10;
        if done >= next && self.samples.len() < 10 {
            self.samples.push(rss_mib("self"));
        }
    }

    /// (client CPU-s, grid CPU-s) of the phase; prints the memory line and raises the run's
    /// peaks (client, grid).
    fn end(self, name: &str, run_peak: &mut (f64, f64)) -> (f64, f64) {
        let cpu = cpu_secs("self") - self.cpu;
        let grid_cpu = cpu_secs(&self.grid_pid) - self.grid_cpu;
        let peak = peak_rss_mib("self");
        let grid_peak = peak_rss_mib(&self.grid_pid);
        run_peak.0 = run_peak.0.max(peak);
        run_peak.1 = run_peak.1.max(grid_peak);
        let samples = if self.samples.is_empty() {
            String::new()
        } else {
            let s: Vec<String> = self.samples.iter().map(|v| format!("{v:.0}")).collect();
            format!("; RSS at each tenth: {} MiB", s.join(" "))
        };
        println!(
            "  {name:<28}client peak RSS {peak:4.0} MiB{samples}; grid peak RSS {grid_peak:.0} MiB"
        );
        (cpu, grid_cpu)
    }
}

/// Watches the free space of the share directory's file system; below `min_free` bytes it
/// kills the grid, removes the shares and ends the benchmark.
fn watch_disk(dir: PathBuf, min_free: u64, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if let Some(free) = free_bytes(&dir) {
                if free < min_free {
                    eprintln!(
                        "ABORT: {:.1} GB free on the share directory's file system (minimum {:.1} GB); grid stopped, shares removed",
                        free as f64 / 1e9,
                        min_free as f64 / 1e9
                    );
                    STOPPING.store(true, Ordering::SeqCst);
                    stop_grid();
                    std::process::exit(3);
                }
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
}

fn main() {
    let args = Args::parse();
    if args.serve_grid {
        return serve_grid(&args);
    }
    if args.calibrate {
        return calibrate();
    }
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if STOPPING.load(Ordering::SeqCst) {
            // The grid was stopped on a signal: requests in flight fail; the handler exits.
            loop {
                std::thread::park();
            }
        }
        stop_grid();
        default_hook(info);
    }));
    let result = std::panic::catch_unwind(|| run(&args));
    stop_grid();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

fn run(args: &Args) {
    let size = parse_size(&args.size);
    let happy = args.happy.unwrap_or(7.min(args.n));
    println!("# lafs grid client benchmark");
    println!(
        "grid: introducer + {} storage servers in a child process (store {}); client in this process; {}-of-{}, happy {happy}, 1 MiB segments, file {} MiB",
        args.servers,
        args.store,
        args.k,
        args.n,
        size >> 20
    );
    println!("load average at start          {}", load_average());
    let rt = runtime();
    let _enter = rt.enter();
    // Ctrl-C, SIGTERM, SIGHUP: stop the grid (and remove its shares) before leaving.
    rt.spawn(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt()).unwrap();
        let mut term = signal(SignalKind::terminate()).unwrap();
        let mut hup = signal(SignalKind::hangup()).unwrap();
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
        STOPPING.store(true, Ordering::SeqCst);
        stop_grid();
        eprintln!("interrupted: grid stopped, shares removed");
        std::process::exit(130);
    });
    let (sha, copy) = calibrate_in_child();
    println!("SHA-256 (1 core)              {sha:8.0} MB/s");
    println!("loopback HTTP copy (reqwest)  {copy:8.0} MB/s");

    let (mut grid, share_dir) = start_grid(args);
    let stop_watch = Arc::new(AtomicBool::new(false));
    if let Some(d) = &share_dir {
        let free = free_bytes(d).unwrap_or(0);
        println!(
            "shares in {} ({:.1} GB free there at start)",
            d.display(),
            free as f64 / 1e9
        );
        watch_disk(
            d.clone(),
            (args.min_free_gb * 1e9) as u64,
            stop_watch.clone(),
        );
    }
    let gpid = grid.pid.clone();
    if !reset_peak("self") || !reset_peak(&gpid) {
        println!("(cannot reset VmHWM here: per-phase peaks are peaks since the start)");
    }

    let mut config = ClientConfig {
        params: Params::new(args.k, args.n, MIB as u32).unwrap(),
        happy,
        ..ClientConfig::default()
    };
    if let Some(d) = args.pipeline_depth {
        config.pipeline_depth = d;
    }
    if let Some(c) = args.write_chunk {
        config.write_chunk = c;
    }
    let startup_peak = peak_rss_mib("self");
    config.spawner = Some(lafs_netclient::tokio_spawner());
    let directory = Arc::new(lafs_netclient::Grid::subscribe(&grid.introducer_url));
    rt.block_on(directory.wait_for(args.servers, Duration::from_secs(20)))
        .unwrap();
    let mut http = lafs_netclient::HttpConfig::default();
    if let Some(s) = args.request_timeout {
        http.request_timeout = Duration::from_secs(s);
    }
    println!(
        "HTTP request timeout          {:8.0} s",
        http.request_timeout.as_secs_f64()
    );
    let transport =
        lafs_netclient::HttpTransport::new(directory, SigningKey::from_bytes(&[0xac; 32]), http)
            .unwrap();
    let client = lafs_client::Client::new(Arc::new(transport), config);
    println!(
        "client RSS before the upload    {:4.0} MiB (peak so far {:.0}); grid RSS {:.0} MiB",
        rss_mib("self"),
        peak_rss_mib("self").max(startup_peak),
        rss_mib(&gpid)
    );
    // (client, grid) peaks over the whole run.
    let mut run_peak = (peak_rss_mib("self").max(startup_peak), peak_rss_mib(&gpid));

    // Upload, streamed 1 MiB at a time.
    let mut phase = Phase::start(&gpid);
    let t = Instant::now();
    let mut written = None;
    let r = rt.block_on(async {
        let mut up = client.upload(UploadOptions::default());
        let mut i = 0u64;
        let mut sent = 0u64;
        while sent < size {
            let len = (size - sent).min(MIB as u64) as usize;
            up.write(&chunk(i, len)).await?;
            sent += len as u64;
            i += 1;
            phase.progress(sent, size);
        }
        written = Some(t.elapsed());
        up.finish().await
    });
    let up_time = t.elapsed();
    let (up_cpu, up_grid_cpu) = phase.end("upload memory:", &mut run_peak);
    let r = r.unwrap_or_else(|e| {
        panic!(
            "upload failed after {:.1} s ({}): {e}",
            up_time.as_secs_f64(),
            written.map_or("while writing".to_string(), |w| format!(
                "{:.1} s writing, then while finishing",
                w.as_secs_f64()
            ))
        )
    });
    let written = written.unwrap_or(up_time);
    println!(
        "upload                        {:8.0} MB/s  ({:.2} s = {:.2} s writing + {:.2} s finishing, {:.2}x SHA-256; CPU-s: client {:.2} + grid {:.2} = {:.2}, i.e. {:.0} MB per CPU-second)",
        mbps(size, up_time),
        up_time.as_secs_f64(),
        written.as_secs_f64(),
        (up_time - written).as_secs_f64(),
        mbps(size, up_time) / sha,
        up_cpu,
        up_grid_cpu,
        up_cpu + up_grid_cpu,
        size as f64 / (up_cpu + up_grid_cpu) / 1e6
    );
    println!("load average after the upload  {}", load_average());

    // Download of the whole file.
    let mut phase = Phase::start(&gpid);
    let t = Instant::now();
    let down = rt.block_on(async {
        let mut dl = client.open(&r.cap).await?;
        let mut got = 0u64;
        let mut first = None;
        while let Some(c) = dl.next_chunk().await {
            let c = c?;
            if first.is_none() {
                first = Some(c.clone());
            }
            got += c.len() as u64;
            phase.progress(got, size);
        }
        Ok::<_, lafs_client::Error>((got, first))
    });
    let down_time = t.elapsed();
    let (down_cpu, down_grid_cpu) = phase.end("download memory:", &mut run_peak);
    match down {
        Ok((got, first)) => {
            assert_eq!(got, size);
            if let Some(f) = first {
                assert_eq!(&f[..], &chunk(0, f.len())[..], "first chunk differs");
            }
            println!(
                "download                      {:8.0} MB/s  ({:.2} s, {:.2}x SHA-256; CPU-s: client {:.2} + grid {:.2} = {:.2}, i.e. {:.0} MB per CPU-second)",
                mbps(size, down_time),
                down_time.as_secs_f64(),
                mbps(size, down_time) / sha,
                down_cpu,
                down_grid_cpu,
                down_cpu + down_grid_cpu,
                size as f64 / (down_cpu + down_grid_cpu) / 1e6
            );
        }
        Err(e) if args.keep_going => println!("download FAILED: {e}"),
        Err(e) => panic!("download failed: {e}"),
    }

    // Time to first byte of a 1 MiB range in the middle.
    let ranged = rt.block_on(async {
        let mid = (size / 2) / MIB as u64 * MIB as u64;
        let mut ttfb_open = Vec::new();
        let mut ttfb_seek = Vec::new();
        let mut range_time = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let mut dl = client.open(&r.cap).await?;
            dl.seek(mid..mid + MIB as u64);
            let c = dl.next_chunk().await.unwrap()?;
            ttfb_open.push(t.elapsed());
            assert_eq!(&c[..], &chunk(mid / MIB as u64, c.len())[..]);
            let t = Instant::now();
            dl.seek(mid / 2..mid / 2 + MIB as u64);
            let _ = dl.next_chunk().await.unwrap()?;
            ttfb_seek.push(t.elapsed());
            let t = Instant::now();
            dl.seek(mid..mid + MIB as u64);
            let _ = dl.read_all().await?;
            range_time.push(t.elapsed());
        }
        ttfb_open.sort();
        ttfb_seek.sort();
        range_time.sort();
        Ok::<_, lafs_client::Error>((ttfb_open[2], ttfb_seek[2], range_time[2]))
    });
    match ranged {
        Ok((open, seek, range)) => println!(
            "TTFB, 1 MiB range mid-file    {:8.2} ms  (open + first byte; {:.2} ms on an open file; whole 1 MiB range {:.2} ms) medians of 5",
            open.as_secs_f64() * 1e3,
            seek.as_secs_f64() * 1e3,
            range.as_secs_f64() * 1e3
        ),
        Err(e) if args.keep_going => println!("ranged read FAILED: {e}"),
        Err(e) => panic!("ranged read failed: {e}"),
    }

    // Small files: sequentially, then 16 at a time.
    let n = args.small;
    if !args.skip_small && n > 0 {
        let req0 = grid.requests();
        let phase = Phase::start(&gpid);
        let t = Instant::now();
        let (seq, par) = rt.block_on(async {
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
            (seq, done as f64 / t.elapsed().as_secs_f64())
        });
        let (small_cpu, small_grid_cpu) = phase.end("small files memory:", &mut run_peak);
        let per_file = (grid.requests() - req0) as f64 / n as f64;
        println!(
            "4 KiB uploads                 {seq:8.0} files/s one at a time, {par:.0} files/s 16 at a time ({n} files; {per_file:.1} requests per file over {} servers; CPU-ms per file: client {:.2} + grid {:.2})",
            args.servers,
            small_cpu * 1e3 / n as f64,
            small_grid_cpu * 1e3 / n as f64
        );
    }
    println!(
        "client peak RSS (VmHWM of this process, whole run)   {:4.0} MiB  (target <= 150 MiB)",
        run_peak.0
    );
    println!(
        "grid peak RSS (introducer + {} servers, whole run)   {:4.0} MiB  ({:.0} MiB at the end)",
        args.servers,
        run_peak.1,
        rss_mib(&gpid)
    );
    println!("load average at the end        {}", load_average());
    stop_watch.store(true, Ordering::Relaxed);
    drop(grid);
}
