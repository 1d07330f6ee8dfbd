//! The abstract storage transport: what the client needs from a storage server.
//!
//! A driver implements [`Transport`] for its IO stack (reqwest/hyper natively, `fetch` in the
//! browser, the in-memory [`crate::sim::SimGrid`] in tests). The trait is async but carries no
//! runtime: no timers, no spawning. **Timeouts belong to the transport**: a request that takes
//! too long must resolve to [`TransportError::Timeout`], never hang, because the client waits
//! for every request it sends.
//!
//! Natively the futures are `Send` (a multi-threaded server awaits them); on `wasm32` they are
//! not (browser futures hold JS values).

use async_trait::async_trait;
use bytes::Bytes;
use lafs_proto::mutable::{MutableWriteResponse, WireWrite};
use lafs_proto::read::{decode_response, PartContent};
use lafs_proto::storage::{
    AllocateRequest, AllocateResponse, ErrorCode, FinishRequest, FinishResponse, PutShareResponse,
    ShareInfo, VersionResponse, WriteResponse,
};
use lafs_proto::{ReadRequest, ShareNum, StorageIndex, UploadId};

use crate::placement::ServerId;

/// A request body made of pieces sent back to back: share data merged from several blocks goes
/// out without being copied into one buffer. Cloning shares the pieces.
///
/// Guarantees: [`Payload::len`] is the sum of the pieces' lengths, and every way of reading it
/// ([`Payload::parts`], [`Payload::to_bytes`]) yields the same bytes in the same order. Empty
/// pieces are never stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    parts: Vec<Bytes>,
    len: usize,
}

impl Payload {
    /// An empty payload.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `bytes` (nothing if empty).
    pub fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.len += bytes.len();
            self.parts.push(bytes);
        }
    }

    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces, in order (none empty).
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// The bytes as one buffer: shared when there is at most one piece, else copied once.
    pub fn to_bytes(&self) -> Bytes {
        match self.parts.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            parts => {
                let mut v = Vec::with_capacity(self.len);
                for p in parts {
                    v.extend_from_slice(p);
                }
                Bytes::from(v)
            }
        }
    }

    /// Removes and returns the first `at` bytes (all of them if `at >= len`), sharing the
    /// pieces (a piece cut in two is split without copying).
    pub fn split_to(&mut self, at: usize) -> Self {
        if at >= self.len {
            return std::mem::take(self);
        }
        let mut head = Self::new();
        let mut rest = std::mem::take(&mut self.parts).into_iter();
        for mut part in rest.by_ref() {
            let want = at - head.len;
            if part.len() <= want {
                head.push(part);
                if head.len == at {
                    break;
                }
            } else {
                head.push(part.split_to(want));
                self.parts.push(part);
                break;
            }
        }
        self.parts.extend(rest);
        self.len -= head.len;
        head
    }
}

impl From<Bytes> for Payload {
    fn from(bytes: Bytes) -> Self {
        let mut p = Self::new();
        p.push(bytes);
        p
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Self {
        Self::from(Bytes::from(v))
    }
}

/// Why one request to one server failed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The server could not be reached (connection refused or reset, DNS, unknown server).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The request did not complete within the transport's timeout.
    #[error("timed out")]
    Timeout,
    /// The server answered with an error status and (usually) a JSON error body.
    #[error("HTTP {status} ({code:?}): {message}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// Machine-readable code from the error body ([`ErrorCode::Unknown`] if absent).
        code: ErrorCode,
        /// Human-readable message from the error body.
        message: String,
    },
    /// The server answered something that does not follow the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl TransportError {
    /// Whether the server is gone for this operation (unreachable or timed out) rather than
    /// refusing one request.
    pub fn is_down(&self) -> bool {
        matches!(self, Self::Unreachable(_) | Self::Timeout)
    }

    /// Whether the server (or transport) does not know the request: 404, 405 or 501 — an
    /// older server, to be asked the older way.
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            Self::Status {
                status: 404 | 405 | 501,
                ..
            }
        )
    }
}

/// One part of a multi-range read response, owning its bytes (zero-copy slices of the
/// response body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadPiece {
    /// Bytes `offset..offset + data.len()` of share `share`, whose total length is `share_len`.
    Data {
        /// Share number.
        share: u16,
        /// Offset of the data in the share.
        offset: u64,
        /// Total length of the share.
        share_len: u64,
        /// The bytes.
        data: Bytes,
    },
    /// The server holds no finished share `share` for this storage index.
    Absent {
        /// Share number.
        share: u16,
    },
}

