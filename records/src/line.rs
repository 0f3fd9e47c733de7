//! One line of `profiler watch --json`, as in a recording after its header.
//!
//! Every line has `ts`, `cgroup` (null for node-wide lines) and `type`; lines about a cgroup
//! also name its owner. The fields below are the ones the readers use; the profiler writes
//! more (`profiler/src/record.rs`).
use serde::Deserialize;
use thiserror::Error;

pub use crate::ceiling::{ConfigRisk, HeapCeiling, RiskKind};
pub use crate::node::{NextVictim, Node};
pub use crate::stacks::{ChargeStack, ChargeStacks, OtherProcesses, ProcessGrowth, Processes};

/// Who a cgroup belongs to.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Identity {
    /// Namespace.
    pub namespace: Option<String>,
    /// Pod.
    pub pod: Option<String>,
    /// Container name.
    pub container: Option<String>,
    /// Container id.
    pub container_id: Option<String>,
    /// QoS class.
    pub qos: Option<String>,
}

/// A `watch_start` line.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct WatchStart {
    /// `v1` or `v2`.
    pub cgroup_version: Option<String>,
    /// The limit that applies, bytes; `None` when unlimited.
    pub limit_bytes: Option<u64>,
    /// How the charge path is observed (`tracepoint`, `fentry`, `kprobe`, `polling`).
    pub mode: Option<String>,
}

/// A `sample` line.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Sample {
    /// Bytes.
    pub usage_bytes: u64,
    /// Bytes.
    pub working_set_bytes: u64,
    /// Page cache (shmem included), bytes.
    #[serde(default)]
    pub file_bytes: Option<u64>,
    /// Shared memory and tmpfs, bytes.
    #[serde(default)]
    pub shmem_bytes: Option<u64>,
    /// Bytes (recordings before the forecast lack it).
    #[serde(default)]
    pub unreclaimable_bytes: Option<u64>,
    /// The most the unreclaimable memory can reach while the container's runtimes stay under
    /// their heap ceilings, bytes; `None` when nothing bounds it (and before the ceilings).
    #[serde(default)]
    pub reach_bytes: Option<u64>,
    /// Bytes.
    #[serde(default)]
    pub limit_bytes: Option<u64>,
    /// Swap the cgroup uses, bytes; `None` where the kernel does not account it (and before
    /// swap was read).
    #[serde(default)]
    pub swap_bytes: Option<u64>,
    /// The most the cgroup may swap, bytes; `None` when it cannot swap at all.
    #[serde(default)]
    pub swap_max_bytes: Option<u64>,
    /// Microseconds since the watch started.
    #[serde(default)]
    pub reclaim_stall_us: Option<u64>,
    /// Seconds.
    #[serde(default)]
    pub eta_seconds: Option<f64>,
    /// Seconds.
    #[serde(default)]
    pub eta_low_seconds: Option<f64>,
    /// Seconds.
    #[serde(default)]
    pub eta_high_seconds: Option<f64>,
    /// Bytes per second charged since the previous sample.
    #[serde(default)]
    pub charge_rate_bytes_per_s: Option<f64>,
    /// PSI `some avg10` of `memory.pressure`, percent (null without PSI, absent before the
    /// profiler read it).
    #[serde(default)]
    pub psi_some_avg10: Option<f64>,
    /// `ok`, `warning`, `critical` (absent before the forecast).
    #[serde(default)]
    pub risk: Option<String>,
    /// Kills so far.
    #[serde(default)]
    pub oom_kills: u64,
    /// Restarts so far.
    #[serde(default)]
    pub restarts: u64,
    /// How the charge path is observed.
    #[serde(default)]
    pub mode: Option<String>,
}

/// An `oom_kill` line.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct OomKill {
    /// Victim pid.
    pub pid: u32,
    /// Victim command, verbatim (untrusted: escape before showing).
    pub comm: String,
    /// Bytes.
    #[serde(default)]
    pub anon_rss_bytes: Option<u64>,
    /// Bytes.
    #[serde(default)]
    pub file_rss_bytes: Option<u64>,
    /// Bytes.
    #[serde(default)]
    pub shmem_rss_bytes: Option<u64>,
    /// Bytes.
    #[serde(default)]
    pub total_vm_bytes: Option<u64>,
    /// The victim's `oom_score_adj`.
    #[serde(default)]
    pub oom_score_adj: Option<i32>,
    /// The victim's own cgroup.
    #[serde(default)]
    pub victim_cgroup: Option<String>,
    /// Bytes.
    #[serde(default)]
    pub limit_bytes: Option<u64>,
    /// Where the kill was learned from: `bpf` or `kmsg`.
    #[serde(default)]
    pub source: Option<String>,
    /// What limited the memory: `memcg`, `node`, `cpuset`, `mempolicy` (absent before the
    /// deaths were told, null when the kernel log did not say).
    #[serde(default)]
    pub constraint: Option<String>,
    /// The cgroup whose limit was reached.
    #[serde(default)]
    pub oom_cgroup: Option<String>,
    /// Whose limit that is.
    #[serde(default)]
    pub oom_limit_source: Option<String>,
    /// The cgroup killed whole with the victim (`memory.oom.group`), when it was.
    #[serde(default)]
    pub oom_group: Option<String>,
    /// For a node OOM: the victim's `oom_score` at the last ranking.
    #[serde(default)]
    pub oom_score: Option<u32>,
    /// For a node OOM: its place in that ranking (1: first).
    #[serde(default)]
    pub next_victim_rank: Option<u32>,
}

