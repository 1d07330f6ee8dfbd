//! The introducer's registry of live storage servers: a pure state machine.
//!
//! Inputs are signed announcements and the current time (milliseconds since the Unix epoch,
//! passed in by the driver); outputs are [`Event`]s to broadcast to subscribers. No IO, no clock,
//! no tokio: the axum driver in `lib.rs` only moves messages and calls [`Registry::expire`] at
//! [`Registry::next_deadline`].
//!
//! Rules (see `docs/spec/introducer.md`, "Registry"):
//! - an announcement must verify under its node key and have valid fields;
//! - its timestamp must be within `max_clock_skew_ms` of the introducer's clock;
//! - its seqnum must be strictly higher than any seqnum accepted for that key within the replay
//!   window, even if the server has since expired (so a recorded announcement cannot bring a
//!   dead server back);
//! - a server not re-announced within `ttl_ms` of its last accepted announcement leaves;
//! - a server leaves at once when it withdraws over the connection of its latest announcement.

use std::collections::BTreeMap;

use lafs_proto::introducer::{Error as WireError, NodeKey, RejectCode, SignedAnnouncement};

/// Registry limits and timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryConfig {
    /// A server leaves if it does not re-announce within this many milliseconds.
    pub ttl_ms: u64,
    /// How far an announcement's timestamp may be from the introducer's clock, milliseconds.
    pub max_clock_skew_ms: u64,
    /// Most servers tracked at once (live ones plus recently expired ones remembered for replay
    /// protection count against `4 * max_servers`).
    pub max_servers: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            ttl_ms: 90_000,
            max_clock_skew_ms: 600_000,
            max_servers: 10_000,
        }
    }
}

/// A change to the live set, to be sent to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A server appeared.
    Joined(SignedAnnouncement),
    /// A live server changed what it announces (not sent for pure heartbeats).
    Updated(SignedAnnouncement),
    /// A server expired.
    Left(NodeKey),
}

/// Why an announcement was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Machine-readable reason (also the WebSocket close code).
    pub code: RejectCode,
    /// Human-readable reason.
    pub reason: String,
    /// For stale seqnums: the highest seqnum accepted so far for the key.
    pub last_seqnum: Option<u64>,
}

impl Rejection {
    fn new(code: RejectCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            last_seqnum: None,
        }
    }
}

impl From<WireError> for Rejection {
    fn from(e: WireError) -> Self {
        let code = match e {
            WireError::BadSignature { .. } | WireError::BadNodeKey { .. } => {
                RejectCode::BadSignature
            }
            WireError::InvalidField { .. } => RejectCode::InvalidField,
            _ => RejectCode::BadMessage,
        };
        Self::new(code, e.to_string())
    }
}

#[derive(Debug, Clone)]
struct Live {
    ann: SignedAnnouncement,
    expires_at: u64,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    seqnum: u64,
    accepted_at: u64,
}

/// The live server set plus replay-protection memory.
#[derive(Debug, Clone)]
pub struct Registry {
    config: RegistryConfig,
    live: BTreeMap<NodeKey, Live>,
    seen: BTreeMap<NodeKey, Seen>,
}

