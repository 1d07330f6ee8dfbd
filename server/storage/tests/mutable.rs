//! Mutable share endpoints over HTTP on 127.0.0.1: create, read back and verify, patch,
//! test-and-set (stale, concurrent and forged writes refused), policy errors, persistence.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{Client, TestServer};
use lafs_caps::MutableWriteCap;
use lafs_codec::Params;
use lafs_mutable::{
    encode_version, new_seed, select_latest, update, ContentKey, Entropy, FetchedShare, ShareWrite,
    SignedHeader, VersionReader, WriteKeys,
};
use lafs_proto::ids::storage_index_to_text;
use lafs_proto::mutable::{
    encode_writes, MutableWriteResponse, WirePatch, WireWrite, WriteOutcome,
};
use lafs_proto::read::{decode_response, PartContent};
use lafs_proto::storage::{ErrorCode, SharesResponse, VersionResponse};
use lafs_proto::ShareNum;
use lafs_storage::{
    AppState, Config, FsMutableStore, FsOptions, FsStore, MemoryMutableStore, MutableStore,
};

/// Deterministic entropy (a counter through SHA-free mixing is enough for tests).
struct TestEntropy(u64);

impl Entropy for TestEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), lafs_mutable::Error> {
        for b in buf {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            *b = (self.0 >> 33) as u8;
        }
        Ok(())
    }
}

fn wire(w: &ShareWrite) -> WireWrite {
    match w {
        ShareWrite::Whole { share, data } => WireWrite::Whole {
            share: ShareNum(*share as u8),
            data: data.clone(),
        },
        ShareWrite::Patch {
            share,
            new_len,
            patches,
        } => WireWrite::Patch {
            share: ShareNum(*share as u8),
            new_len: *new_len,
            patches: patches
                .iter()
                .map(|p| WirePatch {
                    offset: p.offset,
                    data: p.data.clone(),
                })
                .collect(),
        },
    }
}

async fn post_writes(c: &Client, si: &str, writes: &[ShareWrite]) -> common::Resp {
    let w: Vec<WireWrite> = writes.iter().map(wire).collect();
    c.signed(
        "POST",
        &format!("/storage/v1/mutable/{si}/write"),
        encode_writes(&w).unwrap(),
    )
    .await
}

/// Reads every share whole through the multi-range endpoint.
async fn fetch_all(c: &Client, si: &str) -> BTreeMap<u16, Vec<u8>> {
    let list: SharesResponse = c
        .get(&format!("/storage/v1/mutable/{si}/shares"))
        .await
        .expect(200)
        .json();
    let reads: Vec<_> = list
        .shares
        .iter()
        .map(|s| serde_json::json!({"share": s.share.0, "ranges": [{"offset": 0, "length": s.length}]}))
        .collect();
    let r = c
        .raw(
            "POST",
            &format!("/storage/v1/mutable/{si}/read"),
            serde_json::json!({ "reads": reads })
                .to_string()
                .into_bytes(),
            &[],
        )
        .await;
    r.expect(200);
    let mut out = BTreeMap::new();
    for p in decode_response(&r.body).unwrap() {
        if let PartContent::Data { data, .. } = p.content {
            out.insert(u16::from(p.share.0), data.to_vec());
        }
    }
    out
}

fn read_latest(cap: &MutableWriteCap, shares: &BTreeMap<u16, Vec<u8>>) -> (u64, Vec<u8>) {
    let rc = cap.read_cap();
    let headers: Vec<_> = shares
        .iter()
        .map(|(i, s)| SignedHeader::parse(*i, s).unwrap())
        .collect();
    let latest = select_latest(rc.public_key(), &headers).unwrap();
    let size = latest.info.file_size;
    let reader = VersionReader::new(
        latest.info,
        rc.public_key(),
        ContentKey::for_file(rc.read_key()),
    )
    .unwrap();
    let fetched: BTreeMap<u16, FetchedShare> = shares
        .iter()
        .map(|(i, s)| (*i, FetchedShare::whole(s.clone())))
        .collect();
    (
        latest.info.seqnum,
        reader.read(0..size, &fetched).unwrap().plaintext,
    )
}

