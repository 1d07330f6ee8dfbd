//! Mutable files against real storage servers and a real introducer on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a test failure.

mod common;

use common::LocalGrid;
use lafs_client::{ClientConfig, Error, TransportError};
use lafs_codec::Params;
use lafs_mutable::{encode_version, ContentKey, OsEntropy, ShareWrite, WriteKeys};
use lafs_proto::mutable::WireWrite;
use lafs_proto::ShareNum;

/// 3-of-10 on grids of 4 or 5 servers: mutable publishes need `happy` servers, so 4.
fn config() -> ClientConfig {
    ClientConfig {
        params: Params::new(3, 10, 4096).unwrap(),
        happy: 4,
        ..ClientConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutable_round_trips_on_disk() {
    let grid = LocalGrid::start(5, true).await;
    let (c, _g) = grid.client(config()).await;
    let data: Vec<u8> = (0..30_000u32).map(|i| (i % 253) as u8).collect();
    let cap = c.create_mutable(&data).await.unwrap();
    let rc = cap.read_cap();
    let got = c.read_mutable(&rc).await.unwrap();
    assert_eq!((got.seqnum, got.data.clone()), (1, data.clone()));
    assert_eq!(got.located.headers.len(), 10);
    assert_eq!(c.overwrite_mutable(&cap, b"v2").await.unwrap(), 2);
    assert_eq!(c.write_mutable_at(&cap, 1, b"X").await.unwrap(), 3);
    assert_eq!(c.append_mutable(&cap, b"++").await.unwrap(), 4);
    let got = c.read_mutable(&rc).await.unwrap();
    assert_eq!((got.seqnum, got.data), (4, b"vX++".to_vec()));
    // Another client (fresh transport) sees the same.
    let (c2, _g2) = grid.client(config()).await;
    assert_eq!(c2.read_mutable(&rc).await.unwrap().data, b"vX++");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readcap_holder_cannot_write_and_concurrent_writers_are_detected() {
    let grid = LocalGrid::start(4, false).await;
    let (a, _ga) = grid.client(config()).await;
    let (b, _gb) = grid.client(config()).await;
    let cap = a.create_mutable(b"base").await.unwrap();
    let rc = cap.read_cap();

    // A readcap holder signs with a key of its own: every server refuses (422).
    let forger = WriteKeys::from_parts(
        lafs_mutable::new_seed(&mut OsEntropy).unwrap(),
        ContentKey::for_file(rc.read_key()),
    );
    let v = encode_version(
        &forger,
        Params::new(3, 10, 4096).unwrap(),
        50,
        b"evil",
        &mut OsEntropy,
    )
    .unwrap();
    let writes: Vec<WireWrite> = v
        .writes()
        .into_iter()
        .map(|w| match w {
            ShareWrite::Whole { share, data } => WireWrite::Whole {
                share: ShareNum(share as u8),
                data,
            },
            ShareWrite::Patch { .. } => unreachable!("encode_version writes whole shares"),
        })
        .collect();
    for server in a.transport().servers() {
        let r = a
            .transport()
            .mutable_write(server, rc.storage_index(), writes.clone())
            .await;
        assert!(
            matches!(r, Err(TransportError::Status { status: 422, .. })),
            "{r:?}"
        );
    }
    assert_eq!(a.read_mutable(&rc).await.unwrap().data, b"base");

    // Two writers read version 1 and both publish version 2, concurrently.
    let keys = WriteKeys::for_file(&cap);
    let ra = a.mutable_read_latest(&keys.read_keys()).await.unwrap();
    let rb = b.mutable_read_latest(&keys.read_keys()).await.unwrap();
    let (pa, pb) = tokio::join!(
        a.mutable_publish(&keys, 2, b"from a", &ra.located),
        b.mutable_publish(&keys, 2, b"from b", &rb.located)
    );
    let refused = [&pa, &pb]
        .iter()
        .filter(|r| matches!(r, Err(Error::UncoordinatedWrite { seqnum: 2, .. })))
        .count();
    assert!(refused >= 1, "{pa:?} {pb:?}");
    assert!(pa.is_ok() || pb.is_ok() || refused == 2);
    // Whatever happened, a reader either gets one whole version or is told of the split;
    // a new publish on top (the recovery rule) ends it.
    let top = a.overwrite_mutable(&cap, b"merged").await.unwrap();
    assert!(top >= 3);
    assert_eq!(b.read_mutable(&rc).await.unwrap().data, b"merged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_on_a_real_grid() {
    let grid = LocalGrid::start(4, true).await;
    let (c, _g) = grid
        .client(ClientConfig {
            happy: 4,
            ..config()
        })
        .await;
    let file = c
        .upload_bytes(&[7u8; 5000], lafs_client::UploadOptions::default())
        .await
        .unwrap()
        .cap;
    let root = c.mkdir().await.unwrap();
    let sub = c.mkdir().await.unwrap();
    c.dir_set(&root, "sub", &sub.clone().into(), b"")
        .await
        .unwrap();
    c.dir_set(&sub, "f.bin", &file, b"{\"size\":5000}")
        .await
        .unwrap();
    c.dir_rename(&sub, "f.bin", "g.bin").await.unwrap();
    let root_cap: lafs_caps::Cap = root.clone().into();
    let found = c.resolve(&root_cap, "sub/g.bin").await.unwrap();
    assert_eq!(found, file);
    assert_eq!(
        c.open(&found).await.unwrap().read_all().await.unwrap(),
        vec![7u8; 5000]
    );
    // Traversal: reaches the file's verifycap, no names.
    let t = c.open_dir(&root.traverse_cap().into()).await.unwrap().dir;
    assert!(t.names().is_err());
    let child = t.traverse_caps().unwrap().remove(0);
    let leaf = c
        .open_dir(&child)
        .await
        .unwrap()
        .dir
        .traverse_caps()
        .unwrap();
    assert!(c.check(&leaf[0], true).await.unwrap().healthy);
    // Immutable snapshot.
    let snap = c
        .mkdir_immutable(&[("g.bin".into(), file.clone(), vec![])])
        .await
        .unwrap();
    assert_eq!(c.resolve(&snap, "g.bin").await.unwrap(), file);
    c.dir_remove(&sub, "g.bin").await.unwrap();
    assert!(c.resolve(&root_cap, "sub/g.bin").await.is_err());
}

/// Client and real servers together: a 10-byte change of a 1 MiB mutable file (4 KiB
/// segments, 3-of-10, servers on disk) makes the servers write only the patched record, tree
/// path, chain and header of each share — counted by the servers themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_change_writes_only_patches_on_the_servers() {
    let grid = LocalGrid::start(5, true).await;
    let (c, _g) = grid.client(config()).await;
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let written = |g: &LocalGrid| -> u64 {
        g.nodes
            .iter()
            .map(|n| {
                n.state
                    .metrics()
                    .mutable_bytes_written
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum()
    };
    let cap = c.create_mutable(&data).await.unwrap();
    let whole = written(&grid);
    let share_len = whole / 10;
    assert_eq!(
        c.write_mutable_at(&cap, 500_000, b"0123456789")
            .await
            .unwrap(),
        2
    );
    let patched = written(&grid) - whole;
    // Per share: header (164) + chain (4 × 32) + one record (16 + 1366) + 9 tree nodes (256
    // leaves).
    assert_eq!(patched, 10 * (164 + 4 * 32 + 16 + 1366 + 9 * 32));
    assert!(
        patched * 100 < whole,
        "{patched} of {whole} ({share_len} per share)"
    );
    let mut expected = data;
    expected[500_000..500_010].copy_from_slice(b"0123456789");
    assert_eq!(
        c.read_mutable(&cap.read_cap()).await.unwrap().data,
        expected
    );
}

/// A whole share travels in one request: above the servers' request limit (4 MiB by default)
/// every server refuses it, and the error says so (not only "not happy").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_above_the_request_limit_is_reported() {
    let grid = LocalGrid::start(4, false).await;
    let (c, _g) = grid
        .client(ClientConfig {
            params: Params::new(3, 10, 1 << 20).unwrap(),
            happy: 4,
            ..ClientConfig::default()
        })
        .await;
    // 15 MiB at 3-of-10 makes 5 MiB shares; the servers announce a 4 MiB request limit, so
    // the client refuses before sending anything (a server could only cut the body short).
    let err = c.create_mutable(&vec![1u8; 15 << 20]).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::ShareTooLarge {
                share_bytes,
                limit: 4194304,
                accepting: 4,
            } if *share_bytes > 5 << 20
        ),
        "{err}"
    );
    assert!(err.to_string().contains("request limit"), "{err}");
}
