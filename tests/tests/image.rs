//! The container image that `cargo xtask image` writes, run as the node agent runs: `profiler
//! serve` in a container of a real docker daemon, with only the capabilities and mounts a
//! least-privilege DaemonSet gives it, sees the containers beside it and stops cleanly.
//!
//! What each privilege is for, found by taking it away (kernel 6.18, cgroup v1, tracepoint mode):
//! - CAP_BPF and CAP_PERFMON load and attach the kernel programs. Docker before 23.0 cannot name
//!   them ("invalid CapAdd: unknown capability"), so there CAP_SYS_ADMIN stands for both.
//! - CAP_SYSLOG opens `/dev/kmsg` (CAP_SYS_ADMIN does not: EPERM), which must be a device of the
//!   container (`--device`): a bind mount of it is refused by the devices cgroup.
//! - The host's `/sys/fs/cgroup`: the container's own view holds only its own cgroup, and then no
//!   container is watched. `--cgroupns host` is the default on cgroup v1, not on v2.
//! - `--pid host`: the next OOM victims are ranked among the host's processes.
//! - The runtime's state, read-only: it names the containers.
//! - Not needed: CAP_DAC_READ_SEARCH (what is read is root's or readable by all),
//!   CAP_SYS_RESOURCE (the kernel charges BPF memory to the memcg, not to RLIMIT_MEMLOCK), and
//!   mounts of tracefs or `/sys/kernel/btf` (raw tracepoints need no tracefs; the container's
//!   own sysfs has the BTF).

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use profiler_e2e::{free_port, get, sample_value, start_test, Dockerd, IMAGE, MIB, PATIENCE};

/// The agent's container.
const AGENT: &str = "profiler-agent";
/// The container it must see.
const NEIGHBOUR: &str = "neighbour";
/// Where the container's runtime state is mounted in the agent (`--runtime-state`).
const STATE: &str = "/host";

/// Capability numbers (linux/capability.h).
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYSLOG: u32 = 34;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The image archive: `$PROFILER_IMAGE`, which `cargo xtask test` builds and sets.
#[track_caller]
fn image_archive() -> PathBuf {
    let Some(path) = std::env::var_os("PROFILER_IMAGE") else {
        panic!(
            "PROFILER_IMAGE is not set. Run the tests with `cargo xtask test`, which builds the \
             image and sets it; or build it with `cargo xtask image` and set PROFILER_IMAGE to \
             the archive it prints (target/image/profiler-<version>.tar)"
        )
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "PROFILER_IMAGE={} does not exist: build it with `cargo xtask image`",
        path.display()
    );
    path
}

/// The capabilities the agent gets (`--cap-add` names) and their effective mask. CAP_BPF and
/// CAP_PERFMON where the daemon knows them (Docker 23.0 and later), else CAP_SYS_ADMIN.
fn capabilities(dockerd: &Dockerd) -> (Vec<&'static str>, u64) {
    let version = dockerd.docker_ok(&["version", "--format", "{{.Server.Version}}"]);
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|major| major.parse().ok())
        .unwrap_or_else(|| panic!("docker version {version:?}: no major version"));
    let bit = |cap: u32| 1u64 << cap;
    if major >= 23 {
        (
            vec!["BPF", "PERFMON", "SYSLOG"],
            bit(CAP_BPF) | bit(CAP_PERFMON) | bit(CAP_SYSLOG),
        )
    } else {
        eprintln!(
            "docker {version} cannot name CAP_BPF and CAP_PERFMON; the agent gets CAP_SYS_ADMIN \
             for them"
        );
        (
            vec!["SYS_ADMIN", "SYSLOG"],
            bit(CAP_SYS_ADMIN) | bit(CAP_SYSLOG),
        )
    }
}

/// The agent's output and state, for failure messages.
fn agent_report(dockerd: &Dockerd) -> String {
    let logs = dockerd.docker(&["logs", AGENT]);
    let state = dockerd.docker(&["inspect", "--format", "{{json .State}}", AGENT]);
    format!(
        "  the agent's state: {}\n  its logs:\n{}{}",
        String::from_utf8_lossy(&state.stdout).trim(),
        String::from_utf8_lossy(&logs.stdout),
        String::from_utf8_lossy(&logs.stderr)
    )
}

