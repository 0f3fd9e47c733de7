//! One reading of a memory cgroup's figures, built from the text of its files.
//!
//! The builder is pure: it takes file contents, so the v1 and v2 logic is tested on recorded
//! fixture trees without a kernel; the private `files` module does the reading. The modules
//! depend in one direction: `files` → `snapshot` → `parse` → `error`, with `names` beside.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use super::error::{CgroupError, ParseError};
use super::names;
use super::parse::{
    parse_flat_keyed, parse_limit_v1, parse_max_v2, parse_memory_stat, parse_pressure,
    parse_single_u64, MemoryPressure,
};

/// Memory figures of one cgroup at one moment, in bytes unless named otherwise.
///
/// Fields that only one cgroup version has are `None` on the other.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct MemorySnapshot {
    /// Memory charged to the cgroup and its descendants (v1 `memory.usage_in_bytes`,
    /// v2 `memory.current`).
    pub usage_bytes: u64,
    /// This cgroup's own limit; `None` when unlimited (v1 sentinel, v2 `max`). Ancestors may
    /// still limit it: see `MemoryCgroup::effective_limit`.
    pub limit_bytes: Option<u64>,
    /// Anonymous memory, transparent huge pages included.
    pub anon_bytes: u64,
    /// Page cache, shmem included.
    pub file_bytes: u64,
    /// Shared memory and tmpfs pages (also counted in `file_bytes`).
    pub shmem_bytes: u64,
    /// Page cache on the active LRU list.
    pub active_file_bytes: u64,
    /// Page cache on the inactive LRU list: the first to be reclaimed.
    pub inactive_file_bytes: u64,
    /// Kernel memory charged to the cgroup: v2 `kernel` (or the sum of its parts on kernels
    /// before 5.18), v1 `memory.kmem.usage_in_bytes`; `None` where neither exists.
    pub kernel_bytes: Option<u64>,
    /// `usage_bytes - inactive_file_bytes`, floored at 0: the figure kubelet and cAdvisor
    /// compare with the limit to decide evictions.
    pub working_set_bytes: u64,
    /// v1 `memory.failcnt`: how often the limit was hit.
    pub failcnt: Option<u64>,
    /// Processes the OOM killer killed in this cgroup (v1 `memory.oom_control` `oom_kill`, v2
    /// `memory.events` `oom_kill` less `oom_group_kill`: a group kill counts its victim twice).
    pub oom_kills: Option<u64>,
    /// v2 `memory.events` `oom`: how often the OOM killer was invoked for this cgroup.
    pub oom_events: Option<u64>,
    /// v2 `memory.events` `max`: how often usage was about to exceed `memory.max`.
    pub max_events: Option<u64>,
    /// v1 `memory.oom_control` `under_oom`: tasks are stalled by an OOM with the killer
    /// disabled.
    pub under_oom: Option<bool>,
    /// v2 `memory.pressure`, where PSI is available.
    pub psi: Option<MemoryPressure>,
    /// Swap the cgroup and its descendants use (v1 `total_swap` of `memory.stat`, v2
    /// `memory.swap.current`); `None` where the kernel does not account swap.
    pub swap_bytes: Option<u64>,
    /// The cgroup's own swap limit: v2 `memory.swap.max`, v1 `memory.memsw.limit_in_bytes`
    /// less the memory limit. `None` when it has none (or swap is not accounted); ancestors
    /// may still limit it. The node's free swap bounds it too.
    pub swap_max_bytes: Option<u64>,
}

/// The contents of the cgroup v1 files a snapshot is built from; `None` for a file that is
/// absent or unreadable (these differ between kernel builds).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct V1Files {
    /// `memory.usage_in_bytes`.
    pub usage_in_bytes: String,
    /// `memory.limit_in_bytes`.
    pub limit_in_bytes: String,
    /// `memory.stat`.
    pub stat: String,
    /// `memory.failcnt`.
    pub failcnt: Option<String>,
    /// `memory.oom_control`.
    pub oom_control: Option<String>,
    /// `memory.kmem.usage_in_bytes` (absent with `cgroup.memory=nokmem` or without kmem
    /// accounting).
    pub kmem_usage_in_bytes: Option<String>,
    /// `memory.memsw.limit_in_bytes` (absent without swap accounting).
    pub memsw_limit_in_bytes: Option<String>,
}

