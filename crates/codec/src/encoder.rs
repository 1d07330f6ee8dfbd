//! The streaming encoder: plaintext (or ciphertext) in, share writes out.

use std::collections::VecDeque;
use std::sync::Arc;

use lafs_caps::{
    selection_index_for, ImmutableReadCap, ImmutableVerifyCap, ReadKey, SelectionIndex,
    StorageIndex,
};
use lafs_hashtree::{tagged_hash, Hash, HashTree};

use crate::crypto::Keystream;
use crate::erasure::Coder;
use crate::format::{encode_header, segment_leaf_unchecked, segment_range, BLOCK_TAG, HEADER_LEN};
use crate::{Error, Params, ShareLayout, Ueb, MAX_SEGMENTS};

/// One write to a share: put `data` at byte `offset` of share `share`.
///
/// Writes of one share never overlap and together cover the share exactly once. They come in
/// increasing offset order per share, except that the header (offset 0) may come after nothing
/// else and the trailer comes last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareWrite {
    /// Share number (0..N).
    pub share: u16,
    /// Byte offset inside the share.
    pub offset: u64,
    /// The bytes.
    pub data: Vec<u8>,
}

/// What an upload produced, returned by [`Encoder::finish`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// The UEB (also the last bytes of every share).
    pub ueb: Ueb,
    /// The storage index (hash of the UEB).
    pub storage_index: StorageIndex,
    /// The readcap, when the encoder was given the key (`None` for [`Encoder::for_ciphertext`]).
    pub read_cap: Option<ImmutableReadCap>,
    /// The verifycap.
    pub verify_cap: ImmutableVerifyCap,
    /// Total length of each share, indexed by share number.
    pub share_lens: Vec<u64>,
}

/// The per-segment half of encoding, detached from the [`Encoder`] so that several segments can
/// be encoded at once (on different threads): AES-CTR, Reed-Solomon, the N block hashes
/// and the ciphertext-tree leaf (from the k data-block hashes). Segments depend only on their index and plaintext, so
/// encoding them in any order, on any thread, and giving the results to
/// [`Encoder::absorb`] in index order yields exactly the shares of [`Encoder::push`].
///
/// Cheap to clone (the Reed-Solomon tables are shared).
#[derive(Clone)]
pub struct SegmentEncoder {
    params: Params,
    coder: Arc<Coder>,
    /// The file key (`None` for ciphertext input).
    key: Option<ReadKey>,
}

/// One segment encoded by [`SegmentEncoder::encode`]: its N blocks and hashes, to be given to
/// [`Encoder::absorb`] in index order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedSegment {
    index: u64,
    len: u64,
    ciphertext_leaf: Hash,
    blocks: Vec<Vec<u8>>,
    block_hashes: Vec<Hash>,
}

impl EncodedSegment {
    /// The segment's index in the file.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Plaintext bytes of the segment (the segment size, except for the file's last segment).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Always false: a segment has at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl SegmentEncoder {
    /// Encodes segment `index` of the file, whose plaintext (or ciphertext, for an encoder made
    /// by [`Encoder::for_ciphertext`]) is `data`: between 1 byte and the segment size; only the
    /// file's last segment may be shorter than the segment size.
    pub fn encode(&self, index: u64, data: &[u8]) -> Result<EncodedSegment, Error> {
        self.encode_inner(index, data, false)
    }

    fn encode_inner(&self, index: u64, seg: &[u8], tamper: bool) -> Result<EncodedSegment, Error> {
        if index >= MAX_SEGMENTS {
            return Err(Error::FileTooLarge {
                max_segments: MAX_SEGMENTS,
            });
        }
        let seg_size = u64::from(self.params.segment_size());
        if seg.is_empty() || seg.len() as u64 > seg_size {
            return Err(Error::InvalidState(
                "a segment must hold between 1 byte and the segment size",
            ));
        }
        let k = usize::from(self.params.k());
        let n = usize::from(self.params.n());
        let len = seg.len();
        let b = len.div_ceil(k);
        let mut keystream = match &self.key {
            Some(key) => {
                let mut ks = Keystream::new(key);
                ks.seek(index * seg_size)?;
                Some(ks)
            }
            None => None,
        };
        // Data blocks are copies of the input (the last one zero-padded); parity blocks start
        // zeroed and are overwritten by the coder.
        let mut shards: Vec<Vec<u8>> = Vec::with_capacity(n);
        for i in 0..k {
            let start = (i * b).min(len);
            let end = (start + b).min(len);
            let mut shard = Vec::with_capacity(b);
            shard.extend_from_slice(&seg[start..end]);
            if let Some(ks) = &mut keystream {
                ks.apply(&mut shard)?;
            }
            shard.resize(b, 0);
            shards.push(shard);
        }
        shards.resize_with(n, || vec![0u8; b]);
        self.coder.encode(&mut shards)?;
        if tamper && n > k {
            shards[n - 1][0] ^= 1;
        }
        let block_hashes: Vec<Hash> = shards
            .iter()
            .map(|data| tagged_hash(BLOCK_TAG, &[data]))
            .collect();
        // The ciphertext-tree leaf covers the ciphertext through its k data blocks' hashes, just
        // computed for the block trees: the ciphertext is hashed once.
        let ciphertext_leaf = segment_leaf_unchecked(len as u64, &block_hashes[..k]);
        Ok(EncodedSegment {
            index,
            len: len as u64,
            ciphertext_leaf,
            blocks: shards,
            block_hashes,
        })
    }
}

