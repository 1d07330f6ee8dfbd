//! Check (where are the shares, is the file healthy) and verify (read every share, check
//! every byte).

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use lafs_caps::{Cap, StorageIndex};
use lafs_codec::{Decoder, ShareVerifier};
use lafs_proto::read::ReadRange;
use lafs_proto::{ReadRequest, ShareRead};

use crate::discover::discover;
use crate::placement::{happiness, permuted_servers};
use crate::transport::{wire_share, ReadPiece, Transport, TransportError};
use crate::{Client, Error, ServerId};

/// What is known about one copy of a share.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyStatus {
    /// The trailer (UEB and share-hash chain) matches the cap; the body was not read.
    TrailerOk,
    /// Every byte of the share was read and verified.
    Verified,
    /// The copy failed verification (and an advisory was sent to its server).
    Corrupt(String),
    /// The server listed the copy but could not serve it.
    Unreadable(String),
}

/// One copy of one share on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareCopy {
    /// The server holding it.
    pub server: ServerId,
    /// Share number.
    pub share: u16,
    /// Length in bytes, as listed.
    pub length: u64,
    /// What the check found.
    pub status: CopyStatus,
}

/// The result of [`Client::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// The storage index (`None` for a literal cap, which lives in the cap itself).
    pub storage_index: Option<StorageIndex>,
    /// Shares needed (k), from the verified UEB (0 if no share was found).
    pub k: u16,
    /// Total shares (N).
    pub n: u16,
    /// File size in bytes, if known.
    pub file_size: Option<u64>,
    /// The happiness threshold the file is checked against (the client's setting).
    pub happy: u16,
    /// Servers asked, in permuted order.
    pub servers_queried: usize,
    /// Servers that answered.
    pub servers_reachable: usize,
    /// Servers that did not answer, and why.
    pub unreachable: Vec<(ServerId, TransportError)>,
    /// Every copy found, by server in permuted order.
    pub copies: Vec<ShareCopy>,
    /// Distinct shares with at least one good copy.
    pub good_shares: usize,
    /// Distinct servers that can each be matched with a different good share.
    pub happiness: usize,
    /// At least k distinct good shares: the file can be read.
    pub recoverable: bool,
    /// All N shares have a good copy and the copies reach the happiness threshold.
    pub healthy: bool,
    /// Whether every copy was read in full and verified (`check(.., true)`).
    pub verified: bool,
}

impl CheckReport {
    /// The report for a literal cap: the file lives in the cap, so it is always healthy.
    pub fn literal(cap: &lafs_caps::LiteralCap) -> Self {
        Self {
            storage_index: None,
            k: 0,
            n: 0,
            file_size: Some(cap.data().len() as u64),
            happy: 0,
            servers_queried: 0,
            servers_reachable: 0,
            unreachable: Vec::new(),
            copies: Vec::new(),
            good_shares: 0,
            happiness: 0,
            recoverable: true,
            healthy: true,
            verified: true,
        }
    }
}

