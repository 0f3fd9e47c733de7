//! `cargo xtask demo`: the main job on a built-in example. A leaking program in a memory cgroup
//! with a limit, `profiler watch` on it: the forecast, a warning, a critical warning, and the
//! kernel's OOM kill of the program. The watch is recorded, and the demo ends by writing the
//! recording's HTML report and printing its path.
use std::{
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::{
    build,
    memcg::{interrupt, require_root, Process, TempMemcg},
    setup,
};

const LIMIT: u64 = 128 << 20;

/// Runs the demo.
pub(crate) fn run() -> Result<()> {
    require_root("cargo xtask demo")?;
    setup::run()?;
    let bins = build::run()?;
    let out = build::target_dir(&build::workspace_root())?.join("demo");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let recording = out.join("demo.rec");
    let report_dir = out.join("report");
    let cgroup = TempMemcg::new("profiler-demo", LIMIT)?;
    eprintln!(
        "demo: memory cgroup {} with a {} MiB limit; starting `profiler watch` on it",
        cgroup.path().display(),
        LIMIT >> 20
    );
    let mut watch = Process(
        Command::new(&bins.profiler)
            .arg("watch")
            .arg("--cgroup")
            .arg(cgroup.path())
            // Thresholds scaled to a one-minute demo (the defaults are 10m and 1m).
            .args(["--interval", "500ms", "--warn", "30s", "--critical", "10s"])
            .arg("--record")
            .arg(&recording)
            .spawn()?,
    );
    // Let the profiler attach before the workload starts, so the whole story is seen.
    thread::sleep(Duration::from_secs(2));
    if let Ok(Some(status)) = watch.0.try_wait() {
        bail!("profiler watch exited early ({status})");
    }
    eprintln!(
        "demo: starting a program that leaks 1 MiB every 500 ms in it; the forecast starts \
         after 20 s of learning, warns 30 s before the kill and turns critical 10 s before"
    );
    let mut leak = cgroup.spawn(
        Command::new(&bins.workload)
            .args([
                "--comm",
                "leaky-app",
                "leak",
                "--step-mib",
                "1",
                "--interval-ms",
                "500",
            ])
            .stdout(Stdio::null()),
    )?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = leak.0.try_wait()? {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the leaking program was not killed within 120 s");
        }
        thread::sleep(Duration::from_millis(50));
    };
    // Give the live view one more round to show the aftermath.
    thread::sleep(Duration::from_secs(1));
    let watch_status = interrupt(&mut watch.0)?;
    eprintln!(
        "demo: the leaking program ended with {status}; the kernel's OOM-kill count for the cgroup is {}",
        cgroup.oom_kills()
    );
    if !watch_status.success() {
        bail!("profiler watch failed ({watch_status})");
    }
    eprintln!(
        "demo: the watch was recorded in {}; writing its report",
        recording.display()
    );
    let report = Command::new(&bins.profiler)
        .arg("report")
        .arg(&recording)
        .arg("-o")
        .arg(&report_dir)
        .status()
        .context("cannot run profiler report")?;
    if !report.success() {
        bail!("profiler report failed ({report})");
    }
    eprintln!(
        "demo: open {} in a browser (one file: it can be mailed or attached as it is)",
        report_dir.join("report.html").display()
    );
    Ok(())
}
