//! The guest's initramfs: busybox-static with its applet links, the release `profiler` with
//! the shared libraries it links, the static `workload`, each kernel's zram modules under
//! `/lib/modules/<release>/` (the guest loads those of the kernel it runs), and `/init`
//! (init.sh).
//!
//! The profiler is copied as built, with its libraries (from `ldd`), rather than built a
//! second time statically: the guest then runs the very binary the host tests run, and the
//! build (which also compiles the kernel programs) is not done twice. glibc's static linking
//! would also cut the profiler off from NSS. The workload is static already (build.rs).
//!
//! Cached under `<cache>/initramfs/<key>.cpio`, the key hashing every input file's bytes, so a
//! rebuilt profiler or an edited init.sh gives a new initramfs and nothing else does.
use std::{
    collections::hash_map::DefaultHasher,
    fs,
    hash::Hasher as _,
    io::Write as _,
    os::unix::fs::{symlink, PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use super::kernels::Kernel;
use crate::{build::Binaries, setup::output_of};

/// The guest's /init.
const INIT: &str = include_str!("init.sh");

/// The scenarios init.sh sources from `/lib/vmtest/` (one file each, `scenario_NAME` in it).
const SCENARIOS: &[(&str, &str)] = &[
    ("ringloss.sh", include_str!("scenarios/ringloss.sh")),
    ("detach.sh", include_str!("scenarios/detach.sh")),
    ("pods.sh", include_str!("scenarios/pods.sh")),
];

/// A file to copy into the initramfs: where it comes from and where it goes (absolute).
struct Entry {
    from: PathBuf,
    to: String,
}

/// The shared libraries `ldd` lists for a binary: `(path ldd names, its resolved file)`,
/// the dynamic loader included, the vDSO (no file) left out.
fn shared_libraries(binary: &Path) -> Result<Vec<Entry>> {
    let listed = output_of(Command::new("ldd").arg(binary))
        .with_context(|| format!("listing the shared libraries of {}", binary.display()))?;
    parse_ldd(&listed)
        .into_iter()
        .map(|path| {
            let from = fs::canonicalize(&path).with_context(|| format!("resolving {path}"))?;
            Ok(Entry { from, to: path })
        })
        .collect()
}

/// The absolute paths in `ldd` output: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x..)`
/// and `/lib64/ld-linux-x86-64.so.2 (0x..)`; `linux-vdso.so.1 (0x..)` has none.
fn parse_ldd(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| path.to_owned())
        })
        .collect()
}

/// Each kernel's modules as `/lib/modules/<release>/NN-name.ko` (NN: the load order).
fn module_entries(kernels: &[Kernel]) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for kernel in kernels {
        for module in &kernel.modules {
            let name = module
                .file_name()
                .with_context(|| format!("{} names no file", module.display()))?;
            entries.push(Entry {
                from: module.clone(),
                to: format!("/lib/modules/{}/{}", kernel.release, name.to_string_lossy()),
            });
        }
    }
    Ok(entries)
}

/// The applets a busybox binary offers (`busybox --list`).
fn busybox_applets(busybox: &Path) -> Result<Vec<String>> {
    let listed = output_of(Command::new(busybox).arg("--list"))?;
    Ok(listed
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(str::to_owned)
        .collect())
}

/// Builds the initramfs (or finds it in the cache) and returns its path.
pub(super) fn prepare(
    bins: &Binaries,
    busybox: &Path,
    kernels: &[Kernel],
    cache: &Path,
) -> Result<PathBuf> {
    let mut files = vec![
        Entry {
            from: busybox.to_path_buf(),
            to: "/bin/busybox".into(),
        },
        Entry {
            from: bins.profiler.clone(),
            to: "/bin/profiler".into(),
        },
        Entry {
            from: bins.static_workload.clone(),
            to: "/bin/workload".into(),
        },
    ];
    files.extend(shared_libraries(&bins.profiler)?);
    // bpftool: the guest's independent count of the programs and links a watch leaves.
    let bpftool = super::which("bpftool")?;
    files.extend(shared_libraries(&bpftool)?);
    files.push(Entry {
        from: bpftool,
        to: "/bin/bpftool".into(),
    });
    files.extend(module_entries(kernels)?);

    let mut hasher = DefaultHasher::new();
    hasher.write(INIT.as_bytes());
    for (name, text) in SCENARIOS {
        hasher.write(name.as_bytes());
        hasher.write(text.as_bytes());
    }
    for entry in &files {
        let bytes =
            fs::read(&entry.from).with_context(|| format!("reading {}", entry.from.display()))?;
        hasher.write(entry.to.as_bytes());
        hasher.write(&bytes);
    }
    let dir = cache.join("initramfs");
    let image = dir.join(format!("{:016x}.cpio", hasher.finish()));
    if image.is_file() {
        return Ok(image);
    }
    eprintln!("vm-test: building {}", image.display());
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Older images are of no more use: the inputs they were built from are gone. Those of
    // the last hour are left to any other vm-test running from the same tree (its guests read
    // their image when they start).
    for old in fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age > std::time::Duration::from_secs(3600))
        })
        .map(|e| e.path())
    {
        let _ = fs::remove_file(&old).or_else(|_| fs::remove_dir_all(&old));
    }
    let root = dir.join(format!("root.{}", std::process::id()));
    stage(&root, &files, busybox)?;
    let partial = image.with_extension(format!("cpio.{}", std::process::id()));
    pack(&root, &partial)?;
    let _ = fs::remove_dir_all(&root);
    fs::rename(&partial, &image)
        .with_context(|| format!("moving {} to {}", partial.display(), image.display()))?;
    Ok(image)
}

