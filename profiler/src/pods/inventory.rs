//! The containers on a node: container cgroups under the cgroup root, named from the
//! kubelet's log trees.
use std::{
    fs,
    os::unix::fs::DirEntryExt as _,
    path::{Path, PathBuf},
};

use serde::Serialize;

use super::{
    classify::{classify, CgroupRole, Qos, Runtime},
    logs::LogTree,
    runtimes::RuntimeNames,
};

/// How deep below the cgroup root containers are looked for. The deepest layout known
/// (`kubelet.slice/kubelet-kubepods.slice/<qos>/<pod>/<container>`) is 5 levels; test trees
/// and nested runtimes add a few.
const MAX_DEPTH: usize = 8;

/// Who a cgroup belongs to: what every record about a container carries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Identity {
    /// The pod's namespace.
    pub namespace: Option<String>,
    /// The pod's name.
    pub pod: Option<String>,
    /// The pod's uid.
    pub pod_uid: Option<String>,
    /// The container's name in the pod spec.
    pub container: Option<String>,
    /// The container id.
    pub container_id: Option<String>,
    /// The pod's QoS class.
    pub qos: Option<Qos>,
    /// The runtime that made the container's cgroup, where its name says so.
    pub runtime: Option<Runtime>,
}

impl Identity {
    /// What the path, the kubelet's log trees and the runtimes' state say about the cgroup
    /// at `path` (all `None` for a cgroup that is neither a container nor a pod).
    pub(crate) fn of(path: &Path, logs: &LogTree, runtime_names: &RuntimeNames) -> Self {
        let mut identity = Identity::default();
        let (pod, id) = match classify(path) {
            Some(CgroupRole::Container { pod, runtime, id }) => {
                identity.runtime = runtime;
                (pod, Some(id))
            }
            Some(CgroupRole::Pod(pod)) => (Some(pod), None),
            _ => return identity,
        };
        if let Some(pod) = pod {
            identity.qos = Some(pod.qos);
            if let Some(logs) = logs.pods.get(&pod.uid) {
                identity.namespace = Some(logs.namespace.clone());
                identity.pod = Some(logs.name.clone());
            }
            identity.pod_uid = Some(pod.uid);
        }
        if let Some(id) = id {
            if let Some(log) = logs.containers.get(&id) {
                identity.container = Some(log.container.clone());
                // The link names the pod too, for a pod whose log directory is missing.
                identity
                    .namespace
                    .get_or_insert_with(|| log.namespace.clone());
                identity.pod.get_or_insert_with(|| log.pod.clone());
            } else if identity.pod_uid.is_none() {
                identity.container = runtime_names.name(&id).map(str::to_owned);
            }
            identity.container_id = Some(id);
        }
        identity
    }

    /// `namespace/pod`, when both are known.
    pub(crate) fn pod_name(&self) -> Option<String> {
        Some(format!(
            "{}/{}",
            self.namespace.as_ref()?,
            self.pod.as_ref()?
        ))
    }

    /// A short name for people: `namespace/pod/container`, or the container id.
    pub(crate) fn short(&self) -> Option<String> {
        match (self.pod_name(), &self.container, &self.container_id) {
            (Some(pod), Some(container), _) => Some(format!("{pod}/{container}")),
            (Some(pod), None, Some(id)) => Some(format!("{pod}/{}", short_id(id))),
            (Some(pod), None, None) => Some(pod),
            (None, Some(container), _) => Some(container.clone()),
            (None, None, Some(id)) => Some(short_id(id).to_owned()),
            (None, None, None) => None,
        }
    }
}

/// The first 12 characters of a container id, as runtimes print them.
pub(crate) fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// One container cgroup found on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FoundContainer {
    /// Its cgroup directory.
    pub path: PathBuf,
    /// Its inode (the cgroup id), as the directory listing gave it.
    pub inode: u64,
    /// Who it is.
    pub identity: Identity,
}

/// Everything found in one look at the node.
#[derive(Clone, Debug, Default)]
pub(crate) struct Inventory {
    /// Container cgroups, in path order.
    pub containers: Vec<FoundContainer>,
    /// The log trees.
    pub logs: LogTree,
    /// Names of containers outside Kubernetes.
    pub runtime_names: RuntimeNames,
}

/// Where to look.
#[derive(Clone, Debug)]
pub(crate) struct NodeRoots {
    /// The cgroup hierarchy with the memory controller (or a subtree of it).
    pub cgroup_root: PathBuf,
    /// The kubelet's pod log directory.
    pub pod_logs: PathBuf,
    /// The kubelet's container log link directory.
    pub container_logs: PathBuf,
    /// Where runtimes keep their state (`var/lib/docker`, ... below it): `/` on a node.
    pub runtime_state: PathBuf,
}

impl Inventory {
    /// Looks at the node once.
    pub(crate) fn scan(roots: &NodeRoots) -> Self {
        Self::scan_with(roots, &mut |_| {})
    }

    /// Like [`Inventory::scan`], calling `before_listing` with each directory of the cgroup
    /// tree and each log directory just before it is listed (to watch it for changes: a
    /// change after that call is not missed by this look or the watch).
    pub(crate) fn scan_with(roots: &NodeRoots, before_listing: &mut dyn FnMut(&Path)) -> Self {
        before_listing(&roots.pod_logs);
        before_listing(&roots.container_logs);
        let logs = LogTree::read(&roots.pod_logs, &roots.container_logs);
        let runtime_names = RuntimeNames::read(&roots.runtime_state);
        let found = walk(&roots.cgroup_root, before_listing);
        let containers = found
            .into_iter()
            .map(|(path, inode)| FoundContainer {
                identity: Identity::of(&path, &logs, &runtime_names),
                path,
                inode,
            })
            .collect();
        Inventory {
            containers,
            logs,
            runtime_names,
        }
    }

    /// Pod names known from the logs: `(namespace, pod)`, sorted, without repeats.
    pub(crate) fn pod_names(&self) -> Vec<(String, String)> {
        let mut names: Vec<(String, String)> = self
            .logs
            .pods
            .values()
            .map(|p| (p.namespace.clone(), p.name.clone()))
            .chain(
                self.logs
                    .containers
                    .values()
                    .map(|c| (c.namespace.clone(), c.pod.clone())),
            )
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Container cgroup directories below `root` with their inodes, in path order, each
/// directory passed to `before_listing` before it is listed. A container's own children are part of it and are not listed; symbolic links
/// are not followed (cgroup file systems have none, and a fixture tree must not lead the walk
/// elsewhere); directories that vanish during the walk are skipped.
fn walk(root: &Path, before_listing: &mut dyn FnMut(&Path)) -> Vec<(PathBuf, u64)> {
    let mut found = Vec::new();
    let mut pending = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = pending.pop() {
        before_listing(&dir);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if !kind.is_dir() {
                continue;
            }
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap_or(&path);
            match classify(relative) {
                Some(CgroupRole::Container { .. }) => found.push((path, entry.ino())),
                _ if depth + 1 < MAX_DEPTH => pending.push((path, depth + 1)),
                _ => {}
            }
        }
    }
    found.sort();
    found
}
