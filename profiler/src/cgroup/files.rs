//! Reading cgroup files, with the error mapping every caller needs.
//!
//! A cgroup directory can be removed at any moment; its files then fail with ENOENT (path
//! lookup after removal) or ENODEV (kernfs node deactivated under an open file). Both become
//! [`CgroupError::Gone`] here, so callers can report the container as gone rather than fail.

use std::fs;
use std::io;
use std::path::Path;

use super::error::CgroupError;
use super::snapshot::{SnapshotFiles, V1Files, V2Files};
use super::CgroupVersion;

/// File names inside a memory cgroup directory.
pub(super) mod names {
    /// v1 and v2: the statistics breakdown.
    pub(crate) const STAT: &str = "memory.stat";
    /// v1: hierarchical usage; its presence marks a v1 memory cgroup.
    pub(crate) const V1_USAGE: &str = "memory.usage_in_bytes";
    /// v1: this cgroup's limit.
    pub(crate) const V1_LIMIT: &str = "memory.limit_in_bytes";
    /// v1: how often the limit was hit.
    pub(crate) const V1_FAILCNT: &str = "memory.failcnt";
    /// v1: OOM killer state and kill count.
    pub(crate) const V1_OOM_CONTROL: &str = "memory.oom_control";
    /// v1: kernel memory usage (deprecated, absent with kmem accounting off).
    pub(crate) const V1_KMEM_USAGE: &str = "memory.kmem.usage_in_bytes";
    /// v1: whether children are charged to this cgroup too.
    pub(crate) const V1_USE_HIERARCHY: &str = "memory.use_hierarchy";
    /// v2: hierarchical usage; its presence marks a v2 cgroup with the memory controller.
    pub(crate) const V2_CURRENT: &str = "memory.current";
    /// v2: this cgroup's hard limit.
    pub(crate) const V2_MAX: &str = "memory.max";
    /// v2: event counters (`max`, `oom`, `oom_kill`, ...).
    pub(crate) const V2_EVENTS: &str = "memory.events";
    /// v2: pressure stall information.
    pub(crate) const V2_PRESSURE: &str = "memory.pressure";
    /// v2: present in every cgroup but the root (since 4.14).
    pub(crate) const V2_TYPE: &str = "cgroup.type";
    /// v2: present in every cgroup, the root included.
    pub(crate) const V2_CONTROLLERS: &str = "cgroup.controllers";
    /// v2: controllers this cgroup enables for its children.
    pub(crate) const V2_SUBTREE_CONTROL: &str = "cgroup.subtree_control";
}

/// Whether an I/O error means the cgroup directory has been removed.
pub(super) fn is_gone(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::NotFound || err.raw_os_error() == Some(libc::ENODEV)
}

/// Reads a file every memory cgroup of its version has; its absence means the cgroup is gone.
pub(super) fn read_required(dir: &Path, name: &str) -> Result<String, CgroupError> {
    let path = dir.join(name);
    fs::read_to_string(&path).map_err(|source| {
        if is_gone(&source) {
            CgroupError::Gone {
                path: dir.to_path_buf(),
            }
        } else {
            CgroupError::Io { path, source }
        }
    })
}

/// Reads a file that some kernels lack or refuse to read (e.g. `memory.pressure` with
/// `psi=0`, which fails with EOPNOTSUPP): `None` then.
///
/// ENODEV still means the cgroup is gone. ENOENT cannot be told apart from a kernel without
/// the file, so callers read a required file first.
pub(super) fn read_optional(dir: &Path, name: &str) -> Result<Option<String>, CgroupError> {
    let path = dir.join(name);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.raw_os_error() == Some(libc::ENODEV) => Err(CgroupError::Gone {
            path: dir.to_path_buf(),
        }),
        Err(err) => {
            if err.kind() != io::ErrorKind::NotFound {
                log::debug!("{} is unreadable, leaving it out: {err}", path.display());
            }
            Ok(None)
        }
    }
}

/// Reads the files a snapshot of `dir` is built from.
pub(super) fn read_snapshot_files(
    dir: &Path,
    version: CgroupVersion,
) -> Result<SnapshotFiles, CgroupError> {
    // Required files first: once they have been read, a missing optional file means this
    // kernel lacks it, not that the cgroup went away.
    Ok(match version {
        CgroupVersion::V1 => SnapshotFiles::V1(V1Files {
            usage_in_bytes: read_required(dir, names::V1_USAGE)?,
            limit_in_bytes: read_required(dir, names::V1_LIMIT)?,
            stat: read_required(dir, names::STAT)?,
            failcnt: read_optional(dir, names::V1_FAILCNT)?,
            oom_control: read_optional(dir, names::V1_OOM_CONTROL)?,
            kmem_usage_in_bytes: read_optional(dir, names::V1_KMEM_USAGE)?,
        }),
        CgroupVersion::V2 => SnapshotFiles::V2(V2Files {
            current: read_required(dir, names::V2_CURRENT)?,
            max: read_required(dir, names::V2_MAX)?,
            stat: read_required(dir, names::STAT)?,
            events: read_optional(dir, names::V2_EVENTS)?,
            pressure: read_optional(dir, names::V2_PRESSURE)?,
        }),
    })
}