fn mutable_config() -> Config {
    Config {
        accepts_mutable: true,
        ..Config::default()
    }
}

async fn server_with(config: Config, enable: bool) -> TestServer {
    let store: Arc<dyn lafs_storage::ShareStore> =
        Arc::new(lafs_storage::MemoryStore::new(1 << 30));
    let state = AppState::new(config, store).unwrap();
    if enable {
        assert!(state.enable_mutable(Arc::new(MemoryMutableStore::new())));
        assert!(!state.enable_mutable(Arc::new(MemoryMutableStore::new())));
    }
    TestServer::start(state).await
}

#[tokio::test]
async fn create_read_patch_and_test_and_set() {
    let dir = tempfile::tempdir().unwrap();
    let state = AppState::new(
        mutable_config(),
        Arc::new(FsStore::open(dir.path().join("store"), FsOptions::default()).unwrap()),
    )
    .unwrap();
    state.enable_mutable(Arc::new(
        FsMutableStore::open(dir.path().join("mutable")).unwrap(),
    ));
    let server = TestServer::start(state).await;
    let c = server.client(1);
    let v: VersionResponse = c.get("/storage/v1/version").await.expect(200).json();
    assert!(v.accepts_mutable);

    let mut rng = TestEntropy(7);
    let cap = MutableWriteCap::new(new_seed(&mut rng).unwrap());
    let keys = WriteKeys::for_file(&cap);
    let si = storage_index_to_text(&cap.storage_index());
    let params = Params::new(2, 3, 1024).unwrap();
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let v1 = encode_version(&keys, params, 1, &data, &mut rng).unwrap();

    let r = post_writes(&c, &si, &v1.writes()).await;
    let resp: MutableWriteResponse = r.expect(200).json();
    assert_eq!(resp.results.len(), 3);
    assert!(resp
        .results
        .iter()
        .all(|x| x.outcome == WriteOutcome::Written && x.seqnum == 1 && x.previous.is_none()));
    let stored = fetch_all(&c, &si).await;
    assert_eq!(read_latest(&cap, &stored), (1, data.clone()));

    // A retry is harmless.
    let resp: MutableWriteResponse = post_writes(&c, &si, &v1.writes()).await.expect(200).json();
    assert!(resp
        .results
        .iter()
        .all(|x| x.outcome == WriteOutcome::AlreadyStored));

    // Patch bytes 100..110 (seqnum 2).
    let old = BTreeMap::from([(0u64, data[..1024].to_vec())]);
    let v2 = update(&keys, &v1.state, 100, b"0123456789", &old, &mut rng).unwrap();
    let resp: MutableWriteResponse = post_writes(&c, &si, &v2.writes).await.expect(200).json();
    assert!(resp
        .results
        .iter()
        .all(|x| x.seqnum == 2 && x.previous == Some(1)));
    let mut expected = data.clone();
    expected[100..110].copy_from_slice(b"0123456789");
    assert_eq!(
        read_latest(&cap, &fetch_all(&c, &si).await),
        (2, expected.clone())
    );

    // The old version again: refused (not higher), nothing changes.
    let r = post_writes(&c, &si, &v1.writes()).await;
    assert_eq!(r.expect(409).error().error, ErrorCode::Conflict);
    // A different version with the same seqnum (another writer): refused.
    let other = encode_version(&keys, params, 2, b"other", &mut rng).unwrap();
    post_writes(&c, &si, &other.writes()).await.expect(409);
    // All-or-nothing: a valid seqnum-3 share with a stale one in the same request.
    let v3 = encode_version(&keys, params, 3, b"three", &mut rng).unwrap();
    let mixed = vec![v3.writes()[0].clone(), v1.writes()[1].clone()];
    post_writes(&c, &si, &mixed).await.expect(409);
    assert_eq!(
        read_latest(&cap, &fetch_all(&c, &si).await),
        (2, expected.clone())
    );

    // Restart: the shares are on disk.
    server.stop().await;
    let state = AppState::new(
        mutable_config(),
        Arc::new(FsStore::open(dir.path().join("store"), FsOptions::default()).unwrap()),
    )
    .unwrap();
    state.enable_mutable(Arc::new(
        FsMutableStore::open(dir.path().join("mutable")).unwrap(),
    ));
    let server = TestServer::start(state).await;
    let c = server.client(1);
    assert_eq!(read_latest(&cap, &fetch_all(&c, &si).await), (2, expected));
    post_writes(&c, &si, &v3.writes()).await.expect(200);
    assert_eq!(
        read_latest(&cap, &fetch_all(&c, &si).await),
        (3, b"three".to_vec())
    );
    server.stop().await;
}

