//! Server ordering and share placement.
//!
//! **Ordering.** Every server is identified by its node public key. For a file with
//! server-selection index `ssi`, server `s` gets the score
//! `tagged_hash("lafs/v1/placement", ssi || s)`; servers sorted by descending score form the
//! file's *permuted server list*. Uploaders place shares along it and downloaders search along it,
//! so both find each other without coordination, and adding or removing one server moves only
//! the shares that server held (rendezvous hashing).
//!
//! **Happiness.** As in Tahoe-LAFS, an upload is *happy* when the shares can be matched to at
//! least `happy` distinct servers, each holding a different share (the size of a maximum
//! bipartite matching between servers and the shares they hold or will hold). Any `k` of those
//! servers then suffice to read the file.
//!
//! **Placement** ([`place`]): shares already on servers are counted first (so an interrupted or
//! repeated upload never uploads them twice), then every remaining share goes to the next
//! writable server in permuted order that holds nothing yet; only when every writable server
//! holds a share do servers receive a second one.

use std::collections::{BTreeMap, BTreeSet};

use lafs_caps::SelectionIndex;
use lafs_hashtree::tagged_hash;

use crate::Error;

/// Tag of the rendezvous score.
const PLACEMENT_TAG: &str = "lafs/v1/placement";

/// A storage server's identity: its ed25519 node public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId(pub [u8; 32]);

impl core::fmt::Display for ServerId {
    /// Lowercase base32 of the key (52 characters), as in announcements and URLs.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&lafs_proto::ids::base32_encode(&self.0))
    }
}

impl core::fmt::Debug for ServerId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let t = lafs_proto::ids::base32_encode(&self.0);
        write!(f, "ServerId({})", &t[..10])
    }
}

/// A share number (0 ≤ n < N ≤ 256).
pub type ShareNum = u16;

/// Servers sorted by descending rendezvous score for `ssi` (ties, impossible in practice, are
/// broken by the id itself so the order is total and deterministic).
pub fn permuted_servers(ssi: &SelectionIndex, servers: &[ServerId]) -> Vec<ServerId> {
    let mut scored: Vec<_> = servers
        .iter()
        .map(|s| (tagged_hash(PLACEMENT_TAG, &[&ssi.0, &s.0]), *s))
        .collect();
    scored.sort_unstable_by(|a, b| b.cmp(a));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().map(|(_, s)| s).collect()
}

/// What one server said when asked about a file: the shares it already holds, and whether it
/// accepts new ones (not full, not read-only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerState {
    /// The server.
    pub id: ServerId,
    /// Shares of this file it already holds.
    pub has: BTreeSet<ShareNum>,
    /// Whether it accepts new shares.
    pub writable: bool,
}

/// The result of [`place`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Shares to upload, and where.
    pub uploads: BTreeMap<ShareNum, ServerId>,
    /// Shares already present (counted, not uploaded again), with one server holding each.
    pub existing: BTreeMap<ShareNum, ServerId>,
    /// Shares placed nowhere because no writable server was left (only possible when no
    /// server accepts shares; the placement is still happy, so any `k` servers can read).
    pub unplaced: Vec<ShareNum>,
    /// Distinct servers the placement reaches (size of the maximum matching).
    pub happiness: usize,
}

