//! The crate's error type.

use core::fmt;

/// The four encrypted columns of a dirnode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Column {
    /// Entry names (read level).
    Names,
    /// Children's traversal or verify caps (traverse level).
    Traverse,
    /// Children's read caps and metadata (read level).
    Read,
    /// Children's write caps (write level).
    Write,
}

impl Column {
    /// All columns in on-disk order.
    pub const ALL: [Self; 4] = [Self::Names, Self::Traverse, Self::Read, Self::Write];

    /// The column's number (its position in the column table).
    pub const fn id(self) -> u8 {
        match self {
            Self::Names => 0,
            Self::Traverse => 1,
            Self::Read => 2,
            Self::Write => 3,
        }
    }
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Names => "names",
            Self::Traverse => "traversal caps",
            Self::Read => "read caps and metadata",
            Self::Write => "write caps",
        })
    }
}

/// The authority a directory cap gives, weakest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// Walk the tree: children's traversal/verify caps, no names.
    Traverse,
    /// List names, metadata and children's read caps.
    Read,
    /// Everything, including children's write caps; change entries.
    Write,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Traverse => "traverse",
            Self::Read => "read",
            Self::Write => "write",
        })
    }
}

/// Everything that can go wrong when parsing, decrypting, editing or building a dirnode.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The bytes do not start with the dirnode magic.
    #[error("not a lafs dirnode (bad magic)")]
    BadMagic,
    /// A dirnode format version this code does not read.
    #[error("unsupported dirnode version {version}")]
    UnsupportedVersion {
        /// Version found.
        version: u16,
    },
    /// The kind byte is neither mutable (0) nor immutable (1), or the reserved flags are set.
    #[error("bad dirnode kind byte {kind:#04x} or flags {flags:#04x}")]
    BadKind {
        /// Kind byte.
        kind: u8,
        /// Flags byte.
        flags: u8,
    },
    /// The dirnode is shorter than its header, index or column table say.
    #[error("dirnode truncated in {what}: {needed} bytes needed, {available} available")]
    Truncated {
        /// The part being read.
        what: &'static str,
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// More entries than a dirnode may hold.
    #[error("{count} entries is more than the {max} a directory may hold")]
    TooManyEntries {
        /// Entries claimed.
        count: u64,
        /// Limit.
        max: u64,
    },
    /// A column-table slot is out of bounds, out of order, or too short for salt and MAC.
    #[error("column table entry for {column} is invalid: {reason}")]
    BadColumnTable {
        /// The column.
        column: Column,
        /// What is wrong.
        reason: &'static str,
    },
    /// Bytes follow the last column.
    #[error("{extra} trailing bytes after the last column")]
    TrailingBytes {
        /// Number of extra bytes.
        extra: u64,
    },
    /// An index entry points outside its column.
    #[error("index entry {entry} points outside the {column} column")]
    BadIndexEntry {
        /// Entry number.
        entry: u64,
        /// The column.
        column: Column,
    },
    /// A column's MAC does not verify: wrong key (this cap level may not read it) or tampering.
    #[error("the {column} column does not authenticate with this key (wrong cap, or tampered)")]
    Unauthenticated {
        /// The column.
        column: Column,
    },
    /// The operation needs a stronger cap than the one held.
    #[error("this needs {needed} access; the cap held gives {held}")]
    NotPermitted {
        /// Level needed.
        needed: Level,
        /// Level held.
        held: Level,
    },
    /// A name is empty, too long, not NFC (in a stored dirnode), or contains `/` or NUL.
    #[error("invalid entry name: {reason}")]
    BadName {
        /// What is wrong.
        reason: &'static str,
    },
    /// Two entries with the same name.
    #[error("duplicate entry name at entry {entry}")]
    DuplicateName {
        /// Entry number of the second one.
        entry: u64,
    },
    /// No entry of that name.
    #[error("no entry named {name:?}")]
    NotFound {
        /// The name.
        name: String,
    },
    /// An entry of that name already exists.
    #[error("an entry named {name:?} already exists")]
    AlreadyExists {
        /// The name.
        name: String,
    },
    /// A cap in a column does not parse, or is of a kind that does not belong there.
    #[error("entry {entry}: bad cap in the {column} column: {reason}")]
    BadCap {
        /// Entry number.
        entry: u64,
        /// The column.
        column: Column,
        /// What is wrong.
        reason: String,
    },
    /// A child cap too weak to list (a verifycap or traversal cap): a directory entry needs at
    /// least a read cap.
    #[error("a {kind} cannot be a directory entry: at least a read cap is needed")]
    ChildCapTooWeak {
        /// The cap's kind.
        kind: lafs_caps::CapKind,
    },
    /// A mutable child in an immutable directory.
    #[error("an immutable directory cannot hold a {kind}")]
    MutableChildInImmutableDir {
        /// The cap's kind.
        kind: lafs_caps::CapKind,
    },
    /// The cap is not a directory cap.
    #[error("a {kind} is not a directory cap")]
    NotADirectoryCap {
        /// The cap's kind.
        kind: lafs_caps::CapKind,
    },
    /// Entry metadata larger than the limit.
    #[error("metadata of {len} bytes is larger than the {max}-byte limit")]
    MetadataTooLarge {
        /// Length given.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The dirnode's kind (mutable/immutable) is not the one the cap names.
    #[error("the dirnode is {found}, the cap names {expected}")]
    WrongDirKind {
        /// Kind the cap names.
        expected: &'static str,
        /// Kind found.
        found: &'static str,
    },
    /// The operating system's random generator failed.
    #[error("no randomness available")]
    Random,
    /// The dirnode would exceed the format's 4 GiB offsets.
    #[error("directory too large for the format")]
    TooLarge,
}