#[tokio::test]
async fn forged_and_misfiled_shares_are_refused() {
    let server = server_with(mutable_config(), true).await;
    let c = server.client(2);
    let mut rng = TestEntropy(9);
    let cap = MutableWriteCap::new(new_seed(&mut rng).unwrap());
    let keys = WriteKeys::for_file(&cap);
    let si = storage_index_to_text(&cap.storage_index());
    let params = Params::new(2, 3, 1024).unwrap();
    let v1 = encode_version(&keys, params, 1, b"hello", &mut rng).unwrap();
    post_writes(&c, &si, &v1.writes()).await.expect(200);

    // A readcap holder cannot sign: bumping the seqnum without a new signature is refused.
    let mut forged = v1.shares[0].clone();
    forged[28..36].copy_from_slice(&5u64.to_be_bytes());
    let r = post_writes(
        &c,
        &si,
        &[ShareWrite::Whole {
            share: 0,
            data: forged,
        }],
    )
    .await;
    assert_eq!(r.expect(422).error().error, ErrorCode::ShareInvalid);

    // A validly signed share of another key, sent under this SI: refused.
    let cap2 = MutableWriteCap::new(new_seed(&mut rng).unwrap());
    let other = encode_version(&WriteKeys::for_file(&cap2), params, 9, b"x", &mut rng).unwrap();
    post_writes(&c, &si, &other.writes()).await.expect(422);
    // Share filed in the wrong slot: refused.
    let r = post_writes(
        &c,
        &si,
        &[ShareWrite::Whole {
            share: 1,
            data: v1.shares[0].clone(),
        }],
    )
    .await;
    r.expect(422);
    // A patch to a share that is not held.
    let cap3 = MutableWriteCap::new(new_seed(&mut rng).unwrap());
    let k3 = WriteKeys::for_file(&cap3);
    let e3 = encode_version(&k3, params, 1, b"abc", &mut rng).unwrap();
    let u3 = update(
        &k3,
        &e3.state,
        0,
        b"z",
        &BTreeMap::from([(0, b"abc".to_vec())]),
        &mut rng,
    )
    .unwrap();
    let si3 = storage_index_to_text(&cap3.storage_index());
    post_writes(&c, &si3, &u3.writes).await.expect(409);
    // Unsigned: 401. Garbage body: 400.
    let body = encode_writes(&[wire(&v1.writes()[0])]).unwrap();
    c.raw(
        "POST",
        &format!("/storage/v1/mutable/{si}/write"),
        body,
        &[],
    )
    .await
    .expect(401);
    c.signed(
        "POST",
        &format!("/storage/v1/mutable/{si}/write"),
        b"nonsense".to_vec(),
    )
    .await
    .expect(400);
    assert_eq!(
        read_latest(&cap, &fetch_all(&c, &si).await),
        (1, b"hello".to_vec())
    );
    server.stop().await;
}

