//! Tests of `MemoryCgroup` on fixture trees (testdata/cgroup, see its README), and in the host
//! tier on the running machine's real cgroups.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{parse::MemoryPressure, *};

const MIB: u64 = 1 << 20;

/// A fixture path, with the fixture root canonicalized so it compares equal to what `open`
/// returns even when the checkout is reached through a symbolic link.
fn fixture(relative: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/cgroup");
    fs::canonicalize(&root)
        .unwrap_or_else(|err| panic!("cannot find the fixtures at {}: {err}", root.display()))
        .join(relative)
}

fn open_fixture(relative: &str, version: CgroupVersion) -> MemoryCgroup {
    let path = fixture(relative);
    MemoryCgroup::open_with_version(&path, version)
        .unwrap_or_else(|err| panic!("cannot open fixture {}: {err}", path.display()))
}

fn snapshot(relative: &str, version: CgroupVersion) -> MemorySnapshot {
    open_fixture(relative, version)
        .read_snapshot()
        .unwrap_or_else(|err| panic!("cannot read fixture {relative}: {err}"))
}

fn effective(relative: &str, version: CgroupVersion) -> Option<u64> {
    open_fixture(relative, version)
        .effective_limit()
        .unwrap_or_else(|err| panic!("cannot get the effective limit of {relative}: {err}"))
}

fn inode(path: &Path) -> u64 {
    fs::metadata(path)
        .unwrap_or_else(|err| panic!("cannot stat {}: {err}", path.display()))
        .ino()
}

/// A copy of a fixture directory's files in a temporary directory, to delete things from.
fn copy_fixture(relative: &str) -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().expect("create a temporary directory");
    let dir = temp.path().join("cgroup");
    fs::create_dir(&dir).expect("create the copy's directory");
    let source = fixture(relative);
    for entry in fs::read_dir(&source).expect("list the fixture") {
        let entry = entry.expect("read a fixture entry");
        if entry.file_type().expect("fixture entry type").is_file() {
            fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy a fixture file");
        }
    }
    (temp, dir)
}

// --- v1 snapshots, recorded on a 6.18 host with memory on cgroup v1 (testdata/cgroup) ---

#[test]
fn v1_snapshot_near_limit() {
    assert_eq!(
        snapshot("v1/limited_64m", CgroupVersion::V1),
        MemorySnapshot {
            usage_bytes: 66_723_840,
            limit_bytes: Some(64 * MIB),
            anon_bytes: 42_729_472,
            file_bytes: 23_117_824,
            shmem_bytes: 6_291_456,
            active_file_bytes: 14_102_528,
            inactive_file_bytes: 2_719_744,
            kernel_bytes: Some(593_920),
            working_set_bytes: 66_723_840 - 2_719_744,
            failcnt: Some(3),
            oom_kills: Some(0),
            oom_events: None,
            max_events: None,
            under_oom: Some(false),
            psi: None,
            swap_bytes: Some(0),
            swap_max_bytes: None,
        }
    );
}

#[test]
fn v1_snapshot_under_oom() {
    assert_eq!(
        snapshot("v1/under_oom", CgroupVersion::V1),
        MemorySnapshot {
            usage_bytes: 32 * MIB,
            limit_bytes: Some(32 * MIB),
            anon_bytes: 33_312_768,
            file_bytes: 77_824,
            shmem_bytes: 0,
            active_file_bytes: 0,
            inactive_file_bytes: 0,
            kernel_bytes: Some(163_840),
            working_set_bytes: 32 * MIB,
            failcnt: Some(2105),
            oom_kills: Some(0),
            oom_events: None,
            max_events: None,
            under_oom: Some(true),
            psi: None,
            swap_bytes: Some(0),
            swap_max_bytes: None,
        }
    );
}

#[test]
fn v1_snapshot_after_oom_kill() {
    let grandchild = snapshot("v1/oom_nested/child/grandchild", CgroupVersion::V1);
    assert_eq!(grandchild.oom_kills, Some(1));
    assert_eq!(grandchild.limit_bytes, Some(128 * MIB));
    assert_eq!(grandchild.usage_bytes, 245_760);
    assert_eq!(grandchild.working_set_bytes, 245_760 - 4096);

    // The parent's own `cache` is 0; the hierarchical `total_cache` holds the grandchild's page.
    let top = snapshot("v1/oom_nested", CgroupVersion::V1);
    assert_eq!(top.file_bytes, 4096);
    assert_eq!(top.inactive_file_bytes, 4096);
    assert_eq!(top.failcnt, Some(2101));
    assert_eq!(top.oom_kills, Some(0));
}