/// Parses a multi-range read response body (`application/x-lafs-read-v1`) into owned pieces
/// that share the body's buffer.
pub fn parse_read_response(body: &Bytes) -> Result<Vec<ReadPiece>, TransportError> {
    let parts = decode_response(body)
        .map_err(|e| TransportError::Protocol(format!("read response: {e}")))?;
    Ok(parts
        .into_iter()
        .map(|p| match p.content {
            PartContent::Data {
                offset,
                share_len,
                data,
            } => ReadPiece::Data {
                share: u16::from(p.share.0),
                offset,
                share_len,
                data: body.slice_ref(data),
            },
            PartContent::Absent => ReadPiece::Absent {
                share: u16::from(p.share.0),
            },
        })
        .collect())
}

/// `Send + Sync` natively, nothing on `wasm32` (browser transports hold JS values).
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSendSync: Send + Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + Sync + ?Sized> MaybeSendSync for T {}
/// `Send + Sync` natively, nothing on `wasm32` (browser transports hold JS values).
#[cfg(target_arch = "wasm32")]
pub trait MaybeSendSync {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSendSync for T {}

/// The storage operations the client uses (`docs/spec/storage-protocol.md`), addressed by
/// server identity. The transport knows each server's URL and signs write requests with the
/// client's account key.
///
/// Every method must resolve in bounded time (the transport applies its own timeouts).
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait Transport: MaybeSendSync {
    /// The storage servers currently known (for example the introducer's live set).
    fn servers(&self) -> Vec<ServerId>;

    /// A timer: resolves after `duration`. The client uses it only to stop waiting for slow
    /// servers once it has enough answers (see [`crate::ClientConfig::straggler_grace`]). The
    /// default never resolves: the client then waits for every answer, which the transport's
    /// request timeouts bound.
    fn sleep(&self, duration: core::time::Duration) -> BoxFut<()> {
        let _ = duration;
        Box::pin(futures::future::pending())
    }

    /// `GET /storage/v1/version`.
    async fn version(&self, server: ServerId) -> Result<VersionResponse, TransportError>;

    /// `GET /storage/v1/immutable/{si}/shares`: the finished shares held (empty if none).
    async fn list_shares(
        &self,
        server: ServerId,
        si: StorageIndex,
    ) -> Result<Vec<ShareInfo>, TransportError>;

    /// `POST /storage/v1/immutable/{si}/read`: several ranges of several shares in one request.
    /// Pieces come back in request order, one per requested range.
    async fn read(
        &self,
        server: ServerId,
        si: StorageIndex,
        req: ReadRequest,
    ) -> Result<Vec<ReadPiece>, TransportError>;

    /// `POST /storage/v1/upload/{id}` (signed): allocate shares of an upload.
    async fn allocate(
        &self,
        server: ServerId,
        upload: UploadId,
        req: AllocateRequest,
    ) -> Result<AllocateResponse, TransportError>;

    /// `PUT /storage/v1/upload/{id}/{share}?offset=N` (signed): write bytes of a share.
    async fn write(
        &self,
        server: ServerId,
        upload: UploadId,
        share: ShareNum,
        offset: u64,
        data: Payload,
    ) -> Result<WriteResponse, TransportError>;

    /// `POST /storage/v1/upload/{id}/{share}/finish` (signed): verify and publish a share.
    async fn finish(
        &self,
        server: ServerId,
        upload: UploadId,
        share: ShareNum,
        req: FinishRequest,
    ) -> Result<FinishResponse, TransportError>;

    /// `PUT /storage/v1/immutable/{si}/{share}` (signed, body bound by length): a whole share
    /// in one request; the server verifies it against `si` and files it, and answers with
    /// every share it holds for `si`. The default answers 501 (the client then falls back to
    /// allocate, write and finish).
    async fn put_share(
        &self,
        server: ServerId,
        si: StorageIndex,
        share: ShareNum,
        data: Payload,
    ) -> Result<PutShareResponse, TransportError> {
        let _ = (server, si, share, data);
        Err(TransportError::Status {
            status: 501,
            code: ErrorCode::NotImplemented,
            message: "this transport does not support whole-share uploads".into(),
        })
    }

    /// `DELETE /storage/v1/upload/{id}` (signed): discard an unfinished upload.
    async fn abort(&self, server: ServerId, upload: UploadId) -> Result<(), TransportError>;

    /// `POST /storage/v1/immutable/{si}/{share}/corrupt` (signed): report a corrupt share.
    async fn advise_corrupt(
        &self,
        server: ServerId,
        si: StorageIndex,
        share: ShareNum,
        reason: String,
    ) -> Result<(), TransportError>;

    /// `GET /storage/v1/mutable/{si}/shares`: the mutable shares held (empty if none). The
    /// default answers 501 (a transport without mutable support).
    async fn mutable_list(
        &self,
        server: ServerId,
        si: StorageIndex,
    ) -> Result<Vec<ShareInfo>, TransportError> {
        let _ = (server, si);
        Err(mutable_unsupported())
    }

    /// `POST /storage/v1/mutable/{si}/read`: several ranges of several mutable shares, one
    /// request, pieces in request order. The default answers 501.
    async fn mutable_read(
        &self,
        server: ServerId,
        si: StorageIndex,
        req: ReadRequest,
    ) -> Result<Vec<ReadPiece>, TransportError> {
        let _ = (server, si, req);
        Err(mutable_unsupported())
    }

    /// `POST /storage/v1/mutable/{si}/write` (signed): test-and-write of mutable shares, all
    /// or nothing. A 409 means a stored share has an equal or higher seqnum. The default
    /// answers 501.
    async fn mutable_write(
        &self,
        server: ServerId,
        si: StorageIndex,
        writes: Vec<WireWrite>,
    ) -> Result<MutableWriteResponse, TransportError> {
        let _ = (server, si, writes);
        Err(mutable_unsupported())
    }
}

/// The error of a transport that does not implement the mutable endpoints.
pub fn mutable_unsupported() -> TransportError {
    TransportError::Status {
        status: 501,
        code: ErrorCode::NotImplemented,
        message: "this transport does not support mutable shares".into(),
    }
}

/// A boxed `'static` future: `Send` natively, local on `wasm32`.
#[cfg(not(target_arch = "wasm32"))]
pub type BoxFut<T> = futures::future::BoxFuture<'static, T>;
/// A boxed `'static` future: `Send` natively, local on `wasm32`.
#[cfg(target_arch = "wasm32")]
pub type BoxFut<T> = futures::future::LocalBoxFuture<'static, T>;

/// A driver's executor: runs a future to completion elsewhere (another thread natively, the
/// event loop in the browser). With one in [`crate::ClientConfig::spawner`], a download
/// verifies and decodes its pipelined segments in parallel instead of on the reader's task.
pub trait Spawn: MaybeSendSync {
    /// Starts `fut`; it must run to completion even though nobody awaits it.
    fn spawn(&self, fut: BoxFut<()>);
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn boxed<F>(f: F) -> BoxFut<F::Output>
where
    F: core::future::Future + Send + 'static,
{
    Box::pin(f)
}

#[cfg(target_arch = "wasm32")]
pub(crate) fn boxed<F>(f: F) -> BoxFut<F::Output>
where
    F: core::future::Future + 'static,
{
    Box::pin(f)
}

/// A share number as the wire type (share numbers are below N ≤ 256).
pub(crate) fn wire_share(share: u16) -> ShareNum {
    ShareNum(u8::try_from(share).unwrap_or(u8::MAX))
}

#[cfg(test)]
mod payload_tests {
    use super::*;
    use proptest::prelude::*;

