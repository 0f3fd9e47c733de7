//! Real OCI containers run by `runc`, placed in a [`KubeNode`] where kubelet's runtime would put
//! them.
//!
//! The bundle's rootfs holds a static busybox (`/bin/sh`, `/bin/sleep`) and the statically
//! linked workload (`/bin/workload`, from `$PROFILER_STATIC_WORKLOAD`, which `cargo xtask test`
//! builds). The container's shell waits for a gate file before it execs the workload, so a test
//! can start the container, let the profiler pick its cgroup up, and only then let it allocate.
//!
//! `linux.cgroupsPath` is relative: runc's cgroupfs driver (checked with runc 1.1.5) joins a
//! relative path to runc's *own* cgroup in each hierarchy, so the memory cgroup lands below the
//! test's memcg (in the node), and the other hierarchies get `<own>/<node dir>/kubepods/...`
//! under whatever cgroup the test runs in there. An absolute path would be taken from each
//! hierarchy's root instead and leave intermediate directories outside the test's own ones.
//! runc removes the container's leaf cgroups when `runc run` ends (or on `runc delete`), but
//! not their parents; the guard removes those, in every hierarchy, up to the node directory.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cgroup::{remove_tree, Workload};
use crate::kube::{relative_to_own_memcg, Container, KubeNode, Pod};
use crate::tempdir::TempDir;
use crate::PATIENCE;

/// The file whose appearance in the rootfs lets the container's shell exec the workload.
const GATE: &str = "start-workload";

/// A runc container of a [`KubeNode`] pod, with its bundle and runc state in a temporary
/// directory. It is a guard: dropping it runs `runc delete --force` and removes the cgroups
/// runc made (only those below the node's directory) and the temporary directory.
pub struct RuncContainer {
    container: Container,
    runc: PathBuf,
    /// `linux.cgroupsPath`.
    cgroups_path: PathBuf,
    // Dropped after `Drop::drop` has deleted the container.
    dir: TempDir,
}

impl RuncContainer {
    /// Prepares (does not start) container `name` of `pod`: its kubelet log files, and a bundle
    /// whose process runs `workload <args>` once [`release`](Self::release)d, in a memory
    /// cgroup with `memory.limit_in_bytes` = `limit_bytes` at the kubelet path of the pod.
    #[track_caller]
    pub fn new(node: &KubeNode, pod: &Pod, name: &str, limit_bytes: u64, args: &[&str]) -> Self {
        let runc = find_in_path("runc").unwrap_or_else(|| {
            panic!("runc is not on PATH; `cargo xtask setup` installs it (Debian package runc)")
        });
        let busybox = static_busybox();
        let workload = static_workload_bin();
        let container = node.declare_container(pod, name);
        let cgroups_path = relative_to_own_memcg(&container);
        let dir = TempDir::new("runc");
        let this = Self {
            container,
            runc,
            cgroups_path,
            dir,
        };

        let bin = this.rootfs().join("bin");
        fs::create_dir_all(&bin)
            .unwrap_or_else(|e| panic!("could not create {}: {e}", bin.display()));
        copy(&busybox, &bin.join("busybox"));
        copy(&workload, &bin.join("workload"));
        for applet in ["sh", "sleep"] {
            let link = bin.join(applet);
            std::os::unix::fs::symlink("busybox", &link)
                .unwrap_or_else(|e| panic!("could not link {}: {e}", link.display()));
        }
        this.write_config(limit_bytes, args);
        this
    }

    /// The container as the node knows it: pod, name, id (the runc container id too) and
    /// memory cgroup.
    pub fn container(&self) -> &Container {
        &self.container
    }

    /// The container id.
    pub fn id(&self) -> &str {
        self.container.id()
    }

    fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    fn rootfs(&self) -> PathBuf {
        self.bundle().join("rootfs")
    }

    /// `runc --root <own state dir> <args>`: the test's containers are kept apart from any
    /// other runc user on the machine.
    fn runc_args(&self, args: &[&str]) -> Vec<String> {
        let mut all = vec![
            "--root".to_owned(),
            self.dir.path().join("state").display().to_string(),
        ];
        all.extend(args.iter().map(|&a| a.to_owned()));
        all
    }

