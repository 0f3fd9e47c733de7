//! The agent as a real Prometheus sees it. Debian's `prometheus` scrapes `profiler serve` every
//! second and evaluates the repository's alert rules (`deploy/prometheus/rules.yml`) while a
//! real docker container leaks to its limit, twice: the forecast alert is pending before the
//! kernel's OOM kill, and the kill counter counts both kills of the restarted container. And
//! `promtool check metrics` accepts the exposition, whose OpenMetrics form carries the same
//! samples.
//!
//! `prometheus` and `promtool` come from Debian's `prometheus` package (`cargo xtask setup`).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use profiler_e2e::{
    find_in_path, free_port, get, sample_value, start_test, Agent, Dockerd, TempDir, IMAGE,
    PATIENCE,
};
use serde_json::Value;

/// The leaking container of the first test (a name no other test's container has: the agent
/// watches the whole memory hierarchy).
const LEAKY: &str = "prom-leaky";
/// Its memory limit (and memory+swap limit: no swap).
const LEAKY_LIMIT: &str = "96m";
/// 1 MiB every 700 ms, about 1.4 MiB/s: the limit is reached some 70 s after the start, later
/// than the forecast needs to warn and soon enough for two kills within the test's few minutes.
const LEAK: [&str; 6] = [
    "workload",
    "leak",
    "--step-mib",
    "1",
    "--interval-ms",
    "700",
];
/// How long one run of the leaking container may take to be OOM-killed.
const KILL_TIMEOUT: Duration = Duration::from_secs(150);
/// How often the test asks Prometheus and docker.
const POLL: Duration = Duration::from_millis(500);
/// How long Prometheus may take to stop after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The repository's root (the tests crate's parent).
fn repository() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// `program` on PATH, or a panic saying how to get it.
#[track_caller]
fn prometheus_tool(program: &str) -> PathBuf {
    find_in_path(program).unwrap_or_else(|| {
        panic!(
            "{program} is not on PATH; `cargo xtask setup` installs it (Debian package prometheus)"
        )
    })
}

