//! Shadow-model test of the share stores: random operation lists run against `FsStore` (behind
//! a `FaultyStore` that "crashes" after a countdown, possibly tearing the crashing write) and
//! against `MemoryStore`, compared with a `BTreeMap` model; after the crash the directory is
//! reopened and must hold exactly what the model says was acknowledged.

// Test helpers panic on failed set-up steps on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use lafs_proto::{AccountId, ShareNum, StorageIndex, UploadId};
use lafs_storage::store::UploadMeta;
use lafs_storage::{FaultPlan, FaultyStore, FsOptions, FsStore, MemoryStore, RangeSet, ShareStore};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Create(u8),
    Write {
        up: u8,
        share: u8,
        offset: u16,
        len: u16,
        byte: u8,
    },
    Commit {
        up: u8,
        share: u8,
        si: u8,
        len: u16,
    },
    Remove(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..3).prop_map(Op::Create),
        (0u8..3, 0u8..2, 0u16..3000, 1u16..1500, any::<u8>()).prop_map(
            |(up, share, offset, len, byte)| Op::Write {
                up,
                share,
                offset,
                len,
                byte
            }
        ),
        (0u8..3, 0u8..2, 0u8..2, 1u16..4000).prop_map(|(up, share, si, len)| Op::Commit {
            up,
            share,
            si,
            len
        }),
        (0u8..3).prop_map(Op::Remove),
    ]
}

fn uid(n: u8) -> UploadId {
    UploadId([n + 1; 16])
}

fn si(n: u8) -> StorageIndex {
    StorageIndex([n + 1; 32])
}

#[derive(Default, Clone, Debug)]
struct Model {
    uploads: BTreeMap<u8, BTreeMap<u8, (Vec<u8>, RangeSet)>>,
    finished: BTreeMap<(u8, u8), Vec<u8>>,
}

fn meta() -> UploadMeta {
    UploadMeta {
        owner: AccountId([0; 32]),
        shares: vec![ShareNum(0), ShareNum(1)],
        share_size: None,
        created_unix: 0,
    }
}

/// Applies `op` to the model if it is valid there; returns whether the store should succeed.
fn apply_model(m: &mut Model, op: &Op) -> bool {
    match *op {
        Op::Create(u) => {
            if m.uploads.contains_key(&u) {
                return false;
            }
            m.uploads.insert(u, BTreeMap::new());
            true
        }
        Op::Write {
            up,
            share,
            offset,
            len,
            byte,
        } => {
            let Some(shares) = m.uploads.get_mut(&up) else {
                return false;
            };
            let (data, ranges) = shares.entry(share).or_default();
            let (o, l) = (offset as usize, len as usize);
            if data.len() < o + l {
                data.resize(o + l, 0);
            }
            data[o..o + l].fill(byte);
            ranges.insert(o as u64, (o + l) as u64);
            true
        }
        Op::Commit { up, share, si, len } => {
            let Some(shares) = m.uploads.get_mut(&up) else {
                return false;
            };
            let Some((data, ranges)) = shares.get(&share) else {
                return false;
            };
            if !ranges.is_exactly(u64::from(len)) {
                return false; // the server never commits an incomplete share
            }
            let data = data[..len as usize].to_vec();
            shares.remove(&share);
            m.finished.entry((si, share)).or_insert(data);
            true
        }
        Op::Remove(u) => m.uploads.remove(&u).is_some(),
    }
}

fn apply_store(s: &dyn ShareStore, op: &Op) -> Result<(), lafs_storage::StoreError> {
    match *op {
        Op::Create(u) => s.create_upload(uid(u), &meta()),
        Op::Write {
            up,
            share,
            offset,
            len,
            byte,
        } => s.write_incoming(
            uid(up),
            ShareNum(share),
            u64::from(offset),
            &vec![byte; len as usize],
        ),
        Op::Commit {
            up,
            share,
            si: n,
            len,
        } => s
            .commit_share(uid(up), ShareNum(share), &si(n), u64::from(len))
            .map(|_| ()),
        Op::Remove(u) => s.remove_upload(uid(u)),
    }
}

/// The store holds exactly the model's state.
fn check(s: &dyn ShareStore, m: &Model) {
    for n in 0..2u8 {
        let listed = s.list_shares(&si(n)).unwrap();
        let expected: Vec<u8> = m
            .finished
            .keys()
            .filter(|(x, _)| *x == n)
            .map(|(_, sh)| *sh)
            .collect();
        assert_eq!(
            listed.iter().map(|i| i.share.0).collect::<Vec<_>>(),
            expected
        );
        for info in listed {
            let data = s.read_share(&si(n), info.share, 0, info.length).unwrap();
            assert_eq!(&data, &m.finished[&(n, info.share.0)]);
        }
    }
    let loaded = s.load_uploads().unwrap();
    assert_eq!(
        loaded.iter().map(|u| u.id).collect::<Vec<_>>(),
        m.uploads.keys().map(|&u| uid(u)).collect::<Vec<_>>()
    );
    for up in loaded {
        let u = m.uploads.iter().find(|(&k, _)| uid(k) == up.id).unwrap().1;
        for (share, ranges) in &up.received {
            let model = u.get(&share.0);
            let empty = RangeSet::new();
            let model_ranges = model.map(|(_, r)| r).unwrap_or(&empty);
            assert_eq!(ranges, model_ranges, "received ranges of {share:?}");
            for r in ranges.to_vec() {
                let got = s
                    .read_incoming(up.id, *share, r.start, r.end - r.start)
                    .unwrap();
                assert_eq!(
                    &got[..],
                    &model.unwrap().0[r.start as usize..r.end as usize]
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn stores_match_the_model_across_crashes(ops in prop::collection::vec(op(), 1..40), crash in any::<prop::sample::Index>()) {
        let dir = tempfile::tempdir().unwrap();
        let crash_at = crash.index(ops.len() + 1) as u64;
        let faulty = FaultyStore::new(
            // Flush-behind every 1 KiB: background flushes overlap the writes, commits and
            // removals of the model's operations.
            FsStore::open(dir.path(), FsOptions { flush_behind: 1024, ..FsOptions::default() }).unwrap(),
            FaultPlan { crash_at_op: Some(crash_at), torn_write: false },
        );
        let memory = MemoryStore::new(1 << 30);
        let mut model = Model::default();
        for op in &ops {
            let mut next = model.clone();
            if !apply_model(&mut next, op) {
                continue; // invalid in the model: not sent (the upload manager refuses it)
            }
            let fs_ok = apply_store(&faulty, op).is_ok();
            apply_store(&memory, op).unwrap();
            if faulty.crashed() {
                prop_assert!(!fs_ok);
                break;
            }
            prop_assert!(fs_ok, "{:?} failed", op);
            model = next;
            check(&memory, &model);
        }
        drop(faulty);
        // Restart: the directory holds exactly what was acknowledged before the crash.
        let reopened = FsStore::open(dir.path(), FsOptions::default()).unwrap();
        check(&reopened, &model);
    }
}
