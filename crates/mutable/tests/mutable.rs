//! End-to-end tests of the mutable format: cap levels, the server validity check, partial
//! updates of a large file, concurrent writers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use std::collections::BTreeMap;

use lafs_caps::{MutableWriteCap, SigningSeed, StorageIndex};
use lafs_codec::Params;
use lafs_mutable::*;

/// Deterministic entropy (xorshift64*), so tests are reproducible.
pub struct TestEntropy(pub u64);

impl Entropy for TestEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        for b in buf {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
        }
        Ok(())
    }
}

fn cap(n: u8) -> MutableWriteCap {
    MutableWriteCap::new(SigningSeed::from_bytes([n; 32]))
}

/// N in-memory servers, one share each.
struct Grid {
    si: StorageIndex,
    shares: Vec<Option<Vec<u8>>>,
}

impl Grid {
    fn new(si: StorageIndex, n: usize) -> Self {
        Self {
            si,
            shares: vec![None; n],
        }
    }

    fn write(&mut self, w: &ShareWrite) -> Result<Verdict, Error> {
        let slot = &mut self.shares[usize::from(w.share())];
        let v = check_write(&self.si, slot.as_deref(), w)?;
        let mut s = slot.take().unwrap_or_default();
        w.apply(&mut s)?;
        *slot = Some(s);
        Ok(v)
    }

    fn headers(&self) -> Vec<SignedHeader> {
        self.shares
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.as_ref()
                    .map(|s| SignedHeader::parse(i as u16, s).unwrap())
            })
            .collect()
    }

    fn fetched(&self) -> BTreeMap<u16, FetchedShare> {
        self.shares
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.as_ref()
                    .map(|s| (i as u16, FetchedShare::whole(s.clone())))
            })
            .collect()
    }

    fn read_all(&self, keys: &ReadKeys) -> Vec<u8> {
        let sel = select_latest(keys.public_key(), &self.headers()).unwrap();
        let r =
            VersionReader::new(sel.info, keys.public_key(), keys.content_key().clone()).unwrap();
        r.read(0..sel.info.file_size, &self.fetched())
            .unwrap()
            .plaintext
    }
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn round_trip_at_every_cap_level() {
    let w = cap(1);
    let keys = WriteKeys::for_file(&w);
    let params = Params::new(3, 5, 100).unwrap();
    let plain = data(1234, 9);
    let enc = encode_version(&keys, params, 1, &plain, &mut TestEntropy(1)).unwrap();
    let mut grid = Grid::new(w.storage_index(), 5);
    for wr in enc.writes() {
        assert!(matches!(
            grid.write(&wr).unwrap(),
            Verdict::Accept {
                seqnum: 1,
                previous: None,
                ..
            }
        ));
    }
    // Writecap reads.
    assert_eq!(grid.read_all(&keys.read_keys()), plain);
    // Readcap reads.
    let rk = ReadKeys::for_file(&w.read_cap());
    assert_eq!(rk, keys.read_keys());
    assert_eq!(grid.read_all(&rk), plain);
    // Verifycap verifies every share without any key.
    let vc = w.verify_cap();
    for (i, s) in grid.shares.iter().enumerate() {
        let h = verify_share(&vc.storage_index(), i as u16, s.as_ref().unwrap()).unwrap();
        assert_eq!(h.info.seqnum, 1);
    }
    let sel = select_latest(vc.public_key(), &grid.headers()).unwrap();
    assert_eq!(sel.info, enc.info);
    // Empty file.
    let enc = encode_version(&keys, params, 2, &[], &mut TestEntropy(1)).unwrap();
    for wr in enc.writes() {
        grid.write(&wr).unwrap();
    }
    assert_eq!(grid.read_all(&rk), Vec::<u8>::new());
}

