//! A kubelet-like node for `bench scale`: real memory cgroups below a memory cgroup of this
//! process's own, in either cgroup driver's layout, with services beside the pods, the
//! kubelet's log trees in a temporary directory, and a few containers running a process.
use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use crate::memcg::{spawn_in, Process, TempMemcg};

/// How the kubelet names the cgroups it makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Driver {
    /// `kubepods/burstable/pod<uid>/<container id>`.
    Cgroupfs,
    /// `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`.
    Systemd,
}

/// The pods' QoS classes, in turn.
const QOS: [&str; 3] = ["burstable", "besteffort", "guaranteed"];
/// Containers per pod, in turn (about three on average, as on the node the issue measured).
const PER_POD: [usize; 4] = [3, 3, 2, 4];
/// Container names in the pod spec, by place.
const NAMES: [&str; 4] = ["app", "sidecar", "proxy", "metrics"];
/// Non-container cgroups beside the pods, as systemd makes on any node.
const SERVICES: usize = 30;
/// A container limit (Burstable and Guaranteed pods).
const CONTAINER_LIMIT: u64 = 256 << 20;

/// The node; dropping it ends its processes and removes what it made.
pub(crate) struct FakeNode {
    /// Processes in containers.
    processes: Vec<Process>,
    /// Every cgroup directory made, parents first.
    made: Vec<PathBuf>,
    /// The log trees and runtime state.
    files: PathBuf,
    /// The container cgroups.
    pub(crate) containers: Vec<PathBuf>,
    /// Whether the cgroups are v2.
    v2: bool,
    /// The cgroup everything is made below (removed last: declared last).
    root: TempMemcg,
}

impl FakeNode {
    /// Makes a node of `containers` containers, one in `busy_every` of them running a process
    /// of `workload` (one in five of those charging and freeing 4 MiB every 100 ms, the others
    /// holding 2 MiB), and `others` more cgroups that are not containers (a hundred per slice
    /// below `system.slice`).
    pub(crate) fn build(
        containers: usize,
        driver: Driver,
        busy_every: usize,
        workload: &Path,
        others: usize,
    ) -> Result<Self> {
        let root = TempMemcg::new("profiler-scale", 64 << 30)?;
        let files = std::env::temp_dir().join(format!(
            "{}-logs",
            root.path()
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("profiler-scale")
        ));
        let mut node = FakeNode {
            processes: Vec::new(),
            made: Vec::new(),
            files,
            containers: Vec::new(),
            v2: root.is_v2(),
            root,
        };
        for dir in ["pods", "containers", "state"] {
            fs::create_dir_all(node.files.join(dir))
                .with_context(|| format!("creating {}", node.files.join(dir).display()))?;
        }
        for i in 0..SERVICES {
            node.cgroup(&format!("system.slice/service-{i}.service"), None)?;
        }
        node.cgroup("user.slice/user-0.slice/session-1.scope", None)?;
        for i in 0..others {
            node.cgroup(
                &format!("system.slice/batch-{}.slice/unit-{i}.scope", i / 100),
                None,
            )?;
        }
        let mut pod = 0usize;
        while node.containers.len() < containers {
            let n = PER_POD[pod % PER_POD.len()].min(containers - node.containers.len());
            node.pod(pod, n, driver)?;
            pod += 1;
        }
        let busy: Vec<PathBuf> = node
            .containers
            .iter()
            .step_by(busy_every.max(1))
            .cloned()
            .collect();
        for (k, cgroup) in busy.iter().enumerate() {
            let args: &[&str] = if k % 5 == 0 {
                &["churn", "--mib", "4", "--interval-ms", "100"]
            } else {
                &["hold", "--mib", "2"]
            };
            node.start(cgroup, workload, args)?;
        }
        Ok(node)
    }

    /// The cgroup root to give the watch.
    pub(crate) fn cgroup_root(&self) -> &Path {
        self.root.path()
    }

    /// The kubelet's pod log directory.
    pub(crate) fn pod_logs(&self) -> PathBuf {
        self.files.join("pods")
    }

    /// The kubelet's container log links.
    pub(crate) fn container_logs(&self) -> PathBuf {
        self.files.join("containers")
    }

    /// The runtime state root (empty: every container is a pod's).
    pub(crate) fn runtime_state(&self) -> PathBuf {
        self.files.join("state")
    }

    /// A scratch directory removed with the node.
    /// The profiler's options that point it at this node (its cgroup root, the kubelet's
    /// log trees, the runtime's state).
    pub(crate) fn roots_args(&self) -> Vec<std::ffi::OsString> {
        vec![
            "--cgroup-root".into(),
            self.cgroup_root().into(),
            "--pod-logs".into(),
            self.pod_logs().into(),
            "--container-logs".into(),
            self.container_logs().into(),
            "--runtime-state".into(),
            self.runtime_state().into(),
        ]
    }

