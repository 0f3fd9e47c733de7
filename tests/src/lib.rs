//! The end-to-end test harness: real memory cgroups (v1), a workload binary that allocates in
//! known patterns, and the built `profiler` binary watching them.
//!
//! A test starts with [`start_test!`], which checks for root and runs the tests of one binary one
//! at a time (OOM timing and burst ordering should not be measured while another test's leak
//! keeps both CPUs busy):
//!
//! ```ignore
//! // (start_test! only compiles in an integration test, where the workload's path is known)
//! use std::time::Duration;
//! use profiler_e2e::{start_test, Profiler, TestCgroup, MIB};
//!
//! let _test = start_test!();
//! let cgroup = TestCgroup::new("demo", 64 * MIB);
//! let mut profiler = Profiler::watch(&["--cgroup", cgroup.path_str()]);
//! profiler.wait_for("watch_start", Duration::from_secs(60), |l| l["type"] == "watch_start");
//! let leak = cgroup.spawn(&["leak", "--step-mib", "4", "--interval-ms", "20"]);
//! leak.wait_exit(Duration::from_secs(60));
//! ```
//!
//! Pods: [`KubeNode`] fakes a kubelet node (cgroupfs layout and log trees) around real memory
//! cgroups, and [`RuncContainer`] runs a real OCI container with runc in such a node.

mod access;
mod agent;
mod browser;
mod cgroup;
mod contract;
mod docker;
mod kube;
mod process;
mod profiler;
pub mod promql;
mod runc;
pub mod runtimes;
pub mod stacks;
mod tempdir;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use serde_json::Value;

pub use access::{Access, AccessWatch};
pub use agent::{free_port, get, sample_value, Agent, Response};
pub use browser::{open_page, ConsoleMessage, Page, PageReport, CHROMIUM_OVERRIDE};
pub use cgroup::{oom_kill_count, own_memcg, TestCgroup, Workload};
pub use contract::check_line;
pub use docker::{Dockerd, IMAGE};
pub use kube::{relative_to_own_memcg, Container, KubeNode, Pod, Qos};
pub use process::Exit;
pub use profiler::{
    profiler_command, run, run_profiler, unprivileged_profiler_command, Finished, Profiler,
};
pub use runc::{find_in_path, static_workload_bin, RuncContainer};
pub use tempdir::TempDir;

/// One mebibyte.
pub const MIB: u64 = 1 << 20;

/// How long a test waits for anything that should happen within a few seconds: generous, so a
/// slow or busy machine does not make a test fail.
pub const PATIENCE: Duration = Duration::from_secs(60);

static WORKLOAD_BIN: OnceLock<PathBuf> = OnceLock::new();
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Held for the duration of one test: no other test of the same binary runs meanwhile.
pub struct TestSession {
    _one_at_a_time: MutexGuard<'static, ()>,
}

/// Starts a test: checks for root, records where the workload binary is and waits until no
/// other test of this binary is running. Keep the returned value alive until the test ends.
///
/// `env!("CARGO_BIN_EXE_workload")` only exists when an integration test is compiled, hence a
/// macro expanded there.
#[macro_export]
macro_rules! start_test {
    () => {
        $crate::start_test_with(env!("CARGO_BIN_EXE_workload"))
    };
}

/// What [`start_test!`] expands to; `workload_bin` is the workload binary's path.
#[track_caller]
pub fn start_test_with(workload_bin: &str) -> TestSession {
    require_root();
    WORKLOAD_BIN.get_or_init(|| PathBuf::from(workload_bin));
    TestSession {
        _one_at_a_time: process::lock(&ONE_AT_A_TIME),
    }
}

/// Panics unless the process runs as root (loading BPF and creating cgroups need it).
#[track_caller]
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("end-to-end tests need root (run cargo xtask test as root)");
    }
}

/// The workload binary recorded by [`start_test!`].
#[track_caller]
pub fn workload_bin() -> PathBuf {
    WORKLOAD_BIN
        .get()
        .cloned()
        .expect("call profiler_e2e::start_test!() at the start of the test")
}

/// The profiler binary: `$PROFILER_BIN`, else `target/release/profiler`, else
/// `target/debug/profiler` in the workspace. Panics if none exists.
#[track_caller]
pub fn profiler_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("PROFILER_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "PROFILER_BIN={} does not exist; build it first: cargo xtask test builds it",
            path.display()
        );
        return path;
    }
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.parent().unwrap_or(manifest_dir);
    let target = workspace.join("target");
    let candidates = [
        target.join("release/profiler"),
        target.join("debug/profiler"),
    ];
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no profiler binary at {} or {} and PROFILER_BIN is not set; \
                 build it first: cargo xtask test builds it",
                candidates[0].display(),
                candidates[1].display()
            )
        })
}

/// Whether `line` is a line of `line_type` about the cgroup at `cgroup`.
pub fn is_line(line: &Value, line_type: &str, cgroup: &str) -> bool {
    line["type"] == line_type && line["cgroup"] == cgroup
}

/// The unsigned integer at `key`; panics with the line if there is none.
#[track_caller]
pub fn u64_at(line: &Value, key: &str) -> u64 {
    line[key]
        .as_u64()
        .unwrap_or_else(|| panic!("expected a non-negative integer {key:?} in {line}"))
}

/// The number at `key`, `None` if it is null; panics with the line if it is neither.
#[track_caller]
pub fn number_or_null_at(line: &Value, key: &str) -> Option<f64> {
    match &line[key] {
        Value::Null => None,
        value => Some(
            value
                .as_f64()
                .unwrap_or_else(|| panic!("expected a number or null {key:?} in {line}")),
        ),
    }
}

/// The string at `key`; panics with the line if there is none.
#[track_caller]
pub fn str_at<'a>(line: &'a Value, key: &str) -> &'a str {
    line[key]
        .as_str()
        .unwrap_or_else(|| panic!("expected a string {key:?} in {line}"))
}
