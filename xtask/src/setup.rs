//! `cargo xtask setup`: what building the kernel programs and running the tests need,
//! installed idempotently.
//!
//! A new machine has the nightly toolchain but neither its `rust-src` (for `-Z build-std=core`
//! on the BPF target) nor `bpf-linker`. bpf-linker must use the same LLVM as the nightly's
//! rustc, so it is built against the nightly's own `libLLVM` (recipe in
//! shared/docs/ENVIRONMENT.md), with an rpath to it so it runs without LD_LIBRARY_PATH.
//!
//! The container end-to-end tests need `runc` and a static `busybox` (for the container's
//! rootfs) from the Debian archive, installed with `chromium` and `fonts-dejavu-core` for the
//! headless browser checks of the HTML report (tests/src/browser/), and `bpftool`, which the
//! host-tier BTF tests compare the profiler's reading of the kernel's BTF with.
//!
//! `cargo xtask vm-test` boots stock kernels under QEMU: it needs `qemu-system-x86` from the
//! release's backports suite (the image's `qemu-utils` comes from there, and the release's own
//! qemu conflicts with it), and `cpio` to pack the initramfs.
//!
//! The heap-ceiling tests (tests/tests/runtimes.rs) run real managed runtimes: `java` and
//! `javac` (Debian's `openjdk-17-jdk-headless`), `node` (`nodejs`) and `go` (`golang-go`, which
//! builds the tests' standard-library-only Go program offline).
//!
//! The checks of `deploy/` (tests/tests/deploy.rs) need `promtool`, from Debian's `prometheus`
//! package (which also brings the server; its service is not left running), and
//! `kubernetes-validate` from PyPI, installed with the `python3` on PATH (`python3 -m pip`, so
//! the module lands where that interpreter, and so the tests, find it).
use std::{
    env, fs,
    io::Read as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

/// The toolchain the eBPF crate is built with (aya-build's default).
pub(crate) const NIGHTLY: &str = "nightly";

/// Runs `cmd`, failing with its name when it cannot start or exits non-zero.
pub(crate) fn run_cmd(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout.
pub(crate) fn output_of(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn nightly_has_rust_src() -> Result<bool> {
    let installed = output_of(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        NIGHTLY,
    ]))?;
    Ok(installed.lines().any(|l| l.starts_with("rust-src")))
}

/// Whether `bpf-linker` is on PATH and starts (a nightly update that moved libLLVM breaks it).
fn bpf_linker_works() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn nightly_sysroot() -> Result<PathBuf> {
    let sysroot = output_of(
        Command::new("rustc")
            .arg(format!("+{NIGHTLY}"))
            .args(["--print", "sysroot"]),
    )?;
    Ok(PathBuf::from(sysroot.trim()))
}

/// The LLVM major version of the nightly rustc (`LLVM version: 22.1.4` → 22).
fn nightly_llvm_major() -> Result<u32> {
    let version = output_of(Command::new("rustc").arg(format!("+{NIGHTLY}")).arg("-vV"))?;
    let line = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("rustc +nightly -vV names no LLVM version")?;
    line.split('.')
        .next()
        .and_then(|m| m.trim().parse().ok())
        .with_context(|| format!("cannot read the LLVM major version from `{line}`"))
}

fn libllvm(sysroot: &Path) -> Result<PathBuf> {
    let lib = sysroot.join("lib");
    let mut candidates: Vec<PathBuf> = fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .collect();
    candidates.sort();
    candidates
        .pop()
        .with_context(|| format!("no libLLVM.so.* in {}", lib.display()))
}

/// Installs whatever is missing; a second run only checks (a few seconds).
pub(crate) fn run() -> Result<()> {
    if output_of(Command::new("rustup").args(["toolchain", "list"]))?
        .lines()
        .all(|l| !l.starts_with(NIGHTLY))
    {
        eprintln!("xtask setup: installing the {NIGHTLY} toolchain");
        run_cmd(Command::new("rustup").args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
        ]))?;
    }
    if !nightly_has_rust_src()? {
        eprintln!("xtask setup: adding rust-src to {NIGHTLY}");
        run_cmd(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            NIGHTLY,
        ]))?;
    }
    if !bpf_linker_works() {
        install_bpf_linker()?;
    }
    if !bpf_linker_works() {
        bail!("bpf-linker was installed but does not start; is ~/.cargo/bin on PATH?");
    }
    ensure_test_tools()?;
    ensure_runtimes()?;
    ensure_deploy_tools()?;
    ensure_vm_tools()
}

