//! A driver for the sans-IO [`Decoder`]: turns share reads into a stream of verified bytes.

use core::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;
use futures_util::stream;
use lafs_codec::{Decoder, Error as CodecError};

use crate::grid::{BoxFuture, ByteStream, GridError};

/// Reads raw bytes of one share at several ranges (one buffer per range).
pub type ShareReadFn = Arc<
    dyn Fn(u16, Vec<Range<u64>>) -> BoxFuture<'static, Result<Vec<Bytes>, GridError>> + Send + Sync,
>;

/// Upper bound on decoder rounds per segment before giving up (each round either makes
/// progress or marks a share bad/unavailable, so this is never reached with at most 256 shares).
const MAX_ROUNDS_PER_SEGMENT: u32 = 4 * 256 + 16;

struct State {
    decoder: Decoder,
    read: ShareReadFn,
    done: bool,
}

/// Streams `range` out of `decoder` (whose trailers are already added), fetching what it asks
/// for with `read`, the requests of one round concurrently. A share whose read fails is marked
/// unavailable; a corrupt share is avoided (the decoder says so); the stream ends with an error
/// only when no set of k good shares remains.
pub fn decode_stream(mut decoder: Decoder, range: Range<u64>, read: ShareReadFn) -> ByteStream {
    if let Err(e) = decoder.read(range) {
        return Box::pin(stream::once(async move { Err(GridError::Codec(e)) }));
    }
    let state = State {
        decoder,
        read,
        done: false,
    };
    Box::pin(stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        match next_chunk(&mut st).await {
            Ok(Some(b)) => Some((Ok(b), st)),
            Ok(None) => None,
            Err(e) => {
                st.done = true;
                Some((Err(e), st))
            }
        }
    }))
}

async fn next_chunk(st: &mut State) -> Result<Option<Bytes>, GridError> {
    let mut rounds = 0u32;
    loop {
        if let Some(chunk) = st.decoder.poll_output() {
            tracing::trace!(offset = chunk.offset, len = chunk.data.len(), "decoded");
            if chunk.data.is_empty() {
                continue;
            }
            return Ok(Some(Bytes::from(chunk.data)));
        }
        if st.decoder.is_done() {
            return Ok(None);
        }
        rounds += 1;
        if rounds > MAX_ROUNDS_PER_SEGMENT {
            return Err(GridError::Unavailable(
                "download made no progress (storage servers keep failing)".into(),
            ));
        }
        let requests = match st.decoder.poll_requests() {
            Ok(r) => r,
            // A prefetched block failed: the share is marked bad; ask again.
            Err(CodecError::CorruptShare { share, .. }) => {
                tracing::warn!(share, "corrupt share avoided");
                continue;
            }
            Err(e) => return Err(map_codec(e)),
        };
        if requests.is_empty() {
            // Progress was made without IO (prefetched blocks), or the decoder waits for
            // nothing; the round limit catches a decoder that is stuck.
            continue;
        }
        let reads = requests.into_iter().map(|req| {
            let fut = (st.read)(req.share, req.ranges.clone());
            async move { (req, fut.await) }
        });
        for (req, result) in join_all(reads).await {
            match result {
                Ok(bufs) if bufs.len() == req.ranges.len() => {
                    for (r, data) in req.ranges.iter().zip(bufs) {
                        match st.decoder.handle_response(req.share, r.start, &data) {
                            Ok(()) | Err(CodecError::UnexpectedData { .. }) => {}
                            Err(CodecError::CorruptShare { share, part }) => {
                                tracing::warn!(share, ?part, "corrupt share avoided");
                            }
                            Err(e) => return Err(map_codec(e)),
                        }
                    }
                }
                Ok(_) => {
                    tracing::warn!(
                        share = req.share,
                        "share read returned the wrong number of ranges"
                    );
                    st.decoder.share_unavailable(req.share);
                }
                Err(e) => {
                    tracing::warn!(share = req.share, error = %e, "share read failed");
                    st.decoder.share_unavailable(req.share);
                }
            }
        }
    }
}

pub(crate) fn map_codec(e: CodecError) -> GridError {
    match e {
        CodecError::NotEnoughShares { need, usable } => GridError::NotEnoughShares {
            found: usize::from(usable),
            needed: usize::from(need),
        },
        other => GridError::Codec(other),
    }
}
