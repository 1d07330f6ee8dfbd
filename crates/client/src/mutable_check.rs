//! Check, verify and repair of mutable files (and of the files holding mutable directories)
//! with any cap from the verifycap up: which versions exist, which shares of each are where,
//! and, for repair, the latest version's missing shares rebuilt and stored.
//!
//! * **Check**: every server is asked for its shares of the storage index and their first
//!   420 bytes; each header is verified against the public key (signature, share number).
//!   Versions are grouped by their signed fields; the latest is the highest seqnum with at
//!   least k distinct shares.
//! * **Verify**: every copy with a valid header is read in full and checked
//!   (`lafs_mutable::verify_share`: chain, block tree, every record).
//! * **Repair** needs no key: shares are self-signed and the signature does not cover the share
//!   number, so missing shares of the latest version are rebuilt from any k valid ones
//!   (`lafs_mutable::rebuild_shares`) and stored as whole shares; servers holding an older or
//!   rotten copy of a share get the latest one (their check accepts it: higher seqnum, or the
//!   same version replacing a copy that fails the full check); while the copies reach fewer
//!   than `happy` servers, copies of shares on crowded servers go to accepting servers that
//!   hold none. Two different versions with the latest seqnum are refused ([`Error::UncoordinatedWrite`]): only a writer can settle them.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::join_all;
use lafs_caps::{Cap, MutablePublicKey, StorageIndex};
use lafs_mutable::{
    rebuild_shares, verify_share, Layout, SignedHeader, VersionInfo, MAX_PREFIX_LEN,
};
use lafs_proto::mutable::WireWrite;
use lafs_proto::{ReadRange, ReadRequest, ShareNum, ShareRead};

use crate::check::CopyStatus;
use crate::placement::{happiness, permuted_servers};
use crate::transport::{ReadPiece, TransportError};
use crate::{Client, Error, ServerId};

/// Largest span asked in one read while verifying (below the servers' default read limit).
const VERIFY_CHUNK: u64 = 4 << 20;

/// One copy of one mutable share on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutableCopy {
    /// The server holding it.
    pub server: ServerId,
    /// Share number.
    pub share: u16,
    /// Length in bytes, as listed.
    pub length: u64,
    /// The version's signed fields, if the header verified.
    pub version: Option<VersionInfo>,
    /// What the check found.
    pub status: CopyStatus,
}

/// One version found on the grid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutableVersion {
    /// Its signed fields (seqnum, root, parameters, size).
    pub info: VersionInfo,
    /// Distinct shares with a good copy.
    pub shares: BTreeSet<u16>,
    /// Good copies (a share may be on several servers).
    pub copies: usize,
    /// At least k distinct good shares.
    pub recoverable: bool,
}

/// The result of [`Client::check_mutable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutableCheckReport {
    /// The storage index (hash of the public key).
    pub storage_index: StorageIndex,
    /// The happiness threshold the file is checked against (the client's setting, ≤ N).
    pub happy: u16,
    /// Servers asked, in permuted order.
    pub servers_queried: usize,
    /// Servers that answered.
    pub servers_reachable: usize,
    /// Servers that did not answer, and why.
    pub unreachable: Vec<(ServerId, TransportError)>,
    /// Every copy found, by server in permuted order.
    pub copies: Vec<MutableCopy>,
    /// Every version with a good copy, highest seqnum first.
    pub versions: Vec<MutableVersion>,
    /// The latest recoverable version (highest seqnum with ≥ k good shares).
    pub latest: Option<VersionInfo>,
    /// Distinct shares of the latest version with a good copy.
    pub good_shares: usize,
    /// Distinct servers that can each be matched with a different good share of the latest
    /// version.
    pub happiness: usize,
    /// A version with a higher seqnum than the latest exists, with fewer than k shares.
    pub newer_unrecoverable: bool,
    /// Two different versions carry the latest (or a higher) seqnum.
    pub uncoordinated: bool,
    /// Copies that are not a good copy of the latest version: older versions, rotten or
    /// unreadable copies (repair replaces the first two kinds).
    pub stale_copies: usize,
    /// The latest version can be read.
    pub recoverable: bool,
    /// All N shares of the latest version have a good copy, on at least `happy` servers, and
    /// no competing or newer version was seen (stale copies of older versions do not count
    /// against it: readers skip them).
    pub healthy: bool,
    /// Every copy was read in full and verified.
    pub verified: bool,
}

