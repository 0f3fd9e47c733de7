//! Finding the memory cgroup a process is in, from `/proc/<pid>/cgroup` and
//! `/proc/<pid>/mountinfo`.
//!
//! `/proc/self/cgroup` gives a path inside a hierarchy, not a directory: the directory is that
//! path joined to wherever the hierarchy is mounted, which only mountinfo knows (it differs
//! between distributions, hybrid and pure v2 layouts, and containers).

use std::fs;
use std::path::{Path, PathBuf};

use super::error::{CgroupError, ParseError};
use super::CgroupVersion;

const PROC_SELF_CGROUP: &str = "/proc/self/cgroup";
const PROC_SELF_MOUNTINFO: &str = "/proc/self/mountinfo";

/// Where a process's memory cgroup is: the hierarchy and the path inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CgroupMembership {
    /// V1 when a v1 hierarchy has the memory controller, else V2 (the unified hierarchy).
    pub version: CgroupVersion,
    /// The path inside the hierarchy, as printed by the kernel (starts with `/`).
    pub path: String,
}

/// A mount of the hierarchy that holds the memory controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CgroupMount {
    /// The directory of the hierarchy mounted here (`/` unless only a subtree is mounted, as
    /// in some containers).
    pub root: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
}

/// Parses `/proc/<pid>/cgroup` and returns the memory controller's entry.
///
/// Each line is `<hierarchy id>:<controllers>:<path>`. A v1 line whose comma-separated
/// controllers include `memory` wins; otherwise the v2 line `0::<path>` is used, since memory
/// is then on the unified hierarchy (or nowhere, which opening the directory will tell).
pub(crate) fn parse_proc_self_cgroup(text: &str) -> Result<CgroupMembership, ParseError> {
    let mut unified = None;
    for (index, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(ParseError::at(
                index + 1,
                format!("expected `<id>:<controllers>:<path>`, found `{line}`"),
            ));
        };
        if controllers.split(',').any(|c| c == "memory") {
            return Ok(CgroupMembership {
                version: CgroupVersion::V1,
                path: path.to_owned(),
            });
        }
        if id == "0" && controllers.is_empty() {
            unified = Some(path.to_owned());
        }
    }
    unified
        .map(|path| CgroupMembership {
            version: CgroupVersion::V2,
            path,
        })
        .ok_or_else(|| {
            ParseError::whole(
                "no cgroup v1 line lists the `memory` controller and there is no cgroup v2 \
                 `0::` line",
            )
        })
}

/// Parses `/proc/<pid>/mountinfo` and returns every mount of the hierarchy that holds memory
/// for `version`: v1 mounts of type `cgroup` whose super options include `memory`, or v2
/// mounts of type `cgroup2`. In file order.
pub(crate) fn parse_mountinfo_for_memory(
    text: &str,
    version: CgroupVersion,
) -> Result<Vec<CgroupMount>, ParseError> {
    let mut mounts = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        // `<id> <parent> <maj:min> <root> <mount point> <options> [<optional>...] - <fstype>
        //  <source> <super options>`: the optional fields vary, so split at the lone `-`.
        let fields: Vec<&str> = line.split(' ').collect();
        let separator = fields.iter().skip(6).position(|f| *f == "-").map(|p| p + 6);
        let (Some(separator), Some(root), Some(mount_point)) =
            (separator, fields.get(3), fields.get(4))
        else {
            return Err(ParseError::at(
                index + 1,
                format!("expected a mountinfo line with a ` - ` separator, found `{line}`"),
            ));
        };
        let (Some(fstype), Some(super_options)) =
            (fields.get(separator + 1), fields.get(separator + 3))
        else {
            return Err(ParseError::at(
                index + 1,
                format!("expected `<fstype> <source> <super options>` after ` - `, found `{line}`"),
            ));
        };
        let holds_memory = match version {
            CgroupVersion::V1 => {
                *fstype == "cgroup" && super_options.split(',').any(|o| o == "memory")
            }
            CgroupVersion::V2 => *fstype == "cgroup2",
        };
        if holds_memory {
            mounts.push(CgroupMount {
                root: unescape_mountinfo(root),
                mount_point: PathBuf::from(unescape_mountinfo(mount_point)),
            });
        }
    }
    Ok(mounts)
}

