use super::*;

use std::{collections::BTreeMap, sync::Arc};

use super::super::exposition::{render, Format};
use crate::{
    cgroup::CgroupVersion,
    mode::ChargeMode,
    node::{NextVictim, NodeRecord},
    pods::{classify::Qos, LimitSource},
    record::{Exit, LostEvents, OomKill, WatchStart},
};

/// 2026-01-01T00:00:00Z.
const T0: f64 = 1_767_225_600.0;
const MIB: u64 = 1 << 20;

/// One sample of the exposition: its name, labels and value.
#[derive(Debug, PartialEq)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text format (label values here have no escapes).
fn parse(text: &str) -> Vec<Series> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("a sample line: {line:?}"));
            let value: f64 = value.parse().unwrap_or_else(|e| panic!("{e}: {line:?}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("labels end with }}: {line:?}"));
                    let labels = inner
                        .split("\",")
                        .filter(|pair| !pair.is_empty())
                        .map(|pair| {
                            let (k, v) = pair
                                .split_once("=\"")
                                .unwrap_or_else(|| panic!("a label: {pair:?} in {line:?}"));
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name, labels)
                }
                None => (series, BTreeMap::new()),
            };
            Series {
                name: name.to_owned(),
                labels,
                value,
            }
        })
        .collect()
}

/// What `/metrics` would say now.
struct Scrape {
    text: String,
    series: Vec<Series>,
}

impl Scrape {
    fn of(metrics: &AgentMetrics) -> Self {
        let text = render(metrics.registry(), Format::Text).expect("renders");
        let series = parse(&text);
        Self { text, series }
    }

    /// Every series of `name` whose labels include `labels`.
    fn all(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Series> {
        self.series
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The value of the one series of `name` with `labels`; `None` when there is none.
    #[track_caller]
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let all = self.all(name, labels);
        assert!(
            all.len() <= 1,
            "several {name} series match {labels:?}: {all:?}\n{}",
            self.text
        );
        all.first().map(|s| s.value)
    }

    /// The value, which must be there.
    #[track_caller]
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no {name} series with {labels:?} in:\n{}", self.text))
    }

    #[track_caller]
    fn absent(&self, name: &str, labels: &[(&str, &str)]) {
        let all = self.all(name, labels);
        assert!(
            all.is_empty(),
            "expected no {name} series with {labels:?}, saw {all:?}"
        );
    }
}

fn pod_identity(pod: &str, container: &str, id: &str) -> Identity {
    Identity {
        namespace: Some("shop".into()),
        pod: Some(pod.into()),
        pod_uid: Some(format!("uid-{pod}")),
        container: Some(container.into()),
        container_id: Some(id.into()),
        qos: Some(Qos::Burstable),
        runtime: None,
    }
}

fn cgroup_of(id: &str) -> PathBuf {
    PathBuf::from(format!(
        "/sys/fs/cgroup/memory/kubepods/burstable/pod1/{id}"
    ))
}

fn about(ts: f64, identity: &Identity, body: RecordBody) -> Record {
    let id = identity.container_id.as_deref().unwrap_or("none");
    Record {
        ts,
        cgroup: Some(cgroup_of(id)),
        identity: Some(identity.clone()),
        body,
    }
}

fn node_wide(ts: f64, body: RecordBody) -> Record {
    Record {
        ts,
        cgroup: None,
        identity: None,
        body,
    }
}

fn watch_start(ts: f64, identity: &Identity) -> Record {
    about(
        ts,
        identity,
        RecordBody::WatchStart(WatchStart {
            cgroup_id: 42,
            cgroup_version: CgroupVersion::V1,
            limit_bytes: Some(128 * MIB),
            limit_source: LimitSource::Container,
            mode: ChargeMode::Tracepoint,
        }),
    )
}

fn sample(ts: f64, identity: &Identity, sample: Sample) -> Record {
    about(ts, identity, RecordBody::Sample(sample))
}

fn oom_kill(ts: f64, identity: &Identity) -> Record {
    about(
        ts,
        identity,
        RecordBody::OomKill(OomKill {
            limit_bytes: Some(128 * MIB),
            ..OomKill::of(7, "app")
        }),
    )
}

