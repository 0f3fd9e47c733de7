//! The agent's Prometheus metrics: the families (registered once, with the official
//! `prometheus-client` crate), and [`MetricsSink`], which keeps them up to date from the
//! collector's records.
//!
//! Per container, gauges carry `namespace`, `pod`, `container` and `container_id` (blank where
//! unknown, as the kubelet's cAdvisor endpoint has them, so queries join with
//! kube-state-metrics). Kills, exits and restarts are counted per `namespace`, `pod` and
//! `container` (the lineage): a restarted container keeps counting on the same series.
use std::{
    collections::HashMap,
    io,
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder},
    metrics::{counter::Counter, family::Family, gauge::Gauge, MetricType},
    registry::Registry,
};

use crate::{
    deaths::Cause,
    forecast::risk::Risk,
    output::Sink,
    pods::Identity,
    record::{Record, RecordBody, Sample},
};

/// A gauge of a float value.
type FloatGauge = Gauge<f64, AtomicU64>;

/// The labels of one running container's series.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ContainerLabels {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod.
    pub pod: String,
    /// The container's name.
    pub container: String,
    /// The container's id.
    pub container_id: String,
}

/// The labels of a container across its restarts.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct LineageLabels {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod.
    pub pod: String,
    /// The container's name (its id when no name is known).
    pub container: String,
}

/// A lineage's exits, by cause.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExitLabels {
    namespace: String,
    pod: String,
    container: String,
    cause: &'static str,
}

/// One of the node's next OOM victims.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VictimLabels {
    rank: String,
    comm: String,
    namespace: String,
    pod: String,
    container: String,
}

/// What the agent is.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    kernel: String,
    mode: String,
    cgroup_version: String,
}

/// A runtime setting's risk in a container.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RiskLabels {
    namespace: String,
    pod: String,
    container: String,
    container_id: String,
    kind: &'static str,
    language_runtime: &'static str,
}

/// Why the charge path is attached or not.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Where lost records were lost.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

/// Every cause an exit can have: each lineage has a series of each from its start, so the
/// first exit of a kind is an increase Prometheus sees.
const CAUSES: [Cause; 4] = [
    Cause::OomLimit,
    Cause::OomNode,
    Cause::Signal,
    Cause::Exited,
];

fn cause_name(cause: Cause) -> &'static str {
    match cause {
        Cause::OomLimit => "oom_limit",
        Cause::OomNode => "oom_node",
        Cause::Signal => "signal",
        Cause::Exited => "exited",
    }
}

/// The metric families of the agent, registered in one registry.
#[derive(Debug)]
pub(crate) struct AgentMetrics {
    registry: Registry,
    usage: Family<ContainerLabels, Gauge>,
    working_set: Family<ContainerLabels, Gauge>,
    unreclaimable: Family<ContainerLabels, Gauge>,
    limit: Family<ContainerLabels, Gauge>,
    eta: Family<ContainerLabels, FloatGauge>,
    eta_low: Family<ContainerLabels, FloatGauge>,
    eta_high: Family<ContainerLabels, FloatGauge>,
    risk: Family<ContainerLabels, Gauge>,
    reach: Family<ContainerLabels, Gauge>,
    swap: Family<ContainerLabels, Gauge>,
    swap_max: Family<ContainerLabels, Gauge>,
    config_risk: Family<RiskLabels, Gauge>,
    charged: Family<ContainerLabels, Counter>,
    stall: Family<ContainerLabels, Counter<f64, AtomicU64>>,
    oom_kills: Family<LineageLabels, Counter>,
    exits: Family<ExitLabels, Counter>,
    restarts: Family<LineageLabels, Counter>,
    node_total: Gauge,
    node_available: Gauge,
    node_threshold: Gauge,
    node_eviction_eta: Family<Vec<(String, String)>, FloatGauge>,
    node_oom_eta: Family<Vec<(String, String)>, FloatGauge>,
    next_victims: Family<VictimLabels, Gauge>,
    build: Family<BuildLabels, Gauge>,
    /// 1 while the charge path's programs are attached.
    pub charge_armed: Gauge,
    /// Times the charge path was attached.
    pub charge_arms: Counter,
    charge_why: Family<ReasonLabels, Gauge>,
    watched: Gauge,
    lost: Family<SourceLabels, Counter>,
    /// How long the previous `/metrics` took to render.
    pub scrape_seconds: FloatGauge,
    round_seconds: FloatGauge,
    /// 1 while the rolling recording is written.
    pub recording_active: Gauge,
    /// Bytes the rolling recording takes on disk.
    pub recording_bytes: Gauge,
    /// Writes of the recording that failed (a full disk, ...).
    pub recording_errors: Counter,
    /// When the last sampling round ended (a monotonic clock's milliseconds; 0: none yet).
    last_round_ms: AtomicU64,
    clock: std::time::Instant,
}

