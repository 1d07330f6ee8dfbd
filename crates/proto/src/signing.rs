//! Signed requests: every write to a storage server is signed with an ed25519 *account key*.
//!
//! No bearer secret ever travels: a request carries the account's public key, a timestamp, a
//! random nonce and a signature over a canonical message binding the server (audience), method,
//! path, query, body, timestamp, nonce and key. A server accepts it if the signature verifies,
//! the timestamp is within [`VerifyPolicy::max_skew_secs`] of its clock, and the
//! (account, nonce) pair has not been seen within that window ([`ReplayGuard`]).
//!
//! The body is bound in one of two ways ([`BodyBinding`]): by its SHA-256 (every request except
//! share data), or by its **length only** for the two requests that carry immutable share bytes
//! (`PUT /storage/v1/upload/{upload}/{share}?offset=N` and `PUT /storage/v1/immutable/{si}/{share}`):
//! those bytes are authenticated by the share's own hashes, which the server checks against the
//! signed storage index before filing the share (`docs/spec/signed-requests.md`, "Why share data
//! is not hashed"). The server chooses the binding by endpoint, never from the request.
//!
//! The canonical message (all lengths `u32` big-endian, specified in
//! `docs/spec/signed-requests.md`):
//!
//! ```text
//! "lafs-signed-request-v2" 0x00
//! len(audience)  audience       server id from GET /storage/v1/version
//! len(method)    method         e.g. "PUT", as sent
//! len(path)      path           as sent, percent-encoding untouched
//! len(query)     canonical query: the '&'-separated components as sent, empty ones dropped,
//!                               sorted bytewise, joined with '&'
//! binding                       1 byte: 0x00 digest, 0x01 length only
//! len(body)                     u64 big-endian
//! sha256(body)                  32 bytes (32 zero bytes for the length-only binding)
//! timestamp                     u64 big-endian, Unix seconds
//! nonce                         16 bytes
//! account                       32 bytes, the ed25519 public key
//! ```

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::ids::{base32_decode, base32_encode, parse_decimal, AccountId, Nonce};
use crate::Error;

/// Domain-separation prefix of the canonical message (including the trailing zero byte).
pub const DOMAIN: &[u8] = b"lafs-signed-request-v2\0";

/// Header carrying the account key (base32, 52 characters).
pub const HEADER_ACCOUNT: &str = "lafs-account";
/// Header carrying the timestamp (decimal Unix seconds).
pub const HEADER_TIMESTAMP: &str = "lafs-timestamp";
/// Header carrying the nonce (base32, 26 characters).
pub const HEADER_NONCE: &str = "lafs-nonce";
/// Header carrying the signature (base32, 103 characters).
pub const HEADER_SIGNATURE: &str = "lafs-signature";
/// All four signing headers (for CORS `Access-Control-Allow-Headers`).
pub const SIGNING_HEADERS: [&str; 4] = [
    HEADER_ACCOUNT,
    HEADER_TIMESTAMP,
    HEADER_NONCE,
    HEADER_SIGNATURE,
];

/// Default allowed clock difference, in seconds.
pub const DEFAULT_MAX_SKEW_SECS: u64 = 300;

/// How a signature covers the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyBinding {
    /// The body's length and SHA-256 (every request except immutable share data).
    Digest {
        /// Body length in bytes.
        len: u64,
        /// SHA-256 of the body (of the empty string if there is none).
        sha256: [u8; 32],
    },
    /// The body's length only: immutable share data, whose bytes the server verifies against
    /// the share's hashes and the signed storage index before filing the share.
    Length(u64),
}

impl BodyBinding {
    /// The binding byte of the canonical message.
    pub fn kind(&self) -> u8 {
        match self {
            Self::Digest { .. } => 0,
            Self::Length(_) => 1,
        }
    }

    /// The body length bound.
    pub fn len(&self) -> u64 {
        match *self {
            Self::Digest { len, .. } | Self::Length(len) => len,
        }
    }