fn exit(ts: f64, identity: &Identity, cause: Cause) -> Record {
    about(
        ts,
        identity,
        RecordBody::Exit(Exit {
            pid: 7,
            comm: "app".into(),
            exit_code: 137,
            signal: Some("SIGKILL".into()),
            cause,
            oom_cgroup: None,
            limit_source: None,
            sender_pid: None,
            sender_comm: None,
            sender_cgroup: None,
            sender_container: None,
            explanation: "test".into(),
        }),
    )
}

fn gone(ts: f64, identity: &Identity) -> Record {
    about(ts, identity, RecordBody::CgroupGone)
}

/// A node record at `ts`: moves the sink's clock without being about a container.
fn node(ts: f64, victims: Vec<NextVictim>, eta_oom: Option<f64>) -> Record {
    node_wide(
        ts,
        RecordBody::Node(NodeRecord {
            mem_total_bytes: 16 << 30,
            mem_available_bytes: 9 << 30,
            eviction_threshold_bytes: 100 * MIB,
            eta_eviction_seconds: Some(3600.5),
            eta_oom_seconds: eta_oom,
            psi_some_avg10: None,
            next_victims: victims,
        }),
    )
}

fn victim(comm: &str, score: u32, identity: Identity) -> NextVictim {
    NextVictim {
        pid: 100 + score,
        comm: comm.into(),
        oom_score: score,
        oom_score_adj: 0,
        rss_bytes: 10 * MIB,
        victim_cgroup: None,
        identity,
    }
}

fn sink(retention_s: u64) -> (MetricsSink, Arc<AgentMetrics>) {
    let metrics = Arc::new(AgentMetrics::new());
    let sink = MetricsSink::new(Arc::clone(&metrics), Duration::from_secs(retention_s));
    (sink, metrics)
}

fn feed(sink: &mut MetricsSink, records: &[Record]) {
    for record in records {
        sink.emit(record)
            .expect("the metrics sink takes every record");
    }
    sink.flush().expect("flush");
}

const ID_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const ID_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const ID_C: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
const ID_D: &str = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";

fn container_labels_of(id: &str) -> [(&'static str, &str); 4] {
    [
        ("namespace", "shop"),
        ("pod", "checkout"),
        ("container", "app"),
        ("container_id", id),
    ]
}

const LINEAGE: [(&str, &str); 3] = [
    ("namespace", "shop"),
    ("pod", "checkout"),
    ("container", "app"),
];

#[test]
fn every_family_of_the_interface_is_exposed_with_its_type() {
    let (mut sink, metrics) = sink(600);
    metrics.set_build("6.18.0", "tracepoint", "v1");
    let app = pod_identity("checkout", "app", ID_A);
    feed(
        &mut sink,
        &[
            watch_start(T0, &app),
            sample(
                T0 + 1.0,
                &app,
                Sample {
                    limit_bytes: Some(128 * MIB),
                    eta_seconds: Some(30.0),
                    eta_low_seconds: Some(20.0),
                    eta_high_seconds: Some(40.0),
                    charged_bytes: Some(1),
                    reclaim_stall_us: Some(1),
                    ..Sample::default()
                },
            ),
            node(
                T0 + 1.0,
                vec![victim("java", 900, app.clone())],
                Some(100.0),
            ),
            node_wide(
                T0 + 1.0,
                RecordBody::LostEvents(LostEvents {
                    count: 1,
                    source: "kmsg",
                }),
            ),
        ],
    );
    sink.round_done(Duration::from_millis(20));
    let scrape = Scrape::of(&metrics);
    let families = [
        ("profiler_container_memory_usage_bytes", "gauge"),
        ("profiler_container_memory_working_set_bytes", "gauge"),
        ("profiler_container_memory_unreclaimable_bytes", "gauge"),
        ("profiler_container_memory_limit_bytes", "gauge"),
        ("profiler_container_oom_eta_seconds", "gauge"),
        ("profiler_container_oom_eta_low_seconds", "gauge"),
        ("profiler_container_oom_eta_high_seconds", "gauge"),
        ("profiler_container_oom_risk", "gauge"),
        ("profiler_container_memory_charged_bytes_total", "counter"),
        (
            "profiler_container_memory_reclaim_stall_seconds_total",
            "counter",
        ),
        ("profiler_container_oom_kills_total", "counter"),
        ("profiler_container_exits_total", "counter"),
        ("profiler_container_restarts_total", "counter"),
        ("profiler_node_memory_total_bytes", "gauge"),
        ("profiler_node_memory_available_bytes", "gauge"),
        ("profiler_node_eviction_threshold_bytes", "gauge"),
        ("profiler_node_eviction_eta_seconds", "gauge"),
        ("profiler_node_oom_eta_seconds", "gauge"),
        ("profiler_node_next_victim_oom_score", "gauge"),
        ("profiler_build_info", "gauge"),
        ("profiler_charge_tracing_armed", "gauge"),
        ("profiler_charge_tracing_arms_total", "counter"),
        ("profiler_watched_containers", "gauge"),
        ("profiler_lost_events_total", "counter"),
        ("profiler_scrape_duration_seconds", "gauge"),
        ("profiler_round_duration_seconds", "gauge"),
        ("profiler_recording_active", "gauge"),
        ("profiler_recording_disk_bytes", "gauge"),
        ("profiler_recording_write_errors_total", "counter"),
    ];
    for (name, kind) in families {
        assert!(
            scrape.text.contains(&format!("\n# TYPE {name} {kind}\n"))
                || scrape.text.starts_with(&format!("# TYPE {name} {kind}\n")),
            "no `# TYPE {name} {kind}` in:\n{}",
            scrape.text
        );
        assert!(
            !scrape.all(name, &[]).is_empty(),
            "no {name} sample in:\n{}",
            scrape.text
        );
    }
    assert_eq!(
        scrape.get(
            "profiler_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("kernel", "6.18.0"),
                ("mode", "tracepoint"),
                ("cgroup_version", "v1"),
            ]
        ),
        1.0
    );
    assert!(!scrape.text.contains("# EOF"), "the text format has no EOF");
}