/// An `oom_group_kill` line: every process of a cgroup with `memory.oom.group` set, killed
/// at once.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct OomGroupKill {
    /// The cgroup killed whole.
    pub oom_group: String,
    /// Its processes, the one the kernel chose first.
    pub victims: Vec<GroupVictim>,
    /// `memcg`, `node`, ...
    pub constraint: Option<String>,
    /// The cgroup whose limit was reached.
    pub oom_cgroup: Option<String>,
}

/// One process of a group kill.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct GroupVictim {
    /// Process id.
    pub pid: u32,
    /// Command (untrusted).
    pub comm: String,
}

/// An `exit` line: a process died of a signal, or a cgroup's last process exited.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Exit {
    /// Process id.
    pub pid: u32,
    /// Command, verbatim (untrusted: escape before showing).
    pub comm: String,
    /// As runtimes report it: the status, or 128 + the signal.
    pub exit_code: u32,
    /// `SIGKILL`, ..., or none when it exited.
    pub signal: Option<String>,
    /// `oom_limit`, `oom_node`, `signal` or `exited`.
    pub cause: String,
    /// For an OOM kill: the cgroup whose limit was reached.
    pub oom_cgroup: Option<String>,
    /// For an OOM kill: whose limit that is.
    pub limit_source: Option<String>,
    /// For a signal: the sender's pid.
    pub sender_pid: Option<u32>,
    /// For a signal: the sender's command (untrusted).
    pub sender_comm: Option<String>,
    /// For a signal: the sender's container.
    pub sender_container: Option<String>,
    /// One sentence (untrusted: it holds names from the node).
    pub explanation: String,
}

/// A `signal` line: SIGKILL or SIGTERM sent to a process by another.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Signal {
    /// The target's pid.
    pub pid: u32,
    /// The target's command (untrusted).
    pub comm: String,
    /// `SIGKILL` or `SIGTERM`.
    pub signal: String,
    /// The sender's pid.
    pub sender_pid: u32,
    /// The sender's command (untrusted).
    pub sender_comm: String,
    /// The sender's container.
    pub sender_container: Option<String>,
    /// The same signal from the same sender since the previous line of it, not each told.
    pub repeats: u32,
}

/// A `warning` line.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Warning {
    /// `warning`, `critical`, `cleared`.
    pub level: String,
    /// Seconds.
    #[serde(default)]
    pub eta_seconds: Option<f64>,
    /// Seconds.
    #[serde(default)]
    pub eta_low_seconds: Option<f64>,
    /// Seconds.
    #[serde(default)]
    pub eta_high_seconds: Option<f64>,
    /// Why.
    #[serde(default)]
    pub reason: String,
    /// Bytes when it was given.
    #[serde(default)]
    pub unreclaimable_bytes: Option<u64>,
    /// Bytes when it was given.
    #[serde(default)]
    pub usage_bytes: Option<u64>,
    /// Bytes when it was given.
    #[serde(default)]
    pub limit_bytes: Option<u64>,
}

/// An `end` line.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct End {
    /// `duration`, `signal` or `all_gone`.
    pub reason: Option<String>,
}

/// What a line says.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    /// A cgroup joined the watch.
    WatchStart(WatchStart),
    /// Figures of one round.
    Sample(Sample),
    /// A kill.
    OomKill(OomKill),
    /// A group kill: every process of a cgroup.
    OomGroupKill(OomGroupKill),
    /// A death, explained.
    Exit(Exit),
    /// A SIGKILL or SIGTERM from someone.
    Signal(Signal),
    /// The node's memory and next victims.
    Node(Node),
    /// A change of warning level.
    Warning(Warning),
    /// A runtime process and its heap ceiling.
    HeapCeiling(HeapCeiling),
    /// A runtime setting that is wrong already, with its fix.
    ConfigRisk(ConfigRisk),
    /// The container's processes by how much they grew.
    Processes(Processes),
    /// The stacks that charged memory to the container in one round.
    ChargeStacks(ChargeStacks),
    /// More was charged between two samples than the burst budget (shown by the samples).
    Burst {},
    /// Distributions of one cgroup (the report computes its own from the samples).
    Summary {},
    /// Kernel records were lost.
    LostEvents {
        /// How many.
        #[serde(default)]
        count: u64,
        /// What lost them: `ring_buffer` or `kmsg` (kills and deaths), `charge_stacks` (stack
        /// samples only); absent before the profiler said.
        #[serde(default)]
        source: Option<String>,
    },
    /// The cgroup was removed.
    CgroupGone {},
    /// The charge path's programs were attached or detached (adaptive tracing).
    ChargeTracing {
        /// Whether they are attached now.
        armed: bool,
        /// Why, as a word (`growth`, `near_limit`, ..., `idle`).
        #[serde(default)]
        why: Option<String>,
    },
    /// The watch ended.
    End(End),
    /// A line type this reader does not know (from a newer profiler).
    #[serde(other)]
    Other,
}

