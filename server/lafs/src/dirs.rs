//! Directory commands: `lafs mkdir`, `ls`, `cp`, `mv`, `rm`, `ln`, `alias`.
//!
//! A grid path is `ALIAS:path/to/x` (an alias from `lafs alias add`, kept in the node's
//! `private/aliases`) or `CAP:path/to/x` / `CAP/path/to/x` (any directory cap). `cp` treats an
//! argument with a `:` before its first `/`, or starting with a cap, as a grid path, anything
//! else as a local path.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{MultiProgress, ProgressBar};
use lafs_caps::{Cap, DirWriteCap};
use lafs_client::{
    is_dir_cap, metadata_size, size_metadata, Client, ClientConfig, UploadOptions, UploadProgress,
};
use lafs_codec::Params;

use crate::node_client::{bars, byte_bar, connect, default_node_dir, GridArgs};

/// Options of the directory commands.
#[derive(Debug, Args)]
pub(crate) struct DirGrid {
    /// Shares needed to read (new files and directories).
    #[arg(short = 'k', long, default_value_t = 3)]
    pub k: u16,
    /// Shares written.
    #[arg(short = 'n', long, default_value_t = 10)]
    pub n: u16,
    /// Servers-of-happiness threshold for new immutable files.
    #[arg(long, default_value_t = 7)]
    pub happy: u16,
    #[command(flatten)]
    pub grid: GridArgs,
}

/// `lafs mkdir`.
#[derive(Debug, Args)]
pub(crate) struct MkdirArgs {
    /// Where to link the new directory (`ALIAS:path/name`); omitted: just print its cap.
    pub target: Option<String>,
    /// Snapshot this local directory tree as an immutable directory (files uploaded).
    #[arg(long, value_name = "LOCAL_DIR")]
    pub immutable: Option<PathBuf>,
    #[command(flatten)]
    pub opts: DirGrid,
}

/// `lafs ls`.
#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// Directory to list (`ALIAS:path` or a cap).
    pub target: String,
    /// One line per entry: kind (dir, file, mutable file), size in bytes where the entry's
    /// metadata or a literal cap tells it (else `-`), name.
    #[arg(short = 'l', long)]
    pub long: bool,
    #[command(flatten)]
    pub opts: DirGrid,
}

/// `lafs cp`.
#[derive(Debug, Args)]
pub(crate) struct CpArgs {
    /// Source (local path or grid path).
    pub from: String,
    /// Destination (local path or grid path); an existing directory receives the source's name.
    pub to: String,
    /// Copy directories recursively.
    #[arg(short, long)]
    pub recursive: bool,
    #[command(flatten)]
    pub opts: DirGrid,
}

/// `lafs mv`, `lafs ln`.
#[derive(Debug, Args)]
pub(crate) struct TwoPaths {
    /// Existing grid path.
    pub from: String,
    /// New grid path.
    pub to: String,
    #[command(flatten)]
    pub opts: DirGrid,
}

/// `lafs rm`.
#[derive(Debug, Args)]
pub(crate) struct RmArgs {
    /// Grid path of the entry to unlink.
    pub target: String,
    #[command(flatten)]
    pub opts: DirGrid,
}

/// `lafs alias`.
#[derive(Debug, Subcommand)]
pub(crate) enum AliasCmd {
    /// Remember CAP under NAME (then `NAME:path` works everywhere).
    Add {
        /// Alias name (letters, digits, `-`, `_`).
        name: String,
        /// A directory cap.
        cap: String,
        #[command(flatten)]
        grid: GridArgs,
    },
    /// List the aliases.
    List {
        #[command(flatten)]
        grid: GridArgs,
    },
}

fn node_dir(g: &GridArgs) -> Result<PathBuf> {
    match &g.node {
        Some(d) => Ok(d.clone()),
        None => default_node_dir(),
    }
}

fn aliases_path(g: &GridArgs) -> Result<PathBuf> {
    Ok(node_dir(g)?.join("private").join("aliases"))
}