/// Places shares `0..n` on `servers` (given in permuted order; see [`permuted_servers`]).
///
/// Fails with [`Error::NotHappy`] when even the best placement reaches fewer than `happy`
/// distinct servers, naming how many were reachable and how many were needed.
pub fn place(n: ShareNum, happy: usize, servers: &[ServerState]) -> Result<Placement, Error> {
    if n == 0 || happy == 0 || happy > usize::from(n) {
        return Err(Error::BadParams("need 1 <= happy <= N"));
    }
    // 1. Shares already present, matched to distinct servers where possible.
    let existing_edges: Vec<(usize, ShareNum)> = servers
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.has.iter().filter(|&&sh| sh < n).map(move |&sh| (i, sh)))
        .collect();
    let matched = max_matching(servers.len(), &existing_edges);
    let mut existing: BTreeMap<ShareNum, ServerId> = BTreeMap::new();
    let mut busy: BTreeSet<usize> = BTreeSet::new();
    for (&share, &server) in &matched {
        existing.insert(share, servers[server].id);
        busy.insert(server);
    }
    // Shares present somewhere but doubled up (not in the matching) still exist.
    let doubled: Vec<(ShareNum, usize)> = existing_edges
        .iter()
        .filter(|(_, share)| !matched.contains_key(share))
        .map(|&(server, share)| (share, server))
        .collect();

    // 2. Missing shares go to writable servers holding nothing, in permuted order; only when
    //    every writable server holds a share does one receive a second (round-robin).
    let missing: Vec<ShareNum> = (0..n)
        .filter(|s| !matched.contains_key(s) && !doubled.iter().any(|(d, _)| d == s))
        .collect();
    let writable: Vec<usize> = (0..servers.len())
        .filter(|&i| servers[i].writable)
        .collect();
    let mut free: Vec<usize> = writable
        .iter()
        .copied()
        .filter(|i| !busy.contains(i))
        .collect();
    let mut uploads = BTreeMap::new();
    if !missing.is_empty() && !writable.is_empty() {
        let mut order = free.clone();
        order.extend(writable.iter().copied().filter(|i| busy.contains(i)));
        for (share, server) in missing.iter().zip(order.iter().cycle()) {
            uploads.insert(*share, servers[*server].id);
        }
        free.drain(..missing.len().min(free.len()));
    }
    // A doubled-up share is copied to a still-free server (spreading the file wider); otherwise
    // it is counted where it is.
    let mut free = free.into_iter();
    for (share, server) in doubled {
        if uploads.contains_key(&share) || existing.contains_key(&share) {
            continue;
        }
        match free.next() {
            Some(target) => {
                uploads.insert(share, servers[target].id);
            }
            None => {
                existing.insert(share, servers[server].id);
            }
        }
    }

    // 3. Happiness of the whole picture.
    let index: BTreeMap<ServerId, usize> =
        servers.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
    let mut edges = existing_edges;
    edges.extend(
        uploads
            .iter()
            .filter_map(|(sh, id)| index.get(id).map(|&i| (i, *sh))),
    );
    let happiness = max_matching(servers.len(), &edges).len();
    if happiness < happy {
        return Err(Error::NotHappy {
            queried: servers.len(),
            reachable: servers.len(),
            accepting: writable.len(),
            achieved: happiness,
            needed: happy,
        });
    }
    let unplaced = (0..n)
        .filter(|s| !uploads.contains_key(s) && !existing.contains_key(s))
        .collect();
    Ok(Placement {
        uploads,
        existing,
        unplaced,
        happiness,
    })
}

/// The happiness of a set of (server, share) holdings: the number of distinct servers that can
/// each be matched with a different share (size of a maximum bipartite matching).
pub fn happiness(holdings: &[(ServerId, ShareNum)]) -> usize {
    let mut index: BTreeMap<ServerId, usize> = BTreeMap::new();
    let mut edges = Vec::with_capacity(holdings.len());
    for (server, share) in holdings {
        let next = index.len();
        let i = *index.entry(*server).or_insert(next);
        edges.push((i, *share));
    }
    max_matching(index.len(), &edges).len()
}

/// Maximum bipartite matching between servers (`0..num_servers`) and shares, by augmenting
/// paths (Kuhn's algorithm; at most 256 shares, so O(V·E) is small). Returns share → server.
fn max_matching(num_servers: usize, edges: &[(usize, ShareNum)]) -> BTreeMap<ShareNum, usize> {
    let mut adj: Vec<Vec<ShareNum>> = vec![Vec::new(); num_servers];
    for &(s, sh) in edges {
        if !adj[s].contains(&sh) {
            adj[s].push(sh);
        }
    }
    let mut owner: BTreeMap<ShareNum, usize> = BTreeMap::new();
    for server in 0..num_servers {
        let mut seen = BTreeSet::new();
        augment(server, &adj, &mut owner, &mut seen);
    }
    owner
}

