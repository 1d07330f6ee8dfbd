//! Downloads: open a cap, then read any byte range, verified, from the fastest servers.

use core::ops::Range;
use core::task::Poll;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, Stream, StreamExt};
use lafs_caps::{Cap, StorageIndex};
use lafs_codec::{Decoder, SharePart};
use lafs_proto::read::ReadRange;
use lafs_proto::{ReadRequest, ShareRead};

use crate::discover;
use crate::placement::permuted_servers;
use crate::transport::{boxed, wire_share, BoxFut, ReadPiece, Transport, TransportError};
use crate::{Client, Error, ServerId};

/// What the decoders are built from.
#[derive(Clone)]
enum Key {
    Read(lafs_caps::ImmutableReadCap),
    Verify(lafs_caps::ImmutableVerifyCap),
}

/// What the running fetches share: where each share is, which servers are gone.
struct Shared {
    /// Live holders of each share, fastest first (order of first-round answers).
    holders: BTreeMap<u16, Vec<ServerId>>,
    /// A verified suffix of each share (the decoders' starting point) and who sent it.
    suffixes: BTreeMap<u16, (u64, Bytes, ServerId)>,
    /// Servers that failed a request (never asked again by this download).
    dead: BTreeSet<ServerId>,
    /// Corruption advisories sent: (server, share, reason).
    advisories: Vec<(ServerId, u16, String)>,
}

#[derive(Clone)]
struct Ctx {
    transport: Arc<dyn Transport>,
    si: StorageIndex,
    key: Key,
    shared: Arc<Mutex<Shared>>,
}

type PieceResult = (Decoder, Result<Vec<Bytes>, Error>);

/// An open immutable file: plaintext for a readcap or literal cap, verified ciphertext for a
/// verifycap. Read it with [`next_chunk`](Self::next_chunk) (or as a `Stream` via
/// [`into_stream`](Self::into_stream)); [`seek`](Self::seek) selects any byte range.
///
/// Every byte returned has been checked against the cap. Memory: at most
/// `pipeline_depth` segments being fetched (k blocks each) plus their output, i.e.
/// O(segment size × k); the time to the first byte of any range does not depend on the file
/// size (one suffix round trip at open, then O(log segments) hashes with the first block).
pub struct Download {
    ctx: Option<Ctx>,
    literal: Option<Bytes>,
    size: u64,
    segment_size: u64,
    depth: usize,
    /// Start of the next piece not yet started.
    pos: u64,
    end: u64,
    spare: Vec<Decoder>,
    running: VecDeque<BoxFut<PieceResult>>,
    ready: Vec<Option<PieceResult>>,
    pending: VecDeque<Bytes>,
    failed: bool,
    spawner: Option<crate::Spawner>,
}