/// Undoes the octal escapes mountinfo uses for space, tab, newline and backslash (`\040`,
/// `\011`, `\012`, `\134`).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match escape {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                // Three octal digits go up to 0o777; only byte values are real escapes.
                match u8::try_from(value) {
                    Ok(byte) => out.push(byte),
                    Err(_) => out.extend_from_slice(&bytes[i..i + 4]),
                }
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Works out the memory cgroup directory from the text of `/proc/<pid>/cgroup` and
/// `/proc/<pid>/mountinfo`. Pure: `own_memory_cgroup` does the reading.
pub(crate) fn memory_cgroup_dir(
    proc_cgroup: &str,
    mountinfo: &str,
) -> Result<PathBuf, CgroupError> {
    let membership =
        parse_proc_self_cgroup(proc_cgroup).map_err(|err| err.in_file(PROC_SELF_CGROUP))?;
    if membership.path.ends_with(" (deleted)") {
        return Err(CgroupError::OwnCgroup {
            reason: format!(
                "the process's cgroup {} has been removed; move it into a live cgroup",
                membership.path
            ),
        });
    }
    let mounts = parse_mountinfo_for_memory(mountinfo, membership.version)
        .map_err(|err| err.in_file(PROC_SELF_MOUNTINFO))?;
    if mounts.is_empty() {
        let (what, how) = match membership.version {
            CgroupVersion::V1 => (
                "no cgroup v1 hierarchy with the memory controller",
                "mount -t cgroup -o memory cgroup /sys/fs/cgroup/memory",
            ),
            CgroupVersion::V2 => (
                "no cgroup2 file system",
                "mount -t cgroup2 cgroup2 /sys/fs/cgroup",
            ),
        };
        return Err(CgroupError::OwnCgroup {
            reason: format!(
                "{what} is mounted in this mount namespace (see {PROC_SELF_MOUNTINFO}); \
                 mount it, e.g. `{how}`, or give the cgroup directory explicitly"
            ),
        });
    }
    let path = Path::new(&membership.path);
    for mount in &mounts {
        // When only a subtree is mounted (a container without its own cgroup namespace), the
        // path in /proc/self/cgroup still starts at the hierarchy's real root.
        if let Ok(relative) = path.strip_prefix(&mount.root) {
            if relative.as_os_str().is_empty() {
                return Ok(mount.mount_point.clone());
            }
            return Ok(mount.mount_point.join(relative));
        }
    }
    let roots: Vec<&str> = mounts.iter().map(|m| m.root.as_str()).collect();
    Err(CgroupError::OwnCgroup {
        reason: format!(
            "the cgroup {} from {PROC_SELF_CGROUP} is outside every mounted part of its \
             hierarchy (mounted roots: {}); this happens in a container whose cgroup namespace \
             does not match its mounts: give the cgroup directory explicitly",
            membership.path,
            roots.join(", ")
        ),
    })
}

/// The memory cgroup process `pid` is in, as a directory path seen from this mount
/// namespace (`/proc/<pid>/cgroup` joined to this process's mounts).
pub(crate) fn memory_cgroup_of(pid: u32) -> Result<PathBuf, CgroupError> {
    let cgroup = format!("/proc/{pid}/cgroup");
    let text = fs::read_to_string(&cgroup).map_err(|source| CgroupError::Io {
        path: PathBuf::from(&cgroup),
        source,
    })?;
    let mountinfo = fs::read_to_string(PROC_SELF_MOUNTINFO).map_err(|source| CgroupError::Io {
        path: PathBuf::from(PROC_SELF_MOUNTINFO),
        source,
    })?;
    memory_cgroup_dir(&text, &mountinfo)
}