impl AgentMetrics {
    /// Every family, registered, with no series yet but the agent's own.
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("profiler");
        macro_rules! family {
            ($name:literal, $help:literal) => {{
                let family = Family::default();
                registry.register($name, $help, Announced(Clone::clone(&family)));
                family
            }};
        }
        macro_rules! single {
            ($name:literal, $help:literal) => {{
                let metric = Default::default();
                registry.register($name, $help, Clone::clone(&metric));
                metric
            }};
        }
        Self {
            usage: family!(
                "container_memory_usage_bytes",
                "Memory charged to the container's cgroup (v1 memory.usage_in_bytes, v2 memory.current)"
            ),
            working_set: family!(
                "container_memory_working_set_bytes",
                "Usage minus inactive page cache, as the kubelet computes it"
            ),
            unreclaimable: family!(
                "container_memory_unreclaimable_bytes",
                "Memory reclaim cannot free (anon + shmem + kernel memory): what the forecast follows"
            ),
            limit: family!(
                "container_memory_limit_bytes",
                "The memory limit that applies to the container (its own or an ancestor's); absent when unlimited"
            ),
            eta: family!(
                "container_oom_eta_seconds",
                "Forecast seconds until the kernel OOM-kills the container; absent when no kill is in sight"
            ),
            eta_low: family!(
                "container_oom_eta_low_seconds",
                "Earliest plausible time of the forecast OOM kill, seconds"
            ),
            eta_high: family!(
                "container_oom_eta_high_seconds",
                "Latest plausible time of the forecast OOM kill, seconds; absent when unbounded"
            ),
            risk: family!(
                "container_oom_risk",
                "Warning level: 0 ok, 1 warning (kill forecast within --warn), 2 critical (within --critical)"
            ),
            reach: family!(
                "container_memory_reach_bytes",
                "The most the container's unreclaimable memory can reach while its runtimes (JVM, Node.js, Go, .NET) stay under their heap ceilings; absent when nothing bounds it"
            ),
            swap: family!(
                "container_memory_swap_bytes",
                "Swap the container's cgroup uses; absent where the kernel does not account swap"
            ),
            swap_max: family!(
                "container_memory_swap_max_bytes",
                "The most the container may swap (its swap limit within the node's free swap); absent when it cannot swap"
            ),
            config_risk: family!(
                "container_config_risk",
                "1 for each runtime setting that is wrong for the container's limit (kind: ceiling_above_limit, no_ceiling, gc_off; language_runtime: jvm, node, go, dotnet)"
            ),
            charged: family!(
                "container_memory_charged_bytes",
                "Bytes charged to the container's cgroup, from the kernel's charge path (while it is traced)"
            ),
            stall: family!(
                "container_memory_reclaim_stall_seconds",
                "Time the container's tasks spent in memory-cgroup reclaim"
            ),
            oom_kills: family!(
                "container_oom_kills",
                "OOM kills in the container, across its restarts"
            ),
            exits: family!(
                "container_exits",
                "Deaths of the container's processes by a signal, and exits of its last process, by cause (oom_limit, oom_node, signal, exited)"
            ),
            restarts: family!(
                "container_restarts",
                "Restarts of the container (a new container id for the same pod and container name)"
            ),
            node_total: single!("node_memory_total_bytes", "The node's memory (MemTotal)"),
            node_available: single!(
                "node_memory_available_bytes",
                "The node's available memory (MemAvailable)"
            ),
            node_threshold: single!(
                "node_eviction_threshold_bytes",
                "The kubelet's hard eviction threshold on memory.available"
            ),
            node_eviction_eta: family!(
                "node_eviction_eta_seconds",
                "Forecast seconds until memory.available reaches the eviction threshold; absent when not in sight"
            ),
            node_oom_eta: family!(
                "node_oom_eta_seconds",
                "Forecast seconds until the node runs out of memory; absent when not in sight"
            ),
            next_victims: family!(
                "node_next_victim_oom_score",
                "oom_score of the processes the kernel would kill first in a node OOM, by rank"
            ),
            build: family!(
                "build_info",
                "The agent's version, the kernel, the charge-path mode and the cgroup version; always 1"
            ),
            charge_armed: single!(
                "charge_tracing_armed",
                "1 while the charge-path programs are attached"
            ),
            charge_arms: single!(
                "charge_tracing_arms",
                "Times the charge-path programs were attached"
            ),
            charge_why: family!(
                "charge_tracing_reason",
                "Why the charge path is attached or not, 1 for the current reason (near_limit, forecast, growth, pressure, node; idle, attach_failed)"
            ),
            watched: single!("watched_containers", "Containers watched"),
            lost: family!(
                "lost_events",
                "Kernel records lost (ring_buffer: the ring was full; kmsg: the kernel log was overwritten; charge_stacks: stack samples whose ring was full)"
            ),
            scrape_seconds: single!(
                "scrape_duration_seconds",
                "Time the previous /metrics took to render"
            ),
            round_seconds: single!(
                "round_duration_seconds",
                "Time the last sampling round took"
            ),
            recording_active: single!(
                "recording_active",
                "1 while the rolling recording is written, 0 when it stopped (e.g. a full disk)"
            ),
            recording_bytes: single!(
                "recording_disk_bytes",
                "Bytes the rolling recording takes on disk"
            ),
            recording_errors: single!(
                "recording_write_errors",
                "Writes of the rolling recording that failed"
            ),
            registry,
            last_round_ms: AtomicU64::new(0),
            clock: std::time::Instant::now(),
        }
    }

    /// How long ago the last sampling round ended; `None` before the first.
    pub(crate) fn since_last_round(&self) -> Option<Duration> {
        let at = self.last_round_ms.load(Ordering::Relaxed);
        (at > 0).then(|| {
            self.clock
                .elapsed()
                .saturating_sub(Duration::from_millis(at))
        })
    }

    fn round_ended(&self, took: Duration) {
        self.round_seconds.set(took.as_secs_f64());
        let at = self.clock.elapsed().as_millis().max(1);
        self.last_round_ms
            .store(u64::try_from(at).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The registry, for rendering.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Says what the agent is (`profiler_build_info`), and starts the lost-record counters
    /// at 0: the first loss is then an increase Prometheus sees.
    pub(crate) fn set_build(&self, kernel: &str, mode: &str, cgroup_version: &str) {
        for source in ["ring_buffer", "kmsg", "charge_stacks"] {
            self.lost.get_or_create(&SourceLabels { source }).inc_by(0);
        }
        self.build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                kernel: kernel.to_owned(),
                mode: mode.to_owned(),
                cgroup_version: cgroup_version.to_owned(),
            })
            .set(1);
    }
}

