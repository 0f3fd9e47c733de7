//! The lines about what a watched container's processes do with its memory: `processes` (its
//! processes by how much their RSS grew, every 5 s when one moved and at once when its risk rises) and
//! `charge_stacks` (the stacks that charged memory to it, sampled, aggregated per round).
//!
//! Frames are root first, as the profiler writes them: a function's demangled name,
//! `[unknown] (MODULE)` for an address in a file with no symbol for it, `[jit]` for code a
//! runtime compiled without writing `/tmp/perf-PID.map`, `[unknown]` for an address in no
//! mapping; kernel frames are names from kallsyms or `[unknown] (kernel)`. Every frame, like
//! every `comm`, comes from the node and is untrusted: escape it before showing it.
use serde::Deserialize;

/// A `processes` line: the container's processes that grew most, and the rest summed.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Processes {
    /// Why it was written: `periodic`, or `risk_rose` (kept as written: a newer profiler may
    /// give other reasons).
    #[serde(default)]
    pub trigger: Option<String>,
    /// The growth window asked for, seconds.
    #[serde(default)]
    pub window_s: Option<f64>,
    /// RSS of all the container's processes (anonymous, file and shared memory), bytes.
    #[serde(default)]
    pub rss_bytes: Option<u64>,
    /// The top processes: growth first (largest first), then RSS.
    pub processes: Vec<ProcessGrowth>,
    /// The processes not listed, summed (absent before the profiler wrote it).
    #[serde(default)]
    pub others: Option<OtherProcesses>,
}

/// One process of a `processes` line.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct ProcessGrowth {
    /// Process id (the node's).
    pub pid: u32,
    /// Command, verbatim (untrusted).
    #[serde(default)]
    pub comm: String,
    /// Anonymous RSS, bytes.
    #[serde(default)]
    pub rss_anon_bytes: u64,
    /// File-backed RSS, bytes.
    #[serde(default)]
    pub rss_file_bytes: u64,
    /// Shared-memory RSS, bytes.
    #[serde(default)]
    pub rss_shmem_bytes: u64,
    /// RSS now minus RSS at the start of its window, bytes (negative when it shrank).
    #[serde(default)]
    pub growth_bytes: i64,
    /// How long that window really was, seconds: shorter than asked for a young process.
    #[serde(default)]
    pub growth_window_s: Option<f64>,
}

impl ProcessGrowth {
    /// Its RSS: anonymous, file and shared memory, bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.rss_anon_bytes
            .saturating_add(self.rss_file_bytes)
            .saturating_add(self.rss_shmem_bytes)
    }
}

/// The processes a `processes` line does not list, summed.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct OtherProcesses {
    /// How many.
    pub processes: u64,
    /// Their RSS, bytes.
    pub rss_bytes: u64,
    /// Their growth over the window, bytes.
    pub growth_bytes: i64,
}

/// A `charge_stacks` line: the stacks sampled charging memory to the container in one round.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct ChargeStacks {
    /// Seconds since the container's previous `charge_stacks` line (or the start of its watch).
    #[serde(default)]
    pub window_s: Option<f64>,
    /// The mean bytes charged per sample.
    #[serde(default)]
    pub interval_bytes: Option<u64>,
    /// Samples in this line.
    #[serde(default)]
    pub samples: u64,
    /// The bytes those samples stand for (the sum of their weights).
    #[serde(default)]
    pub bytes: u64,
    /// The stacks, aggregated by process and frames; most bytes first.
    pub stacks: Vec<ChargeStack>,
}

/// One stack of a `charge_stacks` line, with the samples taken on it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct ChargeStack {
    /// Process id (the node's).
    pub pid: u32,
    /// Command, verbatim (untrusted).
    #[serde(default)]
    pub comm: String,
    /// Samples on this stack.
    #[serde(default)]
    pub samples: u64,
    /// The bytes they stand for.
    #[serde(default)]
    pub bytes: u64,
    /// User-space frames, root first (none for a kernel thread).
    #[serde(default)]
    pub user: Vec<String>,
    /// Kernel frames, root first.
    #[serde(default)]
    pub kernel: Vec<String>,
}

#[cfg(test)]
mod tests {
    use crate::line::{Body, Line};

    use super::*;

    const WHO: &str = r#""cgroup":"/sys/fs/cgroup/kubepods/pod1/c1","namespace":"shop","pod":"web","pod_uid":"u1","container":"app","container_id":"abc","qos":"burstable","runtime":"containerd""#;

