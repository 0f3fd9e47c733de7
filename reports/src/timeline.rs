//! A recording folded into one timeline per container: what the charts, tables and the kill
//! section are drawn from.
//!
//! A container is what the collector follows across restarts: a pod's container by
//! (namespace, pod, container name), anything else by its cgroup path. Its kills, warnings and
//! samples from every cgroup it had are kept together, in time order, with times in seconds
//! since the recording started.
use std::collections::HashMap;

use crate::recording::{
    Body, ChargeStacks, ConfigRisk, Exit, HeapCeiling, Identity, Line, NextVictim, Node,
    OomGroupKill, OomKill, Processes, Sample, Signal, Warning,
};

/// One sample, reduced to what a report shows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Seconds since the recording started.
    pub t: f64,
    /// Bytes.
    pub usage: u64,
    /// Bytes.
    pub working_set: u64,
    /// Bytes; `None` in recordings from before the forecast.
    pub unreclaimable: Option<u64>,
    /// Bytes.
    pub limit: Option<u64>,
    /// The most the unreclaimable memory can reach under the runtimes' heap ceilings, bytes;
    /// `None` when nothing bounds it.
    pub reach: Option<u64>,
    /// Swap used, bytes; `None` where not accounted.
    pub swap: Option<u64>,
    /// Swap allowed, bytes; `None` when the cgroup cannot swap.
    pub swap_max: Option<u64>,
    /// Restarts so far (a new count starts a new life of the container).
    pub restarts: u64,
}

/// A kill, with where it happened.
#[derive(Clone, Debug, PartialEq)]
pub struct Kill {
    /// Seconds since the recording started.
    pub t: f64,
    /// The watched cgroup it was reported for.
    pub cgroup: Option<String>,
    /// What the kernel said about the victim.
    pub event: OomKill,
}

/// A death, as the `exit` line told it.
#[derive(Clone, Debug, PartialEq)]
pub struct Death {
    /// Seconds since the recording started.
    pub t: f64,
    /// What the line said.
    pub exit: Exit,
}

/// A group kill: every process of a cgroup with `memory.oom.group` set.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupKill {
    /// Seconds since the recording started.
    pub t: f64,
    /// What the line said.
    pub group: OomGroupKill,
}

/// A SIGKILL or SIGTERM from someone.
#[derive(Clone, Debug, PartialEq)]
pub struct SignalMark {
    /// Seconds since the recording started.
    pub t: f64,
    /// What the line said.
    pub signal: Signal,
}

/// A runtime process and its heap ceiling, when first seen.
#[derive(Clone, Debug, PartialEq)]
pub struct CeilingMark {
    /// Seconds since the recording started.
    pub t: f64,
    /// What the line said.
    pub ceiling: HeapCeiling,
}

/// A runtime setting found wrong.
#[derive(Clone, Debug, PartialEq)]
pub struct RiskMark {
    /// Seconds since the recording started.
    pub t: f64,
    /// What the line said.
    pub risk: ConfigRisk,
}

/// The container's processes by growth, at one `processes` line.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessesMark {
    /// Seconds since the recording started.
    pub t: f64,
    /// What the line said.
    pub processes: Processes,
}

/// The stacks that charged memory to the container, at one `charge_stacks` line.
#[derive(Clone, Debug, PartialEq)]
pub struct StacksMark {
    /// Seconds since the recording started.
    pub t: f64,
    /// What the line said.
    pub stacks: ChargeStacks,
}

/// A change of warning level.
#[derive(Clone, Debug, PartialEq)]
pub struct WarningMark {
    /// Seconds since the recording started.
    pub t: f64,
    /// What the line said.
    pub warning: Warning,
}

/// Everything recorded about one container.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Container {
    /// Who it is (from its newest line).
    pub identity: Identity,
    /// Every cgroup it had, in the order first seen (one per restart of a pod's container).
    pub cgroups: Vec<String>,
    /// Samples in time order.
    pub points: Vec<Point>,
    /// Kills in time order.
    pub kills: Vec<Kill>,
    /// Deaths (`exit` lines) in time order.
    pub deaths: Vec<Death>,
    /// Group kills in time order.
    pub group_kills: Vec<GroupKill>,
    /// Signals from someone, in time order.
    pub signals: Vec<SignalMark>,
    /// Warnings in time order.
    pub warnings: Vec<WarningMark>,
    /// Runtime processes and their heap ceilings, in time order.
    pub ceilings: Vec<CeilingMark>,
    /// Runtime settings found wrong, in time order.
    pub risks: Vec<RiskMark>,
    /// `processes` lines, in time order.
    pub processes: Vec<ProcessesMark>,
    /// `charge_stacks` lines, in time order.
    pub stacks: Vec<StacksMark>,
    /// Restarts seen (the largest count any sample carried).
    pub restarts: u64,
    /// Time spent stalled in memcg reclaim, microseconds, over all its cgroups.
    pub reclaim_stall_us: u64,
    /// Per cgroup, the largest cumulative stall seen (the counters restart with each cgroup).
    stall_by_cgroup: HashMap<String, u64>,
}

