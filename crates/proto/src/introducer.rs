//! Introducer protocol: wire types, canonical signing encoding, and a verifying server-set view.
//!
//! Storage servers *announce* themselves to an introducer over a WebSocket; clients (native or
//! browser) *subscribe* on the same endpoint and receive the current set of servers, then every
//! change. Each announcement is signed by the announcing server's ed25519 **node key** over a
//! canonical, domain-separated byte encoding ([`Announcement::signing_bytes`]), so a subscriber
//! can check every announcement itself and never has to trust the introducer for the binding
//! between a node key and its URL (only for completeness of the list).
//!
//! Messages are JSON text frames (serde; any JSON library works); the exact format is specified in `docs/spec/introducer.md`.
//!
//! This module is pure: no IO, no clock. [`ServerSet`] is the subscriber-side state machine that
//! applies [`ServerMessage`]s and verifies every announcement it is given.

use std::collections::BTreeMap;
use std::fmt;

use data_encoding::HEXLOWER;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// Domain-separation tag that starts every announcement's signed bytes (32 bytes, NUL-terminated).
pub const ANNOUNCEMENT_DOMAIN: &[u8; 32] = b"lafs-introducer-announcement-v1\0";

/// Longest accepted server URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Longest accepted nickname, in bytes.
pub const MAX_NICKNAME_LEN: usize = 64;

/// Largest integer a JSON number carries exactly in every JSON implementation (2^53 - 1).
///
/// Every integer field of an announcement must be at most this, so browsers parsing the JSON
/// with JavaScript numbers see the same values that were signed.
pub const MAX_JSON_INT: u64 = (1 << 53) - 1;

/// WebSocket close codes the introducer uses when it rejects a peer (RFC 6455 private range).
pub mod close_code {
    /// A message was not valid JSON, not a known message, or not allowed at this point.
    pub const BAD_MESSAGE: u16 = 4000;
    /// An announcement's signature does not verify under its node key.
    pub const BAD_SIGNATURE: u16 = 4001;
    /// An announcement's sequence number is not higher than one already accepted (replay).
    pub const STALE_SEQNUM: u16 = 4002;
    /// An announcement's timestamp is too far from the introducer's clock.
    pub const BAD_TIMESTAMP: u16 = 4003;
    /// A connection announced a different node key than its first announcement.
    pub const KEY_CHANGED: u16 = 4004;
    /// A field is out of range (URL too long, bad scheme, available > capacity, ...).
    pub const INVALID_FIELD: u16 = 4005;
    /// The introducer tracks as many servers as it is configured for.
    pub const FULL: u16 = 4006;
}

/// Everything that can go wrong when parsing, validating or verifying introducer messages.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The message is not valid JSON for the expected message type.
    #[error("malformed introducer message: {0}")]
    Malformed(String),
    /// The node key bytes are not a valid ed25519 public key.
    #[error("node key {key} is not a valid ed25519 public key")]
    BadNodeKey {
        /// The key, hex.
        key: NodeKey,
    },
    /// The signature does not verify.
    #[error("announcement from node {key} seqnum {seqnum}: signature does not verify")]
    BadSignature {
        /// Whose announcement.
        key: NodeKey,
        /// Its sequence number.
        seqnum: u64,
    },
    /// A field is out of range.
    #[error("announcement from node {key}: field `{field}` is invalid: {reason}")]
    InvalidField {
        /// Whose announcement.
        key: NodeKey,
        /// Which field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `left` message names a node that is not in the set.
    #[error("`left` for node {key}, which is not in the set")]
    UnknownNode {
        /// The node named.
        key: NodeKey,
    },
}

/// An ed25519 node public key: a storage server's identity in the grid.
///
/// Holds raw bytes; [`NodeKey::verifying_key`] checks they are a valid point. Ordered by bytes.
/// On the wire (JSON) it is 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeKey(pub [u8; 32]);

impl NodeKey {
    /// The key of a signing key.
    pub fn from_signing_key(key: &SigningKey) -> Self {
        Self(key.verifying_key().to_bytes())
    }

