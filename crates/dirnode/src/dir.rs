//! The directory model, its columnar encoding and its parser.

use std::collections::HashMap;

use lafs_caps::{Cap, CapKind};
use unicode_normalization::{is_nfc, UnicodeNormalization};

use crate::keys::{open, seal, DirKeys, DirKind, MAC_LEN, SALT_LEN};
use crate::{Column, Error, Level};

/// Magic bytes at the start of every dirnode.
pub const DIR_MAGIC: [u8; 8] = *b"LAFSDIR1";
/// Dirnode format version.
pub const DIR_VERSION: u16 = 1;
/// Length of the fixed header (magic, version, kind, flags, count, stats, column table).
pub const DIR_HEADER_LEN: usize = 72;
/// Length of one index entry: (offset u32, size u32) for each of the four columns.
pub const INDEX_ENTRY_LEN: usize = 32;
/// Most entries a directory may hold.
pub const MAX_ENTRIES: u64 = 1 << 20;
/// Longest name, in bytes of UTF-8 (after NFC normalization).
pub const MAX_NAME_LEN: usize = 255;
/// Largest metadata of one entry, in bytes.
pub const MAX_METADATA_LEN: usize = 65_535;

/// Size and count statistics of an immutable directory's subtree (zero for mutable
/// directories, whose subtree can change under them). Stored in the plaintext header, so
/// traversal-cap holders see them too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stats {
    /// Files in the subtree.
    pub files: u64,
    /// Directories in the subtree, this one included.
    pub directories: u64,
    /// Total size of the files, in bytes.
    pub bytes: u64,
}

impl Stats {
    /// The sum of two subtrees' statistics.
    pub fn combined(self, other: Self) -> Self {
        Self {
            files: self.files.saturating_add(other.files),
            directories: self.directories.saturating_add(other.directories),
            bytes: self.bytes.saturating_add(other.bytes),
        }
    }
}

/// One entry as a read-level holder sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The name (NFC).
    pub name: String,
    /// The child's read cap (file, directory or literal).
    pub read_cap: Cap,
    /// Opaque metadata (the application's format).
    pub metadata: Vec<u8>,
    /// The child's write cap: only with write access, and only for mutable children.
    pub write_cap: Option<Cap>,
}

/// An entry's bytes per column, as far as the held keys decrypt them.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Raw {
    name: Option<String>,
    traverse: Vec<u8>,
    /// Read cap followed by metadata.
    read: Option<Vec<u8>>,
    write: Option<Vec<u8>>,
}

