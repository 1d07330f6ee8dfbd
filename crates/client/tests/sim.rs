//! End-to-end tests of upload, download and check on the deterministic simulated grid.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a test failure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::executor::block_on;
use lafs_caps::Cap;
use lafs_client::sim::{Knobs, SimGrid};
use lafs_client::{Client, ClientConfig, CopyStatus, Error, UploadOptions, UploadProgress};
use lafs_codec::Params;

const SEG: u32 = 1000;

fn config() -> ClientConfig {
    ClientConfig {
        params: Params::new(3, 10, SEG).unwrap(),
        happy: 7,
        write_chunk: 4096,
        ..ClientConfig::default()
    }
}

fn grid(n: usize, seed: u64) -> (Arc<SimGrid>, Client) {
    let g = Arc::new(SimGrid::new(n, seed));
    let c = Client::new(g.clone(), config());
    (g, c)
}

/// Fixed keys: every placement, and so every test, is deterministic.
fn opts() -> UploadOptions {
    UploadOptions {
        key: Some(lafs_caps::ReadKey::from_bytes([0x42; 16])),
        ..UploadOptions::default()
    }
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

fn si_of(cap: &Cap) -> lafs_caps::StorageIndex {
    match cap {
        Cap::ImmutableRead(c) => *c.storage_index(),
        _ => panic!("not an immutable cap"),
    }
}

fn download(c: &Client, cap: &Cap) -> Result<Vec<u8>, Error> {
    block_on(async {
        let mut d = c.open(cap).await?;
        d.read_all().await
    })
}

#[test]
fn round_trips_of_every_interesting_size() {
    let s = SEG as usize;
    for (i, len) in [0, 1, 55, 56, 57, s - 1, s, s + 1, 3 * s + 7, 40 * s + 1]
        .into_iter()
        .enumerate()
    {
        let (g, c) = grid(10, i as u64);
        let d = data(len, i as u64);
        let up = block_on(c.upload_bytes(&d, opts())).unwrap();
        assert_eq!(up.size, len as u64);
        if len <= 55 {
            assert!(matches!(up.cap, Cap::Literal(_)), "{len}");
            assert_eq!(g.total(), Default::default(), "a literal cap sends nothing");
        } else {
            assert_eq!(up.uploaded, 10);
            assert_eq!(up.happiness, 10);
            assert_eq!(g.shares_of(&si_of(&up.cap)).len(), 10);
        }
        assert_eq!(download(&c, &up.cap).unwrap(), d, "size {len}");
        let report = block_on(c.check(&up.cap, true)).unwrap();
        assert!(
            report.healthy && report.recoverable,
            "size {len}: {report:?}"
        );
        // The cap survives its text form.
        let text = up.cap.to_string();
        assert_eq!(download(&c, &text.parse().unwrap()).unwrap(), d);
    }
}

#[test]
fn a_few_mib_with_small_segments_and_random_ranges() {
    let (_g, c) = grid(10, 7);
    let mut cfg = config();
    cfg.params = Params::new(3, 10, 64 * 1024).unwrap();
    let c = Client::new(c.transport().clone(), cfg);
    let d = data(3 * 1024 * 1024 + 123, 7);
    let up = block_on(c.upload_bytes(&d, opts())).unwrap();
    let mut dl = block_on(c.open(&up.cap)).unwrap();
    assert_eq!(dl.size(), d.len() as u64);
    assert_eq!(block_on(dl.read_all()).unwrap(), d);
    let mut rng = fastrand::Rng::with_seed(99);
    for _ in 0..60 {
        let a = rng.u64(..=d.len() as u64);
        let b = rng.u64(a..=(a + 300_000).min(d.len() as u64));
        let r = dl.seek(a..b);
        let got = block_on(dl.read_all()).unwrap();
        assert_eq!(got, &d[r.start as usize..r.end as usize], "{a}..{b}");
    }
    // Past the end is clamped, not an error.
    let r = dl.seek(d.len() as u64 - 5..d.len() as u64 + 100);
    assert_eq!(r.end, d.len() as u64);
    assert_eq!(block_on(dl.read_all()).unwrap(), &d[d.len() - 5..]);
}

#[test]
fn verifycap_gives_the_ciphertext() {
    let (_g, c) = grid(10, 3);
    let d = data(5000, 3);
    let up = block_on(c.upload_bytes(&d, opts())).unwrap();
    let Cap::ImmutableRead(rc) = &up.cap else {
        panic!()
    };
    let vc = Cap::ImmutableVerify(rc.verify_cap());
    assert_eq!(Some(rc.verify_cap()), up.verify_cap);
    let mut ct = d.clone();
    lafs_codec::encrypt_at(rc.key(), 0, &mut ct).unwrap();
    assert_eq!(download(&c, &vc).unwrap(), ct);
    assert!(block_on(c.check(&vc, true)).unwrap().healthy);
}

#[test]
fn ciphertext_uploads_give_the_same_verifycap() {
    let key = lafs_caps::ReadKey::from_bytes([0x42; 16]);
    for len in [10, 5000, 12 * SEG as usize + 3] {
        let (g, c) = grid(10, 4);
        let d = data(len, 4);
        let mut ct = d.clone();
        lafs_codec::encrypt_at(&key, 0, &mut ct).unwrap();
        let opts = UploadOptions {
            ciphertext: Some(lafs_caps::selection_index_for(&key)),
            ..UploadOptions::default()
        };
        let up = block_on(c.upload_bytes(&ct, opts)).unwrap();
        let Cap::ImmutableVerify(vc) = &up.cap else {
            panic!("{:?}", up.cap)
        };
        assert_eq!(up.verify_cap.as_ref(), Some(vc));
        assert_eq!((up.uploaded, up.happiness), (10, 10), "size {len}");
        assert_eq!(download(&c, &up.cap).unwrap(), ct);
        // The same file uploaded as plaintext under that key has the same verifycap.
        let (_g2, c2) = grid(10, 4);
        let plain = block_on(c2.upload_bytes(&d, opts_with_key(key.clone()))).unwrap();
        if len > 55 {
            assert_eq!(plain.verify_cap.as_ref(), Some(vc), "size {len}");
        }
        let _ = g;
    }
}

fn opts_with_key(key: lafs_caps::ReadKey) -> UploadOptions {
    UploadOptions {
        key: Some(key),
        ..UploadOptions::default()
    }
}

#[test]
fn n_minus_k_servers_dead_before_and_during_download() {
    let (g, c) = grid(10, 11);
    let d = data(20 * SEG as usize + 5, 11);
    let up = block_on(c.upload_bytes(&d, opts())).unwrap();
    let si = si_of(&up.cap);
    // Kill the holders of shares 0..7 (the data shares first): only parity 7, 8, 9 remain.
    for (server, share, _) in g.shares_of(&si) {
        if share < 7 {
            g.set_knobs(server, |k| k.dead = true);
        }
    }
    assert_eq!(download(&c, &up.cap).unwrap(), d);

    // Now the servers die while the download runs: each answers a few requests, then stops.
    let (g, c) = grid(10, 12);
    let up = block_on(c.upload_bytes(&d, opts())).unwrap();
    let si = si_of(&up.cap);
    let mut dying = 0;
    for (server, share, _) in g.shares_of(&si) {
        if share < 7 {
            // open costs list + read; then a few segment reads each.
            g.set_knobs(server, |k| k.fail_after = Some(2 + 2 * u64::from(share)));
            dying += 1;
        }
    }
    assert_eq!(dying, 7);
    g.reset_counters();
    let mut dl = block_on(c.open(&up.cap)).unwrap();
    assert_eq!(block_on(dl.read_all()).unwrap(), d);
    assert_eq!(dl.failed_servers().len(), 7);

    // One more death and the file is unreadable, with a clear error.
    let (g, c) = grid(10, 13);
    let up = block_on(c.upload_bytes(&d, opts())).unwrap();
    for (server, share, _) in g.shares_of(&si_of(&up.cap)) {
        if share < 8 {
            g.set_knobs(server, |k| k.dead = true);
        }
    }
    let err = download(&c, &up.cap).unwrap_err();
    assert_eq!(
        err,
        Error::NotEnoughShares {
            need: 3,
            found: 2,
            queried: 10,
            reachable: 2
        }
    );
}

#[test]
fn dead_servers_during_upload_within_happiness() {
    let d = data(10 * SEG as usize, 21);
    // Three servers down from the start: 7 remain, some take two shares, happiness is 7.
    let (g, c) = grid(10, 21);
    for i in 0..3 {
        g.set_knobs(i, |k| k.dead = true);
    }
    let up = block_on(c.upload_bytes(&d, opts())).unwrap();
    assert_eq!(up.happiness, 7);
    assert_eq!(up.uploaded, 10);
    assert_eq!(download(&c, &up.cap).unwrap(), d);

    // Servers dying mid-upload (after allocation): a small file's shares move to spare servers.
    let (g, c) = grid(13, 22);
    let small = data(900, 22);
    for i in 0..13 {
        // version, then the whole-share request fails.
        g.set_knobs(i, |k| k.fail_after = Some(if i % 4 == 0 { 1 } else { 100 }));
    }
    let up = block_on(c.upload_bytes(&small, opts())).unwrap();
    assert!(up.lost.is_empty(), "{:?}", up.lost);
    assert!(!up.failed_servers.is_empty());
    assert_eq!(up.shares.len(), 10);
    assert!(up.happiness >= 7);
    assert_eq!(download(&c, &up.cap).unwrap(), small);

    // A large file: shares partly written on a dying server are lost; the upload continues
    // while the rest stays happy, and the file reads back.
    let d = data(40 * SEG as usize, 23);
    let (g, c) = grid(10, 23);
    for i in [1, 4, 7] {
        // version, allocate, one write; then the server dies.
        g.set_knobs(i, |k| k.fail_after = Some(3));
    }
    let up = block_on(c.upload_bytes(&d, opts())).unwrap();
    assert_eq!(up.lost.len(), 3, "{up:?}");
    assert_eq!(up.happiness, 7);
    assert_eq!(download(&c, &up.cap).unwrap(), d);
    let report = block_on(c.check(&up.cap, false)).unwrap();
    assert!(!report.healthy && report.recoverable);
    assert_eq!(report.good_shares, 7);

    // Too many deaths mid-upload: not happy, and the allocations are aborted.
    let (g, c) = grid(10, 24);
    for i in [0, 2, 4, 6] {
        g.set_knobs(i, |k| k.fail_after = Some(3));
    }
    let err = block_on(c.upload_bytes(&d, opts())).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotHappy {
                achieved: 6,
                needed: 7,
                ..
            }
        ),
        "{err}"
    );
    assert!(g.total().abort >= 6);
}