/// A family whose `# HELP` and `# TYPE` are written even while it has no series (the
/// crate leaves empty families out): a scraper, a dashboard or a test then sees every metric
/// the agent has, also those that are there only at times (an ETA, lost records).
#[derive(Debug)]
struct Announced<M>(M);

impl<M: EncodeMetric> EncodeMetric for Announced<M> {
    fn encode(&self, encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        false
    }
}

/// Labels of a record's container. `container` is its name, or its id where no name is
/// known (a container outside Kubernetes whose runtime's state is not readable): the same
/// value the lineage counters carry, so the two join.
fn container_labels(identity: &Identity) -> ContainerLabels {
    ContainerLabels {
        namespace: identity.namespace.clone().unwrap_or_default(),
        pod: identity.pod.clone().unwrap_or_default(),
        container: identity
            .container
            .clone()
            .or_else(|| identity.container_id.clone())
            .unwrap_or_default(),
        container_id: identity.container_id.clone().unwrap_or_default(),
    }
}

/// Labels of a record's container across restarts; `None` for a cgroup that names no
/// container at all.
fn lineage_labels(identity: &Identity) -> Option<LineageLabels> {
    let container = identity
        .container
        .clone()
        .or_else(|| identity.container_id.clone())?;
    Some(LineageLabels {
        namespace: identity.namespace.clone().unwrap_or_default(),
        pod: identity.pod.clone().unwrap_or_default(),
        container,
    })
}

