//! Fixture nodes for the resolver's tests: cgroup trees (plain directories, with memory files
//! where a test reads limits) and kubelet log trees, in a temporary directory.
use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
};

use super::NodeRoots;

pub(super) const UID_1: &str = "0d3b3a5e-6f1c-4b7e-9a4d-2c8e1f0b7a6d";
pub(super) const UID_2: &str = "7a1c0e44-2b9d-4c3e-8f5a-1d6b9e0c2f7a";
pub(super) const UID_3: &str = "c3f2a1b0-9e8d-4c7b-a6f5-e4d3c2b1a0f9";
pub(super) const ID_A: &str = "aaaa7e0c9a6f3e2d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d";
pub(super) const ID_B: &str = "bbbb7e0c9a6f3e2d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d";
pub(super) const ID_C: &str = "cccc7e0c9a6f3e2d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d";
pub(super) const ID_D: &str = "dddd7e0c9a6f3e2d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d";
pub(super) const ID_E: &str = "eeee7e0c9a6f3e2d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d";

/// A node in a temporary directory, removed on drop.
pub(super) struct FixtureNode {
    dir: PathBuf,
}

impl FixtureNode {
    pub(super) fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "profiler-node-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("cgroup")).expect("temp dir");
        fs::create_dir_all(dir.join("pods")).expect("temp dir");
        fs::create_dir_all(dir.join("containers")).expect("temp dir");
        Self { dir }
    }

    pub(super) fn roots(&self) -> NodeRoots {
        NodeRoots {
            cgroup_root: self.dir.join("cgroup"),
            pod_logs: self.dir.join("pods"),
            container_logs: self.dir.join("containers"),
            runtime_state: self.dir.join("state"),
        }
    }

    /// Makes a cgroup directory (relative to the cgroup root) and returns its path.
    pub(super) fn cgroup(&self, relative: &str) -> PathBuf {
        let path = self.dir.join("cgroup").join(relative);
        fs::create_dir_all(&path).expect("fixture cgroup");
        path
    }

    /// Writes a file in a cgroup directory.
    pub(super) fn write(&self, cgroup: &Path, file: &str, text: &str) {
        fs::write(cgroup.join(file), text).expect("fixture file");
    }

    /// The kubelet's log directory of a pod with these containers (`0.log` each).
    pub(super) fn pod_logs(&self, namespace: &str, pod: &str, uid: &str, containers: &[&str]) {
        let dir = self
            .dir
            .join("pods")
            .join(format!("{namespace}_{pod}_{uid}"));
        for c in containers {
            fs::create_dir_all(dir.join(c)).expect("fixture pod log dir");
            fs::write(dir.join(c).join("0.log"), "").expect("fixture log");
        }
        fs::create_dir_all(&dir).expect("fixture pod log dir");
    }

    /// The kubelet's link for a container's log.
    pub(super) fn container_log(&self, namespace: &str, pod: &str, container: &str, id: &str) {
        let link = self
            .dir
            .join("containers")
            .join(format!("{pod}_{namespace}_{container}-{id}.log"));
        std::os::unix::fs::symlink("/nonexistent", link).expect("fixture log link");
    }

    /// A file of a runtime's state (`relative` to the state root).
    pub(super) fn state_file(&self, relative: &str, text: &str) {
        let path = self.dir.join("state").join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("fixture state dir");
        }
        fs::write(path, text).expect("fixture state file");
    }

    /// Removes something below the fixture (a restarted container's old cgroup or link).
    pub(super) fn remove(&self, relative: &str) {
        let path = self.dir.join(relative);
        if path.is_dir() {
            fs::remove_dir_all(path).expect("fixture removal");
        } else {
            fs::remove_file(path).expect("fixture removal");
        }
    }

    /// A cgroup v2 node with the systemd driver and containerd: a Burstable pod with two
    /// containers, a BestEffort pod, a Guaranteed pod with its sandbox (no log link), and
    /// services that are not containers.
    pub(super) fn kubelet_v2_systemd() -> Self {
        let node = Self::new();
        let u1 = UID_1.replace('-', "_");
        let u2 = UID_2.replace('-', "_");
        let u3 = UID_3.replace('-', "_");
        let burstable =
            format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u1}.slice");
        node.cgroup(&format!("{burstable}/cri-containerd-{ID_A}.scope"));
        node.cgroup(&format!("{burstable}/cri-containerd-{ID_C}.scope"));
        node.cgroup(&format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u2}.slice/cri-containerd-{ID_D}.scope"
        ));
        node.cgroup(&format!(
            "kubepods.slice/kubepods-pod{u3}.slice/cri-containerd-{ID_E}.scope"
        ));
        node.cgroup(&format!(
            "kubepods.slice/kubepods-pod{u3}.slice/cri-containerd-{ID_B}.scope"
        ));
        node.cgroup("system.slice/containerd.service");
        node.cgroup("system.slice/kubelet.service");
        node.cgroup("user.slice/user-1000.slice/session-1.scope");
        node.pod_logs("shop", "web-1", UID_1, &["app", "sidecar"]);
        node.container_log("shop", "web-1", "app", ID_A);
        node.container_log("shop", "web-1", "sidecar", ID_C);
        node.pod_logs("default", "batch", UID_2, &["worker"]);
        node.container_log("default", "batch", "worker", ID_D);
        node.pod_logs("kube-system", "dns", UID_3, &["coredns"]);
        node.container_log("kube-system", "dns", "coredns", ID_E);
        node
    }
}

impl Drop for FixtureNode {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}
