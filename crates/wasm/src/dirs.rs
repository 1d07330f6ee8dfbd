//! Directories in the tab: open a directory cap at its level, list it, create a child folder,
//! add a file, read a file — over a grid client whose transport talks to the storage servers
//! directly (in the browser: [`crate::grid`]'s `fetch` transport).
//!
//! Caps never leave the tab: the grid client sends storage indexes, share numbers, signed
//! (public-key) headers and ciphertext to the storage servers, nothing else. The listing is
//! handed to JavaScript as JSON text (see [`DirSession::open`] for its shape).

use bytes::Bytes;
use futures::stream::{self, LocalBoxStream, StreamExt};
use lafs_caps::{Cap, CapKind, DirWriteCap, ReadKey};
use lafs_client::{is_dir_cap, Client, Download, OpenedDir, ServerId, Upload, UploadOptions};
use lafs_dirnode::{Directory, Level};
use lafs_proto::ids::base32_decode;
use serde_json::{json, Value};

use crate::Error;

/// A directory or file session over one grid client. Cheap to clone.
#[derive(Clone)]
pub struct DirSession {
    client: Client,
}

impl core::fmt::Debug for DirSession {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DirSession").finish_non_exhaustive()
    }
}

/// Parses a cap's text (trimmed).
fn parse(text: &str) -> Result<Cap, Error> {
    Ok(text.trim().parse::<Cap>()?)
}

/// The write cap of a directory, or why there is none.
fn dir_write_cap(text: &str) -> Result<DirWriteCap, Error> {
    match parse(text)? {
        Cap::DirWrite(c) => Ok(c),
        other if is_dir_cap(&other) || is_verify_dir(&other) => Err(Error::Grid {
            code: "not-permitted",
            what: format!("a {} does not allow changing the directory", other.kind()),
        }),
        other => Err(Error::Grid {
            code: "not-a-directory",
            what: format!("a {} is not a directory cap", other.kind()),
        }),
    }
}

fn is_verify_dir(cap: &Cap) -> bool {
    matches!(cap.kind(), CapKind::DirVerify | CapKind::ImmutableDirVerify)
}

/// `"write"`, `"read"` or `"traverse"`.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::Write => "write",
        Level::Read => "read",
        Level::Traverse => "traverse",
    }
}

/// Whether a child cap (any level) names a directory.
fn child_is_dir(cap: &Cap) -> bool {
    is_dir_cap(cap) || is_verify_dir(cap)
}

/// Whether a child cap names a mutable file or directory.
fn child_is_mutable(cap: &Cap) -> bool {
    matches!(
        cap.kind(),
        CapKind::MutableWrite
            | CapKind::MutableRead
            | CapKind::MutableVerify
            | CapKind::DirWrite
            | CapKind::DirRead
            | CapKind::DirTraverse
            | CapKind::DirVerify
    )
}

/// One entry of a listing, as JSON (see [`DirSession::open`]).
fn entry_json(
    name: Option<&str>,
    cap: &Cap,
    metadata: Option<&[u8]>,
    write_cap: Option<&Cap>,
) -> Value {
    let meta: Value = metadata
        .and_then(|m| serde_json::from_slice(m).ok())
        .unwrap_or(Value::Null);
    let literal = match cap {
        Cap::Literal(l) => Some(l.data().len() as u64),
        _ => None,
    };
    let size = literal.or_else(|| metadata.and_then(lafs_client::metadata_size));
    let verify_cap = cap.verify_cap().map(|v| v.to_string());
    let shown = write_cap.unwrap_or(cap);
    json!({
        "name": name,
        "kind": if child_is_dir(cap) { "dir" } else { "file" },
        "mutable": child_is_mutable(cap),
        "literal": literal.is_some(),
        "writable": write_cap.is_some(),
        "cap": shown.to_string(),
        "capKind": shown.kind().to_string(),
        "verifyCap": verify_cap,
        "size": size,
        "metadata": meta,
    })
}

/// The listing of an opened directory at its level, as JSON.
fn listing_json(cap: &Cap, opened: &OpenedDir) -> Result<Value, Error> {
    let dir: &Directory = &opened.dir;
    let level = dir.level();
    let mut entries = Vec::new();
    if level >= Level::Read {
        for e in dir.entries().map_err(Error::from)? {
            entries.push(entry_json(
                Some(&e.name),
                &e.read_cap,
                Some(&e.metadata),
                e.write_cap.as_ref(),
            ));
        }
        entries.sort_by(|a, b| {
            let key = |v: &Value| {
                (
                    v["kind"] != "dir",
                    v["name"].as_str().unwrap_or_default().to_lowercase(),
                )
            };
            key(a).cmp(&key(b))
        });
    } else {
        for c in dir.traverse_caps().map_err(Error::from)? {
            entries.push(entry_json(None, &c, None, None));
        }
    }
    // A write cap of a mutable directory may change it; an immutable directory never changes
    // once stored (its creator's keys count as write level only while it is being built).
    let writable = matches!(cap, Cap::DirWrite(_));
    let stats = dir.stats();
    Ok(json!({
        "kind": if matches!(cap.kind(), CapKind::ImmutableDirRead | CapKind::ImmutableDirTraverse) {
            "immutable"
        } else {
            "mutable"
        },
        "capKind": cap.kind().to_string(),
        "level": if writable { "write" } else { level_name(level.min(Level::Read)) },
        "writable": writable,
        "count": dir.len(),
        "seqnum": opened.seqnum,
        "stats": { "files": stats.files, "directories": stats.directories, "bytes": stats.bytes },
        "entries": entries,
    }))
}