#[test]
fn a_sample_sets_the_containers_gauges_with_its_labels() {
    let (mut sink, metrics) = sink(600);
    let app = pod_identity("checkout", "app", ID_A);
    feed(&mut sink, &[watch_start(T0, &app)]);
    let scrape = Scrape::of(&metrics);
    assert_eq!(scrape.get("profiler_watched_containers", &[]), 1.0);
    // The lineage's counters are there at 0 from the start.
    assert_eq!(
        scrape.get("profiler_container_oom_kills_total", &LINEAGE),
        0.0
    );
    assert_eq!(
        scrape.get("profiler_container_restarts_total", &LINEAGE),
        0.0
    );
    for cause in ["oom_limit", "oom_node", "signal", "exited"] {
        let mut labels = LINEAGE.to_vec();
        labels.push(("cause", cause));
        assert_eq!(scrape.get("profiler_container_exits_total", &labels), 0.0);
    }
    let lineage = scrape.all("profiler_container_oom_kills_total", &[]);
    assert_eq!(
        lineage[0].labels.keys().collect::<Vec<_>>(),
        ["container", "namespace", "pod"],
        "lineage series have no container_id"
    );

    feed(
        &mut sink,
        &[sample(
            T0 + 1.0,
            &app,
            Sample {
                usage_bytes: 100 * MIB,
                working_set_bytes: 90 * MIB,
                unreclaimable_bytes: 80 * MIB,
                limit_bytes: Some(128 * MIB),
                eta_seconds: Some(42.5),
                eta_low_seconds: Some(30.25),
                eta_high_seconds: Some(61.0),
                risk: Risk::Warning,
                charged_bytes: Some(1000),
                reclaim_stall_us: Some(1_500_000),
                ..Sample::default()
            },
        )],
    );
    let labels = container_labels_of(ID_A);
    let scrape = Scrape::of(&metrics);
    let usage = scrape.all("profiler_container_memory_usage_bytes", &[]);
    assert_eq!(usage.len(), 1);
    assert_eq!(
        usage[0].labels,
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        "exactly namespace, pod, container and container_id"
    );
    for (name, value) in [
        ("profiler_container_memory_usage_bytes", (100 * MIB) as f64),
        (
            "profiler_container_memory_working_set_bytes",
            (90 * MIB) as f64,
        ),
        (
            "profiler_container_memory_unreclaimable_bytes",
            (80 * MIB) as f64,
        ),
        ("profiler_container_memory_limit_bytes", (128 * MIB) as f64),
        ("profiler_container_oom_eta_seconds", 42.5),
        ("profiler_container_oom_eta_low_seconds", 30.25),
        ("profiler_container_oom_eta_high_seconds", 61.0),
        ("profiler_container_oom_risk", 1.0),
        ("profiler_container_memory_charged_bytes_total", 1000.0),
        ("profiler_container_memory_reclaim_stall_seconds_total", 1.5),
    ] {
        assert_eq!(scrape.get(name, &labels), value, "{name}");
    }

    // Counters follow the kernel's totals: only the increase is added.
    feed(
        &mut sink,
        &[sample(
            T0 + 2.0,
            &app,
            Sample {
                usage_bytes: 101 * MIB,
                risk: Risk::Critical,
                charged_bytes: Some(3000),
                reclaim_stall_us: Some(2_000_000),
                ..Sample::default()
            },
        )],
    );
    let scrape = Scrape::of(&metrics);
    assert_eq!(
        scrape.get("profiler_container_memory_usage_bytes", &labels),
        (101 * MIB) as f64
    );
    assert_eq!(scrape.get("profiler_container_oom_risk", &labels), 2.0);
    assert_eq!(
        scrape.get("profiler_container_memory_charged_bytes_total", &labels),
        3000.0
    );
    assert_eq!(
        scrape.get(
            "profiler_container_memory_reclaim_stall_seconds_total",
            &labels
        ),
        2.0
    );
}