#[test]
fn v1_snapshot_unlimited_prefers_totals() {
    assert_eq!(
        snapshot("v1/unlimited", CgroupVersion::V1),
        MemorySnapshot {
            usage_bytes: 690_991_104,
            limit_bytes: None,
            anon_bytes: 2_048_000,
            file_bytes: 677_425_152,
            shmem_bytes: 0,
            active_file_bytes: 314_765_312,
            inactive_file_bytes: 362_659_840,
            kernel_bytes: Some(11_763_712),
            working_set_bytes: 690_991_104 - 362_659_840,
            failcnt: Some(0),
            oom_kills: Some(0),
            oom_events: None,
            max_events: None,
            under_oom: Some(false),
            psi: None,
            swap_bytes: Some(0),
            swap_max_bytes: None,
        }
    );
}

#[test]
fn v1_snapshot_without_totals_or_kmem() {
    let snapshot = snapshot("v1/no_totals", CgroupVersion::V1);
    assert_eq!(snapshot.anon_bytes, 42_729_472);
    assert_eq!(snapshot.file_bytes, 23_117_824);
    assert_eq!(snapshot.shmem_bytes, 6_291_456);
    assert_eq!(snapshot.active_file_bytes, 14_102_528);
    assert_eq!(snapshot.inactive_file_bytes, 2_719_744);
    assert_eq!(snapshot.kernel_bytes, None);
}

// --- v2 snapshots, hand-written in the kernel's format ---

#[test]
fn v2_snapshot_limited() {
    assert_eq!(
        snapshot("v2/limited", CgroupVersion::V2),
        MemorySnapshot {
            usage_bytes: 240 * MIB,
            limit_bytes: Some(256 * MIB),
            anon_bytes: 192 * MIB,
            file_bytes: 36 * MIB,
            shmem_bytes: 4 * MIB,
            active_file_bytes: 12 * MIB,
            inactive_file_bytes: 20 * MIB,
            kernel_bytes: Some(12 * MIB),
            working_set_bytes: 220 * MIB,
            failcnt: None,
            oom_kills: Some(2),
            oom_events: Some(3),
            max_events: Some(12),
            under_oom: None,
            psi: Some(MemoryPressure {
                some_avg10: 2.04,
                some_avg60: 0.87,
                some_total_us: 1_843_211,
                full_avg10: 1.12,
                full_avg60: 0.43,
                full_total_us: 923_817,
            }),
            swap_bytes: Some(0),
            swap_max_bytes: None,
        }
    );
}

#[test]
fn v2_snapshot_unlimited() {
    assert_eq!(
        snapshot("v2/unlimited", CgroupVersion::V2),
        MemorySnapshot {
            usage_bytes: 159_182_848,
            limit_bytes: None,
            anon_bytes: 48 * MIB,
            file_bytes: 100 * MIB,
            shmem_bytes: 0,
            active_file_bytes: 60 * MIB,
            inactive_file_bytes: 40 * MIB,
            kernel_bytes: Some(3_993_600),
            working_set_bytes: 159_182_848 - 40 * MIB,
            failcnt: None,
            oom_kills: Some(0),
            oom_events: Some(0),
            max_events: Some(0),
            under_oom: None,
            psi: Some(MemoryPressure::default()),
            swap_bytes: Some(0),
            swap_max_bytes: None,
        }
    );
}

#[test]
fn v2_snapshot_without_pressure_on_5_15() {
    // No `kernel` key: kernel_stack + pagetables + slab + sock + percpu.
    let kernel = 393_216 + 786_432 + (MIB + 655_360) + 4096 + 30_720;
    assert_eq!(
        snapshot("v2/no_pressure", CgroupVersion::V2),
        MemorySnapshot {
            usage_bytes: 111_970_304,
            limit_bytes: Some(512 * MIB),
            anon_bytes: 80 * MIB,
            file_bytes: 24 * MIB,
            shmem_bytes: MIB,
            active_file_bytes: 16 * MIB,
            inactive_file_bytes: 7 * MIB,
            kernel_bytes: Some(kernel),
            working_set_bytes: 111_970_304 - 7 * MIB,
            failcnt: None,
            oom_kills: Some(0),
            oom_events: Some(0),
            max_events: Some(0),
            under_oom: None,
            psi: None,
            swap_bytes: Some(0),
            swap_max_bytes: None,
        }
    );
}