/// The memory cgroup this process is in, as a directory path.
///
/// Reads `/proc/self/cgroup` (the v1 `memory` line, or `0::/path` when memory is on the
/// unified hierarchy) and joins the path to the hierarchy's mount point from
/// `/proc/self/mountinfo`. The directory is not validated: pass it to `MemoryCgroup::open`.
pub(crate) fn own_memory_cgroup() -> Result<PathBuf, CgroupError> {
    let read = |path: &str| {
        fs::read_to_string(path).map_err(|source| CgroupError::Io {
            path: PathBuf::from(path),
            source,
        })
    };
    memory_cgroup_dir(&read(PROC_SELF_CGROUP)?, &read(PROC_SELF_MOUNTINFO)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/cgroup/proc")
            .join(name);
        fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("cannot read sample {}: {err}", path.display()))
    }

    #[test]
    fn proc_cgroup_hybrid_picks_v1_memory() {
        let membership = parse_proc_self_cgroup(&sample("hybrid/cgroup")).expect("parse");
        assert_eq!(
            membership,
            CgroupMembership {
                version: CgroupVersion::V1,
                path: "/process_api/bbb60f6a1afcac493797af822dc113d0".into(),
            }
        );
    }

    #[test]
    fn proc_cgroup_joined_controllers() {
        let text = "5:cpu,cpuacct:/\n4:blkio,memory,pids:/kubepods/pod1/abc\n0::/\n";
        let membership = parse_proc_self_cgroup(text).expect("parse");
        assert_eq!(membership.version, CgroupVersion::V1);
        assert_eq!(membership.path, "/kubepods/pod1/abc");
        // `memory` must be a whole controller name, not a substring.
        let text = "4:memory_fake:/a\n0::/b\n";
        assert_eq!(
            parse_proc_self_cgroup(text).map(|m| m.version),
            Ok(CgroupVersion::V2)
        );
    }

    #[test]
    fn proc_cgroup_pure_v2() {
        let membership = parse_proc_self_cgroup(&sample("v2/cgroup")).expect("parse");
        assert_eq!(
            membership,
            CgroupMembership {
                version: CgroupVersion::V2,
                path: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5e1f.slice/cri-containerd-9a3c.scope".into(),
            }
        );
    }

    #[test]
    fn proc_cgroup_errors() {
        let err = parse_proc_self_cgroup("4:cpu:/\nbroken\n").expect_err("malformed");
        assert_eq!(err.line, Some(2));
        let err = parse_proc_self_cgroup("4:cpu:/\n").expect_err("no memory");
        assert_eq!(err.line, None);
        // A path may itself contain colons.
        let membership = parse_proc_self_cgroup("0::/a:b\n").expect("colon in path");
        assert_eq!(membership.path, "/a:b");
    }

    #[test]
    fn mountinfo_hybrid() {
        let text = sample("hybrid/mountinfo");
        assert_eq!(
            parse_mountinfo_for_memory(&text, CgroupVersion::V1),
            Ok(vec![CgroupMount {
                root: "/".into(),
                mount_point: "/sys/fs/cgroup/memory".into(),
            }])
        );
        assert_eq!(
            parse_mountinfo_for_memory(&text, CgroupVersion::V2),
            Ok(vec![CgroupMount {
                root: "/".into(),
                mount_point: "/sys/fs/cgroup/unified".into(),
            }])
        );
    }

    #[test]
    fn mountinfo_pure_v2() {
        let text = sample("v2/mountinfo");
        assert_eq!(
            parse_mountinfo_for_memory(&text, CgroupVersion::V2),
            Ok(vec![CgroupMount {
                root: "/".into(),
                mount_point: "/sys/fs/cgroup".into(),
            }])
        );
        assert_eq!(
            parse_mountinfo_for_memory(&text, CgroupVersion::V1),
            Ok(vec![])
        );
    }

    #[test]
    fn mountinfo_escapes_and_errors() {
        let text = "40 31 0:38 / /mnt/my\\040cgroups rw shared:9 - cgroup2 cgroup2 rw\n";
        let mounts = parse_mountinfo_for_memory(text, CgroupVersion::V2).expect("parse");
        assert_eq!(mounts[0].mount_point, PathBuf::from("/mnt/my cgroups"));

        let err = parse_mountinfo_for_memory("1 2 3\n", CgroupVersion::V2).expect_err("short");
        assert_eq!(err.line, Some(1));
        let err = parse_mountinfo_for_memory("40 31 0:38 / /x rw -\n", CgroupVersion::V2)
            .expect_err("nothing after separator");
        assert_eq!(err.line, Some(1));
    }

    #[test]
    fn unescape() {
        assert_eq!(unescape_mountinfo("a\\040b\\011c\\134d"), "a b\tc\\d");
        assert_eq!(unescape_mountinfo("no\\escape"), "no\\escape");
        assert_eq!(unescape_mountinfo("trail\\04"), "trail\\04");
    }

    #[test]
    fn directory_hybrid() {
        assert_eq!(
            memory_cgroup_dir(&sample("hybrid/cgroup"), &sample("hybrid/mountinfo")).ok(),
            Some(PathBuf::from(
                "/sys/fs/cgroup/memory/process_api/bbb60f6a1afcac493797af822dc113d0"
            ))
        );
    }

    #[test]
    fn directory_pure_v2() {
        assert_eq!(
            memory_cgroup_dir(&sample("v2/cgroup"), &sample("v2/mountinfo")).ok(),
            Some(PathBuf::from(
                "/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5e1f.slice/cri-containerd-9a3c.scope"
            ))
        );
    }

    #[test]
    fn directory_in_container_with_subtree_mount() {
        // Docker on cgroup v1 without a cgroup namespace: the container sees its own subtree
        // mounted at /sys/fs/cgroup/memory, but /proc/self/cgroup shows the full path.
        let mountinfo =
            "700 690 0:32 /docker/4f1c /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n";
        let cgroup = "9:memory:/docker/4f1c\n";
        assert_eq!(
            memory_cgroup_dir(cgroup, mountinfo).ok(),
            Some(PathBuf::from("/sys/fs/cgroup/memory"))
        );
        let err = memory_cgroup_dir("9:memory:/elsewhere\n", mountinfo).expect_err("outside");
        assert!(err.to_string().contains("/docker/4f1c"), "{err}");
    }

    #[test]
    fn directory_errors() {
        let err = memory_cgroup_dir("4:memory:/a\n", "40 31 0:38 / /u rw - cgroup2 cgroup2 rw\n")
            .expect_err("no v1 memory mount");
        assert!(
            err.to_string().contains("mount -t cgroup -o memory"),
            "{err}"
        );

        let err = memory_cgroup_dir("0::/a (deleted)\n", "").expect_err("deleted");
        assert!(err.to_string().contains("removed"), "{err}");

        let err = memory_cgroup_dir("garbage\n", "").expect_err("bad /proc/self/cgroup");
        assert!(
            err.to_string().contains("/proc/self/cgroup line 1"),
            "{err}"
        );
    }
}
