//! [`ClientGrid`]: the gateway's [`Grid`] over the grid client (`lafs-client`), i.e. over real
//! storage servers reached through any [`lafs_client::Transport`].

use core::ops::Range;
use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;
use futures_util::{StreamExt, TryStreamExt};
use lafs_caps::{Cap, ImmutableVerifyCap, SelectionIndex};
use lafs_client::placement::permuted_servers;
use lafs_client::{Client, ClientConfig, ReadPiece, ServerId, Transport, UploadOptions};
use lafs_codec::{Decoder, Encoder, Params, Ueb};
use lafs_proto::ids::storage_index_to_text;
use lafs_proto::read::ReadRange;
use lafs_proto::storage::{AllocateRequest, FinishRequest};
use lafs_proto::{ReadRequest, ShareNum, ShareRead, UploadId};

use crate::grid::{
    BoxFuture, ByteStream, Grid, GridError, GridFile, ShareView, UploadMode, UploadSpec, Uploaded,
};

/// Bytes of each share's end read when inspecting a file (at least the trailer).
const SUFFIX_LEN: u64 = 4096;

/// The gateway's grid: downloads and uploads through a [`Client`], share inspection
/// (`t=json`, `t=ueb`, `t=proof`) directly over its transport.
#[derive(Clone)]
pub struct ClientGrid {
    client: Client,
    servers: Option<ServerList>,
}

/// Lists the storage servers known now: (identity, base URL) pairs.
pub type ServerList = Arc<dyn Fn() -> Vec<(ServerId, String)> + Send + Sync>;

impl ClientGrid {
    /// A grid over `client`; its configuration gives the happiness threshold and pipeline
    /// settings, each upload its own encoding parameters.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            servers: None,
        }
    }

    /// Names the storage servers behind the client (for example the introducer's live set),
    /// for `GET /grid/servers`: a browser tab then reads and writes them directly.
    pub fn with_server_list(mut self, servers: ServerList) -> Self {
        self.servers = Some(servers);
        self
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

fn map_client(e: lafs_client::Error) -> GridError {
    use lafs_client::Error as E;
    match e {
        E::NotFound { .. } => GridError::NotFound {
            storage_index: String::from("(see the cap)"),
        },
        E::NotEnoughShares { need, found, .. } => GridError::NotEnoughShares {
            found,
            needed: usize::from(need),
        },
        E::Codec(c) => GridError::Codec(c),
        E::NotHappy { .. } | E::NoServers => GridError::Upload(e.to_string()),
        other => GridError::Unavailable(other.to_string()),
    }
}

struct ClientFile {
    download: lafs_client::Download,
}

impl GridFile for ClientFile {
    fn size(&self) -> u64 {
        self.download.size()
    }

    fn read(self: Box<Self>, range: Range<u64>) -> ByteStream {
        let mut d = self.download;
        d.seek(range);
        Box::pin(d.into_stream().map_err(map_client))
    }
}

impl Grid for ClientGrid {
    fn grid_client(&self) -> Option<Client> {
        Some(self.client.clone())
    }

    fn storage_servers(&self) -> Option<Vec<(ServerId, String)>> {
        self.servers.as_ref().map(|list| list())
    }

    fn open(&self, cap: Cap) -> BoxFuture<'static, Result<Box<dyn GridFile>, GridError>> {
        let client = self.client.clone();
        let si = cap
            .verify_cap()
            .map(|v| storage_index_to_text(v.storage_index()));
        Box::pin(async move {
            let download = client.open(&cap).await.map_err(|e| match map_client(e) {
                GridError::NotFound { .. } => GridError::NotFound {
                    storage_index: si.unwrap_or_default(),
                },
                other => other,
            })?;
            let file: Box<dyn GridFile> = Box::new(ClientFile { download });
            Ok(file)
        })
    }

    fn inspect(
        &self,
        cap: ImmutableVerifyCap,
    ) -> BoxFuture<'static, Result<Arc<dyn ShareView>, GridError>> {
        let transport = Arc::clone(self.client.transport());
        Box::pin(async move {
            let view: Arc<dyn ShareView> = Arc::new(inspect(transport, cap).await?);
            Ok(view)
        })
    }

    fn upload(
        &self,
        spec: UploadSpec,
        mut body: ByteStream,
    ) -> BoxFuture<'static, Result<Uploaded, GridError>> {
        let base = self.client.config().clone();
        let transport = Arc::clone(self.client.transport());
        Box::pin(async move {
            let params = spec.params;
            let happy = base.happy.clamp(params.k(), params.n());
            let key = match spec.mode {
                UploadMode::Plaintext(key) => key,
                UploadMode::Ciphertext(sel) => {
                    return upload_ciphertext(transport, usize::from(happy), params, sel, body)
                        .await
                }
            };
            let client = Client::new(
                transport,
                ClientConfig {
                    params,
                    happy,
                    ..base
                },
            );
            let mut up = client.upload(UploadOptions {
                key: Some(key),
                ..UploadOptions::default()
            });
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                up.write(&chunk).await.map_err(map_client)?;
            }
            let done = up.finish().await.map_err(map_client)?;
            match (done.cap, done.verify_cap) {
                (Cap::ImmutableRead(rc), Some(vc)) => Ok(Uploaded {
                    read_cap: Some(rc),
                    verify_cap: vc,
                }),
                _ => Err(GridError::Upload(
                    "the grid client made a literal cap of a large body".into(),
                )),
            }
        })
    }
}

