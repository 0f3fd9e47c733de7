//! What `profiler watch --json` prints: one [`Record`] per line.
//!
//! This is a contract with users' scripts: later versions add fields and record types, and
//! existing ones keep their meaning. Every line has `type`, `ts` (Unix seconds, float) and
//! `cgroup` (the watched cgroup's path, `null` for node-wide lines). Lines about a cgroup also
//! name its owner: `namespace`, `pod`, `pod_uid`, `container`, `container_id`, `qos`,
//! `runtime` (each `null` when unknown).
mod stacks;

use std::path::PathBuf;

use serde::Serialize;
pub(crate) use stacks::{ChargeStacks, Processes, ProcessesTrigger, StackEntry};

use crate::{
    cgroup::CgroupVersion,
    deaths::{Cause, Constraint},
    distributions::Summary,
    forecast::risk::Risk,
    mode::ChargeMode,
    node::NodeRecord,
    pods::{Identity, LimitSource},
};

/// One line of output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Record {
    /// Unix time, seconds.
    pub ts: f64,
    /// The watched cgroup the record is about; `None` for node-wide records.
    pub cgroup: Option<PathBuf>,
    /// Who the cgroup belongs to; `None` (no keys at all) for node-wide records.
    #[serde(flatten)]
    pub identity: Option<Identity>,
    /// The record itself; its variant name is the `type` field.
    #[serde(flatten)]
    pub body: RecordBody,
}

/// The kinds of record.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum RecordBody {
    /// A cgroup is now watched.
    WatchStart(WatchStart),
    /// Periodic figures of a watched cgroup.
    Sample(Sample),
    /// The cgroup charged more than its burst budget between two samples.
    Burst(Burst),
    /// The kernel OOM-killed a process in the cgroup.
    OomKill(OomKill),
    /// The kernel killed every process of a cgroup with `memory.oom.group` set.
    OomGroupKill(OomGroupKill),
    /// A process of the cgroup died of a signal, or its last process exited.
    Exit(Exit),
    /// SIGKILL or SIGTERM was sent to a process of the cgroup.
    Signal(SignalRecord),
    /// The forecast crossed a warning threshold (or cleared).
    Warning(Warning),
    /// Distributions over the watch of one cgroup: when it goes, and at the end.
    Summary(SummaryRecord),
    /// The watched cgroup was removed; the watch goes on for the others.
    CgroupGone,
    /// Kernel records were lost (ring buffer full, or kernel log overwritten).
    LostEvents(LostEvents),
    /// The node's memory, its forecast and its next OOM victims, every round.
    Node(NodeRecord),
    /// The charge path's programs were attached or detached (`--adaptive`, and `serve`).
    ChargeTracing(ChargeTracing),
    /// A runtime process (JVM, Node.js, Go, .NET) was found, with its heap ceiling.
    HeapCeiling(HeapCeilingRecord),
    /// A runtime's setting is wrong for its limit: what, in numbers, and the fix.
    ConfigRisk(crate::ceilings::assess::ConfigRisk),
    /// The processes of a container, their memory and growth (every 5 s when one moved, and when its risk
    /// rises).
    Processes(Processes),
    /// Sampled charge stacks of a container, named (`--stacks`).
    ChargeStacks(ChargeStacks),
    /// The watch ended.
    End(End),
}

/// Fields of a `watch_start` record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct WatchStart {
    /// Cgroup id (inode of the cgroup directory).
    pub cgroup_id: u64,
    /// `v1` or `v2`.
    pub cgroup_version: CgroupVersion,
    /// The limit that applies (the cgroup's or an ancestor's), or null when unlimited.
    pub limit_bytes: Option<u64>,
    /// Whose limit that is.
    pub limit_source: LimitSource,
    /// How the charge path is observed.
    pub mode: ChargeMode,
}