impl Container {
    /// The name a reader knows it by: `namespace/pod/container` for a pod's container,
    /// otherwise the runtime's container id or the cgroup path.
    pub fn name(&self) -> String {
        let id = &self.identity;
        match (&id.namespace, &id.pod, &id.container) {
            (Some(ns), Some(pod), Some(c)) => format!("{ns}/{pod}/{c}"),
            (Some(ns), Some(pod), None) => format!("{ns}/{pod}"),
            (_, _, Some(c)) => c.clone(),
            _ => match (&id.container_id, self.cgroups.first()) {
                (Some(cid), _) => cid.chars().take(12).collect(),
                (None, Some(cgroup)) => cgroup.clone(),
                (None, None) => "(unnamed)".into(),
            },
        }
    }

    /// The shortest name that still says which container it is, for file names: the name,
    /// or the last part of a cgroup path.
    pub fn short_name(&self) -> String {
        let name = self.name();
        match name.rsplit('/').find(|part| !part.is_empty()) {
            Some(last) if name.starts_with('/') => last.to_owned(),
            _ => name,
        }
    }

    fn add_sample(&mut self, t: f64, cgroup: Option<&str>, sample: &Sample) {
        self.points.push(Point {
            t,
            usage: sample.usage_bytes,
            working_set: sample.working_set_bytes,
            unreclaimable: sample.unreclaimable_bytes,
            limit: sample.limit_bytes,
            reach: sample.reach_bytes,
            swap: sample.swap_bytes,
            swap_max: sample.swap_max_bytes,
            restarts: sample.restarts,
        });
        self.restarts = self.restarts.max(sample.restarts);
        if let (Some(cgroup), Some(stall)) = (cgroup, sample.reclaim_stall_us) {
            let seen = self.stall_by_cgroup.entry(cgroup.to_owned()).or_default();
            if stall > *seen {
                self.reclaim_stall_us += stall - *seen;
                *seen = stall;
            }
        }
    }

    /// Seconds spent with usage at or above `share` of the limit. Each sample stands for the
    /// time until the next one, capped at `max_gap` so a pause in the recording does not count.
    pub fn time_above(&self, share: f64, max_gap: f64) -> f64 {
        self.points
            .windows(2)
            .filter(|pair| {
                pair[0]
                    .limit
                    .is_some_and(|limit| limit > 0 && pair[0].usage as f64 >= share * limit as f64)
            })
            .map(|pair| (pair[1].t - pair[0].t).clamp(0.0, max_gap))
            .sum()
    }

    /// Bytes per second the unreclaimable memory (else the usage) grew over the `window`
    /// seconds before `t`, from the samples in that window; `None` with fewer than two.
    pub fn growth_before(&self, t: f64, window: f64) -> Option<f64> {
        let inside: Vec<&Point> = self
            .points
            .iter()
            .filter(|p| p.t <= t && p.t >= t - window)
            .collect();
        let (first, last) = (inside.first()?, inside.last()?);
        let span = last.t - first.t;
        if inside.len() < 2 || span <= 0.0 {
            return None;
        }
        let value = |p: &Point| p.unreclaimable.unwrap_or(p.usage) as f64;
        Some((value(last) - value(first)) / span)
    }
}

/// The node's memory at one `node` line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodePoint {
    /// Seconds since the recording started.
    pub t: f64,
    /// `MemTotal`, bytes.
    pub total: u64,
    /// `MemAvailable`, bytes.
    pub available: u64,
    /// The eviction threshold, bytes.
    pub threshold: u64,
    /// Seconds until the threshold, when forecast.
    pub eta_eviction: Option<f64>,
    /// `some avg10`, %.
    pub psi: Option<f64>,
}

/// One ranking of the next victims, and the span of `node` lines that carried it unchanged.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranking {
    /// Seconds since the start: the first line with this ranking.
    pub first_t: f64,
    /// The last line with it.
    pub last_t: f64,
    /// Highest `oom_score` first.
    pub victims: Vec<NextVictim>,
}

/// The node over the recording, from its `node` lines.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeTimeline {
    /// One per `node` line, in time order.
    pub points: Vec<NodePoint>,
    /// The next-victim rankings, a new one each time it changed.
    pub rankings: Vec<Ranking>,
}

impl NodeTimeline {
    fn add(&mut self, t: f64, node: Node) {
        self.points.push(NodePoint {
            t,
            total: node.mem_total_bytes,
            available: node.mem_available_bytes,
            threshold: node.eviction_threshold_bytes,
            eta_eviction: node.eta_eviction_seconds,
            psi: node.psi_some_avg10,
        });
        // The same processes in the same order with the same scores: the same ranking.
        let key = |v: &NextVictim| (v.pid, v.oom_score);
        match self.rankings.last_mut() {
            Some(last)
                if last
                    .victims
                    .iter()
                    .map(key)
                    .eq(node.next_victims.iter().map(key)) =>
            {
                last.last_t = t;
            }
            _ => self.rankings.push(Ranking {
                first_t: t,
                last_t: t,
                victims: node.next_victims,
            }),
        }
    }