/// The contents of the cgroup v2 files a snapshot is built from; `None` for a file that is
/// absent or unreadable.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct V2Files {
    /// `memory.current`.
    pub current: String,
    /// `memory.max`.
    pub max: String,
    /// `memory.stat`.
    pub stat: String,
    /// `memory.events`.
    pub events: Option<String>,
    /// `memory.pressure` (absent without PSI, unreadable with `psi=0`).
    pub pressure: Option<String>,
    /// `memory.swap.current` (absent without swap accounting).
    pub swap_current: Option<String>,
    /// `memory.swap.max`.
    pub swap_max: Option<String>,
}

/// The file contents of one cgroup, for either version.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum SnapshotFiles {
    /// A cgroup v1 memory cgroup.
    V1(V1Files),
    /// A cgroup v2 cgroup with the memory controller.
    V2(V2Files),
}

/// Builds a snapshot from file contents.
///
/// `dir` is only used to name the file in an error; nothing is read from it.
pub(crate) fn build_snapshot(
    dir: &Path,
    files: &SnapshotFiles,
) -> Result<MemorySnapshot, CgroupError> {
    match files {
        SnapshotFiles::V1(files) => build_v1(dir, files),
        SnapshotFiles::V2(files) => build_v2(dir, files),
    }
}

fn build_v1(dir: &Path, files: &V1Files) -> Result<MemorySnapshot, CgroupError> {
    let in_file = |name: &'static str| move |err: ParseError| err.in_file(dir.join(name));
    let usage_bytes = parse_single_u64(&files.usage_in_bytes).map_err(in_file(names::V1_USAGE))?;
    let limit_bytes = parse_limit_v1(&files.limit_in_bytes).map_err(in_file(names::V1_LIMIT))?;
    let stat = parse_memory_stat(&files.stat).map_err(in_file(names::STAT))?;
    // memory.usage_in_bytes counts descendants too, so the breakdown must as well: the
    // `total_*` keys are hierarchical, the plain ones are this cgroup's own pages only.
    let stat_key = |key: &str| {
        let total = format!("total_{key}");
        stat.get(&total)
            .or_else(|| stat.get(key))
            .copied()
            .ok_or_else(|| {
                ParseError::whole(format!("neither `{total}` nor `{key}` is present"))
                    .in_file(dir.join(names::STAT))
            })
    };
    let anon_bytes = stat_key("rss")?;
    let file_bytes = stat_key("cache")?;
    let shmem_bytes = stat_key("shmem")?;
    let active_file_bytes = stat_key("active_file")?;
    let inactive_file_bytes = stat_key("inactive_file")?;

    let failcnt = files
        .failcnt
        .as_deref()
        .map(parse_single_u64)
        .transpose()
        .map_err(in_file(names::V1_FAILCNT))?;
    let kernel_bytes = files
        .kmem_usage_in_bytes
        .as_deref()
        .map(parse_single_u64)
        .transpose()
        .map_err(in_file(names::V1_KMEM_USAGE))?;
    let oom_control = files
        .oom_control
        .as_deref()
        .map(parse_flat_keyed)
        .transpose()
        .map_err(in_file(names::V1_OOM_CONTROL))?;
    // `oom_kill` exists since 4.13; on older kernels it stays `None` rather than failing.
    let oom_kills = oom_control
        .as_ref()
        .and_then(|map| map.get("oom_kill").copied());
    let under_oom = oom_control
        .as_ref()
        .and_then(|map| map.get("under_oom").map(|&v| v != 0));
    // Swap is counted in `memory.stat` only with swap accounting on (`swapaccount=1`).
    let swap_bytes = stat.get("total_swap").or_else(|| stat.get("swap")).copied();
    let memsw_limit = files
        .memsw_limit_in_bytes
        .as_deref()
        .map(parse_limit_v1)
        .transpose()
        .map_err(in_file(names::V1_MEMSW_LIMIT))?
        .flatten();
    // memsw limits memory and swap together: what is left of it over the memory limit is
    // the swap allowance.
    let swap_max_bytes = memsw_limit
        .filter(|_| swap_bytes.is_some())
        .map(|both| both.saturating_sub(limit_bytes.unwrap_or(0)));

    Ok(MemorySnapshot {
        usage_bytes,
        limit_bytes,
        anon_bytes,
        file_bytes,
        shmem_bytes,
        active_file_bytes,
        inactive_file_bytes,
        kernel_bytes,
        working_set_bytes: working_set(usage_bytes, inactive_file_bytes),
        failcnt,
        oom_kills,
        oom_events: None,
        max_events: None,
        under_oom,
        psi: None,
        swap_bytes,
        swap_max_bytes,
    })
}

