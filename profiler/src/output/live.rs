//! The live view: a table per interval, events as they happen.
//!
//! On a terminal the table is redrawn in place with the latest events under it; into a pipe or
//! file it is appended, so nothing printed is ever lost.
use std::{
    collections::{BTreeMap, VecDeque},
    io::{self, Write},
    path::PathBuf,
};

use super::{bytes, Sink};
use crate::{
    distributions::{Distributions, Percentiles, SampleFigures},
    forecast::risk::Risk,
    node::NodeRecord,
    record::{Record, RecordBody, Sample, WarningLevel},
};

const RECENT_EVENTS: usize = 12;

/// One watched cgroup in the table.
struct Row {
    name: String,
    sample: Sample,
    /// Distributions over the watch so far, for the percentile table.
    distributions: Distributions,
    /// The process that grew most in the last minute, from the latest `processes` line.
    top_grower: Option<String>,
}

/// Renders records for a person.
pub(crate) struct LiveSink<W: Write> {
    out: W,
    redraw: bool,
    /// Latest sample per cgroup, with the name shown for it.
    rows: BTreeMap<PathBuf, Row>,
    events: VecDeque<String>,
    /// The node's line of the latest round.
    node: Option<NodeRecord>,
}

impl<W: Write> LiveSink<W> {
    /// A sink writing to `out`; `redraw` clears the screen each round (for terminals).
    pub(crate) fn new(out: W, redraw: bool) -> Self {
        Self {
            out,
            redraw,
            rows: BTreeMap::new(),
            events: VecDeque::new(),
            node: None,
        }
    }