#[test]
fn v2_malformed_stat_names_file_and_line() {
    let cgroup = open_fixture("v2/malformed_stat", CgroupVersion::V2);
    let err = cgroup.read_snapshot().expect_err("line 7 has no value");
    match &err {
        CgroupError::Parse { file, line, reason } => {
            assert_eq!(file, &cgroup.path().join("memory.stat"));
            assert_eq!(*line, Some(7));
            assert!(reason.contains("`percpu`"), "{reason}");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("memory.stat line 7"), "{message}");
}

#[test]
fn snapshot_serializes_for_the_output() {
    let snapshot = snapshot("v2/limited", CgroupVersion::V2);
    let json = serde_json::to_value(&snapshot).expect("serialize");
    assert_eq!(json["limit_bytes"], 256 * MIB);
    assert_eq!(json["psi"]["full_total_us"], 923_817);
    assert_eq!(json["failcnt"], serde_json::Value::Null);
    assert_eq!(
        serde_json::to_string(&CgroupVersion::V1).ok().as_deref(),
        Some("\"v1\"")
    );
    assert_eq!(
        serde_json::to_string(&CgroupVersion::V2).ok().as_deref(),
        Some("\"v2\"")
    );
}

// --- limits and the hierarchy ---

#[test]
fn v1_effective_limit_is_the_smallest_ancestor() {
    assert_eq!(
        effective("v1/oom_nested/child/grandchild", CgroupVersion::V1),
        Some(64 * MIB)
    );
    assert_eq!(
        effective("v1/oom_nested/child", CgroupVersion::V1),
        Some(64 * MIB)
    );
    assert_eq!(
        effective("v1/oom_nested", CgroupVersion::V1),
        Some(64 * MIB)
    );
    assert_eq!(effective("v1/unlimited", CgroupVersion::V1), None);
}

#[test]
fn v1_effective_limit_ignores_non_hierarchical_parent() {
    let temp = tempfile::tempdir().expect("temporary directory");
    let parent = temp.path();
    fs::write(parent.join("memory.limit_in_bytes"), "1048576\n").expect("write");
    fs::write(parent.join("memory.use_hierarchy"), "0\n").expect("write");
    let child = parent.join("child");
    fs::create_dir(&child).expect("mkdir");
    fs::write(child.join("memory.usage_in_bytes"), "0\n").expect("write");
    fs::write(child.join("memory.limit_in_bytes"), "9223372036854771712\n").expect("write");
    let cgroup = MemoryCgroup::open_with_version(&child, CgroupVersion::V1).expect("open");
    assert_eq!(cgroup.effective_limit().ok(), Some(None));
}

#[test]
fn v2_effective_limit_is_the_smallest_ancestor() {
    let pod = "v2/root/kubepods.slice/pod-a";
    assert_eq!(
        effective(&format!("{pod}/container-1"), CgroupVersion::V2),
        Some(256 * MIB)
    );
    assert_eq!(
        effective(&format!("{pod}/container-2"), CgroupVersion::V2),
        Some(100 * MIB)
    );
    assert_eq!(effective(pod, CgroupVersion::V2), Some(256 * MIB));
    assert_eq!(effective("v2/root/system.slice", CgroupVersion::V2), None);
    assert_eq!(effective("v2/limited", CgroupVersion::V2), Some(256 * MIB));
    assert_eq!(effective("v2/unlimited", CgroupVersion::V2), None);
}

#[test]
fn descendants_with_ids() {
    let top = fixture("v1/oom_nested");
    let cgroup = open_fixture("v1/oom_nested", CgroupVersion::V1);
    let child = top.join("child");
    let grandchild = child.join("grandchild");
    assert_eq!(
        cgroup.descendants().ok(),
        Some(vec![
            (child.clone(), inode(&child)),
            (grandchild.clone(), inode(&grandchild))
        ])
    );

    let kubepods = open_fixture("v2/root/kubepods.slice", CgroupVersion::V2);
    let names: Vec<PathBuf> = kubepods
        .descendants()
        .expect("walk")
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    let pod = fixture("v2/root/kubepods.slice/pod-a");
    assert_eq!(
        names,
        vec![
            pod.clone(),
            pod.join("container-1"),
            pod.join("container-2")
        ]
    );

    let leaf = open_fixture("v2/limited", CgroupVersion::V2);
    assert_eq!(leaf.descendants().ok(), Some(vec![]));
}

// --- open ---

#[test]
fn open_canonicalizes_and_takes_the_inode_as_id() {
    let roundabout = fixture("v1/oom_nested/child/../child/./grandchild");
    let cgroup = MemoryCgroup::open_with_version(&roundabout, CgroupVersion::V1).expect("open");
    let canonical = fixture("v1/oom_nested/child/grandchild");
    assert_eq!(cgroup.path(), canonical.as_path());
    assert_eq!(cgroup.id(), inode(&canonical));
    assert_eq!(cgroup.version(), CgroupVersion::V1);
}

#[test]
fn open_rejects_a_missing_path() {
    let path = fixture("v1/does-not-exist");
    assert!(matches!(
        MemoryCgroup::open(&path),
        Err(CgroupError::NotFound { path: p }) if p == path
    ));
    assert!(matches!(
        MemoryCgroup::open_with_version(&path, CgroupVersion::V2),
        Err(CgroupError::NotFound { .. })
    ));
}

#[test]
fn open_rejects_a_file() {
    let path = fixture("v1/limited_64m/memory.stat");
    assert!(matches!(
        MemoryCgroup::open(&path),
        Err(CgroupError::NotADirectory { .. })
    ));
}

#[test]
fn open_rejects_a_normal_directory() {
    // open() asks the file system: a fixture is a plain directory, not a cgroup.
    let err = MemoryCgroup::open(&fixture("v1/limited_64m")).expect_err("not cgroupfs");
    let CgroupError::NotMemoryCgroup { reason, .. } = &err else {
        panic!("expected NotMemoryCgroup, got {err:?}");
    };
    assert!(reason.contains("not on a cgroup file system"), "{reason}");
    assert!(reason.contains("/sys/fs/cgroup/memory/<group>"), "{reason}");

    // Without the fs check, an empty directory still lacks the memory files.
    let temp = tempfile::tempdir().expect("temporary directory");
    let err = MemoryCgroup::open_with_version(temp.path(), CgroupVersion::V1)
        .expect_err("no memory files");
    let CgroupError::NotMemoryCgroup { reason, .. } = &err else {
        panic!("expected NotMemoryCgroup, got {err:?}");
    };
    assert!(reason.contains("memory.usage_in_bytes"), "{reason}");
    assert!(reason.contains("/sys/fs/cgroup/memory/<group>"), "{reason}");

    // A v2 fixture opened as v1 is rejected the same way.
    assert!(matches!(
        MemoryCgroup::open_with_version(&fixture("v2/limited"), CgroupVersion::V1),
        Err(CgroupError::NotMemoryCgroup { .. })
    ));
}

#[test]
fn open_v2_root_says_to_name_a_child() {
    let err = MemoryCgroup::open_with_version(&fixture("v2/root"), CgroupVersion::V2)
        .expect_err("the root has no memory.current");
    let message = err.to_string();
    assert!(
        message.contains("root of the cgroup v2 hierarchy"),
        "{message}"
    );
    assert!(message.contains("name a child cgroup"), "{message}");
}

#[test]
fn open_v2_without_memory_controller_says_which_parent() {
    let err = MemoryCgroup::open_with_version(
        &fixture("v2/root/system.slice/cron.service"),
        CgroupVersion::V2,
    )
    .expect_err("memory not enabled by the parent");
    let message = err.to_string();
    assert!(
        message.contains("system.slice does not enable"),
        "{message}"
    );
    assert!(message.contains("`cpu pids`"), "{message}");
    assert!(message.contains("echo +memory >"), "{message}");
}

// --- removal ---

#[test]
fn removed_file_reads_as_gone() {
    let (_temp, dir) = copy_fixture("v1/limited_64m");
    let cgroup = MemoryCgroup::open_with_version(&dir, CgroupVersion::V1).expect("open copy");
    assert!(cgroup.read_snapshot().is_ok());
    fs::remove_file(dir.join("memory.usage_in_bytes")).expect("remove");
    assert!(matches!(
        cgroup.read_snapshot(),
        Err(CgroupError::Gone { path }) if path == cgroup.path()
    ));
}

#[test]
fn removed_directory_reads_as_gone_everywhere() {
    let (_temp, dir) = copy_fixture("v2/limited");
    let cgroup = MemoryCgroup::open_with_version(&dir, CgroupVersion::V2).expect("open copy");
    fs::remove_dir_all(&dir).expect("remove the copy");
    assert!(matches!(
        cgroup.read_snapshot(),
        Err(CgroupError::Gone { .. })
    ));
    assert!(matches!(
        cgroup.effective_limit(),
        Err(CgroupError::Gone { .. })
    ));
    assert!(matches!(
        cgroup.descendants(),
        Err(CgroupError::Gone { .. })
    ));
}

#[test]
fn missing_optional_files_are_not_gone() {
    let (_temp, dir) = copy_fixture("v2/limited");
    fs::remove_file(dir.join("memory.pressure")).expect("remove pressure");
    fs::remove_file(dir.join("memory.events")).expect("remove events");
    let cgroup = MemoryCgroup::open_with_version(&dir, CgroupVersion::V2).expect("open copy");
    let snapshot = cgroup.read_snapshot().expect("optional files missing");
    assert_eq!(snapshot.psi, None);
    assert_eq!(snapshot.oom_kills, None);
    assert_eq!(snapshot.usage_bytes, 240 * MIB);
}

#[test]
fn held_files_read_afresh_and_tell_removal() {
    let (_temp, dir) = copy_fixture("v1/limited_64m");
    let cgroup = MemoryCgroup::open_with_version(&dir, CgroupVersion::V1).expect("open copy");
    let mut handles = SnapshotHandles::new(CgroupVersion::V1);
    let first = cgroup.read_snapshot_held(&mut handles).expect("first read");
    assert_eq!(first, cgroup.read_snapshot().expect("read by path"));
    // The same open file, read again from the start, gives what the file says now.
    let usage = dir.join("memory.usage_in_bytes");
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&usage)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"12345678\n"))
        .expect("rewrite usage in place");
    let second = cgroup
        .read_snapshot_held(&mut handles)
        .expect("second read");
    assert_eq!(second.usage_bytes, 12_345_678);
    // An optional file this kernel lacks is left out, and not a removal.
    let (_temp2, dir2) = copy_fixture("v1/limited_64m");
    fs::remove_file(dir2.join("memory.kmem.usage_in_bytes")).expect("remove kmem");
    let other = MemoryCgroup::open_with_version(&dir2, CgroupVersion::V1).expect("open copy");
    let mut other_handles = SnapshotHandles::new(CgroupVersion::V1);
    let read = other
        .read_snapshot_held(&mut other_handles)
        .expect("no kmem");
    assert_eq!(read.kernel_bytes, None);
    // A required file missing before it was first opened: the cgroup is gone.
    fs::remove_file(dir2.join("memory.stat")).expect("remove stat");
    let mut fresh = SnapshotHandles::new(CgroupVersion::V1);
    assert!(matches!(
        other.read_snapshot_held(&mut fresh),
        Err(CgroupError::Gone { .. })
    ));
}

