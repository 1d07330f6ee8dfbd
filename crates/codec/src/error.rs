//! The crate's error type.

use core::fmt;

/// The part of a share that failed a check (see [`Error::CorruptShare`]).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SharePart {
    /// The fixed header: magic, version, share number or parameters are wrong.
    Header,
    /// The share's total length is not the length its UEB implies.
    Length,
    /// The UEB cannot be parsed, or its hash is not the expected storage index.
    Ueb,
    /// The share hash chain (block-tree root and its proof) does not lead to the UEB's share
    /// root.
    ShareChain,
    /// Block `segment`, or the block-tree proof nodes sent with it, does not match the share's
    /// block-tree root.
    Block {
        /// Segment number of the block.
        segment: u64,
    },
    /// A stored block-tree node is not the hash the blocks imply.
    BlockTreeNode {
        /// Node index (heap order) inside the block tree.
        node: u64,
    },
    /// A stored ciphertext-tree node is inconsistent with the tree or the UEB's ciphertext root.
    /// For a downloader: the ciphertext-tree proof nodes this share sent for `segment` disagree
    /// with the verified ciphertext tree.
    CiphertextTreeNode {
        /// Node index (heap order) inside the ciphertext tree.
        node: u64,
    },
}

impl fmt::Display for SharePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header => f.write_str("header"),
            Self::Length => f.write_str("total length"),
            Self::Ueb => f.write_str("UEB"),
            Self::ShareChain => f.write_str("share hash chain"),
            Self::Block { segment } => write!(f, "block of segment {segment}"),
            Self::BlockTreeNode { node } => write!(f, "block hash tree node {node}"),
            Self::CiphertextTreeNode { node } => write!(f, "ciphertext hash tree node {node}"),
        }
    }
}

/// Everything that can go wrong in this crate.
///
/// Errors that concern a share name it ([`Error::CorruptShare`]); errors that concern the file
/// as a whole name the segment. Decoder errors marked *recoverable* leave the decoder usable.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Encoding parameters out of range (1 ≤ k ≤ N ≤ 256, 1 ≤ segment size ≤ 64 MiB).
    #[error("invalid parameters k={k} N={n} segment size={segment_size}: {reason}")]
    BadParams {
        /// Shares needed.
        k: u16,
        /// Total shares.
        n: u16,
        /// Segment size in bytes.
        segment_size: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// A UEB is malformed (wrong length, unknown version, parameters out of range).
    #[error("malformed UEB: {reason}")]
    BadUeb {
        /// What is wrong.
        reason: &'static str,
    },
    /// The file would have more segments than the format allows.
    #[error("file too large: more than {max_segments} segments")]
    FileTooLarge {
        /// The limit ([`crate::MAX_SEGMENTS`]).
        max_segments: u64,
    },
    /// A share number is not below N.
    #[error("share number {share} is out of range for N={n}")]
    ShareOutOfRange {
        /// The share number.
        share: u16,
        /// Total shares.
        n: u16,
    },
    /// A share (or a piece of one) failed verification. For the decoder this is
    /// *recoverable*: the share is marked bad and later plans avoid it.
    #[error("share {share} is corrupt: {part}")]
    CorruptShare {
        /// Share number.
        share: u16,
        /// What failed.
        part: SharePart,
    },
    /// The bytes given are not the bytes that were asked for (wrong offset or too long).
    #[error("unexpected data for share {share}: {len} bytes at offset {offset}")]
    UnexpectedData {
        /// Share number.
        share: u16,
        /// Offset given.
        offset: u64,
        /// Length given.
        len: u64,
    },
    /// A share suffix is too short to hold the share's trailer.
    #[error("suffix of share {share} has {have} bytes, the trailer needs {need}")]
    SuffixTooShort {
        /// Share number.
        share: u16,
        /// Bytes given.
        have: u64,
        /// Bytes needed (at least).
        need: u64,
    },
    /// Fewer than k usable shares remain: the file cannot be read (fatal until more trailers
    /// are added).
    #[error("not enough shares: need {need}, {usable} usable")]
    NotEnoughShares {
        /// k.
        need: u16,
        /// Shares with a valid trailer that are neither bad nor unavailable.
        usable: u16,
    },
    /// k blocks that each match their share's block tree decode to a segment whose ciphertext
    /// does not match the UEB's ciphertext root: the uploader encoded inconsistent shares.
    #[error("segment {segment} decodes to ciphertext that does not match the ciphertext root")]
    InconsistentEncoding {
        /// Segment number.
        segment: u64,
    },
    /// The decoder has no verified UEB yet: add a share trailer first.
    #[error("no verified UEB yet: add a share trailer first")]
    NoUeb,
    /// A read range is reversed.
    #[error("bad read range {start}..{end}")]
    BadRange {
        /// Start of the range.
        start: u64,
        /// End of the range (exclusive).
        end: u64,
    },
    /// An encoded segment was given to the encoder out of order.
    #[error("segment {got} given to the encoder where segment {expected} comes next")]
    SegmentOutOfOrder {
        /// The index of the segment the encoder needs next.
        expected: u64,
        /// The index of the segment it was given.
        got: u64,
    },
    /// The operation is not valid in the current state (e.g. push after finish).
    #[error("invalid state: {0}")]
    InvalidState(&'static str),
    /// The operating system's random number generator failed.
    #[error("random number generator failed")]
    Random,
    /// Internal erasure-coding failure (sizes are checked before, so this indicates a bug).
    #[error("erasure coding failed: {0}")]
    Erasure(&'static str),
}
