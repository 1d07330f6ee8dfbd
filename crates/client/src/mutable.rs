//! Mutable files on the grid: create, read the latest version, overwrite, modify a byte range,
//! append. Formats and rules: `docs/spec/mutable.md`; server side: the mutable endpoints of
//! `docs/spec/storage-protocol.md`.
//!
//! * **Locate**: every known server is asked which shares it holds of the storage index, then
//!   for the first 420 bytes (header and chain) of each, in one request per server, all servers
//!   at once.
//! * **Read**: `select_latest` picks the highest seqnum with at least k agreeing, validly signed
//!   shares; the shares of that version are fetched from the servers holding them and verified
//!   by `VersionReader`.
//! * **Publish**: a new version is encoded with seqnum = (highest seqnum seen anywhere) + 1 and
//!   sent as whole shares: each share to every server already holding that share number (so
//!   old copies are replaced), new share numbers round-robin over the accepting servers in
//!   the storage index's permuted order. Each server applies its part all or nothing. Shares
//!   whose server failed are sent once more to other accepting servers. **Happiness**: with
//!   fewer than `happy` (≤ N) accepting servers nothing is written and the publish fails with
//!   [`Error::NotHappy`]; if the stored shares end up on fewer than `happy` distinct servers,
//!   it fails the same way (the servers reached hold the new version; the others keep theirs,
//!   and readers pick the highest version with k shares).
//! * **Concurrent writers**: a server refusing a write because it holds an equal or higher
//!   seqnum (409), or two different versions with one seqnum, is
//!   [`Error::UncoordinatedWrite`]: never silent loss. Recovery: read again, merge, publish.
//! * **Modify a range / append** read the latest version, then publish **patches**
//!   (`plan_update`/`update`: only the touched segments, the tree paths above them, chains
//!   and headers) to the servers holding that version's shares, after fetching every share's
//!   block tree. If a share of the version cannot be located, or a newer unrecoverable
//!   version was seen, they splice and publish whole shares with seqnum = highest seen + 1.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::join_all;
use lafs_caps::{MutableReadCap, MutableWriteCap, SelectionIndex, StorageIndex};
use lafs_mutable::{
    encode_version, new_seed, plan_update, select_latest, update, FetchedShare, Layout, OsEntropy,
    ReadKeys, ShareWrite, SignedHeader, VersionInfo, VersionReader, VersionState, WriteKeys,
    MAX_PREFIX_LEN,
};
use lafs_proto::mutable::WireWrite;
use lafs_proto::storage::ErrorCode;
use lafs_proto::{ReadRange, ReadRequest, ShareNum, ShareRead};

use crate::placement::{happiness, permuted_servers};
use crate::transport::{ReadPiece, TransportError};
use crate::{Client, Error, ServerId};

/// Where the shares of a mutable file are, and what versions they hold.
#[derive(Debug, Clone, Default)]
pub struct Located {
    /// Servers asked.
    pub queried: usize,
    /// Servers that answered.
    pub reachable: usize,
    /// Validly signed headers found: (server, header).
    pub headers: Vec<(ServerId, SignedHeader)>,
    /// Highest seqnum of any validly signed share seen (0 if none).
    pub max_seqnum: u64,
}

impl Located {
    fn holders(&self) -> BTreeMap<u16, BTreeSet<ServerId>> {
        let mut m: BTreeMap<u16, BTreeSet<ServerId>> = BTreeMap::new();
        for (s, h) in &self.headers {
            m.entry(h.share).or_default().insert(*s);
        }
        m
    }
}

/// A version read from the grid.
#[derive(Debug, Clone)]
pub struct MutableContents {
    /// Its sequence number.
    pub seqnum: u64,
    /// The plaintext.
    pub data: Vec<u8>,
    /// The version's signed fields.
    pub info: VersionInfo,
    /// Where the shares are (for a following publish).
    pub located: Located,
}

