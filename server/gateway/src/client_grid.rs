//! [`ClientGrid`]: the gateway's [`Grid`] over the grid client (`lafs-client`), i.e. over real
//! storage servers reached through any [`lafs_client::Transport`].

use core::ops::Range;
use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;
use futures_util::{StreamExt, TryStreamExt};
use lafs_caps::{Cap, ImmutableVerifyCap};
use lafs_client::placement::permuted_servers;
use lafs_client::{Client, ClientConfig, ReadPiece, ServerId, Transport, UploadOptions};
use lafs_codec::{Decoder, Ueb};
use lafs_proto::ids::storage_index_to_text;
use lafs_proto::read::ReadRange;
use lafs_proto::{ReadRequest, ShareNum, ShareRead};

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
            // Plaintext and client-encrypted ciphertext alike go through the grid client's
            // uploader (happiness placement, fail-over to spare servers, whole-share requests).
            let opts = match spec.mode {
                UploadMode::Plaintext(key) => UploadOptions {
                    key: Some(key),
                    ..UploadOptions::default()
                },
                UploadMode::Ciphertext(sel) => UploadOptions {
                    ciphertext: Some(sel),
                    ..UploadOptions::default()
                },
            };
            let client = Client::new(
                transport,
                ClientConfig {
                    params,
                    happy,
                    ..base
                },
            );
            let mut up = client.upload(opts);
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
                (Cap::ImmutableVerify(_), Some(vc)) => Ok(Uploaded {
                    read_cap: None,
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

/// A share number as the wire type (share numbers are below N ≤ 256).
fn wire_share(share: u16) -> ShareNum {
    ShareNum(u8::try_from(share).unwrap_or(u8::MAX))
}