    /// Parses the key as an ed25519 point (rejecting invalid encodings).
    pub fn verifying_key(&self) -> Result<VerifyingKey, Error> {
        VerifyingKey::from_bytes(&self.0).map_err(|_| Error::BadNodeKey { key: *self })
    }

    /// Lowercase hex form (64 digits), as used on the wire.
    pub fn to_hex(&self) -> String {
        HEXLOWER.encode(&self.0)
    }

    /// Parses the 64-digit lowercase hex form (the only accepted form).
    pub fn from_hex(s: &str) -> Option<Self> {
        HEXLOWER
            .decode(s.as_bytes())
            .ok()?
            .try_into()
            .ok()
            .map(Self)
    }
}

impl fmt::Display for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey({})", self.to_hex())
    }
}

impl Serialize for NodeKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for NodeKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom("node key: expected 64 hex digits"))
    }
}

/// What a storage server says about itself. Signed as a whole by [`Announcement::sign`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Announcement {
    /// The announcing server's node key; the signature must verify under it.
    pub node_key: NodeKey,
    /// Strictly increasing per node key; the introducer rejects a seqnum it has already passed.
    pub seqnum: u64,
    /// When the announcement was made, milliseconds since the Unix epoch (announcer's clock).
    pub timestamp_ms: u64,
    /// Storage protocol version the server speaks.
    pub protocol: u32,
    /// Base URL of the storage server's HTTP API (`http://` or `https://`).
    pub url: String,
    /// Total space the server offers, bytes.
    pub capacity: u64,
    /// Space still available, bytes (at most `capacity`).
    pub available: u64,
    /// Free-form human-readable name (at most [`MAX_NICKNAME_LEN`] bytes, no control characters).
    pub nickname: String,
}

impl Announcement {
    /// The exact bytes the node key signs (see `docs/spec/introducer.md`).
    ///
    /// `ANNOUNCEMENT_DOMAIN` ‖ node_key ‖ seqnum u64 ‖ timestamp_ms u64 ‖ protocol u32 ‖
    /// capacity u64 ‖ available u64 ‖ url_len u16 ‖ url ‖ nickname_len u16 ‖ nickname, all
    /// integers big-endian. Fails if the URL or nickname are too long to encode.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, Error> {
        self.check_lengths()?;
        let mut out =
            Vec::with_capacity(32 + 32 + 8 * 4 + 4 + 4 + self.url.len() + self.nickname.len());
        out.extend_from_slice(ANNOUNCEMENT_DOMAIN);
        out.extend_from_slice(&self.node_key.0);
        out.extend_from_slice(&self.seqnum.to_be_bytes());
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        out.extend_from_slice(&self.protocol.to_be_bytes());
        out.extend_from_slice(&self.capacity.to_be_bytes());
        out.extend_from_slice(&self.available.to_be_bytes());
        for s in [&self.url, &self.nickname] {
            let len = u16::try_from(s.len()).map_err(|_| self.invalid("url", "too long"))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Ok(out)
    }

    fn invalid(&self, field: &'static str, reason: &'static str) -> Error {
        Error::InvalidField {
            key: self.node_key,
            field,
            reason,
        }
    }

    fn check_lengths(&self) -> Result<(), Error> {
        if self.url.len() > MAX_URL_LEN {
            return Err(self.invalid("url", "longer than 2048 bytes"));
        }
        if self.nickname.len() > MAX_NICKNAME_LEN {
            return Err(self.invalid("nickname", "longer than 64 bytes"));
        }
        Ok(())
    }