#[test]
fn not_happy_names_the_numbers() {
    let (g, c) = grid(10, 31);
    for i in 0..4 {
        g.set_knobs(i, |k| k.dead = true);
    }
    let err = block_on(c.upload_bytes(&data(1000, 1), opts())).unwrap_err();
    assert_eq!(
        err,
        Error::NotHappy {
            queried: 10,
            reachable: 6,
            accepting: 6,
            achieved: 6,
            needed: 7
        }
    );
    let msg = err.to_string();
    assert!(msg.contains("6 of 10 storage server(s) reachable"), "{msg}");
    assert!(msg.contains("7 are needed"), "{msg}");
    assert_eq!(
        g.total().allocate,
        0,
        "nothing is allocated when placement is not happy"
    );

    // Full and read-only servers answer but do not count.
    let (g, c) = grid(10, 32);
    g.set_knobs(0, |k| k.full = true);
    g.set_knobs(1, |k| k.read_only = true);
    g.set_knobs(2, |k| k.full = true);
    g.set_knobs(3, |k| k.dead = true);
    let err = block_on(c.upload_bytes(&data(1000, 1), opts())).unwrap_err();
    assert!(
        err.to_string()
            .contains("9 of 10 storage server(s) reachable, 6 accepting"),
        "{err}"
    );

    let (_g, c) = grid(0, 33);
    assert_eq!(
        block_on(c.upload_bytes(&data(1000, 1), opts())).unwrap_err(),
        Error::NoServers
    );
}

