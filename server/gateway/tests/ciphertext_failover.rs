//! `PUT /ciphertext` goes through the grid client's uploader: storage servers whose disks fail
//! during the upload lose their shares to the other servers, and the file is stored happily.
//! An introducer, 10 storage servers (3 of them failing every write) and the gateway, all over
//! HTTP on 127.0.0.1 ephemeral ports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{data, encrypt, GridSpec, TestGrid};
use lafs_storage::{FaultPlan, FaultyStore, MemoryStore, ShareStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ciphertext_upload_fails_over_to_healthy_servers() {
    let mut faulty = Vec::new();
    let mut stores: Vec<Arc<dyn ShareStore>> = Vec::new();
    for i in 0..10u8 {
        stores.push(if i < 3 {
            // The "disk" dies after the allocation, at the first write: the upload is under way
            // when the server starts failing (the gateway's former uploader gave up there).
            let f = Arc::new(FaultyStore::new(
                MemoryStore::new(1 << 30),
                FaultPlan {
                    crash_at_op: Some(1),
                    torn_write: false,
                },
            ));
            faulty.push(Arc::clone(&f));
            f
        } else {
            Arc::new(MemoryStore::new(1 << 30))
        });
    }
    let grid = TestGrid::start_with(GridSpec {
        stores,
        mutable: false,
        client: lafs_client::ClientConfig::default(),
    })
    .await;

    // A larger file (allocate, merged writes, finish), then a small one (every share in one
    // whole-share request): both end up on the 7 healthy servers.
    for (len, seg) in [(5_000_000, 65_536), (200_000, 65_536)] {
        let (key, ct) = encrypt(&data(len, len as u64));
        let vc = grid
            .put_ciphertext(&key, &format!("&segment_size={seg}"), ct.clone())
            .await;
        let (status, _, body) = grid.get(&format!("/ciphertext/{vc}"), None).await;
        assert_eq!(status, 200);
        assert!(body == ct, "size {len}");
    }
    assert!(
        faulty.iter().all(|f| f.crashed()),
        "every failing server was tried"
    );

    grid.shutdown().await;
}