/// Asks every server (in the file's permuted order) which shares it holds, reads each share's
/// suffix from one holder and keeps the shares whose trailer verifies against the cap.
async fn inspect(
    transport: Arc<dyn Transport>,
    cap: ImmutableVerifyCap,
) -> Result<ClientView, GridError> {
    let si = *cap.storage_index();
    let servers = permuted_servers(cap.selection_index(), &transport.servers());
    if servers.is_empty() {
        return Err(GridError::Unavailable(
            "no storage servers known (is the introducer reachable?)".into(),
        ));
    }
    let lists = join_all(servers.iter().map(|&s| {
        let t = Arc::clone(&transport);
        async move { (s, t.list_shares(s, si).await) }
    }))
    .await;
    let mut holders: BTreeMap<u16, Vec<ServerId>> = BTreeMap::new();
    for (server, result) in lists {
        match result {
            Ok(shares) => {
                for info in shares {
                    holders
                        .entry(u16::from(info.share.0))
                        .or_default()
                        .push(server);
                }
            }
            Err(e) => tracing::debug!(%server, error = %e, "list_shares failed"),
        }
    }
    let not_found = || GridError::NotFound {
        storage_index: storage_index_to_text(&si),
    };
    if holders.is_empty() {
        return Err(not_found());
    }
    // One suffix read per server, covering every share it is the first holder of.
    let mut by_server: BTreeMap<ServerId, Vec<u16>> = BTreeMap::new();
    for (share, hs) in &holders {
        if let Some(first) = hs.first() {
            by_server.entry(*first).or_default().push(*share);
        }
    }
    let reads = join_all(by_server.into_iter().map(|(server, shares)| {
        let t = Arc::clone(&transport);
        let req = ReadRequest {
            reads: shares
                .iter()
                .map(|&s| ShareRead {
                    share: wire_share(s),
                    ranges: vec![ReadRange::Suffix { length: SUFFIX_LEN }],
                })
                .collect(),
        };
        async move { t.read(server, si, req).await }
    }))
    .await;
    let mut decoder = Decoder::for_verify_cap(&cap);
    let mut good = Vec::new();
    for pieces in reads.into_iter().flatten() {
        for piece in pieces {
            if let ReadPiece::Data {
                share,
                share_len,
                data,
                ..
            } = piece
            {
                if decoder.add_trailer(share, share_len, &data).is_ok() {
                    good.push(share);
                }
            }
        }
    }
    let ueb = *decoder.ueb().ok_or_else(not_found)?;
    if good.len() < usize::from(ueb.params.k()) {
        return Err(GridError::NotEnoughShares {
            found: good.len(),
            needed: usize::from(ueb.params.k()),
        });
    }
    good.sort_unstable();
    Ok(ClientView {
        transport,
        si,
        ueb,
        good,
        holders,
    })
}

