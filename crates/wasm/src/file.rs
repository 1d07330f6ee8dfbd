//! Reading and writing immutable files in the page: verification against the cap and AES-CTR,
//! with the network left to the caller (the web app fetches from a gateway's `/ciphertext`
//! endpoints, `docs/spec/gateway.md`).
//!
//! Only public data is meant to leave the tab: [`FileReader::verify_cap`] and
//! [`FileWriter::selection_index`]. The key stays inside these objects.

use std::collections::VecDeque;

use lafs_caps::{selection_index_for, ImmutableReadCap, ImmutableVerifyCap, ReadKey};
use lafs_codec::{decrypt_at, encrypt_at, random_key, segment_leaf_of_ciphertext, Ueb};
use lafs_hashtree::{Hash, NodeIndex, PartialTree};
use wasm_bindgen::prelude::wasm_bindgen;

use crate::checks::{index, leaves_from_block_digests, ueb_of, UebRefused};
use crate::{Error, LafsError};

/// Downloads one immutable file: checks the UEB against the readcap's storage index, each
/// segment against the UEB's ciphertext root (with proofs from the gateway), and decrypts.
///
/// Plaintext only comes out of [`FileReader::open_segments`], and only for segments whose
/// hashes verified: a tampered byte anywhere yields an error, never wrong content.
///
/// Memory does not grow with the number of segments read: after each verification the tree
/// keeps only the path of the last segment it verified (and that path's siblings, what the
/// next segment's proof shares with it), leaf hashes that came with a proof are kept until each
/// has verified its segment (at most [`MAX_PROVEN_LEAVES`] of them), and proofs without leaves
/// until [`MAX_HELD_PROOFS`] newer ones arrived. Reading a segment again after that (a seek
/// back) takes its proof again, as every read of the web app fetches.
#[wasm_bindgen]
pub struct FileReader {
    key: ReadKey,
    verify_cap: ImmutableVerifyCap,
    ueb: Option<Ueb>,
    tree: Option<PartialTree>,
    /// Leaf hashes that came with proofs, each run already verified against the root, oldest
    /// first.
    proven: VecDeque<ProvenLeaves>,
    /// Nodes of the latest proofs without leaves, oldest first: pruning the tree drops them
    /// (they are unproven until their segments arrive), so they are added again after it.
    proofs: VecDeque<Vec<(NodeIndex, Hash)>>,
}

/// Most leaf hashes from proofs a [`FileReader`] holds (512 KiB of hashes): four proofs of the
/// most segments a gateway answers at once (`docs/spec/gateway.md`). When more arrive the
/// oldest runs are forgotten, except the one just added.
pub const MAX_PROVEN_LEAVES: usize = 16_384;

/// Most proofs without leaves a [`FileReader`] holds before the verification of their segments;
/// the oldest is forgotten when another arrives.
pub const MAX_HELD_PROOFS: usize = 8;

/// What a successful check used: the proof leaves (run, position in it) and the last segment
/// verified in the tree.
type Checked = (Vec<(usize, usize)>, Option<usize>);

/// The leaf hashes of segments `first, first+1, …` from one proof, verified against the root
/// when added, and which of them have verified their segment.
#[derive(Debug)]
struct ProvenLeaves {
    first: u64,
    leaves: Vec<Hash>,
    used: Vec<bool>,
    unused: usize,
}

impl ProvenLeaves {
    fn get(&self, segment: u64) -> Option<(usize, Hash)> {
        let i = usize::try_from(segment.checked_sub(self.first)?).ok()?;
        self.leaves.get(i).map(|h| (i, *h))
    }
}

impl core::fmt::Debug for FileReader {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FileReader")
            .field("verify_cap", &self.verify_cap.to_string())
            .finish_non_exhaustive()
    }
}

#[wasm_bindgen]
impl FileReader {
    /// Starts reading the file of an immutable readcap (text form).
    #[wasm_bindgen(constructor)]
    pub fn new(read_cap: &str) -> Result<Self, LafsError> {
        let cap: ImmutableReadCap = read_cap.trim().parse()?;
        Ok(Self {
            key: cap.key().clone(),
            verify_cap: cap.verify_cap(),
            ueb: None,
            tree: None,
            proven: VecDeque::new(),
            proofs: VecDeque::new(),
        })
    }

    /// The verifycap (public; the only thing to put in requests).
    #[wasm_bindgen(getter, js_name = verifyCap)]
    pub fn verify_cap(&self) -> String {
        self.verify_cap.to_string()
    }

    /// Checks the 82-byte UEB (`GET /ciphertext/$VERIFYCAP?t=ueb`) against the cap's storage
    /// index and learns the file's size, segment size and ciphertext root.
    #[wasm_bindgen(js_name = setUeb)]
    pub fn set_ueb(&mut self, ueb: &[u8]) -> Result<(), LafsError> {
        let parsed = ueb_of(&self.verify_cap, ueb).map_err(|e| match e {
            UebRefused::Malformed(e) => Error::from(e),
            UebRefused::OtherFile => Error::Integrity {
                what: "the UEB does not match the cap's storage index".into(),
            },
        })?;
        let leaves = usize::try_from(parsed.num_segments()).map_err(|_| Error::Integrity {
            what: "too many segments".into(),
        })?;
        self.tree = if leaves == 0 {
            None
        } else {
            Some(PartialTree::new(parsed.ciphertext_root, leaves).map_err(Error::from)?)
        };
        self.proven.clear();
        self.proofs.clear();
        self.ueb = Some(parsed);
        Ok(())
    }