/// The Debian packages behind the tools the host tests use: the OCI runtime, and a busybox
/// that runs in a rootfs without a libc (the `busybox` package's binary is dynamic), for the
/// runc tests; the headless browser (and a font for it) that checks the HTML report; and
/// bpftool, the independent reader of the kernel's BTF the host-tier BTF tests compare with;
/// and Debian's docker.io (dockerd, containerd, runc), whose containers the deaths tests end in
/// every way (the tests start their own daemon); and stress-ng, whose `--bigheap` workers make
/// the kill storm no death may be lost in.
const TEST_PACKAGES: [&str; 7] = [
    "runc",
    "busybox-static",
    "chromium",
    "fonts-dejavu-core",
    "bpftool",
    "docker.io",
    "stress-ng",
];

/// What [`TEST_PACKAGES`] put on PATH.
const TEST_TOOLS: [&str; 6] = [
    "runc",
    "busybox",
    "chromium",
    "bpftool",
    "dockerd",
    "stress-ng",
];
/// What `fonts-dejavu-core` installs.
const BROWSER_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Installs [`TEST_PACKAGES`] with apt-get unless their tools and font are there.
fn ensure_test_tools() -> Result<()> {
    let mut missing: Vec<&str> = TEST_TOOLS
        .into_iter()
        .filter(|tool| find_in_path(tool).is_none())
        .collect();
    // The browser renders the report's text with it (the charts carry their own font).
    if !Path::new(BROWSER_FONT).is_file() {
        missing.push(BROWSER_FONT);
    }
    if !missing.is_empty() {
        eprintln!(
            "xtask setup: {} not on PATH; installing {} with apt-get",
            missing.join(" and "),
            TEST_PACKAGES.join(" ")
        );
        apt_install(&TEST_PACKAGES, &[])?;
        if let Some(tool) = TEST_TOOLS
            .into_iter()
            .find(|tool| find_in_path(tool).is_none())
        {
            bail!(
                "installed {} but `{tool}` is still not on PATH ({})",
                TEST_PACKAGES.join(" "),
                env::var("PATH").unwrap_or_default()
            );
        }
    }
    // Debian's `busybox` package is dynamic and cannot run in a rootfs without a libc;
    // `busybox-static` replaces it.
    if let Some(busybox) = find_in_path("busybox") {
        if !is_static_elf(&busybox).unwrap_or(false) {
            eprintln!(
                "xtask setup: {} is not statically linked; installing busybox-static",
                busybox.display()
            );
            apt_install(&["busybox-static"], &[])?;
        }
    }
    Ok(())
}

/// The managed runtimes the heap-ceiling tests start, each tool with the Debian package that
/// puts it on PATH.
const RUNTIME_TOOLS: [(&str, &str); 4] = [
    ("java", "openjdk-17-jdk-headless"),
    ("javac", "openjdk-17-jdk-headless"),
    ("node", "nodejs"),
    ("go", "golang-go"),
];

/// Installs the packages of the [`RUNTIME_TOOLS`] that are not on PATH.
fn ensure_runtimes() -> Result<()> {
    let missing: Vec<(&str, &str)> = RUNTIME_TOOLS
        .into_iter()
        .filter(|(tool, _)| find_in_path(tool).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|&(_, package)| package).collect();
    packages.dedup();
    eprintln!(
        "xtask setup: {} not on PATH; installing {} with apt-get",
        missing
            .iter()
            .map(|&(tool, _)| tool)
            .collect::<Vec<_>>()
            .join(" and "),
        packages.join(" ")
    );
    apt_install(&packages, &[])?;
    if let Some((tool, package)) = missing
        .into_iter()
        .find(|(tool, _)| find_in_path(tool).is_none())
    {
        bail!(
            "installed {package} but `{tool}` is still not on PATH ({})",
            env::var("PATH").unwrap_or_default()
        );
    }
    Ok(())
}