#[test]
fn an_eta_or_a_limit_that_is_not_there_is_no_series() {
    let (mut sink, metrics) = sink(600);
    let app = pod_identity("checkout", "app", ID_A);
    let labels = container_labels_of(ID_A);
    let etas = [
        "profiler_container_oom_eta_seconds",
        "profiler_container_oom_eta_low_seconds",
        "profiler_container_oom_eta_high_seconds",
    ];
    // No limit, no kill in sight.
    feed(
        &mut sink,
        &[
            watch_start(T0, &app),
            sample(T0 + 1.0, &app, Sample::default()),
        ],
    );
    let scrape = Scrape::of(&metrics);
    assert_eq!(
        scrape.get("profiler_container_memory_usage_bytes", &labels),
        0.0
    );
    assert_eq!(scrape.get("profiler_container_oom_risk", &labels), 0.0);
    scrape.absent("profiler_container_memory_limit_bytes", &[]);
    for name in etas {
        scrape.absent(name, &[]);
    }
    // Charges not traced: no counter series yet.
    scrape.absent("profiler_container_memory_charged_bytes_total", &[]);

    // A kill in sight, unbounded: no high end.
    feed(
        &mut sink,
        &[sample(
            T0 + 2.0,
            &app,
            Sample {
                limit_bytes: Some(64 * MIB),
                eta_seconds: Some(90.0),
                eta_low_seconds: Some(60.0),
                eta_high_seconds: None,
                ..Sample::default()
            },
        )],
    );
    let scrape = Scrape::of(&metrics);
    assert_eq!(
        scrape.get("profiler_container_memory_limit_bytes", &labels),
        (64 * MIB) as f64
    );
    assert_eq!(scrape.get(etas[0], &labels), 90.0);
    assert_eq!(scrape.get(etas[1], &labels), 60.0);
    scrape.absent(etas[2], &[]);

    // Out of sight again, and the limit lifted: the series go.
    feed(&mut sink, &[sample(T0 + 3.0, &app, Sample::default())]);
    let scrape = Scrape::of(&metrics);
    scrape.absent("profiler_container_memory_limit_bytes", &[]);
    for name in etas {
        scrape.absent(name, &[]);
    }
    assert_eq!(
        scrape.get("profiler_container_memory_usage_bytes", &labels),
        0.0
    );
}

#[test]
fn a_docker_container_has_blank_pod_labels_and_its_name() {
    let (mut sink, metrics) = sink(600);
    let web = Identity {
        container: Some("web".into()),
        container_id: Some(ID_B.into()),
        ..Identity::default()
    };
    feed(
        &mut sink,
        &[
            watch_start(T0, &web),
            sample(
                T0 + 1.0,
                &web,
                Sample {
                    usage_bytes: 5 * MIB,
                    ..Sample::default()
                },
            ),
            oom_kill(T0 + 2.0, &web),
        ],
    );
    let scrape = Scrape::of(&metrics);
    assert_eq!(
        scrape.get(
            "profiler_container_memory_usage_bytes",
            &[
                ("namespace", ""),
                ("pod", ""),
                ("container", "web"),
                ("container_id", ID_B)
            ]
        ),
        (5 * MIB) as f64
    );
    assert_eq!(
        scrape.get(
            "profiler_container_oom_kills_total",
            &[("namespace", ""), ("pod", ""), ("container", "web")]
        ),
        1.0
    );
}