fn ssi_of(si: &StorageIndex) -> SelectionIndex {
    let mut b = [0u8; 16];
    b.copy_from_slice(&si.0[..16]);
    SelectionIndex(b)
}

fn wire(w: ShareWrite) -> Result<WireWrite, Error> {
    let share = |s: u16| {
        u8::try_from(s)
            .map(ShareNum)
            .map_err(|_| Error::BadParams("share number above 255"))
    };
    Ok(match w {
        ShareWrite::Whole { share: s, data } => WireWrite::Whole {
            share: share(s)?,
            data,
        },
        ShareWrite::Patch {
            share: s,
            new_len,
            patches,
        } => WireWrite::Patch {
            share: share(s)?,
            new_len,
            patches: patches
                .into_iter()
                .map(|p| lafs_proto::mutable::WirePatch {
                    offset: p.offset,
                    data: p.data,
                })
                .collect(),
        },
    })
}

/// Bytes of share data one write carries (its body, apart from framing).
fn write_bytes(w: &ShareWrite) -> u64 {
    match w {
        ShareWrite::Whole { data, .. } => data.len() as u64,
        ShareWrite::Patch { patches, .. } => patches.iter().map(|p| p.data.len() as u64).sum(),
    }
}

/// Where the writes of a publish landed.
#[derive(Debug, Default)]
struct Sent {
    /// (server, share) stored (written or already stored).
    ok: Vec<(ServerId, u16)>,
    /// Servers whose request failed (other than a 409), with the error.
    failed: Vec<(ServerId, Error)>,
}

fn uncoordinated(seqnum: u64, detail: impl Into<String>) -> Error {
    Error::UncoordinatedWrite {
        seqnum,
        detail: detail.into(),
    }
}

impl Client {
    /// Asks every server which shares of `si` it holds and reads their headers. Headers that
    /// do not verify against `keys`' public key are ignored.
    pub async fn mutable_locate(&self, keys: &ReadKeys) -> Result<Located, Error> {
        let si = keys.public_key().storage_index();
        let servers = self.transport.servers();
        if servers.is_empty() {
            return Err(Error::NoServers);
        }
        let t = &self.transport;
        let answers = join_all(servers.iter().map(|&server| async move {
            let held = t.mutable_list(server, si).await?;
            if held.is_empty() {
                return Ok::<_, TransportError>((server, Vec::new()));
            }
            let reads = held
                .iter()
                .map(|h| ShareRead {
                    share: h.share,
                    ranges: vec![ReadRange::Span {
                        offset: 0,
                        length: MAX_PREFIX_LEN,
                    }],
                })
                .collect();
            let pieces = t.mutable_read(server, si, ReadRequest { reads }).await?;
            Ok((server, pieces))
        }))
        .await;
        let mut located = Located {
            queried: servers.len(),
            ..Located::default()
        };
        for a in answers {
            let Ok((server, pieces)) = a else { continue };
            located.reachable += 1;
            for p in pieces {
                if let ReadPiece::Data { share, data, .. } = p {
                    let Ok(h) = SignedHeader::parse(share, &data) else {
                        continue;
                    };
                    if h.verify_for(keys.public_key()).is_ok() {
                        located.max_seqnum = located.max_seqnum.max(h.info.seqnum);
                        located.headers.push((server, h));
                    }
                }
            }
        }
        Ok(located)
    }

    /// Reads the latest recoverable version (highest seqnum with at least k agreeing shares).
    /// Two different versions with one seqnum at or above it are
    /// [`Error::UncoordinatedWrite`].
    pub async fn mutable_read_latest(&self, keys: &ReadKeys) -> Result<MutableContents, Error> {
        let located = self.mutable_locate(keys).await?;
        if located.headers.is_empty() {
            return Err(Error::NotFound {
                queried: located.queried,
                reachable: located.reachable,
            });
        }
        let headers: Vec<SignedHeader> = located.headers.iter().map(|(_, h)| *h).collect();
        let selected = select_latest(keys.public_key(), &headers).map_err(|e| match e {
            lafs_mutable::Error::UncoordinatedWrite { seqnum } => uncoordinated(
                seqnum,
                "two different versions carry the same sequence number",
            ),
            other => Error::Mutable(other),
        })?;
        let info = selected.info;
        let reader = VersionReader::new(info, keys.public_key(), keys.content_key().clone())?;
        let segments = reader.segments_for(0..info.file_size)?;
        let ranges = reader.ranges(segments)?;
        let data = self
            .mutable_fetch(keys, &located, &info, &reader, &ranges)
            .await?;
        Ok(MutableContents {
            seqnum: info.seqnum,
            data,
            info,
            located,
        })
    }

