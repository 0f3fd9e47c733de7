//! `cargo xtask test`: the lints first (a warning or an unformatted file fails the run), then
//! every test in three tiers: the unit tests that need nothing (`cargo test` runs them as any
//! user on any kernel), the host tier (unit tests `#[ignore]`d with the reason: the running
//! kernel's BTF, its real cgroups, a real OOM kill) and the root end-to-end tests, then the
//! kernel matrix (`cargo xtask vm-test`: the end-to-end checks on stock 6.1 and 6.12 kernels
//! under QEMU).
use std::process::Command;

use anyhow::{Context as _, Result};

use crate::{build, image, setup, vm};

/// Sets up, lints, builds the release binaries, and runs `cargo test` on the whole workspace,
/// ignored (host-tier) tests included, with the end-to-end tests pointed at the fresh profiler
/// binary, the static workload (for the container tests) and the image (for the image test).
pub(crate) fn run(extra: &[String]) -> Result<()> {
    setup::run()?;
    build::lint_only().context("lint failed: run `cargo fmt --all` and fix clippy's warnings")?;
    let bins = build::run()?;
    let image = image::build()?;
    let root = build::workspace_root();
    // Release, so the test build reuses the artifacts just built, and the end-to-end tests get
    // the same binary a user would run.
    let cargo_test = |targets: &[&str], harness: &[&str]| {
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
                .args(targets)
                .arg("--")
                .args(harness)
                .args(extra)
                .env("PROFILER_BIN", &bins.profiler)
                .env("PROFILER_STATIC_WORKLOAD", &bins.static_workload)
                .env("PROFILER_IMAGE", &image),
        )
    };
    // The host tier: unit tests that need the host's kernel, cgroups or root are `#[ignore]`d
    // with the reason, and run here. Documentation examples stay apart: an `ignore` code block
    // is an illustration, not a test to include.
    let host = cargo_test(&["--lib", "--bins", "--tests"], &["--include-ignored"])
        .and_then(|()| cargo_test(&["--doc"], &[]))
        .context("tests failed");
    // The matrix runs even when a host test failed: both verdicts belong in one CI log.
    let matrix = vm::run(vm::Options::default()).context("the kernel matrix failed");
    match (host, matrix) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Err(host), Err(matrix)) => Err(host.context(format!("and {matrix:#}"))),
    }
}