#[test]
fn readcap_cannot_produce_a_valid_write() {
    let w = cap(2);
    let params = Params::new(2, 3, 64).unwrap();
    let keys = WriteKeys::for_file(&w);
    let enc = encode_version(&keys, params, 1, &data(300, 1), &mut TestEntropy(2)).unwrap();
    let mut grid = Grid::new(w.storage_index(), 3);
    for wr in enc.writes() {
        grid.write(&wr).unwrap();
    }
    let rc = w.read_cap();
    // Everything a readcap holder knows, used as (or to make) a signing seed: the key pair is
    // different, so the public key does not hash to the storage index.
    let mut guess = [0u8; 32];
    guess[..16].copy_from_slice(rc.read_key().as_bytes());
    guess[16..].copy_from_slice(&rc.public_key().as_bytes()[..16]);
    let forged_keys = WriteKeys::from_parts(
        SigningSeed::from_bytes(guess),
        ContentKey::for_file(rc.read_key()),
    );
    let forged =
        encode_version(&forged_keys, params, 9, &data(300, 2), &mut TestEntropy(3)).unwrap();
    for wr in forged.writes() {
        let stored = grid.shares[usize::from(wr.share())].clone();
        assert_eq!(
            check_write(&w.storage_index(), stored.as_deref(), &wr),
            Err(Error::StorageIndexMismatch { share: wr.share() })
        );
    }
    // Keeping the right public key in the header but re-signing with another key fails the
    // signature check.
    let mut share = enc.shares[0].clone();
    let mut h = SignedHeader::parse(0, &share).unwrap();
    h.info.seqnum = 9;
    let other = SignedHeader::sign(&forged_keys, h.info);
    h.signature = other.signature;
    share[..HEADER_LEN as usize].copy_from_slice(&h.to_bytes());
    assert_eq!(
        check_write(
            &w.storage_index(),
            grid.shares[0].as_deref(),
            &ShareWrite::Whole {
                share: 0,
                data: share
            }
        ),
        Err(Error::BadSignature {
            share: 0,
            seqnum: 9
        })
    );
}

#[test]
fn validity_check_seqnums_and_tampering() {
    let w = cap(3);
    let si = w.storage_index();
    let keys = WriteKeys::for_file(&w);
    let params = Params::new(2, 4, 50).unwrap();
    let v1 = encode_version(&keys, params, 5, &data(500, 1), &mut TestEntropy(4)).unwrap();
    let v0 = encode_version(&keys, params, 4, &data(500, 2), &mut TestEntropy(5)).unwrap();
    let v1b = encode_version(&keys, params, 5, &data(500, 3), &mut TestEntropy(6)).unwrap();
    let v2 = encode_version(&keys, params, 6, &data(100, 4), &mut TestEntropy(7)).unwrap();
    let stored = v1.shares[1].clone();
    let whole = |e: &Encoded| ShareWrite::Whole {
        share: 1,
        data: e.shares[1].clone(),
    };
    // Higher accepted, retry of the same share is a no-op, equal or lower rejected.
    assert_eq!(
        check_write(&si, Some(&stored), &whole(&v2)),
        Ok(Verdict::Accept {
            share: 1,
            seqnum: 6,
            previous: Some(5)
        })
    );
    assert_eq!(
        check_write(&si, Some(&stored), &whole(&v1)),
        Ok(Verdict::AlreadyStored { seqnum: 5 })
    );
    assert_eq!(
        check_write(&si, Some(&stored), &whole(&v1b)),
        Err(Error::SeqnumNotHigher {
            share: 1,
            stored: 5,
            proposed: 5
        })
    );
    assert_eq!(
        check_write(&si, Some(&stored), &whole(&v0)),
        Err(Error::SeqnumNotHigher {
            share: 1,
            stored: 5,
            proposed: 4
        })
    );
    // Wrong key: another file's share under this storage index.
    let other = encode_version(
        &WriteKeys::for_file(&cap(4)),
        params,
        9,
        &data(10, 0),
        &mut TestEntropy(8),
    )
    .unwrap();
    assert_eq!(
        check_write(&si, Some(&stored), &whole(&other)),
        Err(Error::StorageIndexMismatch { share: 1 })
    );
    // Wrong slot.
    let w3 = ShareWrite::Whole {
        share: 3,
        data: v2.shares[1].clone(),
    };
    assert_eq!(
        check_write(&si, None, &w3),
        Err(Error::ShareNumberMismatch { slot: 3, header: 1 })
    );
    // Tampering: every single-byte flip of a whole share is rejected.
    let share = &v2.shares[1];
    let layout = Layout::of(&v2.info).unwrap();
    for pos in (0..share.len()).step_by(7) {
        let mut bad = share.clone();
        bad[pos] ^= 0x40;
        let r = check_write(
            &si,
            Some(&stored),
            &ShareWrite::Whole {
                share: 1,
                data: bad,
            },
        );
        assert!(r.is_err(), "flip at {pos} accepted");
    }
    let mut bad = share.clone();
    let rec = layout.record_range(1);
    bad[rec.start as usize + 20] ^= 1;
    assert_eq!(
        check_write(
            &si,
            None,
            &ShareWrite::Whole {
                share: 1,
                data: bad
            }
        ),
        Err(Error::BlockHashMismatch {
            share: 1,
            segment: 1
        })
    );
    let mut short = share.clone();
    short.pop();
    assert!(matches!(
        check_write(
            &si,
            None,
            &ShareWrite::Whole {
                share: 1,
                data: short
            }
        ),
        Err(Error::WrongLength { share: 1, .. })
    ));
}

