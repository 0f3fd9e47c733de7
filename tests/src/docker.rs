//! A private Docker daemon for the tests: Debian's `dockerd` (with the containerd and runc it
//! starts), its own data root, exec root, socket and pid file in a temporary directory, its
//! containers' memory cgroups under a cgroup of the test's own memcg (`--cgroup-parent`, the
//! cgroupfs driver), and an image imported from a rootfs of static busybox and the static
//! workload (no registry is reachable). Dropping it removes the containers, stops the daemon
//! by its pid, and removes what it left: also when a test fails.
use std::{
    ffi::CString,
    fs,
    io::Write as _,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{
    cgroup::{remove_tree, TestCgroup},
    profiler::Profiler,
    runc::{static_busybox, static_workload_bin},
    tempdir::TempDir,
};

/// Debian's docker client, which speaks the API of Debian's dockerd (a newer client elsewhere on
/// PATH may not).
const DOCKER: &str = "/usr/bin/docker";
/// Debian's dockerd.
const DOCKERD: &str = "/usr/sbin/dockerd";
/// The image every test container runs.
pub const IMAGE: &str = "profiler-test:busybox";
/// How long the daemon may take to answer, and to stop.
const PATIENCE: Duration = Duration::from_secs(60);

/// A running private dockerd.
pub struct Dockerd {
    /// Holds `var/lib/docker` (the data root, where the profiler's `--runtime-state` finds
    /// container names), `exec/`, the socket, the pid file and the daemon's log.
    dir: TempDir,
    /// The containers' cgroup parent.
    parent: TestCgroup,
    daemon: std::process::Child,
}

impl Dockerd {
    /// Starts a daemon and imports [`IMAGE`]; panics with the daemon's log if it does not come
    /// up.
    #[track_caller]
    pub fn start(name: &str) -> Self {
        for tool in [DOCKER, DOCKERD] {
            assert!(
                Path::new(tool).is_file(),
                "{tool} is missing: `cargo xtask setup` installs Debian's docker.io"
            );
        }
        let dir = TempDir::new(&format!("docker-{name}"));
        let parent = TestCgroup::without_limit(&format!("docker-{name}"));
        let root = dir.path();
        let data = root.join("var/lib/docker");
        let exec = root.join("exec");
        for d in [&data, &exec] {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        let log = fs::File::create(root.join("dockerd.log"))
            .unwrap_or_else(|e| panic!("dockerd.log: {e}"));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("dockerd.log: {e}"));
        let daemon = Command::new(DOCKERD)
            .arg("--data-root")
            .arg(&data)
            .arg("--exec-root")
            .arg(&exec)
            .arg("--host")
            .arg(format!("unix://{}", root.join("docker.sock").display()))
            .arg("--pidfile")
            .arg(root.join("dockerd.pid"))
            .args(["--bridge", "none", "--iptables=false", "--ip-forward=false"])
            // vfs: no overlay mounts to leave behind, and the image is small.
            .args(["--storage-driver", "vfs"])
            .arg("--cgroup-parent")
            .arg(cgroup_parent(parent.path()))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {DOCKERD}: {e}"));
        let dockerd = Self {
            dir,
            parent,
            daemon,
        };
        let deadline = Instant::now() + PATIENCE;
        while !dockerd.docker(&["info"]).status.success() {
            if Instant::now() > deadline {
                dockerd.fail("dockerd did not answer");
            }
            thread::sleep(Duration::from_millis(200));
        }
        dockerd.import_image();
        dockerd
    }

    /// `docker <args>` against this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new(DOCKER)
            .arg("--host")
            .arg(format!(
                "unix://{}",
                self.dir.path().join("docker.sock").display()
            ))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {DOCKER}: {e}"))
    }

    /// `docker <args>`, which must succeed; its stdout, trimmed.
    #[track_caller]
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        if !out.status.success() {
            self.fail(format_args!(
                "docker {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `docker inspect -f FORMAT container`.
    #[track_caller]
    pub fn inspect(&self, container: &str, format: &str) -> String {
        self.docker_ok(&["inspect", "--format", format, container])
    }

    /// `profiler watch` over this daemon's containers (their names from its data root) with
    /// `args`.
    pub fn watch(&self, args: &[&str]) -> Profiler {
        let all = self.profiler_args(args);
        Profiler::watch(&all.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// The profiler's options for this daemon's containers (the whole memory hierarchy as
    /// the cgroup root, their names from the daemon's state), then `args`.
    pub fn profiler_args(&self, args: &[&str]) -> Vec<String> {
        let mut all = vec![
            "--cgroup-root".to_owned(),
            crate::cgroup::MEMORY_ROOT.to_owned(),
            "--runtime-state".to_owned(),
            self.runtime_state().display().to_string(),
        ];
        all.extend(args.iter().map(|&a| a.to_owned()));
        all
    }

    /// The root the daemon keeps its state under (`var/lib/docker` below it), for the
    /// profiler's `--runtime-state`, which names containers from it.
    pub fn runtime_state(&self) -> &Path {
        self.dir.path()
    }

    /// The memory cgroup the daemon puts its containers under.
    pub fn cgroup_parent(&self) -> &Path {
        self.parent.path()
    }

    /// A rootfs of static busybox (`sh`, `sleep`, `true`, ...) and the static workload,
    /// imported as [`IMAGE`].
    #[track_caller]
    fn import_image(&self) {
        let rootfs = self.dir.path().join("rootfs");
        let bin = rootfs.join("bin");
        fs::create_dir_all(&bin).unwrap_or_else(|e| panic!("mkdir {}: {e}", bin.display()));
        for (from, to) in [
            (static_busybox(), "busybox"),
            (static_workload_bin(), "workload"),
        ] {
            fs::copy(&from, bin.join(to))
                .unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
        }
        for applet in ["sh", "sleep", "true", "false", "cat", "echo"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet))
                .unwrap_or_else(|e| panic!("linking {applet}: {e}"));
        }
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["-c", "."])
            .output()
            .unwrap_or_else(|e| panic!("tar: {e}"));
        assert!(tar.status.success(), "tar failed: {tar:?}");
        let mut import = Command::new(DOCKER)
            .arg("--host")
            .arg(format!(
                "unix://{}",
                self.dir.path().join("docker.sock").display()
            ))
            .args(["import", "-", IMAGE])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("docker import: {e}"));
        if let Some(mut stdin) = import.stdin.take() {
            stdin
                .write_all(&tar.stdout)
                .unwrap_or_else(|e| panic!("feeding docker import: {e}"));
        }
        let out = import
            .wait_with_output()
            .unwrap_or_else(|e| panic!("docker import: {e}"));
        if !out.status.success() {
            self.fail(format_args!(
                "docker import failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }

    /// Panics with `message` and the daemon's log.
    #[track_caller]
    pub fn fail(&self, message: impl std::fmt::Display) -> ! {
        let log = fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "{message}\n  dockerd's log (last lines):\n{}",
            tail.join("\n")
        )
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // The containers first: their processes and cgroups go with them.
        let ids = self.docker(&["ps", "-aq"]);
        let ids = String::from_utf8_lossy(&ids.stdout).to_string();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _removed = self.docker(&args);
        }
        // Then the daemon, by the pid this harness started it with; it stops its containerd.
        if let Ok(pid) = i32::try_from(self.daemon.id()) {
            // SAFETY: kill(2) on the child this harness started and has not reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.daemon.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _killed = self.daemon.kill();
                    let _reaped = self.daemon.wait();
                    break;
                }
                Ok(None) => thread::sleep(Duration::from_millis(100)),
            }
        }
        // A container on the host's network (`--network host`) makes the daemon bind-mount the
        // host's network namespace at `exec/netns/default`, and it leaves the mount behind when
        // it stops: unmounted here, or the directory could not be removed.
        let netns = self.dir.path().join("exec/netns/default");
        if let Ok(path) = CString::new(netns.as_os_str().as_bytes()) {
            // SAFETY: umount2(2) on a NUL-terminated path in this daemon's directory; the error
            // when nothing is mounted there is of no interest.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
        // The cgroupfs driver makes the cgroup parent in every hierarchy; the `parent` guard
        // removes the memory one (after this), the others go here.
        for dir in parent_in_other_hierarchies(self.parent.path()) {
            if let Err(e) = remove_tree(&dir) {
                eprintln!("warning: {e}");
            }
        }
    }
}

/// The directories the daemon makes for the cgroup parent `memcg` (a memory cgroup) in the
/// other mounted hierarchies (the v1 controllers but memory, and v2): the same path from each
/// hierarchy's root.
fn parent_in_other_hierarchies(memcg: &Path) -> Vec<PathBuf> {
    let parent = cgroup_parent(memcg);
    let Ok(relative) = parent.strip_prefix("/") else {
        return Vec::new();
    };
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split(' ').collect();
            let (root, point) = (*fields.get(3)?, *fields.get(4)?);
            let mut after = after.split(' ');
            let fstype = after.next()?;
            let options = after.nth(1)?;
            let memory = options.split(',').any(|option| option == "memory");
            let other = fstype == "cgroup2" || (fstype == "cgroup" && !memory);
            (other && root == "/").then(|| Path::new(point).join(relative))
        })
        .collect()
}

/// `path` as the memory hierarchy names it (`/process_api/.../profiler-e2e-docker-...`):
/// what `--cgroup-parent` takes with the cgroupfs driver.
fn cgroup_parent(path: &Path) -> PathBuf {
    let root = Path::new(crate::cgroup::MEMORY_ROOT);
    Path::new("/").join(path.strip_prefix(root).unwrap_or(path))
}
