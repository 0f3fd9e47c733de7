//! Reading cgroup files, with the error mapping every caller needs.
//!
//! A cgroup directory can be removed at any moment; its files then fail with ENOENT (path
//! lookup after removal) or ENODEV (kernfs node deactivated under an open file). Both become
//! [`CgroupError::Gone`] here, so callers can report the container as gone rather than fail.

use std::fs;
use std::io;
use std::path::Path;

use super::error::CgroupError;
use super::names;
use super::snapshot::{SnapshotFiles, V1Files, V2Files};
use super::CgroupVersion;

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
