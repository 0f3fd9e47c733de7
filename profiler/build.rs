//! Builds the kernel programs (`profiler-ebpf`) for the BPF target and leaves the object in
//! `OUT_DIR/profiler`, where `src/probe/mod.rs` embeds it (`PROGRAMS`).
//!
//! This needs the nightly toolchain with `rust-src` and `bpf-linker` on `PATH`; `cargo xtask
//! setup` installs both. `AYA_BUILD_SKIP=1` skips the eBPF build (for working on pure user-space
//! code without the toolchain): the binary then carries an empty object and says so at run time.
use std::{env, fs, path::PathBuf};

use anyhow::{anyhow, Context as _};

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?);
    let object = out_dir.join("profiler");
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        fs::write(&object, b"").context("writing the empty eBPF placeholder")?;
    }
    let manifest_dir = env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let ebpf_dir = PathBuf::from(manifest_dir).join("../profiler-ebpf");
    let ebpf_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("non UTF-8 path {}", ebpf_dir.display()))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "profiler-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
