//! `--record FILE`: the watch written to a file as it goes, for `profiler report` and for a
//! colleague.
//!
//! The format is line-oriented JSON: a header line (`"type":"recording"`, the format version,
//! the node, kernel, cgroup version and hooks in use), then the same records `--json` prints.
//! Events are flushed at once and samples at the end of every round, so a `kill -9` loses at
//! most the last interval and leaves a file that reads up to its last complete line.
use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use serde::Serialize;

use super::Sink;
use crate::{
    cgroup::CgroupVersion,
    probe::ProbeReport,
    record::{Record, RecordBody},
};

/// The version of the recording format; readers refuse versions they do not know.
pub(crate) const RECORDING_VERSION: u32 = 1;

/// The first line of a recording.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct RecordingHeader {
    /// Always `recording`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Always `profiler-recording`: tells the file from other JSON lines.
    pub format: &'static str,
    /// [`RECORDING_VERSION`].
    pub version: u32,
    /// The profiler that wrote it.
    pub profiler_version: &'static str,
    /// Unix seconds when the watch started.
    pub started: f64,
    /// The node's host name.
    pub node: String,
    /// The cgroup version of the node's memory hierarchy.
    pub cgroup_version: Option<CgroupVersion>,
    /// Seconds between samples.
    pub interval_s: f64,
    /// `--warn` and `--critical`, seconds.
    pub warn_s: f64,
    /// See `warn_s`.
    pub critical_s: f64,
    /// The kernel, its hooks and the mode in use.
    pub probe: ProbeReport,
}

/// The node's host name (`/proc/sys/kernel/hostname`), or `unknown`.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Writes the recording; wraps the sink the user watches (live view or JSON).
pub(crate) struct RecordingSink {
    inner: Box<dyn Sink>,
    file: BufWriter<File>,
    path: PathBuf,
}

impl RecordingSink {
    /// Writes the header to `file` (created at `path`) at once.
    pub(crate) fn start(
        file: File,
        path: &Path,
        header: &RecordingHeader,
        inner: Box<dyn Sink>,
    ) -> io::Result<Self> {
        let mut file = BufWriter::new(file);
        serde_json::to_writer(&mut file, header)?;
        file.write_all(b"\n")?;
        file.flush()?;
        Ok(Self {
            inner,
            file,
            path: path.to_path_buf(),
        })
    }

    fn context(&self, e: io::Error) -> io::Error {
        io::Error::new(
            e.kind(),
            format!("writing the recording {}: {e}", self.path.display()),
        )
    }
}