#[test]
fn tampered_patches_are_rejected() {
    let w = cap(5);
    let si = w.storage_index();
    let keys = WriteKeys::for_file(&w);
    let params = Params::new(2, 3, 40).unwrap();
    let plain = data(1000, 5);
    let v1 = encode_version(&keys, params, 1, &plain, &mut TestEntropy(9)).unwrap();
    let plan = plan_update(&v1.info, 410, 5).unwrap();
    let old: BTreeMap<u64, Vec<u8>> = plan
        .need_old
        .iter()
        .map(|&j| {
            (
                j,
                plain[(j * 40) as usize..((j + 1) * 40) as usize].to_vec(),
            )
        })
        .collect();
    let up = update(&keys, &v1.state, 410, b"HELLO", &old, &mut TestEntropy(10)).unwrap();
    let good = &up.writes[2];
    assert!(matches!(
        check_write(&si, Some(&v1.shares[2]), good),
        Ok(Verdict::Accept { seqnum: 2, .. })
    ));
    assert_eq!(
        check_write(&si, None, good),
        Err(Error::PatchWithoutStoredShare { share: 2 })
    );
    let ShareWrite::Patch {
        share,
        new_len,
        patches,
    } = good.clone()
    else {
        panic!()
    };
    // Flip one byte in each patch in turn: always rejected.
    for i in 0..patches.len() {
        for pos in [0usize, 11, 40, 99, 163, 170] {
            let mut p = patches.clone();
            if pos >= p[i].data.len() {
                continue;
            }
            p[i].data[pos] ^= 0x10;
            let wr = ShareWrite::Patch {
                share,
                new_len,
                patches: p,
            };
            assert!(
                check_write(&si, Some(&v1.shares[2]), &wr).is_err(),
                "patch {i} byte {pos}"
            );
        }
    }
    // A patch that rewrites an untouched record (keeping the old tree) is caught.
    let layout = Layout::of(&up.info).unwrap();
    let mut p = patches.clone();
    let r = layout.record_range(3);
    p.push(Patch {
        offset: r.start + 16,
        data: vec![0xee; 4],
    });
    let wr = ShareWrite::Patch {
        share,
        new_len,
        patches: p,
    };
    assert_eq!(
        check_write(&si, Some(&v1.shares[2]), &wr),
        Err(Error::BlockHashMismatch {
            share: 2,
            segment: 3
        })
    );
    // Out of range.
    let mut p = patches.clone();
    p.push(Patch {
        offset: new_len,
        data: vec![1],
    });
    let wr = ShareWrite::Patch {
        share,
        new_len,
        patches: p,
    };
    assert!(matches!(
        check_write(&si, Some(&v1.shares[2]), &wr),
        Err(Error::PatchOutOfRange { .. })
    ));
    // The old header (seqnum not bumped) with a changed record.
    let p = vec![Patch {
        offset: r.start + 16,
        data: vec![0xee; 4],
    }];
    let wr = ShareWrite::Patch {
        share,
        new_len: v1.shares[2].len() as u64,
        patches: p,
    };
    assert_eq!(
        check_write(&si, Some(&v1.shares[2]), &wr),
        Err(Error::SeqnumNotHigher {
            share: 2,
            stored: 1,
            proposed: 1
        })
    );
}