#[test]
fn kills_exits_and_restarts_count_per_lineage_across_a_restart() {
    let (mut sink, metrics) = sink(600);
    let first = pod_identity("checkout", "app", ID_A);
    let second = pod_identity("checkout", "app", ID_B);
    let sidecar = pod_identity("checkout", "sidecar", ID_C);
    feed(
        &mut sink,
        &[
            watch_start(T0, &first),
            watch_start(T0, &sidecar),
            sample(T0 + 1.0, &first, Sample::default()),
            sample(T0 + 1.0, &sidecar, Sample::default()),
            oom_kill(T0 + 5.0, &first),
            exit(T0 + 5.0, &first, Cause::OomLimit),
            gone(T0 + 6.0, &first),
        ],
    );
    let scrape = Scrape::of(&metrics);
    // The gauges of the gone container went at once...
    scrape.absent(
        "profiler_container_memory_usage_bytes",
        &[("container_id", ID_A)],
    );
    scrape.absent("profiler_container_oom_risk", &[("container_id", ID_A)]);
    assert_eq!(scrape.get("profiler_watched_containers", &[]), 1.0);
    // ...its lineage's counters stay.
    assert_eq!(
        scrape.get("profiler_container_oom_kills_total", &LINEAGE),
        1.0
    );

    // Restarted: a new id for the same pod and container name.
    feed(
        &mut sink,
        &[
            watch_start(T0 + 10.0, &second),
            sample(
                T0 + 11.0,
                &second,
                Sample {
                    restarts: 1,
                    oom_kills: 1,
                    ..Sample::default()
                },
            ),
            oom_kill(T0 + 20.0, &second),
            exit(T0 + 20.0, &second, Cause::OomLimit),
            exit(T0 + 21.0, &second, Cause::Signal),
            exit(T0 + 22.0, &sidecar, Cause::Exited),
        ],
    );
    let scrape = Scrape::of(&metrics);
    assert_eq!(
        scrape.get("profiler_container_oom_kills_total", &LINEAGE),
        2.0
    );
    assert_eq!(
        scrape.get("profiler_container_restarts_total", &LINEAGE),
        1.0
    );
    let exits = |cause| {
        let mut labels = LINEAGE.to_vec();
        labels.push(("cause", cause));
        scrape.get("profiler_container_exits_total", &labels)
    };
    assert_eq!(exits("oom_limit"), 2.0);
    assert_eq!(exits("signal"), 1.0);
    assert_eq!(exits("oom_node"), 0.0);
    assert_eq!(exits("exited"), 0.0);
    assert_eq!(
        scrape.get(
            "profiler_container_exits_total",
            &[("container", "sidecar"), ("cause", "exited")]
        ),
        1.0
    );
    assert_eq!(
        scrape.get(
            "profiler_container_oom_kills_total",
            &[("container", "sidecar")]
        ),
        0.0
    );
    assert_eq!(
        scrape.all("profiler_container_oom_kills_total", &[]).len(),
        2,
        "one series per lineage, not per container id"
    );
    assert_eq!(
        scrape.get(
            "profiler_container_memory_usage_bytes",
            &[("container_id", ID_B)]
        ),
        0.0
    );
    assert_eq!(scrape.get("profiler_watched_containers", &[]), 2.0);
}

