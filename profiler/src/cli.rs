//! Command-line arguments, parsed once and validated into typed options.
use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::mode::ModeRequest;

/// Memory-pressure profiler and OOM-kill watcher for Linux containers.
#[derive(Debug, Parser)]
#[command(name = "profiler", version, about)]
pub struct Cli {
    /// More log output on stderr (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch memory cgroups live: usage, working set, charge rate, reclaim, OOM kills.
    Watch(Box<WatchArgs>),
    /// The node agent: watch every container, serve Prometheus metrics, reports and health
    /// over HTTP, and keep a rolling recording.
    Serve(Box<ServeArgs>),
    /// Show what this kernel offers and which mode the profiler would use.
    Doctor(DoctorArgs),
    /// Turn a recording (`watch --record FILE`) into an HTML report with PNG charts.
    Report(ReportArgs),
    /// Attach programs that return at once on the charge-path hooks (the overhead floor for
    /// `cargo xtask bench overhead`).
    #[command(hide = true)]
    AttachFloor(FloorArgs),
}

/// `profiler watch`.
#[derive(Debug, Args)]
#[command(
    after_help = "With no --pod, --container or --cgroup, every container on the node is \
watched (--all). Pods and containers are found from the cgroup tree and the kubelet's log \
directories: no API server or kubeconfig is needed."
)]
pub struct WatchArgs {
    /// A Kubernetes pod to watch, by name: each of its containers, followed across restarts.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["cgroups", "all"])]
    pub pod: Option<String>,
    /// The pod's namespace (needed when several namespaces have a pod of that name).
    #[arg(long, short = 'n', value_name = "NS", requires = "pod")]
    pub namespace: Option<String>,
    /// With --pod: only this container of the pod. Alone: a container by id (or a unique id
    /// prefix) or by name, with or without Kubernetes (containerd, CRI-O, docker, podman).
    #[arg(long, value_name = "ID-OR-NAME", conflicts_with_all = ["cgroups", "all"])]
    pub container: Option<String>,
    /// Every container on the node (the default when nothing else is named).
    #[arg(long, conflicts_with = "cgroups")]
    pub all: bool,
    /// A memory cgroup directory to watch, e.g. /sys/fs/cgroup/memory/kubepods/pod1 (v1) or
    /// /sys/fs/cgroup/system.slice/foo.service (v2). Repeat to watch several.
    #[arg(long = "cgroup", value_name = "PATH")]
    pub cgroups: Vec<PathBuf>,
    /// Where the node's cgroups, the kubelet's logs and the runtimes' state are.
    #[command(flatten)]
    pub node: NodeArgs,
    /// Fail at once if the pod has no running container, instead of waiting for one.
    #[arg(long)]
    pub no_wait: bool,
    /// Stop after this long (default: until Ctrl-C or every cgroup is gone).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// One JSON object per line on stdout instead of the live view.
    #[arg(long)]
    pub json: bool,
    /// Also write everything to FILE as it goes (a recording for `profiler report`); a
    /// `kill -9` loses at most the last interval.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Attach the charge path's programs (the costly ones, run on every page charged on the
    /// node) only while some container needs them: near its limit, an OOM kill forecast
    /// within 3 × --warn, growing fast, or under memory pressure; detached a minute after
    /// none does. `charge_tracing` lines say when and why.
    #[arg(long)]
    pub adaptive: bool,
    /// Sample the stacks of the charges of every watched container (one sample per
    /// --stack-interval charged on a CPU): `charge_stacks` lines, named down to the function,
    /// and a flame graph in the report. Needs frame pointers in the code to see deep stacks.
    #[arg(long)]
    pub stacks: bool,
    /// How often to sample, when to warn, and how to observe the kernel.
    #[command(flatten)]
    pub collect: CollectArgs,
}

/// Which containers `serve` samples charge stacks of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Stacks {
    /// Only while a container is at risk (its warning level is warning or critical).
    AtRisk,
    /// Every container, all the time.
    Always,
    /// None.
    Off,
}

/// When the charge path's programs are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ChargeTracing {
    /// Only while some container needs them (near its limit, a kill forecast within 3 ×
    /// --warn, fast growth, memory pressure), detached a minute after none does.
    Adaptive,
    /// All the time, as `watch` does.
    Always,
}