/// A stored share that counts the bytes a check reads from it.
struct CountingShare<'a> {
    bytes: &'a [u8],
    read: std::cell::Cell<u64>,
}

impl StoredShare for CountingShare<'_> {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read_range(
        &self,
        range: core::ops::Range<u64>,
    ) -> Result<std::borrow::Cow<'_, [u8]>, Error> {
        self.read.set(self.read.get() + (range.end - range.start));
        Ok(std::borrow::Cow::Borrowed(
            &self.bytes[range.start as usize..range.end as usize],
        ))
    }
}

/// A 100 MiB file with 1 MiB segments, 3-of-4: changing 10 bytes rewrites one record per share
/// plus hashes and the header; appending rewrites the last record, the new ones and the tree.
#[test]
fn partial_update_of_100_mib_touches_only_changed_segments() {
    const MIB: u64 = 1 << 20;
    let size = 100 * MIB;
    let w = cap(6);
    let si = w.storage_index();
    let keys = WriteKeys::for_file(&w);
    let params = Params::new(3, 4, MIB as u32).unwrap();
    let fill = |j: u64, out: &mut [u8]| {
        for (i, b) in out.iter_mut().enumerate() {
            *b = (j as u8) ^ (i as u8);
        }
    };
    let v1 = encode_version_from(
        &keys,
        params,
        1,
        size,
        &mut |j, out| {
            fill(j, out);
            Ok(())
        },
        &mut TestEntropy(11),
    )
    .unwrap();
    let mut grid = Grid::new(si, 4);
    for (i, s) in v1.shares.into_iter().enumerate() {
        grid.shares[i] = Some(s);
    }
    let share_len = grid.shares[0].as_ref().unwrap().len() as u64;
    let full_record = SALT_LEN + params.full_block_size();

    // Overwrite 10 bytes in segment 42.
    let off = 42 * MIB + 1000;
    let plan = plan_update(&v1.info, off, 10).unwrap();
    assert_eq!(plan.segments, 42..43);
    assert_eq!(plan.need_old, vec![42]);
    let mut seg42 = vec![0u8; MIB as usize];
    fill(42, &mut seg42);
    let old = BTreeMap::from([(42, seg42.clone())]);
    let up = update(
        &keys,
        &v1.state,
        off,
        b"0123456789",
        &old,
        &mut TestEntropy(12),
    )
    .unwrap();
    for wr in &up.writes {
        let written = wr.bytes_written();
        // Header + chain, one record, and the 8 tree nodes above it (128 leaves).
        let expected = HEADER_LEN + 2 * HASH_LEN + full_record + 8 * HASH_LEN;
        assert_eq!(written, expected, "share {}", wr.share());
        assert!(written * 90 < share_len, "{written} of {share_len}");
        // The check reads only a few hundred bytes of the stored share (header and tree
        // nodes beside the path): a server need not load the 35 MB share.
        let counting = CountingShare {
            bytes: grid.shares[usize::from(wr.share())].as_deref().unwrap(),
            read: std::cell::Cell::new(0),
        };
        assert!(matches!(
            check_write_in(&si, Some(&counting), wr).unwrap(),
            Verdict::Accept { seqnum: 2, .. }
        ));
        let read = counting.read.get();
        assert!(read < 4096, "the check read {read} stored bytes");
        assert!(matches!(
            grid.write(wr).unwrap(),
            Verdict::Accept { seqnum: 2, .. }
        ));
    }
    // Read back the changed segment and an untouched one, through the planned ranges only.
    let rk = w.read_cap();
    let sel = select_latest(rk.public_key(), &grid.headers()).unwrap();
    assert_eq!(sel.info.seqnum, 2);
    let reader = VersionReader::new(
        sel.info,
        rk.public_key(),
        ContentKey::for_file(rk.read_key()),
    )
    .unwrap();
    let fetch = |segs: core::ops::Range<u64>| -> BTreeMap<u16, FetchedShare> {
        let ranges = reader.ranges(segs).unwrap();
        (0..4u16)
            .map(|i| {
                let s = grid.shares[usize::from(i)].as_ref().unwrap();
                let mut f = FetchedShare::default();
                for r in &ranges {
                    f.add(r.start, s[r.start as usize..r.end as usize].to_vec());
                }
                (i, f)
            })
            .collect()
    };
    let out = reader.read(off - 5..off + 15, &fetch(42..43)).unwrap();
    let mut want = seg42[995..1015].to_vec();
    want[5..15].copy_from_slice(b"0123456789");
    assert_eq!(out.plaintext, want);
    let out = reader.read(7 * MIB..7 * MIB + 100, &fetch(7..8)).unwrap();
    let mut seg7 = vec![0u8; 100];
    fill(7, &mut seg7);
    assert_eq!(out.plaintext, seg7);

    // Append 5 bytes: the file grows into a new segment 100.
    let plan = plan_update(&up.info, size, 5).unwrap();
    assert_eq!(plan.segments, 100..101);
    assert!(plan.need_old.is_empty());
    let up2 = update(
        &keys,
        &up.state,
        size,
        b"tail!",
        &BTreeMap::new(),
        &mut TestEntropy(13),
    )
    .unwrap();
    for wr in &up2.writes {
        // Header + chain, the new record, and the whole (moved) tree: 255 nodes for 101 leaves.
        let expected = HEADER_LEN + 2 * HASH_LEN + SALT_LEN + 2 + 255 * HASH_LEN;
        assert_eq!(wr.bytes_written(), expected);
        assert!(matches!(
            grid.write(wr).unwrap(),
            Verdict::Accept { seqnum: 3, .. }
        ));
    }
    let sel = select_latest(rk.public_key(), &grid.headers()).unwrap();
    let reader = VersionReader::new(
        sel.info,
        rk.public_key(),
        ContentKey::for_file(rk.read_key()),
    )
    .unwrap();
    let fetched: BTreeMap<u16, FetchedShare> = (0..4u16)
        .map(|i| {
            let s = grid.shares[usize::from(i)].as_ref().unwrap();
            let ranges = reader.ranges(99..101).unwrap();
            let mut f = FetchedShare::default();
            for r in ranges {
                f.add(r.start, s[r.start as usize..r.end as usize].to_vec());
            }
            (i, f)
        })
        .collect();
    let out = reader.read(size - 3..size + 5, &fetched).unwrap();
    let mut seg99 = vec![0u8; MIB as usize];
    fill(99, &mut seg99);
    let mut want = seg99[MIB as usize - 3..].to_vec();
    want.extend_from_slice(b"tail!");
    assert_eq!(out.plaintext, want);
    // Every share is still a valid share as a whole.
    for (i, s) in grid.shares.iter().enumerate() {
        verify_share(&si, i as u16, s.as_ref().unwrap()).unwrap();
    }
}