/// `text` percent-encoded for a URL's query string.
fn url_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A real Prometheus on a free loopback port, with its configuration, database and log in a
/// temporary directory. Dropping it stops it by its pid (SIGTERM, then SIGKILL) and removes the
/// directory, also when a test fails.
struct Prometheus {
    child: Child,
    /// `127.0.0.1:PORT`.
    address: String,
    /// Holds `prometheus.yml`, `data/` and `prometheus.log`; dropped after the process is gone.
    dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` and evaluating the repository's alert rules, both
    /// every second, and waits until it is ready.
    #[track_caller]
    fn start(target: &str) -> Self {
        let binary = prometheus_tool("prometheus");
        let rules = repository().join("deploy/prometheus/rules.yml");
        assert!(
            rules.is_file(),
            "{} is missing: the alert rules this test evaluates",
            rules.display()
        );
        let dir = TempDir::new("prometheus");
        let config = dir.path().join("prometheus.yml");
        let text = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules:?}\n\
             scrape_configs:\n  - job_name: profiler\n    honor_labels: true\n    \
             static_configs:\n      - targets: [{target:?}]\n",
            rules = rules.display().to_string(),
        );
        fs::write(&config, text).unwrap_or_else(|e| panic!("writing {}: {e}", config.display()));
        let log_path = dir.path().join("prometheus.log");
        let log = File::create(&log_path).unwrap_or_else(|e| panic!("{}: {e}", log_path.display()));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("{}: {e}", log_path.display()));
        let address = format!("127.0.0.1:{}", free_port());
        let mut command = Command::new(&binary);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // SAFETY: prctl is async-signal-safe and touches only the child. A test process killed
        // from outside leaves no Prometheus behind.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let mut prometheus = Self {
            child,
            address,
            dir,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if get(&prometheus.address, "/-/ready", None).is_ok_and(|r| r.status == 200) {
                return prometheus;
            }
            if let Ok(Some(status)) = prometheus.child.try_wait() {
                prometheus.fail(format_args!("Prometheus exited at start ({status})"));
            }
            if Instant::now() > deadline {
                prometheus.fail(format_args!("Prometheus was not ready within {PATIENCE:?}"));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The result of the instant query `promql` (a vector's samples); panics if Prometheus does
    /// not answer or refuses the query.
    #[track_caller]
    fn query(&self, promql: &str) -> Vec<Value> {
        let path = format!("/api/v1/query?query={}", url_encoded(promql));
        let response = get(&self.address, &path, None)
            .unwrap_or_else(|e| self.fail(format_args!("query {promql}: {e}")));
        let json: Value = serde_json::from_str(&response.body).unwrap_or_else(|e| {
            self.fail(format_args!(
                "query {promql}: not JSON ({e}), status {}: {}",
                response.status, response.body
            ))
        });
        if response.status != 200 || json["status"] != "success" {
            self.fail(format_args!(
                "query {promql}: status {}: {json}",
                response.status
            ));
        }
        json["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| self.fail(format_args!("query {promql}: no result in {json}")))
    }

    /// The scrape targets' health and the last lines of Prometheus's log, for failure messages.
    fn diagnosis(&self) -> String {
        let targets = get(&self.address, "/api/v1/targets", None)
            .ok()
            .and_then(|r| serde_json::from_str::<Value>(&r.body).ok())
            .and_then(|json| json["data"]["activeTargets"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|t| {
                format!(
                    "    {} {} last error {:?}\n",
                    t["scrapeUrl"], t["health"], t["lastError"]
                )
            })
            .collect::<String>();
        let log = fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!("  Prometheus's targets:\n{targets}  Prometheus's log (last lines):\n{tail}")
    }

    /// Panics with `message` and [`diagnosis`](Self::diagnosis).
    #[track_caller]
    fn fail(&self, message: impl std::fmt::Display) -> ! {
        panic!("{message}\n{}", self.diagnosis())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // By the pid this test started it with, while it is not reaped (so not reused).
        if let (Ok(None), Ok(pid)) = (self.child.try_wait(), i32::try_from(self.child.id())) {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    // No panic here: a test may already be panicking.
                    eprintln!(
                        "warning: Prometheus pid {} still ran {STOP_TIMEOUT:?} after SIGTERM: SIGKILL",
                        self.child.id()
                    );
                    let _killed = self.child.kill();
                    let _reaped = self.child.wait();
                    break;
                }
                Ok(None) => thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

/// The sample values of an instant query's result.
fn values(result: &[Value]) -> Vec<f64> {
    result
        .iter()
        .map(|sample| {
            sample["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN)
        })
        .collect()
}

/// What the test watches: the daemon, the agent, Prometheus; failures show all three.
struct Scene<'a> {
    dockerd: &'a Dockerd,
    agent: &'a Agent,
    prometheus: &'a Prometheus,
}

impl Scene<'_> {
    /// Panics with `message`, Prometheus's diagnosis and the agent's report.
    #[track_caller]
    fn fail(&self, message: impl std::fmt::Display) -> ! {
        panic!(
            "{message}\n{}\n  the agent: {}",
            self.prometheus.diagnosis(),
            self.agent.profiler.report()
        )
    }

    /// `promql`'s result.
    #[track_caller]
    fn query(&self, promql: &str) -> Vec<Value> {
        self.prometheus.query(promql)
    }

    /// Polls `promql` (every [`POLL`], up to `timeout`) until `done` accepts its result;
    /// returns when it did and the result.
    #[track_caller]
    fn wait_query(
        &self,
        promql: &str,
        timeout: Duration,
        mut done: impl FnMut(&[Value]) -> bool,
    ) -> (Instant, Vec<Value>) {
        let deadline = Instant::now() + timeout;
        loop {
            let result = self.query(promql);
            let at = Instant::now();
            if done(&result) {
                return (at, result);
            }
            if at > deadline {
                self.fail(format_args!(
                    "{promql} did not come as expected within {timeout:?}; the last result: {}",
                    Value::Array(result)
                ));
            }
            thread::sleep(POLL);
        }
    }

    /// What docker says of container `name` now.
    #[track_caller]
    fn docker_state(&self, name: &str) -> DockerState {
        let text = self.dockerd.inspect(
            name,
            "{{.State.Running}} {{.State.OOMKilled}} {{.State.ExitCode}} {{.State.StartedAt}}",
        );
        let fields: Vec<&str> = text.split(' ').collect();
        let [running, oom_killed, exit_code, started_at] = fields[..] else {
            self.fail(format_args!("docker inspect's state of {name}: {text:?}"))
        };
        DockerState {
            running: running == "true",
            oom_killed: oom_killed == "true",
            exit_code: exit_code.parse().unwrap_or(-1),
            started_at: started_at.to_owned(),
        }
    }

    /// Polls (every [`POLL`], up to [`KILL_TIMEOUT`]) until container `name`, running since
    /// `started_at`, has ended; checks it was an OOM kill. On each round `meanwhile` runs
    /// first, with when docker last saw the container alive. Returns when docker was last seen
    /// running it and when it was seen ended: the kill is between the two.
    #[track_caller]
    fn wait_oom_kill(
        &self,
        name: &str,
        started_at: &str,
        mut meanwhile: impl FnMut(),
    ) -> (Instant, Instant) {
        let deadline = Instant::now() + KILL_TIMEOUT;
        let mut last_alive = Instant::now();
        loop {
            meanwhile();
            let state = self.docker_state(name);
            let now = Instant::now();
            if state.started_at != started_at || !state.running {
                if state.started_at != started_at || !state.oom_killed || state.exit_code != 137 {
                    self.fail(format_args!(
                        "container {name} ended, but not by an OOM kill of its run started at \
                         {started_at}: {state:?}"
                    ));
                }
                return (last_alive, now);
            }
            last_alive = now;
            if now > deadline {
                self.fail(format_args!(
                    "container {name} was not OOM-killed within {KILL_TIMEOUT:?}: {state:?}"
                ));
            }
            thread::sleep(POLL);
        }
    }

    /// Follows a run of [`LEAKY`] (started at `started`, docker's `started_at`) to its OOM
    /// kill, asking Prometheus meanwhile for its ContainerOOMKillForecast alert, which must be
    /// pending or firing at least 10 s before the kill. Prints the figures; returns when the
    /// kill was seen.
    #[track_caller]
    fn alerted_before_the_kill(&self, run: &str, started: Instant, started_at: &str) -> Instant {
        let forecast =
            format!(r#"ALERTS{{alertname="ContainerOOMKillForecast",container="{LEAKY}"}}"#);
        let mut alert_seen: Option<Instant> = None;
        let mut firing_seen: Option<Instant> = None;
        let (last_alive, killed) = self.wait_oom_kill(LEAKY, started_at, || {
            for sample in self.query(&forecast) {
                let state = &sample["metric"]["alertstate"];
                if state == "pending" || state == "firing" {
                    alert_seen.get_or_insert_with(Instant::now);
                }
                if state == "firing" {
                    firing_seen.get_or_insert_with(Instant::now);
                }
            }
        });
        let since_start = |at: Instant| at.duration_since(started).as_secs_f64();
        let Some(alert_seen) = alert_seen.filter(|&at| at <= last_alive) else {
            self.fail(format_args!(
                "{run}: {LEAKY} was OOM-killed {:.1} s after its start, but Prometheus had no \
                 {forecast} pending or firing before (first seen: {:?} s after the start)",
                since_start(killed),
                alert_seen.map(since_start)
            ))
        };
        let lead = last_alive.duration_since(alert_seen);
        eprintln!(
            "{run}: {LEAKY} OOM-killed {:.1} s after its start; ContainerOOMKillForecast \
             pending {:.1} s after the start, at least {:.1} s before the kill (the kill was \
             seen within {:.1} s); firing before the kill: {}",
            since_start(killed),
            since_start(alert_seen),
            lead.as_secs_f64(),
            killed.duration_since(last_alive).as_secs_f64(),
            firing_seen.map_or("no (its `for` is 1m)".to_owned(), |at| format!(
                "yes, {:.1} s before",
                last_alive.saturating_duration_since(at).as_secs_f64()
            )),
        );
        if lead < Duration::from_secs(10) {
            self.fail(format_args!(
                "{run}: ContainerOOMKillForecast came only {lead:?} before the kill of a \
                 container that leaked for {:.1} s",
                since_start(killed)
            ));
        }
        killed
    }
}

/// The part of `docker inspect`'s `State` the test reads.
#[derive(Debug)]
struct DockerState {
    running: bool,
    oom_killed: bool,
    exit_code: i64,
    started_at: String,
}

#[test]
fn prometheus_counts_kills_and_alerts_before_the_kill() {
    let _test = start_test!();
    let dockerd = Dockerd::start("prometheus");
    let agent = Agent::start_over_docker(&dockerd, &["--interval", "1s"]);
    let prometheus = Prometheus::start(&agent.address);
    let scene = Scene {
        dockerd: &dockerd,
        agent: &agent,
        prometheus: &prometheus,
    };
    scene.wait_query(r#"up{job="profiler"}"#, PATIENCE, |r| values(r) == [1.0]);

    let mut run = vec![
        "run",
        "-d",
        "--name",
        LEAKY,
        "-m",
        LEAKY_LIMIT,
        "--memory-swap",
        LEAKY_LIMIT,
        IMAGE,
    ];
    run.extend(LEAK);
    let id = dockerd.docker_ok(&run);
    let started = Instant::now();
    let first_run = scene.docker_state(LEAKY);

    // The lineage's kill counter is there at 0 before the first kill (what lets
    // ContainerOOMKilled see the first kill as an increase), with docker's labels: no namespace
    // and no pod (empty labels are no labels to Prometheus), and no container_id.
    let kills =
        format!(r#"profiler_container_oom_kills_total{{namespace="",pod="",container="{LEAKY}"}}"#);
    let (_, zero) = scene.wait_query(&kills, PATIENCE, |r| values(r) == [0.0]);
    let labels = zero[0]["metric"].as_object().map(|m| {
        let mut names: Vec<&str> = m.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    });
    if labels != Some(vec!["__name__", "container", "instance", "job"]) {
        scene.fail(format_args!(
            "expected the kill counter of {LEAKY} labelled by container (and Prometheus's \
             instance and job) only: {}",
            zero[0]
        ));
    }

    // The forecast alert, pending (or already firing) while the container still runs.
    let killed = scene.alerted_before_the_kill("first run", started, &first_run.started_at);

    // The kill, counted.
    let (counted, _) = scene.wait_query(&kills, PATIENCE, |r| values(r) == [1.0]);
    let first_latency = counted.duration_since(killed);
    eprintln!(
        "first kill: profiler_container_oom_kills_total 1 in Prometheus {:.1} s after docker \
         was seen to have ended the container",
        first_latency.as_secs_f64()
    );
    let oom_killed_alert = format!(
        r#"ALERTS{{alertname="ContainerOOMKilled",alertstate="firing",container="{LEAKY}"}}"#
    );
    let (fired, _) = scene.wait_query(&oom_killed_alert, PATIENCE, |r| !r.is_empty());
    eprintln!(
        "ContainerOOMKilled firing {:.1} s after the kill was seen",
        fired.duration_since(killed).as_secs_f64()
    );

    // The alert goes with the killed container's series.
    let forecast = format!(r#"ALERTS{{alertname="ContainerOOMKillForecast",container="{LEAKY}"}}"#);
    scene.wait_query(&forecast, PATIENCE, <[Value]>::is_empty);

    // The same container started again: it leaks to a second kill, alerted again before, and
    // counted in the same series.
    dockerd.docker_ok(&["start", LEAKY]);
    let restarted = Instant::now();
    let second_run = scene.docker_state(LEAKY);
    let same_id = dockerd.inspect(LEAKY, "{{.Id}}");
    assert_eq!(same_id, id, "docker start runs the same container");
    let killed_again =
        scene.alerted_before_the_kill("second run", restarted, &second_run.started_at);
    let (counted_again, _) = scene.wait_query(&kills, PATIENCE, |r| values(r) == [2.0]);
    let second_latency = counted_again.duration_since(killed_again);
    eprintln!(
        "second kill: profiler_container_oom_kills_total 2 in Prometheus {:.1} s after docker \
         was seen to have ended the container",
        second_latency.as_secs_f64()
    );
    let exits =
        format!(r#"profiler_container_exits_total{{container="{LEAKY}",cause="oom_limit"}}"#);
    scene.wait_query(&exits, PATIENCE, |r| values(r) == [2.0]);
    let restarts = scene.query(&format!(
        r#"profiler_container_restarts_total{{container="{LEAKY}"}}"#
    ));
    eprintln!(
        "profiler_container_restarts_total of {LEAKY}: {:?}",
        values(&restarts)
    );

    // The queries select by the container's name: another name matches nothing.
    for promql in [&kills, &oom_killed_alert] {
        let other = promql.replace(LEAKY, "prom-leaky-other");
        let result = scene.query(&other);
        if !result.is_empty() {
            scene.fail(format_args!("{other} matched: {}", Value::Array(result)));
        }
    }
}

/// Runs `command` with `input` on its stdin.
#[track_caller]
fn run_with_input(command: &mut Command, input: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("feeding {command:?}: {e}"));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {command:?}: {e}"))
}

/// `promtool check metrics` over `exposition`: its exit status and output. promtool 2.42 prints
/// the lint problems on stderr and exits 3 when there are any, 1 when it cannot parse.
#[track_caller]
fn promtool_check_metrics(exposition: &str) -> Output {
    run_with_input(
        Command::new(prometheus_tool("promtool")).args(["check", "metrics"]),
        exposition,
    )
}

/// Everything promtool said.
fn said(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The samples of a text or OpenMetrics exposition: `name{label="value",...}` (the labels
/// sorted) → value. Comments and `# EOF` are skipped, as are timestamps and exemplars.
fn samples(exposition: &str) -> Result<BTreeMap<String, f64>, String> {
    let mut found = BTreeMap::new();
    for line in exposition.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or(format!("no value: {line:?}"))?;
        let (name, mut rest) = line.split_at(name_end);
        let mut labels = Vec::new();
        if let Some(mut inside) = rest.strip_prefix('{') {
            loop {
                inside = inside.trim_start_matches([',', ' ']);
                if let Some(after) = inside.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let (label, after) = inside
                    .split_once("=\"")
                    .ok_or(format!("a label without a quoted value: {line:?}"))?;
                let mut value = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((i, '"')) => break i,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c)) => value.push(c),
                            None => return Err(format!("an unfinished escape: {line:?}")),
                        },
                        Some((_, c)) => value.push(c),
                        None => return Err(format!("an unfinished label value: {line:?}")),
                    }
                };
                labels.push(format!("{}={value:?}", label.trim()));
                inside = &after[end + 1..];
            }
        }
        let value = rest
            .split_whitespace()
            .next()
            .ok_or(format!("no value: {line:?}"))?;
        let value: f64 = value
            .parse()
            .map_err(|e| format!("value {value:?} of {line:?}: {e}"))?;
        labels.sort();
        let key = format!("{name}{{{}}}", labels.join(","));
        if found.insert(key, value).is_some() {
            return Err(format!("a second sample of the same series: {line:?}"));
        }
    }
    Ok(found)
}