    async fn mutable_fetch(
        &self,
        keys: &ReadKeys,
        located: &Located,
        info: &VersionInfo,
        reader: &VersionReader,
        ranges: &[core::ops::Range<u64>],
    ) -> Result<Vec<u8>, Error> {
        let si = keys.public_key().storage_index();
        // One holder per share of this version, the requests grouped by server.
        let mut by_server: BTreeMap<ServerId, Vec<u16>> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for (server, h) in &located.headers {
            if h.info == *info && seen.insert(h.share) {
                by_server.entry(*server).or_default().push(h.share);
            }
        }
        let t = &self.transport;
        let answers = join_all(by_server.iter().map(|(&server, shares)| async move {
            let reads = shares
                .iter()
                .filter_map(|&s| u8::try_from(s).ok())
                .map(|s| ShareRead {
                    share: ShareNum(s),
                    ranges: ranges
                        .iter()
                        .filter(|r| r.end > r.start)
                        .map(|r| ReadRange::Span {
                            offset: r.start,
                            length: r.end - r.start,
                        })
                        .collect(),
                })
                .filter(|r| !r.ranges.is_empty())
                .collect::<Vec<_>>();
            if reads.is_empty() {
                return Ok(Vec::new());
            }
            t.mutable_read(server, si, ReadRequest { reads }).await
        }))
        .await;
        let mut fetched: BTreeMap<u16, FetchedShare> = BTreeMap::new();
        for a in answers.into_iter().flatten() {
            for p in a {
                if let ReadPiece::Data {
                    share,
                    offset,
                    data,
                    ..
                } = p
                {
                    fetched.entry(share).or_default().add(offset, data.to_vec());
                }
            }
        }
        if ranges.iter().all(|r| r.end <= r.start) {
            // Nothing to fetch beyond the headers (cannot happen for valid layouts, but an
            // empty map would be reported as missing shares).
            for (_, h) in &located.headers {
                fetched.entry(h.share).or_default();
            }
        }
        Ok(reader.read(0..info.file_size, &fetched)?.plaintext)
    }