/// Polls `GET path` at `address` until `found` is true of a 200 answer's body; returns the body.
#[track_caller]
fn wait_for(
    dockerd: &Dockerd,
    address: &str,
    path: &str,
    what: &str,
    mut found: impl FnMut(&str) -> bool,
) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let last = match get(address, path, None) {
            Ok(response) if response.status == 200 && found(&response.body) => {
                return response.body
            }
            Ok(response) => format!("{response:?}"),
            Err(e) => format!("GET {path}: {e}"),
        };
        if Instant::now() > deadline {
            dockerd.fail(format_args!(
                "expected {what} from GET {path} within {PATIENCE:?}; the last answer:\n{last}\n{}",
                agent_report(dockerd)
            ));
        }
        thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn the_image_serves_as_a_least_privilege_agent_that_sees_the_nodes_containers() {
    let _test = start_test!();
    let archive = image_archive();
    let dockerd = Dockerd::start("image");

    let loaded = dockerd.docker_ok(&["load", "--input", &archive.display().to_string()]);
    let tags: Vec<&str> = loaded
        .lines()
        .filter_map(|line| line.strip_prefix("Loaded image: "))
        .collect();
    assert!(
        tags.contains(&"profiler:latest")
            && tags
                .iter()
                .any(|t| t.starts_with("profiler:") && *t != "profiler:latest"),
        "docker load should tag profiler:<version> and profiler:latest: {loaded}"
    );
    assert_eq!(
        dockerd.docker_ok(&[
            "image",
            "inspect",
            "--format",
            "{{json .Config.Entrypoint}} {{json .Config.Cmd}} {{json .Config.ExposedPorts}}",
            "profiler:latest",
        ]),
        r#"["/usr/local/bin/profiler"] ["serve"] {"9746/tcp":{}}"#
    );

    let (caps, mask) = capabilities(&dockerd);
    let address = format!("127.0.0.1:{}", free_port());
    let containers = dockerd.runtime_state().join("var/lib/docker/containers");
    let state_mount = format!(
        "{}:{STATE}/var/lib/docker/containers:ro",
        containers.display()
    );
    let mut run: Vec<&str> = vec!["run", "--detach", "--name", AGENT, "--cap-drop", "ALL"];
    for cap in &caps {
        run.extend(["--cap-add", cap]);
    }
    run.extend([
        "--security-opt",
        "no-new-privileges",
        "--read-only",
        "--pid",
        "host",
        "--network",
        "host",
        "--cgroupns",
        "host",
        "--volume",
        "/sys/fs/cgroup:/sys/fs/cgroup:ro",
        "--device",
        "/dev/kmsg:/dev/kmsg:r",
        "--volume",
        &state_mount,
        "--tmpfs",
        "/var/lib/profiler",
        "profiler:latest",
        "serve",
        "--listen",
        &address,
        "--record-dir",
        "/var/lib/profiler",
        "--runtime-state",
        STATE,
    ]);
    dockerd.docker_ok(&run);
    wait_for(&dockerd, &address, "/healthz", "\"ok\"", |body| {
        body.trim() == "ok"
    });

    // The agent runs with those capabilities and no others.
    let pid = dockerd.inspect(AGENT, "{{.State.Pid}}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("the agent's /proc/{pid}/status: {e}"));
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no CapEff in the agent's status:\n{status}"));
    assert_eq!(
        effective, mask,
        "the agent's effective capabilities {effective:#x}, expected {mask:#x} ({caps:?})"
    );

    let id = dockerd.docker_ok(&[
        "run", "--detach", "--name", NEIGHBOUR, "--memory", "64m", IMAGE, "sleep", "600",
    ]);
    let labels = [("container", NEIGHBOUR), ("container_id", id.as_str())];
    let metrics = wait_for(
        &dockerd,
        &address,
        "/metrics",
        &format!("the memory usage of container {NEIGHBOUR} ({id})"),
        |body| sample_value(body, "profiler_container_memory_usage_bytes", &labels).is_some(),
    );
    #[expect(clippy::cast_precision_loss, reason = "64 MiB is exact in an f64")]
    let limit = (64 * MIB) as f64;
    assert_eq!(
        sample_value(&metrics, "profiler_container_memory_limit_bytes", &labels),
        Some(limit),
        "the neighbour's 64m limit in /metrics:\n{metrics}"
    );
    assert_eq!(
        sample_value(&metrics, "profiler_build_info", &[]),
        Some(1.0),
        "profiler_build_info in /metrics:\n{metrics}"
    );

    // `docker stop` sends SIGTERM: the agent flushes its recording and exits 0 (a SIGKILL after
    // the grace period would be 137).
    dockerd.docker_ok(&["stop", AGENT]);
    let code = dockerd.inspect(AGENT, "{{.State.ExitCode}}");
    if code != "0" {
        dockerd.fail(format_args!(
            "the agent exited {code} on docker stop, expected 0\n{}",
            agent_report(&dockerd)
        ));
    }
    dockerd.docker_ok(&["rm", AGENT]);
    dockerd.docker_ok(&["rm", "--force", NEIGHBOUR]);
    let mut rmi = vec!["rmi"];
    rmi.extend(&tags);
    dockerd.docker_ok(&rmi);
}
