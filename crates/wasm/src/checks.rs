//! Checks shared by the two readers of immutable files: [`FileReader`](crate::FileReader)
//! (ciphertext and proofs from a gateway) and [`DirectReader`](crate::DirectReader) (data
//! shares from the storage servers). Both trust nothing but the cap: the UEB must hash to its
//! storage index, and every segment range they are handed must lie in the file the UEB
//! describes.

use core::ops::Range;

use lafs_caps::ImmutableVerifyCap;
use lafs_codec::{segment_leaf, Ueb};
use lafs_hashtree::Hash;

use crate::{Error, LafsError};

/// Why a UEB was refused by [`ueb_of`].
pub(crate) enum UebRefused {
    /// The bytes are not a UEB.
    Malformed(lafs_codec::Error),
    /// A valid UEB whose hash is not the cap's storage index: another file's.
    OtherFile,
}

/// The UEB in `bytes`, if it is the one of `cap`'s file (its hash is the storage index).
pub(crate) fn ueb_of(cap: &ImmutableVerifyCap, bytes: &[u8]) -> Result<Ueb, UebRefused> {
    let ueb = Ueb::parse(bytes).map_err(UebRefused::Malformed)?;
    if ueb.storage_index() != *cap.storage_index() {
        return Err(UebRefused::OtherFile);
    }
    Ok(ueb)
}

/// The file bytes of segments `first..first + count`; an integrity error if `count` is 0 or
/// any of them is past the end of the file.
pub(crate) fn segments_span(ueb: &Ueb, first: u64, count: u64) -> Result<Range<u64>, LafsError> {
    let span = count
        .checked_sub(1)
        .and_then(|last| Some((ueb.segment_range(first)?, ueb.segment_range(first + last)?)));
    match span {
        Some((a, b)) => Ok(a.start..b.end),
        None => Err(Error::Integrity {
            what: format!("segments {first}..{} are not in the file", first + count),
        }
        .into()),
    }
}

/// Computed ciphertext-tree leaves: `(segment, leaf)`.
pub(crate) type SegmentLeaves = Vec<(u64, Hash)>;

/// The ciphertext-tree leaves of segments `first, first+1, …` from the digests of their data
/// blocks: `digests` holds, segment by segment and within a segment block by block, the k
/// 32-byte `SHA-256(blockHashPrefix() ‖ data block i)` of each data block (zero-padded to the
/// segment's block size, as stored in share `i`); each segment's leaf is
/// [`lafs_codec::segment_leaf`] over them and the segment's length from the UEB.
/// `invalid-use` unless `digests` holds a whole, non-zero number of segments' digests; an
/// integrity error if a segment is past the end of the file. Also returns the file bytes the
/// segments cover.
pub(crate) fn leaves_from_block_digests(
    ueb: &Ueb,
    first: u64,
    digests: &[u8],
) -> Result<(SegmentLeaves, Range<u64>), LafsError> {
    let k = usize::from(ueb.params.k());
    let per = k * Hash::LEN;
    if digests.is_empty() || digests.len() % per != 0 {
        return Err(Error::InvalidUse.into());
    }
    let count = (digests.len() / per) as u64;
    let span = segments_span(ueb, first, count)?;
    let mut leaves = Vec::with_capacity(digests.len() / per);
    let mut hashes = Vec::with_capacity(k);
    for (n, seg) in digests.chunks_exact(per).enumerate() {
        let segment = first + n as u64;
        let range = ueb.segment_range(segment).ok_or(Error::InvalidUse)?;
        hashes.clear();
        hashes.extend(seg.chunks_exact(Hash::LEN).filter_map(Hash::from_slice));
        let leaf = segment_leaf(&ueb.params, range.end - range.start, &hashes)
            .map_err(|_| Error::InvalidUse)?;
        leaves.push((segment, leaf));
    }
    Ok((leaves, span))
}

/// A whole number from JavaScript (an offset, length or index): finite, non-negative and at
/// most 2^53 − 1, where every integer is exact as an `f64`.
pub(crate) fn index(x: f64) -> Result<u64, Error> {
    if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x <= 9_007_199_254_740_991.0 {
        Ok(x as u64)
    } else {
        Err(Error::InvalidUse)
    }
}

/// The bytes that precede the data in a tagged hash: `u8(len(tag)) ‖ tag`
/// (`docs/spec/hashtree.md`), for hashing with SHA-256 elsewhere (WebCrypto).
pub(crate) fn hash_prefix(tag: &str) -> Vec<u8> {
    let tag = tag.as_bytes();
    let mut out = Vec::with_capacity(tag.len() + 1);
    // The tags given here are constants of at most 36 bytes: the length fits the one-byte
    // prefix.
    out.push(u8::try_from(tag.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(tag);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lafs_codec::{encode_to_shares, random_key, Params, BLOCK_TAG};

    #[test]
    fn spans_and_prefixes() {
        let (_, done) = encode_to_shares(
            Params::new(3, 10, 4096).unwrap(),
            random_key().unwrap(),
            &[5; 10_000],
        )
        .unwrap();
        let cap = done.read_cap.unwrap().verify_cap();
        let ueb = ueb_of(&cap, &done.ueb.to_bytes()).ok().unwrap();
        assert_eq!(segments_span(&ueb, 1, 2).unwrap(), 4096..10_000);
        assert_eq!(segments_span(&ueb, 0, 1).unwrap(), 0..4096);
        for (first, count) in [(0, 0), (2, 2), (3, 1)] {
            let e = segments_span(&ueb, first, count).unwrap_err();
            assert_eq!(e.code(), "integrity", "{first} {count}");
        }
        let mut other = done.ueb;
        other.file_size += 1;
        assert!(matches!(
            ueb_of(&cap, &other.to_bytes()),
            Err(UebRefused::OtherFile)
        ));
        assert!(matches!(
            ueb_of(&cap, &[0; 3]),
            Err(UebRefused::Malformed(_))
        ));
        let p = hash_prefix(BLOCK_TAG);
        assert_eq!(usize::from(p[0]), BLOCK_TAG.len());
        assert_eq!(&p[1..], BLOCK_TAG.as_bytes());
        assert_eq!(index(3.0), Ok(3));
        for bad in [-1.0, 0.5, f64::NAN, f64::INFINITY, 9_007_199_254_740_992.0] {
            assert_eq!(index(bad), Err(Error::InvalidUse), "{bad}");
        }
    }
}