impl MutableCheckReport {
    /// k and N of the latest version (0, 0 if none).
    pub fn k_n(&self) -> (u16, u16) {
        self.latest.map_or((0, 0), |i| (i.params.k(), i.params.n()))
    }
}

/// The result of [`Client::repair_mutable`].
#[derive(Debug, Clone)]
pub struct MutableRepairReport {
    /// The check before the repair (verified).
    pub before: MutableCheckReport,
    /// Shares of the latest version that no server had and were rebuilt.
    pub rebuilt: Vec<u16>,
    /// Copies stored: (server, share).
    pub stored: Vec<(ServerId, u16)>,
    /// Writes that failed: (server, share, why).
    pub failed: Vec<(ServerId, u16, String)>,
    /// The check after the repair (not verified).
    pub after: MutableCheckReport,
}

/// The public key of a mutable cap (file or directory, any level), or `None`.
pub fn mutable_public_key(cap: &Cap) -> Option<MutablePublicKey> {
    Some(match cap {
        Cap::MutableWrite(c) => *c.public_key(),
        Cap::MutableRead(c) => *c.public_key(),
        Cap::MutableVerify(c) => *c.public_key(),
        Cap::DirWrite(c) => *c.public_key(),
        Cap::DirRead(c) => *c.public_key(),
        Cap::DirTraverse(c) => *c.public_key(),
        Cap::DirVerify(c) => *c.public_key(),
        _ => return None,
    })
}

fn ssi_of(si: &StorageIndex) -> lafs_caps::SelectionIndex {
    let mut b = [0u8; 16];
    b.copy_from_slice(&si.0[..16]);
    lafs_caps::SelectionIndex(b)
}

fn wire_share(s: u16) -> Result<ShareNum, Error> {
    u8::try_from(s)
        .map(ShareNum)
        .map_err(|_| Error::BadParams("share number above 255"))
}

impl Client {
    /// Checks a mutable file: finds every copy of every share on every server, verifies each
    /// header against `public`, groups versions; with `verify`, reads every copy with a valid
    /// header in full and checks it. See the module docs.
    pub async fn check_mutable(
        &self,
        public: &MutablePublicKey,
        verify: bool,
    ) -> Result<MutableCheckReport, Error> {
        Ok(self.check_mutable_inner(public, verify).await?.0)
    }

    /// Runs the check; with `verify`, also returns the bytes of one verified copy of each
    /// share of each version.
    async fn check_mutable_inner(
        &self,
        public: &MutablePublicKey,
        verify: bool,
    ) -> Result<(MutableCheckReport, BTreeMap<(u64, u16), Vec<u8>>), Error> {
        let si = public.storage_index();
        let order = permuted_servers(&ssi_of(&si), &self.transport.servers());
        if order.is_empty() {
            return Err(Error::NoServers);
        }
        let t = &self.transport;
        let answers = join_all(order.iter().map(|&server| async move {
            let held = t.mutable_list(server, si).await?;
            if held.is_empty() {
                return Ok::<_, TransportError>((server, held, Vec::new()));
            }
            let reads = held
                .iter()
                .map(|h| ShareRead {
                    share: h.share,
                    ranges: vec![ReadRange::Span {
                        offset: 0,
                        length: MAX_PREFIX_LEN.min(h.length),
                    }],
                })
                .collect();
            let pieces = t.mutable_read(server, si, ReadRequest { reads }).await?;
            Ok((server, held, pieces))
        }))
        .await;
        let mut unreachable = Vec::new();
        let mut copies = Vec::new();
        for (server, a) in order.iter().zip(answers) {
            let (server, held, pieces) = match a {
                Ok(x) => x,
                Err(e) => {
                    unreachable.push((*server, e));
                    continue;
                }
            };
            let mut prefixes: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
            for p in pieces {
                if let ReadPiece::Data { share, data, .. } = p {
                    prefixes.insert(share, data.to_vec());
                }
            }
            for h in held {
                let share = u16::from(h.share.0);
                let (version, status) = match prefixes.get(&share) {
                    None => (None, CopyStatus::Unreadable("header not returned".into())),
                    Some(prefix) => match check_header(public, share, h.length, prefix) {
                        Ok(info) => (Some(info), CopyStatus::TrailerOk),
                        Err(reason) => (None, CopyStatus::Corrupt(reason)),
                    },
                };
                copies.push(MutableCopy {
                    server,
                    share,
                    length: h.length,
                    version,
                    status,
                });
            }
        }
        let mut kept: BTreeMap<(u64, u16), Vec<u8>> = BTreeMap::new();
        if verify {
            for c in copies.iter_mut() {
                let Some(info) = c.version else { continue };
                match read_whole(self, c.server, si, c.share, c.length).await {
                    Err(e) => c.status = CopyStatus::Unreadable(e),
                    Ok(bytes) => match verify_share(&si, c.share, &bytes) {
                        Ok(h) if h.info == info => {
                            c.status = CopyStatus::Verified;
                            kept.entry((info.seqnum, c.share)).or_insert(bytes);
                        }
                        Ok(_) => {
                            c.status = CopyStatus::Corrupt("changed while being checked".into());
                        }
                        Err(e) => c.status = CopyStatus::Corrupt(e.to_string()),
                    },
                }
            }
        }
        let report = self.summarise(si, order.len(), unreachable, copies, verify);
        Ok((report, kept))
    }