#[tokio::test]
async fn concurrent_writers_one_wins() {
    let server = server_with(mutable_config(), true).await;
    let mut rng = TestEntropy(11);
    let cap = MutableWriteCap::new(new_seed(&mut rng).unwrap());
    let keys = WriteKeys::for_file(&cap);
    let si = storage_index_to_text(&cap.storage_index());
    let params = Params::new(2, 3, 1024).unwrap();
    let v1 = encode_version(&keys, params, 1, b"base", &mut rng).unwrap();
    post_writes(&server.client(3), &si, &v1.writes())
        .await
        .expect(200);
    for round in 0..10u64 {
        // Two writers both read seqnum s and publish s+1 with different contents.
        let s = read_latest(&cap, &fetch_all(&server.client(3), &si).await).0;
        let a = encode_version(
            &keys,
            params,
            s + 1,
            format!("a{round}").as_bytes(),
            &mut rng,
        )
        .unwrap();
        let b = encode_version(
            &keys,
            params,
            s + 1,
            format!("b{round}").as_bytes(),
            &mut rng,
        )
        .unwrap();
        let (ca, cb) = (server.client(4), server.client(5));
        let (wa, wb) = (a.writes(), b.writes());
        let (ra, rb) = tokio::join!(post_writes(&ca, &si, &wa), post_writes(&cb, &si, &wb));
        let mut statuses = [ra.status, rb.status];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 409], "round {round}");
        let (seq, text) = read_latest(&cap, &fetch_all(&server.client(3), &si).await);
        assert_eq!(seq, s + 1);
        let winner = if ra.status == 200 { "a" } else { "b" };
        assert_eq!(text, format!("{winner}{round}").into_bytes());
    }
    server.stop().await;
}

#[tokio::test]
async fn policy_errors() {
    let mut rng = TestEntropy(13);
    let cap = MutableWriteCap::new(new_seed(&mut rng).unwrap());
    let si = storage_index_to_text(&cap.storage_index());
    let v1 = encode_version(
        &WriteKeys::for_file(&cap),
        Params::new(1, 1, 64).unwrap(),
        1,
        b"x",
        &mut rng,
    )
    .unwrap();

    // Store attached but writes not accepted: reads work, writes are 403 forbidden.
    let s = server_with(Config::default(), true).await;
    let v: VersionResponse = s.client(1).get("/storage/v1/version").await.json();
    assert!(!v.accepts_mutable);
    let r = post_writes(&s.client(1), &si, &v1.writes()).await;
    let e = r.expect(403).error();
    assert_eq!(e.error, ErrorCode::Forbidden);
    assert!(
        e.message.contains("does not accept mutable shares"),
        "{}",
        e.message
    );
    s.client(1)
        .get(&format!("/storage/v1/mutable/{si}/shares"))
        .await
        .expect(200);
    s.stop().await;

    // Read-only.
    let s = server_with(
        Config {
            read_only: true,
            ..mutable_config()
        },
        true,
    )
    .await;
    let v: VersionResponse = s.client(1).get("/storage/v1/version").await.json();
    assert!(!v.accepts_mutable);
    let r = post_writes(&s.client(1), &si, &v1.writes()).await;
    assert_eq!(r.expect(403).error().error, ErrorCode::ReadOnly);
    s.stop().await;

    // No mutable store: 501 on every mutable endpoint.
    let s = server_with(mutable_config(), false).await;
    let v: VersionResponse = s.client(1).get("/storage/v1/version").await.json();
    assert!(!v.accepts_mutable);
    post_writes(&s.client(1), &si, &v1.writes())
        .await
        .expect(501);
    s.client(1)
        .get(&format!("/storage/v1/mutable/{si}/shares"))
        .await
        .expect(501);
    s.stop().await;
}

/// Server cost of small writes through HTTP (whole share, then patches), for the spec. Run
/// with `cargo test --release -p lafs-storage --test mutable -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "timing; run by hand in release mode"]
async fn write_timing() {
    let server = server_with(mutable_config(), true).await;
    time_patches(&server, "memory store").await;
    server.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let state = AppState::new(
        mutable_config(),
        Arc::new(FsStore::open(dir.path().join("store"), FsOptions::default()).unwrap()),
    )
    .unwrap();
    state.enable_mutable(Arc::new(
        FsMutableStore::open(dir.path().join("mutable")).unwrap(),
    ));
    let server = TestServer::start(state).await;
    time_patches(&server, "FsMutableStore (fsync per share)").await;
    server.stop().await;
}

