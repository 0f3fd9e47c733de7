//! The node as a whole: how much memory it has left, when it will reach the kubelet's eviction
//! threshold or run out, and which processes the kernel would kill first if it ran out now.
//!
//! - [`memory`]: `/proc/meminfo`'s total and available memory, and the eviction threshold;
//! - [`victims`]: the next victims of the node's OOM killer, by the kernel's own `oom_score`.
pub(crate) mod memory;
pub(crate) mod victims;

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use serde::Serialize;

use memory::NodeMemory;
pub(crate) use memory::{quantity_bytes, EvictionThreshold};
pub(crate) use victims::NextVictim;

use crate::{
    deaths::Standing,
    forecast::{Forecaster, Observation},
    pods::NodeRoots,
};

/// How often the next victims are ranked while the node is far from its threshold: a scan of
/// `/proc` costs tens of microseconds per process.
const RANK_EVERY: Duration = Duration::from_secs(10);
/// Closer than this many times the eviction threshold, the next victims are ranked every
/// interval.
const NEAR_FACTOR: u64 = 4;
/// How many next victims a `node` line names.
pub(crate) const NEXT_VICTIMS: usize = 5;

/// Fields of a `node` record: the node's memory, its forecast, and its next OOM victims.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct NodeRecord {
    /// `MemTotal`.
    pub mem_total_bytes: u64,
    /// `MemAvailable`: what can be had without swapping (free memory and reclaimable cache).
    pub mem_available_bytes: u64,
    /// The kubelet's hard eviction threshold on `memory.available`.
    pub eviction_threshold_bytes: u64,
    /// Forecast seconds until `memory.available` reaches the threshold (the kubelet evicts);
    /// `null` when none is in sight.
    pub eta_eviction_seconds: Option<f64>,
    /// Forecast seconds until nothing is available (the kernel's OOM killer runs).
    pub eta_oom_seconds: Option<f64>,
    /// `some` avg10 of `/proc/pressure/memory`, %.
    pub psi_some_avg10: Option<f64>,
    /// The processes the kernel would kill first, highest `oom_score` first.
    pub next_victims: Vec<NextVictim>,
}

/// How many rankings are kept: a node OOM kill is told against the last one made before it,
/// which a ranking made while its record waited (for the kernel log) must not replace.
const RANKINGS_KEPT: usize = 4;

/// One ranking of the next victims.
#[derive(Debug)]
struct Ranking {
    /// When it was done (Unix seconds): every score in it was read before then.
    t: f64,
    victims: Vec<NextVictim>,
}

/// The node's memory over a watch.
#[derive(Debug)]
pub(crate) struct NodeWatch {
    threshold: EvictionThreshold,
    to_eviction: Forecaster,
    to_oom: Forecaster,
    /// The newest last.
    rankings: VecDeque<Ranking>,
    ranked_at: Option<Instant>,
}

impl NodeWatch {
    /// A watch of the node with the kubelet's eviction threshold.
    pub(crate) fn new(threshold: EvictionThreshold) -> Self {
        Self {
            threshold,
            to_eviction: Forecaster::new(),
            to_oom: Forecaster::new(),
            rankings: VecDeque::new(),
            ranked_at: None,
        }
    }

    /// Where process `pid` stood in the last ranking of the next victims made before `t`
    /// (Unix seconds, the kill's time), if it was in it.
    pub(crate) fn standing(&self, pid: u32, t: f64) -> Option<Standing> {
        let ranking = self.rankings.iter().rev().find(|r| r.t <= t)?;
        let place = ranking.victims.iter().position(|v| v.pid == pid)?;
        Some(Standing {
            rank: u32::try_from(place + 1).ok()?,
            oom_score: ranking.victims[place].oom_score,
        })
    }

    /// The node's OOM killer ran: what the forecasts followed is gone, as for a container.
    pub(crate) fn restart_forecast(&mut self) {
        self.to_eviction.reset();
        self.to_oom.reset();
    }

    /// Reads the node now: a `node` record, or `None` when `/proc/meminfo` cannot be read.
    pub(crate) fn observe(
        &mut self,
        t: f64,
        roots: &NodeRoots,
        known: &dyn Fn(&std::path::Path) -> Option<crate::pods::Identity>,
    ) -> Option<NodeRecord> {
        let memory = NodeMemory::read()?;
        let threshold = self.threshold.bytes(memory.total);
        let used = memory.total.saturating_sub(memory.available);
        let psi = memory::node_psi_some_avg10();
        let observe = |forecaster: &mut Forecaster, limit: u64| {
            forecaster
                .observe(Observation {
                    t,
                    unreclaimable: used,
                    limit: Some(limit),
                    reclaim_stall_us: None,
                    limit_hits: None,
                    psi_some_avg10: psi,
                    reach: None,
                    swap: None,
                })
                .eta_s
        };
        let eta_eviction = observe(
            &mut self.to_eviction,
            memory.total.saturating_sub(threshold),
        );
        let eta_oom = observe(&mut self.to_oom, memory.total);
        let near =
            memory.available < threshold.saturating_mul(NEAR_FACTOR) || eta_eviction.is_some();
        if near || self.ranked_at.is_none_or(|at| at.elapsed() >= RANK_EVERY) {
            if self.rankings.len() == RANKINGS_KEPT {
                self.rankings.pop_front();
            }
            let started = Instant::now();
            let victims = victims::rank(roots, NEXT_VICTIMS, known);
            // Stamped when it was done, not begun: reading every process's score takes a
            // while on a node out of memory, and a ranking begun before a kill but read after
            // it lacks the victim (seen in a 6.1 guest: the kill fell inside it).
            self.rankings.push_back(Ranking {
                t: t + started.elapsed().as_secs_f64(),
                victims,
            });
            self.ranked_at = Some(Instant::now());
        }
        Some(NodeRecord {
            mem_total_bytes: memory.total,
            mem_available_bytes: memory.available,
            eviction_threshold_bytes: threshold,
            eta_eviction_seconds: eta_eviction,
            eta_oom_seconds: eta_oom,
            psi_some_avg10: psi,
            next_victims: self
                .rankings
                .back()
                .map(|r| r.victims.clone())
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn victim(pid: u32, oom_score: u32) -> NextVictim {
        NextVictim {
            pid,
            comm: format!("p{pid}"),
            oom_score,
            oom_score_adj: 0,
            rss_bytes: 1 << 20,
            victim_cgroup: None,
            identity: crate::pods::Identity::default(),
        }
    }

    #[test]
    fn a_kill_stands_in_the_ranking_made_before_it() {
        let mut node = NodeWatch::new(EvictionThreshold::DEFAULT);
        node.rankings.push_back(Ranking {
            t: 10.0,
            victims: vec![victim(7, 1300), victim(8, 900)],
        });
        // Made while the kill's record waited for the kernel log: the victim is gone from it.
        node.rankings.push_back(Ranking {
            t: 10.5,
            victims: vec![victim(8, 950)],
        });
        assert_eq!(
            node.standing(7, 10.4),
            Some(Standing {
                rank: 1,
                oom_score: 1300
            })
        );
        assert_eq!(
            node.standing(8, 10.6),
            Some(Standing {
                rank: 1,
                oom_score: 950
            })
        );
        assert_eq!(node.standing(7, 10.6), None);
        assert_eq!(node.standing(7, 9.0), None, "no ranking before the kill");
    }
}