    /// File size in bytes (0 before [`FileReader::set_ueb`]).
    #[wasm_bindgen(getter, js_name = fileSize)]
    pub fn file_size(&self) -> f64 {
        self.ueb.map_or(0.0, |u| u.file_size as f64)
    }

    /// Segment size in bytes (0 before [`FileReader::set_ueb`]).
    #[wasm_bindgen(getter, js_name = segmentSize)]
    pub fn segment_size(&self) -> u32 {
        self.ueb.map_or(0, |u| u.params.segment_size())
    }

    /// Shares needed, k (0 before [`FileReader::set_ueb`]): the number of data blocks per
    /// segment whose digests [`FileReader::verify_digests`] takes.
    #[wasm_bindgen(getter)]
    pub fn k(&self) -> u16 {
        self.ueb.map_or(0, |u| u.params.k())
    }

    /// Number of segments (0 for an empty file or before [`FileReader::set_ueb`]).
    #[wasm_bindgen(getter, js_name = numSegments)]
    pub fn num_segments(&self) -> f64 {
        self.ueb.map_or(0.0, |u| u.num_segments() as f64)
    }

    /// Adds the proof of a `GET /ciphertext/$VERIFYCAP?t=proof` answer (its JSON text): its
    /// `proof` nodes and, if it has them, its `leaves` (the leaf hashes of segments
    /// `first_segment..=last_segment`). All are checked against the root from the verified UEB:
    /// with the leaves, one proof verifies every segment of a long range up front, each segment
    /// then only has to hash to its leaf (no proof per batch).
    ///
    /// The leaves are kept until each has verified its segment once, or until newer proofs'
    /// leaves push them out ([`MAX_PROVEN_LEAVES`]); a proof without leaves is kept for its
    /// segments until [`MAX_HELD_PROOFS`] newer ones arrived. Verifying a segment after that
    /// needs its proof again.
    #[wasm_bindgen(js_name = addProof)]
    pub fn add_proof(&mut self, json: &str) -> Result<(), LafsError> {
        let tree = self.tree.as_mut().ok_or(Error::InvalidUse)?;
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|_| Error::Integrity {
                what: "the proof is not JSON".into(),
            })?;
        let bad = || Error::Integrity {
            what: "the proof is malformed".into(),
        };
        let mut nodes = Vec::new();
        for node in value
            .get("proof")
            .and_then(|p| p.as_array())
            .ok_or_else(bad)?
        {
            let index = node
                .get("node")
                .and_then(serde_json::Value::as_u64)
                .and_then(|i| usize::try_from(i).ok())
                .ok_or_else(bad)?;
            let hash = node
                .get("hash")
                .and_then(|h| h.as_str())
                .and_then(|h| hex::decode(h).ok())
                .and_then(|b| Hash::from_slice(&b))
                .ok_or_else(bad)?;
            nodes.push((NodeIndex(index), hash));
        }
        let mut run = None;
        if let Some(leaves) = value.get("leaves").and_then(|l| l.as_array()) {
            let first = value
                .get("first_segment")
                .and_then(serde_json::Value::as_u64)
                .and_then(|i| usize::try_from(i).ok())
                .ok_or_else(bad)?;
            let num = tree.num_leaves();
            let mut hashes = Vec::with_capacity(leaves.len());
            for (i, leaf) in leaves.iter().enumerate() {
                let hash = leaf
                    .as_str()
                    .and_then(|h| hex::decode(h).ok())
                    .and_then(|b| Hash::from_slice(&b))
                    .ok_or_else(bad)?;
                let index = first
                    .checked_add(i)
                    .and_then(|j| lafs_hashtree::leaf_node_index(num, j).ok())
                    .ok_or_else(bad)?;
                nodes.push((index, hash));
                hashes.push(hash);
            }
            run = Some((first, hashes));
        }
        tree.add_nodes(&nodes).map_err(Error::from)?;
        match run {
            Some((first, leaves)) => self.keep_proven(first, leaves),
            None if !nodes.is_empty() => {
                if self.proofs.len() >= MAX_HELD_PROOFS {
                    self.proofs.pop_front();
                }
                self.proofs.push_back(nodes);
            }
            None => {}
        }
        Ok(())
    }

    /// Verifies whole segments `first, first+1, …` held in `ciphertext` (their exact bytes, in
    /// order) and returns them decrypted. Fails, returning nothing, if any segment's hash does
    /// not prove to the ciphertext root.
    #[wasm_bindgen(js_name = openSegments)]
    pub fn open_segments(&mut self, first: f64, ciphertext: Vec<u8>) -> Result<Vec<u8>, LafsError> {
        let start = self.verify(first, &ciphertext)?;
        let mut buf = ciphertext;
        decrypt_at(&self.key, start, &mut buf).map_err(Error::from)?;
        Ok(buf)
    }

    /// Like [`FileReader::open_segments`] without decrypting: succeeds only if every segment
    /// verified, and returns the file offset of the first byte (for decrypting elsewhere, e.g.
    /// with WebCrypto and [`FileReader::web_crypto_key`]).
    #[wasm_bindgen(js_name = verifySegments)]
    pub fn verify_segments(&mut self, first: f64, ciphertext: &[u8]) -> Result<f64, LafsError> {
        // Offsets of files that fit in a browser are far below 2^53: exact as f64.
        self.verify(first, ciphertext).map(|s| s as f64)
    }

    /// Like [`FileReader::verify_segments`], with the hashing done by the caller (for example
    /// with WebCrypto's SHA-256, which is faster than SHA-256 in wasm): `digests` holds, for
    /// each segment `first, first+1, …` and within a segment for each of its k data blocks in
    /// order, the 32 bytes `SHA-256(blockHashPrefix() ‖ data block i)`. The segment's
    /// ciphertext of `len` bytes is cut into k blocks of `b = ceil(len / k)` bytes, the last
    /// ones zero-padded to `b` (a block may be all padding): `docs/spec/immutable.md` §2–3.
    /// `byte_len` is the number of ciphertext bytes they cover, which must be exactly those
    /// whole segments.
    ///
    /// Each segment's leaf, computed here from its length and block digests, must prove to the
    /// ciphertext root from the verified UEB through the proofs added so far; a wrong digest
    /// (wrong bytes hashed) fails and nothing may be decrypted. Returns the file offset of the
    /// first byte; `invalid-use` if `digests` is not a whole number of segments' k digests.
    #[wasm_bindgen(js_name = verifyDigests)]
    pub fn verify_digests(
        &mut self,
        first: f64,
        digests: &[u8],
        byte_len: f64,
    ) -> Result<f64, LafsError> {
        let ueb = self.ueb.ok_or(Error::InvalidUse)?;
        let first = index(first)?;
        let byte_len = index(byte_len)?;
        let (leaves, span) = leaves_from_block_digests(&ueb, first, digests)?;
        let (start, len) = (span.start, span.end - span.start);
        if len != byte_len {
            return Err(Error::Integrity {
                what: format!(
                    "{byte_len} bytes are not whole segments {first}..{} ({len} bytes)",
                    first + leaves.len() as u64
                ),
            }
            .into());
        }
        self.check_leaves(leaves)?;
        Ok(start as f64)
    }

    /// The raw 16-byte AES-128 key, to import into WebCrypto as a non-extractable `AES-CTR` key
    /// (counter: the 16-byte big-endian block number, `length: 128`). A secret: it must stay in
    /// the tab.
    #[wasm_bindgen(js_name = webCryptoKey)]
    pub fn web_crypto_key(&self) -> Vec<u8> {
        self.key.as_bytes().to_vec()
    }
}

