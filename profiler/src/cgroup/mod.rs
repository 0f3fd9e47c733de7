//! Memory cgroups: finding them, validating them and reading their memory figures, on cgroup
//! v1 and v2.
//!
//! The split keeps the kernel out of most of the logic: [`parse`] and [`snapshot`] are pure
//! functions over file contents (tested on recorded fixtures), [`own`] works out a process's
//! cgroup from proc text, and only [`MemoryCgroup`] and `files` touch the file system.

mod error;
mod files;
mod names;
pub(crate) mod own;
pub(crate) mod parse;
pub(crate) mod snapshot;

#[cfg(test)]
mod tests;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

pub(crate) use error::{CgroupError, ParseError};
pub(crate) use own::{memory_cgroup_of, own_memory_cgroup};
pub(crate) use parse::{parse_limit_v1, parse_max_v2};
pub(crate) use snapshot::{build_snapshot, MemorySnapshot};

use files::{is_gone, read_optional, read_required, read_snapshot_files_held};
pub(crate) use files::{raise_open_file_limit, SnapshotHandles};

/// Whether no process is left in the cgroup directory `dir` itself (its `cgroup.procs` is
/// empty); a removed cgroup is [`CgroupError::Gone`].
pub(crate) fn has_no_processes(dir: &Path) -> Result<bool, CgroupError> {
    read_required(dir, names::PROCS).map(|procs| procs.trim().is_empty())
}

/// `statfs` type of a cgroup v1 hierarchy (`CGROUP_SUPER_MAGIC`, linux/magic.h).
pub(crate) const CGROUP_SUPER_MAGIC: u64 = 0x0027_e0eb;
/// `statfs` type of the cgroup v2 unified hierarchy (`CGROUP2_SUPER_MAGIC`, linux/magic.h).
pub(crate) const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;

/// Which cgroup interface a memory cgroup uses; the file names and figures differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CgroupVersion {
    /// The legacy per-controller hierarchies (`memory.usage_in_bytes`, ...).
    V1,
    /// The unified hierarchy (`memory.current`, ...).
    V2,
}

/// A validated memory cgroup directory.
///
/// Holds only the path, version and id: every figure is read fresh, since the cgroup can
/// change or disappear at any moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MemoryCgroup {
    path: PathBuf,
    version: CgroupVersion,
    id: u64,
    /// The device of its file system: where the hierarchy ends, going up.
    device: u64,
}

impl MemoryCgroup {
    /// Validates that `path` is a memory cgroup and canonicalizes it.
    ///
    /// The version comes from the file system type (`statfs`): cgroup v1 needs
    /// `memory.usage_in_bytes` (only the hierarchy with the memory controller has it); cgroup
    /// v2 needs `memory.current`, which the root lacks and so do groups whose parent does not
    /// enable memory in `cgroup.subtree_control`.
    ///
    /// Errors: [`CgroupError::NotFound`], [`CgroupError::NotADirectory`],
    /// [`CgroupError::NotMemoryCgroup`] with a reason that says what to name instead.
    pub(crate) fn open(path: &Path) -> Result<Self, CgroupError> {
        let dir = existing_directory(path)?;
        let version = match fs_type(&dir)? {
            CGROUP_SUPER_MAGIC => CgroupVersion::V1,
            CGROUP2_SUPER_MAGIC => CgroupVersion::V2,
            other => {
                return Err(CgroupError::NotMemoryCgroup {
                    path: path.to_path_buf(),
                    reason: format!(
                        "it is not on a cgroup file system (statfs type {other:#x}); name a \
                         directory under the memory cgroup mount, e.g. \
                         /sys/fs/cgroup/memory/<group> on cgroup v1 or /sys/fs/cgroup/<group> \
                         on cgroup v2"
                    ),
                })
            }
        };
        Self::validate(path, dir, version)
    }

    /// Like [`MemoryCgroup::open`], but takes the version as given instead of asking the file
    /// system: for fixture trees (plain directories holding recorded cgroup files) in tests.
    /// The memory files are still checked.
    #[cfg(test)]
    pub(crate) fn open_with_version(
        path: &Path,
        version: CgroupVersion,
    ) -> Result<Self, CgroupError> {
        let dir = existing_directory(path)?;
        Self::validate(path, dir, version)
    }

    /// The canonical path of the cgroup directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The cgroup interface version.
    pub(crate) fn version(&self) -> CgroupVersion {
        self.version
    }