#[test]
fn full_and_read_only_servers_are_skipped() {
    let (g, c) = grid(12, 41);
    g.set_knobs(0, |k| k.full = true);
    g.set_knobs(5, |k| k.read_only = true);
    let d = data(5000, 41);
    let up = block_on(c.upload_bytes(&d, opts())).unwrap();
    assert_eq!(up.happiness, 10);
    let si = si_of(&up.cap);
    assert!(g.shares_of(&si).iter().all(|(s, _, _)| *s != 0 && *s != 5));
    assert_eq!(download(&c, &up.cap).unwrap(), d);
}

#[test]
fn corrupt_share_is_detected_routed_around_and_reported() {
    let (g, c) = grid(10, 51);
    let d = data(8 * SEG as usize, 51);
    let up = block_on(c.upload_bytes(&d, opts())).unwrap();
    let si = si_of(&up.cap);
    let (server, _, _) = g
        .shares_of(&si)
        .into_iter()
        .find(|(_, s, _)| *s == 1)
        .unwrap();
    // A byte in the block of segment 2 of share 1 (a data share, so it is read).
    let block = Params::new(3, 10, SEG).unwrap().full_block_size();
    assert!(g.corrupt(server, &si, 1, 20 + 2 * block + 7));
    let mut dl = block_on(c.open(&up.cap)).unwrap();
    assert_eq!(block_on(dl.read_all()).unwrap(), d);
    let adv = g.advisories(server);
    assert_eq!(adv.len(), 1, "{adv:?}");
    assert_eq!(adv[0].share, 1);
    assert_eq!(adv[0].storage_index, si);
    assert!(adv[0].reason.contains("segment 2"), "{}", adv[0].reason);
    assert_eq!(dl.advisories().len(), 1);

    // Check with verify finds it too and says the file is recoverable but not healthy.
    let report = block_on(c.check(&up.cap, true)).unwrap();
    let bad: Vec<_> = report
        .copies
        .iter()
        .filter(|c| matches!(c.status, CopyStatus::Corrupt(_)))
        .collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].share, 1);
    assert!(report.recoverable && !report.healthy);
    assert_eq!(report.good_shares, 9);
    // A plain check (trailers only) cannot see a corrupt block.
    assert!(block_on(c.check(&up.cap, false)).unwrap().healthy);
}