/// The storage servers an introducer lists (`GET <introducer>/v1/servers`: a snapshot of
/// signed announcements, `docs/spec/introducer.md`), as the gateway's `GET /grid/servers` JSON
/// (`{"servers": [{"id": <base32 node key>, "url": …}]}`). Every announcement's signature is
/// checked under its node key: one that fails (or a malformed one) is left out, so a tampered
/// list can drop servers but never add or redirect one. Fails if none is left.
pub fn introducer_server_list(body: &[u8]) -> Result<String, Error> {
    use lafs_proto::introducer::ServerMessage;
    let bad = |what: &str| Error::Grid {
        code: "no-servers",
        what: what.to_owned(),
    };
    let Ok(ServerMessage::Snapshot { servers }) = serde_json::from_slice::<ServerMessage>(body)
    else {
        return Err(bad(
            "the introducer's answer is not a list of storage servers",
        ));
    };
    let verified: Vec<Value> = servers
        .iter()
        .filter(|s| s.verify().is_ok())
        .map(|s| {
            json!({
                "id": lafs_proto::ids::base32_encode(&s.announcement.node_key.0),
                "url": s.announcement.url,
            })
        })
        .collect();
    if verified.is_empty() {
        return Err(bad(
            "the introducer lists no storage server with a valid signature",
        ));
    }
    Ok(json!({ "servers": verified }).to_string())
}

/// Parses the gateway's `GET /grid/servers` answer (`docs/spec/gateway.md`) into
/// (server id, base URL) pairs. Servers with a malformed id or a URL that is not `http(s)://`
/// are skipped; an answer with no usable server is an error (code `no-servers`).
pub fn parse_server_list(body: &[u8]) -> Result<Vec<(ServerId, String)>, Error> {
    let bad = |what: &str| Error::Grid {
        code: "no-servers",
        what: what.to_owned(),
    };
    let v: Value = serde_json::from_slice(body).map_err(|_| bad("the server list is not JSON"))?;
    let list = v
        .get("servers")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("the server list has no `servers` array"))?;
    let mut out: Vec<(ServerId, String)> = Vec::new();
    for s in list {
        let (Some(id), Some(url)) = (
            s.get("id").and_then(Value::as_str),
            s.get("url").and_then(Value::as_str),
        ) else {
            continue;
        };
        let Ok(id) = base32_decode::<32>(id, "server id") else {
            continue;
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            continue;
        }
        let id = ServerId(id);
        if out.iter().all(|(known, _)| *known != id) {
            out.push((id, url.to_owned()));
        }
    }
    if out.is_empty() {
        return Err(bad("the gateway knows no storage servers"));
    }
    Ok(out)
}

/// Splits a server's base URL into the URL to prefix request paths with (no trailing `/`)
/// and its path part (what a signed request's path starts with): `http://h:1/a/` →
/// (`http://h:1/a`, `/a`).
pub fn split_base(url: &str) -> (String, String) {
    let url = lafs_client::http::ServerUrl::parse(url);
    (url.base().to_owned(), url.prefix().to_owned())
}

impl DirSession {
    /// A session over `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The grid client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens a directory cap at its level and lists it, as JSON text:
    ///
    /// ```json
    /// {"kind": "mutable"|"immutable", "capKind": "directory writecap", "level": "write"|"read"|"traverse"|"verify",
    ///  "writable": bool, "count": entries, "seqnum": n|null, "stats": {"files","directories","bytes"},
    ///  "entries": [{"name": str|null, "kind": "dir"|"file", "mutable": bool, "literal": bool,
    ///               "writable": bool, "cap": str, "capKind": str, "verifyCap": str|null,
    ///               "size": n|null, "metadata": any}]}
    /// ```
    ///
    /// Entries are sorted folders first, then by name. `cap` is the strongest cap the holder
    /// may see: the child's write cap at write level (mutable children), its read cap at read
    /// level, its traversal cap or verifycap at traversal level (no names then: `name` is
    /// null, and literal children, which have no shares, are not listed but counted). A
    /// directory verifycap decrypts nothing: level `"verify"`, no entries, `count` null.
    pub async fn open(&self, cap_text: &str) -> Result<String, Error> {
        let cap = parse(cap_text)?;
        if is_verify_dir(&cap) {
            return Ok(json!({
                "kind": if cap.kind() == CapKind::ImmutableDirVerify { "immutable" } else { "mutable" },
                "capKind": cap.kind().to_string(),
                "level": "verify",
                "writable": false,
                "count": null,
                "seqnum": null,
                "stats": null,
                "entries": [],
            })
            .to_string());
        }
        if !is_dir_cap(&cap) {
            return Err(Error::Grid {
                code: "not-a-directory",
                what: format!("a {} is not a directory cap", cap.kind()),
            });
        }
        let opened = self.client.open_dir(&cap).await.map_err(Error::from)?;
        Ok(listing_json(&cap, &opened)?.to_string())
    }

