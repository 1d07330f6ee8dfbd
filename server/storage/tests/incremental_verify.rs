//! Shares are hashed as their writes arrive, so a finish only reads back what was not hashed
//! in order (the last block when short, the trees, the trailer). A share is still filed only
//! if every byte verifies (`docs/spec/signed-requests.md`):
//!
//! * a corrupt byte in any one write (the body altered in flight: its length is signed, not
//!   its bytes) makes the finish fail and nothing is filed;
//! * writes in any order, gaps filled late, and bytes written again (a corrupt copy, or a
//!   corrupt write corrected) are verified from the stored bytes;
//! * a truncated share does not finish.

// Test helpers panic on failed set-up steps on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;

use common::*;
use lafs_proto::storage::ErrorCode;

/// Write size: not a multiple of the block size (1366), so writes cut blocks and the header.
const CHUNK: usize = 3000;

/// Sends `share` in `CHUNK`-byte writes in the order `order` (chunk indexes); the write of
/// chunk `corrupt` (if any) has one byte flipped in flight (same length, so accepted).
async fn send(
    c: &Client,
    up: &str,
    share_num: u8,
    share: &[u8],
    order: &[usize],
    corrupt: Option<usize>,
) {
    for &i in order {
        let start = i * CHUNK;
        let end = (start + CHUNK).min(share.len());
        let path = format!("/storage/v1/upload/{up}/{share_num}?offset={start}");
        let body = share[start..end].to_vec();
        let h = c.sign("PUT", &path, &body, now_unix());
        let mut sent = body.clone();
        if corrupt == Some(i) {
            let at = sent.len() / 2;
            sent[at] ^= 0x08;
        }
        c.raw("PUT", &path, sent, &h).await.expect(200);
    }
}

fn chunks(len: usize) -> usize {
    len.div_ceil(CHUNK)
}

/// Bytes the server has read back from storage to verify shares at finish.
fn read_to_verify(srv: &TestServer) -> u64 {
    srv.state
        .metrics()
        .bytes_read_to_verify
        .load(Ordering::Relaxed)
}

#[tokio::test]
async fn in_order_writes_are_hashed_as_they_arrive() {
    let Fixture {
        srv, c, shares, si, ..
    } = fixture(40_000, 40).await;
    let share = &shares[2];
    let len = share.len() as u64;
    let up = upload_id(40);
    c.allocate_share(&up, 2, len).await.expect(201);
    let order: Vec<usize> = (0..chunks(share.len())).collect();
    send(&c, &up, 2, share, &order, None).await;
    c.finish(&up, 2, len).await.expect(200);
    assert_eq!(c.listed(&si).await, vec![2]);
    // 10 segments of 4 KiB, the last short: only the last block, the trees and the trailer
    // (a few hundred bytes each) are read back.
    let read = read_to_verify(&srv);
    assert!(read > 0 && read < len / 3, "read back {read} of {len}");
    srv.stop().await;
}

#[tokio::test]
async fn a_corrupt_byte_in_any_write_is_refused() {
    let Fixture {
        srv, c, shares, si, ..
    } = fixture(40_000, 41).await;
    let share = &shares[7];
    let len = share.len() as u64;
    let n = chunks(share.len());
    let in_order: Vec<usize> = (0..n).collect();
    let reversed: Vec<usize> = (0..n).rev().collect();
    let mut seed = 60u8;
    for order in [&in_order, &reversed] {
        for bad in 0..n {
            seed += 1;
            let up = upload_id(seed);
            c.allocate_share(&up, 7, len).await.expect(201);
            send(&c, &up, 7, share, order, Some(bad)).await;
            let e = c.finish(&up, 7, len).await.expect(422).error();
            assert_eq!(e.error, ErrorCode::ShareInvalid, "write {bad}");
            assert!(c.listed(&si).await.is_empty(), "write {bad}");
        }
    }
    // The same writes, uncorrupted, out of order: filed.
    let up = upload_id(200);
    c.allocate_share(&up, 7, len).await.expect(201);
    let shuffled: Vec<usize> = (0..n).map(|i| (i * 5 + 3) % n).collect();
    let mut sorted = shuffled.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, in_order, "a permutation");
    send(&c, &up, 7, share, &shuffled, None).await;
    c.finish(&up, 7, len).await.expect(200);
    assert_eq!(c.listed(&si).await, vec![7]);
    srv.stop().await;
}