/// Fields of a `sample` record.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Sample {
    /// Memory charged to the cgroup (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub usage_bytes: u64,
    /// Usage minus inactive page cache, as kubelet computes it.
    pub working_set_bytes: u64,
    /// Anonymous memory.
    pub anon_bytes: u64,
    /// Page cache (includes shmem).
    pub file_bytes: u64,
    /// Shared memory and tmpfs.
    pub shmem_bytes: u64,
    /// Kernel memory charged to the cgroup, where the kernel reports it.
    pub kernel_bytes: Option<u64>,
    /// Memory reclaim cannot free: anon + shmem + kernel memory. What the forecast follows.
    pub unreclaimable_bytes: u64,
    /// The most the unreclaimable memory can reach while the container's runtimes stay under
    /// their heap ceilings (see `heap_ceiling`); null when nothing bounds it.
    pub reach_bytes: Option<u64>,
    /// The limit that applies, or null when unlimited.
    pub limit_bytes: Option<u64>,
    /// Usage as a percentage of the limit.
    pub limit_pct: Option<f64>,
    /// Swap the cgroup uses; null where the kernel does not account swap.
    pub swap_bytes: Option<u64>,
    /// The most the cgroup may swap (its swap limit, within the node's free swap); null when
    /// it cannot swap at all. With swap, the kill comes when memory and swap are both full.
    pub swap_max_bytes: Option<u64>,
    /// Bytes charged per second since the previous sample, from the kernel's charge events.
    pub charge_rate_bytes_per_s: Option<f64>,
    /// Bytes uncharged per second since the previous sample, from the kernel's charge events.
    pub uncharge_rate_bytes_per_s: Option<f64>,
    /// Bytes charged since the watch of this cgroup started, from the kernel's charge events
    /// (null while the charge path is not traced).
    pub charged_bytes: Option<u64>,
    /// Memcg reclaim passes since the watch started.
    pub reclaim_count: Option<u64>,
    /// Time tasks spent in those passes since the watch started, microseconds.
    pub reclaim_stall_us: Option<u64>,
    /// Whose limit `limit_bytes` is.
    pub limit_source: LimitSource,
    /// OOM kills since the watch started; for a pod's container, in every container that
    /// had its name (the count carries over restarts).
    pub oom_kills: u64,
    /// Restarts of a pod's container seen since the watch started (a new container id for
    /// the same pod and container name); 0 for other cgroups.
    pub restarts: u64,
    /// Times the usage hit the limit (v1 `memory.failcnt`), since the watch started.
    pub failcnt: Option<u64>,
    /// PSI: share of the last 10 s, in %, in which some task of the cgroup waited for memory
    /// (v2 `memory.pressure`; null without PSI, and on v1).
    pub psi_some_avg10: Option<f64>,
    /// PSI: share of the last 10 s, in %, in which all its non-idle tasks waited for memory.
    pub psi_full_avg10: Option<f64>,
    /// Forecast seconds until the OOM kill; null when no risk is in sight (or while the
    /// forecaster is still learning the container).
    pub eta_seconds: Option<f64>,
    /// Earliest plausible time of the kill, seconds.
    pub eta_low_seconds: Option<f64>,
    /// Latest plausible time of the kill, seconds (null: unbounded).
    pub eta_high_seconds: Option<f64>,
    /// The warning level now.
    pub risk: Risk,
    /// How the charge path is observed.
    pub mode: ChargeMode,
}

/// The level a `warning` record announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WarningLevel {
    /// A kill is forecast within `--warn`.
    Warning,
    /// A kill is forecast within `--critical`.
    Critical,
    /// The forecast has stayed clear for a while: the warning is over.
    Cleared,
}

impl From<Risk> for WarningLevel {
    fn from(risk: Risk) -> Self {
        match risk {
            Risk::Ok => WarningLevel::Cleared,
            Risk::Warning => WarningLevel::Warning,
            Risk::Critical => WarningLevel::Critical,
        }
    }
}

/// Fields of a `warning` record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Warning {
    /// The new level.
    pub level: WarningLevel,
    /// The level before.
    pub previous: Risk,
    /// Forecast seconds until the kill.
    pub eta_seconds: Option<f64>,
    /// Earliest plausible.
    pub eta_low_seconds: Option<f64>,
    /// Latest plausible (null: unbounded).
    pub eta_high_seconds: Option<f64>,
    /// Why, in words: the figures and the shape of growth the forecast rests on.
    pub reason: String,
    /// Unreclaimable memory now.
    pub unreclaimable_bytes: u64,
    /// Usage now.
    pub usage_bytes: u64,
    /// The limit that applies.
    pub limit_bytes: Option<u64>,
}

/// Fields of a `summary` record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct SummaryRecord {
    /// Seconds watched.
    pub duration_s: f64,
    /// Percentiles of each figure.
    #[serde(flatten)]
    pub summary: Summary,
    /// OOM kills seen (for a pod's container, over its restarts).
    pub oom_kills: u64,
    /// Warnings raised (`warning` or `critical`).
    pub warnings: u64,
    /// The highest level reached.
    pub worst_risk: Risk,
}

/// Fields of a `burst` record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Burst {
    /// The budget the cgroup spent: half its headroom at the previous sample.
    pub budget_bytes: u64,
    /// Usage read right after the burst was reported.
    pub usage_bytes: Option<u64>,
    /// The limit that applies.
    pub limit_bytes: Option<u64>,
}

