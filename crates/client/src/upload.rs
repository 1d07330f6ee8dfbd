//! Uploads: server selection, happiness placement, pipelined encoding and merged writes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use futures::future::{join, join_all, FutureExt};
use futures::stream::{FuturesUnordered, StreamExt};
use lafs_caps::{
    selection_index_for, Cap, ImmutableVerifyCap, LiteralCap, ReadKey, SelectionIndex, StorageIndex,
};
use lafs_codec::{
    convergent_key, random_key, Encoded, EncodedSegment, Encoder, Params, SegmentEncoder,
    ShareWrite,
};
use lafs_proto::storage::{AllocateRequest, FinishRequest, WriteResponse};
use lafs_proto::UploadId;

use crate::placement::{happiness, permuted_servers, place, ServerState};
use crate::transport::Payload;
use crate::transport::{boxed, wire_share, BoxFut, MaybeSendSync, TransportError};
use crate::{Client, Error, ServerId, Spawner};

/// Receives upload progress (from inside [`Upload::write`] and [`Upload::finish`]; keep it
/// cheap). Natively it must be `Send + Sync`.
pub trait UploadProgress: MaybeSendSync {
    /// `encoded`: plaintext bytes encoded so far. `acknowledged`: plaintext bytes whose share
    /// data the servers have acknowledged (an estimate, proportional to share bytes written).
    fn progress(&self, encoded: u64, acknowledged: u64);
}

/// How to upload one file. `Default`: a random key, no progress reporting.
#[derive(Clone, Default)]
pub struct UploadOptions {
    /// The file key; `None` draws a random one.
    pub key: Option<ReadKey>,
    /// Convergence secret ([`Client::upload_bytes`] only): the key is derived from the
    /// secret, the parameters and the content, so the same file uploaded twice with the same
    /// secret gets the same cap and its shares are not uploaded again. See the caveats in
    /// `docs/spec/immutable.md` §7.
    pub convergence: Option<Vec<u8>>,
    /// The storage index the upload will produce, if already known (a convergent upload
    /// computes it first): servers are asked which shares they hold, and those are counted
    /// instead of uploaded again.
    pub known_storage_index: Option<StorageIndex>,
    /// Progress observer.
    pub progress: Option<Arc<dyn UploadProgress>>,
    /// The input is already **ciphertext** (AES-128-CTR under a key the caller keeps, with the
    /// rule of `lafs_codec::encrypt_at`), and this is the key's selection index: `key` is
    /// ignored, no literal cap is made whatever the size, and the result's `cap` is the
    /// verifycap (the caller builds the readcap from its key and the storage index).
    pub ciphertext: Option<SelectionIndex>,
}

/// What an upload achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadResult {
    /// The readcap (a literal cap for files of at most [`LiteralCap::MAX_LEN`] bytes).
    pub cap: Cap,
    /// The verifycap (`None` for a literal cap).
    pub verify_cap: Option<ImmutableVerifyCap>,
    /// File size in bytes.
    pub size: u64,
    /// Where each share now lives (uploaded or already present).
    pub shares: BTreeMap<u16, ServerId>,
    /// Shares written by this upload.
    pub uploaded: usize,
    /// Shares that were already on the grid and were not uploaded again.
    pub existing: usize,
    /// Distinct servers holding a different share each.
    pub happiness: usize,
    /// Shares given up because their server failed after part of them was written.
    pub lost: Vec<(u16, ServerId)>,
    /// Servers that failed during the upload.
    pub failed_servers: Vec<ServerId>,
}

/// One share being uploaded.
#[derive(Debug, Clone)]
struct Slot {
    server: ServerId,
    /// Upload id of the allocation on `server` (`None` until allocated).
    upload: Option<UploadId>,
    /// Bytes handed to write requests so far.
    flushed: u64,
    /// Filed on `server` by one whole-share request: nothing to finish.
    filed: bool,
}

struct WriteDone {
    server: ServerId,
    share: u16,
    offset: u64,
    data: Payload,
    result: Result<WriteResponse, TransportError>,
}

/// Segments encoded at once on [`crate::ClientConfig::spawner`] (one per core of a
/// two-core machine; more only adds memory).
const ENCODE_AHEAD: usize = 2;