    /// Encodes `data` as version `seqnum` and stores it (see the module docs for placement).
    /// Returns the seqnum. A server refusing with 409 is [`Error::UncoordinatedWrite`].
    pub async fn mutable_publish(
        &self,
        keys: &WriteKeys,
        seqnum: u64,
        data: &[u8],
        located: &Located,
    ) -> Result<u64, Error> {
        let si = keys.storage_index();
        let params = self.config.params;
        let encoded = encode_version(keys, params, seqnum, data, &mut OsEntropy)?;
        let servers = self.transport.servers();
        if servers.is_empty() {
            return Err(Error::NoServers);
        }
        let order = permuted_servers(&ssi_of(&si), &servers);
        // Servers that accept mutable shares, in permuted order.
        let t = &self.transport;
        let versions = join_all(
            order
                .iter()
                .map(|&s| async move { (s, t.version(s).await) }),
        )
        .await;
        let reachable = versions.iter().filter(|(_, v)| v.is_ok()).count();
        let writes = encoded.writes();
        // A whole share must fit in one write request: servers that announce a smaller
        // request limit could only cut the connection mid-body, so they are not asked.
        let largest = writes.iter().map(write_bytes).max().unwrap_or(0);
        let mut accepting_any = 0usize;
        let mut largest_limit = 0u64;
        let accepting: Vec<ServerId> = versions
            .into_iter()
            .filter_map(|(s, v)| match v {
                Ok(v) if v.accepts_mutable && !v.read_only => {
                    accepting_any += 1;
                    largest_limit = largest_limit.max(v.limits.max_request_body);
                    (largest <= v.limits.max_request_body).then_some(s)
                }
                _ => None,
            })
            .collect();
        if accepting.is_empty() && accepting_any > 0 {
            return Err(Error::ShareTooLarge {
                share_bytes: largest,
                limit: largest_limit,
                accepting: accepting_any,
            });
        }
        let n = params.n();
        let needed = usize::from(self.config.happy.min(n)).max(1);
        let not_happy = |achieved: usize| Error::NotHappy {
            queried: servers.len(),
            reachable,
            accepting: accepting.len(),
            achieved,
            needed,
        };
        // Too few accepting servers: refuse before writing anything, so the previous version
        // stays exactly as it was.
        let possible = accepting.len().min(usize::from(n));
        if possible < needed {
            return Err(not_happy(possible));
        }
        let holders = located.holders();
        let mut plan: BTreeMap<ServerId, Vec<WireWrite>> = BTreeMap::new();
        let mut next = 0usize;
        for w in &writes {
            let share = w.share();
            let mut targets: Vec<ServerId> = holders
                .get(&share)
                .map(|h| h.iter().copied().collect())
                .unwrap_or_default();
            if targets.is_empty() {
                targets.push(accepting[next % accepting.len()]);
                next += 1;
            }
            for s in targets {
                plan.entry(s).or_default().push(wire(w.clone())?);
            }
        }
        let mut sent = self.send_writes(si, seqnum, plan).await?;
        // Shares that reached no server go, once, to accepting servers that hold none of this
        // version yet (then to any that answered), in permuted order.
        let placed: BTreeSet<u16> = sent.ok.iter().map(|(_, sh)| *sh).collect();
        let missing: Vec<&ShareWrite> = writes
            .iter()
            .filter(|w| !placed.contains(&w.share()))
            .collect();
        if !missing.is_empty() {
            let failed: BTreeSet<ServerId> = sent.failed.iter().map(|(s, _)| *s).collect();
            let busy: BTreeSet<ServerId> = sent.ok.iter().map(|(s, _)| *s).collect();
            let mut spare: Vec<ServerId> = accepting
                .iter()
                .copied()
                .filter(|s| !failed.contains(s) && !busy.contains(s))
                .collect();
            if spare.is_empty() {
                spare = accepting
                    .iter()
                    .copied()
                    .filter(|s| !failed.contains(s))
                    .collect();
            }
            if !spare.is_empty() {
                let mut retry: BTreeMap<ServerId, Vec<WireWrite>> = BTreeMap::new();
                for (i, w) in missing.into_iter().enumerate() {
                    retry
                        .entry(spare[i % spare.len()])
                        .or_default()
                        .push(wire(w.clone())?);
                }
                let again = self.send_writes(si, seqnum, retry).await?;
                sent.ok.extend(again.ok);
                sent.failed.extend(again.failed);
            }
        }
        let achieved = happiness(&sent.ok);
        if achieved < needed {
            // Nothing stored anywhere: the servers' own refusal says more than the count.
            if achieved == 0 {
                if let Some((_, e)) = sent.failed.into_iter().next() {
                    return Err(e);
                }
            }
            return Err(not_happy(achieved));
        }
        Ok(seqnum)
    }