/// What the sink remembers of a running container.
#[derive(Debug)]
struct Instance {
    labels: ContainerLabels,
    lineage: Option<LineageLabels>,
    charged_bytes: u64,
    stall_us: u64,
    /// Its `profiler_container_config_risk` series.
    risks: Vec<RiskLabels>,
}

/// What the sink remembers of a lineage.
#[derive(Debug, Default)]
struct Lineage {
    /// Running containers of the lineage.
    live: usize,
    /// When the last one went (Unix seconds).
    gone_at: f64,
    /// Restarts counted so far, as the collector counts them (since the watch started).
    restarts: u64,
}

/// Keeps [`AgentMetrics`] up to date from the collector's records.
pub(crate) struct MetricsSink {
    metrics: std::sync::Arc<AgentMetrics>,
    instances: HashMap<PathBuf, Instance>,
    lineages: HashMap<LineageLabels, Lineage>,
    retention_s: f64,
    /// The newest record's time.
    now: f64,
}

impl MetricsSink {
    /// A sink updating `metrics`; series of gone lineages are dropped `retention` after the
    /// last of their containers went.
    pub(crate) fn new(metrics: std::sync::Arc<AgentMetrics>, retention: Duration) -> Self {
        Self {
            metrics,
            instances: HashMap::new(),
            lineages: HashMap::new(),
            retention_s: retention.as_secs_f64(),
            now: 0.0,
        }
    }

    fn instance(&mut self, cgroup: &PathBuf, identity: &Identity) -> &mut Instance {
        if !self.instances.contains_key(cgroup) {
            let labels = container_labels(identity);
            let lineage = lineage_labels(identity);
            if let Some(lineage) = &lineage {
                let entry = self.lineages.entry(lineage.clone()).or_default();
                entry.live += 1;
                // Series at 0 from the start: the first kill is an increase, not a new series.
                let m = &self.metrics;
                m.oom_kills.get_or_create(lineage).inc_by(0);
                m.restarts.get_or_create(lineage).inc_by(0);
                for cause in CAUSES {
                    m.exits
                        .get_or_create(&exit_labels(lineage, cause))
                        .inc_by(0);
                }
            }
            self.instances.insert(
                cgroup.clone(),
                Instance {
                    labels,
                    lineage,
                    charged_bytes: 0,
                    stall_us: 0,
                    risks: Vec::new(),
                },
            );
            self.metrics.watched.set(self.instances.len() as i64);
        }
        // Just inserted when missing.
        self.instances
            .get_mut(cgroup)
            .unwrap_or_else(|| unreachable!("inserted above"))
    }

    /// The lineage a record is about, known to the sink (its counters exist, from 0): when
    /// none of its containers is watched any more, it expires `retention` after now.
    fn lineage_of(&mut self, identity: &Identity) -> Option<LineageLabels> {
        let lineage = lineage_labels(identity)?;
        if !self.lineages.contains_key(&lineage) {
            let m = &self.metrics;
            m.oom_kills.get_or_create(&lineage).inc_by(0);
            m.restarts.get_or_create(&lineage).inc_by(0);
            for cause in CAUSES {
                m.exits
                    .get_or_create(&exit_labels(&lineage, cause))
                    .inc_by(0);
            }
            self.lineages.insert(
                lineage.clone(),
                Lineage {
                    gone_at: self.now,
                    ..Lineage::default()
                },
            );
        }
        Some(lineage)
    }