    /// The body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The parts of an HTTP request that a signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestParts<'a> {
    /// HTTP method as sent (`"PUT"`).
    pub method: &'a str,
    /// Path as sent, percent-encoding untouched (`"/storage/v1/..."`).
    pub path: &'a str,
    /// Raw query string without the `?` (`""` if none).
    pub query: &'a str,
    /// How the body is covered.
    pub body: BodyBinding,
}

impl<'a> RequestParts<'a> {
    /// Request parts binding the body by its length and SHA-256 (every request except
    /// immutable share data).
    pub fn new(method: &'a str, path: &'a str, query: &'a str, body: &[u8]) -> Self {
        Self {
            method,
            path,
            query,
            body: BodyBinding::Digest {
                len: body.len() as u64,
                sha256: body_digest(body),
            },
        }
    }

    /// Request parts binding the body by its length only: for the requests carrying immutable
    /// share data (`PUT /storage/v1/upload/{upload}/{share}?offset=N`,
    /// `PUT /storage/v1/immutable/{si}/{share}`). No hashing of the body.
    pub fn share_data(method: &'a str, path: &'a str, query: &'a str, body_len: u64) -> Self {
        Self {
            method,
            path,
            query,
            body: BodyBinding::Length(body_len),
        }
    }
}

impl<'a> RequestParts<'a> {
    /// Request parts with the binding the protocol prescribes for this method and path
    /// ([`is_share_data_request`]): length only for share data, digest otherwise.
    pub fn for_body(method: &'a str, path: &'a str, query: &'a str, body: &[u8]) -> Self {
        if is_share_data_request(method, path) {
            Self::share_data(method, path, query, body.len() as u64)
        } else {
            Self::new(method, path, query, body)
        }
    }
}

/// Whether the protocol binds this request's body by length only: a `PUT` of share data,
/// `/storage/v1/upload/{upload}/{share}` or `/storage/v1/immutable/{si}/{share}` (no other
/// request). Servers choose the binding by endpoint; clients may use this to pick it.
pub fn is_share_data_request(method: &str, path: &str) -> bool {
    if method != "PUT" {
        return false;
    }
    let mut parts = path.split('/');
    matches!(
        (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next()
        ),
        (
            Some(""),
            Some("storage"),
            Some("v1"),
            Some("upload" | "immutable"),
            Some(a),
            Some(b),
            None
        ) if !a.is_empty() && !b.is_empty()
    )
}

/// SHA-256 of a request body.
pub fn body_digest(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// The canonical form of a query string: `&`-separated components kept exactly as sent, empty
/// components dropped, sorted bytewise and joined with `&`. Clients may send parameters in any
/// order; they may not re-encode them after signing.
pub fn canonical_query(query: &str) -> String {
    let mut parts: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    parts.sort_unstable();
    parts.join("&")
}

/// The exact bytes that are signed (see the module documentation).
pub fn canonical_message(
    audience: &str,
    req: &RequestParts<'_>,
    account: &AccountId,
    timestamp: u64,
    nonce: &Nonce,
) -> Vec<u8> {
    let query = canonical_query(req.query);
    let mut m = Vec::with_capacity(
        DOMAIN.len() + 16 + audience.len() + req.method.len() + req.path.len() + query.len() + 97,
    );
    m.extend_from_slice(DOMAIN);
    for field in [audience, req.method, req.path, query.as_str()] {
        // Fields longer than 4 GiB cannot occur in HTTP requests; saturating keeps the
        // function total (such a message would simply never verify).
        let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(field.as_bytes());
    }
    m.push(req.body.kind());
    m.extend_from_slice(&req.body.len().to_be_bytes());
    match req.body {
        BodyBinding::Digest { sha256, .. } => m.extend_from_slice(&sha256),
        BodyBinding::Length(_) => m.extend_from_slice(&[0u8; 32]),
    }
    m.extend_from_slice(&timestamp.to_be_bytes());
    m.extend_from_slice(&nonce.0);
    m.extend_from_slice(&account.0);
    m
}

/// The four signing header values of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedHeaders {
    /// The signer's public key.
    pub account: AccountId,
    /// Unix seconds at signing.
    pub timestamp: u64,
    /// Random per-request nonce.
    pub nonce: Nonce,
    /// ed25519 signature over [`canonical_message`].
    pub signature: [u8; 64],
}