/// A directory decrypted at the level of the keys it was opened (or created) with.
///
/// Entries keep their order (insertion order; a rename keeps the position), so changing one
/// entry's field changes only that field's column. [`Directory::to_bytes`] re-encrypts only
/// the columns whose plaintext changed and reuses the stored ciphertext of the others.
#[derive(Clone, Debug)]
pub struct Directory {
    keys: DirKeys,
    stats: Stats,
    entries: Vec<Raw>,
    by_name: HashMap<String, usize>,
    /// Per column: the plaintext and sealed blob last parsed or written.
    sealed: [Option<(Vec<u8>, Vec<u8>)>; 4],
    reencrypted: Vec<Column>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// Normalizes a name to NFC and checks it: not empty, no `/`, no NUL, at most
/// [`MAX_NAME_LEN`] bytes.
pub fn normalize_name(name: &str) -> Result<String, Error> {
    let n: String = name.nfc().collect();
    check_name(&n)?;
    Ok(n)
}

fn check_name(n: &str) -> Result<(), Error> {
    if n.is_empty() {
        return Err(Error::BadName { reason: "empty" });
    }
    if n.len() > MAX_NAME_LEN {
        return Err(Error::BadName {
            reason: "longer than 255 bytes",
        });
    }
    if n.contains('/') {
        return Err(Error::BadName {
            reason: "contains '/'",
        });
    }
    if n.contains('\0') {
        return Err(Error::BadName {
            reason: "contains NUL",
        });
    }
    Ok(())
}

/// Length of the binary cap at the start of `b`, from its kind byte alone (no validation).
fn cap_len(b: &[u8]) -> Option<usize> {
    let kind = CapKind::from_kind_byte(*b.first()?)?;
    let len = match kind.payload_len() {
        Some(p) => 1 + p,
        None => 2 + usize::from(*b.get(1)?),
    };
    (len <= b.len()).then_some(len)
}

/// A child's bytes in the traverse, read and write columns.
type ChildFields = (Vec<u8>, Vec<u8>, Vec<u8>);

/// The three columns' bytes for a child cap: (traverse, read cap, write cap).
fn child_fields(kind: DirKind, cap: &Cap) -> Result<ChildFields, Error> {
    if kind == DirKind::Immutable && cap.kind().is_mutable() {
        return Err(Error::MutableChildInImmutableDir { kind: cap.kind() });
    }
    Ok(match cap {
        Cap::ImmutableRead(c) => (c.verify_cap().to_bytes(), c.to_bytes(), Vec::new()),
        Cap::Literal(c) => (Vec::new(), c.to_bytes(), Vec::new()),
        Cap::ImmutableDirRead(c) => (c.traverse_cap().to_bytes(), c.to_bytes(), Vec::new()),
        Cap::MutableWrite(c) => (
            c.verify_cap().to_bytes(),
            c.read_cap().to_bytes(),
            c.to_bytes(),
        ),
        Cap::MutableRead(c) => (c.verify_cap().to_bytes(), c.to_bytes(), Vec::new()),
        Cap::DirWrite(c) => (
            c.traverse_cap().to_bytes(),
            c.read_cap().to_bytes(),
            c.to_bytes(),
        ),
        Cap::DirRead(c) => (c.traverse_cap().to_bytes(), c.to_bytes(), Vec::new()),
        other => return Err(Error::ChildCapTooWeak { kind: other.kind() }),
    })
}

fn bad_cap(entry: usize, column: Column, reason: impl ToString) -> Error {
    Error::BadCap {
        entry: entry as u64,
        column,
        reason: reason.to_string(),
    }
}

impl Directory {
    /// A new, empty directory. For a mutable directory, `keys` come from its [`Cap::DirWrite`];
    /// for an immutable one from [`DirKeys::immutable`].
    pub fn new(keys: DirKeys) -> Self {
        Self {
            keys,
            stats: Stats::default(),
            entries: Vec::new(),
            by_name: HashMap::new(),
            sealed: [None, None, None, None],
            reencrypted: Vec::new(),
        }
    }

    /// Mutable or immutable.
    pub fn kind(&self) -> DirKind {
        self.keys.kind()
    }

    /// The level of the keys held.
    pub fn level(&self) -> Level {
        self.keys.level()
    }

    /// Number of entries (known at every level).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the directory has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Subtree statistics (immutable directories).
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Sets the subtree statistics of an immutable directory being built.
    pub fn set_stats(&mut self, stats: Stats) {
        self.stats = stats;
    }

    /// The columns the last [`Self::to_bytes`] encrypted afresh (the others were reused).
    pub fn reencrypted_columns(&self) -> &[Column] {
        &self.reencrypted
    }

    /// The children's traversal caps (directories) and verifycaps (files), in entry order;
    /// literal children have none. Available at every level: this is what a traversal-cap
    /// holder walks.
    pub fn traverse_caps(&self) -> Result<Vec<Cap>, Error> {
        let mut out = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            if e.traverse.is_empty() {
                continue;
            }
            let cap =
                Cap::from_bytes(&e.traverse).map_err(|err| bad_cap(i, Column::Traverse, err))?;
            let ok = matches!(
                cap,
                Cap::ImmutableVerify(_)
                    | Cap::MutableVerify(_)
                    | Cap::DirTraverse(_)
                    | Cap::ImmutableDirTraverse(_)
            );
            if !ok {
                return Err(bad_cap(
                    i,
                    Column::Traverse,
                    format!("a {} does not belong here", cap.kind()),
                ));
            }
            out.push(cap);
        }
        Ok(out)
    }

