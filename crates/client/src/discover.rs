//! The first round of a download or check: which servers hold which shares, with each share's
//! suffix (trailer and, for small files, everything).

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use lafs_proto::read::ReadRange;
use lafs_proto::{ReadRequest, ShareRead, StorageIndex};

use crate::transport::{boxed, BoxFut, ReadPiece, Transport, TransportError};
use crate::ServerId;

/// One share copy found on a server.
#[derive(Debug, Clone)]
pub(crate) struct FoundShare {
    pub share: u16,
    pub share_len: u64,
    /// The last bytes of the share (`None` if the server listed it but did not return it).
    pub suffix: Option<Bytes>,
}

/// One server's answer.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub server: ServerId,
    pub result: Result<Vec<FoundShare>, TransportError>,
}

/// Asks every server in `servers` at once: list the shares of `si`, then read the last
/// `suffix_len` bytes of each held share in one multi-range request. Answers are returned in
/// completion order (fastest server first).
pub(crate) async fn discover(
    transport: &Arc<dyn Transport>,
    si: StorageIndex,
    servers: &[ServerId],
    suffix_len: u64,
) -> Vec<Found> {
    let mut pending = start(transport, si, servers, suffix_len);
    let mut out = Vec::with_capacity(servers.len());
    while let Some(found) = pending.next().await {
        out.push(found);
    }
    out
}

/// The questions of [`discover`], in flight; answers come out in completion order.
pub(crate) fn start(
    transport: &Arc<dyn Transport>,
    si: StorageIndex,
    servers: &[ServerId],
    suffix_len: u64,
) -> FuturesUnordered<BoxFut<Found>> {
    let pending = FuturesUnordered::new();
    for &server in servers {
        let t = Arc::clone(transport);
        pending.push(boxed(async move {
            let result = ask(t.as_ref(), server, si, suffix_len).await;
            Found { server, result }
        }));
    }
    pending
}

async fn ask(
    t: &dyn Transport,
    server: ServerId,
    si: StorageIndex,
    suffix_len: u64,
) -> Result<Vec<FoundShare>, TransportError> {
    let listed = t.list_shares(server, si).await?;
    if listed.is_empty() {
        return Ok(Vec::new());
    }
    let req = ReadRequest {
        reads: listed
            .iter()
            .map(|s| ShareRead {
                share: s.share,
                ranges: vec![ReadRange::Suffix {
                    length: suffix_len.max(1),
                }],
            })
            .collect(),
    };
    let pieces = t.read(server, si, req).await?;
    let mut out: Vec<FoundShare> = listed
        .iter()
        .map(|s| FoundShare {
            share: u16::from(s.share.0),
            share_len: s.length,
            suffix: None,
        })
        .collect();
    for p in pieces {
        if let ReadPiece::Data {
            share,
            offset,
            share_len,
            data,
        } = p
        {
            // Only a true suffix is useful: it must end at the share's end.
            if offset + data.len() as u64 != share_len {
                continue;
            }
            if let Some(f) = out
                .iter_mut()
                .find(|f| f.share == share && f.share_len == share_len)
            {
                f.suffix = Some(data);
            }
        }
    }
    Ok(out)
}
