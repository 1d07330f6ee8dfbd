//! Property tests of share placement against its stated guarantees.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use lafs_client::placement::{place, ServerId, ServerState};
use lafs_client::Error;
use proptest::prelude::*;

fn servers() -> impl Strategy<Value = Vec<ServerState>> {
    prop::collection::vec(
        (prop::collection::btree_set(0u16..12, 0..3), any::<bool>()),
        0..16,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (has, w))| ServerState {
                id: ServerId([i as u8; 32]),
                has,
                writable: w,
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn placement_keeps_its_promises(states in servers(), n in 1u16..12, happy_seed in 0usize..100) {
        let happy = 1 + happy_seed % usize::from(n);
        match place(n, happy, &states) {
            Ok(p) => {
                // Uploads go only to writable servers.
                let writable: BTreeSet<_> = states.iter().filter(|s| s.writable).map(|s| s.id).collect();
                // Every share is exactly one of: present, uploaded, unplaced (no writable server).
                for sh in 0..n {
                    let places = [p.existing.contains_key(&sh), p.uploads.contains_key(&sh), p.unplaced.contains(&sh)];
                    prop_assert_eq!(places.iter().filter(|x| **x).count(), 1);
                }
                prop_assert!(p.unplaced.is_empty() || writable.is_empty());
                prop_assert!(p.uploads.values().all(|id| writable.contains(id)));
                prop_assert!(p.happiness >= happy);
                // No server receives two new shares while a writable server holds nothing.
                let mut count: BTreeMap<ServerId, usize> = BTreeMap::new();
                for id in p.uploads.values() {
                    *count.entry(*id).or_default() += 1;
                }
                let holding: BTreeSet<_> = states.iter().filter(|s| !s.has.is_empty()).map(|s| s.id)
                    .chain(p.uploads.values().copied()).collect();
                if count.values().any(|&c| c > 1) {
                    prop_assert!(writable.iter().all(|id| holding.contains(id)));
                }
            }
            Err(Error::NotHappy { achieved, needed, .. }) => {
                prop_assert!(achieved < needed);
                // Sanity: happiness can never exceed the number of servers.
                prop_assert!(states.len() < needed || achieved < needed);
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}