#[test]
fn a_lineages_counters_go_series_retention_after_its_last_container() {
    let retention = 600.0;
    let (mut sink, metrics) = sink(600);
    let first = pod_identity("checkout", "app", ID_A);
    let second = pod_identity("checkout", "app", ID_B);
    feed(
        &mut sink,
        &[
            watch_start(T0, &first),
            oom_kill(T0 + 5.0, &first),
            gone(T0 + 100.0, &first),
        ],
    );
    // Gone for less than the retention: kept.
    feed(
        &mut sink,
        &[node(T0 + 100.0 + retention - 10.0, vec![], None)],
    );
    let scrape = Scrape::of(&metrics);
    assert_eq!(
        scrape.get("profiler_container_oom_kills_total", &LINEAGE),
        1.0
    );
    // Restarted meanwhile: kept as long as the new container runs, and counting on.
    feed(
        &mut sink,
        &[
            watch_start(T0 + 100.0 + retention - 5.0, &second),
            sample(
                T0 + 100.0 + retention - 4.0,
                &second,
                Sample {
                    restarts: 1,
                    ..Sample::default()
                },
            ),
            node(T0 + 100.0 + 5.0 * retention, vec![], None),
            oom_kill(T0 + 100.0 + 5.0 * retention, &second),
        ],
    );
    let scrape = Scrape::of(&metrics);
    assert_eq!(
        scrape.get("profiler_container_oom_kills_total", &LINEAGE),
        2.0
    );
    assert_eq!(
        scrape.get("profiler_container_restarts_total", &LINEAGE),
        1.0
    );

    let went = T0 + 10_000.0;
    feed(&mut sink, &[gone(went, &second)]);
    feed(&mut sink, &[node(went + retention - 1.0, vec![], None)]);
    let scrape = Scrape::of(&metrics);
    assert_eq!(
        scrape.get("profiler_container_oom_kills_total", &LINEAGE),
        2.0
    );
    let mut labels = LINEAGE.to_vec();
    labels.push(("cause", "oom_limit"));
    assert_eq!(scrape.get("profiler_container_exits_total", &labels), 0.0);

    feed(&mut sink, &[node(went + retention + 1.0, vec![], None)]);
    let scrape = Scrape::of(&metrics);
    for name in [
        "profiler_container_oom_kills_total",
        "profiler_container_restarts_total",
        "profiler_container_exits_total",
    ] {
        scrape.absent(name, &[]);
    }
    assert_eq!(scrape.get("profiler_watched_containers", &[]), 0.0);
    scrape.absent("profiler_container_memory_usage_bytes", &[]);
}

/// A kill and a death race with the runtime removing the container's cgroup: the collector
/// writes them after `cgroup_gone` (a cgroup reported gone in the last round still counts,
/// and a kill waits up to a few seconds for the kernel log). They count for the lineage, but
/// do not bring the container back: it is not watched, and its series still go after the
/// retention.
#[test]
fn a_kill_told_after_cgroup_gone_counts_but_does_not_bring_the_container_back() {
    let retention = 600.0;
    let (mut sink, metrics) = sink(600);
    let app = pod_identity("checkout", "app", ID_A);
    feed(
        &mut sink,
        &[
            watch_start(T0, &app),
            sample(T0 + 1.0, &app, Sample::default()),
            gone(T0 + 2.0, &app),
            oom_kill(T0 + 1.5, &app),
            exit(T0 + 1.6, &app, Cause::OomLimit),
        ],
    );
    let scrape = Scrape::of(&metrics);
    assert_eq!(
        scrape.get("profiler_container_oom_kills_total", &LINEAGE),
        1.0
    );
    let mut labels = LINEAGE.to_vec();
    labels.push(("cause", "oom_limit"));
    assert_eq!(scrape.get("profiler_container_exits_total", &labels), 1.0);
    scrape.absent("profiler_container_memory_usage_bytes", &[]);
    assert_eq!(
        scrape.get("profiler_watched_containers", &[]),
        0.0,
        "the gone container is counted as watched again"
    );
    feed(
        &mut sink,
        &[node(T0 + 2.0 + retention + 60.0, vec![], None)],
    );
    let scrape = Scrape::of(&metrics);
    scrape.absent("profiler_container_oom_kills_total", &[]);
    scrape.absent("profiler_container_exits_total", &[]);
}