#[test]
fn concurrent_writers_are_detected_and_recovered() {
    let w = cap(7);
    let si = w.storage_index();
    let keys = WriteKeys::for_file(&w);
    let params = Params::new(2, 4, 64).unwrap();
    let plain = data(200, 1);
    let v1 = encode_version(&keys, params, 1, &plain, &mut TestEntropy(14)).unwrap();
    let mut grid = Grid::new(si, 4);
    for wr in v1.writes() {
        grid.write(&wr).unwrap();
    }
    // Two writers start from the same version and both publish seqnum 2.
    let a = encode_version(&keys, params, 2, b"writer A", &mut TestEntropy(15)).unwrap();
    let b = encode_version(&keys, params, 2, b"writer B", &mut TestEntropy(16)).unwrap();
    // Test-and-set: A reached share 0 first; B is refused there.
    grid.write(&a.writes()[0]).unwrap();
    let err = grid.write(&b.writes()[0]).unwrap_err();
    assert_eq!(
        err,
        Error::SeqnumNotHigher {
            share: 0,
            stored: 2,
            proposed: 2
        }
    );
    assert!(err.is_uncoordinated());
    // Split: A on shares 0 and 1, B on 2 and 3. A reader sees two versions with seqnum 2.
    grid.write(&a.writes()[1]).unwrap();
    grid.write(&b.writes()[2]).unwrap();
    grid.write(&b.writes()[3]).unwrap();
    let err = select_latest(w.public_key(), &grid.headers()).unwrap_err();
    assert_eq!(err, Error::UncoordinatedWrite { seqnum: 2 });
    assert!(err.is_uncoordinated());
    // Recovery: publish the merged contents with seqnum = max seen + 1.
    let merged = b"writer A + writer B";
    let v3 = encode_version(&keys, params, 3, merged, &mut TestEntropy(17)).unwrap();
    for wr in v3.writes() {
        assert!(matches!(
            grid.write(&wr).unwrap(),
            Verdict::Accept { seqnum: 3, .. }
        ));
    }
    assert_eq!(grid.read_all(&keys.read_keys()), merged);
}

