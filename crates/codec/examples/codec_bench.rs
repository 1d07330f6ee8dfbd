//! Throughput of the encoder and decoder on 64 MiB (3-of-10, 1 MiB segments), next to raw
//! SHA-256 on the same machine. Run: `cargo run --release -p lafs-codec --example codec_bench`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Benchmark tool: a panic is fine.

use std::time::Instant;

use lafs_caps::ReadKey;
use lafs_codec::{Decoder, Encoder, Params};
use sha2::{Digest, Sha256};

const SIZE: usize = 64 << 20;

fn mbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let params = Params::default();
    let key = ReadKey::from_bytes([7; 16]);
    let runs = 5;

    let sha = median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                for seg in data.chunks(1 << 20) {
                    std::hint::black_box(Sha256::digest(seg));
                }
                mbps(SIZE, t.elapsed().as_secs_f64())
            })
            .collect(),
    );

    let mut shares: Vec<Vec<u8>> = Vec::new();
    let mut encoded = None;
    let enc_speed = median(
        (0..runs)
            .map(|_| {
                let mut out: Vec<Vec<u8>> = (0..10)
                    .map(|_| Vec::with_capacity(SIZE / 3 + (1 << 20)))
                    .collect();
                let t = Instant::now();
                let mut enc = Encoder::new(params, key.clone()).unwrap();
                let put = |w: lafs_codec::ShareWrite, out: &mut Vec<Vec<u8>>| {
                    let s = &mut out[usize::from(w.share)];
                    let end = w.offset as usize + w.data.len();
                    if s.len() < end {
                        s.resize(end, 0);
                    }
                    s[w.offset as usize..end].copy_from_slice(&w.data);
                };
                for seg in data.chunks(1 << 20) {
                    enc.push(seg).unwrap();
                    while let Some(w) = enc.poll_write() {
                        put(w, &mut out);
                    }
                }
                let done = enc.finish().unwrap();
                while let Some(w) = enc.poll_write() {
                    put(w, &mut out);
                }
                let s = mbps(SIZE, t.elapsed().as_secs_f64());
                shares = out;
                encoded = Some(done);
                s
            })
            .collect(),
    );
    let cap = encoded.unwrap().read_cap.unwrap();

    let decode = |use_shares: &[u16]| {
        median(
            (0..runs)
                .map(|_| {
                    let t = Instant::now();
                    let mut dec = Decoder::new(&cap);
                    for &i in use_shares {
                        let s = &shares[usize::from(i)];
                        dec.add_trailer(i, s.len() as u64, &s[s.len() - 4096..])
                            .unwrap();
                    }
                    dec.read(0..SIZE as u64).unwrap();
                    let mut n = 0;
                    while !dec.is_done() {
                        for req in dec.poll_requests().unwrap() {
                            let s = &shares[usize::from(req.share)];
                            for r in req.ranges {
                                dec.handle_response(
                                    req.share,
                                    r.start,
                                    &s[r.start as usize..r.end as usize],
                                )
                                .unwrap();
                            }
                        }
                        while let Some(c) = dec.poll_output() {
                            n += c.data.len();
                        }
                    }
                    assert_eq!(n, SIZE);
                    mbps(SIZE, t.elapsed().as_secs_f64())
                })
                .collect(),
        )
    };
    let dec_data = decode(&[0, 1, 2]);
    let dec_parity = decode(&[7, 8, 9]);

    println!(
        "64 MiB, 3-of-10, 1 MiB segments, median of {runs} runs (MB/s = 10^6 B/s of plaintext)"
    );
    println!("raw SHA-256 (1 MiB chunks):        {sha:8.0} MB/s");
    println!("encode (AES, RS, all hashes):      {enc_speed:8.0} MB/s");
    println!("decode from data shares 0,1,2:     {dec_data:8.0} MB/s");
    println!("decode from parity shares 7,8,9:   {dec_parity:8.0} MB/s");
}
