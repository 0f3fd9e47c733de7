//! `cargo xtask test`: every test, the root end-to-end ones included.
use std::process::Command;

use anyhow::{Context as _, Result};

use crate::{build, setup};

/// Sets up, builds the release binaries, and runs `cargo test` on the whole workspace with the
/// end-to-end tests pointed at the fresh profiler binary and the static workload (for the
/// container tests).
pub fn run(extra: &[String]) -> Result<()> {
    setup::run()?;
    let bins = build::run()?;
    let root = build::workspace_root();
    // Release, so the test build reuses the artifacts just built, and the end-to-end tests get
    // the same binary a user would run.
    setup::run_cmd(
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
    .context("tests failed")
}