impl FileReader {
    /// Checks whole segments from `first` on; the file offset of their first byte.
    fn verify(&mut self, first: f64, ciphertext: &[u8]) -> Result<u64, LafsError> {
        let ueb = self.ueb.ok_or(Error::InvalidUse)?;
        let first = index(first)?;
        let start = ueb
            .segment_range(first)
            .ok_or(Error::Integrity {
                what: format!("segment {first} is past the end of the file"),
            })?
            .start;
        let buf = ciphertext;
        let mut offset = 0usize;
        let mut segment = first;
        let mut hashes = Vec::new();
        while offset < buf.len() {
            let range = ueb.segment_range(segment).ok_or(Error::Integrity {
                what: format!("more bytes than the file has after segment {segment}"),
            })?;
            let len = usize::try_from(range.end - range.start).map_err(|_| Error::InvalidUse)?;
            let Some(bytes) = buf.get(offset..offset + len) else {
                return Err(Error::Integrity {
                    what: format!("segment {segment} is truncated"),
                }
                .into());
            };
            let leaf = segment_leaf_of_ciphertext(&ueb.params, bytes).map_err(Error::from)?;
            hashes.push((segment, leaf));
            offset += len;
            segment += 1;
        }
        self.check_leaves(hashes)?;
        Ok(start)
    }

    /// Checks the leaf hashes of segments: against the leaves of a proof where one holds
    /// them, else in the tree (through the proofs added before). Succeeds only if every one is
    /// verified against the root; then the tree keeps only the path of the last segment it
    /// verified.
    fn check_leaves(
        &mut self,
        hashes: impl IntoIterator<Item = (u64, Hash)>,
    ) -> Result<(), LafsError> {
        let result = self.check_leaves_unpruned(hashes);
        match &result {
            Ok((used, Some(last))) => {
                self.mark_used(used);
                self.prune(*last);
            }
            Ok((used, None)) => self.mark_used(used),
            // Hashes of the failed computation were dropped from the tree: the proofs kept to
            // add again may hold the wrong ones, so a new proof must not conflict with them.
            Err(_) => self.proofs.clear(),
        }
        result.map(|_| ())
    }

