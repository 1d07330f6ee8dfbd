//! `lafs put/get --gateway URL`: the same commands through a gateway's web API
//! (`PUT /uri`, `GET /uri/$CAP`, see `docs/spec/gateway.md`) instead of the grid.
//!
//! The gateway then sees the file and the readcap (as with Tahoe's web API); use `--node` to
//! keep both on this machine.

use std::io::{Read, Write};

use anyhow::{bail, Context, Result};
use bytes::Bytes;

/// `PUT {url}/uri?k=&n=&segment_size=` with the input streamed as the body (read in 1 MiB
/// chunks on a blocking thread, at most two chunks ahead of the network). Returns the cap.
pub(crate) async fn put(
    url: &str,
    mut input: Box<dyn Read + Send>,
    params: lafs_codec::Params,
) -> Result<String> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(2);
    let reader = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let item = match input.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => Ok(Bytes::copy_from_slice(&buf[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let target = format!(
        "{}/uri?k={}&n={}&segment_size={}",
        url.trim_end_matches('/'),
        params.k(),
        params.n(),
        params.segment_size()
    );
    let resp = reqwest::Client::new()
        .put(&target)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .with_context(|| format!("uploading to the gateway at {url}"))?;
    let status = resp.status();
    let text = resp.text().await.context("reading the gateway's answer")?;
    let _ = reader.await;
    if !status.is_success() {
        bail!("the gateway refused the upload ({status}): {}", text.trim());
    }
    Ok(text.trim().to_owned())
}

/// `GET {url}/uri/{cap}` streamed into `out`; returns the bytes written. Fails unless the
/// whole body (its `Content-Length`) arrived.
pub(crate) async fn get(url: &str, cap: &str, out: &mut dyn Write) -> Result<u64> {
    let target = format!("{}/uri/{cap}", url.trim_end_matches('/'));
    let mut resp = reqwest::Client::new()
        .get(&target)
        .send()
        .await
        .with_context(|| format!("downloading from the gateway at {url}"))?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        bail!(
            "the gateway refused the download ({status}): {}",
            text.trim()
        );
    }
    let expected = resp.content_length();
    let mut n = 0u64;
    while let Some(chunk) = resp.chunk().await.context("downloading from the gateway")? {
        out.write_all(&chunk).context("writing the output")?;
        n += chunk.len() as u64;
    }
    out.flush().context("writing the output")?;
    if let Some(len) = expected {
        if n != len {
            bail!("the gateway's answer was cut short: {n} of {len} bytes");
        }
    }
    Ok(n)
}
