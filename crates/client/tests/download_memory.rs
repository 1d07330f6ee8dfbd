//! A long sequential download keeps a bounded amount of hash-tree state: memory does not grow
//! with the file size.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a test failure.

use std::sync::Arc;

use futures::executor::block_on;
use lafs_client::sim::SimGrid;
use lafs_client::{Client, ClientConfig, UploadOptions};
use lafs_codec::Params;

const SEG: u32 = 1024;
const SEGMENTS: usize = 3000;

#[test]
fn tree_state_is_bounded_over_thousands_of_segments() {
    let config = ClientConfig {
        params: Params::new(3, 5, SEG).unwrap(),
        happy: 5,
        ..ClientConfig::default()
    };
    let depth = config.pipeline_depth.max(1);
    let g = Arc::new(SimGrid::new(5, 7));
    let c = Client::new(g, config);
    let mut rng = fastrand::Rng::with_seed(11);
    let data: Vec<u8> = (0..SEG as usize * SEGMENTS - 1)
        .map(|_| rng.u8(..))
        .collect();
    let opts = UploadOptions {
        key: Some(lafs_caps::ReadKey::from_bytes([0x24; 16])),
        ..UploadOptions::default()
    };
    let up = block_on(c.upload_bytes(&data, opts)).unwrap();
    // Per tree: the root plus a path node and its sibling per level (12 levels for 3000
    // leaves); per decoder: the ciphertext tree and one block tree per share (5).
    let per_decoder = (5 + 1) * (2 * 12 + 1);
    let bound = depth * per_decoder;
    let (got, most) = block_on(async {
        let mut d = c.open(&up.cap).await.unwrap();
        let mut got = Vec::new();
        let mut most = 0;
        while let Some(chunk) = d.next_chunk().await {
            got.extend_from_slice(&chunk.unwrap());
            let held = d.held_tree_nodes();
            most = most.max(held);
            assert!(
                held <= bound,
                "after {} bytes: {held} tree nodes held (bound {bound})",
                got.len()
            );
        }
        (got, most)
    });
    assert_eq!(got, data);
    assert!(most > 0, "the accessor sees the decoders");
}
