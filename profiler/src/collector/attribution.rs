//! Who a kernel event is about: the watched cgroup a burst or an OOM victim belongs to, found
//! by cgroup id (the kernel programs) or by path (the kernel log), and the record it becomes.
//! A kill counts towards its container's history (across restarts, for a pod's container) and
//! starts its forecast over.
use std::path::{Path, PathBuf};

use profiler_common::{BurstEvent, KernelEvent, OomVictim};

use super::{
    boot_ns_to_unix,
    deaths::{oom_cgroup_path, OomNote},
    group::{oom_group_of, read_oom_group},
    slot::KernelSlot,
    state::Collector,
    unix_now, CollectError,
};
use crate::{
    cgroup::MemoryCgroup,
    deaths::Constraint,
    kmsg::KmsgOomKill,
    mode::OomSource,
    pods::limit::source_of,
    record::{Burst, GroupVictim, KillSource, OomKill, RecordBody},
};

/// The kernel log's word on one OOM kill.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct OomContext {
    /// `constraint=`, or what the "Killed process" line's prefix says when the rate-limited
    /// "oom-kill:" line is missing.
    pub(super) constraint: Option<Constraint>,
    /// `oom_memcg=`: the cgroup whose limit was reached, relative to the hierarchy's root.
    pub(super) oom_memcg: Option<String>,
    /// `task_memcg=`: the victim's cgroup, relative to the hierarchy's root.
    pub(super) task_memcg: Option<String>,
}

impl OomContext {
    /// What the kernel log said of a kill.
    pub(super) fn of(kill: &KmsgOomKill) -> Self {
        let from_prefix = kill.memcg_oom.map(|memcg| {
            if memcg {
                Constraint::Memcg
            } else {
                Constraint::Node
            }
        });
        Self {
            constraint: kill
                .constraint
                .as_deref()
                .and_then(Constraint::from_kernel)
                .or(from_prefix),
            oom_memcg: kill.oom_memcg.clone(),
            task_memcg: kill.task_memcg.clone(),
        }
    }

    /// What this word says, and what `earlier` said where this one is silent.
    pub(super) fn or(self, earlier: OomContext) -> Self {
        Self {
            constraint: self.constraint.or(earlier.constraint),
            oom_memcg: self.oom_memcg.or(earlier.oom_memcg),
            task_memcg: self.task_memcg.or(earlier.task_memcg),
        }
    }
}

/// Where an OOM victim's memory cgroup is, as its source names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum VictimCgroup {
    /// The cgroup id (kernfs inode), from the kernel programs.
    Id(u64),
    /// The path relative to the hierarchy's root (`/kubepods/pod1/c1`), from the kernel log.
    Relative(String),
}

/// An OOM kill as its source reported it, before it is attributed.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Victim {
    /// The victim's own memory cgroup.
    pub(super) cgroup: VictimCgroup,
    /// When the kernel chose it (Unix seconds).
    pub(super) ts: f64,
    /// The record, less what attribution adds (`victim_cgroup`, `limit_bytes`, the OOM's
    /// context).
    pub(super) kill: OomKill,
    /// The kernel log's word on it, once known.
    pub(super) context: Option<OomContext>,
}

impl Victim {
    /// From the kernel programs' record; RSS figures are in pages of `page_size` bytes.
    pub(super) fn from_bpf(v: &OomVictim, page_size: u64, ts: f64) -> Self {
        let comm_len = v.comm.iter().position(|&b| b == 0).unwrap_or(v.comm.len());
        let pages = |p: i64| u64::try_from(p).ok().map(|p| p * page_size);
        Self {
            cgroup: VictimCgroup::Id(v.cgroup_id),
            ts,
            kill: OomKill {
                victim_cgroup: None,
                pid: v.tgid,
                comm: String::from_utf8_lossy(&v.comm[..comm_len]).into_owned(),
                anon_rss_bytes: pages(v.anon_rss_pages),
                file_rss_bytes: pages(v.file_rss_pages),
                shmem_rss_bytes: pages(v.shmem_rss_pages),
                total_vm_bytes: Some(v.total_vm_pages * page_size),
                oom_score_adj: Some(v.oom_score_adj),
                limit_bytes: None,
                source: KillSource::Bpf,
                constraint: None,
                oom_cgroup: None,
                oom_limit_source: None,
                oom_group: None,
                oom_score: None,
                next_victim_rank: None,
            },
            context: None,
        }
    }

