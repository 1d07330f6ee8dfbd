//! The crate's error type.

/// Everything that can go wrong when building, checking or reading mutable shares.
///
/// Variants name *where*: the share number, the segment, the tree node or the byte offset.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Encoding parameters out of range (k, N, segment size), or a file too large for them.
    #[error("bad parameters: {0}")]
    BadParams(&'static str),
    /// The share does not start with the mutable-share magic.
    #[error("share {share}: not a lafs mutable share (bad magic)")]
    BadMagic {
        /// Share number the caller expected (or the slot being written).
        share: u16,
    },
    /// The share's format version is not one this code reads.
    #[error("share {share}: unsupported mutable format version {version}")]
    UnsupportedVersion {
        /// Share number.
        share: u16,
        /// Version found.
        version: u16,
    },
    /// The bytes end before a field does.
    #[error("share {share}: truncated: {needed} bytes needed, {available} available")]
    Truncated {
        /// Share number.
        share: u16,
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// The share's length is not the one its header implies.
    #[error("share {share}: length {found} does not match its header ({expected} expected)")]
    WrongLength {
        /// Share number.
        share: u16,
        /// Length the header implies.
        expected: u64,
        /// Length found.
        found: u64,
    },
    /// The header's share number is not the slot it is stored in or was fetched from.
    #[error("share number mismatch: slot {slot}, header says {header}")]
    ShareNumberMismatch {
        /// The slot.
        slot: u16,
        /// The share number in the header.
        header: u16,
    },
    /// The share number is not below N.
    #[error("share {share} is out of range for N = {n}")]
    ShareOutOfRange {
        /// Share number.
        share: u16,
        /// N.
        n: u16,
    },
    /// The public key in the share does not hash to the storage index it is stored under.
    #[error("share {share}: public key does not match the storage index")]
    StorageIndexMismatch {
        /// Share number.
        share: u16,
    },
    /// The public key in the share is not the one the cap names.
    #[error("share {share}: public key is not the cap's")]
    WrongPublicKey {
        /// Share number.
        share: u16,
    },
    /// The public key bytes are not a valid Ed25519 key.
    #[error("share {share}: invalid Ed25519 public key")]
    InvalidPublicKey {
        /// Share number.
        share: u16,
    },
    /// The header's signature does not verify under its public key.
    #[error("share {share}: bad signature on the header (seqnum {seqnum})")]
    BadSignature {
        /// Share number.
        share: u16,
        /// Sequence number the header claims.
        seqnum: u64,
    },
    /// Test-and-set failed: the proposed sequence number is not higher than the stored one.
    #[error("share {share}: sequence number {proposed} is not higher than the stored {stored}")]
    SeqnumNotHigher {
        /// Share number.
        share: u16,
        /// Stored sequence number.
        stored: u64,
        /// Proposed sequence number.
        proposed: u64,
    },
    /// A patch was sent for a share the server does not hold.
    #[error("share {share}: a patch needs a stored share; send the whole share")]
    PatchWithoutStoredShare {
        /// Share number.
        share: u16,
    },
    /// A patch changes k, N or the segment size: such a change rewrites every byte, so it must
    /// be sent as a whole share.
    #[error("share {share}: a patch cannot change the encoding parameters; send the whole share")]
    PatchChangesParams {
        /// Share number.
        share: u16,
    },
    /// A patch reaches past the new share length.
    #[error("share {share}: patch at {offset}..{end} is outside the new length {len}")]
    PatchOutOfRange {
        /// Share number.
        share: u16,
        /// Patch start.
        offset: u64,
        /// Patch end.
        end: u64,
        /// New share length.
        len: u64,
    },
    /// The stored share's header does not parse, so a patch cannot be applied to it.
    #[error("share {share}: the stored share is corrupt ({reason}); send the whole share")]
    StoredShareCorrupt {
        /// Share number.
        share: u16,
        /// What failed.
        reason: String,
    },
    /// The stored share could not be read while checking a write (an IO failure of the
    /// server's store, not a property of the write).
    #[error("share {share}: reading stored bytes {start}..{end} failed: {reason}")]
    StoredShareUnreadable {
        /// Share number.
        share: u16,
        /// Start offset.
        start: u64,
        /// End offset.
        end: u64,
        /// What failed.
        reason: String,
    },
    /// The block-tree root and the share's chain do not lead to the signed root.
    #[error("share {share}: hash chain does not lead to the signed root")]
    ChainMismatch {
        /// Share number.
        share: u16,
    },
    /// A block record (salt and block) does not hash to its leaf.
    #[error("share {share}: block of segment {segment} does not match its hash")]
    BlockHashMismatch {
        /// Share number.
        share: u16,
        /// Segment.
        segment: u64,
    },
    /// A block-tree node is not the hash of its children (or a padding leaf is not padding).
    #[error("share {share}: block-tree node {node} is inconsistent")]
    TreeNodeMismatch {
        /// Share number.
        share: u16,
        /// Heap index of the node.
        node: u64,
    },
    /// Two different versions carry the same sequence number, or a server refused a write
    /// because another writer got there first: someone else is writing this file at the same
    /// time. Recovery (see `docs/spec/mutable.md`): read the latest version again, merge or
    /// replay the change, publish with seqnum = highest seen + 1.
    #[error("uncoordinated write detected at sequence number {seqnum}")]
    UncoordinatedWrite {
        /// The contested sequence number.
        seqnum: u64,
    },
    /// Fewer than k valid shares of any version (or of the chosen version).
    #[error("not enough shares: {found} valid, {needed} needed")]
    NotEnoughShares {
        /// Valid shares found.
        found: usize,
        /// Shares needed (k).
        needed: usize,
    },
    /// No share header was given at all.
    #[error("no shares found")]
    NoShares,
    /// A share's bytes needed for a read were not supplied.
    #[error("share {share}: bytes {start}..{end} were not supplied")]
    MissingBytes {
        /// Share number.
        share: u16,
        /// Start offset.
        start: u64,
        /// End offset.
        end: u64,
    },
    /// A segment or byte range beyond the end of the file.
    #[error("range {start}..{end} is outside the file ({len} bytes / segments)")]
    OutOfRange {
        /// Start.
        start: u64,
        /// End.
        end: u64,
        /// Length of the file (bytes) or number of segments.
        len: u64,
    },
    /// An update needs the old plaintext of a segment that was not supplied.
    #[error("update needs the current plaintext of segment {segment}")]
    MissingOldSegment {
        /// Segment.
        segment: u64,
    },
    /// An update needs the block trees of every share; this one was not supplied.
    #[error("update needs the block tree of share {share}")]
    MissingBlockTree {
        /// Share number.
        share: u16,
    },
    /// The operating system's random generator failed.
    #[error("no randomness available")]
    Random,
    /// Reed-Solomon coding failed.
    #[error("erasure coding failed: {0}")]
    Erasure(String),
    /// A value does not fit this platform's address space (a 32-bit target and a huge share).
    #[error("{0} does not fit in memory on this platform")]
    TooLarge(&'static str),
}

impl Error {
    /// Whether this error means a concurrent writer (see [`Error::UncoordinatedWrite`]).
    pub fn is_uncoordinated(&self) -> bool {
        matches!(
            self,
            Self::UncoordinatedWrite { .. } | Self::SeqnumNotHigher { .. }
        )
    }
}