    /// Creates an empty mutable directory (not linked anywhere); its write cap.
    pub async fn create_dir(&self) -> Result<String, Error> {
        Ok(self.client.mkdir().await.map_err(Error::from)?.to_string())
    }

    /// Creates an empty mutable directory and links it as `name` in the directory of
    /// `dir_cap` (a directory write cap). Fails with code `exists` if the name is taken.
    /// Returns the new directory's write cap.
    pub async fn mkdir(&self, dir_cap: &str, name: &str) -> Result<String, Error> {
        let parent = dir_write_cap(dir_cap)?;
        let name = lafs_dirnode::normalize_name(name).map_err(Error::from)?;
        // Refuse a taken name before creating anything on the grid.
        let opened = self
            .client
            .open_dir(&parent.clone().into())
            .await
            .map_err(Error::from)?;
        if opened.dir.get(&name).is_ok() {
            return Err(lafs_dirnode::Error::AlreadyExists { name }.into());
        }
        let child = self.client.mkdir().await.map_err(Error::from)?;
        let child_cap: Cap = child.clone().into();
        self.client
            .modify_dir(&parent, |d| d.add(&name, &child_cap, b"{}"))
            .await
            .map_err(Error::from)?;
        Ok(child.to_string())
    }

    /// Encrypts and uploads `data` as an immutable file (a literal cap for at most 55 bytes)
    /// and links it as `name` in the directory of `dir_cap` (a directory write cap), replacing
    /// a file of that name (a directory of that name is not replaced: code `exists`). The
    /// entry's metadata is `{"size": N}`. Returns the file's read cap.
    pub async fn add_file(&self, dir_cap: &str, name: &str, data: &[u8]) -> Result<String, Error> {
        let mut up = self.start_upload(dir_cap, name)?;
        up.write(data).await?;
        up.finish().await
    }

    /// Starts adding a file piece by piece ([`DirUpload::write`], then [`DirUpload::finish`]):
    /// memory does not grow with the file (each segment is encoded and sent as it fills). The
    /// cap and name are checked now; nothing is sent before the first write.
    pub fn start_upload(&self, dir_cap: &str, name: &str) -> Result<DirUpload, Error> {
        let parent = dir_write_cap(dir_cap)?;
        let name = lafs_dirnode::normalize_name(name).map_err(Error::from)?;
        Ok(DirUpload {
            client: self.client.clone(),
            link: Some((parent, name)),
            upload: Some(self.client.upload(UploadOptions::default())),
            size: 0,
        })
    }

    /// Links an immutable file already on the grid (`file_cap`: its read cap or literal cap,
    /// e.g. from an upload through the gateway's upload session) as `name` in the directory of
    /// `dir_cap` (a directory write cap), with metadata `{"size": size}`, replacing a file of
    /// that name (a directory of that name is not replaced: code `exists`). Returns the cap.
    pub async fn link_file(
        &self,
        dir_cap: &str,
        name: &str,
        file_cap: &str,
        size: u64,
    ) -> Result<String, Error> {
        let parent = dir_write_cap(dir_cap)?;
        let name = lafs_dirnode::normalize_name(name).map_err(Error::from)?;
        let cap = parse(file_cap)?;
        if !matches!(cap, Cap::ImmutableRead(_) | Cap::Literal(_)) {
            return Err(Error::Grid {
                code: "not-a-file",
                what: format!("a {} is not the read cap of an immutable file", cap.kind()),
            });
        }
        link_file(&self.client, &parent, &name, &cap, size).await?;
        Ok(cap.to_string())
    }

    /// Starts uploading a file that is not linked anywhere, piece by piece
    /// ([`DirUpload::write`], then [`DirUpload::finish`], which returns its read cap): encrypted,
    /// erasure-coded and sent as segments fill, so memory does not grow with the file.
    pub fn start_file_upload(&self) -> DirUpload {
        DirUpload {
            client: self.client.clone(),
            link: None,
            upload: Some(self.client.upload(UploadOptions::default())),
            size: 0,
        }
    }