fn load_aliases(g: &GridArgs) -> Result<BTreeMap<String, String>> {
    let p = aliases_path(g)?;
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(a, b)| (a.trim().to_owned(), b.trim().to_owned()))
        .collect())
}

pub(crate) fn alias(cmd: &AliasCmd) -> Result<()> {
    match cmd {
        AliasCmd::Add { name, cap, grid } => {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                bail!("alias names use letters, digits, '-' and '_'");
            }
            let parsed: Cap = cap.trim().parse().context("parsing the cap")?;
            if !is_dir_cap(&parsed) {
                bail!("an alias must name a directory cap");
            }
            let mut all = load_aliases(grid)?;
            all.insert(name.clone(), parsed.to_string());
            let p = aliases_path(grid)?;
            let text: String = all.iter().map(|(a, c)| format!("{a}: {c}\n")).collect();
            let tmp = p.with_extension("tmp");
            std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &p).with_context(|| format!("writing {}", p.display()))?;
            Ok(())
        }
        AliasCmd::List { grid } => {
            for (a, c) in load_aliases(grid)? {
                println!("{a}: {c}");
            }
            Ok(())
        }
    }
}

/// A grid path: root cap and the path below it.
fn grid_path(text: &str, g: &GridArgs) -> Result<Option<(Cap, String)>> {
    if let Ok(cap) = text.parse::<Cap>() {
        return Ok(Some((cap, String::new())));
    }
    let (head, rest) = match (text.find(':'), text.find('/')) {
        (Some(c), Some(s)) if c < s => (&text[..c], &text[c + 1..]),
        (Some(c), None) => (&text[..c], &text[c + 1..]),
        (_, Some(s)) => (&text[..s], &text[s + 1..]),
        (None, None) => return Ok(None),
    };
    if let Ok(cap) = head.parse::<Cap>() {
        return Ok(Some((cap, rest.to_owned())));
    }
    if text.contains(':') && (text.find(':') < text.find('/') || !text.contains('/')) {
        let aliases = load_aliases(g)?;
        let cap = aliases
            .get(head)
            .ok_or_else(|| anyhow!("unknown alias {head:?} (see `lafs alias list`)"))?;
        return Ok(Some((cap.parse()?, rest.to_owned())));
    }
    Ok(None)
}

fn require_grid(text: &str, g: &GridArgs) -> Result<(Cap, String)> {
    grid_path(text, g)?
        .ok_or_else(|| anyhow!("{text:?} is not a grid path (ALIAS:path or CAP/path)"))
}

fn split(path: &str) -> Result<(String, String)> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let (name, dirs) = parts
        .split_last()
        .ok_or_else(|| anyhow!("the path names no entry"))?;
    Ok((dirs.join("/"), (*name).to_owned()))
}

/// The object at `path` under `root` (as [`Client::resolve`]) and its directory entry's
/// metadata (`{}` for the root itself), so that a new link keeps what the entry recorded.
async fn resolve_entry(c: &Client, root: &Cap, path: &str) -> Result<(Cap, Vec<u8>)> {
    let Ok((parent, name)) = split(path) else {
        return Ok((root.clone(), b"{}".to_vec()));
    };
    let dir = c.resolve(root, &parent).await?;
    let entry = c.open_dir(&dir).await?.dir.get(&name)?;
    Ok((entry.write_cap.unwrap_or(entry.read_cap), entry.metadata))
}

