//! Pods and containers: who a memory cgroup belongs to, found from what every node has (the
//! cgroup tree and the kubelet's log directories), without the API server.
//!
//! - [`classify`]: what a cgroup is, from its path (kubelet systemd and cgroupfs drivers,
//!   runtimes without Kubernetes);
//! - [`logs`]: pod, namespace and container names from `/var/log/pods` and
//!   `/var/log/containers`;
//! - [`runtimes`]: names of containers outside Kubernetes, from docker's, podman's and
//!   nerdctl's state;
//! - [`inventory`]: the containers on the node, named;
//! - [`select`]: `--pod`, `--container`, `--all`;
//! - [`limit`]: which limit applies to a container, and where it comes from.
pub(crate) mod changes;
pub(crate) mod classify;
pub(crate) mod inventory;
pub(crate) mod limit;
pub(crate) mod logs;
pub(crate) mod runtimes;
pub(crate) mod select;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testtree;

pub(crate) use changes::NodeChanges;
pub(crate) use inventory::{FoundContainer, Identity, Inventory, NodeRoots};
pub(crate) use limit::{AppliedLimit, LimitSource};
pub(crate) use logs::LogTree;
pub(crate) use runtimes::RuntimeNames;
pub(crate) use select::{Selection, Selector};

/// `/sys/fs/cgroup` when it is the unified (v2) hierarchy, else the v1 memory hierarchy.
pub(crate) fn default_cgroup_root() -> std::path::PathBuf {
    let unified = std::path::Path::new("/sys/fs/cgroup");
    match crate::cgroup::hierarchy_version(unified) {
        Some(crate::cgroup::CgroupVersion::V2) => unified.to_path_buf(),
        _ => unified.join("memory"),
    }
}

/// A watch that follows containers as they come and go: the selection, re-applied at every
/// look at the node.
#[derive(Clone, Debug)]
pub(crate) struct Discovery {
    /// Where to look.
    pub roots: NodeRoots,
    /// What to follow.
    pub selection: Selection,
}

impl Discovery {
    /// Looks at the node once.
    #[cfg(test)]
    pub(crate) fn scan(&self) -> Inventory {
        Inventory::scan(&self.roots)
    }

    /// Looks at the node once, each directory passed to `before_listing` first (see
    /// [`Inventory::scan_with`]).
    pub(crate) fn scan_with(&self, before_listing: &mut dyn FnMut(&std::path::Path)) -> Inventory {
        Inventory::scan_with(&self.roots, before_listing)
    }

    /// The containers of `inventory` that the watch follows.
    pub(crate) fn matching<'a>(
        &'a self,
        inventory: &'a Inventory,
    ) -> impl Iterator<Item = &'a FoundContainer> + 'a {
        inventory
            .containers
            .iter()
            .filter(|c| self.selection.matches(c))
    }
}