    fn payload(parts: &[Vec<u8>]) -> Payload {
        let mut p = Payload::new();
        for part in parts {
            p.push(Bytes::from(part.clone()));
        }
        p
    }

    #[test]
    fn empty_pieces_are_not_kept() {
        let mut p = Payload::new();
        p.push(Bytes::new());
        assert!(p.is_empty());
        assert!(p.parts().is_empty());
        assert_eq!(p.to_bytes(), Bytes::new());
    }

    #[test]
    fn one_piece_is_shared_not_copied() {
        let b = Bytes::from(vec![7u8; 100]);
        let p = Payload::from(b.clone());
        assert_eq!(p.to_bytes().as_ptr(), b.as_ptr());
    }

    proptest! {
        /// Splitting at any point yields the bytes in order, in two payloads whose lengths add
        /// up, without empty pieces.
        #[test]
        fn split_to_keeps_every_byte_in_order(
            parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 0..8),
            at in 0usize..400,
        ) {
            let whole: Vec<u8> = parts.concat();
            let mut rest = payload(&parts);
            prop_assert_eq!(rest.len(), whole.len());
            prop_assert_eq!(&rest.to_bytes()[..], &whole[..]);
            let head = rest.split_to(at);
            let cut = at.min(whole.len());
            prop_assert_eq!(head.len(), cut);
            prop_assert_eq!(rest.len(), whole.len() - cut);
            prop_assert_eq!(&head.to_bytes()[..], &whole[..cut]);
            prop_assert_eq!(&rest.to_bytes()[..], &whole[cut..]);
            prop_assert!(head.parts().iter().chain(rest.parts()).all(|p| !p.is_empty()));
        }
    }
}