async fn writable(c: &Client, root: &Cap, path: &str) -> Result<DirWriteCap> {
    let found = c.resolve(root, path).await.with_context(|| {
        format!("the directory {path:?} could not be opened (lafs mkdir creates directories)")
    })?;
    match found {
        Cap::DirWrite(w) => Ok(w),
        other if is_dir_cap(&other) => {
            bail!("{path:?}: read-only directory (a write cap is needed)")
        }
        _ => bail!("{path:?} is not a directory"),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn client(o: &DirGrid) -> Result<Client> {
    let config = ClientConfig {
        params: Params::new(o.k, o.n, 1 << 20)?,
        happy: o.happy,
        ..ClientConfig::default()
    };
    Ok(connect(&o.grid, config, usize::from(o.happy)).await?.0)
}

/// Uploads a local tree as an immutable directory; returns its cap.
fn snapshot<'a>(
    c: &'a Client,
    dir: &'a Path,
    m: &'a MultiProgress,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Cap>> + Send + 'a>> {
    Box::pin(async move {
        let mut entries = Vec::new();
        let mut list: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .collect::<Result<_, _>>()?;
        list.sort_by_key(|e| e.file_name());
        for e in list {
            let name = e
                .file_name()
                .into_string()
                .map_err(|n| anyhow!("{n:?} is not UTF-8"))?;
            let ty = e.file_type()?;
            let cap = if ty.is_dir() {
                (snapshot(c, &e.path(), m).await?, b"{}".to_vec())
            } else if ty.is_file() {
                upload_file(c, &e.path(), m).await?
            } else {
                continue; // symlinks and special files are skipped
            };
            entries.push((name, cap.0, cap.1));
        }
        Ok(c.mkdir_immutable(&entries).await?)
    })
}

pub(crate) fn mkdir(a: &MkdirArgs) -> Result<()> {
    runtime()?.block_on(async {
        let c = client(&a.opts).await?;
        let cap: Cap = match &a.immutable {
            Some(local) => snapshot(&c, local, &bars(&a.opts.grid)).await?,
            None => c.mkdir().await?.into(),
        };
        if let Some(t) = &a.target {
            let (root, path) = require_grid(t, &a.opts.grid)?;
            let (parent, name) = split(&path)?;
            let dir = writable(&c, &root, &parent).await?;
            c.dir_set(&dir, &name, &cap, b"{}").await?;
        }
        println!("{cap}");
        Ok(())
    })
}

pub(crate) fn ls(a: &LsArgs) -> Result<()> {
    runtime()?.block_on(async {
        let c = client(&a.opts).await?;
        let (root, path) = require_grid(&a.target, &a.opts.grid)?;
        let cap = c.resolve(&root, &path).await?;
        if !is_dir_cap(&cap) {
            println!("{cap}");
            return Ok(());
        }
        let d = c.open_dir(&cap).await?.dir;
        let mut entries = d.entries()?;
        entries.sort_by(|x, y| x.name.cmp(&y.name));
        if a.opts.grid.json {
            let v: BTreeMap<String, String> = entries
                .iter()
                .map(|e| (e.name.clone(), e.read_cap.to_string()))
                .collect();
            println!("{}", serde_json::to_string(&v)?);
        } else if a.long {
            for e in entries {
                let (kind, suffix) = if is_dir_cap(&e.read_cap) {
                    ("dir", "/")
                } else if matches!(e.read_cap, Cap::MutableWrite(_) | Cap::MutableRead(_)) {
                    ("mutable", "")
                } else {
                    ("file", "")
                };
                let size = match &e.read_cap {
                    Cap::Literal(l) => Some(l.data().len() as u64),
                    _ => metadata_size(&e.metadata),
                };
                let size = size.map_or_else(|| "-".to_owned(), |n| n.to_string());
                println!("{kind:<7} {size:>12}  {}{suffix}", e.name);
            }
        } else {
            for e in entries {
                let suffix = if is_dir_cap(&e.read_cap) { "/" } else { "" };
                println!("{}{suffix}", e.name);
            }
        }
        Ok(())
    })
}

fn upload_tree<'a>(
    c: &'a Client,
    local: &'a Path,
    dir: &'a DirWriteCap,
    name: &'a str,
    recursive: bool,
    m: &'a MultiProgress,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>> {
    Box::pin(async move {
        let meta =
            std::fs::metadata(local).with_context(|| format!("reading {}", local.display()))?;
        if meta.is_dir() {
            if !recursive {
                bail!("{} is a directory (use -r)", local.display());
            }
            let sub = c.mkdir().await?;
            c.dir_set(dir, name, &sub.clone().into(), b"{}").await?;
            let mut list: Vec<_> = std::fs::read_dir(local)?.collect::<Result<_, _>>()?;
            list.sort_by_key(|e| e.file_name());
            for e in list {
                let n = e
                    .file_name()
                    .into_string()
                    .map_err(|n| anyhow!("{n:?} is not UTF-8"))?;
                upload_tree(c, &e.path(), &sub, &n, true, m).await?;
            }
        } else {
            let (cap, meta) = upload_file(c, local, m).await?;
            c.dir_set(dir, name, &cap, &meta).await?;
        }
        Ok(())
    })
}

/// Uploads the local file `local` as an immutable file, read 1 MiB at a time (memory does not
/// grow with the file); its cap and the directory-entry metadata `{"size": N}`.
async fn upload_file(c: &Client, local: &Path, m: &MultiProgress) -> Result<(Cap, Vec<u8>)> {
    let mut f =
        std::fs::File::open(local).with_context(|| format!("opening {}", local.display()))?;
    let size = f.metadata().ok().map(|md| md.len());
    let bar = Arc::new(StoredBar(byte_bar(m, size, &bar_label(local))));
    let mut up = c.upload(UploadOptions {
        progress: Some(bar.clone()),
        ..UploadOptions::default()
    });
    crate::put::feed(&mut up, &mut f, &local.display().to_string()).await?;
    let r = up.finish().await?;
    bar.0.finish_and_clear();
    Ok((r.cap, size_metadata(r.size)))
}

/// A file's upload progress: bytes the storage servers have acknowledged.
struct StoredBar(ProgressBar);

impl UploadProgress for StoredBar {
    fn progress(&self, _encoded: u64, acknowledged: u64) {
        self.0.set_position(acknowledged);
    }
}

/// A progress bar's label: the file's name, at most 9 characters (the bars' prefix width).
fn bar_label(path: &Path) -> String {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    if name.chars().count() <= 9 {
        name
    } else {
        let head: String = name.chars().take(8).collect();
        format!("{head}…")
    }
}

/// Writes the file of `cap` to `local`: an immutable or literal file piece by piece as it is
/// verified and decrypted (memory does not grow with the file), a mutable file whole.
async fn download_file(c: &Client, cap: &Cap, local: &Path, m: &MultiProgress) -> Result<()> {
    let create = || {
        std::fs::File::create(local)
            .map(std::io::BufWriter::new)
            .with_context(|| format!("creating {}", local.display()))
    };
    let written = |e: std::io::Error| anyhow!(e).context(format!("writing {}", local.display()));
    let data = match cap {
        Cap::MutableWrite(w) => c.read_mutable(&w.read_cap()).await?.data,
        Cap::MutableRead(r) => c.read_mutable(r).await?.data,
        other => {
            let mut d = c.open(other).await?;
            let mut out = create()?;
            let bar = byte_bar(m, Some(d.size()), &bar_label(local));
            let copied = async {
                while let Some(piece) = d.next_chunk().await {
                    let piece = piece?;
                    out.write_all(&piece).map_err(written)?;
                    bar.inc(piece.len() as u64);
                }
                out.flush().map_err(written)
            }
            .await;
            bar.finish_and_clear();
            if copied.is_err() {
                // No truncated file is left to be mistaken for the whole one.
                drop(out);
                let _ = std::fs::remove_file(local);
            }
            return copied;
        }
    };
    let mut out = create()?;
    out.write_all(&data).map_err(written)?;
    out.flush().map_err(written)
}

fn download_tree<'a>(
    c: &'a Client,
    cap: &'a Cap,
    local: &'a Path,
    recursive: bool,
    m: &'a MultiProgress,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>> {
    Box::pin(async move {
        if is_dir_cap(cap) {
            if !recursive {
                bail!("the source is a directory (use -r)");
            }
            std::fs::create_dir_all(local)?;
            for e in c.open_dir(cap).await?.dir.entries()? {
                if e.name.contains('/') || e.name == ".." || e.name == "." {
                    bail!("refusing entry name {:?}", e.name);
                }
                download_tree(c, &e.read_cap, &local.join(&e.name), true, m).await?;
            }
        } else {
            download_file(c, cap, local, m).await?;
        }
        Ok(())
    })
}