async fn time_patches(server: &TestServer, label: &str) {
    let c = server.client(6);
    let mut rng = TestEntropy(17);
    let cap = MutableWriteCap::new(new_seed(&mut rng).unwrap());
    let keys = WriteKeys::for_file(&cap);
    let si = storage_index_to_text(&cap.storage_index());
    let params = Params::new(3, 10, 4096).unwrap();
    let data = vec![5u8; 256 * 4096];
    let v = encode_version(&keys, params, 1, &data, &mut rng).unwrap();
    post_writes(&c, &si, &v.writes()).await.expect(200);
    let mut state = v.state;
    let n = 200u64;
    let mut patches = Vec::new();
    for i in 0..n {
        let old = BTreeMap::from([(i % 256, vec![5u8; 4096])]);
        let u = update(
            &keys,
            &state,
            (i % 256) * 4096,
            &[5u8; 4096],
            &old,
            &mut rng,
        )
        .unwrap();
        state = u.state.clone();
        patches.push(u.writes);
    }
    let t = std::time::Instant::now();
    for w in &patches {
        post_writes(&c, &si, w).await.expect(200);
    }
    let per_req = t.elapsed() / n as u32;
    println!(
        "patch of one 4 KiB segment on 10 shares in one request: {per_req:?} per request ({:?} per share write), {label}",
        per_req / 10
    );
}