    /// Opens a file cap for reading as streams ([`GridFile::stream`]): an immutable readcap or
    /// literal cap (nothing is read but the shares' trailers, checked against the cap), or a
    /// mutable file's write or read cap (its latest version, read whole now: mutable files are
    /// small).
    pub async fn open_file(&self, cap_text: &str) -> Result<GridFile, Error> {
        let cap = parse(cap_text)?;
        match &cap {
            Cap::ImmutableRead(c) => {
                // The ciphertext, verified against the verifycap (every hash the format has is
                // over ciphertext), decrypted piece by piece by the reader of the stream.
                let verify = Cap::ImmutableVerify(c.verify_cap());
                let d = self.client.open(&verify).await.map_err(Error::from)?;
                Ok(GridFile {
                    size: d.size(),
                    source: Source::Shares {
                        client: self.client.clone(),
                        verify,
                        key: c.key().clone(),
                        opened: Some(Box::new(d)),
                    },
                })
            }
            Cap::Literal(l) => {
                let data = Bytes::copy_from_slice(l.data());
                Ok(GridFile {
                    size: data.len() as u64,
                    source: Source::Whole(data),
                })
            }
            Cap::MutableWrite(_) | Cap::MutableRead(_) => {
                let data = Bytes::from(self.read_file(cap_text).await?);
                Ok(GridFile {
                    size: data.len() as u64,
                    source: Source::Whole(data),
                })
            }
            other => Err(Error::Grid {
                code: "not-a-file",
                what: format!("a {} does not read a file", other.kind()),
            }),
        }
    }

    /// The whole contents of a file cap: an immutable readcap or literal cap (verified and
    /// decrypted), or a mutable file's write or read cap (its latest version).
    pub async fn read_file(&self, cap_text: &str) -> Result<Vec<u8>, Error> {
        let cap = parse(cap_text)?;
        match &cap {
            Cap::MutableWrite(c) => Ok(self
                .client
                .read_mutable(&c.read_cap())
                .await
                .map_err(Error::from)?
                .data),
            Cap::MutableRead(c) => Ok(self.client.read_mutable(c).await.map_err(Error::from)?.data),
            Cap::ImmutableRead(_) | Cap::Literal(_) => {
                let mut d = self.client.open(&cap).await.map_err(Error::from)?;
                Ok(d.read_all().await.map_err(Error::from)?)
            }
            other => Err(Error::Grid {
                code: "not-a-file",
                what: format!("a {} does not read a file", other.kind()),
            }),
        }
    }
}

/// A file opened for reading ([`DirSession::open_file`]): its size, and any byte range of it
/// as a stream of verified, decrypted pieces.
pub struct GridFile {
    size: u64,
    source: Source,
}

enum Source {
    /// An immutable file: its ciphertext read from the shares as a stream is polled.
    Shares {
        client: Client,
        /// The file's verifycap (as a [`Cap`]): what the download is opened with.
        verify: Cap,
        /// The file's key, for decrypting the verified ciphertext.
        key: ReadKey,
        /// The download opened by [`DirSession::open_file`], used by the first stream.
        opened: Option<Box<Download>>,
    },
    /// A literal or mutable file's contents, read whole.
    Whole(Bytes),
}

/// Verified ciphertext of a byte range, piece by piece, with each piece's file offset
/// ([`GridFile::ciphertext`]).
pub type CiphertextPieces = LocalBoxStream<'static, Result<(u64, Bytes), Error>>;

impl core::fmt::Debug for GridFile {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GridFile")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl GridFile {
    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes `[start, end)` of the file (clamped to it), in order, as pieces of at most one
    /// segment: every byte is checked against the cap before it is yielded (and decrypted
    /// here, in Rust), and a piece that fails ends the stream with the error (code
    /// `integrity` when no k good shares remain). Streams are independent: the first one uses
    /// the download opened with the file, each later one opens its own (one round trip to the
    /// servers before its first byte). Memory is that of one download (a few segments) per
    /// stream being read, whatever the range.
    pub fn stream(
        &mut self,
        start: u64,
        end: u64,
    ) -> LocalBoxStream<'static, Result<Bytes, Error>> {
        match self.ciphertext(start, end) {
            Ok((pieces, key)) => pieces
                .map(move |piece| {
                    let (offset, ct) = piece?;
                    let mut buf = ct.to_vec();
                    lafs_codec::decrypt_at(&key, offset, &mut buf).map_err(Error::from)?;
                    Ok(Bytes::from(buf))
                })
                .boxed_local(),
            Err(plain) => plain,
        }
    }

    /// For a file read from shares: its verified **ciphertext** of bytes `[start, end)`
    /// (clamped), each piece with its file offset, and the key that decrypts it (AES-128-CTR,
    /// `lafs_codec::decrypt_at`'s counter layout), for a caller that decrypts elsewhere (the
    /// browser's WebCrypto). A literal or mutable file has no ciphertext here: `Err` holds its
    /// plaintext stream instead. Otherwise as [`Self::stream`].
    pub fn ciphertext(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<(CiphertextPieces, ReadKey), LocalBoxStream<'static, Result<Bytes, Error>>> {
        let end = end.min(self.size);
        let start = start.min(end);
        match &mut self.source {
            Source::Whole(data) => {
                let piece = data.slice(start as usize..end as usize);
                Err(stream::iter((!piece.is_empty()).then_some(Ok(piece))).boxed_local())
            }
            Source::Shares {
                client,
                verify,
                key,
                opened,
            } => {
                let first = opened.take();
                let client = client.clone();
                let verify = verify.clone();
                let pieces = stream::once(async move {
                    let mut d = match first {
                        Some(d) => *d,
                        None => client.open(&verify).await.map_err(Error::from)?,
                    };
                    d.seek(start..end);
                    Ok::<_, Error>(d.into_stream().map(|r| r.map_err(Error::from)))
                })
                .map(|opened| match opened {
                    Ok(s) => s.boxed_local(),
                    Err(e) => stream::iter([Err(e)]).boxed_local(),
                })
                .flatten()
                .scan(start, |pos, piece| {
                    let out = piece.map(|b| {
                        let at = *pos;
                        *pos += b.len() as u64;
                        (at, b)
                    });
                    core::future::ready(Some(out))
                })
                .boxed_local();
                Ok((pieces, key.clone()))
            }
        }
    }
}