#[test]
fn lying_servers_are_routed_around() {
    let (g, c) = grid(10, 61);
    let d = data(6 * SEG as usize + 3, 61);
    let up = block_on(c.upload_bytes(&d, opts())).unwrap();
    let si = si_of(&up.cap);
    let liars: Vec<(usize, u16)> = g
        .shares_of(&si)
        .into_iter()
        .filter(|(_, s, _)| *s < 4)
        .map(|(i, s, _)| (i, s))
        .collect();
    for &(i, _) in &liars {
        g.set_knobs(i, |k| k.lying = true);
    }
    assert_eq!(download(&c, &up.cap).unwrap(), d);
    // The data shares 0..3 are always read, so their liars are always caught (share 3's liar
    // only if its flipped byte lands in something the download uses).
    for &(i, share) in &liars {
        if share < 3 {
            assert!(
                !g.advisories(i).is_empty(),
                "server {i} (share {share}) was not reported"
            );
        }
    }
}

#[test]
fn convergent_upload_twice_uploads_nothing_new() {
    let (g, c) = grid(10, 71);
    let d = data(5 * SEG as usize + 17, 71);
    let conv = UploadOptions {
        convergence: Some(b"our secret".to_vec()),
        ..UploadOptions::default()
    };
    let first = block_on(c.upload_bytes(&d, conv.clone())).unwrap();
    assert_eq!(first.uploaded, 10);
    g.reset_counters();
    let second = block_on(c.upload_bytes(&d, conv.clone())).unwrap();
    assert_eq!(second.cap, first.cap);
    assert_eq!(second.uploaded, 0);
    assert_eq!(second.existing, 10);
    let t = g.total();
    assert_eq!(
        (t.allocate, t.write, t.finish, t.put_share),
        (0, 0, 0, 0),
        "{t:?}"
    );

    // One share lost: only that one is uploaded again, to a server without a share.
    let si = si_of(&first.cap);
    let (server, _, _) = g
        .shares_of(&si)
        .into_iter()
        .find(|(_, s, _)| *s == 4)
        .unwrap();
    assert!(g.remove_share(server, &si, 4));
    g.reset_counters();
    let third = block_on(c.upload_bytes(&d, conv)).unwrap();
    assert_eq!((third.uploaded, third.existing), (1, 9));
    // The share fits in one request: sent whole, no allocate, write or finish.
    let t = g.total();
    assert_eq!((t.put_share, t.allocate, t.finish), (1, 0, 0), "{t:?}");
    assert_eq!(g.shares_of(&si).len(), 10);
    assert_eq!(download(&c, &third.cap).unwrap(), d);

    // A different secret gives a different cap.
    let other = UploadOptions {
        convergence: Some(b"another secret".to_vec()),
        ..UploadOptions::default()
    };
    assert_ne!(block_on(c.upload_bytes(&d, other)).unwrap().cap, first.cap);
}