#[tokio::test]
async fn bytes_written_again_are_verified_as_stored() {
    let Fixture {
        srv, c, shares, si, ..
    } = fixture(40_000, 42).await;
    let share = &shares[4];
    let len = share.len() as u64;
    let n = chunks(share.len());
    let order: Vec<usize> = (0..n).collect();

    // Everything written correctly and hashed, then chunk 2 written again, corrupt.
    let up = upload_id(43);
    c.allocate_share(&up, 4, len).await.expect(201);
    send(&c, &up, 4, share, &order, None).await;
    send(&c, &up, 4, share, &[2], Some(2)).await;
    let e = c.finish(&up, 4, len).await.expect(422).error();
    assert_eq!(e.error, ErrorCode::ShareInvalid);
    assert!(c.listed(&si).await.is_empty());
    // Corrected: the finish now succeeds (the failed finish left the share receiving).
    send(&c, &up, 4, share, &[2], None).await;
    c.finish(&up, 4, len).await.expect(200);
    assert_eq!(c.listed(&si).await, vec![4]);

    // Chunk 0 (the header) corrupt, then written again correctly before the rest.
    let up = upload_id(44);
    c.allocate_share(&up, 5, len).await.expect(201);
    let share5 = &shares[5];
    send(&c, &up, 5, share5, &[0], Some(0)).await;
    send(&c, &up, 5, share5, &order, None).await;
    c.finish(&up, 5, share5.len() as u64).await.expect(200);
    assert_eq!(c.listed(&si).await, vec![4, 5]);
    srv.stop().await;
}

#[tokio::test]
async fn a_truncated_share_does_not_finish() {
    let Fixture {
        srv, c, shares, si, ..
    } = fixture(40_000, 45).await;
    let share = &shares[1];
    let len = share.len() as u64;
    let n = chunks(share.len());
    let up = upload_id(45);
    c.allocate_share(&up, 1, len).await.expect(201);
    // All but the last write: the share is incomplete at its real length...
    let order: Vec<usize> = (0..n - 1).collect();
    send(&c, &up, 1, share, &order, None).await;
    c.finish(&up, 1, len).await.expect(409);
    // ... and does not verify at the length it has (its trailer is missing).
    let have = ((n - 1) * CHUNK) as u64;
    let e = c.finish(&up, 1, have).await.expect(422).error();
    assert_eq!(e.error, ErrorCode::ShareInvalid);
    assert!(c.listed(&si).await.is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn writes_that_overtake_each_other_are_still_hashed_on_arrival() {
    let Fixture {
        srv, c, shares, si, ..
    } = fixture(40_000, 46).await;
    let share = &shares[3];
    let len = share.len() as u64;
    let n = chunks(share.len());
    let up = upload_id(46);
    c.allocate_share(&up, 3, len).await.expect(201);
    // Pairs swapped: 1, 0, 3, 2, ... (each odd chunk arrives before the one it follows).
    let order: Vec<usize> = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                (i + 1).min(n - 1)
            } else {
                i - 1
            }
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    sorted.dedup();
    let order = if sorted.len() == n {
        order
    } else {
        (0..n).rev().collect()
    };
    send(&c, &up, 3, share, &order, None).await;
    c.finish(&up, 3, len).await.expect(200);
    assert_eq!(c.listed(&si).await, vec![3]);
    let read = read_to_verify(&srv);
    assert!(read > 0 && read < len / 3, "read back {read} of {len}");
    srv.stop().await;
}

#[tokio::test]
async fn a_write_ahead_replaced_by_a_corrupt_copy_is_refused() {
    let Fixture {
        srv, c, shares, si, ..
    } = fixture(40_000, 47).await;
    let n = chunks(shares[0].len());
    let rest: Vec<usize> = (0..n).filter(|&i| i != 3).collect();
    for (seed, share_num, second_ok, status) in [(48u8, 0u8, false, 422u16), (49, 1, true, 200)] {
        let share = &shares[usize::from(share_num)];
        let len = share.len() as u64;
        let up = upload_id(seed);
        c.allocate_share(&up, share_num, len).await.expect(201);
        // Chunk 3 arrives ahead of the hashed prefix, then again (corrupt or not), then the rest.
        send(&c, &up, share_num, share, &[3], None).await;
        send(&c, &up, share_num, share, &[3], (!second_ok).then_some(3)).await;
        send(&c, &up, share_num, share, &rest, None).await;
        c.finish(&up, share_num, len).await.expect(status);
    }
    assert_eq!(c.listed(&si).await, vec![1]);
    srv.stop().await;
}
