//! What the collector watches, and what it remembers about containers across restarts.
use std::collections::{BTreeSet, HashMap, HashSet};

use crate::{
    cgroup::MemoryCgroup,
    pods::{Discovery, Identity},
};

/// Where the watched cgroups come from.
#[derive(Debug)]
pub(crate) enum Targets {
    /// Cgroups named with `--cgroup`: fixed for the whole watch.
    Fixed(Vec<MemoryCgroup>),
    /// Containers found on the node, looked for again at every interval, so new and restarted
    /// containers join the watch.
    Discovered(Discovery),
}

/// The free slots of the kernel's per-cgroup counter and budget arrays.
#[derive(Debug)]
pub(super) struct Slots {
    free: BTreeSet<u32>,
}

impl Slots {
    /// All `count` slots free.
    pub(super) fn new(count: u32) -> Self {
        Self {
            free: (0..count).collect(),
        }
    }

    /// The lowest free slot.
    pub(super) fn take(&mut self) -> Option<u32> {
        self.free.pop_first()
    }

    /// Whether every slot is taken.
    pub(super) fn all_taken(&self) -> bool {
        self.free.is_empty()
    }

    /// Gives a slot back once nothing refers to it any more.
    pub(super) fn give_back(&mut self, slot: u32) {
        self.free.insert(slot);
    }
}

/// A pod's container by name: what stays the same when the runtime replaces the container.
pub(super) type LineageKey = (String, String, String);

/// The key of a pod's container: `(namespace, pod, container)` when all three are known.
pub(super) fn lineage_key(identity: &Identity) -> Option<LineageKey> {
    Some((
        identity.namespace.clone()?,
        identity.pod.clone()?,
        identity.container.clone()?,
    ))
}

/// What a pod's container went through during the watch, across its container ids.
#[derive(Debug, Default)]
pub(super) struct Lineage {
    /// OOM kills reported in any of its containers.
    pub kills: u64,
    /// New container ids seen after the first one.
    pub restarts: u64,
    ids: HashSet<String>,
    /// When one of its containers was last seen watched (Unix seconds).
    last_live: f64,
}

/// Every pod container's lineage.
#[derive(Debug, Default)]
pub(super) struct Lineages(HashMap<LineageKey, Lineage>);

impl Lineages {
    /// Records that container `id` runs as `key`; a new id for a known key is a restart.
    /// Returns whether it was one.
    pub(super) fn join(&mut self, key: &LineageKey, id: Option<&str>) -> bool {
        let lineage = self.0.entry(key.clone()).or_insert_with(|| Lineage {
            last_live: super::unix_now(),
            ..Lineage::default()
        });
        let Some(id) = id else {
            return false;
        };
        let restart = !lineage.ids.is_empty() && !lineage.ids.contains(id);
        if lineage.ids.insert(id.to_owned()) && restart {
            lineage.restarts += 1;
        }
        restart
    }

    /// Counts a kill.
    pub(super) fn add_kill(&mut self, key: &LineageKey) {
        self.0.entry(key.clone()).or_default().kills += 1;
    }

    /// Forgets the lineages none of whose containers was watched for `keep` seconds, as of
    /// `now`; `live` holds the keys watched now. On a node where pods come and go all day
    /// (jobs, rollouts) each would otherwise stay for the whole watch.
    pub(super) fn prune(&mut self, live: &HashSet<LineageKey>, now: f64, keep: f64) {
        self.0.retain(|key, lineage| {
            if live.contains(key) {
                lineage.last_live = now;
                true
            } else {
                now - lineage.last_live < keep
            }
        });
    }

    /// How many lineages are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }

    /// `(kills, restarts)` of a key.
    pub(super) fn history(&self, key: &LineageKey) -> (u64, u64) {
        self.0
            .get(key)
            .map(|l| (l.kills, l.restarts))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_lowest_first() {
        let mut slots = Slots::new(3);
        assert_eq!((slots.take(), slots.take()), (Some(0), Some(1)));
        slots.give_back(0);
        assert_eq!(slots.take(), Some(0));
        assert_eq!(slots.take(), Some(2));
        assert_eq!(slots.take(), None);
    }

    #[test]
    fn lineages_of_gone_containers_are_forgotten_after_a_while() {
        let key = |c: &str| ("shop".to_owned(), "web-1".to_owned(), c.to_owned());
        let mut lineages = Lineages::default();
        lineages.join(&key("app"), Some("a"));
        lineages.join(&key("job"), Some("b"));
        lineages.add_kill(&key("app"));
        let now = super::super::unix_now();
        let live: HashSet<LineageKey> = [key("app")].into();
        lineages.prune(&live, now + 100.0, 600.0);
        assert_eq!(
            lineages.len(),
            2,
            "the job's is kept while a restart may come"
        );
        lineages.prune(&live, now + 700.0, 600.0);
        assert_eq!(lineages.len(), 1, "the job's is forgotten");
        assert_eq!(
            lineages.history(&key("app")),
            (1, 0),
            "the live one keeps its kills"
        );
        lineages.prune(&HashSet::new(), now + 1200.0, 600.0);
        assert_eq!(lineages.len(), 1, "seen live at the last prune, 500 s ago");
        lineages.prune(&HashSet::new(), now + 1400.0, 600.0);
        assert_eq!(lineages.len(), 0);
    }

    #[test]
    fn kills_and_restarts_carry_over_new_ids() {
        let key = ("shop".to_owned(), "web-1".to_owned(), "app".to_owned());
        let mut lineages = Lineages::default();
        assert!(!lineages.join(&key, Some("a")));
        assert!(
            !lineages.join(&key, Some("a")),
            "the same id again is no restart"
        );
        lineages.add_kill(&key);
        assert!(lineages.join(&key, Some("b")));
        assert_eq!(lineages.history(&key), (1, 1));
        assert!(!lineages.join(&key, Some("b")));
        assert!(
            !lineages.join(&key, Some("a")),
            "an old id seen again is no restart"
        );
        assert_eq!(lineages.history(&key), (1, 1));
        let other = ("shop".to_owned(), "web-1".to_owned(), "sidecar".to_owned());
        assert_eq!(lineages.history(&other), (0, 0));
    }
}
