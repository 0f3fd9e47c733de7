//! A kubelet-like node: real memory cgroups (v1) in kubelet's cgroupfs layout, and the pod and
//! container log trees kubelet writes, which is all the profiler needs to resolve pods without
//! an API server.
//!
//! ```text
//! <own memcg>/profiler-e2e-kube-<name>-<pid>-<n>/               --cgroup-root
//!     kubepods/burstable/pod<uid>/<64-hex container id>/        (besteffort likewise;
//!                                                                Guaranteed: kubepods/pod<uid>/)
//! <temp>/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log --pod-logs
//! <temp>/containers/<pod>_<namespace>_<container>-<id>.log      --container-logs, a symlink
//!                                                                to the file above
//! ```
//!
//! A restart is what kubelet does after an OOM kill: the runtime removes the dead container's
//! cgroup, and a new container (new id, new cgroup, log `<restart + 1>.log`) starts for the
//! same pod and container name. The old log file and its symlink stay, as kubelet keeps the
//! last dead container of each name.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use crate::cgroup::{own_memcg, TestCgroup, Workload};
use crate::profiler::{run_profiler, Finished, Profiler};
use crate::tempdir::TempDir;
use crate::PATIENCE;

/// A pod's Kubernetes QoS class, which decides where kubelet puts its cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qos {
    /// Every container has equal requests and limits: `kubepods/pod<uid>`.
    Guaranteed,
    /// Some request or limit: `kubepods/burstable/pod<uid>`.
    Burstable,
    /// No requests or limits: `kubepods/besteffort/pod<uid>`.
    BestEffort,
}

impl Qos {
    /// The class as the profiler's `qos` JSON field names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Guaranteed => "guaranteed",
            Self::Burstable => "burstable",
            Self::BestEffort => "besteffort",
        }
    }

    /// The cgroup the class's pods sit in, below the node's cgroup root.
    fn parent_cgroup(self) -> &'static str {
        match self {
            Self::Guaranteed => "kubepods",
            Self::Burstable => "kubepods/burstable",
            Self::BestEffort => "kubepods/besteffort",
        }
    }
}

/// A pod of a [`KubeNode`]: its cgroup and its log directory exist.
#[derive(Clone, Debug)]
pub struct Pod {
    /// The namespace, e.g. `shop`.
    pub namespace: String,
    /// The pod name, e.g. `checkout`.
    pub name: String,
    /// The pod UID, a random UUID as the API server makes them.
    pub uid: String,
    /// The QoS class.
    pub qos: Qos,
    /// The pod cgroup, relative to the node's cgroup root.
    relative_cgroup: PathBuf,
    cgroup: PathBuf,
    log_dir: PathBuf,
}

impl Pod {
    /// The pod cgroup, e.g. `<root>/kubepods/burstable/pod<uid>`.
    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }

    /// `<pod-logs>/<namespace>_<name>_<uid>`.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }
}

/// One run of a container of a [`Pod`]: an id, a cgroup (made by the node, or by a runtime
/// such as runc) and a log file; maybe a workload running in it.
pub struct Container {
    pod: Pod,
    name: String,
    id: String,
    restart: u32,
    limit_bytes: Option<u64>,
    relative_cgroup: PathBuf,
    cgroup: PathBuf,
    workload: Option<Workload>,
}

impl Container {
    /// The pod it belongs to.
    pub fn pod(&self) -> &Pod {
        &self.pod
    }

    /// The container name within the pod, e.g. `app`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The container id: 64 hex digits, fresh for each run.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Which run of the container this is: 0 for the first, 1 after one restart, ...
    pub fn restart(&self) -> u32 {
        self.restart
    }

    /// The container cgroup, `<pod cgroup>/<id>`: what the profiler reports as `cgroup`.
    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }

    /// [`cgroup`](Self::cgroup) as a string, for comparisons with JSON fields.
    pub fn cgroup_str(&self) -> &str {
        self.cgroup
            .to_str()
            .expect("test cgroup paths are built from UTF-8 names")
    }

    /// The workload started in it; panics if none was.
    #[track_caller]
    pub fn workload(&mut self) -> &mut Workload {
        let id = &self.id;
        self.workload
            .as_mut()
            .unwrap_or_else(|| panic!("no workload was started in container {id}"))
    }
}

/// A fake Kubernetes node with real memory cgroups; a guard like [`TestCgroup`]: dropping it
/// kills the workloads it started (by pid), removes its cgroups bottom-up and its log trees.
pub struct KubeNode {
    // Dropped in this order: processes and cgroups first, then the log files.
    cgroup: TestCgroup,
    logs: TempDir,
}

