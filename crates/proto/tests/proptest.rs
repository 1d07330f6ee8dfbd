//! Property tests for the protocol parsers: no input panics, and encoders round-trip.

use lafs_proto::ids::{base32_encode, parse_storage_index, storage_index_to_text};
use lafs_proto::read::{decode_response, encode_response, PartContent};
use lafs_proto::signing::canonical_query;
use lafs_proto::{
    AccountId, Nonce, ReadPart, ReadRange, ShareNum, SignedHeaders, StorageIndex, UploadId,
};
use proptest::prelude::*;

fn part_strategy() -> impl Strategy<Value = (u8, Option<(u64, Vec<u8>, u64)>)> {
    (
        any::<u8>(),
        prop::option::of((
            0u64..1 << 40,
            prop::collection::vec(any::<u8>(), 0..64),
            0u64..1000,
        )),
    )
}

proptest! {
    #[test]
    fn read_response_round_trip(raw in prop::collection::vec(part_strategy(), 0..8)) {
        let parts: Vec<ReadPart<'_>> = raw
            .iter()
            .map(|(share, c)| ReadPart {
                share: ShareNum(*share),
                content: match c {
                    Some((offset, data, extra)) => PartContent::Data {
                        offset: *offset,
                        share_len: offset + data.len() as u64 + extra,
                        data,
                    },
                    None => PartContent::Absent,
                },
            })
            .collect();
        let bytes = encode_response(&parts).unwrap();
        prop_assert_eq!(decode_response(&bytes).unwrap(), parts);
        // Every strict prefix is rejected, never accepted or panicking.
        for cut in 0..bytes.len() {
            prop_assert!(decode_response(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn read_response_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_response(&bytes);
        let mut with_magic = b"lafsrd\x00\x01".to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = decode_response(&with_magic);
    }

    #[test]
    fn ids_round_trip(a in any::<[u8; 16]>(), b in any::<[u8; 32]>()) {
        let u = UploadId(a);
        prop_assert_eq!(u.to_text().parse::<UploadId>().unwrap(), u);
        let n = Nonce(a);
        prop_assert_eq!(n.to_text().parse::<Nonce>().unwrap(), n);
        let acc = AccountId(b);
        prop_assert_eq!(acc.to_text().parse::<AccountId>().unwrap(), acc);
        let si = StorageIndex(b);
        prop_assert_eq!(parse_storage_index(&storage_index_to_text(&si)).unwrap(), si);
        let json = serde_json::to_string(&u).unwrap();
        prop_assert_eq!(serde_json::from_str::<UploadId>(&json).unwrap(), u);
    }

    #[test]
    fn id_parsers_accept_only_canonical_text(s in "[a-zA-Z0-9=./%]{0,60}") {
        if let Ok(u) = s.parse::<UploadId>() {
            prop_assert_eq!(u.to_text(), s.clone());
        }
        if let Ok(si) = parse_storage_index(&s) {
            prop_assert_eq!(storage_index_to_text(&si), s.clone());
        }
        if let Ok(n) = s.parse::<ShareNum>() {
            prop_assert_eq!(n.to_string(), s.clone());
        }
    }

    #[test]
    fn signed_header_parser_never_panics(
        acc in ".{0,60}", ts in ".{0,25}", nonce in ".{0,30}", sig in ".{0,110}"
    ) {
        let lookup = |name: &'static str| match name {
            "lafs-account" => Some(acc.as_str()),
            "lafs-timestamp" => Some(ts.as_str()),
            "lafs-nonce" => Some(nonce.as_str()),
            _ => Some(sig.as_str()),
        };
        let _ = SignedHeaders::parse(lookup);
    }

    #[test]
    fn signed_headers_round_trip(acc in any::<[u8; 32]>(), ts in any::<u64>(), n in any::<[u8; 16]>(),
                                 sig in prop::collection::vec(any::<u8>(), 64)) {
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&sig);
        let h = SignedHeaders { account: AccountId(acc), timestamp: ts, nonce: Nonce(n), signature };
        let vals = h.header_values();
        let lookup = |name: &'static str| vals.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str());
        prop_assert_eq!(SignedHeaders::parse(lookup).unwrap(), h);
        prop_assert_eq!(vals[3].1.len(), base32_encode(&[0u8; 64]).len());
    }

    #[test]
    fn canonical_query_ignores_order(mut parts in prop::collection::vec("[a-z]{1,3}=[0-9]{0,3}", 0..6)) {
        let q1 = parts.join("&");
        parts.reverse();
        let q2 = parts.join("&");
        prop_assert_eq!(canonical_query(&q1), canonical_query(&q2));
    }

    #[test]
    fn resolved_ranges_stay_inside(offset in any::<u64>(), length in 1u64..u64::MAX, share_len in any::<u64>(), suffix in any::<bool>()) {
        let r = if suffix { ReadRange::Suffix { length } } else { ReadRange::Span { offset, length: length.min(u64::MAX - offset).max(1) } };
        if let Some((o, l)) = r.resolve(share_len) {
            prop_assert!(l > 0);
            prop_assert!(o.checked_add(l).is_some_and(|e| e <= share_len));
        }
    }
}