#[test]
fn selection_prefers_recoverable_and_reports_newer() {
    let w = cap(8);
    let keys = WriteKeys::for_file(&w);
    let params = Params::new(2, 4, 64).unwrap();
    let v1 = encode_version(&keys, params, 1, b"one", &mut TestEntropy(18)).unwrap();
    let v2 = encode_version(&keys, params, 2, b"two", &mut TestEntropy(19)).unwrap();
    let h = |e: &Encoded, i: usize| SignedHeader::parse(i as u16, &e.shares[i]).unwrap();
    let headers = vec![h(&v1, 0), h(&v1, 1), h(&v1, 2), h(&v2, 3)];
    let sel = select_latest(w.public_key(), &headers).unwrap();
    assert_eq!(sel.info.seqnum, 1);
    assert!(sel.newer_unrecoverable);
    assert_eq!(sel.shares, vec![0, 1, 2]);
    // A forged header (bad signature) is ignored and reported.
    let mut forged = h(&v2, 0);
    forged.info.seqnum = 99;
    let mut hs = headers.clone();
    hs.push(forged);
    let sel = select_latest(w.public_key(), &hs).unwrap();
    assert_eq!(sel.info.seqnum, 1);
    assert_eq!(
        sel.rejected,
        vec![Error::BadSignature {
            share: 0,
            seqnum: 99
        }]
    );
    assert_eq!(
        select_latest(w.public_key(), &[h(&v2, 3)]),
        Err(Error::NotEnoughShares {
            found: 1,
            needed: 2
        })
    );
    assert_eq!(select_latest(w.public_key(), &[]), Err(Error::NoShares));
    // Another file's headers are rejected.
    let other = cap(9);
    assert!(matches!(
        select_latest(other.public_key(), &headers),
        Err(Error::NotEnoughShares { found: 0, .. })
    ));
}

#[test]
fn reader_survives_corrupt_and_missing_shares() {
    let w = cap(10);
    let keys = WriteKeys::for_file(&w);
    let params = Params::new(3, 6, 30).unwrap();
    let plain = data(700, 3);
    let v = encode_version(&keys, params, 1, &plain, &mut TestEntropy(20)).unwrap();
    let reader = VersionReader::new(v.info, w.public_key(), keys.content_key().clone()).unwrap();
    let layout = Layout::of(&v.info).unwrap();
    let mut fetched: BTreeMap<u16, FetchedShare> = BTreeMap::new();
    for i in [0u16, 2, 3, 5] {
        let mut s = v.shares[usize::from(i)].clone();
        if i == 0 {
            let r = layout.record_range(4);
            s[r.start as usize + 17] ^= 1;
        }
        fetched.insert(i, FetchedShare::whole(s));
    }
    let out = reader.read(100..600, &fetched).unwrap();
    assert_eq!(out.plaintext, &plain[100..600]);
    assert_eq!(
        out.bad_shares,
        vec![Error::BlockHashMismatch {
            share: 0,
            segment: 4
        }]
    );
    fetched.remove(&5);
    assert_eq!(
        reader.read(100..600, &fetched),
        Err(Error::NotEnoughShares {
            found: 2,
            needed: 3
        })
    );
}