struct Active {
    /// The encoder: takes the segments in order, builds the trees, yields the writes.
    encoder: Encoder,
    /// Its detached per-segment half, cloned into the spawned encoding tasks.
    segment_encoder: SegmentEncoder,
    /// With a spawner: input of the next segment, until it is full.
    segment_buf: Vec<u8>,
    /// With a spawner: index of the next segment to spawn.
    next_segment: u64,
    /// Segments being encoded on [`crate::ClientConfig::spawner`], oldest first (at most
    /// [`ENCODE_AHEAD`]); absorbed by the encoder in this order.
    encoding: VecDeque<BoxFut<Result<EncodedSegment, Error>>>,
    /// Plaintext bytes handed to the encoder so far.
    pushed: u64,
    queried: usize,
    reachable: usize,
    accepting: usize,
    slots: BTreeMap<u16, Slot>,
    existing: BTreeMap<u16, ServerId>,
    spare: VecDeque<ServerId>,
    writable: Vec<ServerId>,
    dead: BTreeSet<ServerId>,
    /// Contiguous runs of share bytes not yet sent, per share.
    pending: BTreeMap<u16, Vec<Run>>,
    inflight: FuturesUnordered<BoxFut<WriteDone>>,
    inflight_bytes: u64,
    max_inflight: u64,
    max_write: usize,
    produced: u64,
    acked: u64,
    lost: Vec<(u16, ServerId)>,
    /// Every (server, upload id) allocated, for aborting.
    allocations: Vec<(ServerId, UploadId)>,
    /// Share lengths, known once the encoder has finished.
    share_lens: Option<Vec<u64>>,
    /// Write requests sent so far.
    sent: u64,
}

/// An upload in progress: push the file with [`write`](Self::write) (any chunking, size not
/// known in advance), then [`finish`](Self::finish).
///
/// Nothing is sent until more than [`LiteralCap::MAX_LEN`] bytes arrive (smaller files become
/// literal caps). Then every server in the key's permuted order is asked at once for its
/// version and free space, shares are placed ([`crate::placement::place`]), and each
/// completed segment is encoded while the previous segments' writes are in flight (at most
/// `pipeline_depth` segments' worth; with a [`crate::ClientConfig::spawner`] the encoding runs
/// on the executor). Writes to one share are merged up to `write_chunk` bytes and go through
/// an upload session (allocate, writes, finish); a share of which nothing was sent before the
/// end and that fits in one request is sent whole instead (`put_share`), so a small file
/// costs one request per server, all servers in parallel.
pub struct Upload {
    client: Client,
    opts: UploadOptions,
    key: Option<ReadKey>,
    literal: Vec<u8>,
    active: Option<Active>,
    done: bool,
}

impl Client {
    /// Starts an upload (nothing is sent yet).
    pub fn upload(&self, opts: UploadOptions) -> Upload {
        Upload {
            client: self.clone(),
            key: opts.key.clone(),
            opts,
            literal: Vec::new(),
            active: None,
            done: false,
        }
    }

    /// Uploads a file held in memory. With [`UploadOptions::convergence`] the key is derived
    /// from the content and the storage index is computed first (one extra encoding pass), so
    /// shares already on the grid are not uploaded again.
    pub async fn upload_bytes(
        &self,
        data: &[u8],
        mut opts: UploadOptions,
    ) -> Result<UploadResult, Error> {
        if let Some(secret) = opts.convergence.take() {
            if data.len() > LiteralCap::MAX_LEN {
                let params = self.config.params;
                let key = convergent_key(&secret, &params, data)?;
                opts.known_storage_index = Some(storage_index_of(params, key.clone(), data)?);
                opts.key = Some(key);
            }
        }
        let mut up = self.upload(opts);
        up.write(data).await?;
        up.finish().await
    }
}

/// Encodes `data` without keeping any share, to learn its storage index.
fn storage_index_of(params: Params, key: ReadKey, data: &[u8]) -> Result<StorageIndex, Error> {
    let mut enc = Encoder::new(params, key)?;
    for chunk in data.chunks(params.segment_size() as usize) {
        enc.push(chunk)?;
        while enc.poll_write().is_some() {}
    }
    let done = enc.finish()?;
    Ok(done.storage_index)
}

fn random_upload_id() -> Result<UploadId, Error> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|_| Error::Random)?;
    Ok(UploadId(id))
}