/// `profiler serve`.
#[derive(Debug, Args)]
#[command(
    after_help = "Every container on the node is watched, as by `watch --all`. \
GET /metrics (Prometheus text, or OpenMetrics when asked), GET /report?since=1h (the HTML \
report of the rolling recording), GET /healthz."
)]
pub struct ServeArgs {
    /// Address and port to serve HTTP on. The default answers only on this host; in a pod,
    /// give the pod's address (the DaemonSet in deploy/ does). An IPv6 address may come with
    /// or without brackets (`[fd00::1]:9746`, `fd00::1:9746`).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9746",
          value_parser = parse_listen)]
    pub listen: std::net::SocketAddr,
    /// Directory of the rolling recording (made if missing; what an earlier agent recorded
    /// there is kept and reported).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/profiler")]
    pub record_dir: PathBuf,
    /// Recording older than this is removed (e.g. 24h, 90m, 7d).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub retain: Duration,
    /// The recording never takes more than this on disk, oldest segments removed first
    /// (e.g. 1GiB, 500Mi).
    #[arg(long, value_name = "BYTES", default_value = "1GiB", value_parser = parse_bytes)]
    pub max_disk: u64,
    /// How long the series of a container that is gone stay in /metrics: its OOM kill, exit
    /// and restart counters (keyed by namespace, pod and container, so they carry over the
    /// container's restarts).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub series_retention: Duration,
    /// Stop after this long (default: until SIGTERM or Ctrl-C).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// When the charge path's programs (the costly ones, run on every page charged on the
    /// node) are attached: only while some container needs them, or always.
    #[arg(long, value_enum, default_value_t = ChargeTracing::Adaptive)]
    pub charge_tracing: ChargeTracing,
    /// Which containers have the stacks of their charges sampled (`charge_stacks` in the
    /// recording, a flame graph in /report).
    #[arg(long, value_enum, default_value_t = Stacks::AtRisk)]
    pub stacks: Stacks,
    /// Where the node's cgroups, the kubelet's logs and the runtimes' state are.
    #[command(flatten)]
    pub node: NodeArgs,
    /// How often to sample, when to warn, and how to observe the kernel.
    #[command(flatten)]
    pub collect: CollectArgs,
}

/// Where the node keeps what names cgroups: shared by `watch` and `serve`.
#[derive(Debug, Args, Clone)]
pub struct NodeArgs {
    /// Where containers' cgroups are looked for [default: /sys/fs/cgroup on cgroup v2, the
    /// memory hierarchy (/sys/fs/cgroup/memory) on v1].
    #[arg(long, value_name = "DIR")]
    pub cgroup_root: Option<PathBuf>,
    /// The kubelet's pod log directory, which names pods, namespaces and containers.
    #[arg(long, value_name = "DIR", default_value = "/var/log/pods")]
    pub pod_logs: PathBuf,
    /// The kubelet's container log links, which name container ids.
    #[arg(long, value_name = "DIR", default_value = "/var/log/containers")]
    pub container_logs: PathBuf,
    /// The root below which container runtimes keep their state (var/lib/docker,
    /// var/lib/containers, var/lib/nerdctl), which names containers run without Kubernetes.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub runtime_state: PathBuf,
}

/// Sampling, forecasting and kernel options: shared by `watch` and `serve`.
#[derive(Debug, Args, Clone)]
pub struct CollectArgs {
    /// Time between samples (e.g. 1s, 250ms, 2m).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Warn when a container's OOM kill is forecast within this long.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub warn: Duration,
    /// Critical when a container's OOM kill is forecast within this long.
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
    pub critical: Duration,
    /// The kubelet's hard eviction threshold on the node's available memory (its
    /// `--eviction-hard memory.available<...>`, 100Mi by default): `node` lines forecast when
    /// it is reached. A quantity (100Mi, 1Gi, 500M) or a share (5%).
    #[arg(long, value_name = "QUANTITY", default_value = "100Mi")]
    pub eviction_threshold: crate::node::EvictionThreshold,
    /// How many cgroups can be watched at once (containers past it are refused, with a
    /// warning each). The kernel keeps about 150 bytes per cgroup on every CPU: 1024 on a
    /// 64-CPU node is 9 MiB of kernel memory.
    #[arg(long, value_name = "N", default_value_t = profiler_common::MAX_SLOTS,
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_cgroups: u32,
    /// Run this shell command whenever a container's warning level changes (warning,
    /// critical, cleared), with the details in PROFILER_* environment variables.
    #[arg(long, value_name = "CMD")]
    pub on_warning: Option<String>,
    /// With stacks sampled: the mean bytes a container charges on one CPU between two
    /// samples (randomised around it, so periodic allocators are not aliased). Smaller sees
    /// more and costs more.
    #[arg(long, value_name = "BYTES", default_value = "512KiB", value_parser = parse_stack_interval)]
    pub stack_interval: u64,
    /// How to observe the charge path.
    #[arg(long, value_enum, default_value_t = ModeRequest::Auto)]
    pub mode: ModeRequest,
    /// Kernel BTF to read enum values and struct offsets from (tests point it elsewhere to
    /// check the fallback of kernels without BTF).
    #[arg(long, hide = true, default_value = crate::btf::VMLINUX_BTF)]
    pub btf: PathBuf,
    /// For tests only (the ring-overflow e2e test and the vm-test `ringloss` scenario): do not
    /// read the kernel's records (`EVENTS` ring) for this long from the start of the watch, so
    /// a storm of deaths fills the ring and the kernel counts what it drops; the reader then
    /// goes on as usual.
    #[arg(long, hide = true, value_name = "DURATION", value_parser = parse_duration)]
    pub debug_stall_events: Option<Duration>,
}