fn build_v2(dir: &Path, files: &V2Files) -> Result<MemorySnapshot, CgroupError> {
    let in_file = |name: &'static str| move |err: ParseError| err.in_file(dir.join(name));
    let usage_bytes = parse_single_u64(&files.current).map_err(in_file(names::V2_CURRENT))?;
    let limit_bytes = parse_max_v2(&files.max).map_err(in_file(names::V2_MAX))?;
    let stat = parse_memory_stat(&files.stat).map_err(in_file(names::STAT))?;
    let stat_key = |key: &str| {
        stat.get(key).copied().ok_or_else(|| {
            ParseError::whole(format!("`{key}` is not present")).in_file(dir.join(names::STAT))
        })
    };
    let anon_bytes = stat_key("anon")?;
    let file_bytes = stat_key("file")?;
    let shmem_bytes = stat_key("shmem")?;
    let active_file_bytes = stat_key("active_file")?;
    let inactive_file_bytes = stat_key("inactive_file")?;
    let kernel_bytes = v2_kernel_bytes(&stat);

    let events = files
        .events
        .as_deref()
        .map(parse_flat_keyed)
        .transpose()
        .map_err(in_file(names::V2_EVENTS))?;
    let event = |key: &str| events.as_ref().and_then(|map| map.get(key).copied());
    let swap_bytes = files
        .swap_current
        .as_deref()
        .map(parse_single_u64)
        .transpose()
        .map_err(in_file(names::V2_SWAP_CURRENT))?;
    let swap_max_bytes = files
        .swap_max
        .as_deref()
        .filter(|_| swap_bytes.is_some())
        .map(parse_max_v2)
        .transpose()
        .map_err(in_file(names::V2_SWAP_MAX))?
        .flatten();
    let psi = files
        .pressure
        .as_deref()
        .map(parse_pressure)
        .transpose()
        .map_err(in_file(names::V2_PRESSURE))?;

    Ok(MemorySnapshot {
        usage_bytes,
        limit_bytes,
        anon_bytes,
        file_bytes,
        shmem_bytes,
        active_file_bytes,
        inactive_file_bytes,
        kernel_bytes,
        working_set_bytes: working_set(usage_bytes, inactive_file_bytes),
        failcnt: None,
        // A group kill (`memory.oom.group`, which the kubelet sets on v2) kills its victim
        // twice: once as the victim, once as a member of the group, and `oom_kill` counts
        // both. `oom_group_kill` counts one per group kill, so the difference is the processes
        // killed (measured in a vm-test guest: one process killed, `oom_kill 2 oom_group_kill
        // 1`). Kernels before 5.15 have no `oom_group_kill` and count 0.
        oom_kills: event("oom_kill")
            .map(|kills| kills.saturating_sub(event("oom_group_kill").unwrap_or(0))),
        oom_events: event("oom"),
        max_events: event("max"),
        under_oom: None,
        psi,
        swap_bytes,
        swap_max_bytes,
    })
}