/// The collector forgets a lineage ten minutes after its last container went, and counts
/// restarts again from 0 when the pod's container comes back; a longer `--series-retention`
/// keeps the lineage's series. A restart the collector then reports is a restart.
#[test]
fn restarts_after_the_collector_forgot_the_lineage_still_count() {
    let (mut sink, metrics) = sink(3600);
    let a = pod_identity("checkout", "app", ID_A);
    let b = pod_identity("checkout", "app", ID_B);
    let c = pod_identity("checkout", "app", ID_C);
    let d = pod_identity("checkout", "app", ID_D);
    feed(
        &mut sink,
        &[
            watch_start(T0, &a),
            sample(T0 + 1.0, &a, Sample::default()),
            gone(T0 + 10.0, &a),
            watch_start(T0 + 20.0, &b),
            sample(
                T0 + 21.0,
                &b,
                Sample {
                    restarts: 1,
                    ..Sample::default()
                },
            ),
            gone(T0 + 30.0, &b),
        ],
    );
    assert_eq!(
        Scrape::of(&metrics).get("profiler_container_restarts_total", &LINEAGE),
        1.0
    );
    // Twenty minutes later: the collector has forgotten the lineage (its counts start
    // again), the agent's series are still there.
    let later = T0 + 30.0 + 1200.0;
    feed(
        &mut sink,
        &[
            watch_start(later, &c),
            sample(later + 1.0, &c, Sample::default()),
            gone(later + 10.0, &c),
            watch_start(later + 20.0, &d),
            sample(
                later + 21.0,
                &d,
                Sample {
                    restarts: 1,
                    ..Sample::default()
                },
            ),
        ],
    );
    let restarts = Scrape::of(&metrics).get("profiler_container_restarts_total", &LINEAGE);
    assert!(
        restarts >= 2.0,
        "profiler_container_restarts_total is {restarts} after a restart, the collector's \
         count went 1 -> 0 (lineage forgotten) -> 1 (restarted)"
    );
}

#[test]
fn node_lost_events_and_rounds() {
    let (mut sink, metrics) = sink(600);
    let app = pod_identity("checkout", "app", ID_A);
    let system = Identity::default();
    feed(
        &mut sink,
        &[
            node(
                T0,
                vec![
                    victim("java", 1200, app.clone()),
                    victim("sshd", 30, system.clone()),
                ],
                Some(1800.0),
            ),
            node_wide(
                T0,
                RecordBody::LostEvents(LostEvents {
                    count: 3,
                    source: "ring_buffer",
                }),
            ),
            node_wide(
                T0 + 1.0,
                RecordBody::LostEvents(LostEvents {
                    count: 4,
                    source: "ring_buffer",
                }),
            ),
            node_wide(
                T0 + 1.0,
                RecordBody::LostEvents(LostEvents {
                    count: 2,
                    source: "kmsg",
                }),
            ),
        ],
    );
    sink.round_done(Duration::from_millis(250));
    let scrape = Scrape::of(&metrics);
    assert_eq!(
        scrape.get("profiler_node_memory_total_bytes", &[]),
        (16u64 << 30) as f64
    );
    assert_eq!(
        scrape.get("profiler_node_memory_available_bytes", &[]),
        (9u64 << 30) as f64
    );
    assert_eq!(
        scrape.get("profiler_node_eviction_threshold_bytes", &[]),
        (100 * MIB) as f64
    );
    assert_eq!(
        scrape.get("profiler_node_eviction_eta_seconds", &[]),
        3600.5
    );
    assert_eq!(scrape.get("profiler_node_oom_eta_seconds", &[]), 1800.0);
    assert_eq!(
        scrape.get(
            "profiler_node_next_victim_oom_score",
            &[
                ("rank", "1"),
                ("comm", "java"),
                ("namespace", "shop"),
                ("pod", "checkout"),
                ("container", "app")
            ]
        ),
        1200.0
    );
    assert_eq!(
        scrape.get(
            "profiler_node_next_victim_oom_score",
            &[
                ("rank", "2"),
                ("comm", "sshd"),
                ("namespace", ""),
                ("pod", ""),
                ("container", "")
            ]
        ),
        30.0
    );
    assert_eq!(
        scrape.get("profiler_lost_events_total", &[("source", "ring_buffer")]),
        7.0
    );
    assert_eq!(
        scrape.get("profiler_lost_events_total", &[("source", "kmsg")]),
        2.0
    );
    assert_eq!(scrape.get("profiler_round_duration_seconds", &[]), 0.25);
    assert!(metrics
        .since_last_round()
        .is_some_and(|age| age < Duration::from_secs(5)));

    // The next ranking replaces the last; a forecast out of sight is no series.
    feed(
        &mut sink,
        &[node(T0 + 2.0, vec![victim("sshd", 40, system)], None)],
    );
    let scrape = Scrape::of(&metrics);
    let victims = scrape.all("profiler_node_next_victim_oom_score", &[]);
    assert_eq!(victims.len(), 1, "{victims:?}");
    assert_eq!(victims[0].labels.get("rank").map(String::as_str), Some("1"));
    assert_eq!(victims[0].value, 40.0);
    scrape.absent("profiler_node_oom_eta_seconds", &[]);
}