impl SignedHeaders {
    /// `(header name, value)` pairs to add to the request.
    pub fn header_values(&self) -> [(&'static str, String); 4] {
        [
            (HEADER_ACCOUNT, self.account.to_text()),
            (HEADER_TIMESTAMP, self.timestamp.to_string()),
            (HEADER_NONCE, self.nonce.to_text()),
            (HEADER_SIGNATURE, base32_encode(&self.signature)),
        ]
    }

    /// Parses the headers; `lookup(name)` returns a header's value if present (`None` if absent
    /// or present more than once). Values that are not ASCII must be passed as `Some("")` or
    /// any other invalid text so they are reported as malformed.
    pub fn parse<'h>(lookup: impl Fn(&'static str) -> Option<&'h str>) -> Result<Self, Error> {
        let get = |header| lookup(header).ok_or(Error::MissingHeader { header });
        let malformed = |header| move |_| Error::MalformedHeader { header };
        let account = get(HEADER_ACCOUNT)?
            .parse()
            .map_err(malformed(HEADER_ACCOUNT))?;
        let timestamp = parse_decimal(get(HEADER_TIMESTAMP)?, "timestamp")
            .map_err(malformed(HEADER_TIMESTAMP))?;
        let nonce = get(HEADER_NONCE)?
            .parse()
            .map_err(malformed(HEADER_NONCE))?;
        let signature = base32_decode::<64>(get(HEADER_SIGNATURE)?, "signature")
            .map_err(malformed(HEADER_SIGNATURE))?;
        Ok(Self {
            account,
            timestamp,
            nonce,
            signature,
        })
    }
}

/// Signs a request for the server whose id is `audience`. `nonce` must be fresh random bytes
/// for each request (the caller supplies randomness; this crate has none).
pub fn sign_request(
    key: &SigningKey,
    audience: &str,
    req: &RequestParts<'_>,
    timestamp: u64,
    nonce: Nonce,
) -> SignedHeaders {
    let account = AccountId(key.verifying_key().to_bytes());
    let msg = canonical_message(audience, req, &account, timestamp, &nonce);
    let signature = key.sign(&msg).to_bytes();
    SignedHeaders {
        account,
        timestamp,
        nonce,
        signature,
    }
}

/// What a verifier accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// Largest accepted |timestamp − now|, in seconds.
    pub max_skew_secs: u64,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        Self {
            max_skew_secs: DEFAULT_MAX_SKEW_SECS,
        }
    }
}

/// Checks a signed request's timestamp and signature at time `now` (Unix seconds), without
/// touching any replay state. Use [`verify_request`] unless the nonce is recorded separately
/// (for example to keep ed25519 verification outside a lock): a request that passed this check
/// must still go through [`ReplayGuard::check_and_insert`] with expiry
/// `timestamp + max_skew_secs`.
///
/// Checks, in this order: the timestamp is within the allowed skew ([`Error::StaleTimestamp`]),
/// the key is a valid ed25519 point ([`Error::BadAccountKey`]), the signature verifies under
/// strict rules ([`Error::BadSignature`]). On success, returns the account that signed.
pub fn check_signature(
    audience: &str,
    req: &RequestParts<'_>,
    headers: &SignedHeaders,
    now: u64,
    policy: &VerifyPolicy,
) -> Result<AccountId, Error> {
    if headers.timestamp.abs_diff(now) > policy.max_skew_secs {
        return Err(Error::StaleTimestamp {
            timestamp: headers.timestamp,
            now,
            max_skew: policy.max_skew_secs,
        });
    }
    let key = VerifyingKey::from_bytes(&headers.account.0).map_err(|_| Error::BadAccountKey)?;
    let msg = canonical_message(
        audience,
        req,
        &headers.account,
        headers.timestamp,
        &headers.nonce,
    );
    let sig = Signature::from_bytes(&headers.signature);
    key.verify_strict(&msg, &sig)
        .map_err(|_| Error::BadSignature)?;
    Ok(headers.account)
}