    /// Sends each server its writes, all servers at once. A 409 from any server is
    /// [`Error::UncoordinatedWrite`]; other failures are returned in [`Sent::failed`].
    async fn send_writes(
        &self,
        si: StorageIndex,
        seqnum: u64,
        plan: BTreeMap<ServerId, Vec<WireWrite>>,
    ) -> Result<Sent, Error> {
        let t = &self.transport;
        let results = join_all(plan.into_iter().map(|(server, writes)| async move {
            let shares: Vec<u16> = writes.iter().map(|w| u16::from(w.share().0)).collect();
            (server, shares, t.mutable_write(server, si, writes).await)
        }))
        .await;
        let mut sent = Sent::default();
        for (server, shares, r) in results {
            match r {
                Ok(_) => sent.ok.extend(shares.into_iter().map(|sh| (server, sh))),
                Err(TransportError::Status {
                    code: ErrorCode::Conflict,
                    message,
                    ..
                }) => {
                    return Err(uncoordinated(
                        seqnum,
                        format!("server {server} refused version {seqnum}: {message}"),
                    ))
                }
                Err(e) => sent.failed.push((
                    server,
                    Error::MutableWrite {
                        server: server.to_string(),
                        error: e,
                    },
                )),
            }
        }
        Ok(sent)
    }

    /// Creates a mutable file holding `data` (version 1) and returns its writecap.
    pub async fn create_mutable(&self, data: &[u8]) -> Result<MutableWriteCap, Error> {
        let cap = MutableWriteCap::new(new_seed(&mut OsEntropy)?);
        let keys = WriteKeys::for_file(&cap);
        self.mutable_publish(&keys, 1, data, &Located::default())
            .await?;
        Ok(cap)
    }

    /// Reads the latest version of a mutable file.
    pub async fn read_mutable(&self, cap: &MutableReadCap) -> Result<MutableContents, Error> {
        self.mutable_read_latest(&ReadKeys::for_file(cap)).await
    }

    /// Replaces the contents with `data`: a new version with seqnum = highest seen + 1.
    /// Returns the new seqnum.
    pub async fn overwrite_mutable(
        &self,
        cap: &MutableWriteCap,
        data: &[u8],
    ) -> Result<u64, Error> {
        let keys = WriteKeys::for_file(cap);
        let located = self.mutable_locate(&keys.read_keys()).await?;
        if located.headers.is_empty() {
            return Err(Error::NotFound {
                queried: located.queried,
                reachable: located.reachable,
            });
        }
        let seqnum = located.max_seqnum.saturating_add(1);
        self.mutable_publish(&keys, seqnum, data, &located).await
    }

    /// Writes `data` at `offset` (at most the current size; `offset = size` appends), keeping
    /// the other bytes. Returns the new seqnum. A concurrent write by another writer is
    /// reported as [`Error::UncoordinatedWrite`] (by the read or by the servers).
    pub async fn write_mutable_at(
        &self,
        cap: &MutableWriteCap,
        offset: u64,
        data: &[u8],
    ) -> Result<u64, Error> {
        let keys = WriteKeys::for_file(cap);
        let current = self.mutable_read_latest(&keys.read_keys()).await?;
        let start = usize::try_from(offset).map_err(|_| Error::BadParams("offset too large"))?;
        if start > current.data.len() {
            return Err(Error::BadParams("offset is past the end of the file"));
        }
        let end = start
            .checked_add(data.len())
            .ok_or(Error::BadParams("offset too large"))?;
        if let Some(seqnum) = self.mutable_patch(&keys, &current, offset, data).await? {
            return Ok(seqnum);
        }
        let mut contents = current.data;
        if end > contents.len() {
            contents.resize(end, 0);
        }
        contents[start..end].copy_from_slice(data);
        let seqnum = current.located.max_seqnum.saturating_add(1);
        self.mutable_publish(&keys, seqnum, &contents, &current.located)
            .await
    }

    /// Appends `data`. Returns the new seqnum.
    pub async fn append_mutable(&self, cap: &MutableWriteCap, data: &[u8]) -> Result<u64, Error> {
        let keys = WriteKeys::for_file(cap);
        let current = self.mutable_read_latest(&keys.read_keys()).await?;
        let size = current.data.len() as u64;
        if let Some(seqnum) = self.mutable_patch(&keys, &current, size, data).await? {
            return Ok(seqnum);
        }
        let mut contents = current.data;
        contents.extend_from_slice(data);
        let seqnum = current.located.max_seqnum.saturating_add(1);
        self.mutable_publish(&keys, seqnum, &contents, &current.located)
            .await
    }