    /// [`FileReader::check_leaves`] without forgetting anything: the proof leaves it used
    /// (run, position) and the last segment verified in the tree.
    fn check_leaves_unpruned(
        &mut self,
        hashes: impl IntoIterator<Item = (u64, Hash)>,
    ) -> Result<Checked, LafsError> {
        let tree = self.tree.as_mut().ok_or(Error::InvalidUse)?;
        let mut used = Vec::new();
        let mut leaves = Vec::new();
        for (segment, hash) in hashes {
            let mismatch = || Error::Integrity {
                what: format!("segment {segment} does not match the file's hash tree"),
            };
            // A proof's leaf, preferably one not used yet (two reads of one range each bring
            // their own proof and use its leaves once).
            let mut found = None;
            for (r, run) in self.proven.iter().enumerate() {
                if let Some((i, leaf)) = run.get(segment) {
                    let unused = !run.used.get(i).copied().unwrap_or(true);
                    if found.is_none() || unused {
                        found = Some((r, i, leaf));
                    }
                    if unused {
                        break;
                    }
                }
            }
            if let Some((r, i, leaf)) = found {
                if leaf != hash {
                    return Err(mismatch().into());
                }
                used.push((r, i));
                continue;
            }
            let leaf = usize::try_from(segment).map_err(|_| Error::InvalidUse)?;
            tree.add_leaf(leaf, hash).map_err(|_| mismatch())?;
            leaves.push(leaf);
        }
        for &leaf in &leaves {
            if tree.verified_leaf(leaf).is_none() {
                return Err(Error::Integrity {
                    what: format!("segment {leaf} could not be proven (missing proof)"),
                }
                .into());
            }
        }
        Ok((used, leaves.into_iter().max()))
    }

    /// Records proof leaves as used; forgets the runs whose every leaf is.
    fn mark_used(&mut self, used: &[(usize, usize)]) {
        for &(r, i) in used {
            if let Some(run) = self.proven.get_mut(r) {
                if let Some(u) = run.used.get_mut(i).filter(|u| !**u) {
                    *u = true;
                    run.unused -= 1;
                }
            }
        }
        self.proven.retain(|run| run.unused > 0);
    }

    /// Keeps the leaves of a proof (segments `first, first+1, …`) if the tree verified them
    /// all, then forgets what the tree held for them. Leaves that did not verify (the proof
    /// did not reach them) stay in the tree, pending, as any hash added without its proof.
    fn keep_proven(&mut self, first: usize, leaves: Vec<Hash>) {
        let Some(tree) = self.tree.as_ref() else {
            return;
        };
        let all_verified = leaves
            .iter()
            .enumerate()
            .all(|(i, h)| first.checked_add(i).and_then(|j| tree.verified_leaf(j)) == Some(*h));
        let Some(last) = leaves
            .len()
            .checked_sub(1)
            .and_then(|l| first.checked_add(l))
        else {
            return;
        };
        if !all_verified {
            return;
        }
        self.proven.push_back(ProvenLeaves {
            first: first as u64,
            used: vec![false; leaves.len()],
            unused: leaves.len(),
            leaves,
        });
        let mut held: usize = self.proven.iter().map(|r| r.leaves.len()).sum();
        while held > MAX_PROVEN_LEAVES && self.proven.len() > 1 {
            if let Some(old) = self.proven.pop_front() {
                held -= old.leaves.len();
            }
        }
        self.prune(last);
    }

    /// Forgets all the tree holds but the path of leaf `leaf` (and its siblings), then adds
    /// the kept proofs again (those the tree now refuses are forgotten).
    fn prune(&mut self, leaf: usize) {
        let Some(tree) = self.tree.as_mut() else {
            return;
        };
        tree.retain_path(leaf);
        self.proofs.retain(|p| tree.add_nodes(p).is_ok());
    }

    /// Hashes held for verification: the tree's nodes, the leaves from proofs and the nodes of
    /// the proofs kept to add again.
    #[cfg(test)]
    fn held_hashes(&self) -> usize {
        self.tree.as_ref().map_or(0, PartialTree::held_nodes)
            + self.proven.iter().map(|r| r.leaves.len()).sum::<usize>()
            + self.proofs.iter().map(Vec::len).sum::<usize>()
    }
}

/// Uploads one immutable file through a gateway's `PUT /ciphertext`: a fresh random key,
/// AES-128-CTR encryption in the page, and the readcap rebuilt from the verifycap the gateway
/// answers. The gateway sees ciphertext and the selection index only.
#[wasm_bindgen]
pub struct FileWriter {
    key: ReadKey,
}

impl core::fmt::Debug for FileWriter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FileWriter").finish_non_exhaustive()
    }
}

