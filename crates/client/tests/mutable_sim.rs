//! Mutable files on the simulated grid: create, read, overwrite, modify, append; a readcap
//! holder cannot write; concurrent writers are detected; read-only and dead servers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use futures::executor::block_on;
use lafs_caps::MutableWriteCap;
use lafs_client::{sim::SimGrid, Client, ClientConfig, Error, Transport, TransportError};
use lafs_codec::Params;
use lafs_mutable::{encode_version, ContentKey, OsEntropy, WriteKeys};
use lafs_proto::mutable::WireWrite;
use lafs_proto::ShareNum;

fn client(grid: &Arc<SimGrid>) -> Client {
    Client::new(
        grid.clone(),
        ClientConfig {
            params: Params::new(3, 10, 4096).unwrap(),
            ..ClientConfig::default()
        },
    )
}

#[test]
fn create_read_overwrite_modify_append() {
    let grid = Arc::new(SimGrid::new(10, 1));
    let c = client(&grid);
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7) as u8).collect();
    let cap = block_on(c.create_mutable(&data)).unwrap();
    let rc = cap.read_cap();
    let got = block_on(c.read_mutable(&rc)).unwrap();
    assert_eq!((got.seqnum, got.data.as_slice()), (1, data.as_slice()));
    // One share per server (10 servers, N = 10).
    assert_eq!(got.located.headers.len(), 10);

    assert_eq!(block_on(c.overwrite_mutable(&cap, b"short")).unwrap(), 2);
    assert_eq!(block_on(c.read_mutable(&rc)).unwrap().data, b"short");
    assert_eq!(block_on(c.write_mutable_at(&cap, 1, b"HO")).unwrap(), 3);
    assert_eq!(block_on(c.read_mutable(&rc)).unwrap().data, b"sHOrt");
    assert_eq!(block_on(c.append_mutable(&cap, b"!!")).unwrap(), 4);
    assert_eq!(block_on(c.write_mutable_at(&cap, 6, b"xyz")).unwrap(), 5);
    let got = block_on(c.read_mutable(&rc)).unwrap();
    assert_eq!(
        (got.seqnum, got.data.as_slice()),
        (5, b"sHOrt!xyz".as_slice())
    );
    assert!(matches!(
        block_on(c.write_mutable_at(&cap, 100, b"x")),
        Err(Error::BadParams(_))
    ));
    // An empty file.
    let empty = block_on(c.create_mutable(b"")).unwrap();
    assert!(block_on(c.read_mutable(&empty.read_cap()))
        .unwrap()
        .data
        .is_empty());
}