struct Finished {
    encoded: Encoded,
    ciphertext_tree: HashTree,
    share_tree: HashTree,
    block_roots: Vec<Hash>,
    next_trailer: u16,
}

/// Streaming, sans-IO encoder of one immutable file.
///
/// Feed the file with [`push`](Self::push) (any chunking; the size need not be known), drain
/// [`poll_write`](Self::poll_write) after each call, then call [`finish`](Self::finish) and
/// drain `poll_write` again for the last blocks and the trailers.
///
/// Memory: one segment of input plus the N blocks of the segment being emitted
/// (O(segment size × N / k)), plus 32 bytes per segment per share (block-tree leaves) and 32
/// bytes per segment (ciphertext-tree leaves) until the trailers are emitted. Writes queue up
/// until polled: push at most one segment at a time to keep the queue to one segment.
pub struct Encoder {
    params: Params,
    segment_encoder: SegmentEncoder,
    key: Option<ReadKey>,
    selection_index: SelectionIndex,
    buf: Vec<u8>,
    bytes_in: u64,
    segments: u64,
    block_leaves: Vec<Vec<Hash>>,
    ciphertext_leaves: Vec<Hash>,
    queue: VecDeque<ShareWrite>,
    headers_sent: bool,
    finished: Option<Finished>,
    /// Test hook: flip a parity byte (an uploader that encodes inconsistent shares).
    #[cfg(test)]
    pub(crate) tamper_parity: bool,
}

impl Encoder {
    /// Encoder that encrypts plaintext with `key` (random: [`crate::random_key`]; convergent:
    /// [`crate::ConvergentKeyHasher`]).
    pub fn new(params: Params, key: ReadKey) -> Result<Self, Error> {
        let selection_index = selection_index_for(&key);
        let mut e = Self::build(params, selection_index)?;
        e.segment_encoder.key = Some(key.clone());
        e.key = Some(key);
        Ok(e)
    }

    /// Encoder whose input is already ciphertext (encrypted elsewhere, e.g. with WebCrypto,
    /// with the same AES-128-CTR rule as [`crate::encrypt_at`]). The result has a verifycap
    /// only; the caller builds the readcap from its key and the storage index.
    pub fn for_ciphertext(params: Params, selection_index: SelectionIndex) -> Result<Self, Error> {
        Self::build(params, selection_index)
    }

    fn build(params: Params, selection_index: SelectionIndex) -> Result<Self, Error> {
        let n = usize::from(params.n());
        Ok(Self {
            params,
            segment_encoder: SegmentEncoder {
                params,
                coder: Arc::new(Coder::new(&params)?),
                key: None,
            },
            key: None,
            selection_index,
            buf: Vec::new(),
            bytes_in: 0,
            segments: 0,
            block_leaves: vec![Vec::new(); n],
            ciphertext_leaves: Vec::new(),
            queue: VecDeque::new(),
            headers_sent: false,
            finished: None,
            #[cfg(test)]
            tamper_parity: false,
        })
    }

    /// The parameters.
    pub fn params(&self) -> Params {
        self.params
    }

    /// Bytes pushed so far.
    pub fn bytes_pushed(&self) -> u64 {
        self.bytes_in
    }