struct ClientView {
    transport: Arc<dyn Transport>,
    si: lafs_caps::StorageIndex,
    ueb: Ueb,
    good: Vec<u16>,
    holders: BTreeMap<u16, Vec<ServerId>>,
}

impl ShareView for ClientView {
    fn ueb(&self) -> Ueb {
        self.ueb
    }

    fn shares(&self) -> Vec<u16> {
        self.good.clone()
    }

    fn read_share(
        &self,
        share: u16,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'static, Result<Vec<Bytes>, GridError>> {
        let transport = Arc::clone(&self.transport);
        let si = self.si;
        let holders = self.holders.get(&share).cloned().unwrap_or_default();
        Box::pin(async move {
            let req = ReadRequest {
                reads: vec![ShareRead {
                    share: wire_share(share),
                    ranges: ranges
                        .iter()
                        .filter(|r| r.end > r.start)
                        .map(|r| ReadRange::Span {
                            offset: r.start,
                            length: r.end - r.start,
                        })
                        .collect(),
                }],
            };
            let mut last = GridError::Unavailable(format!("no server holds share {share}"));
            for server in holders {
                match transport.read(server, si, req.clone()).await {
                    Ok(pieces) => {
                        let bufs: Vec<Bytes> = pieces
                            .into_iter()
                            .filter_map(|p| match p {
                                ReadPiece::Data { data, .. } => Some(data),
                                ReadPiece::Absent { .. } => None,
                            })
                            .collect();
                        if bufs.len() == ranges.len() {
                            return Ok(bufs);
                        }
                        last = GridError::Unavailable(format!(
                            "server {server} no longer holds share {share}"
                        ));
                    }
                    Err(e) => last = GridError::Unavailable(format!("server {server}: {e}")),
                }
            }
            Err(last)
        })
    }
}