impl Client {
    /// Opens a file for reading: for a [`Cap::Literal`] nothing is sent; otherwise every server
    /// in the cap's permuted order is asked at once for the shares it holds and their
    /// trailers, which are checked against the cap. The whole file is selected; use
    /// [`Download::seek`] for a range.
    pub async fn open(&self, cap: &Cap) -> Result<Download, Error> {
        let (key, si, ssi) = match cap {
            Cap::Literal(l) => return Ok(Download::literal(l)),
            Cap::ImmutableRead(c) => (
                Key::Read(c.clone()),
                *c.storage_index(),
                c.selection_index(),
            ),
            Cap::ImmutableVerify(c) => (Key::Verify(*c), *c.storage_index(), *c.selection_index()),
            other => return Err(Error::UnsupportedCap(other.kind())),
        };
        let servers = permuted_servers(&ssi, &self.transport.servers());
        if servers.is_empty() {
            return Err(Error::NoServers);
        }
        let mut pending = discover::start(&self.transport, si, &servers, self.config.suffix_len);
        let mut shared = Shared {
            holders: BTreeMap::new(),
            suffixes: BTreeMap::new(),
            dead: BTreeSet::new(),
            advisories: Vec::new(),
        };
        let ctx_key = key.clone();
        let mut probe = new_decoder(&key);
        let mut reachable = 0;
        let mut corrupt = Vec::new();
        // Answers are taken as they come; once k distinct shares are known, stragglers get
        // `straggler_grace` more (timed by the transport) and are then left behind.
        let mut grace: Option<BoxFut<()>> = None;
        loop {
            let next = match grace.as_mut() {
                None => pending.next().await,
                Some(timer) => match futures::future::select(pending.next(), timer).await {
                    futures::future::Either::Left((x, _)) => x,
                    futures::future::Either::Right(_) => break,
                },
            };
            let Some(f) = next else { break };
            let Ok(shares) = &f.result else {
                shared.dead.insert(f.server);
                continue;
            };
            reachable += 1;
            for s in shares {
                let Some(suffix) = &s.suffix else { continue };
                if let Some((len, _, _)) = shared.suffixes.get(&s.share) {
                    if *len == s.share_len {
                        shared.holders.entry(s.share).or_default().push(f.server);
                    }
                    continue;
                }
                match probe.add_trailer(s.share, s.share_len, suffix) {
                    Ok(()) => {
                        shared
                            .suffixes
                            .insert(s.share, (s.share_len, suffix.clone(), f.server));
                        shared.holders.entry(s.share).or_default().push(f.server);
                    }
                    Err(e) => corrupt.push((f.server, s.share, e.to_string())),
                }
            }
            if grace.is_none()
                && probe
                    .ueb()
                    .is_some_and(|u| probe.usable_shares().count() >= usize::from(u.params.k()))
            {
                grace = Some(self.transport.sleep(self.config.straggler_grace));
            }
        }
        drop(pending);
        let ctx = Ctx {
            transport: Arc::clone(&self.transport),
            si,
            key: ctx_key,
            shared: Arc::new(Mutex::new(shared)),
        };
        for (server, share, reason) in corrupt {
            ctx.advise(server, share, reason).await;
        }
        let Some(ueb) = probe.ueb().copied() else {
            return Err(Error::NotFound {
                queried: servers.len(),
                reachable,
            });
        };
        let k = ueb.params.k();
        let found_shares = probe.usable_shares().count();
        if found_shares < usize::from(k) {
            return Err(Error::NotEnoughShares {
                need: k,
                found: found_shares,
                queried: servers.len(),
                reachable,
            });
        }
        let depth = self.config.pipeline_depth.max(1);
        Ok(Download {
            ctx: Some(ctx),
            literal: None,
            size: ueb.file_size,
            segment_size: u64::from(ueb.params.segment_size()),
            depth,
            pos: 0,
            end: ueb.file_size,
            spare: vec![probe],
            running: VecDeque::new(),
            ready: Vec::new(),
            pending: VecDeque::new(),
            failed: false,
            spawner: self.config.spawner.clone(),
        })
    }
}

impl Download {
    /// A literal cap's file: its bytes are in the cap, nothing is sent anywhere.
    pub fn literal(cap: &lafs_caps::LiteralCap) -> Self {
        let data = Bytes::copy_from_slice(cap.data());
        let size = data.len() as u64;
        Self {
            ctx: None,
            literal: Some(data),
            size,
            segment_size: size.max(1),
            depth: 1,
            pos: 0,
            end: size,
            spare: Vec::new(),
            running: VecDeque::new(),
            ready: Vec::new(),
            pending: VecDeque::new(),
            failed: false,
            spawner: None,
        }
    }

    /// The file size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Corruption advisories sent so far: (server, share, reason).
    pub fn advisories(&self) -> Vec<(ServerId, u16, String)> {
        self.ctx
            .as_ref()
            .map(|c| c.lock().advisories.clone())
            .unwrap_or_default()
    }

