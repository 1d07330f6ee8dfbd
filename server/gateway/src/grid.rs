//! What the gateway needs from a grid: open a file by verifycap, stream verified bytes of it,
//! read raw share bytes (for ciphertext-tree proofs), and upload a stream.
//!
//! The HTTP layer only talks to these traits, so it is tested against the in-memory
//! [`MemoryGrid`](crate::MemoryGrid) as well as against real storage servers.

use core::ops::Range;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use lafs_caps::{Cap, ImmutableReadCap, ImmutableVerifyCap, ReadKey, SelectionIndex};
use lafs_codec::{Params, Ueb};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A stream of bytes: a request body going to the grid, or verified file bytes coming from it.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, GridError>> + Send>>;

/// Why a grid operation failed. Each variant maps to one HTTP status (see `docs/spec/gateway.md`).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GridError {
    /// No server holds a share of the storage index.
    #[error("no shares of storage index {storage_index} were found on the grid")]
    NotFound {
        /// The storage index (base32, as in storage URLs).
        storage_index: String,
    },
    /// Some shares were found, but fewer valid ones than the file needs.
    #[error("not enough shares: {found} valid share(s) found, {needed} needed")]
    NotEnoughShares {
        /// Valid shares found.
        found: usize,
        /// Shares needed (k).
        needed: usize,
    },
    /// The request body could not be read (client went away, bad multipart framing...).
    #[error("reading the request body: {0}")]
    Body(String),
    /// The format layer refused the data (e.g. every share corrupt, bad parameters).
    #[error("{0}")]
    Codec(#[from] lafs_codec::Error),
    /// Storage servers could not take the upload (too few servers, all full...).
    #[error("upload failed: {0}")]
    Upload(String),
    /// Storage servers could not be reached or answered nonsense.
    #[error("grid unavailable: {0}")]
    Unavailable(String),
}

/// How an upload is keyed.
#[derive(Clone, Debug)]
pub enum UploadMode {
    /// The body is plaintext; it is encrypted under this key.
    Plaintext(ReadKey),
    /// The body is ciphertext encrypted by the client, who holds the key; the shares are
    /// placed by this server-selection index (which the client derived from its key).
    Ciphertext(SelectionIndex),
}

/// What to upload and how.
#[derive(Clone, Debug)]
pub struct UploadSpec {
    /// Encoding parameters.
    pub params: Params,
    /// Plaintext with a key, or ciphertext with a selection index.
    pub mode: UploadMode,
}

/// What an upload produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uploaded {
    /// The readcap (`None` for a ciphertext upload: the client holds the key).
    pub read_cap: Option<ImmutableReadCap>,
    /// The verifycap.
    pub verify_cap: ImmutableVerifyCap,
}

/// A grid the gateway reads from and writes to.
pub trait Grid: Send + Sync + 'static {
    /// Opens the file of `cap` for reading: plaintext for a readcap, verified ciphertext for a
    /// verifycap (literal caps never reach the grid). Errors: [`GridError::NotFound`],
    /// [`GridError::NotEnoughShares`], [`GridError::Unavailable`].
    fn open(&self, cap: Cap) -> BoxFuture<'static, Result<Box<dyn GridFile>, GridError>>;

    /// Finds the shares of the file and verifies its UEB against the storage index, for
    /// inspection (`t=json`, `t=ueb`) and raw share reads (`t=proof`).
    fn inspect(
        &self,
        cap: ImmutableVerifyCap,
    ) -> BoxFuture<'static, Result<Arc<dyn ShareView>, GridError>>;

    /// Encodes `body` as it streams in and stores the shares; returns the caps and UEB once
    /// every share is stored. Memory use must not grow with the body size.
    fn upload(
        &self,
        spec: UploadSpec,
        body: ByteStream,
    ) -> BoxFuture<'static, Result<Uploaded, GridError>>;

    /// The grid client behind this grid, if any: directories and mutable files are served
    /// through it (`None`: those endpoints answer 501).
    fn grid_client(&self) -> Option<lafs_client::Client> {
        None
    }

    /// The storage servers this grid knows now, as (identity, base URL) pairs: public data
    /// (what the introducer announces), served at `GET /grid/servers` so that a browser can
    /// talk to the servers itself. `None`: this grid has no storage servers to name (the
    /// endpoint answers 501).
    fn storage_servers(&self) -> Option<Vec<(lafs_client::ServerId, String)>> {
        None
    }
}

/// An opened file, read once.
pub trait GridFile: Send + 'static {
    /// The file size in bytes.
    fn size(&self) -> u64;

    /// The bytes of `range` (clamped to the file size), in order, each verified against the
    /// cap before it is yielded. The stream starts producing after the first segment of the
    /// range is fetched, whatever the file size.
    fn read(self: Box<Self>, range: Range<u64>) -> ByteStream;
}

/// The shares of a file, as found on the grid.
pub trait ShareView: Send + Sync + 'static {
    /// The verified UEB (its hash is the storage index of the cap that opened the file).
    fn ueb(&self) -> Ueb;

    /// Share numbers whose trailer verified.
    fn shares(&self) -> Vec<u16>;

    /// Raw, unverified bytes of share `share` at `ranges` (one buffer per range).
    fn read_share(
        &self,
        share: u16,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'static, Result<Vec<Bytes>, GridError>>;
}
