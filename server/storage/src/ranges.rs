//! Sets of byte ranges: which parts of an incoming share have been received.

use std::collections::BTreeMap;

use lafs_proto::storage::ByteRange;

/// A set of bytes, kept as merged, non-adjacent half-open ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    /// start → end, disjoint and non-adjacent.
    ranges: BTreeMap<u64, u64>,
}

impl RangeSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `start..end` (ignored if empty), merging with overlapping or adjacent ranges.
    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut start, mut end) = (start, end);
        // A range starting at or before `start` may overlap or touch.
        if let Some((&s, &e)) = self.ranges.range(..=start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
                self.ranges.remove(&s);
            }
        }
        // Ranges starting inside `start..=end` are absorbed.
        let absorbed: Vec<(u64, u64)> = self
            .ranges
            .range(start..=end)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in absorbed {
            end = end.max(e);
            self.ranges.remove(&s);
        }
        self.ranges.insert(start, end);
    }

    /// Number of bytes in the set.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|(s, e)| e - s).sum()
    }

    /// The set holds no byte.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// One past the highest byte held (0 if empty).
    pub fn end(&self) -> u64 {
        self.ranges.values().next_back().copied().unwrap_or(0)
    }

    /// The set is exactly `0..len`.
    pub fn is_exactly(&self, len: u64) -> bool {
        if len == 0 {
            return self.ranges.is_empty();
        }
        self.ranges.len() == 1 && self.ranges.get(&0) == Some(&len)
    }

    /// The ranges, ascending.
    pub fn to_vec(&self) -> Vec<ByteRange> {
        self.ranges
            .iter()
            .map(|(&start, &end)| ByteRange { start, end })
            .collect()
    }

    /// Ranges of `0..len` not in the set, ascending.
    pub fn missing(&self, len: u64) -> Vec<ByteRange> {
        let mut out = Vec::new();
        let mut pos = 0;
        for (&s, &e) in &self.ranges {
            if s >= len {
                break;
            }
            if s > pos {
                out.push(ByteRange { start: pos, end: s });
            }
            pos = pos.max(e);
        }
        if pos < len {
            out.push(ByteRange {
                start: pos,
                end: len,
            });
        }
        out
    }

    /// Removes every byte at or after `len`.
    pub fn truncate(&mut self, len: u64) {
        let beyond: Vec<u64> = self.ranges.range(len..).map(|(&s, _)| s).collect();
        for s in beyond {
            self.ranges.remove(&s);
        }
        if let Some((_, e)) = self.ranges.iter_mut().next_back() {
            if *e > len {
                *e = len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matches_a_bitmap(ops in prop::collection::vec((0u64..200, 0u64..40), 0..30), cut in 0u64..260) {
            let mut set = RangeSet::new();
            let mut bits = [false; 256];
            for (s, l) in ops {
                set.insert(s, s + l);
                for b in &mut bits[s as usize..(s + l) as usize] { *b = true; }
            }
            prop_assert_eq!(set.len(), bits.iter().filter(|b| **b).count() as u64);
            let v = set.to_vec();
            for w in v.windows(2) { prop_assert!(w[0].end < w[1].start); }
            let missing = set.missing(256);
            let missing_count: u64 = missing.iter().map(|r| r.end - r.start).sum();
            prop_assert_eq!(missing_count, 256 - set.len());
            set.truncate(cut);
            prop_assert_eq!(set.len(), bits.iter().take(cut as usize).filter(|b| **b).count() as u64);
        }
    }

    #[test]
    fn exactly() {
        let mut s = RangeSet::new();
        s.insert(10, 20);
        s.insert(0, 10);
        assert!(s.is_exactly(20));
        assert!(!s.is_exactly(19));
        s.insert(25, 30);
        assert!(!s.is_exactly(30));
        assert_eq!(s.missing(30), vec![ByteRange { start: 20, end: 25 }]);
    }
}
