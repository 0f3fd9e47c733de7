//! Project tasks: `cargo xtask setup | build | image | test | demo | bench
//! overhead|agent|scale|churn|forecast | lint | vm-test`.
//!
//! Every task that builds runs `setup` first, so a new machine needs nothing but the two
//! commands in the README.
mod bench;
mod build;
mod demo;
mod image;
mod memcg;
mod setup;
mod test;
mod vm;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "Project tasks for the profiler")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the eBPF toolchain (nightly rust-src, bpf-linker), the host test tools (runc,
    /// busybox-static, chromium and a font, bpftool) and the VM test tools (qemu-system-x86
    /// from backports, cpio); idempotent.
    Setup,
    /// Set up, then build the profiler and the test workloads (release).
    Build,
    /// Set up, build the profiler statically linked, and write it as a container image with no
    /// base image (entrypoint `profiler`, command `serve`) to
    /// `target/image/profiler-<version>.tar`, for `docker load -i`.
    Image,
    /// Set up, lint (fails on a warning or an unformatted file), build, then run every test:
    /// unit tests, the host tier (`#[ignore]`d unit tests that need the host's kernel,
    /// cgroups or root), the root end-to-end tests, and the kernel matrix (`vm-test`).
    Test {
        /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up, build, and watch a leaking workload in a temporary memory cgroup until the
    /// kernel OOM-kills it.
    Demo,
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
    /// rustfmt --check and clippy, for the workspace and for the eBPF crate.
    Lint,
    /// Set up, build, and run the profiler end to end on stock Debian 6.1 and 6.12 kernels
    /// booted under QEMU (software emulation, cgroup v2): a leak to its OOM kill, and the
    /// page-fault overhead of a watch.
    VmTest(vm::Options),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<()> = match cli.task {
        Task::Setup => setup::run(),
        Task::Build => setup::run().and_then(|()| build::run()).map(|_| ()),
        Task::Image => image::run(),
        Task::Test { args } => test::run(&args),
        Task::Demo => demo::run(),
        Task::Bench { which } => bench::run(which),
        Task::Lint => build::lint(),
        Task::VmTest(options) => vm::run(options),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