    /// The names, in entry order (read level).
    pub fn names(&self) -> Result<Vec<&str>, Error> {
        self.entries
            .iter()
            .map(|e| e.name.as_deref().ok_or(self.not_permitted(Level::Read)))
            .collect()
    }

    fn not_permitted(&self, needed: Level) -> Error {
        Error::NotPermitted {
            needed,
            held: self.level(),
        }
    }

    fn entry_at(&self, i: usize) -> Result<Entry, Error> {
        let e = &self.entries[i];
        let (Some(name), Some(read)) = (&e.name, &e.read) else {
            return Err(self.not_permitted(Level::Read));
        };
        let (read_cap, used) = Cap::read_from(read).map_err(|err| bad_cap(i, Column::Read, err))?;
        let read_ok = matches!(
            read_cap,
            Cap::ImmutableRead(_)
                | Cap::Literal(_)
                | Cap::ImmutableDirRead(_)
                | Cap::MutableRead(_)
                | Cap::DirRead(_)
        );
        if !read_ok {
            return Err(bad_cap(
                i,
                Column::Read,
                format!("a {} does not belong here", read_cap.kind()),
            ));
        }
        let write_cap = match &e.write {
            Some(w) if !w.is_empty() => {
                let c = Cap::from_bytes(w).map_err(|err| bad_cap(i, Column::Write, err))?;
                if !matches!(c, Cap::MutableWrite(_) | Cap::DirWrite(_)) {
                    return Err(bad_cap(
                        i,
                        Column::Write,
                        format!("a {} does not belong here", c.kind()),
                    ));
                }
                Some(c)
            }
            _ => None,
        };
        Ok(Entry {
            name: name.clone(),
            read_cap,
            metadata: read[used..].to_vec(),
            write_cap,
        })
    }

    /// Every entry (read level; write caps only at write level).
    pub fn entries(&self) -> Result<Vec<Entry>, Error> {
        (0..self.entries.len()).map(|i| self.entry_at(i)).collect()
    }

    /// The entry called `name` (normalized to NFC first).
    pub fn get(&self, name: &str) -> Result<Entry, Error> {
        let i = self.position(name)?;
        self.entry_at(i)
    }

    fn position(&self, name: &str) -> Result<usize, Error> {
        if self.level() < Level::Read {
            return Err(self.not_permitted(Level::Read));
        }
        let n = normalize_name(name)?;
        self.by_name
            .get(&n)
            .copied()
            .ok_or(Error::NotFound { name: n })
    }

    fn require_modify(&self) -> Result<(), Error> {
        let needed = match self.kind() {
            DirKind::Mutable => Level::Write,
            // An immutable directory is built by whoever holds its read key, before upload.
            DirKind::Immutable => Level::Read,
        };
        if self.level() < needed {
            return Err(self.not_permitted(needed));
        }
        Ok(())
    }

    fn raw_for(&self, name: String, cap: &Cap, metadata: &[u8]) -> Result<Raw, Error> {
        if metadata.len() > MAX_METADATA_LEN {
            return Err(Error::MetadataTooLarge {
                len: metadata.len(),
                max: MAX_METADATA_LEN,
            });
        }
        let (traverse, mut read, write) = child_fields(self.kind(), cap)?;
        read.extend_from_slice(metadata);
        Ok(Raw {
            name: Some(name),
            traverse,
            read: Some(read),
            write: (self.kind() == DirKind::Mutable).then_some(write),
        })
    }

    /// Adds an entry; the child is given by the strongest cap the caller has (a write cap
    /// also stores the derived read and traversal caps). Fails if the name exists.
    pub fn add(&mut self, name: &str, cap: &Cap, metadata: &[u8]) -> Result<(), Error> {
        self.require_modify()?;
        let n = normalize_name(name)?;
        if self.by_name.contains_key(&n) {
            return Err(Error::AlreadyExists { name: n });
        }
        if self.entries.len() as u64 >= MAX_ENTRIES {
            return Err(Error::TooManyEntries {
                count: MAX_ENTRIES + 1,
                max: MAX_ENTRIES,
            });
        }
        let raw = self.raw_for(n.clone(), cap, metadata)?;
        self.by_name.insert(n, self.entries.len());
        self.entries.push(raw);
        Ok(())
    }