    /// The ranking the last `node` line at or before `t` carried.
    pub fn ranking_at(&self, t: f64) -> Option<&Ranking> {
        self.rankings.iter().rev().find(|r| r.first_t <= t)
    }

    /// The line with the least memory available.
    pub fn lowest(&self) -> Option<&NodePoint> {
        self.points.iter().min_by_key(|p| p.available)
    }

    /// Seconds with available memory below the eviction threshold. Each line stands for the
    /// time until the next one, capped at `max_gap` so a pause in the recording does not count.
    pub fn time_below_threshold(&self, max_gap: f64) -> f64 {
        self.points
            .windows(2)
            .filter(|pair| pair[0].available < pair[0].threshold)
            .map(|pair| (pair[1].t - pair[0].t).clamp(0.0, max_gap))
            .sum()
    }
}

/// A recording folded into containers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    /// Containers in the order they first appeared.
    pub containers: Vec<Container>,
    /// Unix seconds the times count from.
    pub start: Option<f64>,
    /// Seconds from the start to the last line.
    pub span: f64,
    /// Lines of types this reader does not know (from a newer profiler).
    pub unknown_lines: u64,
    /// Kernel records the watch lost (a kill among them would be missing).
    pub lost_events: u64,
    /// Charge-stack samples the watch lost (the stacks shown undercount).
    pub lost_stack_samples: u64,
    /// The node, when the recording has `node` lines.
    pub node: NodeTimeline,
    index: HashMap<String, usize>,
}

impl Timeline {
    /// An empty timeline whose times count from `start` (Unix seconds; the first line's time
    /// when `None`).
    pub fn new(start: Option<f64>) -> Self {
        Self {
            start,
            ..Self::default()
        }
    }

    /// Folds one line in.
    pub fn add(&mut self, line: Line) {
        let start = *self.start.get_or_insert(line.ts);
        let t = line.ts - start;
        self.span = self.span.max(t);
        match line.body {
            Body::Other => {
                self.unknown_lines += 1;
                return;
            }
            Body::LostEvents { count, source } => {
                if source.as_deref() == Some("charge_stacks") {
                    self.lost_stack_samples += count;
                } else {
                    self.lost_events += count;
                }
                return;
            }
            Body::Node(node) => {
                self.node.add(t, node);
                return;
            }
            _ => {}
        }
        // Node-wide lines (no cgroup) carry nothing a container's report shows.
        let Some(key) = lineage_key(&line) else {
            return;
        };
        let slot = match self.index.get(&key) {
            Some(&slot) => slot,
            None => {
                self.containers.push(Container::default());
                self.index.insert(key, self.containers.len() - 1);
                self.containers.len() - 1
            }
        };
        let container = &mut self.containers[slot];
        if let Some(cgroup) = &line.cgroup {
            if !container.cgroups.contains(cgroup) {
                container.cgroups.push(cgroup.clone());
            }
        }
        if line.identity != Identity::default() {
            container.identity = line.identity.clone();
        }
        match line.body {
            Body::Sample(sample) => container.add_sample(t, line.cgroup.as_deref(), &sample),
            Body::OomKill(event) => container.kills.push(Kill {
                t,
                cgroup: line.cgroup,
                event,
            }),
            Body::Warning(warning) => container.warnings.push(WarningMark { t, warning }),
            Body::OomGroupKill(group) => container.group_kills.push(GroupKill { t, group }),
            Body::Exit(exit) => container.deaths.push(Death { t, exit }),
            Body::Signal(signal) => container.signals.push(SignalMark { t, signal }),
            Body::HeapCeiling(ceiling) => container.ceilings.push(CeilingMark { t, ceiling }),
            Body::ConfigRisk(risk) => container.risks.push(RiskMark { t, risk }),
            Body::Processes(processes) => {
                container.processes.push(ProcessesMark { t, processes });
            }
            Body::ChargeStacks(stacks) => container.stacks.push(StacksMark { t, stacks }),
            Body::WatchStart(_)
            | Body::Burst {}
            | Body::Summary {}
            | Body::LostEvents { .. }
            | Body::Node(_)
            | Body::CgroupGone {}
            | Body::ChargeTracing { .. }
            | Body::End(_)
            | Body::Other => {}
        }
    }
}

/// What ties a line to a container: (namespace, pod, container name) for a pod's container,
/// as the collector follows it across restarts; the cgroup path otherwise.
fn lineage_key(line: &Line) -> Option<String> {
    let id = &line.identity;
    if let (Some(ns), Some(pod), Some(container)) = (&id.namespace, &id.pod, &id.container) {
        // NUL cannot occur in any of them: no two different triples give one key.
        return Some(format!("pod\0{ns}\0{pod}\0{container}"));
    }
    line.cgroup.as_ref().map(|c| format!("cgroup\0{c}"))
}

#[cfg(test)]
mod tests;
