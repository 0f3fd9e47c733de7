//! The node OOM killer's next victims: the processes with the highest `oom_score`, the
//! kernel's own badness (RSS, swap and page tables as a share of memory, shifted by
//! `oom_score_adj`, which the kubelet sets from the QoS class: Guaranteed −997, BestEffort
//! 1000, Burstable in between), with the containers they belong to.
use std::{
    fs,
    path::{Path, PathBuf},
};

use serde::Serialize;

use crate::{
    cgroup::memory_cgroup_of,
    pods::{Identity, LogTree, NodeRoots, RuntimeNames},
};

/// A process the kernel would kill early if the node ran out of memory.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct NextVictim {
    /// Process id.
    pub pid: u32,
    /// Command name, verbatim.
    pub comm: String,
    /// `/proc/PID/oom_score` (0..2000): the kernel kills the highest.
    pub oom_score: u32,
    /// `/proc/PID/oom_score_adj`.
    pub oom_score_adj: i32,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// Its memory cgroup.
    pub victim_cgroup: Option<PathBuf>,
    /// Who it belongs to (the container's pod, namespace, QoS class).
    #[serde(flatten)]
    pub identity: Identity,
}

/// What is read of one process to rank it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// Process id.
    pub(crate) pid: u32,
    /// Command name.
    pub(crate) comm: String,
    /// `oom_score`.
    pub(crate) oom_score: u32,
    /// `oom_score_adj`.
    pub(crate) oom_score_adj: i32,
    /// Resident memory, bytes (0 for a kernel thread).
    pub(crate) rss_bytes: u64,
}

/// The `n` processes the kernel would choose first: highest `oom_score`, the larger first on
/// a tie (the kernel compares the unrounded badness). Kernel threads (no memory) and processes
/// with `oom_score_adj` −1000 (never killed) are not candidates.
pub(crate) fn top(mut candidates: Vec<Candidate>, n: usize) -> Vec<Candidate> {
    candidates.retain(|c| c.rss_bytes > 0 && c.oom_score_adj > -1000);
    candidates.sort_by(|a, b| {
        b.oom_score
            .cmp(&a.oom_score)
            .then(b.rss_bytes.cmp(&a.rss_bytes))
            .then(a.pid.cmp(&b.pid))
    });
    candidates.truncate(n);
    candidates
}

/// `/proc/PID/oom_score`; `None` if the process is gone.
fn oom_score(pid: u32) -> Option<u32> {
    fs::read_to_string(format!("/proc/{pid}/oom_score"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The processes worth reading in full: the kernel reports 0 for what it never kills (kernel
/// threads, `oom_score_adj` −1000), and only the `n` highest scores (with every process tied
/// with the last of them) can be among the `n` first.
fn shortlist(mut scores: Vec<(u32, u32)>, n: usize) -> Vec<(u32, u32)> {
    scores.retain(|&(_, score)| score > 0);
    scores.sort_by_key(|&(_, score)| std::cmp::Reverse(score));
    let Some(&(_, last)) = scores.get(n.saturating_sub(1)) else {
        return scores;
    };
    scores.retain(|&(_, score)| score >= last);
    scores
}

/// Reads one process; `None` if it is gone or unreadable.
fn read(pid: u32, oom_score: u32, page_size: u64) -> Option<Candidate> {
    let file = |name: &str| fs::read_to_string(format!("/proc/{pid}/{name}")).ok();
    let oom_score_adj = file("oom_score_adj")?.trim().parse().ok()?;
    // statm: size resident shared ... in pages.
    let rss_pages: u64 = file("statm")?.split_whitespace().nth(1)?.parse().ok()?;
    let comm = file("comm")?.trim_end_matches('\n').to_string();
    Some(Candidate {
        pid,
        comm,
        oom_score,
        oom_score_adj,
        rss_bytes: rss_pages * page_size,
    })
}

/// Scans `/proc` and names the `n` next victims, with their containers: from `known` (the
/// watched containers, by cgroup path) where it knows them, else from the log trees, read then
/// only (a node's log trees are hundreds of entries; the ranking can run every round).
pub(crate) fn rank(
    roots: &NodeRoots,
    n: usize,
    known: &dyn Fn(&Path) -> Option<Identity>,
) -> Vec<NextVictim> {
    let page_size = crate::collector::page_size();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let scores: Vec<(u32, u32)> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, oom_score(pid)?)))
        .collect();
    // Twice as many as wanted: one that is gone by the time it is read, or has no memory
    // left, leaves room for the next.
    let candidates: Vec<Candidate> = shortlist(scores, n * 2)
        .into_iter()
        .filter_map(|(pid, score)| read(pid, score, page_size))
        .collect();
    let chosen = top(candidates, n);
    if chosen.is_empty() {
        return Vec::new();
    }
    let mut trees: Option<(LogTree, RuntimeNames)> = None;
    chosen
        .into_iter()
        .map(|c| {
            let cgroup = memory_cgroup_of(c.pid).ok();
            let identity = cgroup
                .as_deref()
                .map(|path| {
                    known(path).unwrap_or_else(|| {
                        let (logs, names) = trees.get_or_insert_with(|| {
                            (
                                LogTree::read(&roots.pod_logs, &roots.container_logs),
                                RuntimeNames::read(&roots.runtime_state),
                            )
                        });
                        Identity::of(path, logs, names)
                    })
                })
                .unwrap_or_default();
            NextVictim {
                pid: c.pid,
                comm: c.comm,
                oom_score: c.oom_score,
                oom_score_adj: c.oom_score_adj,
                rss_bytes: c.rss_bytes,
                victim_cgroup: cgroup,
                identity,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(pid: u32, oom_score: u32, oom_score_adj: i32, rss_mib: u64) -> Candidate {
        Candidate {
            pid,
            comm: format!("p{pid}"),
            oom_score,
            oom_score_adj,
            rss_bytes: rss_mib << 20,
        }
    }

    #[test]
    fn only_the_top_scores_and_their_ties_are_read_in_full() {
        let scores = vec![(1, 0), (2, 500), (3, 900), (4, 700), (5, 700), (6, 100)];
        let pids = |list: Vec<(u32, u32)>| list.into_iter().map(|(p, _)| p).collect::<Vec<_>>();
        assert_eq!(pids(shortlist(scores.clone(), 2)), vec![3, 4, 5]);
        assert_eq!(pids(shortlist(scores.clone(), 1)), vec![3]);
        assert_eq!(pids(shortlist(scores, 9)), vec![3, 4, 5, 2, 6]);
    }

    #[test]
    fn the_highest_score_goes_first_and_the_unkillable_not_at_all() {
        let ranked = top(
            vec![
                candidate(1, 0, 0, 0),        // a kernel thread
                candidate(2, 600, -997, 900), // Guaranteed, big
                candidate(3, 1200, 1000, 10), // BestEffort, small
                candidate(4, 0, -1000, 500),  // never killed
                candidate(5, 1200, 1000, 20), // BestEffort, bigger
                candidate(6, 800, 500, 100),  // Burstable
            ],
            3,
        );
        let pids: Vec<u32> = ranked.iter().map(|c| c.pid).collect();
        assert_eq!(pids, vec![5, 3, 6]);
    }
}