    fn parse(body: &str) -> Line {
        let text = format!(r#"{{"ts":1764627600.5,{WHO},{body}}}"#);
        Line::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn a_processes_line_reads_with_its_top_growers_and_the_rest() {
        let line = parse(
            r#""type":"processes","trigger":"periodic","window_s":60.0,"rss_bytes":123456789,"processes":[{"pid":4121,"comm":"java","rss_anon_bytes":1,"rss_file_bytes":2,"rss_shmem_bytes":3,"growth_bytes":188743680,"growth_window_s":60.0},{"pid":7,"comm":"sh","rss_anon_bytes":4096,"rss_file_bytes":0,"rss_shmem_bytes":0,"growth_bytes":-4096,"growth_window_s":12.5}],"others":{"processes":3,"rss_bytes":1000,"growth_bytes":-4096}"#,
        );
        assert_eq!(line.identity.pod.as_deref(), Some("web"));
        let Body::Processes(p) = line.body else {
            panic!("a processes line: {:?}", line.body);
        };
        assert_eq!(p.trigger.as_deref(), Some("periodic"));
        assert_eq!((p.window_s, p.rss_bytes), (Some(60.0), Some(123_456_789)));
        assert_eq!(
            p.processes[0],
            ProcessGrowth {
                pid: 4121,
                comm: "java".into(),
                rss_anon_bytes: 1,
                rss_file_bytes: 2,
                rss_shmem_bytes: 3,
                growth_bytes: 180 << 20,
                growth_window_s: Some(60.0),
            }
        );
        assert_eq!(p.processes[0].rss_bytes(), 6);
        assert_eq!(
            (p.processes[1].growth_bytes, p.processes[1].growth_window_s),
            (-4096, Some(12.5))
        );
        assert_eq!(
            p.others,
            Some(OtherProcesses {
                processes: 3,
                rss_bytes: 1000,
                growth_bytes: -4096,
            })
        );
    }

    #[test]
    fn a_processes_line_without_its_optional_keys_reads() {
        let Body::Processes(p) = parse(r#""type":"processes","processes":[{"pid":1}]"#).body else {
            panic!("a processes line");
        };
        assert_eq!(
            (p.trigger, p.window_s, p.rss_bytes, p.others),
            (None, None, None, None)
        );
        assert_eq!(
            p.processes,
            [ProcessGrowth {
                pid: 1,
                ..ProcessGrowth::default()
            }]
        );
        // A newer trigger reads as written; without its processes it is no processes line.
        let Body::Processes(p) =
            parse(r#""type":"processes","trigger":"psi_rose","processes":[]"#).body
        else {
            panic!("a processes line");
        };
        assert_eq!(p.trigger.as_deref(), Some("psi_rose"));
        let text = format!(r#"{{"ts":1,{WHO},"type":"processes"}}"#);
        assert!(Line::parse(&text).is_err());
    }

    #[test]
    fn a_charge_stacks_line_reads_with_frames_root_first() {
        let line = parse(
            r#""type":"charge_stacks","window_s":1.0,"interval_bytes":524288,"samples":12,"bytes":6291456,"stacks":[{"pid":4121,"comm":"leaky","samples":10,"bytes":5242880,"user":["__libc_start_call_main","main","handle_request","cache_put"],"kernel":["asm_exc_page_fault","exc_page_fault","__mod_memcg_lruvec_state"]},{"pid":4121,"comm":"leaky","samples":2,"bytes":1048576,"user":["[unknown] (libc.so.6)","[jit]","[unknown]"],"kernel":["[unknown] (kernel)"]}]"#,
        );
        let Body::ChargeStacks(s) = line.body else {
            panic!("a charge_stacks line: {:?}", line.body);
        };
        assert_eq!((s.window_s, s.interval_bytes), (Some(1.0), Some(512 << 10)));
        assert_eq!((s.samples, s.bytes), (12, 6 << 20));
        assert_eq!(s.stacks.len(), 2);
        let top = &s.stacks[0];
        assert_eq!(
            (top.pid, top.comm.as_str(), top.samples),
            (4121, "leaky", 10)
        );
        assert_eq!(top.bytes, 5 << 20);
        assert_eq!(
            top.user,
            [
                "__libc_start_call_main",
                "main",
                "handle_request",
                "cache_put"
            ]
        );
        assert_eq!(top.kernel[0], "asm_exc_page_fault");
        assert_eq!(s.stacks[1].user[0], "[unknown] (libc.so.6)");
    }

    #[test]
    fn a_charge_stacks_line_without_its_optional_keys_reads() {
        let Body::ChargeStacks(s) =
            parse(r#""type":"charge_stacks","stacks":[{"pid":9,"kernel":["kthread"]}]"#).body
        else {
            panic!("a charge_stacks line");
        };
        assert_eq!(
            (s.window_s, s.interval_bytes, s.samples, s.bytes),
            (None, None, 0, 0)
        );
        assert_eq!(
            s.stacks,
            [ChargeStack {
                pid: 9,
                kernel: vec!["kthread".into()],
                ..ChargeStack::default()
            }]
        );
        let text = format!(r#"{{"ts":1,{WHO},"type":"charge_stacks","samples":1}}"#);
        assert!(Line::parse(&text).is_err());
    }

    #[test]
    fn lost_samples_say_what_lost_them() {
        let lost = |source: &str| {
            Line::parse(&format!(
                r#"{{"ts":1,"cgroup":null,"type":"lost_events","count":7{source}}}"#
            ))
            .unwrap_or_else(|e| panic!("{source}: {e}"))
            .body
        };
        assert_eq!(
            lost(r#","source":"charge_stacks""#),
            Body::LostEvents {
                count: 7,
                source: Some("charge_stacks".into())
            }
        );
        assert_eq!(
            lost(""),
            Body::LostEvents {
                count: 7,
                source: None
            }
        );
    }
}
