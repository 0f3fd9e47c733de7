//! `profiler serve`, the node agent, end to end: its HTTP server's bounds (bad requests, idle
//! clients that must not stop the sampling), SIGTERM and a restart on the same recording, a
//! full disk under the recording, and `--max-disk`.
//!
//! The agent watches every container of a fake kubelet node ([`KubeNode`]: real memory
//! cgroups in the kubelet's layout, and its log trees): its own `--cgroup-root`, so that the
//! containers of other tests on this machine are not watched.

use std::collections::BTreeSet;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use profiler_e2e::{
    sample_value, start_test, Agent, Container, KubeNode, Qos, Response, TempDir, MIB, PATIENCE,
};

/// What each container runs: 1 MiB held, quietly.
const HOLD: [&str; 3] = ["hold", "--mib", "1"];

/// The labels of container `name` of pod `pod` in namespace `shop`.
fn labels<'a>(pod: &'a str, name: &'a str) -> [(&'a str, &'a str); 3] {
    [("namespace", "shop"), ("pod", pod), ("container", name)]
}

/// `profiler serve` over `node`'s containers, sampling every `interval`, then `args`.
#[track_caller]
fn agent_over(node: &KubeNode, record_dir: Option<&Path>, interval: &str, args: &[&str]) -> Agent {
    let flags = node.flags();
    let mut all: Vec<&str> = flags.iter().map(String::as_str).collect();
    all.extend(["--interval", interval]);
    all.extend_from_slice(args);
    match record_dir {
        Some(dir) => Agent::start_in(dir, &all),
        None => Agent::start(&all),
    }
}

/// Waits until `/metrics` has a usage gauge for `container`; returns its value.
#[track_caller]
fn wait_for_usage(agent: &Agent, container: &Container) -> f64 {
    let pod = &container.pod().name;
    agent.wait_metrics(
        &format!("the usage of {pod}/{}", container.name()),
        PATIENCE,
        |m| {
            let mut labels = labels(pod, container.name()).to_vec();
            labels.push(("container_id", container.id()));
            sample_value(m, "profiler_container_memory_usage_bytes", &labels)
        },
    )
}

/// The segment files of a recording directory (by name), with their sizes.
fn segments(dir: &Path) -> Vec<(String, u64)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(String, u64)> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().into_string().ok()?;
            if !(name.starts_with("segment-") && name.ends_with(".rec")) {
                return None;
            }
            // Removed meanwhile: not there.
            let size = entry.metadata().ok()?.len();
            Some((name, size))
        })
        .collect();
    found.sort();
    found
}