pub(crate) fn cp(a: &CpArgs) -> Result<()> {
    runtime()?.block_on(async {
        let g = &a.opts.grid;
        let c = client(&a.opts).await?;
        match (grid_path(&a.from, g)?, grid_path(&a.to, g)?) {
            (None, Some((root, path))) => {
                let local = PathBuf::from(&a.from);
                let base = local
                    .file_name()
                    .and_then(|n| n.to_str())
                    .ok_or_else(|| anyhow!("{} has no usable name", local.display()))?
                    .to_owned();
                // An existing directory target receives the source under its own name.
                let (dir, name) = match c.resolve(&root, &path).await {
                    Ok(Cap::DirWrite(w)) => (w, base),
                    _ => {
                        let (parent, name) = split(&path)?;
                        (writable(&c, &root, &parent).await?, name)
                    }
                };
                upload_tree(&c, &local, &dir, &name, a.recursive, &bars(g)).await
            }
            (Some((root, path)), None) => {
                let cap = c.resolve(&root, &path).await?;
                let mut local = PathBuf::from(&a.to);
                if local.is_dir() {
                    let (_, name) = split(&path)?;
                    local = local.join(name);
                }
                download_tree(&c, &cap, &local, a.recursive, &bars(g)).await
            }
            (Some((froot, fpath)), Some((troot, tpath))) => {
                let (cap, meta) = resolve_entry(&c, &froot, &fpath).await?;
                let (parent, name) = split(&tpath)?;
                let dir = writable(&c, &troot, &parent).await?;
                c.dir_set(&dir, &name, &cap, &meta).await?;
                Ok(())
            }
            (None, None) => bail!("one of the two paths must be on the grid (ALIAS:path)"),
        }
    })
}