/// Where an OOM kill was learned from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum KillSource {
    /// The `oom:mark_victim` tracepoint.
    Bpf,
    /// The kernel log (`/dev/kmsg`).
    Kmsg,
}

/// Fields of an `oom_kill` record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct OomKill {
    /// The victim's own memory cgroup (the watched one or a descendant).
    pub victim_cgroup: Option<PathBuf>,
    /// Process id (thread group id) of the victim.
    pub pid: u32,
    /// Command name of the victim, verbatim.
    pub comm: String,
    /// Anonymous RSS of the victim.
    pub anon_rss_bytes: Option<u64>,
    /// File-backed RSS of the victim.
    pub file_rss_bytes: Option<u64>,
    /// Shared-memory RSS of the victim.
    pub shmem_rss_bytes: Option<u64>,
    /// Virtual size of the victim.
    pub total_vm_bytes: Option<u64>,
    /// `oom_score_adj` of the victim.
    pub oom_score_adj: Option<i32>,
    /// The limit that applied to the victim's cgroup.
    pub limit_bytes: Option<u64>,
    /// Where the kill was learned from.
    pub source: KillSource,
    /// What limited the memory (`memcg`, `node`, `cpuset`, `mempolicy`), in the kernel log's
    /// words; null when the kernel log did not say.
    pub constraint: Option<Constraint>,
    /// The cgroup whose limit was reached (a memcg OOM).
    pub oom_cgroup: Option<PathBuf>,
    /// Whose limit that is, seen from the watched container.
    pub oom_limit_source: Option<LimitSource>,
    /// The cgroup killed whole with the victim (its `memory.oom.group` is set, cgroup v2):
    /// every process in it died in this kill, told by one `oom_group_kill` line. Null when the
    /// victim died alone.
    pub oom_group: Option<PathBuf>,
    /// For a node OOM: the victim's `oom_score` at the last ranking of the next victims.
    pub oom_score: Option<u32>,
    /// For a node OOM: the victim's place in that ranking (1: the first), null when it was
    /// not in it.
    pub next_victim_rank: Option<u32>,
}

#[cfg(test)]
impl OomKill {
    /// A kill of `pid` (`comm`) from the kernel programs, every other field unknown: what
    /// tests change the fields they are about on.
    pub(crate) fn of(pid: u32, comm: &str) -> Self {
        Self {
            victim_cgroup: None,
            pid,
            comm: comm.into(),
            anon_rss_bytes: None,
            file_rss_bytes: None,
            shmem_rss_bytes: None,
            total_vm_bytes: None,
            oom_score_adj: None,
            limit_bytes: None,
            source: KillSource::Bpf,
            constraint: None,
            oom_cgroup: None,
            oom_limit_source: None,
            oom_group: None,
            oom_score: None,
            next_victim_rank: None,
        }
    }
}

/// Fields of an `oom_group_kill` record: the kernel killed every process of a cgroup whose
/// `memory.oom.group` is set, at once.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct OomGroupKill {
    /// The cgroup killed whole.
    pub oom_group: PathBuf,
    /// Every process killed, the one the kernel chose first.
    pub victims: Vec<GroupVictim>,
    /// What limited the memory, as for each victim's `oom_kill`.
    pub constraint: Option<Constraint>,
    /// The cgroup whose limit was reached.
    pub oom_cgroup: Option<PathBuf>,
}

/// One process of a group kill.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct GroupVictim {
    /// Process id.
    pub pid: u32,
    /// Command name, verbatim.
    pub comm: String,
}

/// Fields of an `exit` record: a process of the cgroup died of a signal, or the cgroup's
/// last process exited.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Exit {
    /// Process id (thread group id).
    pub pid: u32,
    /// Command name, verbatim.
    pub comm: String,
    /// As runtimes report it: the exit status, or 128 + the signal.
    pub exit_code: u32,
    /// The signal that ended it (`SIGKILL`, ...), or null when it exited.
    pub signal: Option<String>,
    /// `oom_limit`, `oom_node`, `signal` or `exited`.
    pub cause: Cause,
    /// For an OOM kill: the cgroup whose limit was reached.
    pub oom_cgroup: Option<PathBuf>,
    /// For an OOM kill: whose limit that is (`container`, `pod`, `qos`, `kubepods`,
    /// `ancestor`, `cgroup`).
    pub limit_source: Option<LimitSource>,
    /// For a signal: the sender's process id.
    pub sender_pid: Option<u32>,
    /// For a signal: the sender's command name.
    pub sender_comm: Option<String>,
    /// For a signal: the sender's memory cgroup, when known.
    pub sender_cgroup: Option<PathBuf>,
    /// For a signal: the sender's container (name, else id), when it runs in one.
    pub sender_container: Option<String>,
    /// One sentence a person can act on.
    pub explanation: String,
}

