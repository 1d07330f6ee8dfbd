//! The lafs grid client: upload, download, check and verify immutable files, over an abstract
//! async [`Transport`], free of IO, threads and any async runtime.
//!
//! The logic lives here once; drivers only move bytes: `lafs-netclient` (tokio + reqwest) for
//! the command line and the gateway, a `fetch`-based transport in the browser, and the
//! deterministic in-memory grid [`sim::SimGrid`] in tests. How uploads and downloads proceed,
//! request by request, is described in `docs/spec/client.md`.
//!
//! | item | role |
//! |---|---|
//! | [`Client`] | entry point: [`Client::upload`], [`Client::upload_bytes`], [`Client::open`], [`Client::check`] |
//! | [`Upload`] | push API: [`Upload::write`] any number of times, then [`Upload::finish`] → [`UploadResult`] |
//! | [`Download`] | pull API over any byte range: [`Download::next_chunk`], [`Download::seek`], [`Download::into_stream`] |
//! | [`CheckReport`] | which shares exist where, healthy or not; with `verify`, every share checked byte for byte |
//! | [`Transport`], [`TransportError`], [`ReadPiece`] | what a driver implements |
//! | [`http`] | the storage protocol over HTTP as plain requests and answer checks; an HTTP driver implements [`http::HttpBackend`] (moving bytes only) and gets [`Transport`] |
//! | [`placement`] | rendezvous server order and "servers of happiness" placement |
//! | [`sim`] | the simulated grid: N in-memory servers with dead / lying / full / read-only / failing knobs |
//!
//! Concurrency comes from the `futures` crate (`join_all`, `FuturesUnordered`): requests to
//! different servers are always in flight together, never one server after the other.
//!
//! ```
//! use std::sync::Arc;
//! use futures::executor::block_on;
//! use lafs_client::{sim::SimGrid, Client, ClientConfig};
//!
//! let grid = Arc::new(SimGrid::new(10, 1));
//! let client = Client::new(grid.clone(), ClientConfig::default());
//! let data = vec![42u8; 100_000];
//! let up = block_on(client.upload_bytes(&data, Default::default()))?;
//! let mut dl = block_on(client.open(&up.cap))?;
//! assert_eq!(block_on(dl.read_all())?, data);
//! let report = block_on(client.check(&up.cap, false))?;
//! assert!(report.healthy);
//! # Ok::<(), lafs_client::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod check;
mod dir;
mod discover;
mod download;
pub mod http;
mod mutable;
mod mutable_check;
pub mod placement;
pub mod sim;
mod transport;
mod upload;

use std::sync::Arc;

use lafs_codec::Params;

pub use check::{CheckReport, CopyStatus, ShareCopy};
pub use dir::{is_dir_cap, metadata_size, read_level, size_metadata, OpenedDir};
pub use download::Download;
pub use mutable::{Located, MutableContents};
pub use mutable_check::{
    mutable_public_key, MutableCheckReport, MutableCopy, MutableRepairReport, MutableVersion,
};
pub use placement::ServerId;
pub use transport::{
    mutable_unsupported, parse_read_response, BoxFut, MaybeSendSync, Payload, ReadPiece, Spawn,
    Transport, TransportError,
};
pub use upload::{Upload, UploadOptions, UploadProgress, UploadResult};