fn augment(
    server: usize,
    adj: &[Vec<ShareNum>],
    owner: &mut BTreeMap<ShareNum, usize>,
    seen: &mut BTreeSet<ShareNum>,
) -> bool {
    for &share in &adj[server] {
        if !seen.insert(share) {
            continue;
        }
        let free = match owner.get(&share) {
            None => true,
            Some(&other) => augment(other, adj, owner, seen),
        };
        if free {
            owner.insert(share, server);
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u8) -> Vec<ServerId> {
        (0..n).map(|i| ServerId([i; 32])).collect()
    }

    fn fresh(ids: &[ServerId]) -> Vec<ServerState> {
        ids.iter()
            .map(|&id| ServerState {
                id,
                has: BTreeSet::new(),
                writable: true,
            })
            .collect()
    }

    #[test]
    fn permutation_is_deterministic_and_depends_on_index() {
        let s = ids(20);
        let a = permuted_servers(&SelectionIndex([1; 16]), &s);
        let b = permuted_servers(&SelectionIndex([1; 16]), &s);
        let c = permuted_servers(&SelectionIndex([2; 16]), &s);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 20);
    }

    #[test]
    fn removing_a_server_keeps_the_others_in_order() {
        let s = ids(12);
        let ssi = SelectionIndex([7; 16]);
        let full = permuted_servers(&ssi, &s);
        let gone = full[3];
        let rest: Vec<_> = s.iter().copied().filter(|x| *x != gone).collect();
        let want: Vec<_> = full.iter().copied().filter(|x| *x != gone).collect();
        assert_eq!(permuted_servers(&ssi, &rest), want);
    }

    #[test]
    fn ten_servers_one_share_each() {
        let p = place(10, 7, &fresh(&ids(10))).unwrap();
        assert_eq!(p.uploads.len(), 10);
        assert_eq!(p.happiness, 10);
        let distinct: BTreeSet<_> = p.uploads.values().collect();
        assert_eq!(distinct.len(), 10);
    }

    #[test]
    fn five_servers_get_two_each_and_are_happy_at_five() {
        let p = place(10, 5, &fresh(&ids(5))).unwrap();
        assert_eq!(p.uploads.len(), 10);
        assert_eq!(p.happiness, 5);
        assert_eq!(
            place(10, 7, &fresh(&ids(5))),
            Err(Error::NotHappy {
                queried: 5,
                reachable: 5,
                accepting: 5,
                achieved: 5,
                needed: 7
            })
        );
    }

    #[test]
    fn existing_shares_are_counted_not_reuploaded() {
        let mut servers = fresh(&ids(10));
        servers[0].has = [0, 1, 2].into_iter().collect(); // a previous upload doubled up here
        servers[4].has = [3].into_iter().collect();
        let p = place(10, 7, &servers).unwrap();
        // The matched existing shares are never uploaded again.
        assert_eq!(p.existing.keys().copied().collect::<Vec<_>>(), vec![0, 3]);
        // Missing shares avoid servers 0 and 4 while others are free, and the two doubled-up
        // shares move to the two servers still free: every server ends up with one share.
        assert!(p
            .uploads
            .values()
            .all(|id| *id != servers[0].id && *id != servers[4].id));
        assert_eq!(p.uploads.len(), 8);
        assert_eq!(p.happiness, 10);

        // With no free server left, doubled-up shares are counted where they are.
        let p = place(10, 7, &servers[..8]).unwrap();
        assert_eq!(p.uploads.len(), 6);
        assert!(p.existing.contains_key(&1) && p.existing.contains_key(&2));
        assert_eq!(p.happiness, 8);
    }

    #[test]
    fn read_only_servers_hold_but_do_not_receive() {
        let mut servers = fresh(&ids(10));
        for s in servers.iter_mut().take(4) {
            s.writable = false;
        }
        servers[0].has = [9].into_iter().collect();
        let p = place(10, 7, &servers).unwrap();
        assert!(p
            .uploads
            .values()
            .all(|id| servers[4..].iter().any(|s| s.id == *id)));
        assert_eq!(p.happiness, 7);
    }

    #[test]
    fn happiness_counts_distinct_matched_servers() {
        let s = ids(3);
        assert_eq!(happiness(&[]), 0);
        assert_eq!(happiness(&[(s[0], 0), (s[0], 1), (s[1], 1)]), 2);
        assert_eq!(happiness(&[(s[0], 0), (s[1], 0), (s[2], 0)]), 1);
        assert_eq!(happiness(&[(s[0], 0), (s[1], 1), (s[2], 2)]), 3);
    }

    #[test]
    fn nothing_reachable_names_the_numbers() {
        assert_eq!(
            place(10, 7, &[]),
            Err(Error::NotHappy {
                queried: 0,
                reachable: 0,
                accepting: 0,
                achieved: 0,
                needed: 7
            })
        );
        assert!(matches!(place(10, 11, &[]), Err(Error::BadParams(_))));
    }
}
