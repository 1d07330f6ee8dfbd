//! End to end on a real local grid: an introducer, storage servers (in-memory share stores)
//! and the gateway, all over HTTP on 127.0.0.1 ephemeral ports; requests with reqwest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{data, TestGrid};
use lafs_caps::{Cap, ImmutableReadCap, ImmutableVerifyCap};
use lafs_codec::{decrypt_at, segment_leaf_of_ciphertext};
use lafs_hashtree::PartialTree;

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_grid_round_trips_ranges_and_ciphertext() {
    let grid = TestGrid::start(7).await;
    let seg = 4096usize;
    for (i, len) in [0usize, 1, 56, seg - 1, seg, seg + 1]
        .into_iter()
        .enumerate()
    {
        let d = data(len, 100 + i as u64);
        let cap = grid
            .upload(&format!("?segment_size={seg}"), d.clone())
            .await;
        let (status, h, body) = grid.get(&format!("/uri/{cap}"), None).await;
        assert_eq!(status, 200);
        assert_eq!(header(&h, "content-length"), Some(len.to_string().as_str()));
        assert!(body == d, "size {len}");
        // A one-segment file's proof needs no stored node (the root is in the UEB): it is an
        // empty list, not an error (regression: the gateway used to send an empty share read).
        if (56..=seg).contains(&len) {
            let vc = cap.parse::<ImmutableReadCap>().unwrap().verify_cap();
            let (status, _, proof) = grid
                .get(&format!("/ciphertext/{vc}?t=proof&segments=0-0"), None)
                .await;
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&proof));
            let proof: serde_json::Value = serde_json::from_slice(&proof).unwrap();
            assert_eq!(proof["proof"].as_array().map(Vec::len), Some(0), "{proof}");
        }
    }

    // A few MiB with default parameters, and random ranges.
    let d = data((3 << 20) + 777, 5);
    let cap = grid.upload("", d.clone()).await;
    let (_, _, body) = grid.get(&format!("/uri/{cap}"), None).await;
    assert!(body == d);
    let mut rng = fastrand::Rng::with_seed(11);
    for _ in 0..8 {
        let a = rng.usize(..d.len());
        let b = rng.usize(a..d.len());
        let (status, h, body) = grid
            .get(&format!("/uri/{cap}"), Some(&format!("bytes={a}-{b}")))
            .await;
        assert_eq!(status, 206);
        assert_eq!(
            header(&h, "content-range"),
            Some(format!("bytes {a}-{b}/{}", d.len()).as_str())
        );
        assert!(body == d[a..=b]);
    }
    let (status, h, body) = grid.get(&format!("/uri/{cap}"), Some("bytes=-1000")).await;
    assert_eq!(status, 206);
    assert!(body == d[d.len() - 1000..]);
    assert_eq!(header(&h, "access-control-allow-origin"), Some("*"));
    let (status, h, _) = grid
        .get(&format!("/uri/{cap}"), Some(&format!("bytes={}-", d.len())))
        .await;
    assert_eq!(status, 416);
    assert_eq!(
        header(&h, "content-range"),
        Some(format!("bytes */{}", d.len()).as_str())
    );
    let (status, h) = grid.head(&format!("/uri/{cap}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&h, "content-length"),
        Some(d.len().to_string().as_str())
    );

    // t=json
    let (_, _, body) = grid.get(&format!("/uri/{cap}?t=json"), None).await;
    let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(j[1]["size"], d.len());
    assert_eq!(j[1]["k"], 3);
    assert_eq!(j[1]["n"], 10);

    // Verified ciphertext through the verifycap, decrypted here, with a proof that verifies.
    let rc: ImmutableReadCap = cap.parse().unwrap();
    let vc = rc.verify_cap();
    let (status, _, ct) = grid
        .get(&format!("/ciphertext/{vc}"), Some("bytes=1048000-2100000"))
        .await;
    assert_eq!(status, 206);
    let mut plain = ct.clone();
    decrypt_at(rc.key(), 1_048_000, &mut plain).unwrap();
    assert!(plain == d[1_048_000..=2_100_000]);
    let (_, _, ueb) = grid.get(&format!("/ciphertext/{vc}?t=ueb"), None).await;
    let ueb = lafs_codec::parse_ueb(&ueb).unwrap();
    assert_eq!(ueb.storage_index(), *vc.storage_index());
    let (status, _, proof) = grid
        .get(&format!("/ciphertext/{vc}?t=proof&segments=1-2"), None)
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&proof));
    let proof: serde_json::Value = serde_json::from_slice(&proof).unwrap();
    let (_, _, segs) = grid
        .get(
            &format!("/ciphertext/{vc}"),
            Some(&format!("bytes={}-{}", 1 << 20, (3 << 20) - 1)),
        )
        .await;
    let mut tree = PartialTree::new(ueb.ciphertext_root, 4).unwrap();
    tree.add_nodes(&common::proof_nodes(&proof)).unwrap();
    for (j, seg) in segs.chunks(1 << 20).enumerate() {
        let leaf = segment_leaf_of_ciphertext(&ueb.params, seg).unwrap();
        tree.add_leaf(1 + j, leaf).unwrap();
    }
    assert!(tree.verified_leaf(1).is_some() && tree.verified_leaf(2).is_some());

    // Bad caps are 400 with the caps crate's text.
    let (status, _, body) = grid.get("/uri/lafsr1notacap", None).await;
    assert_eq!(status, 400);
    let expected = "lafsr1notacap".parse::<Cap>().unwrap_err().to_string();
    assert!(String::from_utf8_lossy(&body).contains(&expected));
    // A file that is not on the grid.
    let missing = ImmutableVerifyCap::new(
        lafs_caps::StorageIndex([9; 32]),
        lafs_caps::SelectionIndex([1; 16]),
    );
    let (status, _, _) = grid.get(&format!("/ciphertext/{missing}"), None).await;
    assert_eq!(status, 410);

    // Ciphertext encrypted here, stored through the gateway, read back both ways.
    let plain = data(200_000, 77);
    let (key, ct) = common::encrypt(&plain);
    let vc = grid
        .put_ciphertext(&key, "&segment_size=65536", ct.clone())
        .await;
    let (status, _, back) = grid.get(&format!("/ciphertext/{vc}"), None).await;
    assert_eq!(status, 200);
    assert!(back == ct);
    let rc = ImmutableReadCap::new(key, *vc.storage_index());
    let (status, _, back) = grid.get(&format!("/uri/{rc}"), Some("bytes=100000-")).await;
    assert_eq!(status, 206);
    assert!(back == plain[100_000..]);

    // A form upload.
    let (ct_type, body) = common::multipart(&[], &plain);
    let (status, cap) = grid
        .post("/uri?t=upload", &[("content-type", &ct_type)], body)
        .await;
    assert_eq!(status, 200);
    let (_, _, back) = grid.get(&format!("/uri/{cap}"), None).await;
    assert!(back == plain);

    grid.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_and_mutable_files_on_a_real_grid() {
    let g = TestGrid::start(5).await;
    let (st, dir) = g.post("/uri?t=mkdir", &[], Vec::new()).await;
    assert_eq!(st, 200, "{dir}");
    let data = vec![9u8; 100_000];
    let (st, file) = g.put(&format!("/uri/{dir}/sub/x.bin"), data.clone()).await;
    assert_eq!(st, 404, "no subdirectory yet: {file}");
    let (st, _) = g.put(&format!("/uri/{dir}/sub?t=mkdir"), Vec::new()).await;
    assert_eq!(st, 201);
    let (st, file) = g.put(&format!("/uri/{dir}/sub/x.bin"), data.clone()).await;
    assert_eq!(st, 201, "{file}");
    // The path redirects to the file, which reqwest follows.
    let (st, _, body) = g.get(&format!("/uri/{dir}/sub/x.bin"), None).await;
    assert_eq!((st, body.len()), (200, data.len()));
    let (st, _, j) = g.get(&format!("/uri/{dir}/sub?t=json"), None).await;
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_slice(&j).unwrap();
    assert_eq!(v[1]["children"]["x.bin"][1]["ro_uri"], file.as_str());
    let (st, _) = g
        .post(
            &format!("/uri/{dir}/sub?t=rename&from_name=x.bin&to_name=y.bin"),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(st, 200);
    let st = g.delete(&format!("/uri/{dir}/sub/y.bin")).await;
    assert_eq!(st, 204);
    // A mutable file, partially rewritten.
    let (st, m) = g.post("/uri?t=mutable", &[], b"0123456789".to_vec()).await;
    assert_eq!(st, 200, "{m}");
    let (st, _) = g.put(&format!("/uri/{m}?offset=8"), b"AB!".to_vec()).await;
    assert_eq!(st, 200);
    let (_, _, body) = g.get(&format!("/uri/{m}"), None).await;
    assert_eq!(body, b"01234567AB!");
    g.shutdown().await;
}
