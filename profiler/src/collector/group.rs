//! Group OOM kills: on cgroup v2, a cgroup with `memory.oom.group` set is killed whole — the
//! kernel kills every process in it with the one it chose (the kubelet sets it on container
//! cgroups since 1.28). Each victim gets its `oom_kill` line as usual, naming the group; one
//! `oom_group_kill` line names them all once the kill is over.
use std::{
    fs,
    path::{Path, PathBuf},
};

use super::{deaths::CONTEXT_WAIT_S, state::Collector, CollectError};
use crate::{
    deaths::Constraint,
    record::{GroupVictim, OomGroupKill, RecordBody},
};

/// The cgroup the kernel kills whole with a victim in `victim`: as the kernel's
/// `mem_cgroup_get_oom_group`, the highest cgroup with `memory.oom.group` set from the victim's
/// own up to the one whose limit was reached (`oom_domain`; the hierarchy's root for a node
/// OOM, or when it is not known). `oom_group` reads a cgroup's setting: `None` where the file
/// is missing (cgroup v1, the root, a cgroup already removed), which ends the walk.
pub(super) fn oom_group_of(
    victim: &Path,
    oom_domain: Option<&Path>,
    oom_group: impl Fn(&Path) -> Option<bool>,
) -> Option<PathBuf> {
    let mut group = None;
    let mut dir = Some(victim);
    while let Some(cgroup) = dir {
        match oom_group(cgroup) {
            Some(true) => group = Some(cgroup.to_path_buf()),
            Some(false) => {}
            None => break,
        }
        if oom_domain == Some(cgroup) {
            break;
        }
        dir = cgroup.parent();
    }
    group
}

/// A cgroup's `memory.oom.group`, read from cgroupfs.
pub(super) fn read_oom_group(cgroup: &Path) -> Option<bool> {
    let text = fs::read_to_string(cgroup.join("memory.oom.group")).ok()?;
    match text.trim() {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    }
}

/// A group kill being gathered: its victims come within milliseconds of each other.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct GroupKill {
    /// When its last victim may have come (the first's time and [`CONTEXT_WAIT_S`]).
    deadline: f64,
    /// The watched cgroup it is told for (its first victim's).
    index: usize,
    /// When the first victim was reported.
    ts: f64,
    record: OomGroupKill,
}

/// The group kills being gathered.
#[derive(Debug, Default)]
pub(super) struct GroupKills {
    open: Vec<GroupKill>,
}

impl GroupKills {
    /// Adds a victim of a kill of group `oom_group` reported at `ts` for watched cgroup
    /// `index`: to the group's open kill, or as the first of a new one.
    pub(super) fn add(
        &mut self,
        ts: f64,
        index: usize,
        oom_group: &Path,
        victim: GroupVictim,
        constraint: Option<Constraint>,
        oom_cgroup: Option<&Path>,
    ) {
        if let Some(open) = self
            .open
            .iter_mut()
            .find(|g| g.record.oom_group == oom_group && ts <= g.deadline)
        {
            if !open.record.victims.iter().any(|v| v.pid == victim.pid) {
                open.record.victims.push(victim);
            }
            return;
        }
        self.open.push(GroupKill {
            deadline: ts + CONTEXT_WAIT_S,
            index,
            ts,
            record: OomGroupKill {
                oom_group: oom_group.to_path_buf(),
                victims: vec![victim],
                constraint,
                oom_cgroup: oom_cgroup.map(Path::to_path_buf),
            },
        });
    }

    /// The earliest deadline of a kill being gathered.
    pub(super) fn next_deadline(&self) -> Option<f64> {
        self.open.iter().map(|g| g.deadline).reduce(f64::min)
    }

    /// The kills whose deadline is at or before `now`, taken out.
    fn take_due(&mut self, now: f64) -> Vec<GroupKill> {
        let (due, open) = std::mem::take(&mut self.open)
            .into_iter()
            .partition(|g| g.deadline <= now);
        self.open = open;
        due
    }
}

impl Collector<'_> {
    /// Writes the `oom_group_kill` lines of the group kills that are over.
    pub(super) fn flush_group_kills(&mut self, now: f64) -> Result<(), CollectError> {
        for kill in self.deaths.groups.take_due(now) {
            self.emit_about(kill.ts, kill.index, RecordBody::OomGroupKill(kill.record))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree with `memory.oom.group` set where `set` says, and cgroupfs ending at `/cg`.
    fn tree(set: &'static [&'static str]) -> impl Fn(&Path) -> Option<bool> {
        move |p: &Path| {
            if p == Path::new("/cg") || !p.starts_with("/cg") {
                return None; // the root has no memory.oom.group
            }
            Some(set.iter().any(|s| Path::new(s) == p))
        }
    }

    #[test]
    fn the_highest_group_up_to_the_oom_domain() {
        let victim = Path::new("/cg/kubepods/pod1/c1");
        // The kubelet's setting: the container is killed whole.
        assert_eq!(
            oom_group_of(victim, None, tree(&["/cg/kubepods/pod1/c1"])),
            Some(PathBuf::from("/cg/kubepods/pod1/c1"))
        );
        // A pod with it set too: the pod is the group, when its limit (or an ancestor's) was
        // the one reached...
        let both = tree(&["/cg/kubepods/pod1/c1", "/cg/kubepods/pod1"]);
        assert_eq!(
            oom_group_of(victim, Some(Path::new("/cg/kubepods/pod1")), &both),
            Some(PathBuf::from("/cg/kubepods/pod1"))
        );
        // ...but not when the container's own limit was: the walk stops at the OOM domain.
        assert_eq!(
            oom_group_of(victim, Some(victim), &both),
            Some(victim.to_path_buf())
        );
        // Nothing set, or cgroup v1 (no file at all): the victim died alone.
        assert_eq!(oom_group_of(victim, None, tree(&[])), None);
        assert_eq!(oom_group_of(victim, None, |_| None), None);
    }

    #[test]
    fn one_group_kill_gathers_its_victims_until_its_deadline() {
        let mut groups = GroupKills::default();
        let g = Path::new("/cg/c1");
        let victim = |pid| GroupVictim {
            pid,
            comm: format!("p{pid}"),
        };
        groups.add(10.0, 0, g, victim(1), Some(Constraint::Memcg), Some(g));
        groups.add(10.01, 0, g, victim(2), Some(Constraint::Memcg), Some(g));
        groups.add(10.02, 0, g, victim(2), None, None);
        assert_eq!(groups.next_deadline(), Some(10.0 + CONTEXT_WAIT_S));
        assert!(groups.take_due(10.5).is_empty());
        // A later kill of the same group is another group kill.
        groups.add(20.0, 0, g, victim(3), None, None);
        let due = groups.take_due(12.0);
        assert_eq!(due.len(), 1);
        let pids: Vec<u32> = due[0].record.victims.iter().map(|v| v.pid).collect();
        assert_eq!(pids, vec![1, 2]);
        assert_eq!(due[0].record.constraint, Some(Constraint::Memcg));
        assert_eq!(groups.take_due(f64::INFINITY).len(), 1);
        assert_eq!(groups.next_deadline(), None);
    }
}