    /// Feeds the next bytes of the file. Each completed segment is encoded at once and its
    /// block writes are queued for [`poll_write`](Self::poll_write); at most one partial
    /// segment is buffered.
    pub fn push(&mut self, mut data: &[u8]) -> Result<(), Error> {
        if self.finished.is_some() {
            return Err(Error::InvalidState("push after finish"));
        }
        let seg = self.params.segment_size() as usize;
        while !data.is_empty() {
            if self.buf.is_empty() && data.len() >= seg {
                let (now, rest) = data.split_at(seg);
                self.encode_segment(now)?;
                data = rest;
                continue;
            }
            let take = (seg - self.buf.len()).min(data.len());
            if self.buf.capacity() == 0 {
                self.buf.reserve_exact(seg);
            }
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == seg {
                let buf = core::mem::take(&mut self.buf);
                self.encode_segment(&buf)?;
                self.buf = buf;
                self.buf.clear();
            }
        }
        Ok(())
    }

    /// The next share write, if any.
    pub fn poll_write(&mut self) -> Option<ShareWrite> {
        if let Some(w) = self.queue.pop_front() {
            return Some(w);
        }
        let fin = self.finished.as_mut()?;
        if fin.next_trailer >= self.params.n() {
            return None;
        }
        let share = fin.next_trailer;
        fin.next_trailer += 1;
        let leaves = core::mem::take(&mut self.block_leaves[usize::from(share)]);
        Some(trailer_write(fin, share, &leaves))
    }

    /// Ends the input: encodes the last (short) segment, computes the trees, the UEB and the
    /// storage index. Afterwards [`poll_write`](Self::poll_write) yields the remaining blocks and
    /// then each share's trailer (one share at a time, so memory stays bounded).
    pub fn finish(&mut self) -> Result<Encoded, Error> {
        if let Some(f) = &self.finished {
            return Ok(f.encoded.clone());
        }
        if !self.buf.is_empty() {
            let buf = core::mem::take(&mut self.buf);
            self.encode_segment(&buf)?;
        }
        self.buf = Vec::new();
        self.send_headers();
        let block_roots: Vec<Hash> = self
            .block_leaves
            .iter()
            .map(|l| HashTree::from_leaves(l).root())
            .collect();
        let share_tree = HashTree::from_leaves(&block_roots);
        let ciphertext_tree = HashTree::from_leaves(&self.ciphertext_leaves);
        self.ciphertext_leaves = Vec::new();
        let ueb = Ueb {
            params: self.params,
            file_size: self.bytes_in,
            ciphertext_root: ciphertext_tree.root(),
            share_root: share_tree.root(),
        };
        let storage_index = ueb.storage_index();
        let share_lens = (0..self.params.n())
            .map(|i| ueb.layout(i).map(|l| l.share_len()))
            .collect::<Result<Vec<_>, _>>()?;
        let encoded = Encoded {
            ueb,
            storage_index,
            read_cap: self
                .key
                .clone()
                .map(|k| ImmutableReadCap::new(k, storage_index)),
            verify_cap: ImmutableVerifyCap::new(storage_index, self.selection_index),
            share_lens,
        };
        self.finished = Some(Finished {
            encoded: encoded.clone(),
            ciphertext_tree,
            share_tree,
            block_roots,
            next_trailer: 0,
        });
        Ok(encoded)
    }

    fn send_headers(&mut self) {
        if self.headers_sent {
            return;
        }
        self.headers_sent = true;
        for share in 0..self.params.n() {
            let data = encode_header(&self.params, share).to_vec();
            self.queue.push_back(ShareWrite {
                share,
                offset: 0,
                data,
            });
        }
    }

    /// Encrypts, hashes and erasure-codes one segment (1 ≤ len ≤ segment size).
    fn encode_segment(&mut self, seg: &[u8]) -> Result<(), Error> {
        if self.bytes_in != self.segments * u64::from(self.params.segment_size()) {
            return Err(Error::InvalidState(
                "a segment after the last (short) segment",
            ));
        }
        #[cfg(test)]
        let tamper = self.tamper_parity;
        #[cfg(not(test))]
        let tamper = false;
        let encoded = self
            .segment_encoder
            .encode_inner(self.segments, seg, tamper)?;
        self.absorb_segment(encoded);
        Ok(())
    }

    /// A detached encoder of single segments (see [`SegmentEncoder`]), for encoding several
    /// segments at once; give its results to [`absorb`](Self::absorb) in order.
    pub fn segment_encoder(&self) -> SegmentEncoder {
        self.segment_encoder.clone()
    }