    /// Checks every field is in range: lengths, URL scheme and form, no control characters,
    /// integers at most [`MAX_JSON_INT`], `available <= capacity`.
    pub fn validate(&self) -> Result<(), Error> {
        self.check_lengths()?;
        let rest = self
            .url
            .strip_prefix("http://")
            .or_else(|| self.url.strip_prefix("https://"))
            .ok_or_else(|| self.invalid("url", "scheme is not http:// or https://"))?;
        let authority = rest.split('/').next().unwrap_or("");
        if authority.is_empty() {
            return Err(self.invalid("url", "no host"));
        }
        if self
            .url
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(self.invalid("url", "contains whitespace or control characters"));
        }
        if self.nickname.chars().any(char::is_control) {
            return Err(self.invalid("nickname", "contains control characters"));
        }
        for (field, v) in [
            ("seqnum", self.seqnum),
            ("timestamp_ms", self.timestamp_ms),
            ("capacity", self.capacity),
            ("available", self.available),
        ] {
            if v > MAX_JSON_INT {
                return Err(self.invalid(field, "larger than 2^53 - 1"));
            }
        }
        if self.available > self.capacity {
            return Err(self.invalid("available", "larger than capacity"));
        }
        Ok(())
    }

    /// Validates and signs with `key`. Fails if a field is invalid or `key` is not the
    /// announcement's node key.
    pub fn sign(self, key: &SigningKey) -> Result<SignedAnnouncement, Error> {
        if NodeKey::from_signing_key(key) != self.node_key {
            return Err(self.invalid("node_key", "does not match the signing key"));
        }
        self.validate()?;
        let signature = key.sign(&self.signing_bytes()?).to_bytes();
        Ok(SignedAnnouncement {
            announcement: self,
            signature: SignatureBytes(signature),
        })
    }

    /// True if the two announcements say the same thing apart from `seqnum` and `timestamp_ms`
    /// (a heartbeat re-announce, as opposed to an update subscribers need to hear about).
    pub fn same_content(&self, other: &Self) -> bool {
        self.node_key == other.node_key
            && self.protocol == other.protocol
            && self.url == other.url
            && self.capacity == other.capacity
            && self.available == other.available
            && self.nickname == other.nickname
    }
}

/// A 64-byte ed25519 signature; 128 lowercase hex digits on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignatureBytes(pub [u8; 64]);

impl fmt::Debug for SignatureBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignatureBytes({})", HEXLOWER.encode(&self.0))
    }
}

impl Serialize for SignatureBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&HEXLOWER.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for SignatureBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HEXLOWER
            .decode(s.as_bytes())
            .ok()
            .and_then(|v| v.try_into().ok())
            .map(Self)
            .ok_or_else(|| serde::de::Error::custom("signature: expected 128 lowercase hex digits"))
    }
}

/// An announcement with its node-key signature. Not yet verified: call [`Self::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedAnnouncement {
    /// The signed content.
    pub announcement: Announcement,
    /// ed25519 signature by `announcement.node_key` over [`Announcement::signing_bytes`].
    pub signature: SignatureBytes,
}

impl SignedAnnouncement {
    /// Checks the fields are in range and the signature verifies (strict ed25519 verification:
    /// no malleable signatures, no small-order keys).
    pub fn verify(&self) -> Result<(), Error> {
        let a = &self.announcement;
        a.validate()?;
        let key = a.node_key.verifying_key()?;
        let sig = Signature::from_bytes(&self.signature.0);
        key.verify_strict(&a.signing_bytes()?, &sig)
            .map_err(|_| Error::BadSignature {
                key: a.node_key,
                seqnum: a.seqnum,
            })
    }

    /// The announcing node.
    pub fn node_key(&self) -> NodeKey {
        self.announcement.node_key
    }
}

/// A message from a peer (storage server or subscriber) to the introducer.
///
/// The first message on a connection decides its mode: `announce` (only announces for the same
/// node key, and finally `withdraw`, may follow) or `subscribe` (nothing may follow).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Announce (or re-announce: heartbeat, changed capacity) a storage server.
    Announce {
        /// The signed announcement.
        server: SignedAnnouncement,
    },
    /// Ask for the current server set and every later change.
    Subscribe,
    /// On an announcing connection: remove the server now (clean shutdown) instead of letting
    /// it expire. Honoured only if the latest announcement accepted for the key came over this
    /// connection; the introducer then closes the connection with code 1000.
    Withdraw,
}

