//! `cargo xtask demo`: the main job on a built-in example. A leaking program in a memory cgroup
//! with a limit, `profiler watch` on it, until the kernel OOM-kills the program.
use std::{
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

use crate::{
    build,
    memcg::{interrupt, require_root, Process, TempMemcg},
    setup,
};

const LIMIT: u64 = 96 << 20;

/// Runs the demo.
pub fn run() -> Result<()> {
    require_root("cargo xtask demo")?;
    setup::run()?;
    let bins = build::run()?;
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
            .args(["--interval", "500ms"])
            .spawn()?,
    );
    // Let the profiler attach before the workload starts, so the whole story is seen.
    thread::sleep(Duration::from_secs(2));
    if let Ok(Some(status)) = watch.0.try_wait() {
        bail!("profiler watch exited early ({status})");
    }
    eprintln!("demo: starting a program that leaks 2 MiB every 100 ms in it");
    let mut leak = cgroup.spawn(
        Command::new(&bins.workload)
            .args([
                "--comm",
                "leaky-app",
                "leak",
                "--step-mib",
                "2",
                "--interval-ms",
                "100",
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
    interrupt(&mut watch.0)?;
    eprintln!(
        "demo: the leaking program ended with {status}; the kernel's OOM-kill count for the cgroup is {}",
        cgroup.oom_kills()
    );
    Ok(())
}
