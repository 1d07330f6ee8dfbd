//! Reed-Solomon over GF(2^8) (reed-solomon-erasure, systematic Vandermonde code).

use reed_solomon_erasure::galois_8::ReedSolomon;

use crate::{Error, Params};

/// k-of-N Reed-Solomon coder (GF(2^8), systematic Vandermonde code: blocks `0..k` are the
/// data itself), exactly the one the immutable format uses. With k == N there is no parity
/// and nothing to compute. Exported as `ErasureCoder` for other formats (mutable files).
pub struct Coder {
    k: usize,
    n: usize,
    rs: Option<ReedSolomon>,
}

impl Coder {
    /// A coder for `params.k()`-of-`params.n()` (the segment size is not used).
    pub fn new(params: &Params) -> Result<Self, Error> {
        let k = usize::from(params.k());
        let n = usize::from(params.n());
        let rs = if n > k {
            Some(ReedSolomon::new(k, n - k).map_err(|_| Error::Erasure("bad shard counts"))?)
        } else {
            None
        };
        Ok(Self { k, n, rs })
    }

    /// Fills `shards[k..N]` with parity computed from `shards[..k]` (all the same length).
    pub fn encode(&self, shards: &mut [Vec<u8>]) -> Result<(), Error> {
        if shards.len() != self.n {
            return Err(Error::Erasure("wrong shard count"));
        }
        if let Some(rs) = &self.rs {
            let (data, parity) = shards.split_at_mut(self.k);
            rs.encode_sep(data, parity)
                .map_err(|_| Error::Erasure("encode"))?;
        }
        Ok(())
    }

    /// Recovers the k data blocks from any k of the N blocks (`None` = missing). Systematic:
    /// when blocks `0..k` are all present this is a move, no arithmetic.
    pub fn decode(&self, mut blocks: Vec<Option<Vec<u8>>>) -> Result<Vec<Vec<u8>>, Error> {
        if blocks.len() != self.n {
            return Err(Error::Erasure("wrong shard count"));
        }
        if blocks[..self.k].iter().any(Option::is_none) {
            let rs = self
                .rs
                .as_ref()
                .ok_or(Error::Erasure("missing data block with k = N"))?;
            rs.reconstruct_data(&mut blocks)
                .map_err(|_| Error::Erasure("reconstruct"))?;
        }
        blocks.truncate(self.k);
        blocks
            .into_iter()
            .map(|b| b.ok_or(Error::Erasure("block not reconstructed")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_k_of_n_recover_the_data() {
        for (k, n) in [(1u16, 1u16), (1, 3), (3, 3), (3, 10), (71, 255), (2, 256)] {
            let c = Coder::new(&Params::new(k, n, 1000).unwrap()).unwrap();
            let (k, n) = (usize::from(k), usize::from(n));
            let mut shards: Vec<Vec<u8>> = (0..n)
                .map(|i| {
                    if i < k {
                        vec![(i * 7 + 1) as u8; 5]
                    } else {
                        vec![0; 5]
                    }
                })
                .collect();
            c.encode(&mut shards).unwrap();
            let data: Vec<Vec<u8>> = shards[..k].to_vec();
            // Keep the last k shards only (parity when n ≥ 2k).
            let kept: Vec<Option<Vec<u8>>> = shards
                .iter()
                .enumerate()
                .map(|(i, s)| (i >= n - k).then(|| s.clone()))
                .collect();
            assert_eq!(c.decode(kept).unwrap(), data);
        }
    }
}