/// Everything that can go wrong in the client.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not enough distinct servers could take shares to reach the happiness threshold.
    #[error(
        "upload is not happy: {reachable} of {queried} storage server(s) reachable, {accepting} \
         accepting shares; the shares could be spread over {achieved} distinct server(s) but \
         {needed} are needed"
    )]
    NotHappy {
        /// Servers asked.
        queried: usize,
        /// Servers that answered.
        reachable: usize,
        /// Servers that answered and accept shares (not full, not read-only).
        accepting: usize,
        /// Distinct servers the best placement (or the finished upload) reaches.
        achieved: usize,
        /// The happiness threshold.
        needed: usize,
    },
    /// Encoding or placement parameters that cannot work (e.g. happy > N).
    #[error("invalid parameters: {0}")]
    BadParams(&'static str),
    /// The transport knows no storage server.
    #[error("no storage servers known (is the introducer reachable?)")]
    NoServers,
    /// No server holds any share of the file.
    #[error(
        "file not found: no share on any of the {reachable} reachable server(s) ({queried} asked)"
    )]
    NotFound {
        /// Servers asked.
        queried: usize,
        /// Servers that answered.
        reachable: usize,
    },
    /// Fewer than k distinct good shares can be reached.
    #[error(
        "not enough shares: {found} distinct good share(s) reachable, {need} needed \
         ({reachable} of {queried} server(s) answered)"
    )]
    NotEnoughShares {
        /// k.
        need: u16,
        /// Distinct shares with a good copy on a live server.
        found: usize,
        /// Servers asked.
        queried: usize,
        /// Servers that answered.
        reachable: usize,
    },
    /// The file format layer refused (corrupt beyond recovery, bad range, inconsistent encoding).
    #[error("{0}")]
    Codec(#[from] lafs_codec::Error),
    /// A cap that this operation cannot use.
    #[error("{0}")]
    Cap(#[from] lafs_caps::Error),
    /// A cap of a kind this client cannot use for this operation.
    #[error("caps of kind {0} are not supported here")]
    UnsupportedCap(lafs_caps::CapKind),
    /// The operating system's random number generator failed.
    #[error("random number generator failed")]
    Random,
    /// The mutable file format refused (bad share, bad signature, bad range...).
    #[error("{0}")]
    Mutable(#[from] lafs_mutable::Error),
    /// The directory layer refused (not a directory cap, no such entry, not permitted at
    /// this cap's level, malformed dirnode...).
    #[error("{0}")]
    Dirnode(lafs_dirnode::Error),
    /// Another writer published a version concurrently (a server holds an equal or higher
    /// sequence number, or two different versions carry one). Nothing was lost silently:
    /// re-read, merge the intended change, publish again.
    #[error("uncoordinated write detected at sequence number {seqnum}: {detail}")]
    UncoordinatedWrite {
        /// The contested sequence number.
        seqnum: u64,
        /// What was seen.
        detail: String,
    },
    /// A share of a mutable version is larger than any accepting server takes in one write
    /// request (their announced `max_request_body`). Nothing was written: the previous
    /// version is unchanged. Raise the servers' request limit or use more shares per file.
    #[error(
        "a share of this version is {share_bytes} bytes, more than the {limit}-byte request \
         limit of every accepting server ({accepting} of them); raise the storage servers' \
         request limit or encode with more shares"
    )]
    ShareTooLarge {
        /// Bytes of the largest whole share to send.
        share_bytes: u64,
        /// The largest request limit among the accepting servers.
        limit: u64,
        /// Servers that accept mutable shares.
        accepting: usize,
    },
    /// A server failed to store a mutable share (other than a seqnum conflict).
    #[error("mutable write to server {server} failed: {error}")]
    MutableWrite {
        /// The server.
        server: String,
        /// Its answer.
        error: TransportError,
    },
    /// The operation was used out of order (e.g. write after finish).
    #[error("invalid state: {0}")]
    InvalidState(&'static str),
}

/// Client settings. `Default`: 3-of-10, 1 MiB segments, happy 7.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Encoding parameters of new uploads.
    pub params: Params,
    /// Servers-of-happiness threshold of new uploads (k ≤ happy ≤ N).
    pub happy: u16,
    /// Bytes asked of each share's end in the first download round (≥ the trailer; a small
    /// file's whole share fits, so it is read in one round trip).
    pub suffix_len: u64,
    /// Segments in flight at once: uploads encode segment j+1 while j's writes are in flight;
    /// downloads fetch the next segment of a sequential read while returning this one.
    pub pipeline_depth: usize,
    /// Writes to one share are merged until they reach this many bytes (small files: one
    /// write per share).
    pub write_chunk: usize,
    /// Once `open` knows k distinct shares, how much longer it waits for the other servers'
    /// first answers (holders found later serve as fail-over). Timed by
    /// [`Transport::sleep`]; a transport without timers waits for every answer.
    pub straggler_grace: core::time::Duration,
    /// Where downloads run their pipelined segment fetches (verification and decoding);
    /// `None`: on the reading task.
    pub spawner: Option<Spawner>,
}

/// A shared [`Spawn`] implementation (see [`ClientConfig::spawner`]).
#[derive(Clone)]
pub struct Spawner(pub Arc<dyn Spawn>);

impl core::fmt::Debug for Spawner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Spawner")
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            params: Params::default(),
            happy: 7,
            suffix_len: 4096,
            pipeline_depth: 2,
            write_chunk: 1 << 20,
            straggler_grace: core::time::Duration::from_millis(500),
            spawner: None,
        }
    }
}

/// A grid client over one transport. Cheap to clone; downloads and uploads own a clone, so
/// they can outlive the borrow that created them (e.g. a streaming HTTP response body).
#[derive(Clone)]
pub struct Client {
    transport: Arc<dyn Transport>,
    config: ClientConfig,
}

impl Client {
    /// A client using `transport`.
    pub fn new(transport: Arc<dyn Transport>, config: ClientConfig) -> Self {
        Self { transport, config }
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The transport.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }
}