impl Upload {
    /// Feeds the next bytes of the file: complete segments are encoded and their writes sent;
    /// returns once at most `pipeline_depth` segments' writes are in flight.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.done {
            return Err(Error::InvalidState("write after finish"));
        }
        if self.active.is_none() {
            if self.literal.len() + data.len() <= LiteralCap::MAX_LEN
                && self.opts.ciphertext.is_none()
            {
                self.literal.extend_from_slice(data);
                return Ok(());
            }
            let first = core::mem::take(&mut self.literal);
            if let Err(e) = self.start().await {
                self.done = true;
                return Err(e);
            }
            if let Err(e) = self.push(&first).await {
                return Err(self.fail(e).await);
            }
        }
        match self.push(data).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// Ends the file: encodes the last segment, writes the trailers, waits for every write,
    /// finishes every share (the servers verify them) and checks happiness.
    pub async fn finish(&mut self) -> Result<UploadResult, Error> {
        if self.done {
            return Err(Error::InvalidState("finish called twice"));
        }
        if self.active.is_none() && self.opts.ciphertext.is_some() {
            // Ciphertext is never a literal cap, however short.
            let first = core::mem::take(&mut self.literal);
            if let Err(e) = self.start().await {
                self.done = true;
                return Err(e);
            }
            if let Err(e) = self.push(&first).await {
                return Err(self.fail(e).await);
            }
        }
        if self.active.is_none() {
            self.done = true;
            let data = core::mem::take(&mut self.literal);
            let size = data.len() as u64;
            let cap = LiteralCap::new(data)?;
            if let Some(p) = &self.opts.progress {
                p.progress(size, size);
            }
            return Ok(UploadResult {
                cap: Cap::Literal(cap),
                verify_cap: None,
                size,
                shares: BTreeMap::new(),
                uploaded: 0,
                existing: 0,
                happiness: 0,
                lost: Vec::new(),
                failed_servers: Vec::new(),
            });
        }
        let r = self.finish_inner().await;
        self.done = true;
        match r {
            Ok(r) => Ok(r),
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// Aborts every allocation (best effort) and returns `e`.
    async fn fail(&mut self, e: Error) -> Error {
        self.done = true;
        if let Some(a) = self.active.take() {
            let t = &self.client.transport;
            join_all(
                a.allocations
                    .iter()
                    .filter(|(s, _)| !a.dead.contains(s))
                    .map(|(s, id)| t.abort(*s, *id)),
            )
            .await;
        }
        e
    }

    fn happy(&self) -> usize {
        usize::from(self.client.config.happy)
    }

    /// Server selection and placement.
    async fn start(&mut self) -> Result<(), Error> {
        let cfg = &self.client.config;
        let params = cfg.params;
        if cfg.happy == 0 || cfg.happy > params.n() || cfg.happy < params.k() {
            return Err(Error::BadParams("need k <= happy <= N"));
        }
        let (selection, encoder) = match self.opts.ciphertext {
            Some(sel) => (sel, Encoder::for_ciphertext(params, sel)?),
            None => {
                let key = match self.key.clone() {
                    Some(k) => k,
                    None => {
                        let k = random_key()?;
                        self.key = Some(k.clone());
                        k
                    }
                };
                (selection_index_for(&key), Encoder::new(params, key)?)
            }
        };
        let t = &self.client.transport;
        let servers = permuted_servers(&selection, &t.servers());
        if servers.is_empty() {
            return Err(Error::NoServers);
        }
        let known = self.opts.known_storage_index;
        let answers = join_all(servers.iter().map(|&s| async move {
            let has = async {
                match known {
                    Some(si) => t.list_shares(s, si).await.ok(),
                    None => Some(Vec::new()),
                }
            };
            let (v, has) = join(t.version(s), has).await;
            (s, v, has)
        }))
        .await;
        let mut states = Vec::new();
        let mut max_write = cfg.write_chunk.max(1);
        for (id, v, has) in answers {
            let Ok(v) = v else { continue };
            let writable = v.accepts_immutable && !v.read_only && v.capacity.available_bytes > 0;
            if writable {
                let limit = usize::try_from(v.limits.max_request_body).unwrap_or(usize::MAX);
                max_write = max_write.min(limit.max(1));
            }
            states.push(ServerState {
                id,
                has: has
                    .unwrap_or_default()
                    .iter()
                    .map(|s| u16::from(s.share.0))
                    .collect(),
                writable,
            });
        }
        let reachable = states.len();
        let accepting = states.iter().filter(|s| s.writable).count();
        let placement = place(params.n(), self.happy(), &states).map_err(|e| match e {
            Error::NotHappy {
                achieved, needed, ..
            } => Error::NotHappy {
                queried: servers.len(),
                reachable,
                accepting,
                achieved,
                needed,
            },
            e => e,
        })?;
        let used: BTreeSet<ServerId> = placement.uploads.values().copied().collect();
        let writable: Vec<ServerId> = states.iter().filter(|s| s.writable).map(|s| s.id).collect();
        let spare = writable
            .iter()
            .copied()
            .filter(|s| !used.contains(s) && !placement.existing.values().any(|e| e == s))
            .collect();
        let slots = placement
            .uploads
            .iter()
            .map(|(&share, &server)| {
                (
                    share,
                    Slot {
                        server,
                        upload: None,
                        flushed: 0,
                        filed: false,
                    },
                )
            })
            .collect();
        let seg_bytes =
            u64::from(params.segment_size()) * u64::from(params.n()) / u64::from(params.k());
        self.active = Some(Active {
            segment_encoder: encoder.segment_encoder(),
            encoder,
            segment_buf: Vec::new(),
            next_segment: 0,
            encoding: VecDeque::new(),
            pushed: 0,
            queried: servers.len(),
            reachable,
            accepting,
            slots,
            existing: placement.existing,
            spare,
            writable,
            dead: BTreeSet::new(),
            pending: BTreeMap::new(),
            inflight: FuturesUnordered::new(),
            inflight_bytes: 0,
            // Enough for `pipeline_depth` segments, and for every share's merged write of
            // that many chunks, so encoding never waits on a single round of writes.
            max_inflight: seg_bytes
                .max(cfg.write_chunk as u64 * u64::from(params.n()))
                .saturating_mul(cfg.pipeline_depth.max(1) as u64),
            max_write,
            produced: 0,
            acked: 0,
            lost: Vec::new(),
            allocations: Vec::new(),
            share_lens: None,
            sent: 0,
        });
        Ok(())
    }

    fn active(&mut self) -> Result<&mut Active, Error> {
        self.active
            .as_mut()
            .ok_or(Error::InvalidState("upload not started"))
    }

    /// Encodes `data` segment by segment, sending writes as they fill up.
    ///
    /// With a [`crate::ClientConfig::spawner`], each completed segment is encoded (AES,
    /// Reed-Solomon, hashing: [`SegmentEncoder`]) on the executor, up to [`ENCODE_AHEAD`]
    /// segments at once, while this task sends the earlier segments' writes and the caller
    /// produces the next chunk; the encoded segments are absorbed in order.
    async fn push(&mut self, data: &[u8]) -> Result<(), Error> {
        let seg = self.client.config.params.segment_size() as usize;
        let Some(spawner) = self.client.config.spawner.clone() else {
            for chunk in data.chunks(seg.max(1)) {
                let a = self.active()?;
                a.pushed += chunk.len() as u64;
                a.encoder.push(chunk)?;
                self.pump(false).await?;
            }
            return Ok(());
        };
        let mut data = data;
        while !data.is_empty() {
            let a = self.active()?;
            if a.segment_buf.capacity() == 0 {
                a.segment_buf.reserve_exact(seg);
            }
            let take = (seg - a.segment_buf.len()).min(data.len());
            a.segment_buf.extend_from_slice(&data[..take]);
            a.pushed += take as u64;
            data = &data[take..];
            if a.segment_buf.len() >= seg {
                self.spawn_segment(&spawner).await?;
            }
        }
        Ok(())
    }

    /// Encodes the buffered segment on the spawner (first waiting for the oldest one if
    /// [`ENCODE_AHEAD`] are already being encoded), absorbs the segments already done and
    /// sends their writes.
    async fn spawn_segment(&mut self, spawner: &Spawner) -> Result<(), Error> {
        while self.active()?.encoding.len() >= ENCODE_AHEAD {
            self.settle_one().await?;
        }
        let a = self.active()?;
        let data = core::mem::take(&mut a.segment_buf);
        let index = a.next_segment;
        a.next_segment += 1;
        let se = a.segment_encoder.clone();
        let (tx, rx) = futures::channel::oneshot::channel();
        spawner.0.spawn(boxed(async move {
            let _ = tx.send(se.encode(index, &data).map_err(Error::from));
        }));
        a.encoding.push_back(boxed(async move {
            rx.await.unwrap_or(Err(Error::InvalidState(
                "spawned segment encoding was dropped",
            )))
        }));
        // Absorb what is already encoded, in order, and send it.
        loop {
            let a = self.active()?;
            let Some(front) = a.encoding.front_mut() else {
                break;
            };
            let Some(r) = front.as_mut().now_or_never() else {
                break;
            };
            a.encoding.pop_front();
            a.encoder.absorb(r?)?;
        }
        self.pump(false).await
    }

    /// Waits for the oldest segment being encoded on the spawner and absorbs it.
    async fn settle_one(&mut self) -> Result<(), Error> {
        let a = self.active()?;
        let Some(fut) = a.encoding.pop_front() else {
            return Ok(());
        };
        let r = fut.await;
        a.encoder.absorb(r?)?;
        Ok(())
    }

    /// Encodes what is left of the input (with a spawner: the last, possibly short, segment)
    /// and absorbs every segment still being encoded.
    async fn settle_encoding(&mut self) -> Result<(), Error> {
        if let Some(sp) = self.client.config.spawner.clone() {
            if !self.active()?.segment_buf.is_empty() {
                self.spawn_segment(&sp).await?;
            }
        }
        while !self.active()?.encoding.is_empty() {
            self.settle_one().await?;
        }
        Ok(())
    }

    async fn finish_inner(&mut self) -> Result<UploadResult, Error> {
        self.settle_encoding().await?;
        let a = self.active()?;
        let encoded = a.encoder.finish()?;
        a.share_lens = Some(encoded.share_lens.clone());
        self.put_whole_shares(encoded.storage_index).await?;
        let mut idle = 0;
        loop {
            let before = self.active()?.sent;
            self.pump(true).await?;
            let a = self.active()?;
            if a.sent != before {
                idle = 0;
            }
            if a.pending.is_empty() && a.inflight.is_empty() {
                break;
            }
            match a.inflight.next().await {
                Some(done) => self.completed(done).await?,
                // Data waits but nothing was sent: a failure just moved a share (the next
                // pump allocates and sends it), or no server takes the allocation at all.
                None => {
                    idle += 1;
                    if idle > 1 {
                        return Err(Error::InvalidState(
                            "shares could not be allocated anywhere",
                        ));
                    }
                }
            }
        }
        self.finish_shares(&encoded).await?;
        let a = self.active()?;
        let mut holdings: Vec<(ServerId, u16)> =
            a.slots.iter().map(|(sh, s)| (s.server, *sh)).collect();
        holdings.extend(a.existing.iter().map(|(sh, s)| (*s, *sh)));
        let happiness = happiness(&holdings);
        let size = encoded.ueb.file_size;
        if let Some(p) = &self.opts.progress {
            p.progress(size, size);
        }
        let a = self.active()?;
        let mut shares: BTreeMap<u16, ServerId> =
            a.slots.iter().map(|(sh, s)| (*sh, s.server)).collect();
        shares.extend(a.existing.iter().map(|(sh, s)| (*sh, *s)));
        let ciphertext = self.opts.ciphertext.is_some();
        let a = self.active()?;
        let cap = match (&encoded.read_cap, ciphertext) {
            (Some(rc), false) => Cap::ImmutableRead(rc.clone()),
            (_, true) => Cap::ImmutableVerify(encoded.verify_cap),
            (None, false) => return Err(Error::InvalidState("encoder produced no readcap")),
        };
        Ok(UploadResult {
            cap,
            verify_cap: Some(encoded.verify_cap),
            size,
            shares,
            uploaded: a.slots.len(),
            existing: a.existing.len(),
            happiness,
            lost: a.lost.clone(),
            failed_servers: a.dead.iter().copied().collect(),
        })
    }

    /// Finishes every share in parallel; shares whose server fails are lost.
    async fn finish_shares(&mut self, encoded: &Encoded) -> Result<(), Error> {
        let t = Arc::clone(&self.client.transport);
        let a = self.active()?;
        let si = encoded.storage_index;
        let jobs: Vec<(u16, ServerId, Option<UploadId>)> = a
            .slots
            .iter()
            .filter(|(_, s)| !s.filed)
            .map(|(sh, s)| (*sh, s.server, s.upload))
            .collect();
        let results = join_all(jobs.into_iter().map(|(share, server, upload)| {
            let t = &t;
            let length = encoded
                .share_lens
                .get(usize::from(share))
                .copied()
                .unwrap_or(0);
            async move {
                let Some(upload) = upload else {
                    return (share, server, Err(None));
                };
                let req = FinishRequest {
                    length,
                    expected_si: Some(si),
                };
                let r = t.finish(server, upload, wire_share(share), req).await;
                (share, server, r.map_err(Some))
            }
        }))
        .await;
        for (share, server, r) in results {
            match r {
                Ok(_) => {}
                Err(e) => {
                    if e.as_ref().is_some_and(TransportError::is_down) {
                        a.dead.insert(server);
                    }
                    a.slots.remove(&share);
                    a.lost.push((share, server));
                }
            }
        }
        self.check_happy()
    }

    /// Sends every share that nothing was written of yet and that fits in one request as one
    /// whole-share request (`put_share`: allocate, write, verify and file in one step), all
    /// servers in parallel. A small file thus costs one request per server. A server that does
    /// not know the request gets the share the usual way (allocate, write, finish); one that
    /// fails loses the share to a spare server, like a failed write.
    async fn put_whole_shares(&mut self, si: StorageIndex) -> Result<(), Error> {
        let t = Arc::clone(&self.client.transport);
        let a = self.active()?;
        while let Some(w) = a.encoder.poll_write() {
            a.stage(w);
        }
        let lens = a.share_lens.clone().unwrap_or_default();
        let whole: Vec<u16> = a
            .slots
            .iter()
            .filter(|(share, slot)| {
                let want = lens.get(usize::from(**share)).copied();
                slot.upload.is_none()
                    && slot.flushed == 0
                    && !slot.filed
                    && matches!(
                        a.pending.get(share).map(Vec::as_slice),
                        Some([run]) if run.offset == 0
                            && Some(run.len() as u64) == want
                            && run.len() <= a.max_write
                    )
            })
            .map(|(share, _)| *share)
            .collect();
        let mut reqs = Vec::new();
        for share in whole {
            let (Some(slot), Some(mut runs)) = (a.slots.get_mut(&share), a.pending.remove(&share))
            else {
                continue;
            };
            let Some(run) = runs.pop() else { continue };
            let data = run.into_payload();
            slot.flushed = data.len() as u64;
            a.sent += 1;
            reqs.push((share, slot.server, data));
        }
        if reqs.is_empty() {
            return Ok(());
        }
        let results = join_all(reqs.into_iter().map(|(share, server, data)| {
            let t = &t;
            async move {
                let r = t
                    .put_share(server, si, wire_share(share), data.clone())
                    .await;
                (share, server, data, r)
            }
        }))
        .await;
        for (share, server, data, r) in results {
            let a = self.active()?;
            match r {
                Ok(resp) => {
                    a.acked += data.len() as u64;
                    if resp.already_had {
                        a.slots.remove(&share);
                        a.existing.insert(share, server);
                    } else if let Some(slot) = a.slots.get_mut(&share) {
                        slot.filed = true;
                    }
                }
                Err(e) if e.is_unsupported() => {
                    if let Some(slot) = a.slots.get_mut(&share) {
                        slot.flushed = 0;
                    }
                    a.produced = a.produced.saturating_sub(data.len() as u64);
                    a.restage(share, data);
                }
                Err(_) => self.server_failed(server, Some((share, 0, data)))?,
            }
        }
        Ok(())
    }

    /// Fails if the shares still placed can no longer reach the happiness threshold.
    fn check_happy(&mut self) -> Result<(), Error> {
        let happy = self.happy();
        let a = self.active()?;
        let mut holdings: Vec<(ServerId, u16)> =
            a.slots.iter().map(|(sh, s)| (s.server, *sh)).collect();
        holdings.extend(a.existing.iter().map(|(sh, s)| (*s, *sh)));
        let achieved = happiness(&holdings);
        if achieved < happy {
            return Err(Error::NotHappy {
                queried: a.queried,
                reachable: a.reachable.saturating_sub(a.dead.len()),
                accepting: a.accepting.saturating_sub(a.dead.len()),
                achieved,
                needed: happy,
            });
        }
        Ok(())
    }

    /// Moves encoder output into the per-share buffers, sends full buffers (all of them when
    /// `last`), handles finished writes, and waits while too much is in flight.
    async fn pump(&mut self, last: bool) -> Result<(), Error> {
        let chunk = self.client.config.write_chunk.max(1);
        {
            let a = self.active()?;
            while let Some(w) = a.encoder.poll_write() {
                a.stage(w);
            }
        }
        let ready: Vec<u16> = self
            .active()?
            .pending
            .iter()
            .filter(|(_, runs)| {
                last || runs.len() > 1 || runs.first().is_some_and(|r| r.len() >= chunk)
            })
            .map(|(s, _)| *s)
            .collect();
        if !ready.is_empty() {
            self.allocate().await?;
            let t = Arc::clone(&self.client.transport);
            let a = self.active()?;
            for share in ready {
                a.flush(&t, share, last, chunk);
            }
        }
        // Handle what has completed, then keep at most the pipeline's worth in flight.
        loop {
            let a = self.active()?;
            let done = if a.inflight_bytes > a.max_inflight {
                a.inflight.next().await
            } else {
                match a.inflight.next().now_or_never() {
                    Some(d) => d,
                    None => break,
                }
            };
            match done {
                Some(d) => self.completed(d).await?,
                None => break,
            }
        }
        self.report();
        Ok(())
    }

    fn report(&self) {
        if let (Some(p), Some(a)) = (&self.opts.progress, &self.active) {
            let encoded = a.pushed;
            let acked = if a.produced == 0 {
                0
            } else {
                (u128::from(a.acked) * u128::from(encoded) / u128::from(a.produced)) as u64
            };
            p.progress(encoded, acked.min(encoded));
        }
    }

    /// Handles one finished write: counts it, or deals with its server's failure.
    async fn completed(&mut self, d: WriteDone) -> Result<(), Error> {
        let a = self.active()?;
        a.inflight_bytes = a.inflight_bytes.saturating_sub(d.data.len() as u64);
        let current = a.slots.get(&d.share).is_some_and(|s| s.server == d.server);
        match d.result {
            Ok(_) if current => a.acked += d.data.len() as u64,
            Ok(_) => {}
            Err(_) if !current => {}
            Err(_) => {
                self.server_failed(d.server, Some((d.share, d.offset, d.data)))?;
            }
        }
        Ok(())
    }

    /// `server` failed: its shares that have nothing on it yet (or whose only write is the
    /// one that failed, given back in `failed`) move to a spare server; the others are lost.
    fn server_failed(
        &mut self,
        server: ServerId,
        failed: Option<(u16, u64, Payload)>,
    ) -> Result<(), Error> {
        let a = self.active()?;
        a.dead.insert(server);
        // Shares already filed there stay: they are stored and verified.
        let shares: Vec<u16> = a
            .slots
            .iter()
            .filter(|(_, s)| s.server == server && !s.filed)
            .map(|(sh, _)| *sh)
            .collect();
        for share in shares {
            let Some(slot) = a.slots.get(&share).cloned() else {
                continue;
            };
            let resend = match &failed {
                Some((s, 0, data)) if *s == share && slot.flushed == data.len() as u64 => {
                    Some(data.clone())
                }
                _ => None,
            };
            if slot.flushed == 0 || resend.is_some() {
                if let Some(target) = a.next_spare() {
                    a.slots.insert(
                        share,
                        Slot {
                            server: target,
                            upload: None,
                            flushed: 0,
                            filed: false,
                        },
                    );
                    if let Some(data) = resend {
                        a.produced = a.produced.saturating_sub(data.len() as u64);
                        a.restage(share, data);
                    }
                    continue;
                }
            }
            a.slots.remove(&share);
            a.pending.remove(&share);
            a.lost.push((share, server));
        }
        self.check_happy()
    }

    /// Allocates every slot that has no allocation yet: one request per server, all servers
    /// in parallel. A server that refuses or fails loses its shares to spare servers.
    async fn allocate(&mut self) -> Result<(), Error> {
        let t = Arc::clone(&self.client.transport);
        let known = self.opts.known_storage_index;
        // Each round either allocates or marks a server dead, so this ends.
        for _ in 0..=self.active()?.writable.len() + 1 {
            let a = self.active()?;
            let share_lens = a.share_lens.clone();
            let mut wanted: BTreeMap<ServerId, Vec<u16>> = BTreeMap::new();
            for (share, slot) in &a.slots {
                if slot.upload.is_none() && !slot.filed {
                    wanted.entry(slot.server).or_default().push(*share);
                }
            }
            if wanted.is_empty() {
                return Ok(());
            }
            let mut reqs = Vec::new();
            for (server, shares) in wanted {
                let share_size = share_lens.as_ref().map(|lens| {
                    shares
                        .iter()
                        .filter_map(|s| lens.get(usize::from(*s)).copied())
                        .max()
                        .unwrap_or(0)
                });
                reqs.push((server, random_upload_id()?, shares, share_size));
            }
            let results = join_all(reqs.into_iter().map(|(server, id, shares, share_size)| {
                let t = &t;
                async move {
                    let req = AllocateRequest {
                        shares: shares.iter().map(|s| wire_share(*s)).collect(),
                        share_size,
                        expected_si: known,
                    };
                    let r = t.allocate(server, id, req).await;
                    (server, id, shares, r)
                }
            }))
            .await;
            for (server, id, shares, r) in results {
                match r {
                    Ok(resp) => {
                        let a = self.active()?;
                        a.allocations.push((server, id));
                        for share in shares {
                            let w = wire_share(share);
                            if resp.already_have.contains(&w) && !resp.allocated.contains(&w) {
                                a.slots.remove(&share);
                                a.pending.remove(&share);
                                a.existing.insert(share, server);
                            } else if let Some(slot) = a.slots.get_mut(&share) {
                                slot.upload = Some(id);
                            }
                        }
                    }
                    Err(_) => self.server_failed(server, None)?,
                }
            }
        }
        Ok(())
    }
}

/// Blocks at least this long join a run as they are (shared, never copied); shorter writes
/// (headers, hashes, the blocks of small files) are gathered into one buffer.
const LARGE_BLOCK: usize = 64 * 1024;

/// A contiguous run of one share's bytes, not yet sent: large blocks as they came from the
/// encoder, then the small writes that followed them gathered in `tail`.
struct Run {
    /// Offset of the first byte in the share.
    offset: u64,
    /// The run's bytes before `tail`.
    data: Payload,
    /// Small writes after `data`, copied together.
    tail: Vec<u8>,
}

impl Run {
    fn new(offset: u64, data: Payload) -> Self {
        Self {
            offset,
            data,
            tail: Vec::new(),
        }
    }

    /// Bytes in the run.
    fn len(&self) -> usize {
        self.data.len() + self.tail.len()
    }

    /// Offset just past the run.
    fn end(&self) -> u64 {
        self.offset + self.len() as u64
    }

    /// Appends one encoder write: a large block is kept as it is, a small one copied into the
    /// tail (or becomes the tail, when the tail is empty).
    fn push(&mut self, bytes: Vec<u8>) {
        if bytes.len() >= LARGE_BLOCK {
            self.freeze();
            self.data.push(Bytes::from(bytes));
        } else if self.tail.is_empty() {
            self.tail = bytes;
        } else {
            self.tail.extend_from_slice(&bytes);
        }
    }

    /// Moves the tail into `data`.
    fn freeze(&mut self) {
        if !self.tail.is_empty() {
            self.data.push(Bytes::from(std::mem::take(&mut self.tail)));
        }
    }

    /// The run's bytes, in order.
    fn into_payload(mut self) -> Payload {
        self.freeze();
        self.data
    }
}

impl Active {
    /// Queues one encoder write for its share, merged with the previous run when contiguous.
    fn stage(&mut self, w: ShareWrite) {
        if !self.slots.contains_key(&w.share) {
            return; // already on the grid, lost, or unplaced
        }
        self.produced += w.data.len() as u64;
        let runs = self.pending.entry(w.share).or_default();
        match runs.last_mut() {
            Some(run) if run.end() == w.offset => run.push(w.data),
            _ => {
                let mut run = Run::new(w.offset, Payload::new());
                run.push(w.data);
                runs.push(run);
            }
        }
    }

    /// Queues again the first `data.len()` bytes of `share`, sent before to a server that
    /// failed or did not take them whole.
    fn restage(&mut self, share: u16, data: Payload) {
        if !self.slots.contains_key(&share) {
            return;
        }
        self.produced += data.len() as u64;
        self.pending
            .entry(share)
            .or_default()
            .insert(0, Run::new(0, data));
    }

    /// Sends the share's complete runs (and the last, partial one too when `all`).
    fn flush(&mut self, t: &Arc<dyn crate::Transport>, share: u16, all: bool, chunk: usize) {
        let Some(slot) = self.slots.get_mut(&share) else {
            self.pending.remove(&share);
            return;
        };
        let Some(upload) = slot.upload else { return };
        let Some(mut runs) = self.pending.remove(&share) else {
            return;
        };
        let keep = if !all && runs.last().is_some_and(|r| r.len() < chunk) {
            runs.pop()
        } else {
            None
        };
        for run in runs {
            let offset = run.offset;
            let mut data = run.into_payload();
            let mut start = 0usize;
            while !data.is_empty() {
                let piece = data.split_to(self.max_write);
                let off = offset + start as u64;
                start += piece.len();
                slot.flushed += piece.len() as u64;
                self.inflight_bytes += piece.len() as u64;
                self.sent += 1;
                let t = Arc::clone(t);
                let server = slot.server;
                self.inflight.push(boxed(async move {
                    let result = t
                        .write(server, upload, wire_share(share), off, piece.clone())
                        .await;
                    WriteDone {
                        server,
                        share,
                        offset: off,
                        data: piece,
                        result,
                    }
                }));
            }
        }
        if let Some(run) = keep {
            self.pending.insert(share, vec![run]);
        }
    }

    /// A server to take a share whose server failed: an unused one first, else the live
    /// writable server holding the fewest shares of this upload.
    fn next_spare(&mut self) -> Option<ServerId> {
        while let Some(s) = self.spare.pop_front() {
            if !self.dead.contains(&s) {
                return Some(s);
            }
        }
        let mut load: BTreeMap<ServerId, usize> = self
            .writable
            .iter()
            .filter(|s| !self.dead.contains(s))
            .map(|s| (*s, 0))
            .collect();
        for slot in self.slots.values() {
            if let Some(n) = load.get_mut(&slot.server) {
                *n += 1;
            }
        }
        self.writable
            .iter()
            .filter_map(|s| load.get(s).map(|n| (*n, *s)))
            .min_by_key(|(n, _)| *n)
            .map(|(_, s)| s)
    }
}