/// Whether two sample values are the same (NaN is NaN).
fn same_value(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

#[test]
fn promtool_accepts_the_metrics() {
    let _test = start_test!();
    // promtool does fail here on a name against the conventions (so a pass below means
    // something).
    let bad = promtool_check_metrics("# HELP x_bytes x\n# TYPE x_bytes counter\nx_bytes 1\n");
    assert!(
        !bad.status.success(),
        "promtool accepted a counter without _total: {}",
        said(&bad)
    );

    let dockerd = Dockerd::start("promtool");
    // A steady container at a limit, and one that leaks slowly toward its limit (no kill
    // within the test) so that the forecast's families have series too.
    let steady = dockerd.docker_ok(&[
        "run",
        "-d",
        "--name",
        "prom-steady",
        "-m",
        "64m",
        IMAGE,
        "workload",
        "hold",
        "--mib",
        "16",
    ]);
    dockerd.docker_ok(&[
        "run",
        "-d",
        "--name",
        "prom-slow",
        "-m",
        "512m",
        "--memory-swap",
        "512m",
        IMAGE,
        "workload",
        "leak",
        "--step-mib",
        "1",
        "--interval-ms",
        "1000",
    ]);
    let agent = Agent::start_over_docker(&dockerd, &["--interval", "500ms"]);
    let steady_labels = [
        ("namespace", ""),
        ("pod", ""),
        ("container", "prom-steady"),
        ("container_id", steady.as_str()),
    ];
    agent.wait_metrics("the limit of prom-steady", PATIENCE, |body| {
        sample_value(
            body,
            "profiler_container_memory_limit_bytes",
            &steady_labels,
        )
        .filter(|&limit| limit == 64.0 * 1024.0 * 1024.0)
    });
    agent.wait_metrics("the OOM forecast of prom-slow", PATIENCE, |body| {
        sample_value(
            body,
            "profiler_container_oom_eta_seconds",
            &[("container", "prom-slow")],
        )
    });

    // The text format passes promtool's parser and linter.
    let text = agent.get("/metrics");
    let content_type = text.header("Content-Type").unwrap_or_default();
    if text.status != 200
        || !content_type.starts_with("text/plain")
        || !content_type.contains("version=0.0.4")
    {
        agent.profiler.fail(format_args!(
            "GET /metrics: expected 200 and text/plain; version=0.0.4, got {} {content_type:?}",
            text.status
        ));
    }
    let checked = promtool_check_metrics(&text.body);
    if !checked.status.success() {
        agent.profiler.fail(format_args!(
            "promtool check metrics failed ({}):\n{}\n  the exposition:\n{}",
            checked.status,
            said(&checked),
            text.body
        ));
    }
    eprintln!(
        "promtool check metrics: passed, {} lines, {} families",
        text.body.lines().count(),
        text.body.matches("# TYPE ").count()
    );

    // OpenMetrics when asked for, with the same samples: two text scrapes around an OpenMetrics
    // one, until the text ones agree (a sampling round between them may change values).
    let accept = "application/openmetrics-text; version=1.0.0";
    let mut attempts = 0;
    loop {
        attempts += 1;
        let before = agent.metrics();
        let open = agent
            .try_get("/metrics", Some(accept))
            .unwrap_or_else(|e| agent.profiler.fail(format_args!("GET /metrics: {e}")));
        let after = agent.metrics();
        let content_type = open.header("Content-Type").unwrap_or_default();
        if open.status != 200
            || !content_type.starts_with("application/openmetrics-text")
            || !content_type.contains("version=1.0.0")
        {
            agent.profiler.fail(format_args!(
                "GET /metrics with Accept: {accept}: expected 200 and OpenMetrics 1.0.0, got {} \
                 {content_type:?}",
                open.status
            ));
        }
        if !open.body.ends_with("# EOF\n") {
            agent.profiler.fail(format_args!(
                "the OpenMetrics exposition does not end with `# EOF`:\n{}",
                open.body
            ));
        }
        if before.contains("# EOF") {
            agent.profiler.fail(format_args!(
                "the text exposition holds OpenMetrics' `# EOF`:\n{before}"
            ));
        }
        let parse = |body: &str, what: &str| {
            samples(body).unwrap_or_else(|e| {
                agent
                    .profiler
                    .fail(format_args!("the {what} exposition: {e}\n{body}"))
            })
        };
        let (before, open_samples, after) = (
            parse(&before, "text"),
            parse(&open.body, "OpenMetrics"),
            parse(&after, "text"),
        );
        let stable_series = before.keys().eq(after.keys());
        if !stable_series && attempts < 10 {
            continue;
        }
        if !stable_series || !before.keys().eq(open_samples.keys()) {
            let only_text: Vec<&String> = before
                .keys()
                .filter(|k| !open_samples.contains_key(*k))
                .collect();
            let only_open: Vec<&String> = open_samples
                .keys()
                .filter(|k| !before.contains_key(*k))
                .collect();
            agent.profiler.fail(format_args!(
                "the text and OpenMetrics expositions carry different series (the text series \
                 stable across the two scrapes: {stable_series}); only in the text: \
                 {only_text:?}; only in OpenMetrics: {only_open:?}"
            ));
        }
        let stable: Vec<(&String, f64)> = before
            .iter()
            .filter(|(k, v)| after.get(*k).is_some_and(|a| same_value(*a, **v)))
            .map(|(k, v)| (k, *v))
            .collect();
        let differ: Vec<String> = stable
            .iter()
            .filter(|(k, v)| !open_samples.get(*k).is_some_and(|o| same_value(*o, *v)))
            .map(|(k, v)| format!("{k}: text {v}, OpenMetrics {:?}", open_samples.get(*k)))
            .collect();
        if !differ.is_empty() {
            agent.profiler.fail(format_args!(
                "the text and OpenMetrics expositions disagree on values that stayed put:\n{}",
                differ.join("\n")
            ));
        }
        eprintln!(
            "OpenMetrics: the same {} series as the text format (attempt {attempts}), {} of \
             them with the same value in both",
            before.len(),
            stable.len()
        );
        assert!(
            before
                .keys()
                .any(|k| k.starts_with("profiler_container_oom_kills_total{")),
            "the kill counter is among the samples compared"
        );
        break;
    }
}