/// The v2 `kernel` figure, or on kernels before 5.18 (which lack it) the sum of the parts it
/// is made of; `None` when none of them is present.
fn v2_kernel_bytes(stat: &HashMap<String, u64>) -> Option<u64> {
    if let Some(&kernel) = stat.get("kernel") {
        return Some(kernel);
    }
    // `slab` itself only exists since 5.9; before that it is the two halves.
    let slab = stat.get("slab").copied().or_else(|| {
        let reclaimable = stat.get("slab_reclaimable").copied();
        let unreclaimable = stat.get("slab_unreclaimable").copied();
        match (reclaimable, unreclaimable) {
            (None, None) => None,
            (r, u) => Some(r.unwrap_or(0).saturating_add(u.unwrap_or(0))),
        }
    });
    let parts = ["kernel_stack", "pagetables", "sock", "percpu"]
        .iter()
        .map(|key| stat.get(*key).copied())
        .chain(std::iter::once(slab));
    parts.fold(None, |sum: Option<u64>, part| match part {
        Some(bytes) => Some(sum.unwrap_or(0).saturating_add(bytes)),
        None => sum,
    })
}

/// The working set as kubelet computes it: usage minus the inactive page cache that reclaim
/// would drop first. The two files are read at slightly different moments, so the difference
/// can come out negative; it is floored at 0.
pub(crate) fn working_set(usage_bytes: u64, inactive_file_bytes: u64) -> u64 {
    usage_bytes.saturating_sub(inactive_file_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2_files(stat: &str) -> SnapshotFiles {
        SnapshotFiles::V2(V2Files {
            current: "1000\n".into(),
            max: "max\n".into(),
            stat: stat.into(),
            events: None,
            pressure: None,
            swap_current: None,
            swap_max: None,
        })
    }

    const V2_BASE: &str = "anon 100\nfile 200\nshmem 10\nactive_file 50\ninactive_file 140\n";

    #[test]
    fn a_group_kill_counts_each_process_once() {
        // Recorded in a vm-test guest (6.12): `memory.oom.group` 1 on a container, one process
        // in it, killed once; and a group of two processes (3 kills counted, 2 killed).
        for (events, killed) in [
            (
                "low 0\nhigh 0\nmax 20\noom 1\noom_kill 2\noom_group_kill 1\n",
                1,
            ),
            (
                "low 0\nhigh 0\nmax 24\noom 1\noom_kill 3\noom_group_kill 1\n",
                2,
            ),
            (
                "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\noom_group_kill 0\n",
                1,
            ),
            // Before 5.15: no oom_group_kill.
            ("low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n", 1),
        ] {
            let mut files = v2_files(V2_BASE);
            if let SnapshotFiles::V2(v2) = &mut files {
                v2.events = Some(events.into());
            }
            let snapshot = build_snapshot(Path::new("/x"), &files).expect("snapshot");
            assert_eq!(snapshot.oom_kills, Some(killed), "{events}");
        }
    }

    #[test]
    fn working_set_saturates() {
        assert_eq!(working_set(1000, 300), 700);
        assert_eq!(working_set(300, 300), 0);
        assert_eq!(working_set(100, 300), 0);
    }

    #[test]
    fn v2_kernel_key_wins() {
        let stat = format!("{V2_BASE}kernel 77\nkernel_stack 1\npagetables 2\n");
        let snapshot = build_snapshot(Path::new("/x"), &v2_files(&stat)).expect("snapshot");
        assert_eq!(snapshot.kernel_bytes, Some(77));
    }

    #[test]
    fn v2_kernel_from_parts() {
        let stat = format!(
            "{V2_BASE}kernel_stack 1\npagetables 2\nslab 4\nsock 8\npercpu 16\nslab_reclaimable 1\n"
        );
        let snapshot = build_snapshot(Path::new("/x"), &v2_files(&stat)).expect("snapshot");
        assert_eq!(snapshot.kernel_bytes, Some(31));

        // Before 5.9 there is no `slab`, only its halves.
        let stat = format!("{V2_BASE}kernel_stack 1\nslab_reclaimable 4\nslab_unreclaimable 8\n");
        let snapshot = build_snapshot(Path::new("/x"), &v2_files(&stat)).expect("snapshot");
        assert_eq!(snapshot.kernel_bytes, Some(13));

        let snapshot = build_snapshot(Path::new("/x"), &v2_files(V2_BASE)).expect("snapshot");
        assert_eq!(snapshot.kernel_bytes, None);
    }

    #[test]
    fn v2_missing_key_names_file_and_key() {
        let err = build_snapshot(Path::new("/cg"), &v2_files("anon 1\nfile 2\n"))
            .expect_err("shmem missing");
        let message = err.to_string();
        assert!(message.contains("/cg/memory.stat"), "{message}");
        assert!(message.contains("`shmem`"), "{message}");
    }

    #[test]
    fn v1_plain_keys_when_no_totals() {
        let files = SnapshotFiles::V1(V1Files {
            usage_in_bytes: "1000\n".into(),
            limit_in_bytes: "9223372036854771712\n".into(),
            stat: "cache 300\nrss 600\nshmem 20\nactive_file 100\ninactive_file 180\n".into(),
            ..V1Files::default()
        });
        let snapshot = build_snapshot(Path::new("/x"), &files).expect("snapshot");
        assert_eq!(snapshot.anon_bytes, 600);
        assert_eq!(snapshot.file_bytes, 300);
        assert_eq!(snapshot.working_set_bytes, 820);
        assert_eq!(snapshot.limit_bytes, None);
        assert_eq!(snapshot.failcnt, None);
        assert_eq!(snapshot.oom_kills, None);
        assert_eq!(snapshot.under_oom, None);
        assert_eq!(snapshot.kernel_bytes, None);
    }

    #[test]
    fn swap_use_and_allowance_in_both_versions() {
        // v1 with swap accounting: 64 MiB of memory, 96 MiB of memory and swap together.
        let files = SnapshotFiles::V1(V1Files {
            usage_in_bytes: "1000\n".into(),
            limit_in_bytes: "67108864\n".into(),
            stat: "cache 0\nrss 600\nshmem 0\nactive_file 0\ninactive_file 0\nswap 1\n\
                   total_swap 4096\n"
                .into(),
            memsw_limit_in_bytes: Some("100663296\n".into()),
            ..V1Files::default()
        });
        let snapshot = build_snapshot(Path::new("/x"), &files).expect("snapshot");
        assert_eq!(snapshot.swap_bytes, Some(4096), "hierarchical total");
        assert_eq!(snapshot.swap_max_bytes, Some(32 << 20));
        // Without swap accounting the stat has no swap key: nothing is said of swap.
        let files = SnapshotFiles::V1(V1Files {
            stat: "cache 0\nrss 600\nshmem 0\nactive_file 0\ninactive_file 0\n".into(),
            memsw_limit_in_bytes: Some("9223372036854771712\n".into()),
            ..match files {
                SnapshotFiles::V1(f) => f,
                SnapshotFiles::V2(_) => unreachable!(),
            }
        });
        let snapshot = build_snapshot(Path::new("/x"), &files).expect("snapshot");
        assert_eq!((snapshot.swap_bytes, snapshot.swap_max_bytes), (None, None));

        let v2 = |current: Option<&str>, max: Option<&str>| {
            let mut files = v2_files(V2_BASE);
            if let SnapshotFiles::V2(f) = &mut files {
                f.swap_current = current.map(Into::into);
                f.swap_max = max.map(Into::into);
            }
            let s = build_snapshot(Path::new("/x"), &files).expect("snapshot");
            (s.swap_bytes, s.swap_max_bytes)
        };
        assert_eq!(v2(Some("8192\n"), Some("max\n")), (Some(8192), None));
        assert_eq!(v2(Some("0\n"), Some("0\n")), (Some(0), Some(0)));
        assert_eq!(v2(None, None), (None, None));
    }

    #[test]
    fn v1_bad_limit_names_file_and_line() {
        let files = SnapshotFiles::V1(V1Files {
            usage_in_bytes: "1000\n".into(),
            limit_in_bytes: "lots\n".into(),
            stat: String::new(),
            ..V1Files::default()
        });
        let err = build_snapshot(Path::new("/cg"), &files).expect_err("bad limit");
        let message = err.to_string();
        assert!(
            message.contains("/cg/memory.limit_in_bytes line 1"),
            "{message}"
        );
    }
}
