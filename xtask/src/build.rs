//! `cargo xtask build` and `cargo xtask lint`.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};

use crate::setup::{run_cmd, NIGHTLY};

/// The workspace root (the parent of xtask/).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The release binaries the tests, demo and benchmarks run.
pub struct Binaries {
    /// `profiler`.
    pub profiler: PathBuf,
    /// The test workloads (`workload` from the tests crate).
    pub workload: PathBuf,
}

/// Builds the profiler (with its kernel programs) and the workloads, in release mode.
pub fn run() -> Result<Binaries> {
    let root = workspace_root();
    run_cmd(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "--package",
        "profiler",
        "--package",
        "profiler-e2e",
        "--bins",
    ]))
    .context("building the profiler")?;
    let release = root.join("target/release");
    Ok(Binaries {
        profiler: release.join("profiler"),
        workload: release.join("workload"),
    })
}

/// rustfmt and clippy, for the workspace and for the eBPF crate (which only builds for BPF).
pub fn lint() -> Result<()> {
    crate::setup::run()?;
    let root = workspace_root();
    run_cmd(
        Command::new("cargo")
            .current_dir(&root)
            .args(["fmt", "--all", "--check"]),
    )?;
    run_cmd(Command::new("cargo").current_dir(&root).args([
        "clippy",
        "--workspace",
        "--exclude",
        "profiler-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run_cmd(
        Command::new("cargo")
            .current_dir(root.join("profiler-ebpf"))
            .arg(format!("+{NIGHTLY}"))
            .args([
                "clippy",
                "--package",
                "profiler-ebpf",
                "--release",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--",
                "-D",
                "warnings",
            ]),
    )
}
