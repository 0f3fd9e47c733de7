//! `cargo xtask test`: every test, the root end-to-end ones included, then the kernel matrix
//! (`cargo xtask vm-test`: the end-to-end checks on stock 6.1 and 6.12 kernels under QEMU).
use std::process::Command;

use anyhow::{Context as _, Result};

use crate::{build, setup, vm};

/// Sets up, builds the release binaries, and runs `cargo test` on the whole workspace with the
/// end-to-end tests pointed at the fresh profiler binary and the static workload (for the
/// container tests).
pub fn run(extra: &[String]) -> Result<()> {
    setup::run()?;
    let bins = build::run()?;
    let root = build::workspace_root();
    // Release, so the test build reuses the artifacts just built, and the end-to-end tests get
    // the same binary a user would run.
    let host = setup::run_cmd(
        Command::new("cargo")
            .current_dir(&root)
            .args([
                "test",
                "--release",
                "--workspace",
                "--exclude",
                "profiler-ebpf",
            ])
            .arg("--")
            .args(extra)
            .env("PROFILER_BIN", &bins.profiler)
            .env("PROFILER_STATIC_WORKLOAD", &bins.static_workload),
    )
    .context("tests failed");
    // The matrix runs even when a host test failed: both verdicts belong in one CI log.
    let matrix = vm::run(vm::Options::default()).context("the kernel matrix failed");
    match (host, matrix) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Err(host), Err(matrix)) => Err(host.context(format!("and {matrix:#}"))),
    }
}