/// A file being uploaded ([`DirSession::start_file_upload`]) or added to a directory
/// ([`DirSession::start_upload`]).
pub struct DirUpload {
    client: Client,
    /// The directory and name to link the file as, if any.
    link: Option<(DirWriteCap, String)>,
    upload: Option<Upload>,
    size: u64,
}

impl core::fmt::Debug for DirUpload {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DirUpload")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl DirUpload {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends `data` to the file: encrypted, erasure-coded and sent as segments fill.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        let up = self.upload.as_mut().ok_or(Error::InvalidUse)?;
        up.write(data).await.map_err(Error::from)?;
        self.size += data.len() as u64;
        Ok(())
    }

    /// Finishes the upload and, for [`DirSession::start_upload`], links the file into the
    /// directory (metadata `{"size": N}`);
    /// returns its read cap. A directory of the same name is not replaced (code `exists`).
    pub async fn finish(&mut self) -> Result<String, Error> {
        let mut up = self.upload.take().ok_or(Error::InvalidUse)?;
        let cap = up.finish().await.map_err(Error::from)?.cap;
        if let Some((parent, name)) = &self.link {
            link_file(&self.client, parent, name, &cap, self.size).await?;
        }
        Ok(cap.to_string())
    }
}

/// Links file `cap` as `name` (already normalized) in directory `parent` with metadata
/// `{"size": size}`, replacing a file of that name but never a directory (code `exists`).
async fn link_file(
    client: &Client,
    parent: &DirWriteCap,
    name: &str,
    cap: &Cap,
    size: u64,
) -> Result<(), Error> {
    let meta = lafs_client::size_metadata(size);
    client
        .modify_dir(parent, |d| {
            if let Ok(existing) = d.get(name) {
                if child_is_dir(&existing.read_cap) {
                    return Err(lafs_dirnode::Error::AlreadyExists {
                        name: name.to_owned(),
                    });
                }
            }
            d.set(name, cap, &meta)
        })
        .await
        .map_err(Error::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use futures::executor::block_on;
    use lafs_caps::DirReadCap;
    use lafs_client::sim::SimGrid;
    use lafs_client::ClientConfig;

    use super::*;

    fn session() -> DirSession {
        let grid = Arc::new(SimGrid::new(10, 7));
        DirSession::new(Client::new(grid, ClientConfig::default()))
    }

    fn listing(s: &DirSession, cap: &str) -> Value {
        serde_json::from_str(&block_on(s.open(cap)).unwrap()).unwrap()
    }

    fn names(v: &Value) -> Vec<String> {
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    #[test]
    fn write_read_traverse_and_verify_levels() {
        let s = session();
        let root = block_on(s.create_dir()).unwrap();
        assert!(root.starts_with("lafsdw1"), "{root}");
        let sub = block_on(s.mkdir(&root, "photos")).unwrap();
        let data = vec![7u8; 5000];
        let file = block_on(s.add_file(&root, "notes.txt", &data)).unwrap();
        assert!(file.starts_with("lafsr1"), "{file}");
        block_on(s.add_file(&root, "a-tiny", b"hi")).unwrap();
        block_on(s.add_file(&sub, "inside.bin", &[1, 2, 3])).unwrap();

        let w = listing(&s, &root);
        assert_eq!(w["level"], "write");
        assert_eq!(w["writable"], true);
        assert_eq!(w["count"], 3);
        // Folders first, then names.
        assert_eq!(names(&w), ["photos", "a-tiny", "notes.txt"]);
        let photos = &w["entries"][0];
        assert_eq!(photos["kind"], "dir");
        assert_eq!(photos["cap"], sub.as_str());
        assert_eq!(w["entries"][1]["literal"], true);
        assert_eq!(w["entries"][1]["size"], 2);
        let notes = &w["entries"][2];
        assert_eq!(notes["kind"], "file");
        assert_eq!(notes["size"], 5000);
        assert_eq!(notes["cap"], file.as_str());
        assert!(notes["verifyCap"].as_str().unwrap().starts_with("lafsv1"));
        assert_eq!(block_on(s.read_file(&file)).unwrap(), data);

        // Read level: read caps only, no writing.
        let root_cap: DirWriteCap = root.parse().unwrap();
        let read: DirReadCap = root_cap.read_cap();
        let r = listing(&s, &read.to_string());
        assert_eq!(r["level"], "read");
        assert_eq!(r["writable"], false);
        assert_eq!(names(&r), names(&w));
        let sub_read = r["entries"][0]["cap"].as_str().unwrap();
        assert!(sub_read.starts_with("lafsdr1"), "{sub_read}");
        assert_eq!(names(&listing(&s, sub_read)), ["inside.bin"]);
        let e = block_on(s.mkdir(&read.to_string(), "x")).unwrap_err();
        assert_eq!(e.code(), "not-permitted");
        let e = block_on(s.add_file(&read.to_string(), "x", b"data")).unwrap_err();
        assert_eq!(e.code(), "not-permitted");

        // Traversal level: structure, no names, no read caps.
        let t = read.traverse_cap().to_string();
        let tl = listing(&s, &t);
        assert_eq!(tl["level"], "traverse");
        assert_eq!(tl["count"], 3);
        let entries = tl["entries"].as_array().unwrap();
        // The literal child has no shares and no traversal cap.
        assert_eq!(entries.len(), 2);
        for e in entries {
            assert!(e["name"].is_null());
            let cap = e["cap"].as_str().unwrap();
            assert!(
                cap.starts_with("lafsdt1") || cap.starts_with("lafsv1"),
                "{cap}"
            );
        }
        let text = tl.to_string();
        assert!(!text.contains("notes.txt") && !text.contains("photos"));
        assert!(!text.contains(&file) && !text.contains(&sub));

        // Verify level: nothing decrypted.
        let v = read.traverse_cap().verify_cap().to_string();
        let vl = listing(&s, &v);
        assert_eq!(vl["level"], "verify");
        assert!(vl["entries"].as_array().unwrap().is_empty());
    }

    #[test]
    fn introducer_lists_keep_only_signed_servers() {
        use ed25519_dalek::SigningKey;
        use lafs_proto::introducer::{Announcement, NodeKey, ServerMessage};
        let announce = |seed: u8, url: &str| {
            let key = SigningKey::from_bytes(&[seed; 32]);
            Announcement {
                node_key: NodeKey::from_signing_key(&key),
                seqnum: 1,
                timestamp_ms: 1_700_000_000_000,
                protocol: 1,
                url: url.to_owned(),
                capacity: 100,
                available: 50,
                nickname: format!("s{seed}"),
            }
            .sign(&key)
            .unwrap()
        };
        let good = announce(1, "http://127.0.0.1:4001");
        let mut forged = announce(2, "http://127.0.0.1:4002");
        forged.announcement.url = "http://evil.example:80".into();
        let body = serde_json::to_vec(&ServerMessage::Snapshot {
            servers: vec![good.clone(), forged],
        })
        .unwrap();
        let list = introducer_server_list(&body).unwrap();
        let parsed = parse_server_list(list.as_bytes()).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].0 .0, good.announcement.node_key.0);
        assert_eq!(parsed[0].1, "http://127.0.0.1:4001");
        // Nothing valid, or not a snapshot at all: a clear error.
        let only_forged = announce(3, "http://127.0.0.1:4003");
        let mut f = only_forged;
        f.signature.0[0] ^= 1;
        let body = serde_json::to_vec(&ServerMessage::Snapshot { servers: vec![f] }).unwrap();
        assert_eq!(
            introducer_server_list(&body).unwrap_err().code(),
            "no-servers"
        );
        assert_eq!(
            introducer_server_list(b"{}").unwrap_err().code(),
            "no-servers"
        );
        assert_eq!(
            introducer_server_list(b"not json").unwrap_err().code(),
            "no-servers"
        );
    }

    #[test]
    fn server_list_and_base_urls() {
        let a = ServerId([1; 32]);
        let b = ServerId([2; 32]);
        let body = json!({"servers": [
            {"id": a.to_string(), "url": "http://127.0.0.1:1"},
            {"id": "not base32", "url": "http://127.0.0.1:9"},
            {"id": b.to_string(), "url": "javascript:alert(1)"},
            {"id": b.to_string(), "url": "https://s.example/lafs/"},
            {"id": b.to_string(), "url": "https://other.example"},
        ]})
        .to_string();
        let list = parse_server_list(body.as_bytes()).unwrap();
        assert_eq!(
            list,
            [
                (a, "http://127.0.0.1:1".to_owned()),
                (b, "https://s.example/lafs/".to_owned())
            ]
        );
        for bad in [
            "",
            "{}",
            r#"{"servers": []}"#,
            r#"{"servers": [{"id": 1}]}"#,
        ] {
            assert_eq!(
                parse_server_list(bad.as_bytes()).unwrap_err().code(),
                "no-servers"
            );
        }
        assert_eq!(
            split_base("http://127.0.0.1:1"),
            ("http://127.0.0.1:1".to_owned(), String::new())
        );
        assert_eq!(
            split_base("https://s.example/lafs/"),
            ("https://s.example/lafs".to_owned(), "/lafs".to_owned())
        );
    }

    #[test]
    fn names_and_conflicts() {
        let s = session();
        let root = block_on(s.create_dir()).unwrap();
        block_on(s.mkdir(&root, "docs")).unwrap();
        assert_eq!(
            block_on(s.mkdir(&root, "docs")).unwrap_err().code(),
            "exists"
        );
        // A file does not replace a folder; it does replace a file.
        assert_eq!(
            block_on(s.add_file(&root, "docs", &[0; 100]))
                .unwrap_err()
                .code(),
            "exists"
        );
        let first = block_on(s.add_file(&root, "f", &[1; 100])).unwrap();
        let second = block_on(s.add_file(&root, "f", &[2; 100])).unwrap();
        assert_ne!(first, second);
        let l = listing(&s, &root);
        assert_eq!(l["count"], 2);
        assert_eq!(l["entries"][1]["cap"], second.as_str());
        assert_eq!(
            block_on(s.mkdir(&root, "a/b")).unwrap_err().code(),
            "bad-name"
        );
        assert_eq!(block_on(s.mkdir(&root, "")).unwrap_err().code(), "bad-name");
        // Not a directory.
        assert_eq!(
            block_on(s.open(&first)).unwrap_err().code(),
            "not-a-directory"
        );
        assert_eq!(
            block_on(s.mkdir(&first, "x")).unwrap_err().code(),
            "not-a-directory"
        );
        assert_eq!(
            block_on(s.read_file(&root)).unwrap_err().code(),
            "not-a-file"
        );
    }

    #[test]
    fn piecewise_upload_into_a_directory() {
        let s = session();
        let root = block_on(s.create_dir()).unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut up = s.start_upload(&root, "big.bin").unwrap();
        for chunk in data.chunks(700_000) {
            block_on(up.write(chunk)).unwrap();
        }
        assert_eq!(up.size(), 3_000_000);
        let cap = block_on(up.finish()).unwrap();
        assert_eq!(block_on(up.finish()).unwrap_err().code(), "invalid-use");
        let l = listing(&s, &root);
        assert_eq!(l["entries"][0]["size"], 3_000_000);
        assert_eq!(l["entries"][0]["cap"], cap.as_str());
        assert_eq!(block_on(s.read_file(&cap)).unwrap(), data);
        // The name and the cap are checked before anything is sent.
        assert_eq!(s.start_upload(&root, "a/b").unwrap_err().code(), "bad-name");
        assert_eq!(
            s.start_upload(&cap, "x").unwrap_err().code(),
            "not-a-directory"
        );
    }

    #[test]
    fn a_file_already_on_the_grid_is_linked() {
        let s = session();
        let root = block_on(s.create_dir()).unwrap();
        let other = block_on(s.create_dir()).unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        // Uploaded elsewhere (here: into another directory), then linked by its cap.
        let cap = block_on(s.add_file(&other, "x", &data)).unwrap();
        let linked =
            block_on(s.link_file(&root, "copy.bin", &format!(" {cap}\n"), 200_000)).unwrap();
        assert_eq!(linked, cap);
        let l = listing(&s, &root);
        assert_eq!(names(&l), ["copy.bin"]);
        assert_eq!(l["entries"][0]["size"], 200_000);
        assert_eq!(l["entries"][0]["cap"], cap.as_str());
        assert_eq!(block_on(s.read_file(&cap)).unwrap(), data);
        // A literal cap links too; a file replaces a file of the same name, never a folder.
        let tiny = block_on(s.add_file(&other, "t", b"hi")).unwrap();
        block_on(s.link_file(&root, "copy.bin", &tiny, 2)).unwrap();
        assert_eq!(listing(&s, &root)["entries"][0]["cap"], tiny.as_str());
        block_on(s.mkdir(&root, "sub")).unwrap();
        let e = block_on(s.link_file(&root, "sub", &cap, 200_000)).unwrap_err();
        assert_eq!(e.code(), "exists");
        // Only an immutable file's cap, only into a writable directory, only a good name.
        let e = block_on(s.link_file(&root, "d", &other, 0)).unwrap_err();
        assert_eq!(e.code(), "not-a-file");
        let e = block_on(s.link_file(&root, "d", "lafsr1garbage", 0)).unwrap_err();
        assert_ne!(e.code(), "not-a-file");
        let read = root.parse::<DirWriteCap>().unwrap().read_cap().to_string();
        let e = block_on(s.link_file(&read, "d", &cap, 1)).unwrap_err();
        assert_eq!(e.code(), "not-permitted");
        let e = block_on(s.link_file(&root, "a/b", &cap, 1)).unwrap_err();
        assert_eq!(e.code(), "bad-name");
        assert_eq!(names(&listing(&s, &root)), ["sub", "copy.bin"]);
    }

    fn collect(f: &mut GridFile, start: u64, end: u64) -> Result<Vec<u8>, Error> {
        block_on(async {
            let mut out = Vec::new();
            let mut s = f.stream(start, end);
            while let Some(piece) = s.next().await {
                let piece = piece?;
                assert!(!piece.is_empty());
                out.extend_from_slice(&piece);
            }
            Ok(out)
        })
    }

    #[test]
    fn files_are_streamed_by_range_and_uploaded_unlinked() {
        let s = session();
        let data: Vec<u8> = (0..2_500_000u32).map(|i| (i % 241) as u8).collect();
        let mut up = s.start_file_upload();
        for chunk in data.chunks(1 << 20) {
            block_on(up.write(chunk)).unwrap();
        }
        let cap = block_on(up.finish()).unwrap();
        assert!(cap.starts_with("lafsr1"), "{cap}");
        let mut f = block_on(s.open_file(&cap)).unwrap();
        assert_eq!(f.size(), 2_500_000);
        assert_eq!(collect(&mut f, 0, u64::MAX).unwrap(), data);
        // Later streams open their own download; ranges are clamped.
        assert_eq!(
            collect(&mut f, 1_048_000, 1_049_000).unwrap(),
            &data[1_048_000..1_049_000]
        );
        assert_eq!(
            collect(&mut f, 2_400_000, 9_000_000).unwrap(),
            &data[2_400_000..]
        );
        assert!(collect(&mut f, 7, 7).unwrap().is_empty());
        assert!(collect(&mut f, 3_000_000, 4_000_000).unwrap().is_empty());
        // Two streams at once are independent.
        let (mut a, mut b) = (f.stream(0, 10), f.stream(100, 110));
        let (x, y) = block_on(async { (a.next().await, b.next().await) });
        assert_eq!(&x.unwrap().unwrap()[..], &data[..10]);
        assert_eq!(&y.unwrap().unwrap()[..], &data[100..110]);

        // A literal cap, a mutable file (read whole), and caps that read no file.
        let mut lit =
            block_on(s.open_file(&block_on(s.start_file_upload().finish()).unwrap())).unwrap();
        assert_eq!(lit.size(), 0);
        assert!(collect(&mut lit, 0, 10).unwrap().is_empty());
        let root = block_on(s.create_dir()).unwrap();
        let e = block_on(s.open_file(&root)).unwrap_err();
        assert_eq!(e.code(), "not-a-file");
        assert!(block_on(s.open_file("lafsr1nonsense")).is_err());
        // The file is not linked anywhere.
        assert_eq!(listing(&s, &root)["count"], 0);
    }

    #[test]
    fn immutable_directory_is_read_only() {
        let s = session();
        let file = block_on(s.client().upload_bytes(&[5u8; 3000], Default::default()))
            .unwrap()
            .cap;
        let dir = block_on(s.client().mkdir_immutable(&[(
            "f".to_owned(),
            file.clone(),
            b"{}".to_vec(),
        )]))
        .unwrap();
        let l = listing(&s, &dir.to_string());
        assert_eq!(l["kind"], "immutable");
        assert_eq!(l["level"], "read");
        assert_eq!(l["writable"], false);
        assert_eq!(names(&l), ["f"]);
        assert_eq!(l["entries"][0]["size"], Value::Null);
        assert_eq!(
            block_on(s.mkdir(&dir.to_string(), "x")).unwrap_err().code(),
            "not-permitted"
        );
    }

    #[test]
    fn mutable_file_children_are_read() {
        let s = session();
        let root = block_on(s.create_dir()).unwrap();
        let m = block_on(s.client().create_mutable(b"version one of a mutable file")).unwrap();
        let root_cap: DirWriteCap = root.parse().unwrap();
        block_on(s.client().dir_set(&root_cap, "m", &m.clone().into(), b"{}")).unwrap();
        let l = listing(&s, &root);
        assert_eq!(l["entries"][0]["mutable"], true);
        assert_eq!(l["entries"][0]["writable"], true);
        let cap = l["entries"][0]["cap"].as_str().unwrap();
        assert_eq!(
            block_on(s.read_file(cap)).unwrap(),
            b"version one of a mutable file"
        );
        let r = listing(&s, &root_cap.read_cap().to_string());
        let rcap = r["entries"][0]["cap"].as_str().unwrap();
        assert!(rcap.starts_with("lafsmr1"), "{rcap}");
        assert_eq!(
            block_on(s.read_file(rcap)).unwrap(),
            b"version one of a mutable file"
        );
        // Opened as a file: read whole, then streamed by range like any other.
        for c in [cap, rcap] {
            let mut f = block_on(s.open_file(c)).unwrap();
            assert_eq!(f.size(), 29);
            assert_eq!(
                collect(&mut f, 0, u64::MAX).unwrap(),
                b"version one of a mutable file"
            );
            assert_eq!(collect(&mut f, 8, 11).unwrap(), b"one");
            assert!(collect(&mut f, 40, 50).unwrap().is_empty());
        }
    }
}