/// Why the introducer refused an announcement; sent in [`ServerMessage::Rejected`] and as the
/// WebSocket close code right after it.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// See [`close_code::BAD_MESSAGE`].
    BadMessage,
    /// See [`close_code::BAD_SIGNATURE`].
    BadSignature,
    /// See [`close_code::STALE_SEQNUM`].
    StaleSeqnum,
    /// See [`close_code::BAD_TIMESTAMP`].
    BadTimestamp,
    /// See [`close_code::KEY_CHANGED`].
    KeyChanged,
    /// See [`close_code::INVALID_FIELD`].
    InvalidField,
    /// See [`close_code::FULL`].
    Full,
}

impl RejectCode {
    /// The WebSocket close code for this rejection.
    pub fn close_code(self) -> u16 {
        match self {
            Self::BadMessage => close_code::BAD_MESSAGE,
            Self::BadSignature => close_code::BAD_SIGNATURE,
            Self::StaleSeqnum => close_code::STALE_SEQNUM,
            Self::BadTimestamp => close_code::BAD_TIMESTAMP,
            Self::KeyChanged => close_code::KEY_CHANGED,
            Self::InvalidField => close_code::INVALID_FIELD,
            Self::Full => close_code::FULL,
        }
    }
}

/// A message from the introducer to a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMessage {
    /// To an announcer: the announcement was accepted.
    Accepted {
        /// The accepted seqnum.
        seqnum: u64,
        /// The server is forgotten if it does not re-announce within this many milliseconds.
        ttl_ms: u64,
    },
    /// To an announcer: the announcement was refused; the introducer closes the connection
    /// right after with [`RejectCode::close_code`].
    Rejected {
        /// Machine-readable reason.
        code: RejectCode,
        /// Human-readable reason.
        reason: String,
        /// For [`RejectCode::StaleSeqnum`]: the highest seqnum accepted so far for this key,
        /// so a restarted server can continue above it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_seqnum: Option<u64>,
    },
    /// To a subscriber, first (and again if it fell behind): the whole current set.
    Snapshot {
        /// Every live server, ordered by node key.
        servers: Vec<SignedAnnouncement>,
    },
    /// To a subscriber: a server appeared.
    Joined {
        /// Its announcement.
        server: SignedAnnouncement,
    },
    /// To a subscriber: a live server changed what it announces (URL, capacity, ...).
    Updated {
        /// The new announcement.
        server: SignedAnnouncement,
    },
    /// To a subscriber: a server withdrew, or stopped announcing and expired.
    Left {
        /// The server that left.
        node_key: NodeKey,
    },
}

/// A change to a [`ServerSet`], as applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A server appeared.
    Joined(NodeKey),
    /// A server's announcement changed.
    Updated(NodeKey),
    /// A server went away.
    Left(NodeKey),
}

/// The subscriber's view of the live servers: applies [`ServerMessage`]s and verifies every
/// announcement, so a lying introducer can hide servers but cannot invent or alter one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSet {
    servers: BTreeMap<NodeKey, SignedAnnouncement>,
}