#[wasm_bindgen]
impl FileWriter {
    /// A writer with a fresh random key (`crypto.getRandomValues` in a browser).
    #[wasm_bindgen(constructor)]
    pub fn new() -> Result<Self, LafsError> {
        Ok(Self {
            key: random_key().map_err(Error::from)?,
        })
    }

    /// The selection index for `PUT /ciphertext?selection_index=…` (32 hex digits; public).
    #[wasm_bindgen(getter, js_name = selectionIndex)]
    pub fn selection_index(&self) -> String {
        hex::encode(selection_index_for(&self.key).0)
    }

    /// Encrypts `data` as the bytes at file offset `offset` and returns the ciphertext.
    pub fn encrypt(&self, offset: f64, data: Vec<u8>) -> Result<Vec<u8>, LafsError> {
        let mut buf = data;
        encrypt_at(&self.key, index(offset)?, &mut buf).map_err(Error::from)?;
        Ok(buf)
    }

    /// The raw 16-byte AES-128 key, to import into WebCrypto (see
    /// [`FileReader::web_crypto_key`]). A secret: it must stay in the tab.
    #[wasm_bindgen(js_name = webCryptoKey)]
    pub fn web_crypto_key(&self) -> Vec<u8> {
        self.key.as_bytes().to_vec()
    }