impl Body {
    /// The charge-path mode the line names: `watch_start` and `sample` lines carry one.
    pub fn mode(&self) -> Option<&str> {
        match self {
            Body::WatchStart(start) => start.mode.as_deref(),
            Body::Sample(sample) => sample.mode.as_deref(),
            _ => None,
        }
    }
}

/// One line of `profiler watch --json`, or of a recording after its header.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Line {
    /// Unix seconds.
    pub ts: f64,
    /// The watched cgroup; `None` for node-wide lines.
    #[serde(default)]
    pub cgroup: Option<String>,
    /// Who the cgroup belongs to.
    #[serde(flatten)]
    pub identity: Identity,
    /// What it says.
    #[serde(flatten)]
    pub body: Body,
}

/// Why a line does not read.
#[derive(Debug, Error)]
pub enum LineError {
    /// Not a JSON object (with a string `type`, if any).
    #[error("not a JSON record: {error}")]
    NotARecord {
        /// What the JSON reader said.
        error: serde_json::Error,
    },
    /// A JSON object without `type`.
    #[error("no \"type\": {error}")]
    NoType {
        /// What the JSON reader said.
        error: serde_json::Error,
    },
    /// A line of a known type (or of any type, when its `ts` is wrong) missing a field it
    /// must have, or with a field of the wrong kind.
    #[error("a {kind} line that does not read: {error}")]
    Bad {
        /// Its `type`.
        kind: String,
        /// What the JSON reader said.
        error: serde_json::Error,
    },
}