impl KubeNode {
    /// An empty node: a unique cgroup root below the test's own memcg (no limit of its own) and
    /// empty `pods/` and `containers/` log directories in a temporary directory.
    #[track_caller]
    pub fn new(name: &str) -> Self {
        let cgroup = TestCgroup::without_limit(&format!("kube-{name}"));
        let logs = TempDir::new(&format!("kube-{name}"));
        for dir in ["pods", "containers"] {
            let path = logs.path().join(dir);
            fs::create_dir(&path)
                .unwrap_or_else(|e| panic!("could not create {}: {e}", path.display()));
        }
        Self { cgroup, logs }
    }

    /// The value for `--cgroup-root`: the directory holding `kubepods/`.
    pub fn cgroup_root(&self) -> &Path {
        self.cgroup.path()
    }

    /// The value for `--pod-logs`.
    pub fn pod_logs(&self) -> PathBuf {
        self.logs.path().join("pods")
    }

    /// The value for `--container-logs`.
    pub fn container_logs(&self) -> PathBuf {
        self.logs.path().join("containers")
    }

    /// The temporary directory holding `pods/` and `containers/`; nothing else is in it, so a
    /// test may put things beside them that the profiler must not read.
    pub fn log_root(&self) -> &Path {
        self.logs.path()
    }

    /// `--cgroup-root`, `--pod-logs` and `--container-logs` pointing at this node.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--cgroup-root".to_owned(),
            self.cgroup.path_str().to_owned(),
            "--pod-logs".to_owned(),
            self.pod_logs().display().to_string(),
            "--container-logs".to_owned(),
            self.container_logs().display().to_string(),
        ]
    }

    /// Starts `profiler watch --json <target> <flags> --interval 250ms`, e.g. with
    /// `target = ["--pod", "checkout"]`.
    pub fn watch(&self, target: &[&str]) -> Profiler {
        let flags = self.flags();
        let mut args: Vec<&str> = target.to_vec();
        args.extend(flags.iter().map(String::as_str));
        args.extend(["--interval", "250ms"]);
        Profiler::watch(&args)
    }

    /// Runs `profiler watch --json <target> <flags>` to its end (for commands that should fail
    /// or stop by themselves); panics if it runs longer than [`PATIENCE`].
    #[track_caller]
    pub fn run_watch(&self, target: &[&str]) -> Finished {
        let flags = self.flags();
        let mut args = vec!["watch", "--json"];
        args.extend(target);
        args.extend(flags.iter().map(String::as_str));
        run_profiler(&args, PATIENCE)
    }

    /// Adds a pod: a fresh UID, its cgroup (no limit of its own) and its log directory.
    #[track_caller]
    pub fn add_pod(&self, namespace: &str, name: &str, qos: Qos) -> Pod {
        assert_dns_label("namespace", namespace);
        assert_dns_label("pod name", name);
        let uid = random_uuid();
        let relative_cgroup = Path::new(qos.parent_cgroup()).join(format!("pod{uid}"));
        let cgroup = self.cgroup.create_child(&relative_cgroup, None);
        let log_dir = self.pod_logs().join(format!("{namespace}_{name}_{uid}"));
        fs::create_dir(&log_dir)
            .unwrap_or_else(|e| panic!("could not create {}: {e}", log_dir.display()));
        Pod {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid,
            qos,
            relative_cgroup,
            cgroup,
            log_dir,
        }
    }

    /// Sets the pod cgroup's memory limit, as kubelet does from the pod's resources.
    #[track_caller]
    pub fn set_pod_limit(&self, pod: &Pod, limit_bytes: u64) {
        self.cgroup
            .create_child(&pod.relative_cgroup, Some(limit_bytes));
    }

    /// The first run of container `name` of `pod`: a fresh id and its log files, but no cgroup,
    /// for a runtime (runc) that makes the cgroup itself at [`Container::cgroup`].
    #[track_caller]
    pub fn declare_container(&self, pod: &Pod, name: &str) -> Container {
        assert_dns_label("container name", name);
        self.new_run(pod, name, 0, None)
    }

    /// The first run of container `name` of `pod`: a fresh id, its log files and its cgroup
    /// with `memory.limit_in_bytes` = `limit_bytes` (none: no limit of its own). Nothing runs in
    /// it yet; see [`spawn`](Self::spawn).
    #[track_caller]
    pub fn create_container(&self, pod: &Pod, name: &str, limit_bytes: Option<u64>) -> Container {
        assert_dns_label("container name", name);
        let container = self.new_run(pod, name, 0, limit_bytes);
        self.cgroup
            .create_child(&container.relative_cgroup, limit_bytes);
        container
    }

    /// [`create_container`](Self::create_container), then [`spawn`](Self::spawn) `args`.
    #[track_caller]
    pub fn start_container(
        &self,
        pod: &Pod,
        name: &str,
        limit_bytes: Option<u64>,
        args: &[&str],
    ) -> Container {
        let mut container = self.create_container(pod, name, limit_bytes);
        self.spawn(&mut container, args);
        container
    }

    /// Starts the workload binary with `args` in the container's cgroup (from birth).
    #[track_caller]
    pub fn spawn(&self, container: &mut Container, args: &[&str]) {
        assert!(
            container.workload.is_none(),
            "container {} already runs a workload; restart it instead",
            container.id
        );
        container.workload = Some(self.cgroup.spawn_in(&container.relative_cgroup, args));
    }

    /// Restarts a container as kubelet does after it died: its workload is killed if it still
    /// runs, its cgroup is removed once the process is gone, and after `backoff` (kubelet's
    /// CrashLoopBackOff starts at 10 s; tests pass less) the next run (new id, new cgroup with
    /// the same limit, `<restart + 1>.log`) is created, with nothing running yet.
    #[track_caller]
    pub fn restart_container(&self, mut old: Container, backoff: Duration) -> Container {
        if let Some(workload) = &old.workload {
            workload.kill();
            workload.wait_exit(PATIENCE);
        }
        old.workload = None;
        self.cgroup.remove_child(&old.relative_cgroup);
        thread::sleep(backoff);
        let next = self.new_run(&old.pod, &old.name, old.restart + 1, old.limit_bytes);
        self.cgroup
            .create_child(&next.relative_cgroup, next.limit_bytes);
        next
    }

    /// Ends a container for good, as kubelet does when its pod is deleted: its workload is
    /// killed if it still runs, its cgroup removed once the process is gone, and its log file
    /// and link removed.
    #[track_caller]
    pub fn remove_container(&self, mut container: Container) {
        if let Some(workload) = &container.workload {
            workload.kill();
            workload.wait_exit(PATIENCE);
        }
        container.workload = None;
        self.cgroup.remove_child(&container.relative_cgroup);
        let link = self.container_logs().join(format!(
            "{}_{}_{}-{}.log",
            container.pod.name, container.pod.namespace, container.name, container.id
        ));
        let _ = fs::remove_file(link);
        let _ = fs::remove_dir_all(container.pod.log_dir.join(&container.name));
    }

    /// A new id for run `restart` of container `name`, with its log file and symlink.
    #[track_caller]
    fn new_run(&self, pod: &Pod, name: &str, restart: u32, limit_bytes: Option<u64>) -> Container {
        let id = random_hex(32);
        let dir = pod.log_dir.join(name);
        fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("could not create {}: {e}", dir.display()));
        let log = dir.join(format!("{restart}.log"));
        // One line in the CRI log format kubelet's runtimes write.
        fs::write(&log, "2026-11-25T00:00:00.000000000Z stdout F started\n")
            .unwrap_or_else(|e| panic!("could not write {}: {e}", log.display()));
        let link = self
            .container_logs()
            .join(format!("{}_{}_{name}-{id}.log", pod.name, pod.namespace));
        std::os::unix::fs::symlink(&log, &link).unwrap_or_else(|e| {
            panic!(
                "could not link {} to {}: {e}",
                link.display(),
                log.display()
            )
        });
        let relative_cgroup = pod.relative_cgroup.join(&id);
        Container {
            pod: pod.clone(),
            name: name.to_owned(),
            cgroup: self.cgroup.path().join(&relative_cgroup),
            relative_cgroup,
            id,
            restart,
            limit_bytes,
            workload: None,
        }
    }
}