#[test]
fn survives_dead_servers_and_reports_missing_files() {
    let grid = Arc::new(SimGrid::new(10, 2));
    let c = client(&grid);
    let cap = block_on(c.create_mutable(b"hello mutable")).unwrap();
    for i in 0..7 {
        grid.set_knobs(i, |k| k.dead = true);
    }
    assert_eq!(
        block_on(c.read_mutable(&cap.read_cap())).unwrap().data,
        b"hello mutable"
    );
    let other = MutableWriteCap::new(lafs_mutable::new_seed(&mut OsEntropy).unwrap());
    assert!(matches!(
        block_on(c.read_mutable(&other.read_cap())),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn readcap_holder_cannot_write() {
    let grid = Arc::new(SimGrid::new(10, 3));
    let c = client(&grid);
    let cap = block_on(c.create_mutable(b"original")).unwrap();
    let rc = cap.read_cap();
    // The readcap gives the content key and the public key, not the seed: the best a holder
    // can do is sign with some other key under this storage index.
    let forger = WriteKeys::from_parts(
        lafs_mutable::new_seed(&mut OsEntropy).unwrap(),
        ContentKey::for_file(rc.read_key()),
    );
    let v = encode_version(
        &forger,
        Params::new(3, 10, 4096).unwrap(),
        99,
        b"forged",
        &mut OsEntropy,
    )
    .unwrap();
    let si = rc.storage_index();
    for server in grid.servers() {
        let writes: Vec<WireWrite> = v
            .writes()
            .into_iter()
            .map(|w| match w {
                lafs_mutable::ShareWrite::Whole { share, data } => WireWrite::Whole {
                    share: ShareNum(share as u8),
                    data,
                },
                _ => unreachable!(),
            })
            .collect();
        let r = block_on(grid.mutable_write(server, si, writes));
        assert!(
            matches!(r, Err(TransportError::Status { status: 422, .. })),
            "{r:?}"
        );
    }
    assert_eq!(block_on(c.read_mutable(&rc)).unwrap().data, b"original");
}

#[test]
fn concurrent_writers_are_detected() {
    let grid = Arc::new(SimGrid::new(10, 4));
    let a = client(&grid);
    let b = client(&grid);
    let cap = block_on(a.create_mutable(b"base")).unwrap();
    let keys = WriteKeys::for_file(&cap);
    // Both read version 1, both publish version 2.
    let ra = block_on(a.mutable_read_latest(&keys.read_keys())).unwrap();
    let rb = block_on(b.mutable_read_latest(&keys.read_keys())).unwrap();
    assert_eq!(
        block_on(a.mutable_publish(&keys, 2, b"from a", &ra.located)).unwrap(),
        2
    );
    let err = block_on(b.mutable_publish(&keys, 2, b"from b", &rb.located)).unwrap_err();
    assert!(
        matches!(err, Error::UncoordinatedWrite { seqnum: 2, .. }),
        "{err}"
    );
    // The winner's version is intact and readable.
    assert_eq!(
        block_on(b.read_mutable(&cap.read_cap())).unwrap().data,
        b"from a"
    );
    // A stale read-modify-write is detected too.
    let stale = rb.located;
    let err = block_on(b.mutable_publish(&keys, stale.max_seqnum + 1, b"x", &stale)).unwrap_err();
    assert!(matches!(err, Error::UncoordinatedWrite { .. }));
    // Recovery: re-read and publish on top.
    assert_eq!(block_on(b.append_mutable(&cap, b" + b")).unwrap(), 3);
    assert_eq!(
        block_on(a.read_mutable(&cap.read_cap())).unwrap().data,
        b"from a + b"
    );
}

#[test]
fn read_only_servers_get_no_new_shares() {
    let grid = Arc::new(SimGrid::new(4, 5));
    for i in 0..3 {
        grid.set_knobs(i, |k| k.read_only = true);
    }
    // One accepting server is below the default happiness (7): refused, nothing written.
    let err = block_on(client(&grid).create_mutable(b"all on one")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotHappy {
                accepting: 1,
                achieved: 1,
                needed: 7,
                ..
            }
        ),
        "{err}"
    );
    // With happy = 1 every share goes to the one accepting server.
    let c = Client::new(
        grid.clone(),
        ClientConfig {
            params: Params::new(3, 10, 4096).unwrap(),
            happy: 1,
            ..ClientConfig::default()
        },
    );
    let cap = block_on(c.create_mutable(b"all on one")).unwrap();
    let got = block_on(c.read_mutable(&cap.read_cap())).unwrap();
    let servers: std::collections::BTreeSet<_> =
        got.located.headers.iter().map(|(s, _)| *s).collect();
    assert_eq!(servers.len(), 1);
    assert_eq!(got.data, b"all on one");
}

#[test]
fn small_changes_are_published_as_patches() {
    let grid = Arc::new(SimGrid::new(10, 6));
    let c = client(&grid);
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
    let cap = block_on(c.create_mutable(&data)).unwrap();
    let whole = grid.total().write_bytes;
    grid.reset_counters();
    assert_eq!(
        block_on(c.write_mutable_at(&cap, 50_000, b"0123456789")).unwrap(),
        2
    );
    let patched = grid.total().write_bytes;
    assert!(
        patched * 10 < whole,
        "patch wrote {patched} bytes, whole publish {whole}"
    );
    grid.reset_counters();
    assert_eq!(block_on(c.append_mutable(&cap, b"tail")).unwrap(), 3);
    let appended = grid.total().write_bytes;
    eprintln!("100 kB file, 3-of-10, 4 KiB segments: whole publish {whole} B, 10-byte patch {patched} B, 4-byte append {appended} B");
    assert!(appended * 10 < whole, "append wrote {appended} bytes");
    let mut expected = data;
    expected[50_000..50_010].copy_from_slice(b"0123456789");
    expected.extend_from_slice(b"tail");
    let got = block_on(c.read_mutable(&cap.read_cap())).unwrap();
    assert_eq!((got.seqnum, got.data), (3, expected));
    // With a share missing, the change falls back to a whole publish and still works.
    grid.set_knobs(0, |k| k.dead = true);
    assert_eq!(block_on(c.write_mutable_at(&cap, 0, b"X")).unwrap(), 4);
    grid.set_knobs(0, |k| k.dead = false);
    assert_eq!(
        block_on(c.read_mutable(&cap.read_cap())).unwrap().data[0],
        b'X'
    );
}

#[test]
fn unhappy_publish_fails_and_keeps_the_previous_version() {
    let grid = Arc::new(SimGrid::new(10, 7));
    let c = client(&grid);
    let cap = block_on(c.create_mutable(b"version one")).unwrap();
    for i in 0..4 {
        grid.set_knobs(i, |k| k.dead = true);
    }
    let err = block_on(c.overwrite_mutable(&cap, b"version two")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotHappy {
                reachable: 6,
                accepting: 6,
                achieved: 6,
                needed: 7,
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("6") && text.contains("7 are needed"),
        "{text}"
    );
    // Nothing was written: version 1 is intact on every live server.
    let got = block_on(c.read_mutable(&cap.read_cap())).unwrap();
    assert_eq!(
        (got.seqnum, got.data.as_slice()),
        (1, b"version one".as_slice())
    );
    // Patches too.
    assert!(matches!(
        block_on(c.write_mutable_at(&cap, 0, b"V")),
        Err(Error::NotHappy { .. })
    ));
    for i in 0..4 {
        grid.set_knobs(i, |k| k.dead = false);
    }
    assert_eq!(
        block_on(c.overwrite_mutable(&cap, b"version two")).unwrap(),
        2
    );
}

#[test]
fn a_failing_holder_share_is_placed_elsewhere() {
    let grid = Arc::new(SimGrid::new(10, 8));
    let c = client(&grid);
    let cap = block_on(c.create_mutable(b"version one")).unwrap();
    let si = cap.storage_index();
    // The server holding share 0 stops accepting writes (its write answers 403).
    let (holder, _, _) = grid
        .mutable_shares_of(&si)
        .into_iter()
        .find(|(_, sh, _)| *sh == 0)
        .unwrap();
    grid.set_knobs(holder, |k| k.read_only = true);
    assert_eq!(
        block_on(c.overwrite_mutable(&cap, b"version two")).unwrap(),
        2
    );
    let got = block_on(c.read_mutable(&cap.read_cap())).unwrap();
    assert_eq!(got.data, b"version two");
    // Every share of version 2 exists somewhere (share 0 on another server).
    let v2: std::collections::BTreeSet<u16> = got
        .located
        .headers
        .iter()
        .filter(|(_, h)| h.info.seqnum == 2)
        .map(|(_, h)| h.share)
        .collect();
    assert_eq!(v2.len(), 10);
}

#[test]
fn check_verify_and_repair_with_a_verifycap() {
    let grid = Arc::new(SimGrid::new(10, 9));
    let c = client(&grid);
    let data: Vec<u8> = (0..30_000u32).map(|i| (i % 239) as u8).collect();
    let cap = block_on(c.create_mutable(&data)).unwrap();
    let si = cap.storage_index();
    let vc = cap.read_cap().verify_cap();
    let pk = *vc.public_key();

    // Server 9 is down while version 2 is published: its share goes elsewhere, and it keeps
    // a stale version-1 copy.
    grid.set_knobs(9, |k| k.dead = true);
    block_on(c.overwrite_mutable(&cap, &data)).unwrap();
    grid.set_knobs(9, |k| k.dead = false);
    let healthy = block_on(c.check_mutable(&pk, false)).unwrap();
    assert_eq!(healthy.latest.unwrap().seqnum, 2);
    assert_eq!(healthy.good_shares, 10);
    assert_eq!(healthy.versions.len(), 2, "{:?}", healthy.versions);
    assert_eq!(healthy.versions[1].info.seqnum, 1);
    assert_eq!(healthy.versions[1].copies, 1);
    assert!(healthy.healthy);
    assert_eq!(
        healthy.stale_copies, 1,
        "the older version's copy is reported"
    );

    // Delete three shares of version 2, rot a fourth.
    let v2: Vec<(usize, u16, u64)> = grid
        .mutable_shares_of(&si)
        .into_iter()
        .filter(|(i, _, _)| *i != 9)
        .collect();
    let mut gone = Vec::new();
    for (i, sh, _) in v2.iter().take(3) {
        assert!(grid.remove_mutable_share(*i, &si, *sh));
        gone.push(*sh);
    }
    let (ri, rsh, rlen) = v2[3];
    assert!(grid.corrupt_mutable(ri, &si, rsh, rlen - 5));

    let r = block_on(c.check_mutable(&pk, false)).unwrap();
    assert_eq!(r.good_shares, 7, "headers only: the rot is not seen");
    assert!(r.recoverable && !r.healthy);
    let r = block_on(c.check_mutable(&pk, true)).unwrap();
    assert!(r.verified);
    assert_eq!(r.good_shares, 6);
    let corrupt: Vec<_> = r
        .copies
        .iter()
        .filter(|x| matches!(x.status, lafs_client::CopyStatus::Corrupt(_)))
        .collect();
    assert_eq!(corrupt.len(), 1);
    assert_eq!(corrupt[0].share, rsh);

    // Repair with the verifycap: rebuilt shares, rotten and stale copies replaced.
    let rep = block_on(c.repair_mutable(&pk)).unwrap();
    let mut rebuilt = rep.rebuilt.clone();
    rebuilt.sort_unstable();
    let mut expected: Vec<u16> = gone.clone();
    expected.push(rsh);
    expected.sort_unstable();
    assert_eq!(rebuilt, expected);
    assert!(rep.failed.is_empty(), "{:?}", rep.failed);
    assert!(rep.after.healthy, "{:?}", rep.after);
    assert_eq!(rep.after.good_shares, 10);
    assert_eq!(rep.after.versions.len(), 1);
    assert_eq!(rep.after.stale_copies, 0);
    let verified = block_on(c.check_mutable(&pk, true)).unwrap();
    assert!(verified.healthy && verified.good_shares == 10);
    // The seqnum did not change and the contents read back.
    let got = block_on(c.read_mutable(&cap.read_cap())).unwrap();
    assert_eq!((got.seqnum, got.data), (2, data));
    // Nothing left to do: a second repair stores nothing.
    let again = block_on(c.repair_mutable(&pk)).unwrap();
    assert!(again.rebuilt.is_empty() && again.stored.is_empty());
}

#[test]
fn repair_spreads_crowded_shares_to_reach_happiness() {
    let grid = Arc::new(SimGrid::new(10, 10));
    // Only three servers accept when the file is created (happy 3): ten shares on three.
    for i in 3..10 {
        grid.set_knobs(i, |k| k.read_only = true);
    }
    let small = Client::new(
        grid.clone(),
        ClientConfig {
            params: Params::new(3, 10, 4096).unwrap(),
            happy: 3,
            ..ClientConfig::default()
        },
    );
    let cap = block_on(small.create_mutable(b"crowded")).unwrap();
    for i in 3..10 {
        grid.set_knobs(i, |k| k.read_only = false);
    }
    let c = client(&grid);
    let pk = *cap.public_key();
    let before = block_on(c.check_mutable(&pk, false)).unwrap();
    assert_eq!((before.good_shares, before.happiness), (10, 3));
    assert!(!before.healthy);
    let rep = block_on(c.repair_mutable(&pk)).unwrap();
    assert!(rep.rebuilt.is_empty());
    assert!(rep.after.happiness >= 7, "{:?}", rep.after);
    assert!(rep.after.healthy);
    assert_eq!(
        block_on(c.read_mutable(&cap.read_cap())).unwrap().data,
        b"crowded"
    );
}