    /// Publishes `data` at `offset` of the version read in `current` as patches to the stored
    /// shares: only the touched segments, the tree paths above them, the chains and headers
    /// are sent. Returns `None` (nothing sent) when patching is not possible: a share of the
    /// version is not located, its block tree cannot be fetched or does not verify, or a
    /// newer (unrecoverable) version was seen; the caller then publishes whole shares.
    async fn mutable_patch(
        &self,
        keys: &WriteKeys,
        current: &MutableContents,
        offset: u64,
        data: &[u8],
    ) -> Result<Option<u64>, Error> {
        let info = &current.info;
        let located = &current.located;
        if located.max_seqnum != info.seqnum {
            return Ok(None);
        }
        let si = keys.storage_index();
        let layout = Layout::of(info)?;
        let n = info.params.n();
        let mut holders: BTreeMap<u16, Vec<ServerId>> = BTreeMap::new();
        for (server, h) in &located.headers {
            if h.info == *info {
                holders.entry(h.share).or_default().push(*server);
            }
        }
        if (0..n).any(|s| !holders.contains_key(&s)) {
            return Ok(None);
        }
        // Fetch every share's block tree (one holder each, grouped by server).
        let tree = layout.tree_range();
        let mut by_server: BTreeMap<ServerId, Vec<ShareRead>> = BTreeMap::new();
        for (share, servers) in &holders {
            let (Some(server), Ok(s8)) = (servers.first(), u8::try_from(*share)) else {
                return Ok(None);
            };
            by_server.entry(*server).or_default().push(ShareRead {
                share: ShareNum(s8),
                ranges: vec![ReadRange::Span {
                    offset: tree.start,
                    length: tree.end - tree.start,
                }],
            });
        }
        let t = &self.transport;
        let answers = join_all(by_server.into_iter().map(|(server, reads)| async move {
            t.mutable_read(server, si, ReadRequest { reads }).await
        }))
        .await;
        let mut trees: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
        for a in answers {
            let Ok(pieces) = a else { return Ok(None) };
            for p in pieces {
                if let ReadPiece::Data { share, data, .. } = p {
                    trees.insert(share, data.to_vec());
                }
            }
        }
        let Ok(state) = VersionState::from_tree_bytes(*info, &trees) else {
            return Ok(None);
        };
        let plan = plan_update(info, offset, data.len() as u64)?;
        let seg = u64::from(info.params.segment_size());
        let mut old = BTreeMap::new();
        for j in plan.need_old {
            let a = usize::try_from(j * seg).map_err(|_| Error::BadParams("offset too large"))?;
            let b = usize::try_from(((j + 1) * seg).min(info.file_size))
                .map_err(|_| Error::BadParams("offset too large"))?;
            let Some(bytes) = current.data.get(a..b) else {
                return Ok(None);
            };
            old.insert(j, bytes.to_vec());
        }
        let up = update(keys, &state, offset, data, &old, &mut OsEntropy)?;
        let seqnum = up.info.seqnum;
        let mut plan: BTreeMap<ServerId, Vec<WireWrite>> = BTreeMap::new();
        for w in up.writes {
            for s in holders.get(&w.share()).into_iter().flatten() {
                plan.entry(*s).or_default().push(wire(w.clone())?);
            }
        }
        let servers = plan.len();
        let sent = self.send_writes(si, seqnum, plan).await?;
        let needed = usize::from(self.config.happy.min(n)).max(1);
        let achieved = happiness(&sent.ok);
        if achieved < needed {
            // Patches can only go where the previous version is: no fail-over.
            return Err(Error::NotHappy {
                queried: located.queried,
                reachable: servers - sent.failed.len(),
                accepting: servers - sent.failed.len(),
                achieved,
                needed,
            });
        }
        Ok(Some(seqnum))
    }
}