/// Uploads client-encrypted ciphertext (`Encoder::for_ciphertext`): shares are spread round-robin
/// over the servers in the selection index's permuted order; a server that refuses the
/// allocation is dropped and the shares are spread again over the others. Unlike the grid
/// client's plaintext uploads there is no fail-over once writing has started: a failing write
/// fails the upload (and the allocations are aborted).
async fn upload_ciphertext(
    transport: Arc<dyn Transport>,
    happy: usize,
    params: Params,
    sel: SelectionIndex,
    mut body: ByteStream,
) -> Result<Uploaded, GridError> {
    let mut live = permuted_servers(&sel, &transport.servers());
    let n = params.n();
    let want = happy.min(usize::from(n)).max(1);
    let slots: BTreeMap<u16, (ServerId, UploadId)> = loop {
        if live.len() < want {
            return Err(GridError::Upload(format!(
                "{} storage server(s) accept shares, {want} needed",
                live.len()
            )));
        }
        let mut plan: BTreeMap<ServerId, Vec<u16>> = BTreeMap::new();
        for (i, share) in (0..n).enumerate() {
            plan.entry(live[i % live.len()]).or_default().push(share);
        }
        let attempts = join_all(plan.into_iter().map(|(server, shares)| {
            let t = Arc::clone(&transport);
            async move {
                let id = UploadId(random_id()?);
                let req = AllocateRequest {
                    shares: shares.iter().map(|&s| wire_share(s)).collect(),
                    share_size: None,
                    expected_si: None,
                };
                let r = t.allocate(server, id, req).await;
                Ok::<_, GridError>((server, id, shares, r))
            }
        }))
        .await;
        let mut ok = BTreeMap::new();
        let mut failed = Vec::new();
        let mut allocated = Vec::new();
        for a in attempts {
            let (server, id, shares, r) = a?;
            match r {
                Ok(resp) if resp.allocated.len() == shares.len() => {
                    allocated.push((server, id));
                    for s in shares {
                        ok.insert(s, (server, id));
                    }
                }
                Ok(_) => {
                    allocated.push((server, id));
                    failed.push(server);
                }
                Err(e) => {
                    tracing::warn!(%server, error = %e, "allocate failed");
                    failed.push(server);
                }
            }
        }
        if failed.is_empty() {
            break ok;
        }
        abort_all(&transport, &allocated).await;
        live.retain(|s| !failed.contains(s));
    };
    let uploads: Vec<(ServerId, UploadId)> = {
        let mut v: Vec<_> = slots.values().copied().collect();
        v.sort();
        v.dedup();
        v
    };
    let result = async {
        let mut enc = Encoder::for_ciphertext(params, sel)?;
        while let Some(chunk) = body.next().await {
            enc.push(&chunk?)?;
            write_pending(&transport, &slots, &mut enc).await?;
        }
        let done = enc.finish()?;
        write_pending(&transport, &slots, &mut enc).await?;
        let finishes = join_all(slots.iter().map(|(&share, &(server, id))| {
            let t = Arc::clone(&transport);
            let length = done
                .share_lens
                .get(usize::from(share))
                .copied()
                .unwrap_or(0);
            let req = FinishRequest {
                length,
                expected_si: Some(done.storage_index),
            };
            async move { t.finish(server, id, wire_share(share), req).await }
        }))
        .await;
        for f in finishes {
            f.map_err(|e| GridError::Upload(format!("finishing a share: {e}")))?;
        }
        Ok::<_, GridError>(done.verify_cap)
    }
    .await;
    match result {
        Ok(verify_cap) => Ok(Uploaded {
            read_cap: None,
            verify_cap,
        }),
        Err(e) => {
            abort_all(&transport, &uploads).await;
            Err(e)
        }
    }
}

/// Sends every write the encoder has ready, concurrently, and waits for all of them (so at
/// most one pushed chunk's worth of share data is in memory).
async fn write_pending(
    transport: &Arc<dyn Transport>,
    slots: &BTreeMap<u16, (ServerId, UploadId)>,
    enc: &mut Encoder,
) -> Result<(), GridError> {
    let mut writes = Vec::new();
    while let Some(w) = enc.poll_write() {
        let Some(&(server, id)) = slots.get(&w.share) else {
            return Err(GridError::Upload(format!(
                "share {} has no server",
                w.share
            )));
        };
        let t = Arc::clone(transport);
        writes.push(async move {
            t.write(
                server,
                id,
                wire_share(w.share),
                w.offset,
                Bytes::from(w.data),
            )
            .await
            .map_err(|e| GridError::Upload(format!("writing share {} to {server}: {e}", w.share)))
        });
    }
    for r in join_all(writes).await {
        r?;
    }
    Ok(())
}

async fn abort_all(transport: &Arc<dyn Transport>, uploads: &[(ServerId, UploadId)]) {
    join_all(uploads.iter().map(|&(server, id)| {
        let t = Arc::clone(transport);
        async move {
            let _ = t.abort(server, id).await;
        }
    }))
    .await;
}

fn random_id() -> Result<[u8; 16], GridError> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|_| GridError::Upload("no system randomness".into()))?;
    Ok(id)
}

/// A share number as the wire type (share numbers are below N ≤ 256).
fn wire_share(share: u16) -> ShareNum {
    ShareNum(u8::try_from(share).unwrap_or(u8::MAX))
}