    /// The readcap (text) for the uploaded file, from the verifycap the gateway answered. The
    /// verifycap's selection index must be this key's.
    #[wasm_bindgen(js_name = readCap)]
    pub fn read_cap(&self, verify_cap: &str) -> Result<String, LafsError> {
        let v: ImmutableVerifyCap = verify_cap.trim().parse()?;
        if *v.selection_index() != selection_index_for(&self.key) {
            return Err(Error::Integrity {
                what: "the gateway answered a verifycap for another key".into(),
            }
            .into());
        }
        Ok(ImmutableReadCap::new(self.key.clone(), *v.storage_index()).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_hash_prefix;
    use lafs_codec::{encode_to_shares, Params};

    /// The ciphertext-tree leaf of a segment of a 3-of-10 file.
    fn leaf(segment: &[u8]) -> Hash {
        segment_leaf_of_ciphertext(&Params::new(3, 10, MAX_SEG).unwrap(), segment).unwrap()
    }

    /// Segment sizes of the test files are at most this.
    const MAX_SEG: u32 = 4096;

    /// Bytes of the block digests of one segment (k = 3).
    const D: usize = 3 * 32;

    fn setup(size: usize) -> (FileReader, Vec<u8>, Vec<u8>, Ueb) {
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let key = random_key().unwrap();
        let (_, done) =
            encode_to_shares(Params::new(3, 10, 4096).unwrap(), key.clone(), &data).unwrap();
        let cap = done.read_cap.unwrap();
        let mut ct = data.clone();
        encrypt_at(&key, 0, &mut ct).unwrap();
        (
            FileReader::new(&cap.to_string()).unwrap(),
            data,
            ct,
            done.ueb,
        )
    }

    fn proof_json(ueb: &Ueb, ct: &[u8], range: core::ops::Range<usize>) -> String {
        let leaves: Vec<Hash> = ct
            .chunks(ueb.params.segment_size() as usize)
            .map(leaf)
            .collect();
        let tree = lafs_hashtree::HashTree::from_leaves(&leaves);
        let proof: Vec<_> = tree
            .proof(range)
            .unwrap()
            .into_iter()
            .map(|(n, h)| serde_json::json!({"node": n.0, "hash": h.to_hex()}))
            .collect();
        serde_json::json!({ "proof": proof }).to_string()
    }

    #[test]
    fn reads_verified_segments() {
        let (mut r, data, ct, ueb) = setup(20_000);
        r.set_ueb(&ueb.to_bytes()).unwrap();
        assert_eq!(r.num_segments(), 5.0);
        r.add_proof(&proof_json(&ueb, &ct, 1..3)).unwrap();
        let out = r.open_segments(1.0, ct[4096..3 * 4096].to_vec()).unwrap();
        assert_eq!(out, data[4096..3 * 4096]);
        r.add_proof(&proof_json(&ueb, &ct, 4..5)).unwrap();
        let out = r.open_segments(4.0, ct[4 * 4096..].to_vec()).unwrap();
        assert_eq!(out, data[4 * 4096..]);
        let mut bad = ct[..4096].to_vec();
        bad[9] ^= 1;
        assert_eq!(
            r.verify_segments(0.0, &bad).unwrap_err().code(),
            "integrity"
        );
        r.add_proof(&proof_json(&ueb, &ct, 0..1)).unwrap();
        assert_eq!(r.verify_segments(0.0, &ct[..4096]), Ok(0.0));
    }

    /// SHA-256(prefix ‖ data block) of the 3 data blocks of each segment (zero-padded to
    /// ceil(len / 3) bytes), as the page computes them with WebCrypto.
    fn digests(ct: &[u8], seg: usize) -> Vec<u8> {
        use sha2::{Digest, Sha256};
        let mut out = Vec::new();
        for s in ct.chunks(seg) {
            let b = s.len().div_ceil(3);
            for i in 0..3 {
                let mut block = s[(i * b).min(s.len())..((i + 1) * b).min(s.len())].to_vec();
                block.resize(b, 0);
                let mut h = Sha256::new();
                h.update(block_hash_prefix());
                h.update(&block);
                out.extend(h.finalize());
            }
        }
        out
    }

    #[test]
    fn digests_from_the_page_are_checked_against_the_tree() {
        let (mut r, _, ct, ueb) = setup(20_000);
        r.set_ueb(&ueb.to_bytes()).unwrap();
        let d = digests(&ct, 4096);
        assert_eq!(d.len(), 5 * D);
        // The prefix is the tagged hash's: the digests are the block hashes of the codec.
        assert_eq!(
            &d[..D],
            lafs_codec::data_block_hashes(3, &ct[..4096])
                .iter()
                .flat_map(|h| h.0)
                .collect::<Vec<u8>>()
        );
        // No proof yet: refused.
        assert_eq!(
            r.verify_digests(1.0, &d[D..3 * D], 8192.0)
                .unwrap_err()
                .code(),
            "integrity"
        );
        r.add_proof(&proof_json(&ueb, &ct, 1..3)).unwrap();
        // Wrong byte count (not the whole segments) and segments past the end: refused.
        for (first, hashes, len) in [
            (1.0, &d[D..3 * D], 8191.0),
            (4.0, &d[..2 * D], 4096.0 + 3616.0),
        ] {
            assert_eq!(
                r.verify_digests(first, hashes, len).unwrap_err().code(),
                "integrity"
            );
        }
        assert_eq!(r.verify_digests(1.0, &d[D..3 * D], 8192.0), Ok(4096.0));
        // A digest of other bytes is refused.
        let mut bad = ct.clone();
        bad[4 * 4096 + 10] ^= 1;
        let bad = digests(&bad, 4096);
        r.add_proof(&proof_json(&ueb, &ct, 4..5)).unwrap();
        let last = (ct.len() - 4 * 4096) as f64;
        assert_eq!(
            r.verify_digests(4.0, &bad[4 * D..], last)
                .unwrap_err()
                .code(),
            "integrity"
        );
        // Digests in another order (blocks swapped) are refused too.
        let mut swapped = d[4 * D..].to_vec();
        swapped.rotate_left(32);
        assert_eq!(
            r.verify_digests(4.0, &swapped, last).unwrap_err().code(),
            "integrity"
        );
        assert_eq!(r.verify_digests(4.0, &d[4 * D..], last), Ok(16384.0));
        // Not whole hashes, or not k of them per segment.
        for cut in [4 * D + 22, 4 * D + 32, 5 * D - 32] {
            assert_eq!(
                r.verify_digests(4.0, &d[4 * D..cut], last)
                    .unwrap_err()
                    .code(),
                "invalid-use",
                "{cut}"
            );
        }
    }

    #[test]
    fn leaves_of_a_proof_verify_a_whole_range_at_once() {
        let (mut r, _, ct, ueb) = setup(20_000);
        r.set_ueb(&ueb.to_bytes()).unwrap();
        let leaves: Vec<Hash> = ct.chunks(4096).map(leaf).collect();
        let with_leaves = |first: usize, end: usize, flip: bool| {
            let mut v: serde_json::Value =
                serde_json::from_str(&proof_json(&ueb, &ct, first..end)).unwrap();
            let mut hexes: Vec<String> = leaves[first..end].iter().map(|h| h.to_hex()).collect();
            if flip {
                hexes[0] = Hash([7; 32]).to_hex();
            }
            v["first_segment"] = serde_json::json!(first);
            v["leaves"] = serde_json::json!(hexes);
            v.to_string()
        };
        r.add_proof(&with_leaves(2, 5, false)).unwrap();
        // Each segment of the range now verifies on its own, in any order, without more proofs.
        let d = digests(&ct, 4096);
        assert_eq!(r.verify_digests(3.0, &d[3 * D..4 * D], 4096.0), Ok(12288.0));
        assert_eq!(r.verify_digests(2.0, &d[2 * D..3 * D], 4096.0), Ok(8192.0));
        let mut bad = d[4 * D..].to_vec();
        bad[0] ^= 1;
        assert_eq!(
            r.verify_digests(4.0, &bad, (20_000 - 4 * 4096) as f64)
                .unwrap_err()
                .code(),
            "integrity"
        );
        // Outside the range: still needs its proof.
        assert_eq!(
            r.verify_digests(0.0, &d[..D], 4096.0).unwrap_err().code(),
            "integrity"
        );
        // A wrong leaf is refused.
        assert_eq!(
            r.add_proof(&with_leaves(2, 5, true)).unwrap_err().code(),
            "integrity"
        );
    }

    #[test]
    fn tampered_segment_is_refused() {
        let (mut r, _, mut ct, ueb) = setup(20_000);
        r.set_ueb(&ueb.to_bytes()).unwrap();
        r.add_proof(&proof_json(&ueb, &ct, 0..5)).unwrap();
        ct[5000] ^= 1;
        let e = r.open_segments(0.0, ct).unwrap_err();
        assert_eq!(e.code(), "integrity");
    }

    #[test]
    fn missing_proof_is_refused() {
        let (mut r, _, ct, ueb) = setup(20_000);
        r.set_ueb(&ueb.to_bytes()).unwrap();
        let e = r
            .open_segments(2.0, ct[2 * 4096..3 * 4096].to_vec())
            .unwrap_err();
        assert_eq!(e.code(), "integrity");
    }

    #[test]
    fn wrong_ueb_is_refused() {
        let (mut r, _, _, mut ueb) = setup(100);
        ueb.file_size = 99;
        assert_eq!(r.set_ueb(&ueb.to_bytes()).unwrap_err().code(), "integrity");
    }

    /// A file of `segments` segments of 48 bytes (the last one shorter): a reader with its UEB
    /// set, the plaintext, the ciphertext and its tree (to answer proofs as a gateway does).
    fn long_file(segments: usize) -> (FileReader, Vec<u8>, Vec<u8>, lafs_hashtree::HashTree) {
        let data: Vec<u8> = (0..SEG * segments - 5)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let key = random_key().unwrap();
        let params = Params::new(3, 10, SEG as u32).unwrap();
        let (_, done) = encode_to_shares(params, key.clone(), &data).unwrap();
        let mut r = FileReader::new(&done.read_cap.unwrap().to_string()).unwrap();
        r.set_ueb(&done.ueb.to_bytes()).unwrap();
        let mut ct = data.clone();
        encrypt_at(&key, 0, &mut ct).unwrap();
        let leaves: Vec<Hash> = ct.chunks(SEG).map(leaf).collect();
        (r, data, ct, lafs_hashtree::HashTree::from_leaves(&leaves))
    }

    const SEG: usize = 48;

    /// A gateway's proof answer for segments `range`, with their leaves or without.
    fn answer(
        tree: &lafs_hashtree::HashTree,
        range: core::ops::Range<usize>,
        leaves: bool,
    ) -> String {
        let proof: Vec<_> = tree
            .proof(range.clone())
            .unwrap()
            .into_iter()
            .map(|(n, h)| serde_json::json!({"node": n.0, "hash": h.to_hex()}))
            .collect();
        let mut v = serde_json::json!({
            "first_segment": range.start,
            "last_segment": range.end - 1,
            "proof": proof,
        });
        if leaves {
            let hexes: Vec<String> = range.map(|j| tree.leaf(j).unwrap().to_hex()).collect();
            v["leaves"] = serde_json::json!(hexes);
        }
        v.to_string()
    }

    /// Hashes one path of the tree keeps: the root and, per level under it, the path node and
    /// its sibling.
    fn path_bound(segments: usize) -> usize {
        let height = usize::BITS - (segments - 1).leading_zeros(); // ceil(log2(segments))
        2 * height as usize + 1
    }

    /// The hashes `r` holds, checked against `bound` after reading up to segment `a`.
    fn held_at_most(r: &FileReader, bound: usize, a: usize) -> usize {
        let held = r.held_hashes();
        assert!(held <= bound, "segment {a}: {held} held (bound {bound})");
        held
    }

    /// Reads segments `a..b` (whole) through `verify_digests` or `open_segments`.
    fn read(
        r: &mut FileReader,
        ct: &[u8],
        a: usize,
        b: usize,
        digest: bool,
    ) -> Result<Vec<u8>, LafsError> {
        let bytes = &ct[a * SEG..(b * SEG).min(ct.len())];
        if digest {
            let start = r.verify_digests(a as f64, &digests(bytes, SEG), bytes.len() as f64)?;
            assert_eq!(start, (a * SEG) as f64);
            let mut plain = bytes.to_vec();
            decrypt_at(&r.key, a as u64 * SEG as u64, &mut plain).unwrap();
            Ok(plain)
        } else {
            r.open_segments(a as f64, bytes.to_vec())
        }
    }

    #[test]
    fn a_long_read_through_proof_windows_holds_bounded_state() {
        const SEGMENTS: usize = 3000;
        const WINDOW: usize = 64;
        const BATCH: usize = 8;
        let (mut r, data, ct, tree) = long_file(SEGMENTS);
        // A path, and the leaves of the window being read.
        let bound = path_bound(SEGMENTS) + WINDOW;
        let mut got = Vec::new();
        let mut most = 0;
        for w in (0..SEGMENTS).step_by(WINDOW) {
            let end = (w + WINDOW).min(SEGMENTS);
            r.add_proof(&answer(&tree, w..end, true)).unwrap();
            for a in (w..end).step_by(BATCH) {
                let b = (a + BATCH).min(end);
                got.extend(read(&mut r, &ct, a, b, a % 16 == 0).unwrap());
                most = most.max(held_at_most(&r, bound, a));
            }
        }
        assert_eq!(got, data);
        // Each window's leaves are forgotten once they verified their segments: only a path is
        // left, where keeping every verified node would be more than two per segment.
        assert!(
            r.held_hashes() <= path_bound(SEGMENTS),
            "{}",
            r.held_hashes()
        );
        assert!(most > WINDOW, "{most}");

        // A seek back: what was forgotten must be proven again, and is still checked.
        assert_eq!(
            read(&mut r, &ct, 5, 6, true).unwrap_err().code(),
            "integrity"
        );
        r.add_proof(&answer(&tree, 5..6, false)).unwrap();
        let mut bad = ct.clone();
        bad[5 * SEG + 1] ^= 1;
        assert_eq!(
            read(&mut r, &bad, 5, 6, false).unwrap_err().code(),
            "integrity"
        );
        r.add_proof(&answer(&tree, 5..6, false)).unwrap();
        assert_eq!(
            read(&mut r, &ct, 5, 6, false).unwrap(),
            data[5 * SEG..6 * SEG]
        );
        r.add_proof(&answer(&tree, 1000..1100, true)).unwrap();
        assert_eq!(
            read(&mut r, &bad, 1050, 1051, true).unwrap(),
            data[1050 * SEG..1051 * SEG]
        );
        let mut bad = ct.clone();
        bad[1060 * SEG] ^= 1;
        assert_eq!(
            read(&mut r, &bad, 1060, 1062, true).unwrap_err().code(),
            "integrity"
        );
        assert_eq!(
            read(&mut r, &ct, 1060, 1062, true).unwrap(),
            data[1060 * SEG..1062 * SEG]
        );
        // A path, the 97 leaves of the window not read, the proof of segment 5 (kept and
        // pending).
        let held = r.held_hashes();
        assert!(held <= path_bound(SEGMENTS) * 3 + 97, "{held}");
    }

    #[test]
    fn a_long_read_with_a_proof_per_batch_holds_bounded_state() {
        const SEGMENTS: usize = 3000;
        const BATCH: usize = 8;
        let (mut r, data, ct, tree) = long_file(SEGMENTS);
        // A path, plus the proofs kept to add again (each held twice: kept and pending).
        let bound = path_bound(SEGMENTS) * (1 + 2 * MAX_HELD_PROOFS);
        let mut got = Vec::new();
        for a in (0..SEGMENTS).step_by(BATCH) {
            let b = (a + BATCH).min(SEGMENTS);
            r.add_proof(&answer(&tree, a..b, false)).unwrap();
            got.extend(read(&mut r, &ct, a, b, a % 16 == 0).unwrap());
            held_at_most(&r, bound, a);
        }
        assert_eq!(got, data);
        // Seeking back to the start: proven again, and checked.
        assert_eq!(
            read(&mut r, &ct, 0, 2, false).unwrap_err().code(),
            "integrity"
        );
        r.add_proof(&answer(&tree, 0..2, false)).unwrap();
        assert_eq!(read(&mut r, &ct, 0, 2, false).unwrap(), data[..2 * SEG]);
    }

    #[test]
    fn proofs_added_ahead_serve_batches_verified_out_of_order() {
        const SEGMENTS: usize = 300;
        let (mut r, data, ct, tree) = long_file(SEGMENTS);
        // Several batches in flight, each with its own proof, verified in another order.
        for a in [0, 8, 16, 24] {
            r.add_proof(&answer(&tree, a..a + 8, false)).unwrap();
        }
        for a in [16, 0, 24, 8] {
            assert_eq!(
                read(&mut r, &ct, a, a + 8, false).unwrap(),
                data[a * SEG..(a + 8) * SEG]
            );
        }
        // Two reads of overlapping ranges, each with its window; the second window is added
        // before the first is used up, and their batches interleave.
        r.add_proof(&answer(&tree, 100..164, true)).unwrap();
        r.add_proof(&answer(&tree, 100..164, true)).unwrap();
        r.add_proof(&answer(&tree, 164..228, true)).unwrap();
        for a in [100, 164, 108, 100, 116, 108, 172, 116] {
            assert_eq!(
                read(&mut r, &ct, a, a + 8, true).unwrap(),
                data[a * SEG..(a + 8) * SEG]
            );
        }
    }

    #[test]
    fn writer_round_trip() {
        let w = FileWriter::new().unwrap();
        let data = b"hello browser".to_vec();
        let ct = w.encrypt(0.0, data.clone()).unwrap();
        let key_holder = w.key.clone();
        let (_, done) =
            encode_to_shares(Params::new(3, 10, 4096).unwrap(), key_holder, &data).unwrap();
        let vcap = done.read_cap.clone().unwrap().verify_cap().to_string();
        assert_eq!(
            w.read_cap(&vcap).unwrap(),
            done.read_cap.unwrap().to_string()
        );
        let mut pt = ct;
        decrypt_at(&w.key, 0, &mut pt).unwrap();
        assert_eq!(pt, data);
        let other = FileWriter::new().unwrap();
        assert_eq!(other.read_cap(&vcap).unwrap_err().code(), "integrity");
    }
}