/// The PyPI requirement the manifest checks use: a fixed version, so every machine validates
/// against the same bundled Kubernetes schemas.
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";

/// Installs what the checks of `deploy/` need unless it is there: `promtool` (Debian's
/// `prometheus` package) and the `kubernetes_validate` module for the `python3` on PATH.
fn ensure_deploy_tools() -> Result<()> {
    if find_in_path("promtool").is_none() {
        eprintln!("xtask setup: promtool not on PATH; installing prometheus with apt-get");
        apt_install(&["prometheus"], &[])?;
        if find_in_path("promtool").is_none() {
            bail!(
                "installed prometheus but `promtool` is still not on PATH ({})",
                env::var("PATH").unwrap_or_default()
            );
        }
        stop_packaged_prometheus()?;
    }
    if !kubernetes_validate_works() {
        eprintln!(
            "xtask setup: the python3 on PATH has no kubernetes_validate; installing \
             {KUBERNETES_VALIDATE} with pip"
        );
        run_cmd(Command::new("python3").args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            KUBERNETES_VALIDATE,
        ]))
        .context("installing kubernetes-validate with `python3 -m pip` (PyPI)")?;
        if !kubernetes_validate_works() {
            bail!(
                "installed {KUBERNETES_VALIDATE} but `python3 -m kubernetes_validate --version` \
                 still fails"
            );
        }
    }
    Ok(())
}