impl ServerSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The live servers, ordered by node key.
    pub fn servers(&self) -> impl Iterator<Item = &SignedAnnouncement> {
        self.servers.values()
    }

    /// The announcement of one server.
    pub fn get(&self, key: &NodeKey) -> Option<&SignedAnnouncement> {
        self.servers.get(key)
    }

    /// Number of live servers.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// True if no server is live.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Applies one message from the introducer and returns what changed.
    ///
    /// Every announcement is verified first; on error the set is left unchanged. A
    /// `Snapshot` replaces the whole set. `Accepted`/`Rejected` (announcer messages) change
    /// nothing. An announcement with a seqnum lower than the one held is ignored.
    pub fn apply(&mut self, msg: &ServerMessage) -> Result<Vec<Change>, Error> {
        match msg {
            ServerMessage::Snapshot { servers } => {
                let mut next = BTreeMap::new();
                for s in servers {
                    s.verify()?;
                    next.insert(s.node_key(), s.clone());
                }
                let mut changes = Vec::new();
                for (k, old) in &self.servers {
                    match next.get(k) {
                        None => changes.push(Change::Left(*k)),
                        Some(new) if new != old => changes.push(Change::Updated(*k)),
                        Some(_) => {}
                    }
                }
                for k in next.keys() {
                    if !self.servers.contains_key(k) {
                        changes.push(Change::Joined(*k));
                    }
                }
                self.servers = next;
                Ok(changes)
            }
            ServerMessage::Joined {
                server: announcement,
            }
            | ServerMessage::Updated {
                server: announcement,
            } => {
                announcement.verify()?;
                let key = announcement.node_key();
                let change = match self.servers.get(&key) {
                    Some(old) if old.announcement.seqnum >= announcement.announcement.seqnum => {
                        return Ok(Vec::new());
                    }
                    Some(_) => Change::Updated(key),
                    None => Change::Joined(key),
                };
                self.servers.insert(key, announcement.clone());
                Ok(vec![change])
            }
            ServerMessage::Left { node_key } => match self.servers.remove(node_key) {
                Some(_) => Ok(vec![Change::Left(*node_key)]),
                None => Err(Error::UnknownNode { key: *node_key }),
            },
            ServerMessage::Accepted { .. } | ServerMessage::Rejected { .. } => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn ann(k: &SigningKey, seqnum: u64) -> Announcement {
        Announcement {
            node_key: NodeKey::from_signing_key(k),
            seqnum,
            timestamp_ms: 1_700_000_000_000,
            protocol: 1,
            url: "http://127.0.0.1:8080".into(),
            capacity: 1000,
            available: 500,
            nickname: "alpha".into(),
        }
    }

    #[test]
    fn sign_verify_roundtrip_json() {
        let k = key(1);
        let s = ann(&k, 7).sign(&k).unwrap();
        s.verify().unwrap();
        let msg = ClientMessage::Announce { server: s.clone() };
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(serde_json::from_str::<ClientMessage>(&json).unwrap(), msg);
    }

    #[test]
    fn tampering_breaks_signature() {
        let k = key(1);
        let mut s = ann(&k, 7).sign(&k).unwrap();
        s.announcement.url = "http://evil.example:80".into();
        assert_eq!(
            s.verify(),
            Err(Error::BadSignature {
                key: NodeKey::from_signing_key(&k),
                seqnum: 7
            })
        );
    }

    #[test]
    fn wrong_key_refused() {
        let a = ann(&key(1), 1);
        assert!(matches!(
            a.sign(&key(2)),
            Err(Error::InvalidField {
                field: "node_key",
                ..
            })
        ));
    }

    #[test]
    fn validation() {
        let k = key(3);
        let mut a = ann(&k, 1);
        a.available = 2000;
        assert!(matches!(
            a.validate(),
            Err(Error::InvalidField {
                field: "available",
                ..
            })
        ));
        let mut a = ann(&k, 1);
        a.url = "ftp://x".into();
        assert!(matches!(
            a.validate(),
            Err(Error::InvalidField { field: "url", .. })
        ));
        let mut a = ann(&k, 1);
        a.url = "http://".into();
        assert!(matches!(
            a.validate(),
            Err(Error::InvalidField { field: "url", .. })
        ));
        let mut a = ann(&k, 1);
        a.url = format!("http://{}", "a".repeat(MAX_URL_LEN));
        assert!(matches!(
            a.signing_bytes(),
            Err(Error::InvalidField { field: "url", .. })
        ));
        let mut a = ann(&k, 1);
        a.seqnum = MAX_JSON_INT + 1;
        assert!(matches!(
            a.validate(),
            Err(Error::InvalidField {
                field: "seqnum",
                ..
            })
        ));
        let mut a = ann(&k, 1);
        a.nickname = "a\nb".into();
        assert!(matches!(
            a.validate(),
            Err(Error::InvalidField {
                field: "nickname",
                ..
            })
        ));
    }

    #[test]
    fn unknown_fields_rejected() {
        let k = key(1);
        let s = ann(&k, 7).sign(&k).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&s_json(&s)).unwrap();
        v["server"]["announcement"]["extra"] = 1.into();
        assert!(serde_json::from_str::<ClientMessage>(&v.to_string()).is_err());
    }

    fn s_json(s: &SignedAnnouncement) -> String {
        serde_json::to_string(&ClientMessage::Announce { server: s.clone() }).unwrap()
    }

    #[test]
    fn server_set_applies_and_verifies() {
        let (k1, k2) = (key(1), key(2));
        let (n1, n2) = (
            NodeKey::from_signing_key(&k1),
            NodeKey::from_signing_key(&k2),
        );
        let mut set = ServerSet::new();
        let a1 = ann(&k1, 1).sign(&k1).unwrap();
        let a2 = ann(&k2, 1).sign(&k2).unwrap();
        let ch = set
            .apply(&ServerMessage::Snapshot {
                servers: vec![a1.clone()],
            })
            .unwrap();
        assert_eq!(ch, vec![Change::Joined(n1)]);
        let ch = set
            .apply(&ServerMessage::Joined { server: a2.clone() })
            .unwrap();
        assert_eq!(ch, vec![Change::Joined(n2)]);
        let mut a1b = ann(&k1, 2);
        a1b.available = 10;
        let a1b = a1b.sign(&k1).unwrap();
        let ch = set
            .apply(&ServerMessage::Updated {
                server: a1b.clone(),
            })
            .unwrap();
        assert_eq!(ch, vec![Change::Updated(n1)]);
        // Older seqnum ignored.
        assert_eq!(
            set.apply(&ServerMessage::Updated { server: a1 }).unwrap(),
            vec![]
        );
        assert_eq!(set.get(&n1), Some(&a1b));
        // Forged announcement refused, set unchanged.
        let mut forged = a2.clone();
        forged.announcement.url = "http://evil:1".into();
        assert!(set
            .apply(&ServerMessage::Updated { server: forged })
            .is_err());
        assert_eq!(set.get(&n2), Some(&a2));
        let ch = set.apply(&ServerMessage::Left { node_key: n2 }).unwrap();
        assert_eq!(ch, vec![Change::Left(n2)]);
        assert_eq!(
            set.apply(&ServerMessage::Left { node_key: n2 }),
            Err(Error::UnknownNode { key: n2 })
        );
        let ch = set
            .apply(&ServerMessage::Snapshot { servers: vec![] })
            .unwrap();
        assert_eq!(ch, vec![Change::Left(n1)]);
        assert!(set.is_empty());
    }

    const VECTORS: &str = include_str!("../../../docs/spec/vectors/introducer.json");

    #[test]
    fn known_answer_vectors() {
        let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        for case in v["valid"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let seed: [u8; 32] = HEXLOWER
                .decode(case["secret_key"].as_str().unwrap().as_bytes())
                .unwrap()
                .try_into()
                .unwrap();
            let key = SigningKey::from_bytes(&seed);
            let ann: Announcement = serde_json::from_value(case["announcement"].clone()).unwrap();
            assert_eq!(
                HEXLOWER.encode(&ann.signing_bytes().unwrap()),
                case["signing_bytes"].as_str().unwrap(),
                "{name}: signing bytes"
            );
            let signed = ann.sign(&key).unwrap();
            assert_eq!(
                HEXLOWER.encode(&signed.signature.0),
                case["signature"].as_str().unwrap(),
                "{name}: signature"
            );
            let msg: ClientMessage =
                serde_json::from_str(case["message"].as_str().unwrap()).unwrap();
            assert_eq!(
                msg,
                ClientMessage::Announce {
                    server: signed.clone()
                },
                "{name}: message"
            );
            assert_eq!(
                serde_json::to_string(&msg).unwrap(),
                case["message"].as_str().unwrap()
            );
            signed.verify().unwrap();
        }
        for case in v["invalid"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let parsed = serde_json::from_str::<ClientMessage>(case["message"].as_str().unwrap());
            let got = match parsed {
                Err(_) => "malformed".to_owned(),
                Ok(ClientMessage::Announce { server }) => match server.verify() {
                    Ok(()) => "ok".to_owned(),
                    Err(Error::BadSignature { .. } | Error::BadNodeKey { .. }) => {
                        "bad_signature".to_owned()
                    }
                    Err(Error::InvalidField { field, .. }) => format!("invalid_field:{field}"),
                    Err(e) => format!("{e:?}"),
                },
                Ok(other) => format!("{other:?}"),
            };
            assert_eq!(got, case["error"].as_str().unwrap(), "{name}");
        }
    }

    mod props {
        use proptest::prelude::*;

        use super::super::*;

        fn announcement() -> impl Strategy<Value = (u8, Announcement)> {
            (
                any::<u8>(),
                0..=MAX_JSON_INT,
                0..=MAX_JSON_INT,
                any::<u32>(),
                "[a-z0-9.-]{1,40}(:[0-9]{1,5})?(/[a-z0-9/]{0,20})?",
                0..=MAX_JSON_INT,
                any::<u64>(),
                "[^\\p{Cc}]{0,16}",
            )
                .prop_map(
                    |(seed, seqnum, ts, protocol, host, capacity, avail, nick)| {
                        let key = SigningKey::from_bytes(&[seed; 32]);
                        let available = if capacity == 0 {
                            0
                        } else {
                            avail % (capacity + 1)
                        };
                        let a = Announcement {
                            node_key: NodeKey::from_signing_key(&key),
                            seqnum,
                            timestamp_ms: ts,
                            protocol,
                            url: format!("https://{host}"),
                            capacity,
                            available,
                            nickname: nick,
                        };
                        (seed, a)
                    },
                )
        }

        proptest! {
            #[test]
            fn sign_verify_json_roundtrip((seed, a) in announcement(), flip in 0usize..6) {
                let key = SigningKey::from_bytes(&[seed; 32]);
                let signed = a.clone().sign(&key).unwrap();
                signed.verify().unwrap();
                let json = serde_json::to_string(&ServerMessage::Joined { server: signed.clone() }).unwrap();
                let back: ServerMessage = serde_json::from_str(&json).unwrap();
                prop_assert_eq!(back, ServerMessage::Joined { server: signed.clone() });
                // Changing any signed field breaks the signature (or the field check).
                let mut t = signed;
                match flip {
                    0 => t.announcement.seqnum ^= 1,
                    1 => t.announcement.timestamp_ms ^= 1,
                    2 => t.announcement.protocol ^= 1,
                    3 => t.announcement.url.push('x'),
                    4 => t.announcement.capacity = t.announcement.capacity.wrapping_add(1),
                    _ => t.announcement.nickname.push('x'),
                }
                prop_assert!(t.verify().is_err());
            }

            #[test]
            fn hostile_json_never_panics(s in ".{0,300}") {
                if let Ok(ClientMessage::Announce { server }) = serde_json::from_str::<ClientMessage>(&s) {
                    let _ = server.verify();
                }
                if let Ok(msg) = serde_json::from_str::<ServerMessage>(&s) {
                    let _ = ServerSet::new().apply(&msg);
                }
            }

            #[test]
            fn mutated_valid_messages_never_panic((seed, a) in announcement(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
                let key = SigningKey::from_bytes(&[seed; 32]);
                let signed = a.sign(&key).unwrap();
                let mut json = serde_json::to_vec(&ClientMessage::Announce { server: signed }).unwrap();
                let i = pos.index(json.len());
                json[i] = byte;
                if let Ok(ClientMessage::Announce { server }) = serde_json::from_slice::<ClientMessage>(&json) {
                    let _ = server.verify();
                }
            }
        }
    }
}