    /// Takes the next segment, encoded by a [`SegmentEncoder`] of this encoder, and queues its
    /// block writes for [`poll_write`](Self::poll_write), exactly as [`push`](Self::push) would
    /// have. Segments must come in index order (the first one is 0), every one but the last
    /// full; do not mix with `push` (a partial segment pushed and not yet encoded is an error).
    pub fn absorb(&mut self, segment: EncodedSegment) -> Result<(), Error> {
        if self.finished.is_some() {
            return Err(Error::InvalidState("absorb after finish"));
        }
        if !self.buf.is_empty() {
            return Err(Error::InvalidState(
                "absorb while pushed bytes wait for a full segment",
            ));
        }
        if segment.index != self.segments {
            return Err(Error::SegmentOutOfOrder {
                expected: self.segments,
                got: segment.index,
            });
        }
        let seg_size = u64::from(self.params.segment_size());
        if self.bytes_in != self.segments * seg_size {
            return Err(Error::InvalidState(
                "a segment after the last (short) segment",
            ));
        }
        if segment.blocks.len() != usize::from(self.params.n())
            || segment.block_hashes.len() != segment.blocks.len()
            || segment.len == 0
            || segment.len > seg_size
        {
            return Err(Error::InvalidState("segment encoded with other parameters"));
        }
        self.absorb_segment(segment);
        Ok(())
    }

    /// Queues the writes of the next segment (index and sizes already checked).
    fn absorb_segment(&mut self, seg: EncodedSegment) {
        self.send_headers();
        self.ciphertext_leaves.push(seg.ciphertext_leaf);
        let offset = HEADER_LEN + self.segments * self.params.full_block_size();
        for (i, (data, hash)) in seg.blocks.into_iter().zip(seg.block_hashes).enumerate() {
            self.block_leaves[i].push(hash);
            // i < n ≤ 256, so it fits u16.
            let share = i as u16;
            self.queue.push_back(ShareWrite {
                share,
                offset,
                data,
            });
        }
        self.segments += 1;
        self.bytes_in += seg.len;
        debug_assert_eq!(
            segment_range(&self.params, self.bytes_in, self.segments - 1).map(|r| r.end),
            Some(self.bytes_in)
        );
    }
}

/// Block-tree nodes, ciphertext-tree nodes, chain and UEB of one share, as one write.
fn trailer_write(fin: &Finished, share: u16, leaves: &[Hash]) -> ShareWrite {
    let ueb = &fin.encoded.ueb;
    let block_tree = HashTree::from_leaves(leaves);
    let proof = fin
        .share_tree
        .proof(usize::from(share)..usize::from(share) + 1)
        .unwrap_or_default();
    let stored = block_tree.nodes().len() - 1;
    let mut data = Vec::with_capacity((2 * stored + 1 + proof.len()) * 32 + crate::UEB_LEN);
    for h in &block_tree.nodes()[1..] {
        data.extend_from_slice(h.as_bytes());
    }
    for h in &fin.ciphertext_tree.nodes()[1..] {
        data.extend_from_slice(h.as_bytes());
    }
    let root = fin
        .block_roots
        .get(usize::from(share))
        .copied()
        .unwrap_or_default();
    debug_assert_eq!(root, block_tree.root());
    data.extend_from_slice(root.as_bytes());
    for (_, h) in &proof {
        data.extend_from_slice(h.as_bytes());
    }
    data.extend_from_slice(&ueb.to_bytes());
    // The layout was computed successfully in `finish` for every share.
    let offset = ShareLayout::new(ueb.params, ueb.file_size, share)
        .map(|l| l.block_tree_range().start)
        .unwrap_or_default();
    ShareWrite {
        share,
        offset,
        data,
    }
}

/// Encodes a whole file in memory and returns each share's bytes plus the result. Convenient
/// for tests and small files; streaming callers use [`Encoder`].
pub fn encode_to_shares(
    params: Params,
    key: ReadKey,
    plaintext: &[u8],
) -> Result<(Vec<Vec<u8>>, Encoded), Error> {
    let mut enc = Encoder::new(params, key)?;
    let mut shares: Vec<Vec<u8>> = vec![Vec::new(); usize::from(params.n())];
    let mut apply = |w: ShareWrite| {
        let s = &mut shares[usize::from(w.share)];
        let end = w.offset as usize + w.data.len();
        if s.len() < end {
            s.resize(end, 0);
        }
        s[w.offset as usize..end].copy_from_slice(&w.data);
    };
    enc.push(plaintext)?;
    while let Some(w) = enc.poll_write() {
        apply(w);
    }
    let encoded = enc.finish()?;
    while let Some(w) = enc.poll_write() {
        apply(w);
    }
    Ok((shares, encoded))
}