#[test]
fn small_file_costs_one_request_per_server() {
    let (g, c) = grid(10, 81);
    let up = block_on(c.upload_bytes(&data(700, 81), opts())).unwrap();
    let t = g.total();
    // Besides the version round (which the HTTP transport answers from its cache in a burst
    // of uploads), one whole-share request per server and nothing else.
    assert_eq!(
        (t.version, t.put_share, t.allocate, t.write, t.finish),
        (10, 10, 0, 0, 0),
        "{t:?}"
    );
    for i in 0..10 {
        assert_eq!(g.counters(i).put_share, 1);
    }
    assert_eq!((up.uploaded, up.existing, up.happiness), (10, 0, 10));
    g.reset_counters();
    assert_eq!(download(&c, &up.cap).unwrap(), data(700, 81));
    let t = g.total();
    // One list and one suffix read per server; the suffix holds the whole share.
    assert_eq!((t.list, t.read), (10, 10), "{t:?}");
}

#[test]
fn servers_without_the_whole_share_request_get_allocate_write_finish() {
    let (g, c) = grid(10, 82);
    for i in 0..10 {
        g.set_knobs(i, |k| k.no_put_share = i % 2 == 0);
    }
    let d = data(3000, 82);
    let up = block_on(c.upload_bytes(&d, opts())).unwrap();
    assert_eq!((up.uploaded, up.happiness), (10, 10));
    assert!(up.failed_servers.is_empty());
    let t = g.total();
    assert_eq!(
        (t.put_share, t.allocate, t.write, t.finish),
        (10, 5, 5, 5),
        "{t:?}"
    );
    assert_eq!(download(&c, &up.cap).unwrap(), d);
}

struct Counter {
    encoded: AtomicU64,
    acked: AtomicU64,
    calls: AtomicU64,
}