// --- the host tier: the running machine's real cgroups ---

/// A child of this process's memory cgroup, removed when dropped (also when a test fails).
struct ScratchCgroup(PathBuf);

impl ScratchCgroup {
    fn create(parent: &Path, tag: &str) -> Self {
        let path = parent.join(format!("profiler-test-{tag}-{}", std::process::id()));
        fs::create_dir(&path)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", path.display()));
        Self(path)
    }
}

impl Drop for ScratchCgroup {
    fn drop(&mut self) {
        if self.0.exists() {
            if let Err(err) = fs::remove_dir(&self.0) {
                eprintln!("cannot remove test cgroup {}: {err}", self.0.display());
            }
        }
    }
}

#[test]
#[ignore = "host tier (cargo xtask test): reads this process's real memory cgroup"]
fn own_memory_cgroup_is_real() {
    let path = own_memory_cgroup().expect("find this process's memory cgroup");
    assert!(path.is_dir(), "{} is not a directory", path.display());
    let cgroup = MemoryCgroup::open(&path)
        .unwrap_or_else(|err| panic!("own cgroup {} rejected: {err}", path.display()));
    assert_eq!(cgroup.id(), inode(&path));
    let snapshot = cgroup.read_snapshot().expect("read own cgroup");
    assert!(snapshot.usage_bytes > 0, "{snapshot:?}");
    cgroup.effective_limit().expect("own effective limit");
}