/// Lays the guest's file system out in `root`.
fn stage(root: &Path, files: &[Entry], busybox: &Path) -> Result<()> {
    let _ = fs::remove_dir_all(root);
    for dir in ["bin", "dev", "proc", "sys", "tmp", "root", "etc"] {
        let path = root.join(dir);
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
    }
    for entry in files {
        let to = root.join(entry.to.trim_start_matches('/'));
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::copy(&entry.from, &to)
            .with_context(|| format!("copying {} to {}", entry.from.display(), to.display()))?;
    }
    for applet in busybox_applets(busybox)? {
        let link = root.join("bin").join(&applet);
        if !link.exists() {
            symlink("busybox", &link).with_context(|| format!("linking {}", link.display()))?;
        }
    }
    let scenarios = root.join("lib/vmtest");
    fs::create_dir_all(&scenarios).with_context(|| format!("creating {}", scenarios.display()))?;
    for (name, text) in SCENARIOS {
        let path = scenarios.join(name);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let init = root.join("init");
    fs::write(&init, INIT).with_context(|| format!("writing {}", init.display()))?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", init.display()))?;
    // The kernel opens /dev/console for /init before /init mounts devtmpfs; the kernel's own
    // built-in initramfs has the node too, this one does not rely on it.
    let console = root.join("dev/console");
    crate::setup::run_cmd(
        Command::new("mknod")
            .args(["-m", "600"])
            .arg(&console)
            .args(["c", "5", "1"]),
    )
    .context("creating /dev/console in the initramfs (needs root)")
}

/// Packs `root` into a newc cpio archive (uncompressed: under emulation the kernel would
/// spend longer inflating it than reading the extra megabytes).
fn pack(root: &Path, image: &Path) -> Result<()> {
    let mut names = Vec::new();
    collect(root, root, &mut names)?;
    names.sort();
    let out = fs::File::create(image).with_context(|| format!("creating {}", image.display()))?;
    let mut cpio = Command::new("cpio")
        .current_dir(root)
        .args(["--quiet", "-o", "-H", "newc", "-R", "0:0", "--reproducible"])
        .stdin(Stdio::piped())
        .stdout(out)
        .spawn()
        .context("starting cpio")?;
    let mut stdin = cpio.stdin.take().context("cpio's stdin")?;
    let written = names.iter().try_for_each(|name| writeln!(stdin, "{name}"));
    drop(stdin);
    let status = cpio.wait().context("waiting for cpio")?;
    written.context("feeding cpio its file list")?;
    if !status.success() {
        let _ = fs::remove_file(image);
        bail!("cpio failed ({status}) packing {}", root.display());
    }
    Ok(())
}

/// Every path below `dir`, relative to `root` (`bin`, `bin/busybox`, ...).
fn collect(root: &Path, dir: &Path, names: &mut Vec<String>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        let name = path
            .strip_prefix(root)
            .with_context(|| format!("{} is outside {}", path.display(), root.display()))?;
        names.push(name.display().to_string());
        if path.is_dir() && !path.is_symlink() {
            collect(root, &path, names)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd6f1e4000)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f0e1c000000)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0e1be1f000)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f0e1c94e000)\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2",
            ]
        );
        assert!(parse_ldd("\tnot a dynamic executable\n").is_empty());
    }
}