    pub(crate) fn scratch(&self) -> &Path {
        &self.files
    }

    /// Processes running in containers.
    pub(crate) fn busy(&self) -> usize {
        self.processes.len()
    }

    /// Whether the cgroups are v2.
    pub(crate) fn is_v2(&self) -> bool {
        self.v2
    }

    /// Starts `workload args` in `cgroup` and waits for its `ready` line.
    fn start(&mut self, cgroup: &Path, workload: &Path, args: &[&str]) -> Result<()> {
        let mut process = spawn_in(
            cgroup,
            Command::new(workload).args(args).stdout(Stdio::piped()),
        )?;
        let stdout = process.0.stdout.take().context("workload stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if !line.starts_with("ready") {
            bail!("workload {args:?} in {} did not start", cgroup.display());
        }
        self.processes.push(process);
        Ok(())
    }

    /// One pod (`index`) of `n` containers, its cgroups and its log trees.
    fn pod(&mut self, index: usize, n: usize, driver: Driver) -> Result<()> {
        let qos = QOS[index % QOS.len()];
        let uid = format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            mix(index as u64) as u32,
            index % 0xffff,
            index % 0xfff,
            (index / 7) % 0xfff,
            mix(index as u64 + 1) & 0xffff_ffff_ffff
        );
        let (namespace, name) = (format!("ns-{}", index % 12), format!("pod-{index}"));
        let pod_dir = match (driver, qos) {
            (Driver::Cgroupfs, "guaranteed") => format!("kubepods/pod{uid}"),
            (Driver::Cgroupfs, qos) => format!("kubepods/{qos}/pod{uid}"),
            (Driver::Systemd, "guaranteed") => {
                format!("kubepods.slice/kubepods-pod{}.slice", uid.replace('-', "_"))
            }
            (Driver::Systemd, qos) => format!(
                "kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{}.slice",
                uid.replace('-', "_")
            ),
        };
        let limited = qos != "besteffort";
        let pod_limit = (qos == "guaranteed").then_some(CONTAINER_LIMIT * n as u64);
        self.cgroup(&pod_dir, pod_limit)?;
        let pod_logs = self
            .files
            .join("pods")
            .join(format!("{namespace}_{name}_{uid}"));
        for c in 0..n {
            let id = format!(
                "{:016x}{:016x}{:016x}{:016x}",
                mix((index << 8 | c) as u64),
                mix((index << 8 | c) as u64 ^ 0x55),
                mix((index << 8 | c) as u64 ^ 0xaa),
                mix((index << 8 | c) as u64 ^ 0xff)
            );
            let dir = match driver {
                Driver::Cgroupfs => format!("{pod_dir}/{id}"),
                Driver::Systemd => format!("{pod_dir}/cri-containerd-{id}.scope"),
            };
            let path = self.cgroup(&dir, limited.then_some(CONTAINER_LIMIT))?;
            self.containers.push(path);
            let container = NAMES[c % NAMES.len()];
            let log_dir = pod_logs.join(container);
            fs::create_dir_all(&log_dir)
                .with_context(|| format!("creating {}", log_dir.display()))?;
            fs::write(log_dir.join("0.log"), "")?;
            let link = self
                .files
                .join("containers")
                .join(format!("{name}_{namespace}_{container}-{id}.log"));
            std::os::unix::fs::symlink(log_dir.join("0.log"), &link)
                .with_context(|| format!("linking {}", link.display()))?;
        }
        Ok(())
    }

    /// Makes `relative` (and its missing parents) below the root, with `limit` if given;
    /// returns its path.
    fn cgroup(&mut self, relative: &str, limit: Option<u64>) -> Result<PathBuf> {
        let mut path = self.root.path().to_path_buf();
        for part in Path::new(relative) {
            let child = path.join(part);
            if !child.exists() {
                if self.v2 {
                    // Children get the memory controller only where their parent enables it.
                    fs::write(path.join("cgroup.subtree_control"), "+memory").with_context(
                        || format!("enabling the memory controller in {}", path.display()),
                    )?;
                }
                fs::create_dir(&child).with_context(|| format!("creating {}", child.display()))?;
                self.made.push(child.clone());
            }
            path = child;
        }
        if let Some(limit) = limit {
            let file = if self.v2 {
                "memory.max"
            } else {
                "memory.limit_in_bytes"
            };
            fs::write(path.join(file), limit.to_string())
                .with_context(|| format!("setting {file} of {}", path.display()))?;
        }
        Ok(path)
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        // Processes first (killed by the pid we own, and reaped), then the cgroups, deepest
        // first; the root goes last, when the field drops.
        self.processes.clear();
        for dir in self.made.iter().rev() {
            for _ in 0..50 {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(_) => thread::sleep(Duration::from_millis(100)),
                }
            }
        }
        let _ = fs::remove_dir_all(&self.files);
    }
}

/// A 64-bit mix (splitmix64's finalizer): ids that look random and never repeat.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
