//! Deaths in real containers of a real runtime: a private dockerd (Debian's docker.io, with
//! containerd and runc), its containers' cgroups under the test's own memcg. Each way a
//! container ends is told apart, and agrees with what docker itself says (`docker inspect`'s
//! `State.ExitCode` and `State.OOMKilled`); `--container NAME` finds a docker container by name.

use profiler_e2e::{start_test, str_at, u64_at, Dockerd, Profiler, IMAGE, PATIENCE};
use serde_json::Value;

/// The `exit` line of container `name`'s process `comm`.
#[track_caller]
fn exit_of(profiler: &mut Profiler, name: &str, comm: &str) -> Value {
    profiler
        .wait_for(
            &format!("an exit line of container {name} ({comm})"),
            PATIENCE,
            |l| l["type"] == "exit" && l["container"] == name && l["comm"] == comm,
        )
        .1
}

/// What docker says of a container: its exit code and whether it was OOM-killed.
#[track_caller]
fn docker_says(dockerd: &Dockerd, name: &str) -> (u64, bool) {
    let state = dockerd.inspect(name, "{{.State.ExitCode}} {{.State.OOMKilled}}");
    let (code, oom) = state.split_once(' ').unwrap_or((&state, "?"));
    let code = code
        .parse()
        .unwrap_or_else(|e| panic!("docker's exit code {code:?}: {e}"));
    (code, oom == "true")
}

#[test]
fn every_way_a_docker_container_ends_is_told_apart() {
    let _test = start_test!();
    let dockerd = Dockerd::start("ends");
    let mut profiler = dockerd.watch(&["--all", "--interval", "500ms"]);

    // Past its own limit: the kernel's OOM kill at the container's limit.
    let out = dockerd.docker(&[
        "run",
        "--name",
        "leaky",
        "-m",
        "64m",
        "--memory-swap",
        "64m",
        IMAGE,
        "workload",
        "leak",
        "--step-mib",
        "4",
        "--interval-ms",
        "50",
    ]);
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    let exit = exit_of(&mut profiler, "leaky", "workload");
    profiler.expect(&exit, exit["cause"] == "oom_limit", "cause oom_limit");
    profiler.expect(
        &exit,
        exit["limit_source"] == "container",
        "the container's own limit",
    );
    profiler.expect(
        &exit,
        str_at(&exit, "explanation") == "OOM-killed: the container's limit of 64.0MiB was reached",
        "the container's limit in the explanation",
    );
    assert_eq!(
        docker_says(&dockerd, "leaky"),
        (u64_at(&exit, "exit_code"), true)
    );

    // `docker kill`: a SIGKILL from the runtime, not an OOM kill.
    dockerd.docker_ok(&["run", "-d", "--name", "killed", IMAGE, "sleep", "300"]);
    profiler.wait_for("the killed container watched", PATIENCE, |l| {
        l["type"] == "watch_start" && l["container"] == "killed"
    });
    dockerd.docker_ok(&["kill", "killed"]);
    let exit = exit_of(&mut profiler, "killed", "sleep");
    profiler.expect(&exit, exit["cause"] == "signal", "cause signal");
    profiler.expect(&exit, exit["signal"] == "SIGKILL", "SIGKILL");
    profiler.expect(&exit, exit["sender_comm"].is_string(), "a sender");
    profiler.expect(
        &exit,
        str_at(&exit, "explanation").contains("not an OOM kill"),
        "not an OOM kill",
    );
    dockerd.docker(&["wait", "killed"]);
    assert_eq!(
        docker_says(&dockerd, "killed"),
        (u64_at(&exit, "exit_code"), false)
    );

    // `docker stop` of a process that ignores SIGTERM: SIGTERM, then SIGKILL after the grace
    // period, both reported, and the death told as the stop it was.
    dockerd.docker_ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        IMAGE,
        "workload",
        "ignore-term",
    ]);
    profiler.wait_for("the stubborn container watched", PATIENCE, |l| {
        l["type"] == "watch_start" && l["container"] == "stubborn"
    });
    dockerd.docker_ok(&["stop", "--time", "2", "stubborn"]);
    let (_, term) = profiler.wait_for("the SIGTERM", PATIENCE, |l| {
        l["type"] == "signal" && l["container"] == "stubborn" && l["signal"] == "SIGTERM"
    });
    let (_, kill) = profiler.wait_for("the SIGKILL", PATIENCE, |l| {
        l["type"] == "signal" && l["container"] == "stubborn" && l["signal"] == "SIGKILL"
    });
    let grace = kill["ts"].as_f64().unwrap_or(0.0) - term["ts"].as_f64().unwrap_or(0.0);
    profiler.expect(
        &kill,
        (1.5..10.0).contains(&grace),
        "the SIGKILL about 2 s after the SIGTERM",
    );
    let exit = exit_of(&mut profiler, "stubborn", "workload");
    profiler.expect(&exit, exit["cause"] == "signal", "cause signal");
    let explanation = str_at(&exit, "explanation");
    profiler.expect(
        &exit,
        explanation.contains("s after a SIGTERM") && explanation.contains("stopped by the runtime"),
        "a stop by the runtime after the grace period",
    );
    assert_eq!(
        docker_says(&dockerd, "stubborn"),
        (u64_at(&exit, "exit_code"), false)
    );

    // A command that is not in the image, and a clean exit: the last process's exit code.
    for (name, script, code) in [
        ("missing", "sleep 2; exec no-such-command", 127),
        ("clean", "sleep 2; exit 0", 0),
    ] {
        let out = dockerd.docker(&["run", "--name", name, IMAGE, "sh", "-c", script]);
        assert_eq!(out.status.code(), Some(code), "{out:?}");
        let exit = exit_of(&mut profiler, name, "sh");
        profiler.expect(&exit, exit["cause"] == "exited", "cause exited");
        profiler.expect(
            &exit,
            u64_at(&exit, "exit_code") == u64::from(code.unsigned_abs()),
            "the code",
        );
        if code == 127 {
            profiler.expect(
                &exit,
                str_at(&exit, "explanation").contains("not found in the image"),
                "command not found",
            );
        }
        assert_eq!(
            docker_says(&dockerd, name),
            (u64_at(&exit, "exit_code"), false)
        );
    }
}

/// `--container NAME` finds a docker container by the name docker gave it.
#[test]
fn a_docker_container_is_found_by_name() {
    let _test = start_test!();
    let dockerd = Dockerd::start("byname");
    let id = dockerd.docker_ok(&["run", "-d", "--name", "web", IMAGE, "sleep", "300"]);
    let mut profiler = dockerd.watch(&["--container", "web", "--interval", "500ms"]);
    let (_, start) = profiler.wait_for("watch_start of the container", PATIENCE, |l| {
        l["type"] == "watch_start"
    });
    profiler.expect(&start, start["container"] == "web", "container web");
    profiler.expect(
        &start,
        start["container_id"] == id.as_str(),
        &format!("container_id {id}"),
    );
    let cgroup = str_at(&start, "cgroup");
    profiler.expect(
        &start,
        cgroup.starts_with(&dockerd.cgroup_parent().display().to_string()) && cgroup.ends_with(&id),
        "the container's cgroup under the daemon's cgroup parent",
    );
}