/// The time until which a verified request's nonce must be remembered: after
/// `timestamp + max_skew` the timestamp check alone rejects the request.
pub fn nonce_expiry(headers: &SignedHeaders, policy: &VerifyPolicy) -> u64 {
    headers.timestamp.saturating_add(policy.max_skew_secs)
}

/// Verifies a signed request at time `now` (Unix seconds) and records its nonce.
///
/// [`check_signature`] first, and only then the nonce is checked to be fresh
/// ([`Error::ReplayedNonce`], [`Error::ReplayCacheFull`]) — so unsigned junk can never fill the
/// replay cache. On success, returns the account that signed.
pub fn verify_request(
    audience: &str,
    req: &RequestParts<'_>,
    headers: &SignedHeaders,
    now: u64,
    policy: &VerifyPolicy,
    guard: &mut ReplayGuard,
) -> Result<AccountId, Error> {
    let account = check_signature(audience, req, headers, now, policy)?;
    guard.check_and_insert(account, headers.nonce, nonce_expiry(headers, policy), now)?;
    Ok(account)
}

/// Remembers (account, nonce) pairs until their request could no longer pass the timestamp
/// check. Bounded: when `capacity` unexpired entries are held, new requests are refused with
/// [`Error::ReplayCacheFull`] rather than forgetting a nonce early (which would allow replays).
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    capacity: usize,
    seen: BTreeMap<(AccountId, Nonce), u64>,
    by_expiry: BTreeSet<(u64, AccountId, Nonce)>,
}

