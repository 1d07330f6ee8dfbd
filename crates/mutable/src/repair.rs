//! Rebuilding missing shares of a version without any key: a verifycap holder (or anyone
//! holding k valid shares) decodes the ciphertext blocks, codes them again and reassembles the
//! missing shares. The signature does not cover the share number, so every rebuilt share
//! carries the version's signature and a storage server accepts it like the writer's own.

use std::collections::BTreeMap;

use lafs_caps::StorageIndex;
use lafs_codec::ErasureCoder;
use lafs_hashtree::{Hash, HashTree};

use crate::format::{chain_bytes, record_hash, to_usize, Layout, SignedHeader, SALT_LEN};
use crate::validity::verify_share;
use crate::Error;

/// Rebuilds shares `wanted` of the version that the whole shares in `shares` (share number →
/// bytes) carry, for the file whose storage index is `si`.
///
/// Every given share is checked completely first ([`verify_share`]); shares of another
/// version than the highest-seqnum one among them, or invalid ones, are skipped. Needs k valid
/// shares of that version (else [`Error::NotEnoughShares`]). The rebuilt block trees must lead
/// to the signed root (else [`Error::ChainMismatch`]), and every rebuilt share is checked with
/// [`verify_share`] before it is returned, so the result is exactly what the writer produced
/// for those share numbers.
pub fn rebuild_shares(
    si: &StorageIndex,
    shares: &BTreeMap<u16, Vec<u8>>,
    wanted: &[u16],
) -> Result<Vec<(u16, Vec<u8>)>, Error> {
    let mut valid: Vec<(u16, SignedHeader, &[u8])> = Vec::new();
    for (&i, bytes) in shares {
        if let Ok(h) = verify_share(si, i, bytes) {
            valid.push((i, h, bytes));
        }
    }
    let Some(best) = valid.iter().map(|(_, h, _)| h.info.seqnum).max() else {
        return Err(Error::NoShares);
    };
    let Some(header) = valid
        .iter()
        .find(|(_, h, _)| h.info.seqnum == best)
        .map(|(_, h, _)| *h)
    else {
        return Err(Error::NoShares);
    };
    let info = header.info;
    valid.retain(|(_, h, _)| h.info == info && h.public == header.public);
    let params = info.params;
    let (k, n) = (usize::from(params.k()), usize::from(params.n()));
    if valid.len() < k {
        return Err(Error::NotEnoughShares {
            found: valid.len(),
            needed: k,
        });
    }
    for &w in wanted {
        if w >= params.n() {
            return Err(Error::ShareOutOfRange {
                share: w,
                n: params.n(),
            });
        }
    }
    valid.truncate(k);
    let layout = Layout::of(&info)?;
    let coder = ErasureCoder::new(&params).map_err(|e| Error::Erasure(e.to_string()))?;
    let salt_len = SALT_LEN as usize;
    let mut leaves: Vec<Vec<Hash>> = vec![Vec::new(); n];
    let mut records: BTreeMap<u16, Vec<u8>> = wanted.iter().map(|&w| (w, Vec::new())).collect();
    for j in 0..layout.num_segments {
        let r = layout.record_range(j);
        let range = to_usize(r.start, "offset")?..to_usize(r.end, "offset")?;
        let mut blocks: Vec<Option<Vec<u8>>> = vec![None; n];
        let mut salt = Vec::new();
        for (i, _, bytes) in &valid {
            let rec = bytes.get(range.clone()).ok_or(Error::Truncated {
                share: *i,
                needed: r.end,
                available: bytes.len() as u64,
            })?;
            salt = rec[..salt_len].to_vec();
            blocks[usize::from(*i)] = Some(rec[salt_len..].to_vec());
        }
        let block_len = range.len() - salt_len;
        let mut coded: Vec<Vec<u8>> = if block_len == 0 {
            vec![Vec::new(); n]
        } else {
            let mut data = coder
                .decode(blocks)
                .map_err(|e| Error::Erasure(e.to_string()))?;
            data.resize(n, vec![0u8; block_len]);
            if n > k {
                coder
                    .encode(&mut data)
                    .map_err(|e| Error::Erasure(e.to_string()))?;
            }
            data
        };
        for (i, block) in coded.iter_mut().enumerate() {
            let mut rec = Vec::with_capacity(salt_len + block.len());
            rec.extend_from_slice(&salt);
            rec.append(block);
            leaves[i].push(record_hash(&rec));
            if let Some(out) = u16::try_from(i).ok().and_then(|i| records.get_mut(&i)) {
                out.extend_from_slice(&rec);
            }
        }
    }
    let trees: Vec<HashTree> = leaves.iter().map(|l| HashTree::from_leaves(l)).collect();
    let roots: Vec<Hash> = trees.iter().map(HashTree::root).collect();
    let share_tree = HashTree::from_leaves(&roots);
    if share_tree.root() != info.root {
        return Err(Error::ChainMismatch {
            share: valid.first().map_or(0, |v| v.0),
        });
    }
    let width = n.next_power_of_two();
    let mut out = Vec::with_capacity(wanted.len());
    for (w, recs) in records {
        let mut s = Vec::with_capacity(to_usize(layout.share_len(), "share length")?);
        s.extend_from_slice(&header.for_share(w).to_bytes());
        s.extend_from_slice(&chain_bytes(w, width, share_tree.nodes()));
        s.extend_from_slice(&recs);
        for node in trees[usize::from(w)].nodes() {
            s.extend_from_slice(&node.0);
        }
        verify_share(si, w, &s)?;
        out.push((w, s));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{encode_version, Entropy, WriteKeys};
    use lafs_caps::{MutableWriteCap, SigningSeed};
    use lafs_codec::Params;

    struct Counter(u8);

    impl Entropy for Counter {
        fn fill(&mut self, buf: &mut [u8]) -> Result<(), Error> {
            for b in buf {
                self.0 = self.0.wrapping_add(7);
                *b = self.0;
            }
            Ok(())
        }
    }

    #[test]
    fn rebuilds_missing_shares_byte_for_byte() {
        let cap = MutableWriteCap::new(SigningSeed::from_bytes([4; 32]));
        let keys = WriteKeys::for_file(&cap);
        let si = cap.storage_index();
        for (size, seg) in [(0usize, 64u32), (5, 64), (1000, 64), (4096, 1024)] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let params = Params::new(3, 7, seg).unwrap();
            let e = encode_version(&keys, params, 4, &data, &mut Counter(1)).unwrap();
            // Parity shares only, plus a share of an older version and a corrupt one.
            let mut have: BTreeMap<u16, Vec<u8>> = (4..7u16)
                .map(|i| (i, e.shares[usize::from(i)].clone()))
                .collect();
            let old = encode_version(&keys, params, 3, b"old", &mut Counter(2)).unwrap();
            have.insert(0, old.shares[0].clone());
            let mut bad = e.shares[1].clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            have.insert(1, bad);
            let rebuilt = rebuild_shares(&si, &have, &[0, 1, 2, 3]).unwrap();
            for (i, s) in rebuilt {
                assert_eq!(s, e.shares[usize::from(i)], "size {size} share {i}");
            }
            // Fewer than k valid shares of the latest version.
            have.remove(&6);
            assert!(matches!(
                rebuild_shares(&si, &have, &[2]),
                Err(Error::NotEnoughShares { .. })
            ));
        }
    }

    #[test]
    fn a_rotten_copy_is_replaced_by_a_valid_share_of_the_same_version() {
        let cap = MutableWriteCap::new(SigningSeed::from_bytes([5; 32]));
        let keys = WriteKeys::for_file(&cap);
        let si = cap.storage_index();
        let params = Params::new(2, 3, 64).unwrap();
        let e = encode_version(&keys, params, 2, &[9u8; 300], &mut Counter(3)).unwrap();
        let whole = crate::ShareWrite::Whole {
            share: 1,
            data: e.shares[1].clone(),
        };
        let mut rotten = e.shares[1].clone();
        rotten[200] ^= 0x40;
        assert!(matches!(
            crate::check_write(&si, Some(&rotten), &whole),
            Ok(crate::Verdict::Accept {
                seqnum: 2,
                previous: Some(2),
                ..
            })
        ));
        // A valid share of another version with the same seqnum is a conflict, not rot.
        let other = encode_version(&keys, params, 2, &[8u8; 300], &mut Counter(4)).unwrap();
        assert!(matches!(
            crate::check_write(&si, Some(&other.shares[1]), &whole),
            Err(Error::SeqnumNotHigher { .. })
        ));
    }
}