    /// The cgroup id: the inode number of the directory.
    ///
    /// This is the kernel's `cgroup_id()` (the kernfs node id), which the memcg tracepoints
    /// and `bpf_get_current_cgroup_id()` report; checked on this project's machine. Taken
    /// at open time: a cgroup recreated under the same name is a different cgroup.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Reads all memory figures.
    ///
    /// [`CgroupError::Gone`] when the cgroup was removed since it was opened.
    pub(crate) fn read_snapshot(&self) -> Result<MemorySnapshot, CgroupError> {
        // Handles used once: each file opened, read and closed.
        self.read_snapshot_held(&mut SnapshotHandles::new(self.version))
    }

    /// Like [`MemoryCgroup::read_snapshot`], through files held open in `handles` (made for
    /// this cgroup's version): what a watch does every round.
    pub(crate) fn read_snapshot_held(
        &self,
        handles: &mut SnapshotHandles,
    ) -> Result<MemorySnapshot, CgroupError> {
        let files = read_snapshot_files_held(&self.path, self.version, handles)?;
        build_snapshot(&self.path, &files)
    }

    /// Only the usage (v1 `memory.usage_in_bytes`, v2 `memory.current`), through the file
    /// held open in `handles`: one small read, which also tells a removed cgroup
    /// ([`CgroupError::Gone`]).
    pub(crate) fn read_usage_held(
        &self,
        handles: &mut SnapshotHandles,
    ) -> Result<u64, CgroupError> {
        let text = files::read_usage_held(&self.path, handles)?;
        let name = match self.version {
            CgroupVersion::V1 => names::V1_USAGE,
            CgroupVersion::V2 => names::V2_CURRENT,
        };
        parse::parse_single_u64(&text).map_err(|err| err.in_file(self.path.join(name)))
    }

    /// The limit that applies to this cgroup: the smallest of its own limit and those of all
    /// its ancestors up to the hierarchy root; `None` if unlimited everywhere.
    ///
    /// On v1 the walk stops below an ancestor with `memory.use_hierarchy` 0, since such an
    /// ancestor is not charged for its children (only possible before Linux 5.16).
    pub(crate) fn effective_limit(&self) -> Result<Option<u64>, CgroupError> {
        Ok(self.effective_limit_with_source()?.map(|(limit, _)| limit))
    }

    /// Like [`MemoryCgroup::effective_limit`], with the directory whose limit it is (the
    /// nearest one when several have the same limit).
    pub(crate) fn effective_limit_with_source(
        &self,
    ) -> Result<Option<(u64, PathBuf)>, CgroupError> {
        self.effective_limit_cached(&mut LimitCache::default())
    }

    /// Like [`MemoryCgroup::effective_limit_with_source`], remembering what ancestors say in
    /// `cache`: containers of one pod, and pods of one QoS class, share their ancestors, so a
    /// round of samples over many cgroups reads each ancestor once. Clear the cache between
    /// rounds, or limits changed since are missed.
    pub(crate) fn effective_limit_cached(
        &self,
        cache: &mut LimitCache,
    ) -> Result<Option<(u64, PathBuf)>, CgroupError> {
        let (limit_file, parse): (&str, LimitParser) = match self.version {
            CgroupVersion::V1 => (names::V1_LIMIT, parse_limit_v1),
            CgroupVersion::V2 => (names::V2_MAX, parse_max_v2),
        };
        let own = read_required(&self.path, limit_file)?;
        let own = parse(&own).map_err(|err| err.in_file(self.path.join(limit_file)))?;
        self.effective_limit_given(own, cache)
    }

    /// Like [`MemoryCgroup::effective_limit_cached`], with this cgroup's own limit as just
    /// read (a sample reads it anyway): only ancestors not in `cache` are read.
    pub(crate) fn effective_limit_given(
        &self,
        own: Option<u64>,
        cache: &mut LimitCache,
    ) -> Result<Option<(u64, PathBuf)>, CgroupError> {
        let limit_file = match self.version {
            CgroupVersion::V1 => names::V1_LIMIT,
            CgroupVersion::V2 => names::V2_MAX,
        };
        let parse: LimitParser = match self.version {
            CgroupVersion::V1 => parse_limit_v1,
            CgroupVersion::V2 => parse_max_v2,
        };
        let own = own.map(|l| (l, self.path.clone()));
        let device = self.device;

        // Up the tree until an ancestor already known, or the end of the hierarchy.
        let mut above: Vec<(PathBuf, Option<u64>)> = Vec::new();
        let mut known = None;
        let mut dir = self.path.as_path();
        while let Some(parent) = dir.parent() {
            if let Some(chain) = cache.chains.get(parent) {
                known = chain.clone();
                break;
            }
            // The hierarchy ends at its mount point; the parent of that is another file system
            // (and on v2 the root has no memory.max, which ends the walk as well). On v1 an
            // ancestor with `memory.use_hierarchy` 0 is not charged for its children (only
            // possible before Linux 5.16).
            let ends = metadata(parent, &self.path)?.dev() != device
                || (self.version == CgroupVersion::V1
                    && read_optional(parent, names::V1_USE_HIERARCHY)?
                        .as_deref()
                        .map(str::trim)
                        == Some("0"));
            let text = if ends {
                None
            } else {
                read_optional(parent, limit_file)?
            };
            let Some(text) = text else {
                cache.chains.insert(parent.to_path_buf(), None);
                break;
            };
            let limit = parse(&text).map_err(|err| err.in_file(parent.join(limit_file)))?;
            above.push((parent.to_path_buf(), limit));
            dir = parent;
        }
        // From the top down: each ancestor's chain is its own limit or a tighter one above.
        for (dir, limit) in above.into_iter().rev() {
            known = nearest_tightest(limit.map(|l| (l, dir.clone())), known);
            cache.chains.insert(dir, known.clone());
        }
        Ok(nearest_tightest(own, known))
    }