    /// From the kernel log; `None` when the log did not name the victim's memory cgroup.
    pub(super) fn from_kmsg(kill: KmsgOomKill, ts: f64) -> Option<Self> {
        let context = OomContext::of(&kill);
        let relative = kill.task_memcg?.trim_start_matches('/').to_owned();
        Some(Self {
            cgroup: VictimCgroup::Relative(relative),
            ts,
            kill: OomKill {
                victim_cgroup: None,
                pid: kill.pid,
                comm: kill.comm,
                anon_rss_bytes: kill.anon_rss_bytes,
                file_rss_bytes: kill.file_rss_bytes,
                shmem_rss_bytes: kill.shmem_rss_bytes,
                total_vm_bytes: kill.total_vm_bytes,
                oom_score_adj: kill.oom_score_adj,
                limit_bytes: None,
                source: KillSource::Kmsg,
                constraint: None,
                oom_cgroup: None,
                oom_limit_source: None,
                oom_group: None,
                oom_score: None,
                next_victim_rank: None,
            },
            context: Some(context),
        })
    }
}

/// The first of `slots` whose subtree holds `cgroup` (its position), and that cgroup's path.
pub(super) fn locate<'a>(
    slots: impl IntoIterator<Item = &'a KernelSlot>,
    cgroup: &VictimCgroup,
) -> Option<(usize, PathBuf)> {
    slots.into_iter().enumerate().find_map(|(i, slot)| {
        let path = match cgroup {
            VictimCgroup::Id(id) => slot.path_of(*id),
            VictimCgroup::Relative(relative) => slot.find_by_suffix(relative),
        };
        path.map(|p| (i, p.to_path_buf()))
    })
}