    fn summarise(
        &self,
        si: StorageIndex,
        queried: usize,
        unreachable: Vec<(ServerId, TransportError)>,
        copies: Vec<MutableCopy>,
        verified: bool,
    ) -> MutableCheckReport {
        let good = |c: &&MutableCopy| {
            matches!(c.status, CopyStatus::TrailerOk | CopyStatus::Verified) && c.version.is_some()
        };
        let mut by_version: BTreeMap<(u64, [u8; 32]), MutableVersion> = BTreeMap::new();
        for c in copies.iter().filter(good) {
            let Some(info) = c.version else { continue };
            let v = by_version
                .entry((info.seqnum, info.root.0))
                .or_insert(MutableVersion {
                    info,
                    shares: BTreeSet::new(),
                    copies: 0,
                    recoverable: false,
                });
            v.shares.insert(c.share);
            v.copies += 1;
        }
        let mut versions: Vec<MutableVersion> = by_version.into_values().collect();
        for v in &mut versions {
            v.recoverable = v.shares.len() >= usize::from(v.info.params.k());
        }
        versions.sort_by_key(|v| core::cmp::Reverse(v.info.seqnum));
        let latest = versions.iter().find(|v| v.recoverable).map(|v| v.info);
        let top = versions.first().map_or(0, |v| v.info.seqnum);
        let floor = latest.map_or(0, |l| l.seqnum);
        let mut seqnums_at_or_above: BTreeMap<u64, usize> = BTreeMap::new();
        for v in versions.iter().filter(|v| v.info.seqnum >= floor) {
            *seqnums_at_or_above.entry(v.info.seqnum).or_default() += 1;
        }
        let uncoordinated = seqnums_at_or_above.values().any(|&n| n > 1);
        let newer_unrecoverable = latest.is_some_and(|l| top > l.seqnum) || latest.is_none();
        let holdings: Vec<(ServerId, u16)> = copies
            .iter()
            .filter(good)
            .filter(|c| c.version == latest && latest.is_some())
            .map(|c| (c.server, c.share))
            .collect();
        let good_shares = holdings
            .iter()
            .map(|(_, s)| *s)
            .collect::<BTreeSet<_>>()
            .len();
        let happiness = happiness(&holdings);
        let n = latest.map_or(0, |l| l.params.n());
        let happy = self.config.happy.min(n);
        let stale_copies = copies.len() - holdings.len();
        MutableCheckReport {
            stale_copies,
            storage_index: si,
            happy,
            servers_queried: queried,
            servers_reachable: queried - unreachable.len(),
            unreachable,
            recoverable: latest.is_some(),
            healthy: latest.is_some()
                && good_shares == usize::from(n)
                && happiness >= usize::from(happy)
                && !uncoordinated
                && !(versions.first().is_some_and(|v| Some(v.info) != latest)),
            newer_unrecoverable: newer_unrecoverable && latest.is_some(),
            copies,
            versions,
            latest,
            good_shares,
            happiness,
            uncoordinated,
            verified,
        }
    }

