//! `cargo xtask build` and `cargo xtask lint`.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};
use serde_json::Value;

use crate::setup::{output_of, run_cmd, NIGHTLY};

/// The workspace root (the parent of xtask/).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The release binaries the tests, demo and benchmarks run.
pub(crate) struct Binaries {
    /// `profiler`.
    pub profiler: PathBuf,
    /// The test workloads (`workload` from the tests crate).
    pub workload: PathBuf,
    /// The same workload linked statically, for containers whose rootfs has no libc.
    pub static_workload: PathBuf,
}

/// Builds the profiler (with its kernel programs) and the workloads, in release mode.
pub(crate) fn run() -> Result<Binaries> {
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
    let target = target_dir(&root)?;
    let static_workload = build_static_workload(&root, &target)?;
    let release = target.join("release");
    Ok(Binaries {
        profiler: release.join("profiler"),
        workload: release.join("workload"),
        static_workload,
    })
}

/// Builds the workload with a statically linked libc and returns its path. The runc tests copy
/// it into a container rootfs that holds no libc.
fn build_static_workload(root: &Path, target: &Path) -> Result<PathBuf> {
    build_static(root, target, "profiler-e2e", "workload")
        .context("building the statically linked workload")
}

/// Builds binary `bin` of `package` in release mode with a statically linked libc (a static-pie
/// binary) and returns its path.
///
/// `cargo rustc` passes the flag to the binary's own compilation only, and the explicit
/// `--target` (the host's) puts the result in `target/<triple>/release`, apart from the dynamic
/// build in `target/release`: sharing that directory, each build would invalidate the other.
pub(crate) fn build_static(
    root: &Path,
    target: &Path,
    package: &str,
    bin: &str,
) -> Result<PathBuf> {
    let triple = host_triple()?;
    run_cmd(Command::new("cargo").current_dir(root).args([
        "rustc",
        "--release",
        "--package",
        package,
        "--bin",
        bin,
        "--target",
        &triple,
        "--",
        "-C",
        "target-feature=+crt-static",
    ]))?;
    Ok(target.join(triple).join("release").join(bin))
}

/// The host's target triple, from `rustc -vV` (e.g. `x86_64-unknown-linux-gnu`).
fn host_triple() -> Result<String> {
    let version = output_of(Command::new("rustc").arg("-vV"))?;
    version
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(|host| host.trim().to_owned())
        .context("rustc -vV names no host triple")
}

/// `cargo metadata` of the workspace's own packages.
pub(crate) fn cargo_metadata(root: &Path) -> Result<Value> {
    let metadata = output_of(Command::new("cargo").current_dir(root).args([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
    ]))?;
    serde_json::from_str(&metadata).context("cargo metadata printed no JSON")
}

/// Cargo's target directory for the workspace (`target/`, or `$CARGO_TARGET_DIR`).
pub(crate) fn target_dir(root: &Path) -> Result<PathBuf> {
    cargo_metadata(root)?["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata names no target_directory")
}

/// Sets up, then [`lint_only`].
pub(crate) fn lint() -> Result<()> {
    crate::setup::run()?;
    lint_only()
}

/// rustfmt and clippy (`-D warnings`), for the workspace and for the eBPF crate (which only
/// builds for BPF), on a machine that is set up.
pub(crate) fn lint_only() -> Result<()> {
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