/// Just the `type` of a line, to say which kind of line did not read.
#[derive(Deserialize)]
struct Tag {
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

impl Line {
    /// Reads one line of `profiler watch --json`.
    pub fn parse(text: &str) -> Result<Line, LineError> {
        serde_json::from_str(text).map_err(|error| match serde_json::from_str::<Tag>(text) {
            Err(_) => LineError::NotARecord { error },
            Ok(Tag { kind: None }) => LineError::NoType { error },
            Ok(Tag { kind: Some(kind) }) => LineError::Bad { kind, error },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as `profiler watch --json` writes them (from a VM test of 6.12 with fentry).
    const WATCH_START: &str = r#"{"ts":1796063858.4087234,"cgroup":"/sys/fs/cgroup/vmtest","namespace":null,"pod":null,"pod_uid":null,"container":null,"container_id":null,"qos":null,"runtime":null,"type":"watch_start","cgroup_id":27,"cgroup_version":"v2","limit_bytes":67108864,"limit_source":"cgroup","mode":"fentry"}"#;
    const SAMPLE: &str = r#"{"ts":1796063859.410997,"cgroup":"/sys/fs/cgroup/vmtest","namespace":null,"pod":null,"pod_uid":null,"container":null,"container_id":null,"qos":null,"runtime":null,"type":"sample","usage_bytes":8634368,"working_set_bytes":8634368,"anon_bytes":8478720,"file_bytes":8192,"shmem_bytes":4096,"kernel_bytes":73728,"unreclaimable_bytes":8560640,"limit_bytes":67108864,"limit_pct":12.87,"charge_rate_bytes_per_s":8560153.496989977,"uncharge_rate_bytes_per_s":24504.2561936736,"reclaim_count":0,"reclaim_stall_us":0,"limit_source":"cgroup","oom_kills":0,"restarts":0,"failcnt":null,"psi_some_avg10":0.5,"psi_full_avg10":0.0,"eta_seconds":null,"eta_low_seconds":null,"eta_high_seconds":null,"risk":"ok","mode":"fentry"}"#;
    const KILL: &str = r#"{"ts":1796063866.4806268,"cgroup":"/sys/fs/cgroup/vmtest","namespace":null,"pod":null,"pod_uid":null,"container":null,"container_id":null,"qos":null,"runtime":null,"type":"oom_kill","victim_cgroup":"/sys/fs/cgroup/vmtest","pid":196,"comm":"leaky","anon_rss_bytes":66805760,"file_rss_bytes":0,"shmem_rss_bytes":1314816,"total_vm_bytes":69054464,"oom_score_adj":0,"limit_bytes":67108864,"source":"bpf"}"#;
    const END: &str = r#"{"ts":1796063869.5089698,"cgroup":null,"type":"end","reason":"signal"}"#;

    fn parse(text: &str) -> Line {
        Line::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn watch_lines_read_with_the_fields_the_verdicts_use() {
        let start = parse(WATCH_START);
        assert_eq!(start.cgroup.as_deref(), Some("/sys/fs/cgroup/vmtest"));
        assert_eq!(
            start.body,
            Body::WatchStart(WatchStart {
                cgroup_version: Some("v2".into()),
                limit_bytes: Some(64 << 20),
                mode: Some("fentry".into()),
            })
        );
        assert_eq!(start.body.mode(), Some("fentry"));

        let sample = parse(SAMPLE);
        let Body::Sample(s) = &sample.body else {
            panic!("a sample: {:?}", sample.body);
        };
        assert_eq!((s.file_bytes, s.shmem_bytes), (Some(8192), Some(4096)));
        assert_eq!(s.psi_some_avg10, Some(0.5));
        assert_eq!(s.charge_rate_bytes_per_s, Some(8560153.496989977));
        assert_eq!((s.eta_seconds, s.risk.as_deref()), (None, Some("ok")));
        assert_eq!(sample.body.mode(), Some("fentry"));

        let Body::OomKill(k) = parse(KILL).body else {
            panic!("a kill");
        };
        assert_eq!((k.pid, k.comm.as_str()), (196, "leaky"));
        assert_eq!(k.victim_cgroup.as_deref(), Some("/sys/fs/cgroup/vmtest"));
        assert_eq!(k.source.as_deref(), Some("bpf"));

        let end = parse(END);
        assert_eq!(end.cgroup, None);
        assert_eq!(
            end.body,
            Body::End(End {
                reason: Some("signal".into())
            })
        );
        assert_eq!(end.body.mode(), None);
    }

    #[test]
    fn fields_older_profilers_lack_are_none() {
        let sample = parse(
            r#"{"ts":1,"cgroup":"/c","type":"sample","usage_bytes":1,"working_set_bytes":1}"#,
        );
        let Body::Sample(s) = sample.body else {
            panic!("a sample");
        };
        assert_eq!(
            (s.file_bytes, s.psi_some_avg10, s.risk, s.mode),
            (None, None, None, None)
        );
        assert_eq!(
            (s.reach_bytes, s.swap_bytes, s.swap_max_bytes),
            (None, None, None)
        );
        let start = parse(r#"{"ts":1,"cgroup":"/c","type":"watch_start"}"#);
        assert_eq!(start.body, Body::WatchStart(WatchStart::default()));
    }

    #[test]
    fn samples_carry_reach_and_swap_where_the_profiler_knows_them() {
        let text = SAMPLE.replace(
            r#""limit_pct":12.87,"#,
            r#""limit_pct":12.87,"reach_bytes":41943040,"swap_bytes":1048576,"swap_max_bytes":33554432,"#,
        );
        let Body::Sample(s) = parse(&text).body else {
            panic!("a sample");
        };
        assert_eq!(
            (s.reach_bytes, s.swap_bytes, s.swap_max_bytes),
            (Some(40 << 20), Some(1 << 20), Some(32 << 20))
        );
        // null where nothing bounds it or no swap is possible.
        let text = SAMPLE.replace(
            r#""limit_pct":12.87,"#,
            r#""limit_pct":12.87,"reach_bytes":null,"swap_bytes":0,"swap_max_bytes":null,"#,
        );
        let Body::Sample(s) = parse(&text).body else {
            panic!("a sample");
        };
        assert_eq!(
            (s.reach_bytes, s.swap_bytes, s.swap_max_bytes),
            (None, Some(0), None)
        );
    }

    #[test]
    fn errors_say_what_kind_of_line_did_not_read() {
        let error = Line::parse("oops").expect_err("not JSON");
        assert!(matches!(error, LineError::NotARecord { .. }), "{error}");
        let error = Line::parse(r#"{"ts":1}"#).expect_err("no type");
        assert!(matches!(error, LineError::NoType { .. }), "{error}");
        let error = Line::parse(r#"{"type":"sample","ts":1}"#).expect_err("no usage");
        assert!(
            error
                .to_string()
                .starts_with("a sample line that does not read: missing field"),
            "{error}"
        );
        let error = Line::parse(r#"{"type":"end","ts":"then"}"#).expect_err("a bad ts");
        assert!(
            matches!(error, LineError::Bad { ref kind, .. } if kind == "end"),
            "{error}"
        );
    }
}