    fn sample(&mut self, cgroup: &PathBuf, identity: &Identity, s: &Sample) {
        let metrics = std::sync::Arc::clone(&self.metrics);
        let instance = self.instance(cgroup, identity);
        let labels = &instance.labels;
        let m = &*metrics;
        m.usage.get_or_create(labels).set(gauge(s.usage_bytes));
        m.working_set
            .get_or_create(labels)
            .set(gauge(s.working_set_bytes));
        m.unreclaimable
            .get_or_create(labels)
            .set(gauge(s.unreclaimable_bytes));
        set_or_remove(&m.limit, labels, s.limit_bytes.map(gauge));
        set_or_remove(&m.reach, labels, s.reach_bytes.map(gauge));
        set_or_remove(&m.swap, labels, s.swap_bytes.map(gauge));
        set_or_remove(&m.swap_max, labels, s.swap_max_bytes.map(gauge));
        set_or_remove(&m.eta, labels, s.eta_seconds);
        set_or_remove(&m.eta_low, labels, s.eta_low_seconds);
        set_or_remove(&m.eta_high, labels, s.eta_high_seconds);
        m.risk.get_or_create(labels).set(match s.risk {
            Risk::Ok => 0,
            Risk::Warning => 1,
            Risk::Critical => 2,
        });
        if let Some(charged) = s.charged_bytes {
            let counter = m.charged.get_or_create(labels);
            // The kernel's count only grows while the cgroup is watched.
            counter.inc_by(charged.saturating_sub(instance.charged_bytes));
            instance.charged_bytes = instance.charged_bytes.max(charged);
        }
        if let Some(stall) = s.reclaim_stall_us {
            let delta = stall.saturating_sub(instance.stall_us);
            m.stall.get_or_create(labels).inc_by(delta as f64 / 1e6);
            instance.stall_us = instance.stall_us.max(stall);
        }
        if let Some(lineage) = instance.lineage.clone() {
            let entry = self.lineages.entry(lineage.clone()).or_default();
            // The collector counts a lineage's restarts from its start, and from 0 again
            // when it forgot the lineage (gone for ten minutes): a count below the last is
            // a new count.
            if s.restarts < entry.restarts {
                entry.restarts = 0;
            }
            if s.restarts > entry.restarts {
                m.restarts
                    .get_or_create(&lineage)
                    .inc_by(s.restarts - entry.restarts);
                entry.restarts = s.restarts;
            }
        }
    }

    fn gone(&mut self, cgroup: &PathBuf) {
        let Some(instance) = self.instances.remove(cgroup) else {
            return;
        };
        let m = &self.metrics;
        let labels = &instance.labels;
        m.usage.remove(labels);
        m.working_set.remove(labels);
        m.unreclaimable.remove(labels);
        m.limit.remove(labels);
        m.eta.remove(labels);
        m.eta_low.remove(labels);
        m.eta_high.remove(labels);
        m.risk.remove(labels);
        m.charged.remove(labels);
        m.stall.remove(labels);
        m.reach.remove(labels);
        m.swap.remove(labels);
        m.swap_max.remove(labels);
        for risk in &instance.risks {
            m.config_risk.remove(risk);
        }
        m.watched.set(self.instances.len() as i64);
        if let Some(lineage) = instance.lineage {
            if let Some(entry) = self.lineages.get_mut(&lineage) {
                entry.live = entry.live.saturating_sub(1);
                entry.gone_at = self.now;
            }
        }
    }

    /// Drops the counters of lineages gone longer than the retention.
    fn expire(&mut self) {
        let cutoff = self.now - self.retention_s;
        let m = &self.metrics;
        self.lineages.retain(|lineage, entry| {
            if entry.live > 0 || entry.gone_at > cutoff {
                return true;
            }
            m.oom_kills.remove(lineage);
            m.restarts.remove(lineage);
            for cause in CAUSES {
                m.exits.remove(&exit_labels(lineage, cause));
            }
            false
        });
    }