/// `profiler report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The recording, written by `profiler watch --record FILE`.
    #[arg(value_name = "FILE")]
    pub recording: PathBuf,
    /// Where to write report.html and the charts (made if missing; files of an earlier
    /// report there are replaced). Default: FILE's name with `-report`, in the current
    /// directory.
    #[arg(long, short = 'o', value_name = "DIR")]
    pub output: Option<PathBuf>,
}

/// `profiler doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Where a running `profiler serve` answers: its charge-path state is shown too.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9746")]
    pub agent: std::net::SocketAddr,
}

/// `profiler attach-floor`.
#[derive(Debug, Args)]
pub struct FloorArgs {
    /// Detach after this long (default: until Ctrl-C).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

/// Parses `ADDR:PORT`; an IPv6 address may lack its brackets (the port is the part after the
/// last colon), as the Kubernetes downward API's `$(POD_IP):9746` gives it on IPv6 clusters.
pub fn parse_listen(text: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(address) = text.parse() {
        return Ok(address);
    }
    let bad = || format!("`{text}` is not ADDR:PORT: use e.g. 127.0.0.1:9746 or [::1]:9746");
    let (ip, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let ip: std::net::IpAddr = ip.parse().map_err(|_| bad())?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    Ok(std::net::SocketAddr::new(ip, port))
}

/// Parses a size: `1GiB`, `500Mi`, `2G`, or bytes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    match crate::node::quantity_bytes(text) {
        Some(0) => Err(format!("`{text}` must be more than zero")),
        Some(bytes) => Ok(bytes),
        None => Err(format!(
            "`{text}` is not a size: use e.g. 1GiB, 500MiB, 2G or a number of bytes"
        )),
    }
}

/// Parses a stack interval: a size from one page (4KiB) to 1GiB.
pub fn parse_stack_interval(text: &str) -> Result<u64, String> {
    let bytes = parse_bytes(text)?;
    if !(4096..=1 << 30).contains(&bytes) {
        return Err(format!(
            "`{text}` is out of range: give a size from 4KiB to 1GiB"
        ));
    }
    Ok(bytes)
}

/// Parses `250ms`, `1s`, `1.5s`, `2m`, `1h`, `7d`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: use e.g. 250ms, 1s, 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}`: use ms, s, m, h or d"
            ))
        }
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!("`{text}` must be longer than zero"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 weeks").is_err());
    }

    #[test]
    fn listen_addresses() {
        let v4: std::net::SocketAddr = "10.0.0.7:9746".parse().expect("address");
        assert_eq!(parse_listen("10.0.0.7:9746"), Ok(v4));
        let v6: std::net::SocketAddr = "[fd00::1]:9746".parse().expect("address");
        assert_eq!(parse_listen("[fd00::1]:9746"), Ok(v6));
        assert_eq!(parse_listen("fd00::1:9746"), Ok(v6));
        assert!(parse_listen("fd00::1").is_err());
        assert!(parse_listen("localhost:9746").is_err());
        assert!(parse_listen("10.0.0.7:99999").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("500Mi"), Ok(500 << 20));
        assert_eq!(parse_bytes("2G"), Ok(2_000_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("-1Gi").is_err());
        assert!(parse_bytes("99999999999Ti").is_err());
    }

    #[test]
    fn stack_intervals_are_a_page_to_a_gibibyte() {
        assert_eq!(parse_stack_interval("512KiB"), Ok(512 << 10));
        assert_eq!(parse_stack_interval("4KiB"), Ok(4096));
        assert_eq!(parse_stack_interval("1GiB"), Ok(1 << 30));
        for bad in ["1KiB", "2GiB", "0", "often"] {
            let e = parse_stack_interval(bad).expect_err(bad);
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn the_events_stall_is_a_hidden_watch_option() {
        use clap::CommandFactory;
        let cli = Cli::try_parse_from(["profiler", "watch", "--debug-stall-events", "5s"])
            .expect("parses");
        let Command::Watch(watch) = cli.command else {
            panic!("not watch: {:?}", cli.command);
        };
        assert_eq!(
            watch.collect.debug_stall_events,
            Some(Duration::from_secs(5))
        );
        let mut command = Cli::command();
        let help = command
            .find_subcommand_mut("watch")
            .expect("watch")
            .render_help()
            .to_string();
        assert!(!help.contains("stall"), "{help}");
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