impl Client {
    /// Finds every share of the file: asks every server in the cap's permuted order at once,
    /// checks each copy's trailer against the cap, and reports per server. With `verify`,
    /// every copy is then read in full and verified byte for byte ([`ShareVerifier`]), a few
    /// at a time; corrupt copies are reported to their servers with a corruption advisory.
    pub async fn check(&self, cap: &Cap, verify: bool) -> Result<CheckReport, Error> {
        let (si, ssi, mut probe) = match cap {
            Cap::Literal(l) => return Ok(CheckReport::literal(l)),
            Cap::ImmutableRead(c) => (
                *c.storage_index(),
                c.selection_index(),
                Decoder::for_verify_cap(&c.verify_cap()),
            ),
            Cap::ImmutableVerify(c) => (
                *c.storage_index(),
                *c.selection_index(),
                Decoder::for_verify_cap(c),
            ),
            other => return Err(Error::UnsupportedCap(other.kind())),
        };
        let order = permuted_servers(&ssi, &self.transport.servers());
        if order.is_empty() {
            return Err(Error::NoServers);
        }
        let mut found = discover(&self.transport, si, &order, self.config.suffix_len).await;
        // Report in permuted order, not in answer order.
        found.sort_by_key(|f| order.iter().position(|s| *s == f.server));
        let mut unreachable = Vec::new();
        let mut copies = Vec::new();
        for f in &found {
            match &f.result {
                Err(e) => unreachable.push((f.server, e.clone())),
                Ok(shares) => {
                    for s in shares {
                        let status = match &s.suffix {
                            None => CopyStatus::Unreadable("suffix not returned".into()),
                            Some(suffix) => match probe.add_trailer(s.share, s.share_len, suffix) {
                                Ok(()) => CopyStatus::TrailerOk,
                                Err(e) => CopyStatus::Corrupt(e.to_string()),
                            },
                        };
                        copies.push(ShareCopy {
                            server: f.server,
                            share: s.share,
                            length: s.share_len,
                            status,
                        });
                    }
                }
            }
        }
        if verify {
            let t = &self.transport;
            let results: Vec<(usize, CopyStatus)> = stream::iter(
                copies
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.status == CopyStatus::TrailerOk)
                    .map(|(i, c)| (i, c.server, c.share, c.length)),
            )
            .map(|(i, server, share, len)| async move {
                (i, verify_copy(t, server, si, share, len).await)
            })
            .buffer_unordered(4)
            .collect()
            .await;
            for (i, status) in results {
                if let Some(c) = copies.get_mut(i) {
                    c.status = status;
                }
            }
        }
        for c in &copies {
            if let CopyStatus::Corrupt(reason) = &c.status {
                let _ = self
                    .transport
                    .advise_corrupt(c.server, si, wire_share(c.share), reason.clone())
                    .await;
            }
        }
        let good =
            |c: &&ShareCopy| matches!(c.status, CopyStatus::TrailerOk | CopyStatus::Verified);
        let good_shares: BTreeSet<u16> = copies.iter().filter(good).map(|c| c.share).collect();
        let holdings: Vec<(ServerId, u16)> = copies
            .iter()
            .filter(good)
            .map(|c| (c.server, c.share))
            .collect();
        let happiness = happiness(&holdings);
        let ueb = probe.ueb().copied();
        let (k, n) = ueb.map_or((0, 0), |u| (u.params.k(), u.params.n()));
        let happy = self.config.happy.min(n);
        Ok(CheckReport {
            storage_index: Some(si),
            k,
            n,
            file_size: ueb.map(|u| u.file_size),
            happy,
            servers_queried: order.len(),
            servers_reachable: found.len() - unreachable.len(),
            unreachable,
            good_shares: good_shares.len(),
            happiness,
            recoverable: ueb.is_some() && good_shares.len() >= usize::from(k),
            healthy: ueb.is_some()
                && good_shares.len() == usize::from(n)
                && happiness >= usize::from(happy),
            copies,
            verified: verify,
        })
    }
}

/// Reads one copy in the chunks [`ShareVerifier`] asks for and checks every byte.
async fn verify_copy(
    t: &Arc<dyn Transport>,
    server: ServerId,
    si: StorageIndex,
    share: u16,
    len: u64,
) -> CopyStatus {
    let mut v = ShareVerifier::new(share, len).expect_storage_index(si);
    while let Some(r) = v.next_read() {
        if r.is_empty() {
            return CopyStatus::Corrupt("empty read requested".into());
        }
        let req = ReadRequest {
            reads: vec![ShareRead {
                share: wire_share(share),
                ranges: vec![ReadRange::Span {
                    offset: r.start,
                    length: r.end - r.start,
                }],
            }],
        };
        let pieces = match t.read(server, si, req).await {
            Ok(p) => p,
            Err(e) => return CopyStatus::Unreadable(e.to_string()),
        };
        let data = pieces.into_iter().find_map(|p| match p {
            ReadPiece::Data { offset, data, .. } if offset == r.start => Some(data),
            _ => None,
        });
        let Some(data) = data else {
            return CopyStatus::Unreadable(format!("bytes {}..{} not returned", r.start, r.end));
        };
        if data.len() as u64 != r.end - r.start {
            return CopyStatus::Corrupt(format!(
                "share shorter than listed: {} bytes at {}",
                data.len(),
                r.start
            ));
        }
        if let Err(e) = v.feed(r.start, &data) {
            return CopyStatus::Corrupt(e.to_string());
        }
    }
    match v.result() {
        Some(Ok(_)) => CopyStatus::Verified,
        Some(Err(e)) => CopyStatus::Corrupt(e.to_string()),
        None => CopyStatus::Unreadable("verification incomplete".into()),
    }
}