impl Collector<'_> {
    /// A record from the kernel programs.
    pub(super) fn on_kernel_event(&mut self, event: KernelEvent) -> Result<(), CollectError> {
        match event {
            KernelEvent::Burst(burst) => self.on_burst(&burst),
            KernelEvent::OomVictim(v) => {
                let victim =
                    Victim::from_bpf(&v, self.page_size, boot_ns_to_unix(v.header.ktime_ns));
                self.on_bpf_kill(victim)
            }
            KernelEvent::ProcessExit(e) => self.on_process_exit(&e),
            KernelEvent::SignalSent(s) => self.on_signal_sent(&s),
            KernelEvent::Unknown { kind, len } => {
                log::warn!("unknown kernel record kind {kind} ({len} bytes) ignored");
                Ok(())
            }
        }
    }

    /// A kill read from the kernel log: the kill itself in polling mode, the context of the
    /// kernel programs' kill otherwise.
    pub(super) fn on_kmsg_kill(&mut self, kill: KmsgOomKill) -> Result<(), CollectError> {
        let pid = kill.pid;
        if self.oom_source == OomSource::MarkVictim {
            return self.on_oom_context(pid, OomContext::of(&kill), unix_now());
        }
        match Victim::from_kmsg(kill, unix_now()) {
            Some(victim) => {
                self.finish_kill(victim)?;
                self.release_exits(unix_now())
            }
            None => {
                log::debug!("kernel log kill of pid {pid} names no memcg");
                Ok(())
            }
        }
    }

    /// A `burst` line, at most one per cgroup and interval.
    fn on_burst(&mut self, burst: &BurstEvent) -> Result<(), CollectError> {
        let Some(index) = self
            .watched
            .iter()
            .position(|w| w.slot.index() == burst.slot && !w.gone)
        else {
            return Ok(());
        };
        let w = &mut self.watched[index];
        if !w.slot.first_burst() {
            return Ok(());
        }
        let usage = w.cgroup.read_snapshot().ok().map(|s| s.usage_bytes);
        let body = RecordBody::Burst(Burst {
            budget_bytes: u64::try_from(burst.budget_pages).unwrap_or(0) * self.page_size,
            usage_bytes: usage,
            limit_bytes: w.limit.bytes,
        });
        self.emit_about(boot_ns_to_unix(burst.header.ktime_ns), index, body)
    }

    /// An `oom_kill` line for the watched cgroup the victim belongs to, and the kill counted.
    /// Cgroups reported gone in the last round still count (a kill races with the runtime
    /// removing the container's cgroup); a cgroup created since the last sample is found by
    /// walking the subtrees, and looking for new containers, again.
    pub(super) fn finish_kill(&mut self, victim: Victim) -> Result<(), CollectError> {
        let mut found = locate(self.watched.iter().map(|w| &w.slot), &victim.cgroup);
        if found.is_none() {
            self.look_again()?;
            found = locate(self.watched.iter().map(|w| &w.slot), &victim.cgroup);
        }
        let Some((index, victim_path)) = found else {
            log::debug!(
                "OOM kill of pid {} in cgroup {:?} (not watched)",
                victim.kill.pid,
                victim.cgroup
            );
            return Ok(());
        };
        self.count_kill(index);
        let watched = &self.watched[index];
        let constraint = victim.context.as_ref().and_then(|c| c.constraint);
        // The cgroup whose limit was reached, as the kernel log names it.
        let oom_cgroup = victim
            .context
            .as_ref()
            .filter(|_| constraint == Some(Constraint::Memcg))
            .and_then(|c| {
                let task = c.task_memcg.as_deref()?;
                oom_cgroup_path(&victim_path, task, c.oom_memcg.as_deref()?)
            });
        let oom_limit_source = oom_cgroup
            .as_deref()
            .map(|dir| source_of(watched.cgroup.path(), dir));
        let own_limit = watched
            .cgroup
            .read_snapshot()
            .ok()
            .and_then(|s| s.limit_bytes);
        let applied = limit_of(&victim_path).or(watched.limit.bytes);
        // The kernel's rule over the cgroups' own settings, read while the victims are still
        // in them (they cannot be removed before their processes are gone).
        let domain = match constraint {
            Some(Constraint::Memcg) => oom_cgroup.as_deref(),
            _ => None,
        };
        let oom_group = oom_group_of(&victim_path, domain, read_oom_group);
        let standing = match (constraint, self.node.as_mut()) {
            (Some(Constraint::Node), Some(node)) => {
                node.restart_forecast();
                node.standing(victim.kill.pid, victim.ts)
            }
            _ => None,
        };
        if let Some(group) = &oom_group {
            let member = GroupVictim {
                pid: victim.kill.pid,
                comm: victim.kill.comm.clone(),
            };
            self.deaths.groups.add(
                victim.ts,
                index,
                group,
                member,
                constraint,
                oom_cgroup.as_deref(),
            );
        }
        let watched = &self.watched[index];
        let note = OomNote {
            ts: victim.ts,
            context: victim.context.clone(),
            oom_cgroup: oom_cgroup.clone(),
            // Without the kernel log's word, the limit that applies is said, as such.
            limit_source: oom_limit_source.or(Some(watched.limit.source)),
            limit_bytes: match &oom_cgroup {
                Some(dir) => own_limit_of(dir),
                None => applied,
            },
            own_limit_bytes: own_limit,
            oom_score_adj: victim.kill.oom_score_adj,
            oom_group: oom_group.clone(),
            standing,
        };
        self.note_kill(victim.kill.pid, note);
        let body = RecordBody::OomKill(OomKill {
            limit_bytes: applied,
            victim_cgroup: Some(victim_path),
            constraint,
            oom_cgroup,
            oom_limit_source,
            oom_group,
            oom_score: standing.map(|s| s.oom_score),
            next_victim_rank: standing.map(|s| s.rank),
            ..victim.kill
        });
        self.emit_about(victim.ts, index, body)
    }

    /// Walks every subtree and looks for new containers, for an event about a cgroup not
    /// seen yet.
    fn look_again(&mut self) -> Result<(), CollectError> {
        let mut changed = false;
        for w in self.watched.iter_mut().filter(|w| !w.gone) {
            changed |= w
                .slot
                .refresh_subtree(&w.cgroup, self.maps.as_mut())
                .unwrap_or(false);
        }
        changed |= self.discover()?.0;
        if changed {
            if let Some(maps) = self.maps.as_mut() {
                maps.bump_generation()?;
            }
        }
        Ok(())
    }

    /// Counts a kill in watched cgroup `index`; its forecast starts over (what it followed
    /// is gone).
    fn count_kill(&mut self, index: usize) {
        let w = &mut self.watched[index];
        w.outlook.restart_forecast();
        match &w.lineage {
            Some(key) => self.lineages.add_kill(key),
            None => w.kills_reported += 1,
        }
    }
}

/// The limit that applies to the victim's own cgroup, read now.
fn limit_of(path: &Path) -> Option<u64> {
    MemoryCgroup::open(path)
        .ok()
        .and_then(|c| c.effective_limit().ok().flatten())
}