    /// `runc spec`, then the changes the test needs.
    #[track_caller]
    fn write_config(&self, limit_bytes: u64, args: &[&str]) {
        let bundle = self.bundle();
        let spec = Command::new(&self.runc)
            .arg("spec")
            .current_dir(&bundle)
            .output()
            .unwrap_or_else(|e| panic!("could not run {} spec: {e}", self.runc.display()));
        assert!(
            spec.status.success(),
            "runc spec in {} failed ({}): {}",
            bundle.display(),
            spec.status,
            String::from_utf8_lossy(&spec.stderr)
        );
        let path = bundle.join("config.json");
        let text =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let mut config: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));

        let script =
            format!("while [ ! -e /{GATE} ]; do sleep 0.02; done; exec /bin/workload \"$@\"");
        let mut process_args = vec!["/bin/sh", "-c", &script, "sh"];
        process_args.extend(args);
        let process = &mut config["process"];
        process["terminal"] = Value::Bool(false);
        process["args"] = serde_json::json!(process_args);
        // Setting rlimits for the container process is refused in this sandbox (EPERM).
        if let Some(process) = process.as_object_mut() {
            process.remove("rlimits");
        }
        let linux = &mut config["linux"];
        linux["cgroupsPath"] = Value::String(
            self.cgroups_path
                .to_str()
                .expect("test cgroup paths are built from UTF-8 names")
                .to_owned(),
        );
        linux["resources"]["memory"] = serde_json::json!({ "limit": limit_bytes });

        let text = serde_json::to_string_pretty(&config).expect("a JSON value serializes");
        fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Starts `runc run` in the background; its stdout is the container's (the workload's
    /// `allocated ...` lines) and its exit status the container's.
    pub fn run(&self) -> Workload {
        let bundle = self.bundle().display().to_string();
        let args = self.runc_args(&["run", "--bundle", &bundle, self.id()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Workload::start(&self.runc, &args)
    }

    /// Waits until `runc state` says the container runs; returns its init pid (the shell,
    /// which then execs the workload in place: the same pid).
    #[track_caller]
    pub fn wait_running(&self, run: &Workload) -> u32 {
        let deadline = Instant::now() + PATIENCE;
        let mut last = String::new();
        while Instant::now() < deadline {
            let output = Command::new(&self.runc)
                .args(self.runc_args(&["state", self.id()]))
                .output()
                .unwrap_or_else(|e| panic!("could not run runc state: {e}"));
            if output.status.success() {
                let state: Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
                if state["status"] == "running" {
                    if let Some(pid) = state["pid"].as_u64().and_then(|p| u32::try_from(p).ok()) {
                        return pid;
                    }
                }
                last = String::from_utf8_lossy(&output.stdout).into_owned();
            } else {
                last = String::from_utf8_lossy(&output.stderr).into_owned();
            }
            thread::sleep(Duration::from_millis(50));
        }
        run.fail(format_args!(
            "expected `runc state {}` to say running within {PATIENCE:?}; last said: {last}",
            self.id()
        ))
    }

    /// Starts `runc events <id>` in the background: one JSON object per line (`oom`, and
    /// `stats` every 5 s). Start it once the container runs.
    pub fn events(&self) -> Workload {
        let args = self.runc_args(&["events", self.id()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Workload::start(&self.runc, &args)
    }

    /// Lets the container's shell exec the workload.
    #[track_caller]
    pub fn release(&self) {
        let gate = self.rootfs().join(GATE);
        fs::write(&gate, "").unwrap_or_else(|e| panic!("writing {}: {e}", gate.display()));
    }

    /// Deletes the container and removes its cgroups; returns what went wrong.
    fn clean_up(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match Command::new(&self.runc)
            .args(self.runc_args(&["delete", "--force", self.id()]))
            .output()
        {
            // runc 1.1 exits 0 for a container that is already gone.
            Ok(output) if output.status.success() => {}
            Ok(output) => problems.push(format!(
                "runc delete --force {} failed ({}): {}",
                self.id(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )),
            Err(e) => problems.push(format!("could not run runc delete: {e}")),
        }
        match own_cgroup_dirs() {
            Ok(hierarchies) => {
                for hierarchy in hierarchies {
                    if let Err(e) = remove_tree(&hierarchy.own.join(&self.cgroups_path)) {
                        problems.push(e);
                    }
                    // The node owns (and removes) the memory cgroups above the container.
                    if hierarchy.is_memory {
                        continue;
                    }
                    // Parents up to the node directory, as long as no other container of the
                    // test still uses them (then rmdir fails, which is fine).
                    for parent in self.cgroups_path.ancestors().skip(1) {
                        if parent.as_os_str().is_empty() {
                            break;
                        }
                        let _ = fs::remove_dir(hierarchy.own.join(parent));
                    }
                }
            }
            Err(e) => problems.push(e),
        }
        problems
    }
}

impl Drop for RuncContainer {
    fn drop(&mut self) {
        // No panic here: a test may already be panicking, and a second panic would abort.
        for problem in self.clean_up() {
            eprintln!(
                "warning: cleaning up runc container {}: {problem}",
                self.id()
            );
        }
    }
}

/// One cgroup hierarchy mounted on the machine the tests run on, and the test process's own cgroup in it.
struct Hierarchy {
    /// The directory of the test's own cgroup in this hierarchy.
    own: PathBuf,
    /// Whether it is the (v1) memory hierarchy.
    is_memory: bool,
}

/// The test's own cgroup directory in each mounted hierarchy (v1 and v2), from
/// `/proc/self/cgroup` and `/proc/self/mountinfo`.
fn own_cgroup_dirs() -> Result<Vec<Hierarchy>, String> {
    let read = |path: &str| fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"));
    let cgroups = read("/proc/self/cgroup")?;
    let mountinfo = read("/proc/self/mountinfo")?;
    // (mount root, mount point, fstype, super options)
    let mounts: Vec<(&str, &str, &str, Vec<&str>)> = mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split(' ').collect();
            let mut after = after.split(' ');
            let fstype = after.next()?;
            let _source = after.next()?;
            let options = after.next()?.split(',').collect();
            Some((*fields.get(3)?, *fields.get(4)?, fstype, options))
        })
        .filter(|(_, _, fstype, _)| *fstype == "cgroup" || *fstype == "cgroup2")
        .collect();
    let mut hierarchies = Vec::new();
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let controllers: Vec<&str> = controllers.split(',').filter(|c| !c.is_empty()).collect();
        let mount = mounts.iter().find(|(_, _, fstype, options)| {
            if id == "0" {
                *fstype == "cgroup2"
            } else {
                *fstype == "cgroup" && controllers.iter().all(|c| options.contains(c))
            }
        });
        let Some((root, point, _, _)) = mount else {
            continue;
        };
        let Ok(below) = Path::new(path).strip_prefix(root) else {
            continue;
        };
        hierarchies.push(Hierarchy {
            own: Path::new(point).join(below),
            is_memory: id != "0" && controllers.contains(&"memory"),
        });
    }
    Ok(hierarchies)
}

/// The statically linked workload: `$PROFILER_STATIC_WORKLOAD`, which `cargo xtask test` sets.
#[track_caller]
pub fn static_workload_bin() -> PathBuf {
    let Some(path) = std::env::var_os("PROFILER_STATIC_WORKLOAD") else {
        panic!(
            "PROFILER_STATIC_WORKLOAD is not set. Run the tests with `cargo xtask test`, which \
             builds a statically linked workload for the container and sets it; or build it \
             with `cargo rustc --release -p profiler-e2e --bin workload --target <host triple> \
             -- -C target-feature=+crt-static` and set PROFILER_STATIC_WORKLOAD to \
             target/<host triple>/release/workload"
        )
    };
    let path = PathBuf::from(path);
    assert_static(
        &path,
        "PROFILER_STATIC_WORKLOAD; build it as `cargo xtask test` does",
    );
    path
}

/// `busybox` from PATH, which must be statically linked (Debian's busybox-static).
#[track_caller]
pub(crate) fn static_busybox() -> PathBuf {
    let path = find_in_path("busybox").unwrap_or_else(|| {
        panic!(
            "busybox is not on PATH; `cargo xtask setup` installs it (Debian package \
             busybox-static)"
        )
    });
    assert_static(&path, "install the Debian package busybox-static");
    path
}

/// Panics unless `path` is an ELF file without a program interpreter (a static or static-pie
/// executable, which runs in a rootfs without a libc).
#[track_caller]
fn assert_static(path: &Path, hint: &str) {
    match is_static_elf(path) {
        Ok(true) => {}
        Ok(false) => panic!(
            "{} is dynamically linked; the container's rootfs has no libc ({hint})",
            path.display()
        ),
        Err(e) => panic!("{}: {e} ({hint})", path.display()),
    }
}

/// Whether the 64-bit little-endian ELF file at `path` has no `PT_INTERP` program header.
fn is_static_elf(path: &Path) -> Result<bool, String> {
    const PT_INTERP: usize = 3;
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .map_err(|e| format!("reading it: {e}"))?;
    // A little-endian unsigned field of `len` bytes at `at`.
    let field = |at: usize, len: usize| -> Result<usize, String> {
        let slice = bytes.get(at..at + len).ok_or("a truncated ELF file")?;
        let value = slice.iter().rev().fold(0u64, |n, &b| n << 8 | u64::from(b));
        usize::try_from(value).map_err(|e| format!("ELF field at {at:#x}: {e}"))
    };
    // ELF magic, ELFCLASS64, ELFDATA2LSB.
    if bytes.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return Err("not a 64-bit little-endian ELF file".to_owned());
    }
    let (phoff, phentsize, phnum) = (field(0x20, 8)?, field(0x36, 2)?, field(0x38, 2)?);
    for index in 0..phnum {
        if field(phoff + index * phentsize, 4)? == PT_INTERP {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The first executable file called `name` in a directory of PATH.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Copies `from` to `to` (permissions included).
#[track_caller]
fn copy(from: &Path, to: &Path) {
    fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), to.display()));
}