    fn node(&mut self, node: &crate::node::NodeRecord) {
        let m = &self.metrics;
        m.node_total.set(gauge(node.mem_total_bytes));
        m.node_available.set(gauge(node.mem_available_bytes));
        m.node_threshold.set(gauge(node.eviction_threshold_bytes));
        set_or_remove(&m.node_eviction_eta, &Vec::new(), node.eta_eviction_seconds);
        set_or_remove(&m.node_oom_eta, &Vec::new(), node.eta_oom_seconds);
        m.next_victims.clear();
        for (rank, victim) in node.next_victims.iter().enumerate() {
            let id = &victim.identity;
            m.next_victims
                .get_or_create(&VictimLabels {
                    rank: (rank + 1).to_string(),
                    comm: victim.comm.clone(),
                    namespace: id.namespace.clone().unwrap_or_default(),
                    pod: id.pod.clone().unwrap_or_default(),
                    container: id.container.clone().unwrap_or_default(),
                })
                .set(i64::from(victim.oom_score));
        }
    }
}

fn exit_labels(lineage: &LineageLabels, cause: Cause) -> ExitLabels {
    ExitLabels {
        namespace: lineage.namespace.clone(),
        pod: lineage.pod.clone(),
        container: lineage.container.clone(),
        cause: cause_name(cause),
    }
}

/// Bytes as a gauge's value (past `i64::MAX` is not a memory size).
fn gauge(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// A series that is there only while there is a value.
fn set_or_remove<L, V, A>(family: &Family<L, Gauge<V, A>>, labels: &L, value: Option<V>)
where
    L: Clone + std::hash::Hash + Eq,
    Gauge<V, A>: Default,
    A: prometheus_client::metrics::gauge::Atomic<V>,
{
    match value {
        Some(v) => {
            family.get_or_create(labels).set(v);
        }
        None => {
            family.remove(labels);
        }
    }
}

impl Sink for MetricsSink {
    fn emit(&mut self, record: &Record) -> io::Result<()> {
        self.now = self.now.max(record.ts);
        let about = record.cgroup.as_ref().zip(record.identity.as_ref());
        match (&record.body, about) {
            (RecordBody::WatchStart(_), Some((cgroup, identity))) => {
                self.instance(cgroup, identity);
            }
            (RecordBody::Sample(sample), Some((cgroup, identity))) => {
                self.sample(cgroup, identity, sample)
            }
            // Kills and exits may be told after their cgroup went (a kill waits for the
            // kernel log's word; the last exit comes with the removal): they count on the
            // lineage, and bring no container back.
            (RecordBody::OomKill(_), Some((_, identity))) => {
                if let Some(lineage) = self.lineage_of(identity) {
                    self.metrics.oom_kills.get_or_create(&lineage).inc();
                }
            }
            (RecordBody::Exit(exit), Some((_, identity))) => {
                if let Some(lineage) = self.lineage_of(identity) {
                    self.metrics
                        .exits
                        .get_or_create(&exit_labels(&lineage, exit.cause))
                        .inc();
                }
            }
            (RecordBody::CgroupGone, Some((cgroup, _))) => self.gone(cgroup),
            (RecordBody::ConfigRisk(risk), Some((cgroup, identity))) => {
                let metrics = std::sync::Arc::clone(&self.metrics);
                let instance = self.instance(cgroup, identity);
                let l = &instance.labels;
                let labels = RiskLabels {
                    namespace: l.namespace.clone(),
                    pod: l.pod.clone(),
                    container: l.container.clone(),
                    container_id: l.container_id.clone(),
                    kind: risk.kind.as_str(),
                    language_runtime: risk.runtime.as_str(),
                };
                metrics.config_risk.get_or_create(&labels).set(1);
                if !instance.risks.contains(&labels) {
                    instance.risks.push(labels);
                }
            }
            (RecordBody::LostEvents(lost), _) => {
                self.metrics
                    .lost
                    .get_or_create(&SourceLabels {
                        source: lost.source,
                    })
                    .inc_by(lost.count);
            }
            (RecordBody::Node(node), _) => self.node(node),
            (RecordBody::ChargeTracing(change), _) => {
                self.metrics.charge_armed.set(i64::from(change.armed));
                self.metrics.charge_why.clear();
                self.metrics
                    .charge_why
                    .get_or_create(&ReasonLabels {
                        reason: change.why.as_str(),
                    })
                    .set(1);
                if change.armed {
                    self.metrics.charge_arms.inc();
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.expire();
        Ok(())
    }

    fn round_done(&mut self, took: Duration) {
        self.metrics.round_ended(took);
    }
}

#[cfg(test)]
mod tests;