/// Fields of a `signal` record: SIGKILL or SIGTERM sent to a process of the cgroup by another
/// process (the kernel's own, such as the OOM killer's, are told by `oom_kill` and `exit`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct SignalRecord {
    /// The target's process id.
    pub pid: u32,
    /// The target's command name.
    pub comm: String,
    /// `SIGKILL` or `SIGTERM`.
    pub signal: String,
    /// The sender's process id.
    pub sender_pid: u32,
    /// The sender's command name (read when the signal was sent).
    pub sender_comm: String,
    /// The sender's memory cgroup, when known.
    pub sender_cgroup: Option<PathBuf>,
    /// The sender's container (name, else id), when it runs in one.
    pub sender_container: Option<String>,
    /// Whether the kernel queued it (not ignored, not already pending).
    pub delivered: bool,
    /// How many times the same sender sent the same signal to the same process since the
    /// previous `signal` line of them: repeats within a second of a line are counted, not
    /// told (a process sending SIGTERM in a loop costs a line a second).
    pub repeats: u32,
}

/// Fields of a `charge_tracing` record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct ChargeTracing {
    /// Whether the charge path's programs are now attached.
    pub armed: bool,
    /// Why, as a word: `near_limit`, `forecast`, `growth`, `pressure`, `node` (attached);
    /// `idle`, `attach_failed` (detached).
    pub why: crate::collector::Why,
    /// Why, in words: which container needs it, or for how long none has.
    pub reason: String,
}

/// Fields of a `heap_ceiling` record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct HeapCeilingRecord {
    /// The process.
    pub pid: u32,
    /// Its command name.
    pub comm: String,
    /// Its runtime, ceiling and where the figure came from.
    #[serde(flatten)]
    pub ceiling: crate::ceilings::HeapCeiling,
}

/// Fields of a `lost_events` record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct LostEvents {
    /// Records lost since the previous report.
    pub count: u64,
    /// `ring_buffer` or `kmsg`.
    pub source: &'static str,
}

/// Why a watch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EndReason {
    /// `--duration` elapsed.
    Duration,
    /// SIGINT or SIGTERM.
    Signal,
    /// Every watched cgroup was removed.
    AllGone,
}

/// Fields of an `end` record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct End {
    /// Why the watch ended.
    pub reason: EndReason,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_serialize_with_type_ts_and_cgroup() {
        let record = Record {
            ts: 1.5,
            cgroup: Some(PathBuf::from("/sys/fs/cgroup/memory/x")),
            identity: Some(Identity::default()),
            body: RecordBody::CgroupGone,
        };
        let json = serde_json::to_value(&record).expect("serializable");
        assert_eq!(json["type"], "cgroup_gone");
        assert_eq!(json["ts"], 1.5);
        assert_eq!(json["cgroup"], "/sys/fs/cgroup/memory/x");
        // Identity keys are there, null when unknown.
        for key in [
            "namespace",
            "pod",
            "pod_uid",
            "container",
            "container_id",
            "qos",
            "runtime",
        ] {
            assert!(json[key].is_null() && json.get(key).is_some(), "{key}");
        }

        let record = Record {
            ts: 2.0,
            cgroup: None,
            identity: None,
            body: RecordBody::End(End {
                reason: EndReason::Signal,
            }),
        };
        let json = serde_json::to_value(&record).expect("serializable");
        assert_eq!(json["type"], "end");
        assert_eq!(json["reason"], "signal");
        assert!(json["cgroup"].is_null());
        assert!(json.get("pod").is_none());
    }

    #[test]
    fn oom_kill_keeps_hostile_comm_verbatim() {
        let record = Record {
            ts: 0.0,
            cgroup: None,
            identity: None,
            body: RecordBody::OomKill(OomKill {
                anon_rss_bytes: Some(1),
                oom_score_adj: Some(-5),
                ..OomKill::of(7, "a<>&\"'$;b")
            }),
        };
        let line = serde_json::to_string(&record).expect("serializable");
        let back: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(back["comm"], "a<>&\"'$;b");
        assert_eq!(back["type"], "oom_kill");
        assert_eq!(back["source"], "bpf");
    }
}