    fn event_line(record: &Record) -> Option<String> {
        let cgroup = who(record);
        let text = match &record.body {
            RecordBody::WatchStart(w) => {
                let path = record
                    .cgroup
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                let owner = record
                    .identity
                    .as_ref()
                    .and_then(|i| i.short())
                    .map(|name| {
                        let qos = record
                            .identity
                            .as_ref()
                            .and_then(|i| i.qos)
                            .map(|q| format!(", {q:?}"))
                            .unwrap_or_default();
                        format!("{name}{qos}, ")
                    })
                    .unwrap_or_default();
                format!(
                    "watching {path} ({owner}cgroup {}, {:?}, limit {} ({:?}), mode {})",
                    w.cgroup_id,
                    w.cgroup_version,
                    w.limit_bytes.map(bytes).unwrap_or_else(|| "none".into()),
                    w.limit_source,
                    w.mode
                )
            }
            RecordBody::OomKill(k) => format!(
                "OOM KILL in {cgroup}{}: pid {} ({}) anon {} file {} shmem {} oom_score_adj {} \
                 limit {} victim cgroup {}",
                container_detail(record),
                k.pid,
                k.comm.escape_debug(),
                opt_bytes(k.anon_rss_bytes),
                opt_bytes(k.file_rss_bytes),
                opt_bytes(k.shmem_rss_bytes),
                k.oom_score_adj.map(|v| v.to_string()).unwrap_or_else(|| "?".into()),
                opt_bytes(k.limit_bytes),
                k.victim_cgroup.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "?".into()),
            ),
            RecordBody::OomGroupKill(g) => format!(
                "GROUP OOM KILL in {cgroup}{}: every process of {} (memory.oom.group): {}",
                container_detail(record),
                g.oom_group.display(),
                g.victims
                    .iter()
                    .map(|v| format!("pid {} ({})", v.pid, v.comm.escape_debug()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            RecordBody::Exit(e) => format!(
                "EXIT in {cgroup}{}: pid {} ({}) exit code {}: {}",
                container_detail(record),
                e.pid,
                e.comm.escape_debug(),
                e.exit_code,
                e.explanation.escape_debug(),
            ),
            RecordBody::Signal(s) => format!(
                "{} to pid {} ({}) in {cgroup} from {} (pid {}{}){}{}",
                s.signal,
                s.pid,
                s.comm.escape_debug(),
                s.sender_comm.escape_debug(),
                s.sender_pid,
                s.sender_container
                    .as_ref()
                    .map(|c| format!(", container {}", c.escape_debug()))
                    .unwrap_or_default(),
                if s.delivered { "" } else { " (not delivered)" },
                match s.repeats {
                    0 => String::new(),
                    n => format!(", and {n} more like it since the last"),
                },
            ),
            // The live view shows the node in its header, not among the events.
            RecordBody::Node(_) => return None,
            RecordBody::Burst(b) => format!(
                "burst in {cgroup}: charged more than {} since the last sample (usage {}, limit {})",
                bytes(b.budget_bytes),
                opt_bytes(b.usage_bytes),
                opt_bytes(b.limit_bytes)
            ),
            RecordBody::CgroupGone => format!("{cgroup} was removed"),
            RecordBody::LostEvents(l) => format!("{} kernel records lost ({})", l.count, l.source),
            RecordBody::ChargeTracing(c) => format!(
                "charge path {}: {}",
                if c.armed { "attached" } else { "detached" },
                c.reason
            ),
            RecordBody::HeapCeiling(h) => format!(
                "{cgroup}: pid {} ({}) is {}, heap ceiling {} ({})",
                h.pid,
                h.comm.escape_debug(),
                h.ceiling.runtime.label(),
                opt_bytes(h.ceiling.bytes),
                h.ceiling.source.escape_debug()
            ),
            RecordBody::ConfigRisk(r) => format!(
                "CONFIG RISK in {cgroup}: pid {} ({}): {}; {}",
                r.pid,
                r.comm.escape_debug(),
                r.message,
                r.fix
            ),
            RecordBody::End(e) => format!("watch ended ({:?})", e.reason),
            RecordBody::Warning(w) => {
                let what = match w.level {
                    WarningLevel::Warning => "WARNING",
                    WarningLevel::Critical => "CRITICAL",
                    WarningLevel::Cleared => "cleared",
                };
                let (low, high) = (
                    eta(w.eta_low_seconds),
                    w.eta_high_seconds
                        .map_or_else(|| "later".to_owned(), |s| eta(Some(s))),
                );
                let range = if low == high {
                    String::new()
                } else {
                    format!(" (between {low} and {high})")
                };
                format!(
                    "{what}: {cgroup}: OOM kill forecast in {}{range}: {}",
                    eta(w.eta_seconds),
                    w.reason
                )
            }
            RecordBody::Summary(s) => {
                let p = |p| percentiles(p, "p50 {} p90 {} p99 {} max {}");
                format!(
                    "summary of {cgroup} over {:.0}s ({} samples): usage {}; working set {}; \
                     unreclaimable {}; {} OOM kills, {} warnings, worst {:?}",
                    s.duration_s,
                    s.summary.samples,
                    p(s.summary.usage_bytes),
                    p(s.summary.working_set_bytes),
                    p(s.summary.unreclaimable_bytes),
                    s.oom_kills,
                    s.warnings,
                    s.worst_risk
                )
            }
            RecordBody::Sample(_) | RecordBody::Processes(_) | RecordBody::ChargeStacks(_) => {
                return None
            }
        };
        Some(text)
    }

    fn render_table(&mut self) -> io::Result<()> {
        if let Some(node) = &self.node {
            writeln!(self.out, "{}", node_line(node))?;
        }
        const HEADER: [&str; 15] = [
            "USAGE",
            "WSET",
            "UNRECL",
            "FILE",
            "LIMIT",
            "LIMIT OF",
            "%LIM",
            "CHARGE/s",
            "RECLAIM n/ms",
            "OOM",
            "RST",
            "ETA",
            "RISK",
            "TOP GROWER (1 min)",
            "",
        ];
        writeln!(
            self.out,
            "{:<36} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6} {:>10} {:>13} {:>4} {:>4} {:>8} {:<8} {:<28}",
            "CONTAINER / CGROUP",
            HEADER[0], HEADER[1], HEADER[2], HEADER[3], HEADER[4], HEADER[5], HEADER[6],
            HEADER[7], HEADER[8], HEADER[9], HEADER[10], HEADER[11], HEADER[12], HEADER[13]
        )?;
        for row in self.rows.values() {
            let s = &row.sample;
            let (on, off) = match (self.redraw, s.risk) {
                (true, Risk::Critical) => ("\x1b[1;31m", "\x1b[0m"),
                (true, Risk::Warning) => ("\x1b[33m", "\x1b[0m"),
                _ => ("", ""),
            };
            writeln!(
                self.out,
                "{on}{:<36} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6} {:>10} {:>13} {:>4} {:>4} {:>8} {:<8} {:<28}{off}",
                shorten(&row.name, 36),
                bytes(s.usage_bytes),
                bytes(s.working_set_bytes),
                bytes(s.unreclaimable_bytes),
                bytes(s.file_bytes),
                opt_bytes(s.limit_bytes),
                format!("{:?}", s.limit_source).to_lowercase(),
                s.limit_pct
                    .map(|p| format!("{p:.1}"))
                    .unwrap_or_else(|| "-".into()),
                s.charge_rate_bytes_per_s
                    .map(|r| bytes(r as u64))
                    .unwrap_or_else(|| "-".into()),
                match (s.reclaim_count, s.reclaim_stall_us) {
                    (Some(n), Some(us)) => format!("{n}/{:.1}", us as f64 / 1000.0),
                    _ => "-".into(),
                },
                s.oom_kills,
                s.restarts,
                eta(s.eta_seconds),
                format!("{:?}", s.risk).to_lowercase(),
                row.top_grower.as_deref().unwrap_or("-"),
            )?;
        }
        writeln!(self.out)?;
        writeln!(
            self.out,
            "{:<36} {:>39}   {:>39}",
            "over the watch", "usage p50 / p90 / p99 / max", "unreclaimable p50 / p90 / p99 / max"
        )?;
        for row in self.rows.values() {
            let summary = row.distributions.summary();
            let cell = |p| percentiles(p, "{} / {} / {} / {}");
            writeln!(
                self.out,
                "{:<36} {:>39}   {:>39}",
                shorten(&row.name, 36),
                cell(summary.usage_bytes),
                cell(summary.unreclaimable_bytes)
            )?;
        }
        Ok(())
    }
}

/// The node in one line: available memory against the eviction threshold, the forecast, and
/// the process the kernel would kill first.
fn node_line(node: &NodeRecord) -> String {
    let forecast = match (node.eta_eviction_seconds, node.eta_oom_seconds) {
        (Some(evict), _) => format!(", eviction forecast in {}", eta(Some(evict))),
        (None, Some(oom)) => format!(", out of memory forecast in {}", eta(Some(oom))),
        (None, None) => String::new(),
    };
    let next = node
        .next_victims
        .first()
        .map(|v| {
            let owner = v
                .identity
                .short()
                .map(|o| format!(", {o}"))
                .unwrap_or_default();
            format!(
                "; next OOM victim {} (pid {}{owner}, oom_score {})",
                v.comm.escape_debug(),
                v.pid,
                v.oom_score
            )
        })
        .unwrap_or_default();
    format!(
        "NODE: {} of {} available (eviction below {}){forecast}{next}",
        bytes(node.mem_available_bytes),
        bytes(node.mem_total_bytes),
        bytes(node.eviction_threshold_bytes)
    )
}

/// p50, p90, p99 and max as byte counts, in `template`'s four `{}`; `-` when none.
fn percentiles(p: Option<Percentiles>, template: &str) -> String {
    let Some(p) = p else {
        return "-".to_owned();
    };
    let mut out = template.to_owned();
    for value in [p.p50, p.p90, p.p99, p.max] {
        out = out.replacen("{}", &bytes(value as u64), 1);
    }
    out
}

/// `45s`, `12m30s`, `2h05m`; `-` for none.
fn eta(seconds: Option<f64>) -> String {
    let Some(s) = seconds else {
        return "-".to_owned();
    };
    let s = s.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// ` (container <short id>, <qos>)` for a record about a container, else nothing.
fn container_detail(record: &Record) -> String {
    let Some(identity) = &record.identity else {
        return String::new();
    };
    let parts: Vec<String> = [
        identity
            .container_id
            .as_deref()
            .map(|id| format!("container {}", crate::pods::inventory::short_id(id))),
        identity.qos.map(|q| format!("{q:?}").to_lowercase()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// The name of what a record is about: `namespace/pod/container` when known, else the path.
fn who(record: &Record) -> String {
    record
        .identity
        .as_ref()
        .and_then(|i| i.short())
        .or_else(|| record.cgroup.as_ref().map(|p| p.display().to_string()))
        .unwrap_or_default()
}

/// "4121 java +180.0MiB/60s": the first process of the line when it grew.
fn top_grower(p: &crate::record::Processes) -> Option<String> {
    let top = p.view.processes.first().filter(|e| e.growth_bytes > 0)?;
    Some(shorten(
        &format!(
            "{} {} +{}/{:.0}s",
            top.pid,
            top.comm,
            bytes(top.growth_bytes.unsigned_abs()),
            top.growth_window_s
        ),
        28,
    ))
}

fn opt_bytes(v: Option<u64>) -> String {
    v.map(bytes).unwrap_or_else(|| "-".into())
}

fn shorten(s: &str, width: usize) -> String {
    let count = s.chars().count();
    if count <= width {
        return s.to_string();
    }
    let tail: String = s.chars().skip(count - (width - 1)).collect();
    format!("…{tail}")
}

impl<W: Write> Sink for LiveSink<W> {
    fn emit(&mut self, record: &Record) -> io::Result<()> {
        if let RecordBody::Sample(sample) = &record.body {
            if let Some(path) = &record.cgroup {
                let row = self.rows.entry(path.clone()).or_insert_with(|| Row {
                    name: String::new(),
                    sample: Sample::default(),
                    distributions: Distributions::default(),
                    top_grower: None,
                });
                row.name = who(record);
                row.sample = sample.clone();
                row.distributions.record(SampleFigures {
                    usage: sample.usage_bytes,
                    working_set: sample.working_set_bytes,
                    unreclaimable: sample.unreclaimable_bytes,
                    charge_rate: sample.charge_rate_bytes_per_s,
                    reclaim_stall_us_per_s: None,
                });
            }
            return Ok(());
        }
        if let RecordBody::Node(node) = &record.body {
            self.node = Some(node.clone());
            return Ok(());
        }
        if let (RecordBody::Processes(p), Some(path)) = (&record.body, &record.cgroup) {
            if let Some(row) = self.rows.get_mut(path) {
                row.top_grower = top_grower(p);
            }
            return Ok(());
        }
        if matches!(record.body, RecordBody::CgroupGone) {
            if let Some(path) = &record.cgroup {
                self.rows.remove(path);
            }
        }
        let Some(line) = Self::event_line(record) else {
            return Ok(());
        };
        // Events are printed the moment they arrive, whatever the redraw state.
        writeln!(self.out, "{line}")?;
        self.out.flush()?;
        if self.events.len() == RECENT_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(line);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.rows.is_empty() && self.node.is_none() {
            return self.out.flush();
        }
        if self.redraw {
            write!(self.out, "\x1b[2J\x1b[H")?;
        }
        self.render_table()?;
        if self.redraw {
            writeln!(self.out)?;
            for line in &self.events {
                writeln!(self.out, "{line}")?;
            }
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{pods::Identity, record::OomKill};

    #[test]
    fn kill_line_names_victim_and_sizes() {
        let record = Record {
            ts: 0.0,
            cgroup: Some(PathBuf::from("/sys/fs/cgroup/memory/x")),
            identity: Some(Identity {
                namespace: Some("shop".into()),
                pod: Some("web-1".into()),
                container: Some("app".into()),
                container_id: Some(
                    "30dcca627cb7105766891a1873188755d1618aac1c2b3a681985850a9ea26f79".into(),
                ),
                qos: Some(crate::pods::classify::Qos::Burstable),
                ..Identity::default()
            }),
            body: RecordBody::OomKill(OomKill {
                victim_cgroup: Some(PathBuf::from("/sys/fs/cgroup/memory/x/y")),
                anon_rss_bytes: Some(64 << 20),
                file_rss_bytes: Some(3 << 20),
                shmem_rss_bytes: Some(0),
                oom_score_adj: Some(0),
                limit_bytes: Some(64 << 20),
                ..OomKill::of(4500, "python3")
            }),
        };
        let mut out = Vec::new();
        LiveSink::new(&mut out, false)
            .emit(&record)
            .expect("write to Vec");
        let text = String::from_utf8(out).expect("utf8");
        assert!(
            text.contains(
                "OOM KILL in shop/web-1/app (container 30dcca627cb7, burstable): pid 4500 (python3)"
            ),
            "{text}"
        );
        assert!(text.contains("anon 64.0MiB"), "{text}");
        assert!(
            text.contains("victim cgroup /sys/fs/cgroup/memory/x/y"),
            "{text}"
        );
    }

    #[test]
    fn table_lists_each_cgroup_once() {
        let mut out = Vec::new();
        let mut sink = LiveSink::new(&mut out, false);
        for usage in [1u64 << 20, 2 << 20] {
            let record = Record {
                ts: 0.0,
                cgroup: Some(PathBuf::from("/cg/a")),
                identity: Some(Identity::default()),
                body: RecordBody::Sample(Sample {
                    usage_bytes: usage,
                    ..Sample::default()
                }),
            };
            sink.emit(&record).expect("emit");
        }
        sink.flush().expect("flush");
        let text = String::from_utf8(out).expect("utf8");
        // Once in the table of figures, once in the table of percentiles.
        assert_eq!(text.matches("/cg/a").count(), 2, "{text}");
        assert!(text.contains("2.0MiB"), "{text}");
    }

    #[test]
    fn the_top_grower_stands_beside_its_container() {
        use crate::processes::{ProcessGrowth, ProcessReading};
        let reading = |anon: u64| ProcessReading {
            pid: 4121,
            comm: "java".into(),
            rss_anon: anon,
            rss_file: 0,
            rss_shmem: 0,
            started_at: None,
        };
        let mut growth = ProcessGrowth::new(60.0);
        growth.observe(0.0, vec![reading(10 << 20)]);
        growth.observe(30.0, vec![reading(190 << 20)]);
        let mut out = Vec::new();
        let mut sink = LiveSink::new(&mut out, false);
        let about = |body| Record {
            ts: 30.0,
            cgroup: Some(PathBuf::from("/cg/a")),
            identity: Some(Identity::default()),
            body,
        };
        sink.emit(&about(RecordBody::Sample(Sample::default())))
            .expect("emit");
        sink.emit(&about(RecordBody::Processes(crate::record::Processes {
            trigger: crate::record::ProcessesTrigger::Periodic,
            view: growth.view(10),
        })))
        .expect("emit");
        sink.flush().expect("flush");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.contains("TOP GROWER"), "{text}");
        assert!(text.contains("4121 java +180.0MiB/30s"), "{text}");
    }

    #[test]
    fn the_node_heads_the_table() {
        let node = NodeRecord {
            mem_total_bytes: 8 << 30,
            mem_available_bytes: 300 << 20,
            eviction_threshold_bytes: 100 << 20,
            eta_eviction_seconds: Some(42.0),
            eta_oom_seconds: Some(60.0),
            psi_some_avg10: None,
            next_victims: vec![crate::node::NextVictim {
                pid: 77,
                comm: "hog\n".into(),
                oom_score: 1300,
                oom_score_adj: 1000,
                rss_bytes: 1 << 30,
                victim_cgroup: None,
                identity: Identity::default(),
            }],
        };
        let mut out = Vec::new();
        let mut sink = LiveSink::new(&mut out, false);
        let record = Record {
            ts: 0.0,
            cgroup: None,
            identity: None,
            body: RecordBody::Node(node),
        };
        sink.emit(&record).expect("emit");
        sink.flush().expect("flush");
        let text = String::from_utf8(out).expect("utf8");
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(
                "NODE: 300.0MiB of 8.0GiB available (eviction below 100.0MiB), eviction \
                 forecast in 42s; next OOM victim hog\\n (pid 77, oom_score 1300)"
            ),
            "{text}"
        );
    }

    #[test]
    fn percentiles_fill_the_template() {
        let p = Percentiles {
            p50: 1024.0,
            p90: 2048.0,
            p99: 3.0 * 1048576.0,
            max: 4.0 * 1048576.0,
        };
        assert_eq!(
            percentiles(Some(p), "{} / {} / {} / {}"),
            "1.0KiB / 2.0KiB / 3.0MiB / 4.0MiB"
        );
        assert_eq!(percentiles(None, "{} {} {} {}"), "-");
    }
}
