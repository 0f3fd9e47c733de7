//! `cargo xtask setup`: what building the kernel programs needs, installed idempotently.
//!
//! A new machine has the nightly toolchain but neither its `rust-src` (for `-Z build-std=core`
//! on the BPF target) nor `bpf-linker`. bpf-linker must use the same LLVM as the nightly's
//! rustc, so it is built against the nightly's own `libLLVM` (recipe in
//! shared/docs/ENVIRONMENT.md), with an rpath to it so it runs without LD_LIBRARY_PATH.
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

/// The toolchain the eBPF crate is built with (aya-build's default).
pub const NIGHTLY: &str = "nightly";

/// Runs `cmd`, failing with its name when it cannot start or exits non-zero.
pub fn run_cmd(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout.
pub fn output_of(cmd: &mut Command) -> Result<String> {
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
pub fn run() -> Result<()> {
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
    Ok(())
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