pub(crate) fn ln(a: &TwoPaths) -> Result<()> {
    runtime()?.block_on(async {
        let c = client(&a.opts).await?;
        let (froot, fpath) = require_grid(&a.from, &a.opts.grid)?;
        let (troot, tpath) = require_grid(&a.to, &a.opts.grid)?;
        let (cap, meta) = resolve_entry(&c, &froot, &fpath).await?;
        let (parent, name) = split(&tpath)?;
        let dir = writable(&c, &troot, &parent).await?;
        c.dir_set(&dir, &name, &cap, &meta).await?;
        Ok(())
    })
}

pub(crate) fn mv(a: &TwoPaths) -> Result<()> {
    runtime()?.block_on(async {
        let c = client(&a.opts).await?;
        let (froot, fpath) = require_grid(&a.from, &a.opts.grid)?;
        let (troot, tpath) = require_grid(&a.to, &a.opts.grid)?;
        let (fparent, fname) = split(&fpath)?;
        let (tparent, tname) = split(&tpath)?;
        let from_dir = writable(&c, &froot, &fparent).await?;
        let to_dir = writable(&c, &troot, &tparent).await?;
        if from_dir.storage_index() == to_dir.storage_index() {
            c.dir_rename(&from_dir, &fname, &tname).await?;
        } else {
            let entry = c
                .open_dir(&from_dir.clone().into())
                .await?
                .dir
                .get(&fname)?;
            let cap = entry.write_cap.unwrap_or(entry.read_cap);
            c.dir_set(&to_dir, &tname, &cap, &entry.metadata).await?;
            c.dir_remove(&from_dir, &fname).await?;
        }
        Ok(())
    })
}

pub(crate) fn rm(a: &RmArgs) -> Result<()> {
    runtime()?.block_on(async {
        let c = client(&a.opts).await?;
        let (root, path) = require_grid(&a.target, &a.opts.grid)?;
        let (parent, name) = split(&path)?;
        let dir = writable(&c, &root, &parent).await?;
        c.dir_remove(&dir, &name).await?;
        Ok(())
    })
}