    /// Hash-tree nodes held by the idle decoders (those not fetching a segment right now).
    /// Bounded by O(depth × shares × log segments) whatever the file size; exposed for tests.
    #[doc(hidden)]
    pub fn held_tree_nodes(&self) -> usize {
        self.spare.iter().map(Decoder::held_tree_nodes).sum()
    }

    /// Servers that failed during this download.
    pub fn failed_servers(&self) -> Vec<ServerId> {
        self.ctx
            .as_ref()
            .map(|c| c.lock().dead.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Selects the byte range to read next (clamped to the file), dropping any read in
    /// progress. Returns the clamped range.
    pub fn seek(&mut self, range: Range<u64>) -> Range<u64> {
        let end = range.end.min(self.size);
        let start = range.start.min(end);
        self.running.clear();
        self.ready.clear();
        self.pending.clear();
        self.failed = false;
        self.pos = start;
        self.end = end;
        start..end
    }

    /// The next verified bytes of the selected range, in order; `None` at its end. After an
    /// error the download stops (seek to start again).
    pub async fn next_chunk(&mut self) -> Option<Result<Bytes, Error>> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Some(Ok(b));
            }
            if self.failed {
                return None;
            }
            if let Some(lit) = &self.literal {
                if self.pos >= self.end {
                    return None;
                }
                let out = lit.slice(self.pos as usize..self.end as usize);
                self.pos = self.end;
                return Some(Ok(out));
            }
            self.start_pieces();
            if self.running.is_empty() {
                return None;
            }
            let (dec, result) = self.poll_first().await;
            self.spare.push(dec);
            match result {
                Ok(chunks) => self
                    .pending
                    .extend(chunks.into_iter().filter(|c| !c.is_empty())),
                Err(e) => {
                    self.running.clear();
                    self.ready.clear();
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }

    /// Reads the selected range to the end into memory.
    pub async fn read_all(&mut self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        while let Some(chunk) = self.next_chunk().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    /// The selected range as a stream of verified chunks.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, Error>> {
        futures::stream::unfold(self, |mut d| async move {
            let item = d.next_chunk().await?;
            Some((item, d))
        })
    }

    /// Starts pieces (one segment each) until `depth` are running.
    fn start_pieces(&mut self) {
        let Some(ctx) = &self.ctx else { return };
        while self.running.len() < self.depth && self.pos < self.end {
            let seg_end = (self.pos / self.segment_size + 1).saturating_mul(self.segment_size);
            let piece = self.pos..seg_end.min(self.end);
            self.pos = piece.end;
            let dec = self.spare.pop().unwrap_or_else(|| ctx.decoder());
            let ctx = ctx.clone();
            let fut = boxed(async move {
                let mut dec = dec;
                let r = fetch_piece(&ctx, &mut dec, piece).await;
                (dec, r)
            });
            let fut = match &self.spawner {
                None => fut,
                Some(s) => {
                    let (tx, rx) = futures::channel::oneshot::channel();
                    s.0.spawn(boxed(async move {
                        let _ = tx.send(fut.await);
                    }));
                    let fallback = ctx_decoder(&self.ctx);
                    boxed(async move {
                        rx.await.unwrap_or_else(|_| {
                            (
                                fallback,
                                Err(Error::InvalidState("spawned segment fetch was dropped")),
                            )
                        })
                    })
                }
            };
            self.running.push_back(fut);
            self.ready.push(None);
        }
    }

    /// Waits for the first running piece while driving the others.
    async fn poll_first(&mut self) -> PieceResult {
        let running = &mut self.running;
        let ready = &mut self.ready;
        futures::future::poll_fn(|cx| {
            for (i, fut) in running.iter_mut().enumerate() {
                if ready[i].is_none() {
                    if let Poll::Ready(r) = fut.as_mut().poll(cx) {
                        ready[i] = Some(r);
                    }
                }
            }
            if matches!(ready.first(), Some(Some(_))) {
                running.pop_front();
                if let Some(r) = ready.remove(0) {
                    return Poll::Ready(r);
                }
            }
            Poll::Pending
        })
        .await
    }
}

fn ctx_decoder(ctx: &Option<Ctx>) -> Decoder {
    match ctx {
        Some(c) => new_decoder(&c.key),
        None => Decoder::for_verify_cap(&lafs_caps::ImmutableVerifyCap::new(
            StorageIndex([0; 32]),
            lafs_caps::SelectionIndex([0; 16]),
        )),
    }
}

fn new_decoder(key: &Key) -> Decoder {
    match key {
        Key::Read(c) => Decoder::new(c),
        Key::Verify(c) => Decoder::for_verify_cap(c),
    }
}

impl Ctx {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A decoder primed with every known share's verified suffix.
    fn decoder(&self) -> Decoder {
        let mut d = new_decoder(&self.key);
        let sh = self.lock();
        for (share, (len, suffix, _)) in &sh.suffixes {
            if sh.holders.get(share).is_some_and(|h| !h.is_empty()) {
                // Verified once already; a failure here cannot happen and would only make
                // the share unusable for this decoder.
                let _ = d.add_trailer(*share, *len, suffix);
            }
        }
        d
    }

    /// The server whose suffix of `share` the decoders were primed with.
    fn suffix_source(&self, share: u16) -> Option<ServerId> {
        self.lock().suffixes.get(&share).map(|(_, _, s)| *s)
    }

    /// The preferred live holder of `share`.
    fn holder(&self, share: u16) -> Option<ServerId> {
        let sh = self.lock();
        sh.holders
            .get(&share)
            .and_then(|h| h.iter().find(|s| !sh.dead.contains(s)).copied())
    }

    fn mark_dead(&self, server: ServerId) {
        let mut sh = self.lock();
        sh.dead.insert(server);
        for h in sh.holders.values_mut() {
            h.retain(|s| *s != server);
        }
    }

    fn drop_holder(&self, server: ServerId, share: u16) {
        let mut sh = self.lock();
        if let Some(h) = sh.holders.get_mut(&share) {
            h.retain(|s| *s != server);
        }
    }

    /// Reports a corrupt copy to the server holding it (best effort) and forgets the copy.
    async fn advise(&self, server: ServerId, share: u16, reason: String) {
        self.drop_holder(server, share);
        {
            let mut sh = self.lock();
            if sh
                .advisories
                .iter()
                .any(|(s, n, _)| *s == server && *n == share)
            {
                return;
            }
            sh.advisories.push((server, share, reason.clone()));
        }
        let _ = self
            .transport
            .advise_corrupt(server, self.si, wire_share(share), reason)
            .await;
    }

    /// A copy of `share` on `server` failed verification: report it, then give the decoder
    /// the same share from another holder (with that holder's own suffix), if any.
    async fn corrupt(
        &self,
        dec: &mut Decoder,
        server: Option<ServerId>,
        share: u16,
        part: SharePart,
    ) {
        if let Some(server) = server {
            let reason = format!("share {share}: {part} failed verification");
            self.advise(server, share, reason).await;
        }
        while let Some(next) = self.holder(share) {
            let req = ReadRequest {
                reads: vec![ShareRead {
                    share: wire_share(share),
                    ranges: vec![ReadRange::Suffix { length: 4096 }],
                }],
            };
            match self.transport.read(next, self.si, req).await {
                Ok(pieces) => {
                    let got = pieces.into_iter().find_map(|p| match p {
                        ReadPiece::Data {
                            share: s,
                            offset,
                            share_len,
                            data,
                        } if s == share && offset + data.len() as u64 == share_len => {
                            Some((share_len, data))
                        }
                        _ => None,
                    });
                    let Some((len, data)) = got else {
                        self.drop_holder(next, share);
                        continue;
                    };
                    match dec.add_trailer(share, len, &data) {
                        Ok(()) => return,
                        Err(e) => self.advise(next, share, e.to_string()).await,
                    }
                }
                Err(_) => self.mark_dead(next),
            }
        }
    }
}

/// Ranges wanted of each share, in one request to one server.
type ShareRanges = Vec<(u16, Vec<Range<u64>>)>;

type ReadFuture = BoxFut<(
    ServerId,
    ShareRanges,
    Result<Vec<ReadPiece>, TransportError>,
)>;

fn send_read(ctx: &Ctx, server: ServerId, reads: ShareRanges) -> ReadFuture {
    let t = Arc::clone(&ctx.transport);
    let si = ctx.si;
    boxed(async move {
        let req = ReadRequest {
            reads: reads
                .iter()
                .map(|(share, ranges)| ShareRead {
                    share: wire_share(*share),
                    ranges: ranges
                        .iter()
                        .map(|r| ReadRange::Span {
                            offset: r.start,
                            length: r.end - r.start,
                        })
                        .collect(),
                })
                .collect(),
        };
        let r = t.read(server, si, req).await;
        (server, reads, r)
    })
}

/// Reads `range` (inside one segment) with `dec`: sends the decoder's reads grouped by server,
/// fails over to another holder when a server dies or lacks the share, and routes around (and
/// reports) corrupt shares.
async fn fetch_piece(ctx: &Ctx, dec: &mut Decoder, range: Range<u64>) -> Result<Vec<Bytes>, Error> {
    dec.read(range)?;
    let mut out = Vec::new();
    let mut inflight: FuturesUnordered<ReadFuture> = FuturesUnordered::new();
    let mut serving: BTreeMap<u16, ServerId> = BTreeMap::new();
    // Stray bytes for a share the decoder dropped are harmless; other errors end the read.
    let mut reissue: ShareRanges = Vec::new();
    loop {
        let reqs = match dec.poll_requests() {
            Ok(r) => r,
            Err(lafs_codec::Error::CorruptShare { share, part }) => {
                // Bytes from a read, or from the suffix found at open.
                let from = serving
                    .get(&share)
                    .copied()
                    .or_else(|| ctx.suffix_source(share));
                ctx.corrupt(dec, from, share, part).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let mut by_server: BTreeMap<ServerId, ShareRanges> = BTreeMap::new();
        let mut replanned = false;
        for (share, ranges) in reqs
            .into_iter()
            .map(|r| (r.share, r.ranges))
            .chain(reissue.drain(..))
        {
            match ctx.holder(share) {
                Some(server) => {
                    serving.insert(share, server);
                    by_server.entry(server).or_default().push((share, ranges));
                }
                None => {
                    dec.share_unavailable(share);
                    replanned = true;
                }
            }
        }
        for (server, reads) in by_server {
            inflight.push(send_read(ctx, server, reads));
        }
        if replanned {
            continue;
        }
        while let Some(c) = dec.poll_output() {
            out.push(Bytes::from(c.data));
        }
        if dec.is_done() {
            return Ok(out);
        }
        let Some((server, reads, result)) = inflight.next().await else {
            return Err(Error::InvalidState(
                "download stalled with no request in flight",
            ));
        };
        match result {
            Ok(pieces) => {
                for p in pieces {
                    match p {
                        ReadPiece::Data {
                            share,
                            offset,
                            data,
                            ..
                        } => match dec.handle_response(share, offset, &data) {
                            Ok(()) | Err(lafs_codec::Error::UnexpectedData { .. }) => {}
                            Err(lafs_codec::Error::CorruptShare { share, part }) => {
                                ctx.corrupt(dec, Some(server), share, part).await;
                            }
                            Err(e) => return Err(e.into()),
                        },
                        ReadPiece::Absent { share } => {
                            ctx.drop_holder(server, share);
                            if let Some((_, r)) = reads.iter().find(|(s, _)| *s == share) {
                                reissue.push((share, r.clone()));
                            }
                        }
                    }
                }
            }
            Err(_) => {
                ctx.mark_dead(server);
                reissue.extend(reads);
            }
        }
    }
}