    /// Adds the entry, or replaces the child and metadata of an existing one in place.
    pub fn set(&mut self, name: &str, cap: &Cap, metadata: &[u8]) -> Result<(), Error> {
        self.require_modify()?;
        let n = normalize_name(name)?;
        match self.by_name.get(&n) {
            Some(&i) => {
                let raw = self.raw_for(n, cap, metadata)?;
                self.entries[i] = raw;
                Ok(())
            }
            None => self.add(&n, cap, metadata),
        }
    }

    /// Replaces an entry's metadata only.
    pub fn set_metadata(&mut self, name: &str, metadata: &[u8]) -> Result<(), Error> {
        self.require_modify()?;
        let i = self.position(name)?;
        let e = self.entry_at(i)?;
        let cap = e.write_cap.unwrap_or(e.read_cap);
        let n = e.name;
        self.entries[i] = self.raw_for(n, &cap, metadata)?;
        Ok(())
    }

    /// Removes an entry.
    pub fn remove(&mut self, name: &str) -> Result<(), Error> {
        self.require_modify()?;
        let i = self.position(name)?;
        self.entries.remove(i);
        self.reindex();
        Ok(())
    }

    /// Renames an entry (keeping its position). Fails if `new` exists.
    pub fn rename(&mut self, old: &str, new: &str) -> Result<(), Error> {
        self.require_modify()?;
        let i = self.position(old)?;
        let n = normalize_name(new)?;
        if self.by_name.contains_key(&n) {
            if self.by_name.get(&n) == Some(&i) {
                return Ok(());
            }
            return Err(Error::AlreadyExists { name: n });
        }
        self.entries[i].name = Some(n);
        self.reindex();
        Ok(())
    }