impl Registry {
    /// An empty registry.
    pub fn new(config: RegistryConfig) -> Self {
        Self {
            config,
            live: BTreeMap::new(),
            seen: BTreeMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Handles an announcement received at `now_ms`.
    ///
    /// On success returns the event for subscribers: `Joined` for a new server, `Updated` if the
    /// content changed, `None` for a pure heartbeat (which still extends the server's life).
    pub fn announce(
        &mut self,
        ann: SignedAnnouncement,
        now_ms: u64,
    ) -> Result<Option<Event>, Rejection> {
        ann.verify()?;
        let a = &ann.announcement;
        let key = a.node_key;
        let skew = self.config.max_clock_skew_ms;
        if a.timestamp_ms.saturating_add(skew) < now_ms
            || a.timestamp_ms > now_ms.saturating_add(skew)
        {
            return Err(Rejection::new(
                RejectCode::BadTimestamp,
                format!(
                    "timestamp {} ms is more than {} ms away from the introducer's clock ({} ms)",
                    a.timestamp_ms, skew, now_ms
                ),
            ));
        }
        if let Some(seen) = self.seen.get(&key) {
            if a.seqnum <= seen.seqnum {
                return Err(Rejection {
                    code: RejectCode::StaleSeqnum,
                    reason: format!(
                        "seqnum {} is not above {} already accepted for node {}",
                        a.seqnum, seen.seqnum, key
                    ),
                    last_seqnum: Some(seen.seqnum),
                });
            }
        } else if self.live.len() >= self.config.max_servers
            || self.seen.len() >= self.config.max_servers.saturating_mul(4)
        {
            return Err(Rejection::new(
                RejectCode::Full,
                format!("introducer is full ({} servers)", self.config.max_servers),
            ));
        }
        self.seen.insert(
            key,
            Seen {
                seqnum: a.seqnum,
                accepted_at: now_ms,
            },
        );
        let expires_at = now_ms.saturating_add(self.config.ttl_ms);
        let event = match self.live.get(&key) {
            None => Some(Event::Joined(ann.clone())),
            Some(old) if old.ann.announcement.same_content(a) => None,
            Some(_) => Some(Event::Updated(ann.clone())),
        };
        self.live.insert(key, Live { ann, expires_at });
        Ok(event)
    }

    /// Removes server `key` at its own request, if its live announcement has seqnum `seqnum`
    /// (the caller passes the last seqnum it accepted on the withdrawing connection, so an old
    /// connection cannot remove a server that has since announced elsewhere). The seqnum stays
    /// remembered, so the withdrawn announcement cannot be replayed.
    pub fn withdraw(&mut self, key: &NodeKey, seqnum: u64) -> Option<Event> {
        match self.live.get(key) {
            Some(l) if l.ann.announcement.seqnum == seqnum => {
                self.live.remove(key);
                Some(Event::Left(*key))
            }
            _ => None,
        }
    }

    /// Removes every server whose time ran out at `now_ms`, returning a `Left` event for each,
    /// and forgets replay memory old enough that its announcements fail the timestamp check.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Event> {
        let gone: Vec<NodeKey> = self
            .live
            .iter()
            .filter(|(_, l)| l.expires_at <= now_ms)
            .map(|(k, _)| *k)
            .collect();
        for k in &gone {
            self.live.remove(k);
        }
        // An announcement accepted at t had |timestamp - t| <= skew; replaying it at `now` passes
        // the timestamp check only while now <= timestamp + skew <= t + 2 * skew.
        let window = self.config.max_clock_skew_ms.saturating_mul(2);
        let live = &self.live;
        self.seen
            .retain(|k, s| live.contains_key(k) || s.accepted_at.saturating_add(window) >= now_ms);
        gone.into_iter().map(Event::Left).collect()
    }

    /// The earliest time at which [`Self::expire`] will remove a server, if any is live.
    pub fn next_deadline(&self) -> Option<u64> {
        self.live.values().map(|l| l.expires_at).min()
    }

    /// Every live server's latest announcement, ordered by node key.
    pub fn snapshot(&self) -> Vec<SignedAnnouncement> {
        self.live.values().map(|l| l.ann.clone()).collect()
    }

    /// Number of live servers.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// True if no server is live.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use lafs_proto::introducer::Announcement;

    const T0: u64 = 1_700_000_000_000;

    fn cfg() -> RegistryConfig {
        RegistryConfig {
            ttl_ms: 30_000,
            max_clock_skew_ms: 60_000,
            max_servers: 3,
        }
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn signed(k: &SigningKey, seqnum: u64, ts: u64, available: u64) -> SignedAnnouncement {
        Announcement {
            node_key: NodeKey::from_signing_key(k),
            seqnum,
            timestamp_ms: ts,
            protocol: 1,
            url: format!("http://127.0.0.1:{}", 9000 + u16::from(k.to_bytes()[0])),
            capacity: 1 << 30,
            available,
            nickname: String::new(),
        }
        .sign(k)
        .unwrap()
    }

    #[test]
    fn join_heartbeat_update_expire() {
        let mut r = Registry::new(cfg());
        let k = key(1);
        let n = NodeKey::from_signing_key(&k);
        let a1 = signed(&k, 1, T0, 100);
        assert_eq!(
            r.announce(a1.clone(), T0),
            Ok(Some(Event::Joined(a1.clone())))
        );
        assert_eq!(r.next_deadline(), Some(T0 + 30_000));
        // Heartbeat: same content, higher seqnum: no event, life extended.
        let a2 = signed(&k, 2, T0 + 20_000, 100);
        assert_eq!(r.announce(a2.clone(), T0 + 20_000), Ok(None));
        assert_eq!(r.next_deadline(), Some(T0 + 50_000));
        assert_eq!(r.expire(T0 + 49_999), vec![]);
        assert_eq!(r.snapshot(), vec![a2]);
        // Changed capacity: Updated.
        let a3 = signed(&k, 3, T0 + 40_000, 50);
        assert_eq!(
            r.announce(a3.clone(), T0 + 40_000),
            Ok(Some(Event::Updated(a3)))
        );
        assert_eq!(r.expire(T0 + 69_999), vec![]);
        assert_eq!(r.expire(T0 + 70_000), vec![Event::Left(n)]);
        assert!(r.is_empty());
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn several_servers_expire_independently() {
        let mut r = Registry::new(cfg());
        for (i, s) in [1u8, 2, 3].iter().enumerate() {
            let t = T0 + 1000 * i as u64;
            assert!(matches!(
                r.announce(signed(&key(*s), 1, t, 1), t),
                Ok(Some(Event::Joined(_)))
            ));
        }
        assert_eq!(r.len(), 3);
        // Full: a fourth key is refused.
        let e = r.announce(signed(&key(4), 1, T0, 1), T0).unwrap_err();
        assert_eq!(e.code, RejectCode::Full);
        // Keys 1 and 3 keep announcing; key 2 goes silent.
        for s in [1u8, 3] {
            r.announce(signed(&key(s), 2, T0 + 25_000, 1), T0 + 25_000)
                .unwrap();
        }
        assert_eq!(
            r.expire(T0 + 31_000),
            vec![Event::Left(NodeKey::from_signing_key(&key(2)))]
        );
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn bad_signature_rejected() {
        let mut r = Registry::new(cfg());
        let mut a = signed(&key(1), 1, T0, 1);
        a.announcement.url = "http://attacker:1".into();
        let e = r.announce(a, T0).unwrap_err();
        assert_eq!(e.code, RejectCode::BadSignature);
        // Signed by another key than the one it names.
        let mut b = signed(&key(2), 1, T0, 1);
        b.announcement.node_key = NodeKey::from_signing_key(&key(1));
        assert_eq!(
            r.announce(b, T0).unwrap_err().code,
            RejectCode::BadSignature
        );
        // A node key that is not a curve point.
        let mut c = signed(&key(2), 1, T0, 1);
        c.announcement.node_key = NodeKey([0xff; 32]);
        assert_eq!(
            r.announce(c, T0).unwrap_err().code,
            RejectCode::BadSignature
        );
        assert!(r.is_empty());
    }

    #[test]
    fn replayed_and_stale_seqnums_rejected() {
        let mut r = Registry::new(cfg());
        let k = key(1);
        let a5 = signed(&k, 5, T0, 1);
        r.announce(a5.clone(), T0).unwrap();
        let e = r.announce(a5.clone(), T0 + 1).unwrap_err();
        assert_eq!((e.code, e.last_seqnum), (RejectCode::StaleSeqnum, Some(5)));
        let e = r.announce(signed(&k, 4, T0 + 1, 1), T0 + 1).unwrap_err();
        assert_eq!(e.code, RejectCode::StaleSeqnum);
        // After expiry, replaying the recorded announcement does not bring the server back.
        assert_eq!(r.expire(T0 + 30_000).len(), 1);
        let e = r.announce(a5.clone(), T0 + 30_001).unwrap_err();
        assert_eq!(e.code, RejectCode::StaleSeqnum);
        // Much later the memory is gone, but the timestamp check refuses it instead.
        r.expire(T0 + 200_000);
        let e = r.announce(a5, T0 + 200_000).unwrap_err();
        assert_eq!(e.code, RejectCode::BadTimestamp);
        // A fresh announcement is fine.
        let fresh = signed(&k, 6, T0 + 200_000, 1);
        assert!(matches!(
            r.announce(fresh, T0 + 200_000),
            Ok(Some(Event::Joined(_)))
        ));
    }

    #[test]
    fn withdraw_only_by_the_latest_announcement() {
        let mut r = Registry::new(cfg());
        let k = key(1);
        let n = NodeKey::from_signing_key(&k);
        let a1 = signed(&k, 1, T0, 1);
        r.announce(a1.clone(), T0).unwrap();
        r.announce(signed(&k, 2, T0 + 10, 1), T0 + 10).unwrap();
        // The connection that sent seqnum 1 is outdated: nothing happens.
        assert_eq!(r.withdraw(&n, 1), None);
        assert_eq!(r.len(), 1);
        assert_eq!(r.withdraw(&n, 2), Some(Event::Left(n)));
        assert!(r.is_empty());
        assert_eq!(r.withdraw(&n, 2), None);
        // The withdrawn announcements cannot be replayed.
        let e = r.announce(signed(&k, 2, T0 + 10, 1), T0 + 20).unwrap_err();
        assert_eq!(e.code, RejectCode::StaleSeqnum);
        assert!(r.announce(a1, T0 + 20).is_err());
        assert!(r.announce(signed(&k, 3, T0 + 20, 1), T0 + 20).is_ok());
    }

    #[test]
    fn timestamps_outside_skew_rejected() {
        let mut r = Registry::new(cfg());
        let k = key(1);
        let e = r.announce(signed(&k, 1, T0 + 60_001, 1), T0).unwrap_err();
        assert_eq!(e.code, RejectCode::BadTimestamp);
        let e = r.announce(signed(&k, 1, T0 - 60_001, 1), T0).unwrap_err();
        assert_eq!(e.code, RejectCode::BadTimestamp);
        assert!(r.announce(signed(&k, 1, T0 + 60_000, 1), T0).is_ok());
    }

    #[test]
    fn invalid_fields_rejected() {
        let mut r = Registry::new(cfg());
        let k = key(1);
        let mut a = signed(&k, 1, T0, 1);
        a.announcement.available = a.announcement.capacity + 1;
        assert_eq!(
            r.announce(a, T0).unwrap_err().code,
            RejectCode::InvalidField
        );
    }
}