    /// Repairs a mutable file with any cap from the verifycap up: verifies every copy, rebuilds
    /// the latest version's missing shares from k valid ones, and stores every missing or
    /// stale share (see the module docs for placement), then checks again.
    pub async fn repair_mutable(
        &self,
        public: &MutablePublicKey,
    ) -> Result<MutableRepairReport, Error> {
        let si = public.storage_index();
        let (before, kept) = self.check_mutable_inner(public, true).await?;
        let Some(latest) = before.latest else {
            let best = before.versions.first();
            return Err(Error::Mutable(lafs_mutable::Error::NotEnoughShares {
                found: best.map_or(0, |v| v.shares.len()),
                needed: best.map_or(1, |v| usize::from(v.info.params.k())),
            }));
        };
        if before.uncoordinated {
            return Err(Error::UncoordinatedWrite {
                seqnum: latest.seqnum,
                detail: "two different versions carry the latest sequence number; a writer must \
                         publish a new version before the file can be repaired"
                    .into(),
            });
        }
        let n = latest.params.n();
        // One valid copy of each share of the latest version, then the missing ones rebuilt.
        let mut shares: BTreeMap<u16, Vec<u8>> = kept
            .into_iter()
            .filter(|((seq, _), _)| *seq == latest.seqnum)
            .map(|((_, s), b)| (s, b))
            .collect();
        let missing: Vec<u16> = (0..n).filter(|s| !shares.contains_key(s)).collect();
        if !missing.is_empty() {
            for (s, b) in rebuild_shares(&si, &shares, &missing)? {
                shares.insert(s, b);
            }
        }
        // Where each share of the latest version is good already.
        let mut good_on: BTreeMap<u16, BTreeSet<ServerId>> = BTreeMap::new();
        for c in &before.copies {
            if c.status == CopyStatus::Verified && c.version == Some(latest) {
                good_on.entry(c.share).or_default().insert(c.server);
            }
        }
        // Servers holding a stale (older or rotten) copy of a share get the latest one.
        let mut plan: Vec<(ServerId, u16)> = Vec::new();
        for c in &before.copies {
            let stale = c.version.is_none_or(|v| v.seqnum <= latest.seqnum)
                && !good_on.get(&c.share).is_some_and(|g| g.contains(&c.server))
                && c.share < n;
            if stale && !matches!(c.status, CopyStatus::Unreadable(_)) {
                plan.push((c.server, c.share));
            }
        }
        // Shares on no server: accepting servers in permuted order, those holding nothing of
        // the latest version first.
        let planned: BTreeSet<u16> = plan.iter().map(|(_, s)| *s).collect();
        let homeless: Vec<u16> = (0..n)
            .filter(|s| !good_on.contains_key(s) && !planned.contains(s))
            .collect();
        let mut holdings: Vec<(ServerId, u16)> = good_on
            .iter()
            .flat_map(|(sh, servers)| servers.iter().map(move |s| (*s, *sh)))
            .chain(plan.iter().copied())
            .collect();
        let needed = usize::from(before.happy);
        if !homeless.is_empty() || happiness(&holdings) < needed {
            let order = permuted_servers(&ssi_of(&si), &self.transport.servers());
            let t = &self.transport;
            let versions = join_all(
                order
                    .iter()
                    .map(|&s| async move { (s, t.version(s).await) }),
            )
            .await;
            let accepting: Vec<ServerId> = versions
                .into_iter()
                .filter_map(|(s, v)| match v {
                    Ok(v) if v.accepts_mutable && !v.read_only => Some(s),
                    _ => None,
                })
                .collect();
            if accepting.is_empty() && !homeless.is_empty() {
                return Err(Error::NotHappy {
                    queried: order.len(),
                    reachable: before.servers_reachable,
                    accepting: 0,
                    achieved: before.happiness,
                    needed,
                });
            }
            let busy: BTreeSet<ServerId> = holdings.iter().map(|(s, _)| *s).collect();
            let mut targets: Vec<ServerId> = accepting
                .iter()
                .copied()
                .filter(|s| !busy.contains(s))
                .collect();
            targets.extend(accepting.iter().copied().filter(|s| busy.contains(s)));
            for (i, sh) in homeless.into_iter().enumerate() {
                let target = targets[i % targets.len()];
                plan.push((target, sh));
                holdings.push((target, sh));
            }
            // Spread: while below the threshold, give an accepting server that holds nothing
            // of this version a copy of a share that raises the happiness (fewest copies
            // first).
            let mut empty: Vec<ServerId> = accepting
                .iter()
                .copied()
                .filter(|s| !holdings.iter().any(|(h, _)| h == s))
                .collect();
            empty.reverse();
            let mut current = happiness(&holdings);
            while current < needed {
                let Some(target) = empty.pop() else { break };
                let mut candidates: Vec<u16> = (0..n).collect();
                candidates.sort_by_key(|sh| holdings.iter().filter(|(_, h)| h == sh).count());
                let better = candidates.into_iter().find(|&sh| {
                    let mut trial = holdings.clone();
                    trial.push((target, sh));
                    happiness(&trial) > current
                });
                let Some(sh) = better else { break };
                plan.push((target, sh));
                holdings.push((target, sh));
                current += 1;
            }
        }
        // One request per copy: a whole share may be large, and the servers' request limit
        // applies to each request.
        let t = &self.transport;
        let mut sends = Vec::new();
        for (server, share) in plan {
            let Some(bytes) = shares.get(&share) else {
                continue;
            };
            let w = WireWrite::Whole {
                share: wire_share(share)?,
                data: bytes.clone(),
            };
            sends.push(async move { (server, share, t.mutable_write(server, si, vec![w]).await) });
        }
        let mut stored = Vec::new();
        let mut failed = Vec::new();
        for (server, share, r) in join_all(sends).await {
            match r {
                Ok(_) => stored.push((server, share)),
                Err(e) => failed.push((server, share, e.to_string())),
            }
        }
        let after = self.check_mutable(public, false).await?;
        Ok(MutableRepairReport {
            rebuilt: missing,
            before,
            stored,
            failed,
            after,
        })
    }
}