/// Reads the `lafs_storage_mutable_bytes_written_total` counter.
async fn mutable_bytes_metric(c: &Client) -> u64 {
    let m = c.get("/metrics").await;
    let text = String::from_utf8(m.body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("lafs_storage_mutable_bytes_written_total "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A 100 MiB mutable file (1 MiB segments, 3-of-4) on a server with `FsMutableStore`:
/// changing 10 bytes makes the server write one record per share, the tree path, the chain
/// and the header (plus the journal), not the ≈ 35 MB share.
#[tokio::test]
async fn partial_update_of_100_mib_writes_only_changed_segments_on_disk() {
    const MIB: u64 = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        max_request_body: 40 << 20,
        ..mutable_config()
    };
    let state = AppState::new(
        config,
        Arc::new(FsStore::open(dir.path().join("store"), FsOptions::default()).unwrap()),
    )
    .unwrap();
    let store = Arc::new(FsMutableStore::open(dir.path().join("mutable")).unwrap());
    state.enable_mutable(store.clone());
    let server = TestServer::start(state).await;
    let c = server.client(8);

    let mut rng = TestEntropy(23);
    let cap = MutableWriteCap::new(new_seed(&mut rng).unwrap());
    let keys = WriteKeys::for_file(&cap);
    let si = storage_index_to_text(&cap.storage_index());
    let params = Params::new(3, 4, MIB as u32).unwrap();
    let size = 100 * MIB;
    let fill = |j: u64, out: &mut [u8]| {
        for (i, b) in out.iter_mut().enumerate() {
            *b = (j as u8).wrapping_mul(31) ^ (i as u8);
        }
    };
    let v1 = lafs_mutable::encode_version_from(
        &keys,
        params,
        1,
        size,
        &mut |j, out| {
            fill(j, out);
            Ok(())
        },
        &mut rng,
    )
    .unwrap();
    let share_len = v1.shares[0].len() as u64;
    for w in v1.writes() {
        post_writes(&c, &si, &[w]).await.expect(200);
    }
    assert_eq!(store.bytes_written(), 4 * share_len);
    let metric_before = mutable_bytes_metric(&c).await;
    assert_eq!(metric_before, 4 * share_len);

    // Change 10 bytes of segment 42.
    let off = 42 * MIB + 1000;
    let mut seg = vec![0u8; MIB as usize];
    fill(42, &mut seg);
    let up = update(
        &keys,
        &v1.state,
        off,
        b"0123456789",
        &BTreeMap::from([(42, seg.clone())]),
        &mut rng,
    )
    .unwrap();
    let sent: u64 = up.writes.iter().map(ShareWrite::bytes_written).sum();
    let before = store.bytes_written();
    let resp: MutableWriteResponse = post_writes(&c, &si, &up.writes).await.expect(200).json();
    assert!(resp.results.iter().all(|r| r.seqnum == 2));
    let on_disk = store.bytes_written() - before;
    let in_place = mutable_bytes_metric(&c).await - metric_before;
    // Per share: header + chain (2 nodes for N = 4), one record (salt + 349 526-byte block),
    // the 8 tree nodes above it (128 leaves).
    let record = 16 + params.full_block_size();
    let per_share = 164 + 2 * 32 + record + 8 * 32;
    assert_eq!(sent, 4 * per_share);
    assert_eq!(in_place, sent, "share bytes written in place");
    // The journal holds the same bytes once more, plus framing and its checksum.
    assert!(
        on_disk >= 2 * sent && on_disk < 2 * sent + 1024,
        "{on_disk}"
    );
    assert!(
        on_disk * 40 < 4 * share_len,
        "{on_disk} of {}",
        4 * share_len
    );
    println!(
        "100 MiB file, 3-of-4, 1 MiB segments: 10-byte change wrote {in_place} share bytes \
         ({per_share} per share, journal included {on_disk} bytes) of {} stored",
        4 * share_len
    );

    // The file reads back: the changed segment and an untouched one.
    let shares = fetch_ranges(&c, &si, &cap, 42..43).await;
    let rc = cap.read_cap();
    let reader = reader_for(&cap, &shares);
    let out = reader.read(off - 2..off + 12, &shares).unwrap();
    let mut want = seg[998..1012].to_vec();
    want[2..12].copy_from_slice(b"0123456789");
    assert_eq!(out.plaintext, want);
    let shares = fetch_ranges(&c, &si, &cap, 7..8).await;
    let out = reader.read(7 * MIB..7 * MIB + 64, &shares).unwrap();
    let mut seg7 = vec![0u8; 64];
    fill(7, &mut seg7);
    assert_eq!(out.plaintext, seg7);
    let _ = rc;
    server.stop().await;
    // After a restart every share is still a whole valid share of version 2.
    let s = FsMutableStore::open(dir.path().join("mutable")).unwrap();
    for i in 0..4u8 {
        let bytes = s
            .read_whole(&cap.storage_index(), ShareNum(i))
            .unwrap()
            .unwrap();
        let h = lafs_mutable::verify_share(&cap.storage_index(), u16::from(i), &bytes).unwrap();
        assert_eq!(h.info.seqnum, 2);
    }
}

/// The latest version's reader, from the headers of `shares`.
fn reader_for(cap: &MutableWriteCap, shares: &BTreeMap<u16, FetchedShare>) -> VersionReader {
    let rc = cap.read_cap();
    let headers: Vec<_> = shares
        .iter()
        .map(|(i, s)| SignedHeader::parse(*i, s.get(0..lafs_mutable::HEADER_LEN).unwrap()).unwrap())
        .collect();
    let latest = select_latest(rc.public_key(), &headers).unwrap();
    VersionReader::new(
        latest.info,
        rc.public_key(),
        ContentKey::for_file(rc.read_key()),
    )
    .unwrap()
}

/// Fetches the header prefix and the ranges `VersionReader::ranges` names for `segments` of
/// every share.
async fn fetch_ranges(
    c: &Client,
    si: &str,
    cap: &MutableWriteCap,
    segments: core::ops::Range<u64>,
) -> BTreeMap<u16, FetchedShare> {
    let prefix = post_read(c, si, &[(0, lafs_mutable::MAX_PREFIX_LEN)]).await;
    let reader = reader_for(cap, &prefix);
    let ranges: Vec<(u64, u64)> = reader
        .ranges(segments)
        .unwrap()
        .into_iter()
        .map(|r| (r.start, r.end - r.start))
        .collect();
    let mut out = post_read(c, si, &ranges).await;
    for (i, p) in prefix {
        if let Some(b) = p.get(0..lafs_mutable::MAX_PREFIX_LEN) {
            out.entry(i).or_default().add(0, b.to_vec());
        }
    }
    out
}

async fn post_read(c: &Client, si: &str, ranges: &[(u64, u64)]) -> BTreeMap<u16, FetchedShare> {
    let list: SharesResponse = c
        .get(&format!("/storage/v1/mutable/{si}/shares"))
        .await
        .expect(200)
        .json();
    let rs: Vec<_> = ranges
        .iter()
        .map(|(o, l)| serde_json::json!({"offset": o, "length": l}))
        .collect();
    let reads: Vec<_> = list
        .shares
        .iter()
        .map(|s| serde_json::json!({"share": s.share.0, "ranges": rs}))
        .collect();
    let r = c
        .raw(
            "POST",
            &format!("/storage/v1/mutable/{si}/read"),
            serde_json::json!({ "reads": reads })
                .to_string()
                .into_bytes(),
            &[],
        )
        .await;
    r.expect(200);
    let mut out: BTreeMap<u16, FetchedShare> = BTreeMap::new();
    for p in decode_response(&r.body).unwrap() {
        if let PartContent::Data { data, offset, .. } = p.content {
            out.entry(u16::from(p.share.0))
                .or_default()
                .add(offset, data.to_vec());
        }
    }
    out
}

/// A crash of the server's `FsMutableStore` at every disk-changing step of a patch request
/// (torn writes too), then a restart: every share is a valid share of the old or of the new
/// version, never a mix, and all shares of the request agree (one journal per request).
#[tokio::test]
async fn crash_at_every_step_of_a_patch_leaves_old_or_new() {
    let mut rng = TestEntropy(29);
    let cap = MutableWriteCap::new(new_seed(&mut rng).unwrap());
    let keys = WriteKeys::for_file(&cap);
    let si = cap.storage_index();
    let si_text = storage_index_to_text(&si);
    let params = Params::new(2, 3, 256).unwrap();
    let data: Vec<u8> = (0..4000u32).map(|i| (i % 253) as u8).collect();
    let v1 = encode_version(&keys, params, 1, &data, &mut rng).unwrap();
    let old = BTreeMap::from([(3u64, data[768..1024].to_vec())]);
    let v2 = update(&keys, &v1.state, 800, b"patched!", &old, &mut rng).unwrap();
    let mut expected = data.clone();
    expected[800..808].copy_from_slice(b"patched!");

    let start = |store: FsMutableStore, root: &std::path::Path| {
        let state = AppState::new(
            mutable_config(),
            Arc::new(FsStore::open(root.join("store"), FsOptions::default()).unwrap()),
        )
        .unwrap();
        state.enable_mutable(Arc::new(store));
        TestServer::start(state)
    };
    let mut seen = std::collections::BTreeSet::new();
    for torn in [false, true] {
        for step in 0..100u64 {
            let dir = tempfile::tempdir().unwrap();
            let server = start(
                FsMutableStore::open(dir.path().join("mutable")).unwrap(),
                dir.path(),
            )
            .await;
            post_writes(&server.client(1), &si_text, &v1.writes())
                .await
                .expect(200);
            server.stop().await;
            let server = start(
                FsMutableStore::open_with_crash(dir.path().join("mutable"), step, torn).unwrap(),
                dir.path(),
            )
            .await;
            let status = post_writes(&server.client(1), &si_text, &v2.writes)
                .await
                .status;
            server.stop().await;
            // Restart on the same directory.
            let server = start(
                FsMutableStore::open(dir.path().join("mutable")).unwrap(),
                dir.path(),
            )
            .await;
            let shares = fetch_all(&server.client(1), &si_text).await;
            let mut seqnums = std::collections::BTreeSet::new();
            for (i, s) in &shares {
                let h = lafs_mutable::verify_share(&si, *i, s)
                    .unwrap_or_else(|e| panic!("step {step} torn {torn}: share {i}: {e}"));
                seqnums.insert(h.info.seqnum);
            }
            assert_eq!(seqnums.len(), 1, "step {step}: mixed versions {seqnums:?}");
            let (seq, text) = read_latest(&cap, &shares);
            assert_eq!(&text, if seq == 2 { &expected } else { &data });
            if status == 200 {
                assert_eq!(seq, 2);
            }
            server.stop().await;
            seen.insert((status, seq));
            if status == 200 {
                break;
            }
        }
    }
    // Crashes before and after the journal was durable, and the uninterrupted write.
    assert!(seen.contains(&(500, 1)), "{seen:?}");
    assert!(seen.contains(&(500, 2)), "{seen:?}");
    assert!(seen.contains(&(200, 2)), "{seen:?}");
}