    /// All descendant cgroups (not this one): `(path, id)` in path order.
    ///
    /// Children removed during the walk are skipped; only this cgroup's own removal is
    /// [`CgroupError::Gone`]. On v2, groups below a parent that does not enable memory are
    /// listed too; they have no memory files, and their pages are charged to the nearest
    /// ancestor that has them.
    pub(crate) fn descendants(&self) -> Result<Vec<(PathBuf, u64)>, CgroupError> {
        let mut found = Vec::new();
        let mut pending = vec![self.path.clone()];
        while let Some(dir) = pending.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(err) if is_gone(&err) && dir != self.path => continue,
                Err(err) => return Err(self.walk_error(&dir, err)),
            };
            for entry in entries {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(err) if is_gone(&err) && dir != self.path => break,
                    Err(err) => return Err(self.walk_error(&dir, err)),
                };
                // The directory entry's own type and inode: no stat per entry, which matters
                // with hundreds of cgroups of ~30 files each, walked every interval. Links
                // are not followed (cgroup file systems have none, and a fixture tree must not
                // lead the walk outside itself). kernfs reports the cgroup id as d_ino.
                let is_dir = match entry.file_type() {
                    Ok(kind) => kind.is_dir(),
                    Err(err) if is_gone(&err) => continue,
                    Err(source) => {
                        return Err(CgroupError::Io {
                            path: entry.path(),
                            source,
                        })
                    }
                };
                if is_dir {
                    let child = entry.path();
                    found.push((child.clone(), entry.ino()));
                    pending.push(child);
                }
            }
        }
        found.sort();
        Ok(found)
    }

    fn walk_error(&self, dir: &Path, source: std::io::Error) -> CgroupError {
        if is_gone(&source) {
            CgroupError::Gone {
                path: self.path.clone(),
            }
        } else {
            CgroupError::Io {
                path: dir.to_path_buf(),
                source,
            }
        }
    }

    /// Checks the memory files of `dir` for `version`. `given` is the path as the caller wrote
    /// it, for messages.
    fn validate(given: &Path, dir: PathBuf, version: CgroupVersion) -> Result<Self, CgroupError> {
        let not_memory = |reason: String| CgroupError::NotMemoryCgroup {
            path: given.to_path_buf(),
            reason,
        };
        match version {
            CgroupVersion::V1 => {
                if !exists(&dir, names::V1_USAGE)? {
                    return Err(not_memory(format!(
                        "it has no {}, so this cgroup v1 hierarchy does not have the memory \
                         controller; memory cgroups are in the hierarchy mounted with the \
                         `memory` option, e.g. /sys/fs/cgroup/memory/<group>",
                        names::V1_USAGE
                    )));
                }
            }
            CgroupVersion::V2 => {
                if !exists(&dir, names::V2_CURRENT)? {
                    return Err(not_memory(v2_missing_memory_reason(&dir)?));
                }
            }
        }
        let meta = metadata(&dir, &dir)?;
        Ok(Self {
            path: dir,
            version,
            id: meta.ino(),
            device: meta.dev(),
        })
    }
}

/// Reads one limit file: `None` means unlimited.
type LimitParser = fn(&str) -> Result<Option<u64>, ParseError>;

/// What ancestors' limits add up to, per ancestor directory, for one round of samples.
#[derive(Debug, Default)]
pub(crate) struct LimitCache {
    /// Ancestor → the tightest limit of it and its own ancestors (`None`: none, or the
    /// directory is outside the hierarchy).
    chains: std::collections::HashMap<PathBuf, Option<(u64, PathBuf)>>,
}

impl LimitCache {
    /// Forgets everything (limits may have changed).
    pub(crate) fn clear(&mut self) {
        self.chains.clear();
    }
}