/// Whether `python3 -m kubernetes_validate --version` runs: the way the tests call it, which
/// does not depend on where pip put the `kubernetes-validate` script (pyenv, for one, only
/// puts it on PATH after a rehash).
fn kubernetes_validate_works() -> bool {
    Command::new("python3")
        .args(["-m", "kubernetes_validate", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Debian's `prometheus` package enables and starts its service where it can (under systemd,
/// or through its init script when no `policy-rc.d` forbids it). The tests only need
/// `promtool`, so a server the install just started is stopped and disabled through the same
/// service manager; one that keeps running is reported, not killed.
fn stop_packaged_prometheus() -> Result<()> {
    let running = || {
        Command::new("pgrep")
            .args(["-x", "prometheus"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !running() {
        return Ok(());
    }
    eprintln!("xtask setup: the prometheus package started its service; stopping and disabling it");
    if Path::new("/run/systemd/system").is_dir() {
        run_cmd(Command::new("systemctl").args(["disable", "--now", "prometheus"]))?;
    } else if Path::new("/etc/init.d/prometheus").is_file() {
        run_cmd(Command::new("/etc/init.d/prometheus").arg("stop"))?;
        run_cmd(Command::new("update-rc.d").args(["prometheus", "disable"]))?;
    }
    if running() {
        eprintln!(
            "xtask setup: warning: a prometheus process is still running (`pgrep -x \
             prometheus`); the tests do not need it"
        );
    }
    Ok(())
}

/// `apt-get install [OPTIONS] PACKAGES`, and on failure (stale package lists on a new
/// machine) `apt-get update` and one more try.
fn apt_install(packages: &[&str], options: &[&str]) -> Result<()> {
    let apt = |args: &[&str]| {
        run_cmd(
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    let install = || {
        let mut args = vec!["install", "-y", "--no-install-recommends"];
        args.extend_from_slice(options);
        args.extend_from_slice(packages);
        apt(&args)
    };
    if let Err(first) = install() {
        eprintln!("xtask setup: {first:#}; updating the package lists and trying once more");
        apt(&["update"]).context("updating the apt package lists (needs root)")?;
        install().with_context(|| {
            format!(
                "installing {} with apt-get (needs root)",
                packages.join(" ")
            )
        })?;
    }
    Ok(())
}

/// The first executable file called `name` in a directory of PATH.
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Whether the 64-bit little-endian ELF file at `path` has no `PT_INTERP` program header, i.e.
/// runs without a dynamic loader. (The tests crate has the same check for the files it copies
/// into a container; xtask does not depend on it.)
fn is_static_elf(path: &Path) -> Result<bool> {
    const PT_INTERP: u32 = 3;
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", path.display()))?;
    let field = |at: usize, len: usize| -> Result<u64> {
        let slice = bytes
            .get(at..at + len)
            .with_context(|| format!("{} is a truncated ELF file", path.display()))?;
        Ok(slice.iter().rev().fold(0, |n, &b| n << 8 | u64::from(b)))
    };
    // ELF magic, ELFCLASS64, ELFDATA2LSB.
    if bytes.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        bail!("{} is not a 64-bit little-endian ELF file", path.display());
    }
    let phoff = usize::try_from(field(0x20, 8)?)?;
    let phentsize = usize::try_from(field(0x36, 2)?)?;
    let phnum = usize::try_from(field(0x38, 2)?)?;
    for index in 0..phnum {
        if field(phoff + index * phentsize, 4)? == u64::from(PT_INTERP) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn install_bpf_linker() -> Result<()> {
    let sysroot = nightly_sysroot()?;
    let major = nightly_llvm_major()?;
    let llvm = libllvm(&sysroot)?;
    let home = env::var_os("HOME")
        .map(PathBuf::from)
        .context("HOME is not set")?;
    // bpf-linker's build looks for `$LLVM_PREFIX/lib/libLLVM.so`; the nightly ships it under a
    // versioned name only, so a link to it is made in a prefix of our own.
    let prefix = home.join(".local/share/profiler-llvm");
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    let link = lib.join("libLLVM.so");
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&llvm, &link)
        .with_context(|| format!("linking {} to {}", link.display(), llvm.display()))?;
    eprintln!(
        "xtask setup: building bpf-linker against LLVM {major} of {} (about 2 minutes)",
        sysroot.display()
    );
    let rpath = format!("-C link-arg=-Wl,-rpath,{}", sysroot.join("lib").display());
    run_cmd(
        Command::new("cargo")
            .args([
                "install",
                "--force",
                "bpf-linker",
                "--no-default-features",
                "--features",
            ])
            .arg(format!("llvm-{major}"))
            .env("LLVM_PREFIX", &prefix)
            .env("RUSTFLAGS", rpath),
    )
}

/// Installs what `cargo xtask vm-test` needs unless it is on PATH: `qemu-system-x86_64` (from
/// the backports suite, added on the mirror the machine already uses) and `cpio`.
fn ensure_vm_tools() -> Result<()> {
    let has_qemu = find_in_path("qemu-system-x86_64").is_some();
    let has_cpio = find_in_path("cpio").is_some();
    if has_qemu && has_cpio {
        return Ok(());
    }
    if !has_cpio {
        eprintln!("xtask setup: cpio not on PATH; installing it with apt-get");
        apt_install(&["cpio"], &[])?;
    }
    if !has_qemu {
        let suite = crate::vm::backports::ensure_source()?;
        eprintln!(
            "xtask setup: qemu-system-x86_64 not on PATH; installing qemu-system-x86 from {suite}"
        );
        // `-t` prefers the suite for the package and its dependencies (qemu-system-data, ...),
        // which must match the backported qemu-utils already installed. The suite was just
        // added, so the lists are updated on the first failure.
        apt_install(&["qemu-system-x86"], &["-t", &suite])
            .with_context(|| format!("installing qemu-system-x86 from {suite}"))?;
    }
    for tool in ["qemu-system-x86_64", "cpio"] {
        if find_in_path(tool).is_none() {
            bail!("installed the VM tools but `{tool}` is still not on PATH");
        }
    }
    Ok(())
}
