//! Which memory limit applies to a watched cgroup, and whose it is.
//!
//! A container without a limit of its own is still bounded: by its pod's cgroup, then the QoS
//! parent's, then `kubepods` (the node's allocatable memory), then the node's memory itself.
//! Users need to know which, since "the limit" they set in the pod spec may not be the one
//! the kernel enforces.
use std::{fs, path::Path};

use serde::Serialize;

use super::classify::{classify, CgroupRole};
use crate::cgroup::{CgroupError, LimitCache, MemoryCgroup};

/// Whose limit applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LimitSource {
    /// The watched container's own limit.
    Container,
    /// The watched cgroup's own limit (a cgroup that is not a container).
    #[default]
    Cgroup,
    /// The container's pod's cgroup.
    Pod,
    /// The QoS parent (`kubepods/burstable`, `kubepods-besteffort.slice`).
    Qos,
    /// The kubelet's top cgroup: the node's allocatable memory.
    Kubepods,
    /// Some other ancestor cgroup.
    Ancestor,
    /// No cgroup limit anywhere: the node's memory (`MemTotal`).
    Node,
}

/// The limit that applies, and whose it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AppliedLimit {
    /// Bytes; `None` only when no cgroup has a limit and the node's memory is unknown.
    pub bytes: Option<u64>,
    /// Whose it is.
    pub source: LimitSource,
}

/// Names the owner of a limit found on `source_dir` for the watched cgroup `watched`.
pub(crate) fn source_of(watched: &Path, source_dir: &Path) -> LimitSource {
    if source_dir == watched {
        return match classify(watched) {
            Some(CgroupRole::Container { .. }) => LimitSource::Container,
            _ => LimitSource::Cgroup,
        };
    }
    match classify(source_dir) {
        Some(CgroupRole::Pod(_)) => LimitSource::Pod,
        Some(CgroupRole::QosParent(_)) => LimitSource::Qos,
        Some(CgroupRole::Kubepods) => LimitSource::Kubepods,
        _ => LimitSource::Ancestor,
    }
}

/// The limit that applies to `cgroup`; `node_memory` when no cgroup on the way up has one.
/// `cache` holds what ancestors said during this round of samples.
pub(crate) fn applied_limit(
    cgroup: &MemoryCgroup,
    node_memory: Option<u64>,
    cache: &mut LimitCache,
) -> Result<AppliedLimit, CgroupError> {
    Ok(from_effective(
        cgroup,
        node_memory,
        cgroup.effective_limit_cached(cache)?,
    ))
}

/// Like [`applied_limit`], with the cgroup's own limit as just read in a sample.
pub(crate) fn applied_limit_given(
    cgroup: &MemoryCgroup,
    own: Option<u64>,
    node_memory: Option<u64>,
    cache: &mut LimitCache,
) -> Result<AppliedLimit, CgroupError> {
    Ok(from_effective(
        cgroup,
        node_memory,
        cgroup.effective_limit_given(own, cache)?,
    ))
}

/// The applied limit, from the effective one and whose it is.
fn from_effective(
    cgroup: &MemoryCgroup,
    node_memory: Option<u64>,
    effective: Option<(u64, std::path::PathBuf)>,
) -> AppliedLimit {
    match effective {
        Some((bytes, dir)) => AppliedLimit {
            bytes: Some(bytes),
            source: source_of(cgroup.path(), &dir),
        },
        None => AppliedLimit {
            bytes: node_memory,
            source: LimitSource::Node,
        },
    }
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
pub(crate) fn node_memory() -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&text)
}

/// `MemTotal:  16314004 kB` → bytes.
pub(crate) fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line.split_whitespace().skip(1);
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0d3b3a5e-6f1c-4b7e-9a4d-2c8e1f0b7a6d";
    const ID: &str = "4b1d7e0c9a6f3e2d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d";

    #[test]
    fn names_whose_limit_it_is() {
        let root = Path::new("/sys/fs/cgroup/memory/kubepods");
        let pod = root.join(format!("burstable/pod{UID}"));
        let container = pod.join(ID);
        assert_eq!(source_of(&container, &container), LimitSource::Container);
        assert_eq!(source_of(&container, &pod), LimitSource::Pod);
        assert_eq!(
            source_of(&container, &root.join("burstable")),
            LimitSource::Qos
        );
        assert_eq!(source_of(&container, root), LimitSource::Kubepods);
        assert_eq!(
            source_of(&container, Path::new("/sys/fs/cgroup/memory")),
            LimitSource::Ancestor
        );
        let plain = Path::new("/sys/fs/cgroup/memory/batch/job");
        assert_eq!(source_of(plain, plain), LimitSource::Cgroup);
        assert_eq!(
            source_of(plain, Path::new("/sys/fs/cgroup/memory/batch")),
            LimitSource::Ancestor
        );
    }

    #[test]
    fn mem_total() {
        let meminfo = "MemTotal:        4028440 kB\nMemFree:          123 kB\n";
        assert_eq!(parse_mem_total(meminfo), Some(4_028_440 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: lots kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: 1 MB\n"), None);
    }
}