#[test]
#[ignore = "host tier (cargo xtask test): creates a real child memory cgroup, as root"]
fn real_child_cgroup_limit_descendants_and_removal() {
    let own_path = own_memory_cgroup().expect("find this process's memory cgroup");
    let own = MemoryCgroup::open(&own_path).expect("open own cgroup");
    if own.version() != CgroupVersion::V1 {
        // A v2 child would need `+memory` in our own cgroup.subtree_control, which the
        // no-internal-processes rule forbids while this process is in it.
        eprintln!("skipped: this process's memory cgroup is not on cgroup v1");
        return;
    }
    let scratch = ScratchCgroup::create(&own_path, "limit");
    fs::write(scratch.0.join("memory.limit_in_bytes"), "64M").expect("set the limit");

    let child = MemoryCgroup::open(&scratch.0).expect("open the child");
    let mut handles = SnapshotHandles::new(CgroupVersion::V1);
    assert_eq!(
        child
            .read_snapshot_held(&mut handles)
            .expect("held read")
            .limit_bytes,
        Some(64 * MIB)
    );
    // kernfs makes the text afresh when an open file is read again from offset 0.
    fs::write(scratch.0.join("memory.limit_in_bytes"), "32M").expect("lower the limit");
    assert_eq!(
        child
            .read_snapshot_held(&mut handles)
            .expect("held read")
            .limit_bytes,
        Some(32 * MIB)
    );
    fs::write(scratch.0.join("memory.limit_in_bytes"), "64M").expect("set the limit back");
    assert_eq!(child.version(), CgroupVersion::V1);
    assert_eq!(child.id(), inode(&scratch.0));
    let snapshot = child.read_snapshot().expect("read the child");
    assert_eq!(snapshot.limit_bytes, Some(64 * MIB));
    let expected = own
        .effective_limit()
        .expect("own limit")
        .map_or(64 * MIB, |l| l.min(64 * MIB));
    assert_eq!(child.effective_limit().ok(), Some(Some(expected)));
    let listed = own.descendants().expect("list own descendants");
    assert!(
        listed.contains(&(child.path().to_path_buf(), child.id())),
        "{listed:?}"
    );

    fs::remove_dir(&scratch.0).expect("remove the child");
    assert!(matches!(
        child.read_snapshot(),
        Err(CgroupError::Gone { .. })
    ));
    // Its files held open now fail with ENODEV: gone too, and a cgroup made again under the
    // same name is not read through them.
    fs::create_dir(&scratch.0).expect("make it again under its name");
    assert!(matches!(
        child.read_snapshot_held(&mut handles),
        Err(CgroupError::Gone { .. })
    ));
    fs::remove_dir(&scratch.0).expect("remove the new one");
    assert!(matches!(
        child.effective_limit(),
        Err(CgroupError::Gone { .. })
    ));
    assert!(matches!(child.descendants(), Err(CgroupError::Gone { .. })));
}

#[test]
#[ignore = "host tier (cargo xtask test): reads the host's real cgroup hierarchies"]
fn real_non_memory_cgroups_are_rejected() {
    // On a hybrid layout (v1 controllers, an empty v2 hierarchy at /sys/fs/cgroup/unified) the
    // v2 root exists but holds no memory controller; elsewhere the checks below do not apply.
    let unified = Path::new("/sys/fs/cgroup/unified");
    if unified.is_dir() {
        let err = MemoryCgroup::open(unified).expect_err("the v2 root");
        assert!(
            err.to_string().contains("root of the cgroup v2 hierarchy"),
            "{err}"
        );
    }
    let cpu = Path::new("/sys/fs/cgroup/cpu");
    if fs_type(cpu).ok() == Some(CGROUP_SUPER_MAGIC) {
        let err = MemoryCgroup::open(cpu).expect_err("v1 hierarchy without memory");
        assert!(err.to_string().contains("memory.usage_in_bytes"), "{err}");
    }
}