/// Checks a copy's header against the key; returns its version or why not.
fn check_header(
    public: &MutablePublicKey,
    share: u16,
    length: u64,
    prefix: &[u8],
) -> Result<VersionInfo, String> {
    let h = SignedHeader::parse(share, prefix).map_err(|e| e.to_string())?;
    if h.share != share {
        return Err(format!("header says share {}", h.share));
    }
    h.verify_for(public).map_err(|e| e.to_string())?;
    let layout = Layout::of(&h.info).map_err(|e| e.to_string())?;
    if layout.share_len() != length {
        return Err(format!(
            "length {length} does not match its header ({} expected)",
            layout.share_len()
        ));
    }
    Ok(h.info)
}

/// Reads a whole copy in chunks.
async fn read_whole(
    c: &Client,
    server: ServerId,
    si: StorageIndex,
    share: u16,
    len: u64,
) -> Result<Vec<u8>, String> {
    let wire = wire_share(share).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    while (out.len() as u64) < len {
        let offset = out.len() as u64;
        let length = (len - offset).min(VERIFY_CHUNK);
        let req = ReadRequest {
            reads: vec![ShareRead {
                share: wire,
                ranges: vec![ReadRange::Span { offset, length }],
            }],
        };
        let pieces = c
            .transport
            .mutable_read(server, si, req)
            .await
            .map_err(|e| e.to_string())?;
        let data = pieces.into_iter().find_map(|p| match p {
            ReadPiece::Data {
                offset: o, data, ..
            } if o == offset => Some(data),
            _ => None,
        });
        match data {
            Some(d) if d.len() as u64 == length => out.extend_from_slice(&d),
            Some(d) => {
                return Err(format!(
                    "share shorter than listed: {} bytes at {offset}",
                    d.len()
                ))
            }
            None => return Err(format!("bytes {offset}..{} not returned", offset + length)),
        }
    }
    Ok(out)
}