    fn reindex(&mut self) {
        self.by_name = self
            .entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.name.clone().map(|n| (n, i)))
            .collect();
    }

    /// Encodes the directory (see `docs/spec/dirnode.md`), with fresh random salts for the
    /// columns that changed.
    pub fn to_bytes(&mut self) -> Result<Vec<u8>, Error> {
        self.to_bytes_with(&mut |s: &mut [u8; 16]| getrandom::fill(s).map_err(|_| Error::Random))
    }

    /// [`Self::to_bytes`] with salts from `salt` (for deterministic tests and vectors).
    pub fn to_bytes_with(
        &mut self,
        salt: &mut dyn FnMut(&mut [u8; 16]) -> Result<(), Error>,
    ) -> Result<Vec<u8>, Error> {
        self.require_modify()?;
        let n = self.entries.len();
        let mut cols: [Vec<u8>; 4] = Default::default();
        let mut index = Vec::with_capacity(n * INDEX_ENTRY_LEN);
        for e in &self.entries {
            let fields: [&[u8]; 4] = [
                e.name.as_deref().map(str::as_bytes).unwrap_or_default(),
                &e.traverse,
                e.read.as_deref().unwrap_or_default(),
                e.write.as_deref().unwrap_or_default(),
            ];
            for (c, f) in fields.iter().enumerate() {
                let off = u32::try_from(cols[c].len()).map_err(|_| Error::TooLarge)?;
                let len = u32::try_from(f.len()).map_err(|_| Error::TooLarge)?;
                index.extend_from_slice(&off.to_be_bytes());
                index.extend_from_slice(&len.to_be_bytes());
                cols[c].extend_from_slice(f);
            }
        }
        let mut blobs: Vec<Vec<u8>> = Vec::with_capacity(4);
        self.reencrypted.clear();
        for (c, col) in Column::ALL.into_iter().enumerate() {
            let reuse = match &self.sealed[c] {
                Some((plain, blob)) if *plain == cols[c] => Some(blob.clone()),
                _ => None,
            };
            let blob = match reuse {
                Some(b) => b,
                None if cols[c].is_empty() => Vec::new(),
                None => {
                    let key = *self.keys.require(col)?;
                    let mut s = [0u8; 16];
                    salt(&mut s)?;
                    self.reencrypted.push(col);
                    seal(&key, col, &s, &cols[c])?
                }
            };
            blobs.push(blob);
        }
        let mut out = Vec::with_capacity(
            DIR_HEADER_LEN + index.len() + blobs.iter().map(Vec::len).sum::<usize>(),
        );
        out.extend_from_slice(&DIR_MAGIC);
        out.extend_from_slice(&DIR_VERSION.to_be_bytes());
        out.push(self.kind().byte());
        out.push(0);
        out.extend_from_slice(&u32::try_from(n).map_err(|_| Error::TooLarge)?.to_be_bytes());
        let stats = match self.kind() {
            DirKind::Immutable => self.stats,
            DirKind::Mutable => Stats::default(),
        };
        out.extend_from_slice(&stats.files.to_be_bytes());
        out.extend_from_slice(&stats.directories.to_be_bytes());
        out.extend_from_slice(&stats.bytes.to_be_bytes());
        let mut pos = DIR_HEADER_LEN + index.len();
        for b in &blobs {
            out.extend_from_slice(
                &u32::try_from(pos)
                    .map_err(|_| Error::TooLarge)?
                    .to_be_bytes(),
            );
            out.extend_from_slice(
                &u32::try_from(b.len())
                    .map_err(|_| Error::TooLarge)?
                    .to_be_bytes(),
            );
            pos += b.len();
        }
        u32::try_from(pos).map_err(|_| Error::TooLarge)?;
        out.extend_from_slice(&index);
        for b in &blobs {
            out.extend_from_slice(b);
        }
        for (c, (col, blob)) in cols.into_iter().zip(blobs).enumerate() {
            self.sealed[c] = Some((col, blob));
        }
        Ok(out)
    }

    /// Parses and decrypts a dirnode with the keys of a directory cap: every column those keys
    /// reach is authenticated (a wrong key is [`Error::Unauthenticated`]) and decrypted; the
    /// others stay sealed. Every structural error is reported, never a panic.
    pub fn parse(bytes: &[u8], keys: &DirKeys) -> Result<Self, Error> {
        let total = bytes.len() as u64;
        if bytes.len() < DIR_HEADER_LEN {
            if bytes.len() >= 8 && bytes[..8] != DIR_MAGIC {
                return Err(Error::BadMagic);
            }
            return Err(Error::Truncated {
                what: "header",
                needed: DIR_HEADER_LEN as u64,
                available: total,
            });
        }
        if bytes[..8] != DIR_MAGIC {
            return Err(Error::BadMagic);
        }
        let version = u16::from_be_bytes([bytes[8], bytes[9]]);
        if version != DIR_VERSION {
            return Err(Error::UnsupportedVersion { version });
        }
        let (kind_b, flags) = (bytes[10], bytes[11]);
        let kind = match (kind_b, flags) {
            (0, 0) => DirKind::Mutable,
            (1, 0) => DirKind::Immutable,
            _ => {
                return Err(Error::BadKind {
                    kind: kind_b,
                    flags,
                })
            }
        };
        if kind != keys.kind() {
            return Err(Error::WrongDirKind {
                expected: keys.kind().name(),
                found: kind.name(),
            });
        }
        let count = u64::from(u32_at(bytes, 12));
        if count > MAX_ENTRIES {
            return Err(Error::TooManyEntries {
                count,
                max: MAX_ENTRIES,
            });
        }
        let stats = Stats {
            files: u64_at(bytes, 16),
            directories: u64_at(bytes, 24),
            bytes: u64_at(bytes, 32),
        };
        let index_end = DIR_HEADER_LEN as u64 + count * INDEX_ENTRY_LEN as u64;
        if index_end > total {
            return Err(Error::Truncated {
                what: "index",
                needed: index_end,
                available: total,
            });
        }
        let mut blobs: Vec<&[u8]> = Vec::with_capacity(4);
        let mut pos = index_end;
        for (c, col) in Column::ALL.into_iter().enumerate() {
            let off = u64::from(u32_at(bytes, 40 + 8 * c));
            let len = u64::from(u32_at(bytes, 44 + 8 * c));
            if off != pos {
                return Err(Error::BadColumnTable {
                    column: col,
                    reason: "does not start where the previous part ends",
                });
            }
            if off + len > total {
                return Err(Error::Truncated {
                    what: "column",
                    needed: off + len,
                    available: total,
                });
            }
            if len != 0 && len < (SALT_LEN + MAC_LEN + 1) as u64 {
                return Err(Error::BadColumnTable {
                    column: col,
                    reason: "too short for salt and MAC",
                });
            }
            if col == Column::Write && kind == DirKind::Immutable && len != 0 {
                return Err(Error::BadColumnTable {
                    column: col,
                    reason: "an immutable directory has no write caps",
                });
            }
            // In range: checked against `total` just above.
            blobs.push(&bytes[off as usize..(off + len) as usize]);
            pos = off + len;
        }
        if pos != total {
            return Err(Error::TrailingBytes { extra: total - pos });
        }
        let mut plain: [Option<Vec<u8>>; 4] = Default::default();
        let mut sealed: [Option<(Vec<u8>, Vec<u8>)>; 4] = Default::default();
        for (c, col) in Column::ALL.into_iter().enumerate() {
            if let Some(key) = keys.column_key(col) {
                let p = open(key, col, blobs[c])?;
                sealed[c] = Some((p.clone(), blobs[c].to_vec()));
                plain[c] = Some(p);
            }
        }
        let n = count as usize;
        let mut entries = Vec::with_capacity(n);
        let mut by_name = HashMap::with_capacity(n);
        let index = &bytes[DIR_HEADER_LEN..index_end as usize];
        for i in 0..n {
            let rec = &index[i * INDEX_ENTRY_LEN..(i + 1) * INDEX_ENTRY_LEN];
            let mut fields: [Option<Vec<u8>>; 4] = Default::default();
            for (c, col) in Column::ALL.into_iter().enumerate() {
                let off = u32_at(rec, 8 * c) as usize;
                let len = u32_at(rec, 8 * c + 4) as usize;
                let col_len = blobs[c].len().saturating_sub(SALT_LEN + MAC_LEN);
                if off.checked_add(len).is_none_or(|e| e > col_len) {
                    return Err(Error::BadIndexEntry {
                        entry: i as u64,
                        column: col,
                    });
                }
                if let Some(p) = &plain[c] {
                    fields[c] = Some(p[off..off + len].to_vec());
                }
            }
            let [name, traverse, read, write] = fields;
            let name = match name {
                Some(b) => {
                    let s = String::from_utf8(b).map_err(|_| Error::BadName {
                        reason: "not UTF-8",
                    })?;
                    check_name(&s)?;
                    if !is_nfc(&s) {
                        return Err(Error::BadName {
                            reason: "not in Unicode NFC",
                        });
                    }
                    if by_name.insert(s.clone(), i).is_some() {
                        return Err(Error::DuplicateName { entry: i as u64 });
                    }
                    Some(s)
                }
                None => None,
            };
            if let Some(r) = &read {
                let ok = cap_len(r).is_some_and(|l| r.len() - l <= MAX_METADATA_LEN);
                if !ok {
                    return Err(bad_cap(i, Column::Read, "no valid read cap at the start"));
                }
            }
            entries.push(Raw {
                name,
                traverse: traverse.unwrap_or_default(),
                read,
                write,
            });
        }
        Ok(Self {
            keys: keys.clone(),
            stats,
            entries,
            by_name,
            sealed,
            reencrypted: Vec::new(),
        })
    }
}
