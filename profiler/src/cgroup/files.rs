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

/// A cgroup file kept open between samples and read again from offset 0: kernfs makes the
/// text afresh on every read from the start, and an open file spares the path walk, the open
/// and the close that were most of a watch's cost on a node of hundreds of containers. A file
/// of a removed cgroup fails with ENODEV: [`CgroupError::Gone`], as a path would.
#[derive(Debug)]
struct HeldFile {
    name: &'static str,
    file: Option<fs::File>,
    /// Absent or unreadable on this kernel (optional files only): not tried again.
    missing: bool,
}

impl HeldFile {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            file: None,
            missing: false,
        }
    }

    /// The file's text; `None` for an optional file this kernel lacks or refuses to read.
    fn read(
        &mut self,
        dir: &Path,
        required: bool,
        buf: &mut Vec<u8>,
    ) -> Result<Option<String>, CgroupError> {
        use std::os::unix::fs::FileExt as _;
        if self.missing {
            return Ok(None);
        }
        let path = || dir.join(self.name);
        let gone = || CgroupError::Gone {
            path: dir.to_path_buf(),
        };
        let file = match &mut self.file {
            Some(file) => file,
            slot => match fs::File::open(path()) {
                Ok(file) => slot.insert(file),
                // Out of descriptors (a node of more containers than the limit allows, see
                // `raise_open_file_limit`): read it by its path this time, as before.
                Err(source)
                    if matches!(source.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) =>
                {
                    return if required {
                        read_required(dir, self.name).map(Some)
                    } else {
                        read_optional(dir, self.name)
                    };
                }
                Err(source) if is_gone(&source) && required => return Err(gone()),
                Err(source) if source.raw_os_error() == Some(libc::ENODEV) => return Err(gone()),
                Err(source) if required => {
                    return Err(CgroupError::Io {
                        path: path(),
                        source,
                    })
                }
                Err(source) => {
                    if source.kind() != io::ErrorKind::NotFound {
                        log::debug!(
                            "{} is unreadable, leaving it out: {source}",
                            path().display()
                        );
                    }
                    self.missing = true;
                    return Ok(None);
                }
            },
        };
        buf.clear();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match file.read_at(&mut chunk, buf.len() as u64) {
                Ok(0) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    // A seq_file read fills what was asked for while it has text: a short
                    // read is the end, and asking again would only return 0.
                    if n < chunk.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) if source.raw_os_error() == Some(libc::ENODEV) => return Err(gone()),
                Err(source) if required => {
                    return Err(CgroupError::Io {
                        path: path(),
                        source,
                    })
                }
                Err(source) => {
                    log::debug!(
                        "{} is unreadable, leaving it out: {source}",
                        path().display()
                    );
                    self.missing = true;
                    self.file = None;
                    return Ok(None);
                }
            }
        }
        Ok(Some(String::from_utf8_lossy(buf).into_owned()))
    }
}

/// The files a snapshot is built from, held open (see [`HeldFile`]).
#[derive(Debug)]
pub(crate) struct SnapshotHandles {
    /// Required files first, in the order [`read_snapshot_files_held`] takes them.
    files: Vec<HeldFile>,
    buf: Vec<u8>,
}

impl SnapshotHandles {
    /// Handles for a cgroup of `version`; nothing is opened before the first read.
    pub(crate) fn new(version: CgroupVersion) -> Self {
        let names: &[&'static str] = match version {
            CgroupVersion::V1 => &[
                names::V1_USAGE,
                names::V1_LIMIT,
                names::STAT,
                names::V1_FAILCNT,
                names::V1_OOM_CONTROL,
                names::V1_KMEM_USAGE,
                names::V1_MEMSW_LIMIT,
            ],
            CgroupVersion::V2 => &[
                names::V2_CURRENT,
                names::V2_MAX,
                names::STAT,
                names::V2_EVENTS,
                names::V2_PRESSURE,
                names::V2_SWAP_CURRENT,
                names::V2_SWAP_MAX,
            ],
        };
        Self {
            files: names.iter().map(|&n| HeldFile::new(n)).collect(),
            buf: Vec::with_capacity(4096),
        }
    }
}

/// The usage file's text (the first of `handles`, v1 and v2), through its held file.
pub(super) fn read_usage_held(
    dir: &Path,
    handles: &mut SnapshotHandles,
) -> Result<String, CgroupError> {
    match handles.files.first_mut() {
        Some(file) => Ok(file.read(dir, true, &mut handles.buf)?.unwrap_or_default()),
        None => Ok(String::new()),
    }
}

/// Reads the files a snapshot of `dir` is built from, through `handles`. Required files
/// first: once they have been read, a missing optional file means this kernel lacks it, not
/// that the cgroup went away.
pub(super) fn read_snapshot_files_held(
    dir: &Path,
    version: CgroupVersion,
    handles: &mut SnapshotHandles,
) -> Result<SnapshotFiles, CgroupError> {
    let mut read = |i: usize, required: bool| -> Result<Option<String>, CgroupError> {
        match handles.files.get_mut(i) {
            Some(file) => file.read(dir, required, &mut handles.buf),
            None => Ok(None),
        }
    };
    Ok(match version {
        CgroupVersion::V1 => {
            let usage_in_bytes = read(0, true)?.unwrap_or_default();
            let limit_in_bytes = read(1, true)?.unwrap_or_default();
            let stat = read(2, true)?.unwrap_or_default();
            SnapshotFiles::V1(V1Files {
                usage_in_bytes,
                limit_in_bytes,
                stat,
                failcnt: read(3, false)?,
                oom_control: read(4, false)?,
                kmem_usage_in_bytes: read(5, false)?,
                memsw_limit_in_bytes: read(6, false)?,
            })
        }
        CgroupVersion::V2 => {
            let current = read(0, true)?.unwrap_or_default();
            let max = read(1, true)?.unwrap_or_default();
            let stat = read(2, true)?.unwrap_or_default();
            SnapshotFiles::V2(V2Files {
                current,
                max,
                stat,
                events: read(3, false)?,
                pressure: read(4, false)?,
                swap_current: read(5, false)?,
                swap_max: read(6, false)?,
            })
        }
    })
}

/// Raises this process's soft limit of open files to its hard limit: a watch holds six files
/// open per container (see [`HeldFile`]), and the usual soft limit of 1024 would be reached at
/// about 170 containers. Returns the limit now in force.
pub(crate) fn raise_open_file_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own; raising the soft limit up to the hard
        // one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        return Ok(raised.rlim_cur);
    }
    Ok(limit.rlim_cur)
}