/// Bytes of every file in `dir` (the recording and anything beside it).
fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Sends `request` as is and reads the response to its end.
#[track_caller]
fn raw(address: &str, request: &str) -> Response {
    let mut stream = TcpStream::connect(address).unwrap_or_else(|e| panic!("{address}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("a read timeout");
    stream
        .write_all(request.as_bytes())
        .unwrap_or_else(|e| panic!("sending {request:?}: {e}"));
    let mut bytes = Vec::new();
    stream
        .read_to_end(&mut bytes)
        .unwrap_or_else(|e| panic!("reading the answer to {request:?}: {e}"));
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response to {request:?}: {text:?}"));
    Response {
        status,
        headers: lines.map(str::to_owned).collect(),
        body: body.to_owned(),
    }
}

/// Expects `response` to have `status` and a body that says `needle`.
#[track_caller]
fn expect_answer(agent: &Agent, what: &str, response: &Response, status: u16, needle: &str) {
    if response.status != status || !response.body.contains(needle) {
        agent.profiler.fail(format_args!(
            "{what}: expected {status} with a body saying {needle:?}, got {response:?}"
        ));
    }
}

/// Unknown paths, bad `since`, other methods: answered, with a message. Forty clients that
/// connect and send nothing take every connection slot for a while, but neither stop the
/// sampling nor keep `/metrics` away for long, and are closed by the server.
#[test]
fn http_bounds() {
    let _test = start_test!();
    let node = KubeNode::new("agent-http");
    let pod = node.add_pod("shop", "checkout", Qos::Burstable);
    let app = node.start_container(&pod, "app", Some(64 * MIB), &HOLD);
    let agent = agent_over(&node, None, "250ms", &[]);
    wait_for_usage(&agent, &app);

    let missing = agent.get("/no/such/page");
    expect_answer(&agent, "GET /no/such/page", &missing, 404, "/metrics");
    expect_answer(&agent, "GET /no/such/page", &missing, 404, "no/such/page");
    let too_far = agent.get("/report?since=400d");
    expect_answer(&agent, "since=400d", &too_far, 400, "out of range");
    expect_answer(&agent, "since=400d", &too_far, 400, "--retain");
    let banana = agent.get("/report?since=banana");
    expect_answer(
        &agent,
        "since=banana",
        &banana,
        400,
        "`banana` is not a duration",
    );
    let other = agent.get("/report?node=n1");
    expect_answer(&agent, "/report?node=", &other, 400, "unknown parameter");
    // A pod that is not there: nothing recorded of it.
    let nobody = agent.get("/report?pod=no-such-pod");
    expect_answer(
        &agent,
        "/report?pod=no-such-pod",
        &nobody,
        404,
        "of the containers asked for",
    );
    let post = raw(
        &agent.address,
        "POST /metrics HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}",
    );
    expect_answer(&agent, "POST /metrics", &post, 405, "GET");
    if post.header("allow") != Some("GET, HEAD") {
        agent.profiler.fail(format_args!(
            "POST: expected `Allow: GET, HEAD`, got {post:?}"
        ));
    }
    let health = agent.get("/healthz");
    expect_answer(&agent, "GET /healthz", &health, 200, "ok");

    // Forty clients connect and send nothing.
    let recorded_before = dir_bytes(agent.record_dir());
    let connected = Instant::now();
    let idle: Vec<TcpStream> = (0..40)
        .map(|i| {
            let stream = TcpStream::connect(&agent.address)
                .unwrap_or_else(|e| panic!("idle client {i}: {e}"));
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .expect("a read timeout");
            stream
        })
        .collect();
    let (closed, metrics_after, recorded_meanwhile) = thread::scope(|scope| {
        let readers: Vec<_> = idle
            .into_iter()
            .map(|mut stream| {
                scope.spawn(move || {
                    // Whatever the server says (nothing, or an error status), then its end.
                    let mut sink = Vec::new();
                    match stream.read_to_end(&mut sink) {
                        Ok(_) => Ok(connected.elapsed()),
                        Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(connected.elapsed()),
                        Err(e) => Err(format!("{e} after {:?}", connected.elapsed())),
                    }
                })
            })
            .collect();
        // While every slot may be taken: the sampling goes on (the recording grows)...
        thread::sleep(Duration::from_secs(3));
        let recorded_meanwhile = dir_bytes(agent.record_dir()) - recorded_before;
        // ...and /metrics answers, at the latest once the header timeout freed a slot.
        let metrics_after = loop {
            match agent.try_get("/metrics", None) {
                Ok(response) if response.status == 200 => break connected.elapsed(),
                _ if connected.elapsed() > Duration::from_secs(30) => agent
                    .profiler
                    .fail("/metrics did not answer within 30 s of 40 idle clients connecting"),
                _ => thread::sleep(Duration::from_millis(100)),
            }
        };
        let closed: Vec<Result<Duration, String>> = readers
            .into_iter()
            .map(|reader| reader.join().expect("a reader thread"))
            .collect();
        (closed, metrics_after, recorded_meanwhile)
    });
    let mut times: Vec<Duration> = Vec::new();
    for (i, result) in closed.iter().enumerate() {
        match result {
            Ok(at) => times.push(*at),
            Err(e) => agent.profiler.fail(format_args!(
                "idle client {i} was not closed by the server: {e}"
            )),
        }
    }
    times.sort();
    eprintln!(
        "with 40 idle clients: /metrics answered {metrics_after:?} after they connected; the \
         recording grew by {recorded_meanwhile} bytes in their first 3 s; the server closed \
         them after {:?} (first) .. {:?} (last); {} within 1 s",
        times[0],
        times[times.len() - 1],
        times
            .iter()
            .filter(|t| **t < Duration::from_secs(1))
            .count()
    );
    if recorded_meanwhile == 0 {
        agent
            .profiler
            .fail("no sample was recorded while 40 idle clients held the connections");
    }
    if metrics_after > Duration::from_secs(10) {
        agent.profiler.fail(format_args!(
            "/metrics answered only {metrics_after:?} after 40 idle clients connected"
        ));
    }
    if times[times.len() - 1] > Duration::from_secs(10) {
        agent.profiler.fail(format_args!(
            "an idle client stayed connected {:?}; the header timeout is 5 s",
            times[times.len() - 1]
        ));
    }
    // More than the 32 connections served at once are closed as they come.
    if times
        .iter()
        .filter(|t| **t < Duration::from_secs(2))
        .count()
        < 8
    {
        agent.profiler.fail(format_args!(
            "40 idle clients, at most 32 served at once: 8 should be closed at once, saw {times:?}"
        ));
    }
    // The agent is as it was: sampling, answering.
    let round = agent.wait_metrics("a sampling round", PATIENCE, |m| {
        sample_value(m, "profiler_round_duration_seconds", &[])
    });
    if round <= 0.0 {
        agent.profiler.fail("profiler_round_duration_seconds is 0");
    }
    expect_answer(&agent, "GET /healthz", &agent.get("/healthz"), 200, "ok");
}

/// The line of every recording segment in `dir`, newest segment last.
fn last_line_of_newest(dir: &Path) -> (String, String) {
    let (name, _) = segments(dir)
        .pop()
        .unwrap_or_else(|| panic!("no segment in {}", dir.display()));
    let text = fs::read_to_string(dir.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let last = text.lines().last().unwrap_or_default().to_owned();
    if !text.ends_with('\n') {
        panic!("{name} ends in a cut line: {last:?}");
    }
    (name, last)
}

/// SIGTERM: the agent flushes the recording (its last line the `end`) and exits 0 at once; a
/// new agent on the same directory reports both runs.
#[test]
fn sigterm_flushes_and_restart_keeps_the_recording() {
    let _test = start_test!();
    let node = KubeNode::new("agent-restart");
    let dir = TempDir::new("agent-restart-recording");
    let first_pod = node.add_pod("shop", "before", Qos::Burstable);
    let before = node.start_container(&first_pod, "app", Some(64 * MIB), &HOLD);

    let agent = agent_over(&node, Some(dir.path()), "250ms", &[]);
    let started = Instant::now();
    wait_for_usage(&agent, &before);
    thread::sleep(Duration::from_secs(5).saturating_sub(started.elapsed()));
    agent.profiler.terminate();
    let sent = Instant::now();
    let (status, exited) = agent.profiler.wait(Duration::from_secs(5));
    eprintln!(
        "the agent exited {:?} after SIGTERM: {status}",
        exited.saturating_duration_since(sent)
    );
    if !status.success() {
        agent
            .profiler
            .fail(format_args!("expected exit 0 after SIGTERM, got {status}"));
    }
    let (name, last) = last_line_of_newest(dir.path());
    let line: serde_json::Value = serde_json::from_str(&last)
        .unwrap_or_else(|e| agent.profiler.fail(format_args!("{name}: {e}: {last:?}")));
    if line["type"] != "end" || line["reason"] != "signal" {
        agent.profiler.fail(format_args!(
            "the last line of {name} is not the end of a signalled agent: {last}"
        ));
    }
    drop(agent);
    node.remove_container(before);

    // The next agent, on the same recording, with another container.
    let second_pod = node.add_pod("shop", "after", Qos::Burstable);
    let after = node.start_container(&second_pod, "app", Some(64 * MIB), &HOLD);
    let agent = agent_over(&node, Some(dir.path()), "250ms", &[]);
    wait_for_usage(&agent, &after);
    // A few rounds on disk.
    thread::sleep(Duration::from_secs(2));
    let found = segments(dir.path());
    if found.len() < 2 {
        agent.profiler.fail(format_args!(
            "the first agent's segment should be kept beside the second's: {found:?}"
        ));
    }
    let report = agent.get("/report?since=1h");
    let html = report.header("content-type").unwrap_or_default();
    if report.status != 200 || !html.starts_with("text/html") {
        agent.profiler.fail(format_args!(
            "GET /report?since=1h: expected 200 HTML, got {} {html:?}: {}",
            report.status,
            report.body.chars().take(2000).collect::<String>()
        ));
    }
    eprintln!(
        "/report?since=1h: {} bytes of HTML over {} segments",
        report.body.len(),
        found.len()
    );
    for name in ["shop/before/app", "shop/after/app"] {
        if !report.body.contains(name) {
            agent.profiler.fail(format_args!(
                "the report of the last hour does not name {name} (both runs are in it)"
            ));
        }
    }
    if report.body.to_ascii_lowercase().contains("<script") {
        agent
            .profiler
            .fail("the report has a <script>: it should be self-contained and static");
    }
    // One pod's report has its section and not the other's (the node's next victims may
    // still name the other).
    let one = agent.get("/report?since=1h&pod=before");
    if one.status != 200
        || !one.body.contains("<h2>shop/before/app</h2>")
        || one.body.contains("<h2>shop/after/app</h2>")
    {
        agent.profiler.fail(format_args!(
            "GET /report?since=1h&pod=before: expected the report of shop/before alone, got {}: \
             {}",
            one.status,
            one.body.chars().take(2000).collect::<String>()
        ));
    }
}

/// A tmpfs mounted for a test, unmounted when dropped (also when the test fails).
struct Tmpfs {
    at: PathBuf,
}

impl Tmpfs {
    #[track_caller]
    fn mount(at: &Path, size: &str) -> Self {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap_or_else(|e| panic!("running mount: {e}"));
        assert!(
            out.status.success(),
            "mount -t tmpfs on {}: {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Self { at: at.to_owned() }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.at)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy: detach it, so that the directory can go.
            let lazy = Command::new("umount").arg("-l").arg(&self.at).status();
            eprintln!(
                "warning: umount {} failed; umount -l: {lazy:?}",
                self.at.display()
            );
        }
    }
}

/// A disk that fills up stops the recording, not the agent: it says so (log and metrics),
/// samples on, answers, and records again once there is room.
#[test]
fn full_disk_stops_recording_not_the_agent() {
    let _test = start_test!();
    let node = KubeNode::new("agent-full");
    let pod = node.add_pod("shop", "checkout", Qos::Burstable);
    let app = node.start_container(&pod, "app", Some(64 * MIB), &HOLD);
    let dir = TempDir::new("agent-full-recording");
    let _tmpfs = Tmpfs::mount(dir.path(), "512k");
    // Something else takes most of the disk.
    let filler = dir.path().join("filler");
    fs::write(&filler, vec![0u8; 400 << 10]).expect("the filler fits");

    // --max-disk far above the disk: the bound does not save it.
    let agent = agent_over(&node, Some(dir.path()), "100ms", &["--max-disk", "100MiB"]);
    wait_for_usage(&agent, &app);
    let full = Instant::now();
    agent.wait_metrics("the recording stopped", PATIENCE, |m| {
        let active = sample_value(m, "profiler_recording_active", &[])?;
        let errors = sample_value(m, "profiler_recording_write_errors_total", &[])?;
        (active == 0.0 && errors > 0.0).then_some(())
    });
    eprintln!(
        "the recording stopped {:?} after the first sample; on disk: {:?}",
        full.elapsed(),
        segments(dir.path())
    );
    agent
        .profiler
        .wait_for_stderr(" stopped: ", Duration::from_secs(10));
    let stopped = agent.profiler.stderr();
    if !stopped.contains(&dir.path().display().to_string()) {
        agent
            .profiler
            .fail("the log line of the stopped recording does not name the directory");
    }

    // The agent goes on: healthy, sampling, finding new containers.
    expect_answer(&agent, "GET /healthz", &agent.get("/healthz"), 200, "ok");
    let late_pod = node.add_pod("shop", "late", Qos::Burstable);
    let late = node.start_container(&late_pod, "app", Some(64 * MIB), &HOLD);
    wait_for_usage(&agent, &late);
    wait_for_usage(&agent, &app);
    let metrics = agent.metrics();
    if sample_value(&metrics, "profiler_recording_active", &[]) != Some(0.0) {
        agent
            .profiler
            .fail("the recording started again within the minute on a full disk");
    }

    // Room again: a minute after the failure the recording starts again.
    fs::remove_file(&filler).expect("remove the filler");
    let room = Instant::now();
    agent.wait_metrics("the recording active again", Duration::from_secs(90), |m| {
        (sample_value(m, "profiler_recording_active", &[])? == 1.0).then_some(())
    });
    eprintln!(
        "recording again {:?} after the disk had room; on disk: {:?}",
        room.elapsed(),
        segments(dir.path())
    );
    let grown = segments(dir.path());
    thread::sleep(Duration::from_secs(1));
    let now = segments(dir.path());
    if now.iter().map(|(_, s)| s).sum::<u64>() <= grown.iter().map(|(_, s)| s).sum::<u64>() {
        agent.profiler.fail(format_args!(
            "the recording is active but does not grow: {grown:?} then {now:?}"
        ));
    }
    drop(agent);
}

/// `--max-disk 256KiB` with samples every 100 ms of several containers: many segments are
/// made and removed, and the directory never holds more than 256 KiB.
#[test]
fn max_disk_bounds_the_recording() {
    let _test = start_test!();
    let max_disk: u64 = 256 << 10;
    let node = KubeNode::new("agent-max-disk");
    let mut containers = Vec::new();
    for name in ["one", "two", "three", "four"] {
        let pod = node.add_pod("shop", name, Qos::Burstable);
        containers.push(node.start_container(&pod, "app", Some(64 * MIB), &HOLD));
    }
    let agent = agent_over(&node, None, "100ms", &["--max-disk", "256KiB"]);
    for container in &containers {
        wait_for_usage(&agent, container);
    }
    let mut seen = BTreeSet::new();
    let mut most = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let bytes = dir_bytes(agent.record_dir());
        let found = segments(agent.record_dir());
        if bytes > max_disk {
            agent.profiler.fail(format_args!(
                "{bytes} bytes in the recording directory with --max-disk 256KiB: {found:?}"
            ));
        }
        most = most.max(bytes);
        seen.extend(found.into_iter().map(|(name, _)| name));
        thread::sleep(Duration::from_millis(100));
    }
    let left = segments(agent.record_dir());
    let metrics = agent.metrics();
    let gauge = sample_value(&metrics, "profiler_recording_disk_bytes", &[]).unwrap_or(-1.0);
    eprintln!(
        "--max-disk 256KiB for 20 s: {} segments made, {} left ({:?}), at most {most} bytes on \
         disk; profiler_recording_disk_bytes {gauge}",
        seen.len(),
        left.len(),
        left
    );
    let removed = seen
        .iter()
        .filter(|name| !left.iter().any(|(l, _)| l == *name))
        .count();
    if seen.len() < 5 || removed < 2 {
        agent.profiler.fail(format_args!(
            "20 s of samples should rotate and remove several segments: {} made, {removed} \
             removed",
            seen.len()
        ));
    }
    if !(0.0..=max_disk as f64).contains(&gauge)
        || sample_value(&metrics, "profiler_recording_active", &[]) != Some(1.0)
        || sample_value(&metrics, "profiler_recording_write_errors_total", &[]) != Some(0.0)
    {
        agent.profiler.fail(format_args!(
            "expected an active recording within the bound, without errors:\n{metrics}"
        ));
    }
}