/// The tighter of two limits; the nearer one (`nearer`) on a tie.
fn nearest_tightest(
    nearer: Option<(u64, PathBuf)>,
    farther: Option<(u64, PathBuf)>,
) -> Option<(u64, PathBuf)> {
    match (nearer, farther) {
        (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Why a cgroup v2 directory has no `memory.current`, and what to name instead.
fn v2_missing_memory_reason(dir: &Path) -> Result<String, CgroupError> {
    let parent = dir.parent().filter(|parent| {
        // The root has no cgroup.type; checking that the parent is a cgroup as well keeps a
        // kernel older than 4.14 (no cgroup.type anywhere) from calling every group the root.
        exists(parent, names::V2_CONTROLLERS).unwrap_or(false)
    });
    let is_root = !exists(dir, names::V2_TYPE)? && parent.is_none();
    if is_root {
        return Ok(format!(
            "it is the root of the cgroup v2 hierarchy, which has no {}; name a child cgroup, \
             e.g. {}/<group>",
            names::V2_CURRENT,
            dir.display()
        ));
    }
    let Some(parent) = parent else {
        return Ok(format!(
            "it has no {}; name a cgroup v2 group whose parent enables memory in {}",
            names::V2_CURRENT,
            names::V2_SUBTREE_CONTROL
        ));
    };
    let enabled = read_optional(parent, names::V2_SUBTREE_CONTROL)?.unwrap_or_default();
    let enabled = enabled.trim();
    Ok(format!(
        "it has no {}: its parent {} does not enable the memory controller for its children \
         ({} is `{}`); name a group whose parent has `memory` in {}, or enable it with \
         `echo +memory > {}`",
        names::V2_CURRENT,
        parent.display(),
        names::V2_SUBTREE_CONTROL,
        enabled,
        names::V2_SUBTREE_CONTROL,
        parent.join(names::V2_SUBTREE_CONTROL).display()
    ))
}

/// Checks that `path` is an existing directory and returns its canonical form.
fn existing_directory(path: &Path) -> Result<PathBuf, CgroupError> {
    let meta = fs::metadata(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => CgroupError::NotFound {
            path: path.to_path_buf(),
        },
        _ => CgroupError::Io {
            path: path.to_path_buf(),
            source,
        },
    })?;
    if !meta.is_dir() {
        return Err(CgroupError::NotADirectory {
            path: path.to_path_buf(),
        });
    }
    fs::canonicalize(path).map_err(|source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Whether `dir/name` exists; errors other than "does not exist" are reported, since a
/// permission problem must not read as "not a memory cgroup".
fn exists(dir: &Path, name: &str) -> Result<bool, CgroupError> {
    let path = dir.join(name);
    match fs::symlink_metadata(&path) {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(CgroupError::Io { path, source }),
    }
}

/// `stat` of a cgroup directory; ENOENT/ENODEV mean the cgroup `cgroup` is gone.
fn metadata(path: &Path, cgroup: &Path) -> Result<fs::Metadata, CgroupError> {
    fs::metadata(path).map_err(|source| {
        if is_gone(&source) {
            CgroupError::Gone {
                path: cgroup.to_path_buf(),
            }
        } else {
            CgroupError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// The `statfs` file system type of `path`.
/// The cgroup version of the hierarchy `path` is on (`None`: not a cgroup file system).
pub(crate) fn hierarchy_version(path: &Path) -> Option<CgroupVersion> {
    match fs_type(path).ok()? {
        CGROUP_SUPER_MAGIC => Some(CgroupVersion::V1),
        CGROUP2_SUPER_MAGIC => Some(CgroupVersion::V2),
        _ => None,
    }
}

fn fs_type(path: &Path) -> Result<u64, CgroupError> {
    let io_error = |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    };
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io_error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "path contains a NUL byte",
        ))
    })?;
    let mut buf = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c_path` is a valid NUL-terminated string and `buf` is a writable statfs
    // buffer; the kernel fills it completely when the call succeeds.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), buf.as_mut_ptr()) };
    if rc != 0 {
        return Err(io_error(std::io::Error::last_os_error()));
    }
    // SAFETY: statfs succeeded, so the buffer is initialised.
    let buf = unsafe { buf.assume_init() };
    // f_type is signed on glibc and unsigned on musl; the magic numbers fit either way, and
    // reinterpreting the bits keeps any other value distinct for the error message.
    #[allow(
        clippy::unnecessary_cast,
        clippy::cast_sign_loss,
        reason = "f_type's integer type differs between libcs"
    )]
    let f_type = buf.f_type as u64;
    Ok(f_type)
}