impl ReplayGuard {
    /// An empty guard holding at most `capacity` nonces.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: BTreeMap::new(),
            by_expiry: BTreeSet::new(),
        }
    }

    /// Number of nonces currently remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// No nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Forgets every entry that expired before `now`.
    pub fn prune(&mut self, now: u64) {
        while let Some(&first) = self.by_expiry.first() {
            if first.0 >= now {
                break;
            }
            self.by_expiry.remove(&first);
            self.seen.remove(&(first.1, first.2));
        }
    }

    /// Records the pair, to be remembered until `expires` (Unix seconds, inclusive). Fails if
    /// it is already remembered or the guard is full.
    pub fn check_and_insert(
        &mut self,
        account: AccountId,
        nonce: Nonce,
        expires: u64,
        now: u64,
    ) -> Result<(), Error> {
        self.prune(now);
        if self.seen.contains_key(&(account, nonce)) {
            return Err(Error::ReplayedNonce);
        }
        if self.seen.len() >= self.capacity {
            return Err(Error::ReplayCacheFull {
                capacity: self.capacity,
            });
        }
        self.seen.insert((account, nonce), expires);
        self.by_expiry.insert((expires, account, nonce));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_700_000_000;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[42u8; 32])
    }

    fn req(body: &[u8]) -> RequestParts<'_> {
        RequestParts::new("PUT", "/storage/v1/immutable/upload/x/0", "offset=0", body)
    }

    fn vector_json(r: &RequestParts<'_>, body: &str) -> serde_json::Value {
        let key = SigningKey::from_bytes(&[0x2a; 32]);
        let h = sign_request(&key, "srv", r, T, Nonce([9; 16]));
        let msg = canonical_message("srv", r, &h.account, T, &h.nonce);
        let binding = match r.body {
            BodyBinding::Digest { .. } => "digest",
            BodyBinding::Length(_) => "length",
        };
        serde_json::json!({
            "key_seed": hex::encode([0x2a; 32]),
            "audience": "srv",
            "method": r.method,
            "path": r.path,
            "query": r.query,
            "body": body,
            "binding": binding,
            "timestamp": T,
            "nonce": hex::encode([9; 16]),
            "canonical_message": hex::encode(&msg),
            "headers": {
                "lafs-account": h.account.to_text(),
                "lafs-timestamp": T.to_string(),
                "lafs-nonce": h.nonce.to_text(),
                "lafs-signature": base32_encode(&h.signature),
            },
        })
    }

    #[test]
    fn vector() {
        let v: serde_json::Value = serde_json::from_str(include_str!(
            "../../../docs/spec/vectors/signed-request.json"
        ))
        .unwrap();
        let finish = RequestParts::new(
            "POST",
            "/storage/v1/upload/x/0/finish",
            "",
            br#"{"length":4}"#,
        );
        let write = RequestParts::share_data("PUT", "/storage/v1/upload/x/0", "offset=0", 4);
        let got = serde_json::json!([
            vector_json(&finish, r#"{"length":4}"#),
            vector_json(&write, "data"),
        ]);
        assert_eq!(v, got, "vector mismatch; computed:\n{got:#}");
    }

    #[test]
    fn share_data_requests() {
        assert!(is_share_data_request("PUT", "/storage/v1/upload/x/0"));
        assert!(is_share_data_request("PUT", "/storage/v1/immutable/si/3"));
        assert!(!is_share_data_request("POST", "/storage/v1/upload/x/0"));
        assert!(!is_share_data_request(
            "PUT",
            "/storage/v1/upload/x/0/finish"
        ));
        assert!(!is_share_data_request("PUT", "/storage/v1/upload/x"));
        assert!(!is_share_data_request(
            "PUT",
            "/storage/v1/mutable/si/write"
        ));
        assert!(!is_share_data_request("PUT", "/storage/v1/upload//0"));
    }

    #[test]
    fn share_data_binding_covers_length_not_content() {
        let r = RequestParts::share_data("PUT", "/storage/v1/upload/x/0", "offset=0", 4);
        let h = sign_request(&key(), "srv", &r, T, Nonce([9; 16]));
        let p = VerifyPolicy::default();
        let mut g = ReplayGuard::new(10);
        // Another length, or the digest binding of the same body, does not verify.
        let longer = RequestParts::share_data("PUT", "/storage/v1/upload/x/0", "offset=0", 5);
        let digest = RequestParts::new("PUT", "/storage/v1/upload/x/0", "offset=0", b"data");
        for bad in [longer, digest] {
            assert_eq!(
                verify_request("srv", &bad, &h, T, &p, &mut g),
                Err(Error::BadSignature)
            );
        }
        // A digest-bound signature does not verify as length-bound either (no downgrade).
        let hd = sign_request(&key(), "srv", &digest, T, Nonce([7; 16]));
        assert_eq!(
            verify_request("srv", &r, &hd, T, &p, &mut g),
            Err(Error::BadSignature)
        );
        assert_eq!(verify_request("srv", &r, &h, T, &p, &mut g), Ok(h.account));
    }

    #[test]
    fn sign_verify_and_replay() {
        let r = req(b"data");
        let h = sign_request(&key(), "srv", &r, T, Nonce([9; 16]));
        let mut g = ReplayGuard::new(10);
        let p = VerifyPolicy::default();
        assert_eq!(
            verify_request("srv", &r, &h, T + 1, &p, &mut g),
            Ok(h.account)
        );
        assert_eq!(
            verify_request("srv", &r, &h, T + 2, &p, &mut g),
            Err(Error::ReplayedNonce)
        );
        // After the window the entry is forgotten, but the timestamp check rejects it.
        assert!(matches!(
            verify_request("srv", &r, &h, T + 301, &p, &mut g),
            Err(Error::StaleTimestamp { .. })
        ));
        g.prune(T + 301);
        assert!(g.is_empty());
    }

    #[test]
    fn every_field_is_covered() {
        let r = req(b"data");
        let h = sign_request(&key(), "srv", &r, T, Nonce([9; 16]));
        let p = VerifyPolicy::default();
        let mut g = ReplayGuard::new(10);
        let other_body = req(b"datb");
        let other_query = RequestParts {
            query: "offset=1",
            ..r
        };
        let other_path = RequestParts {
            path: "/storage/v1/immutable/upload/x/1",
            ..r
        };
        let other_method = RequestParts {
            method: "POST",
            ..r
        };
        for bad in [other_body, other_query, other_path, other_method] {
            assert_eq!(
                verify_request("srv", &bad, &h, T, &p, &mut g),
                Err(Error::BadSignature)
            );
        }
        assert_eq!(
            verify_request("srv2", &r, &h, T, &p, &mut g),
            Err(Error::BadSignature)
        );
        let mut h2 = h;
        h2.nonce = Nonce([8; 16]);
        assert_eq!(
            verify_request("srv", &r, &h2, T, &p, &mut g),
            Err(Error::BadSignature)
        );
        let mut h3 = h;
        h3.timestamp += 1;
        assert_eq!(
            verify_request("srv", &r, &h3, T, &p, &mut g),
            Err(Error::BadSignature)
        );
        let mut h4 = h;
        h4.account = AccountId(SigningKey::from_bytes(&[1; 32]).verifying_key().to_bytes());
        assert_eq!(
            verify_request("srv", &r, &h4, T, &p, &mut g),
            Err(Error::BadSignature)
        );
        assert!(g.is_empty(), "failed verifications must not consume nonces");
    }

    #[test]
    fn query_order_does_not_matter() {
        assert_eq!(canonical_query("b=2&a=1&&"), "a=1&b=2");
        let r = RequestParts::new("GET", "/p", "b=2&a=1", b"");
        let h = sign_request(&key(), "srv", &r, T, Nonce([1; 16]));
        let r2 = RequestParts::new("GET", "/p", "a=1&b=2", b"");
        let mut g = ReplayGuard::new(10);
        assert!(verify_request("srv", &r2, &h, T, &VerifyPolicy::default(), &mut g).is_ok());
    }

    #[test]
    fn headers_round_trip_and_malformed() {
        let h = sign_request(&key(), "srv", &req(b""), T, Nonce([3; 16]));
        let vals = h.header_values();
        let lookup = |name: &'static str| {
            vals.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(SignedHeaders::parse(lookup), Ok(h));
        let missing = |name: &'static str| {
            if name == HEADER_NONCE {
                None
            } else {
                lookup(name)
            }
        };
        assert_eq!(
            SignedHeaders::parse(missing),
            Err(Error::MissingHeader {
                header: HEADER_NONCE
            })
        );
        let bad_ts = |name: &'static str| {
            if name == HEADER_TIMESTAMP {
                Some("-5")
            } else {
                lookup(name)
            }
        };
        assert_eq!(
            SignedHeaders::parse(bad_ts),
            Err(Error::MalformedHeader {
                header: HEADER_TIMESTAMP
            })
        );
    }

    #[test]
    fn replay_guard_capacity() {
        let mut g = ReplayGuard::new(2);
        let a = AccountId([0; 32]);
        g.check_and_insert(a, Nonce([1; 16]), 100, 0).unwrap();
        g.check_and_insert(a, Nonce([2; 16]), 200, 0).unwrap();
        assert_eq!(
            g.check_and_insert(a, Nonce([3; 16]), 200, 50),
            Err(Error::ReplayCacheFull { capacity: 2 })
        );
        // At 101 the first entry has expired and makes room.
        g.check_and_insert(a, Nonce([3; 16]), 200, 101).unwrap();
        assert_eq!(g.len(), 2);
    }
}