impl UploadProgress for Counter {
    fn progress(&self, encoded: u64, acknowledged: u64) {
        assert!(acknowledged <= encoded);
        assert!(encoded >= self.encoded.load(Ordering::Relaxed));
        self.encoded.store(encoded, Ordering::Relaxed);
        self.acked.store(acknowledged, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn streaming_upload_of_unknown_size_with_progress() {
    let (_g, c) = grid(10, 91);
    let d = data(25 * SEG as usize + 333, 91);
    let progress = Arc::new(Counter {
        encoded: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        calls: AtomicU64::new(0),
    });
    let mut up = c.upload(UploadOptions {
        progress: Some(progress.clone()),
        ..opts()
    });
    let mut rng = fastrand::Rng::with_seed(5);
    let mut pos = 0;
    while pos < d.len() {
        let n = rng.usize(1..2500).min(d.len() - pos);
        block_on(up.write(&d[pos..pos + n])).unwrap();
        pos += n;
    }
    let r = block_on(up.finish()).unwrap();
    assert!(block_on(up.finish()).is_err());
    assert_eq!(progress.encoded.load(Ordering::Relaxed), d.len() as u64);
    assert_eq!(progress.acked.load(Ordering::Relaxed), d.len() as u64);
    assert!(progress.calls.load(Ordering::Relaxed) > 20);
    assert_eq!(download(&c, &r.cap).unwrap(), d);
}

#[test]
fn missing_file_and_stream_api() {
    let (_g, c) = grid(10, 101);
    let key = lafs_caps::ReadKey::from_bytes([9; 16]);
    let cap = Cap::ImmutableRead(lafs_caps::ImmutableReadCap::new(
        key,
        lafs_caps::StorageIndex([1; 32]),
    ));
    assert_eq!(
        block_on(c.open(&cap)).err(),
        Some(Error::NotFound {
            queried: 10,
            reachable: 10
        })
    );
    let d = data(4321, 101);
    let up = block_on(c.upload_bytes(&d, opts())).unwrap();
    let dl = block_on(c.open(&up.cap)).unwrap();
    use futures::StreamExt;
    let chunks: Vec<_> = block_on(dl.into_stream().collect::<Vec<_>>());
    assert_eq!(chunks.len(), 5, "one chunk per segment");
    let got: Vec<u8> = chunks
        .into_iter()
        .flat_map(|c| c.unwrap().to_vec())
        .collect();
    assert_eq!(got, d);
    let _ = Knobs::default();
}

/// Runs each spawned future on its own thread.
struct ThreadSpawner;

impl lafs_client::Spawn for ThreadSpawner {
    fn spawn(&self, fut: lafs_client::BoxFut<()>) {
        std::thread::spawn(move || block_on(fut));
    }
}

#[test]
fn uploads_with_a_spawner_encode_elsewhere_and_agree() {
    let d = data(40 * SEG as usize + 333, 112);
    let (g0, c0) = grid(10, 112);
    let plain = block_on(c0.upload_bytes(&d, opts())).unwrap();
    let (g, _) = grid(10, 112);
    let mut cfg = config();
    cfg.spawner = Some(lafs_client::Spawner(Arc::new(ThreadSpawner)));
    let c = Client::new(g.clone(), cfg);
    // Streamed in uneven pieces: segments are completed across writes.
    let mut up = c.upload(opts());
    for piece in d.chunks(777) {
        block_on(up.write(piece)).unwrap();
    }
    let spawned = block_on(up.finish()).unwrap();
    assert_eq!(spawned.cap, plain.cap, "same key, same file, same cap");
    assert_eq!(download(&c, &spawned.cap).unwrap(), d);
    assert_eq!(g.total().write_bytes, g0.total().write_bytes);
    // A server dying mid-upload while segments are encoded elsewhere: still happy.
    let (g, _) = grid(10, 113);
    g.set_knobs(3, |k| k.fail_after = Some(3));
    let mut cfg = config();
    cfg.spawner = Some(lafs_client::Spawner(Arc::new(ThreadSpawner)));
    let c = Client::new(g.clone(), cfg);
    let up = block_on(c.upload_bytes(&d, opts())).unwrap();
    assert!(up.happiness >= 7);
    assert_eq!(download(&c, &up.cap).unwrap(), d);
}

/// Runs each spawned future on its own thread, every other one late, so that segments
/// encoded at once finish out of order.
struct LateSpawner(AtomicU64);

impl lafs_client::Spawn for LateSpawner {
    fn spawn(&self, fut: lafs_client::BoxFut<()>) {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        std::thread::spawn(move || {
            if n % 2 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            block_on(fut)
        });
    }
}

#[test]
fn segments_encoded_at_once_and_finishing_out_of_order_give_the_same_shares() {
    let d = data(41 * SEG as usize + 5, 114);
    let (g0, c0) = grid(10, 114);
    let plain = block_on(c0.upload_bytes(&d, opts())).unwrap();
    let (g, _) = grid(10, 114);
    let mut cfg = config();
    let spawner = Arc::new(LateSpawner(AtomicU64::new(0)));
    cfg.spawner = Some(lafs_client::Spawner(spawner.clone()));
    let c = Client::new(g.clone(), cfg);
    let mut up = c.upload(opts());
    // Pieces of two segments and a bit: several segments complete per write.
    for piece in d.chunks(2 * SEG as usize + 77) {
        block_on(up.write(piece)).unwrap();
    }
    let spawned = block_on(up.finish()).unwrap();
    // One task per segment.
    assert_eq!(spawner.0.load(Ordering::Relaxed), 42);
    // Same key and file: same storage index, which commits to every byte of every share.
    assert_eq!(spawned.cap, plain.cap);
    assert_eq!(g.total().write_bytes, g0.total().write_bytes);
    assert_eq!(download(&c, &spawned.cap).unwrap(), d);
}

#[test]
fn downloads_with_a_spawner_decode_elsewhere_and_agree() {
    let (g, _) = grid(10, 111);
    let mut cfg = config();
    cfg.spawner = Some(lafs_client::Spawner(Arc::new(ThreadSpawner)));
    cfg.pipeline_depth = 3;
    let c = Client::new(g.clone(), cfg);
    let d = data(30 * SEG as usize + 9, 111);
    let up = block_on(c.upload_bytes(&d, opts())).unwrap();
    // A server dies half-way: fail-over works from spawned fetches too.
    let (server, _, _) = g
        .shares_of(&si_of(&up.cap))
        .into_iter()
        .find(|(_, s, _)| *s == 0)
        .unwrap();
    g.set_knobs(server, |k| k.fail_after = Some(10));
    let mut dl = block_on(c.open(&up.cap)).unwrap();
    assert_eq!(block_on(dl.read_all()).unwrap(), d);
    dl.seek(1234..20_000);
    assert_eq!(block_on(dl.read_all()).unwrap(), &d[1234..20_000]);
}

#[test]
fn a_hanging_server_does_not_hold_up_a_download() {
    let (g, c) = grid(10, 121);
    let d = data(12 * SEG as usize, 121);
    let up = block_on(c.upload_bytes(&d, opts())).unwrap();
    let si = si_of(&up.cap);
    // The holders of shares 0 and 5 stop answering (without a timer the client would wait
    // for them forever: the simulated requests never complete).
    for (server, share, _) in g.shares_of(&si) {
        if share == 0 || share == 5 {
            g.set_knobs(server, |k| k.hang = true);
        }
    }
    let mut dl = block_on(c.open(&up.cap)).unwrap();
    assert_eq!(block_on(dl.read_all()).unwrap(), d);
}