impl Sink for RecordingSink {
    fn emit(&mut self, record: &Record) -> io::Result<()> {
        self.inner.emit(record)?;
        let written = serde_json::to_writer(&mut self.file, record)
            .map_err(io::Error::from)
            .and_then(|()| self.file.write_all(b"\n"));
        written.map_err(|e| self.context(e))?;
        // Events at once; samples wait for the end of the round.
        if !matches!(record.body, RecordBody::Sample(_)) {
            self.file.flush().map_err(|e| self.context(e))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()?;
        self.file.flush().map_err(|e| self.context(e))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{
        mode::{ChargeMode, OomSource},
        probe::report::Decision,
        record::{End, EndReason, Sample},
    };

    struct Discard;

    impl Sink for Discard {
        fn emit(&mut self, _: &Record) -> io::Result<()> {
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A header as a watch on a 6.18 node in tracepoint mode writes it (also for the agent's
    /// recording tests).
    pub(crate) fn header() -> RecordingHeader {
        RecordingHeader {
            kind: "recording",
            format: "profiler-recording",
            version: RECORDING_VERSION,
            profiler_version: env!("CARGO_PKG_VERSION"),
            started: 1.0,
            node: "node-1".into(),
            cgroup_version: Some(CgroupVersion::V1),
            interval_s: 1.0,
            warn_s: 600.0,
            critical_s: 60.0,
            probe: ProbeReport {
                kernel: "6.18".into(),
                btf: Ok(()),
                decision: Decision {
                    hooks: Vec::new(),
                    mode: ChargeMode::Tracepoint,
                    mode_reason: "test".into(),
                    oom_source: OomSource::MarkVictim,
                    oom_reason: "test".into(),
                    deaths: true,
                    deaths_reason: "test".into(),
                },
            },
        }
    }

    #[test]
    fn header_then_records_events_flushed_at_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("watch.rec");
        let file = File::create(&path).expect("create");
        let mut sink =
            RecordingSink::start(file, &path, &header(), Box::new(Discard)).expect("start");
        let text = std::fs::read_to_string(&path).expect("read");
        let first: serde_json::Value = serde_json::from_str(text.trim()).expect("header JSON");
        assert_eq!(first["type"], "recording");
        assert_eq!(first["version"], RECORDING_VERSION);
        assert_eq!(first["node"], "node-1");
        assert_eq!(first["probe"]["mode"], "tracepoint");

        let sample = Record {
            ts: 2.0,
            cgroup: Some("/cg".into()),
            identity: None,
            body: RecordBody::Sample(Sample::default()),
        };
        sink.emit(&sample).expect("emit");
        // A sample waits for the end of the round...
        assert_eq!(
            std::fs::read_to_string(&path)
                .expect("read")
                .lines()
                .count(),
            1
        );
        sink.flush().expect("flush");
        assert_eq!(
            std::fs::read_to_string(&path)
                .expect("read")
                .lines()
                .count(),
            2
        );
        // ...an event is on disk at once.
        let end = Record {
            ts: 3.0,
            cgroup: None,
            identity: None,
            body: RecordBody::End(End {
                reason: EndReason::Signal,
            }),
        };
        sink.emit(&end).expect("emit");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 3);
        assert!(text.ends_with("\n"));
        assert!(text
            .lines()
            .last()
            .is_some_and(|l| l.contains("\"type\":\"end\"")));
    }

    /// What this writer writes, the `reports` reader reads back as written: every record type,
    /// identities, and a victim's name that is markup.
    #[test]
    fn round_trip_through_the_reports_reader() {
        use crate::deaths::{Cause, Constraint};
        use crate::forecast::risk::Risk;
        use crate::node::{NextVictim, NodeRecord};
        use crate::pods::LimitSource;
        use crate::pods::{classify::Qos, Identity};
        use crate::record::{
            Exit, GroupVictim, KillSource, LostEvents, OomGroupKill, OomKill, SignalRecord,
            SummaryRecord, Warning, WarningLevel, WatchStart,
        };
        use reports::recording::{read, Body};

        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("watch.rec");
        let file = File::create(&path).expect("create");
        let mut sink =
            RecordingSink::start(file, &path, &header(), Box::new(Discard)).expect("start");
        let identity = Identity {
            namespace: Some("shop".into()),
            pod: Some("web-7f9c".into()),
            pod_uid: Some("uid-1".into()),
            container: Some("app".into()),
            container_id: Some("c".repeat(64)),
            qos: Some(Qos::Burstable),
            runtime: None,
        };
        let record = |ts: f64, body: RecordBody| Record {
            ts,
            cgroup: Some("/kubepods/pod1/ctr".into()),
            identity: Some(identity.clone()),
            body,
        };
        let sample = Sample {
            usage_bytes: 100 << 20,
            working_set_bytes: 90 << 20,
            unreclaimable_bytes: 80 << 20,
            limit_bytes: Some(128 << 20),
            reclaim_stall_us: Some(1234),
            eta_seconds: Some(42.5),
            eta_low_seconds: Some(30.0),
            eta_high_seconds: None,
            risk: Risk::Warning,
            oom_kills: 1,
            restarts: 2,
            ..Sample::default()
        };
        let kill = OomKill {
            victim_cgroup: Some("/kubepods/pod1/ctr".into()),
            pid: 4242,
            comm: "<script>alert(1)</script>".into(),
            anon_rss_bytes: Some(1 << 20),
            file_rss_bytes: Some(2 << 20),
            shmem_rss_bytes: Some(3 << 20),
            total_vm_bytes: Some(4 << 20),
            oom_score_adj: Some(-998),
            limit_bytes: Some(128 << 20),
            source: KillSource::Bpf,
            constraint: Some(Constraint::Memcg),
            oom_cgroup: Some("/kubepods/pod1".into()),
            oom_limit_source: Some(LimitSource::Pod),
            oom_group: Some("/kubepods/pod1/ctr".into()),
            oom_score: None,
            next_victim_rank: None,
        };
        let group = OomGroupKill {
            oom_group: "/kubepods/pod1/ctr".into(),
            victims: vec![
                GroupVictim {
                    pid: 4242,
                    comm: "<script>alert(1)</script>".into(),
                },
                GroupVictim {
                    pid: 4243,
                    comm: "sleep".into(),
                },
            ],
            constraint: Some(Constraint::Memcg),
            oom_cgroup: Some("/kubepods/pod1".into()),
        };
        let node = NodeRecord {
            mem_total_bytes: 8 << 30,
            mem_available_bytes: 90 << 20,
            eviction_threshold_bytes: 100 << 20,
            eta_eviction_seconds: Some(0.0),
            eta_oom_seconds: Some(4.5),
            psi_some_avg10: Some(12.5),
            next_victims: vec![NextVictim {
                pid: 4243,
                comm: "sleep".into(),
                oom_score: 1200,
                oom_score_adj: 1000,
                rss_bytes: 1 << 20,
                victim_cgroup: Some("/kubepods/pod1/ctr".into()),
                identity: identity.clone(),
            }],
        };
        let exit = Exit {
            pid: 4242,
            comm: "<script>alert(1)</script>".into(),
            exit_code: 137,
            signal: Some("SIGKILL".into()),
            cause: Cause::OomLimit,
            oom_cgroup: Some("/kubepods/pod1".into()),
            limit_source: Some(LimitSource::Pod),
            sender_pid: None,
            sender_comm: None,
            sender_cgroup: None,
            sender_container: None,
            explanation: "OOM-killed: the pod's limit of 128.0MiB was reached".into(),
        };
        let signal = SignalRecord {
            pid: 4243,
            comm: "sleep".into(),
            signal: "SIGTERM".into(),
            sender_pid: 9,
            sender_comm: "containerd-shim".into(),
            sender_cgroup: None,
            sender_container: None,
            delivered: true,
            repeats: 0,
        };
        let warning = Warning {
            level: WarningLevel::Critical,
            previous: Risk::Warning,
            eta_seconds: Some(9.0),
            eta_low_seconds: Some(5.0),
            eta_high_seconds: Some(12.0),
            reason: "growing".into(),
            unreclaimable_bytes: 80 << 20,
            usage_bytes: 100 << 20,
            limit_bytes: Some(128 << 20),
        };
        let records = [
            record(
                2.0,
                RecordBody::WatchStart(WatchStart {
                    cgroup_id: 7,
                    cgroup_version: CgroupVersion::V1,
                    limit_bytes: Some(128 << 20),
                    limit_source: Default::default(),
                    mode: ChargeMode::Tracepoint,
                }),
            ),
            record(3.0, RecordBody::Sample(sample.clone())),
            record(4.0, RecordBody::Warning(warning.clone())),
            record(5.0, RecordBody::OomKill(kill.clone())),
            record(
                6.0,
                RecordBody::LostEvents(LostEvents {
                    count: 3,
                    source: "ring_buffer",
                }),
            ),
            record(
                7.0,
                RecordBody::Summary(SummaryRecord {
                    duration_s: 5.0,
                    summary: Default::default(),
                    oom_kills: 1,
                    warnings: 1,
                    worst_risk: Risk::Critical,
                }),
            ),
            record(8.0, RecordBody::CgroupGone),
            record(8.5, RecordBody::Exit(exit.clone())),
            record(8.7, RecordBody::Signal(signal.clone())),
            record(8.8, RecordBody::OomGroupKill(group.clone())),
            Record {
                ts: 8.9,
                cgroup: None,
                identity: None,
                body: RecordBody::Node(node.clone()),
            },
            record(
                8.91,
                RecordBody::HeapCeiling(crate::record::HeapCeilingRecord {
                    pid: 4244,
                    comm: "java".into(),
                    ceiling: crate::ceilings::HeapCeiling {
                        runtime: crate::ceilings::Runtime::Jvm,
                        bytes: Some(1 << 30),
                        source: "-Xmx1g on the command line".into(),
                        default: false,
                        gc_off: false,
                    },
                }),
            ),
            record(
                8.92,
                RecordBody::ConfigRisk(crate::ceilings::assess::ConfigRisk {
                    pid: 4244,
                    comm: "java".into(),
                    runtime: crate::ceilings::Runtime::Jvm,
                    kind: crate::ceilings::assess::RiskKind::CeilingAboveLimit,
                    ceiling_bytes: Some(1 << 30),
                    ceiling_source: "-Xmx1g on the command line".into(),
                    non_heap_bytes: Some(40 << 20),
                    limit_bytes: 128 << 20,
                    message: "JVM max heap 1.0 GiB > limit 128 MiB".into(),
                    fix: "use -Xmx ≤ 75m".into(),
                }),
            ),
            record(
                9.0,
                RecordBody::End(End {
                    reason: EndReason::Signal,
                }),
            ),
        ];
        for r in &records {
            sink.emit(r).expect("emit");
        }
        sink.flush().expect("flush");
        drop(sink);

        let text = std::fs::read_to_string(&path).expect("read");
        let recording = read(&text).expect("the reader reads what the writer wrote");
        assert_eq!(recording.damage, None);
        assert_eq!(recording.header.node.as_deref(), Some("node-1"));
        assert_eq!(recording.header.interval_s, Some(1.0));
        assert_eq!(recording.lines.len(), records.len());
        for (line, written) in recording.lines.iter().zip(&records) {
            assert_eq!(line.ts, written.ts);
            if written.cgroup.is_none() {
                continue;
            }
            assert_eq!(line.cgroup.as_deref(), Some("/kubepods/pod1/ctr"));
            assert_eq!(line.identity.pod.as_deref(), Some("web-7f9c"));
            assert_eq!(line.identity.qos.as_deref(), Some("burstable"));
            assert_ne!(line.body, Body::Other, "{:?} not understood", written.body);
        }
        let Body::Sample(s) = &recording.lines[1].body else {
            panic!("sample expected: {:?}", recording.lines[1].body);
        };
        assert_eq!(s.usage_bytes, sample.usage_bytes);
        assert_eq!(s.working_set_bytes, sample.working_set_bytes);
        assert_eq!(s.unreclaimable_bytes, Some(sample.unreclaimable_bytes));
        assert_eq!(s.limit_bytes, sample.limit_bytes);
        assert_eq!(s.reclaim_stall_us, sample.reclaim_stall_us);
        assert_eq!(
            (s.eta_seconds, s.eta_low_seconds, s.eta_high_seconds),
            (Some(42.5), Some(30.0), None)
        );
        assert_eq!((s.oom_kills, s.restarts), (1, 2));
        assert_eq!(s.risk.as_deref(), Some("warning"));
        let (Body::HeapCeiling(h), Body::ConfigRisk(r)) =
            (&recording.lines[11].body, &recording.lines[12].body)
        else {
            panic!("heap_ceiling and config_risk expected");
        };
        assert_eq!(
            (h.pid, h.language_runtime.as_deref(), h.ceiling_bytes),
            (4244, Some("jvm"), Some(1 << 30))
        );
        assert_eq!(
            (r.kind, r.non_heap_bytes, r.limit_bytes, r.fix.as_str()),
            (
                reports::recording::RiskKind::CeilingAboveLimit,
                Some(40 << 20),
                Some(128 << 20),
                "use -Xmx ≤ 75m"
            )
        );
        let Body::Warning(w) = &recording.lines[2].body else {
            panic!("warning expected");
        };
        assert_eq!(w.level, "critical");
        assert_eq!(
            (w.eta_seconds, w.eta_low_seconds, w.eta_high_seconds),
            (Some(9.0), Some(5.0), Some(12.0))
        );
        assert_eq!(w.unreclaimable_bytes, Some(80 << 20));
        assert_eq!(w.limit_bytes, Some(128 << 20));
        let Body::OomKill(k) = &recording.lines[3].body else {
            panic!("kill expected");
        };
        assert_eq!(k.comm, kill.comm);
        assert_eq!(k.pid, 4242);
        assert_eq!(
            (
                k.anon_rss_bytes,
                k.file_rss_bytes,
                k.shmem_rss_bytes,
                k.total_vm_bytes
            ),
            (Some(1 << 20), Some(2 << 20), Some(3 << 20), Some(4 << 20))
        );
        assert_eq!(k.oom_score_adj, Some(-998));
        assert_eq!(k.victim_cgroup.as_deref(), Some("/kubepods/pod1/ctr"));
        assert_eq!(
            (
                k.constraint.as_deref(),
                k.oom_cgroup.as_deref(),
                k.oom_limit_source.as_deref()
            ),
            (Some("memcg"), Some("/kubepods/pod1"), Some("pod"))
        );
        assert_eq!(
            recording.lines[4].body,
            Body::LostEvents {
                count: 3,
                source: Some("ring_buffer".into())
            }
        );
        let Body::Exit(e) = &recording.lines[7].body else {
            panic!("exit expected: {:?}", recording.lines[7]);
        };
        assert_eq!((e.pid, e.exit_code), (4242, 137));
        assert_eq!(e.comm, exit.comm);
        assert_eq!(e.signal.as_deref(), Some("SIGKILL"));
        assert_eq!(e.cause, "oom_limit");
        assert_eq!(e.limit_source.as_deref(), Some("pod"));
        assert_eq!(e.oom_cgroup.as_deref(), Some("/kubepods/pod1"));
        assert_eq!(e.explanation, exit.explanation);
        let Body::Signal(s) = &recording.lines[8].body else {
            panic!("signal expected");
        };
        assert_eq!((s.pid, s.sender_pid), (4243, 9));
        assert_eq!(s.signal, "SIGTERM");
        assert_eq!(s.sender_comm, "containerd-shim");
        assert_eq!(k.oom_group.as_deref(), Some("/kubepods/pod1/ctr"));
        let Body::OomGroupKill(g) = &recording.lines[9].body else {
            panic!("group kill expected: {:?}", recording.lines[9]);
        };
        assert_eq!(g.oom_group, "/kubepods/pod1/ctr");
        let pids: Vec<(u32, &str)> = g.victims.iter().map(|v| (v.pid, v.comm.as_str())).collect();
        assert_eq!(pids, vec![(4242, kill.comm.as_str()), (4243, "sleep")]);
        assert_eq!(g.constraint.as_deref(), Some("memcg"));
        let Body::Node(n) = &recording.lines[10].body else {
            panic!("node expected: {:?}", recording.lines[10]);
        };
        assert_eq!(recording.lines[10].cgroup, None);
        assert_eq!(
            (
                n.mem_total_bytes,
                n.mem_available_bytes,
                n.eviction_threshold_bytes
            ),
            (8 << 30, 90 << 20, 100 << 20)
        );
        assert_eq!(
            (n.eta_eviction_seconds, n.eta_oom_seconds),
            (Some(0.0), Some(4.5))
        );
        assert_eq!(n.psi_some_avg10, Some(12.5));
        let v = &n.next_victims[0];
        assert_eq!(
            (v.pid, v.oom_score, v.oom_score_adj, v.rss_bytes),
            (4243, 1200, 1000, 1 << 20)
        );
        assert_eq!(v.identity.pod.as_deref(), Some("web-7f9c"));
        assert_eq!(v.victim_cgroup.as_deref(), Some("/kubepods/pod1/ctr"));
    }
}