/// A cgroup's own limit, read now.
fn own_limit_of(path: &Path) -> Option<u64> {
    MemoryCgroup::open(path)
        .ok()
        .and_then(|c| c.read_snapshot().ok())
        .and_then(|s| s.limit_bytes)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use profiler_common::{RingEventHeader, RingEventKind, COMM_LEN};

    use super::*;

    fn slot(index: u32, cgroups: &[(u64, &str)]) -> KernelSlot {
        let subtree: HashMap<u64, PathBuf> = cgroups
            .iter()
            .map(|(id, path)| (*id, PathBuf::from(path)))
            .collect();
        KernelSlot::with_subtree(index, subtree)
    }

    #[test]
    fn a_victim_is_found_by_id_or_by_the_path_the_kernel_log_gives() {
        let root = "/sys/fs/cgroup/memory";
        let slots = [
            slot(0, &[(10, "/sys/fs/cgroup/memory/a")]),
            slot(
                1,
                &[
                    (20, "/sys/fs/cgroup/memory/kubepods/pod1"),
                    (21, "/sys/fs/cgroup/memory/kubepods/pod1/c1"),
                ],
            ),
        ];
        assert_eq!(
            locate(&slots, &VictimCgroup::Id(21)),
            Some((1, PathBuf::from(format!("{root}/kubepods/pod1/c1"))))
        );
        assert_eq!(
            locate(&slots, &VictimCgroup::Relative("kubepods/pod1/c1".into())),
            Some((1, PathBuf::from(format!("{root}/kubepods/pod1/c1"))))
        );
        assert_eq!(locate(&slots, &VictimCgroup::Id(99)), None);
        // A shorter path is not a suffix match of a longer name: `1/c1` is not `pod1/c1`.
        assert_eq!(locate(&slots, &VictimCgroup::Relative("1/c1".into())), None);
        // The root (an empty path) is never a watched cgroup's descendant.
        assert_eq!(locate(&slots, &VictimCgroup::Relative(String::new())), None);
    }

    #[test]
    fn both_sources_give_the_same_record() {
        let mut comm = [0u8; COMM_LEN];
        comm[..5].copy_from_slice(b"leaky");
        let bpf = Victim::from_bpf(
            &OomVictim {
                header: RingEventHeader {
                    kind: RingEventKind::OomVictim as u32,
                    _pad: 0,
                    ktime_ns: 1,
                },
                cgroup_id: 21,
                tgid: 4500,
                pid: 4501,
                anon_rss_pages: 16_288,
                file_rss_pages: 853,
                shmem_rss_pages: 0,
                total_vm_pages: 19_516,
                oom_score_adj: 0,
                read_errors: 0,
                comm,
            },
            4096,
            5.0,
        );
        let kmsg = Victim::from_kmsg(
            KmsgOomKill {
                pid: 4500,
                comm: "leaky".into(),
                task_memcg: Some("/kubepods/pod1/c1".into()),
                oom_memcg: Some("/kubepods/pod1/c1".into()),
                constraint: Some("CONSTRAINT_MEMCG".into()),
                total_vm_bytes: Some(19_516 * 4096),
                anon_rss_bytes: Some(16_288 * 4096),
                file_rss_bytes: Some(853 * 4096),
                shmem_rss_bytes: Some(0),
                oom_score_adj: Some(0),
                uid: Some(0),
                memcg_oom: Some(true),
                usec: 1,
            },
            5.0,
        );
        let kmsg = kmsg.expect("the log names the memcg");
        assert_eq!(bpf.cgroup, VictimCgroup::Id(21));
        assert_eq!(
            kmsg.cgroup,
            VictimCgroup::Relative("kubepods/pod1/c1".into())
        );
        assert_eq!(
            OomKill {
                source: KillSource::Kmsg,
                ..bpf.kill
            },
            kmsg.kill
        );
        // Only the kernel log says which limit: the kernel programs' kill waits for it.
        assert_eq!(bpf.context, None);
        assert_eq!(
            kmsg.context,
            Some(OomContext {
                constraint: Some(Constraint::Memcg),
                oom_memcg: Some("/kubepods/pod1/c1".into()),
                task_memcg: Some("/kubepods/pod1/c1".into()),
            })
        );
    }

    #[test]
    fn a_kill_storms_lines_still_say_memcg_or_node() {
        // The rate-limited "oom-kill:" line is missing; "Killed process" says which OOM.
        let kill = KmsgOomKill {
            pid: 9,
            comm: "stress-ng".into(),
            task_memcg: None,
            oom_memcg: None,
            constraint: None,
            total_vm_bytes: None,
            anon_rss_bytes: None,
            file_rss_bytes: None,
            shmem_rss_bytes: None,
            oom_score_adj: None,
            uid: None,
            memcg_oom: Some(false),
            usec: 1,
        };
        assert_eq!(OomContext::of(&kill).constraint, Some(Constraint::Node));
        let unknown = KmsgOomKill {
            memcg_oom: None,
            ..kill
        };
        assert_eq!(OomContext::of(&unknown).constraint, None);
    }
}