/// The path of `container`'s cgroup relative to the test's own memcg, e.g.
/// `profiler-e2e-kube-x-1-0/kubepods/burstable/pod<uid>/<id>`.
#[track_caller]
pub fn relative_to_own_memcg(container: &Container) -> PathBuf {
    let own = own_memcg().unwrap_or_else(|e| panic!("{e}"));
    container
        .cgroup
        .strip_prefix(&own)
        .unwrap_or_else(|_| {
            panic!(
                "{} is not below the test's memcg {}",
                container.cgroup.display(),
                own.display()
            )
        })
        .to_owned()
}

/// Kubernetes names are DNS labels: lower-case letters, digits and `-`. In particular no `_`,
/// which separates the parts of kubelet's log names.
#[track_caller]
fn assert_dns_label(what: &str, name: &str) {
    assert!(
        !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "{what} {name:?} is not a DNS label ([a-z0-9-], at most 63 characters)"
    );
}

/// `len` random bytes from the kernel.
#[track_caller]
fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        // SAFETY: writes at most `len - filled` bytes into the buffer's unfilled tail.
        let got = unsafe { libc::getrandom(bytes[filled..].as_mut_ptr().cast(), len - filled, 0) };
        match usize::try_from(got) {
            Ok(got) => filled += got,
            Err(_) => {
                let error = std::io::Error::last_os_error();
                if error.kind() != std::io::ErrorKind::Interrupted {
                    panic!("getrandom: {error}");
                }
            }
        }
    }
    bytes
}

/// `bytes` random bytes as lower-case hex (a container id is 32 bytes: 64 digits).
#[track_caller]
fn random_hex(bytes: usize) -> String {
    random_bytes(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A random (version 4) UUID, as the API server makes pod UIDs.
#[track_caller]
fn random_uuid() -> String {
    let mut b = random_bytes(16);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}
