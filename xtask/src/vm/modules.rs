//! The kernel modules a guest loads itself: zram, the swap device of the swap scenario, and
//! what it needs, taken from the kernel's package and decompressed, so that busybox's `insmod`
//! loads them without `modprobe`, `depmod` or a module tree in the guest.
//!
//! Debian builds zram as a module (`CONFIG_ZRAM=m`). What it needs loaded first is what its
//! `depends=` names (zsmalloc; on 6.12 also the lz4 libraries its own backends call) and,
//! where zram compresses through the crypto API (before 6.12: no `CONFIG_ZRAM_BACKEND_*`), the
//! module of its default algorithm (`lzo-rle` on 6.1): the kernel asks `modprobe` for it when
//! the disk size is set, and the guest has no `modprobe`. The rest of the package's modules
//! (hundreds of MB) stays packed.
//!
//! The modules are cached as `<dir>/NN-name.ko`, NN the load order, so the guest loads
//! `/lib/modules/$(uname -r)/*.ko` in the order its shell sorts them. A package without
//! `zram.ko` (zram built in, or not there at all) gives an empty directory: the guest tells
//! which.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use crate::setup::run_cmd;

/// The module the guest needs.
const ZRAM: &str = "zram";

/// The cached modules in `dir`, in load order; `None` when they were never unpacked.
pub(super) fn cached(dir: &Path) -> Result<Option<Vec<PathBuf>>> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ko"))
        .collect();
    files.sort();
    Ok(Some(files))
}

/// Unpacks zram and what it needs from `deb` (the package of kernel `release`) into `dir`,
/// decompressing `.ko.xz` with `busybox unxz` (vm-test needs busybox anyway; xz-utils is not
/// on every machine), and returns them in load order.
pub(super) fn unpack(
    deb: &Path,
    release: &str,
    dir: &Path,
    busybox: &Path,
) -> Result<Vec<PathBuf>> {
    let stage = dir.with_extension("partial");
    let _ = fs::remove_dir_all(&stage);
    fs::create_dir_all(&stage).with_context(|| format!("creating {}", stage.display()))?;
    let listing = list(deb)?;
    let known = module_paths(&listing, release);
    let mut order = Vec::new();
    if let Some(zram) = known.get(ZRAM) {
        let config = format!("./boot/config-{release}");
        let mut first = vec![zram.clone()];
        let has_config = listing.contains(&config);
        if has_config {
            first.push(config.clone());
        }
        extract(deb, &first, &stage)?;
        let config_text = if has_config {
            fs::read_to_string(stage.join(&config))
                .with_context(|| format!("reading {config} from {}", deb.display()))?
        } else {
            String::new()
        };
        let mut roots: Vec<String> = crypto_compressor(&config_text)
            .map(|c| normalize(&c))
            .filter(|c| known.contains_key(c))
            .into_iter()
            .collect();
        roots.push(ZRAM.to_owned());
        let depends = resolve(deb, &known, &roots, &stage, busybox)?;
        order = load_order(&roots, &depends);
    }
    for (i, name) in order.iter().enumerate() {
        let from = stage.join(format!("{name}.ko"));
        let to = stage.join(format!("{:02}-{name}.ko", i + 1));
        fs::rename(&from, &to)
            .with_context(|| format!("renaming {} to {}", from.display(), to.display()))?;
    }
    // What tar unpacked (./lib, ./boot) is of no more use.
    for entry in fs::read_dir(&stage).with_context(|| format!("reading {}", stage.display()))? {
        let path = entry
            .with_context(|| format!("reading {}", stage.display()))?
            .path();
        if path.is_dir() {
            fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    let _ = fs::remove_dir_all(dir);
    fs::rename(&stage, dir)
        .with_context(|| format!("moving {} to {}", stage.display(), dir.display()))?;
    let modules = cached(dir)?.unwrap_or_default();
    eprintln!(
        "vm-test: modules for the swap scenario from {}: {}",
        deb.display(),
        if modules.is_empty() {
            "none (no zram.ko in the package)".to_owned()
        } else {
            order.join(", ")
        }
    );
    Ok(modules)
}

/// Extracts `roots` and everything they depend on into `stage` as `<name>.ko`, a pass over the
/// package per level of dependencies; returns each module's `depends=`.
fn resolve(
    deb: &Path,
    known: &BTreeMap<String, String>,
    roots: &[String],
    stage: &Path,
    busybox: &Path,
) -> Result<BTreeMap<String, Vec<String>>> {
    let mut depends: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut extracted: BTreeSet<String> = BTreeSet::from([ZRAM.to_owned()]);
    let mut pending: Vec<String> = roots.to_vec();
    while !pending.is_empty() {
        let missing: Vec<String> = pending
            .iter()
            .filter(|n| !extracted.contains(*n))
            .cloned()
            .collect();
        if !missing.is_empty() {
            let paths = missing
                .iter()
                .map(|n| {
                    known.get(n).cloned().with_context(|| {
                        format!(
                            "zram needs module {n}, which {} does not hold",
                            deb.display()
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            extract(deb, &paths, stage)?;
            extracted.extend(missing);
        }
        let mut next = Vec::new();
        for name in pending {
            if depends.contains_key(&name) {
                continue;
            }
            let archived = known
                .get(&name)
                .with_context(|| format!("{} holds no module {name}", deb.display()))?;
            let ko = stage.join(format!("{name}.ko"));
            decompress(&stage.join(archived), &ko, busybox)?;
            let bytes = fs::read(&ko).with_context(|| format!("reading {}", ko.display()))?;
            let needs = modinfo_depends(&bytes);
            next.extend(needs.iter().filter(|d| !depends.contains_key(*d)).cloned());
            depends.insert(name, needs);
        }
        pending = next;
    }
    Ok(depends)
}

/// Every path in the package's file system.
fn list(deb: &Path) -> Result<Vec<String>> {
    let listed = from_package(deb, Command::new("tar").arg("-t"))?;
    Ok(listed.lines().map(str::to_owned).collect())
}

/// Extracts `paths` of the package into `into`.
fn extract(deb: &Path, paths: &[String], into: &Path) -> Result<()> {
    from_package(
        deb,
        Command::new("tar").current_dir(into).arg("-x").args(paths),
    )
    .map(drop)
    .with_context(|| format!("unpacking {} from {}", paths.join(", "), deb.display()))
}

/// Runs `tar` on the package's file system (`dpkg-deb --fsys-tarfile`) and returns its stdout.
fn from_package(deb: &Path, tar: &mut Command) -> Result<String> {
    let mut source = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting dpkg-deb")?;
    let stdout = source.stdout.take().context("dpkg-deb's stdout")?;
    let out = tar
        .stdin(stdout)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {tar:?}"));
    let status = source.wait().context("waiting for dpkg-deb")?;
    let out = out?;
    if !out.status.success() {
        bail!("{tar:?} on {} failed ({})", deb.display(), out.status);
    }
    if !status.success() {
        bail!(
            "dpkg-deb --fsys-tarfile {} failed ({status})",
            deb.display()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Writes the module `from` (`.ko` or `.ko.xz`) to `to`, uncompressed.
fn decompress(from: &Path, to: &Path, busybox: &Path) -> Result<()> {
    if from.extension().is_some_and(|x| x == "ko") {
        return fs::rename(from, to)
            .with_context(|| format!("moving {} to {}", from.display(), to.display()));
    }
    let out = fs::File::create(to).with_context(|| format!("creating {}", to.display()))?;
    run_cmd(
        Command::new(busybox)
            .args(["unxz", "-c"])
            .arg(from)
            .stdout(out),
    )
    .with_context(|| format!("decompressing {}", from.display()))
}

/// The package's modules by name (`-` as `_`, as the kernel names them): the path in the
/// package of each `[usr/]lib/modules/<release>/kernel/**/NAME.ko` or `NAME.ko.xz`.
fn module_paths(listing: &[String], release: &str) -> BTreeMap<String, String> {
    // `/usr/lib/modules` in the packages of 7.x on (merged /usr).
    let prefixes = [
        format!("./lib/modules/{release}/kernel/"),
        format!("./usr/lib/modules/{release}/kernel/"),
    ];
    listing
        .iter()
        .filter(|p| prefixes.iter().any(|prefix| p.starts_with(prefix)))
        .filter_map(|p| {
            let file = p.rsplit('/').next()?;
            let name = file
                .strip_suffix(".ko")
                .or_else(|| file.strip_suffix(".ko.xz"))?;
            Some((normalize(name), p.clone()))
        })
        .collect()
}

/// A module name as the kernel spells it: `lzo-rle.ko` is module `lzo_rle`.
fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The modules a module names in its `.modinfo` as `depends=a,b` (empty: none). The section is
/// a list of NUL-terminated `key=value` strings; the key is searched for after a NUL rather
/// than by reading the ELF headers, which no other key or string of a module ends in.
fn modinfo_depends(module: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(at) = module.windows(KEY.len()).position(|w| w == KEY) else {
        return Vec::new();
    };
    let value = &module[at + KEY.len()..];
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end])
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(normalize)
        .collect()
}

/// The crypto algorithm zram compresses with when it goes through the crypto API: the
/// kernel's `CONFIG_ZRAM_DEF_COMP`, unless zram has backends of its own
/// (`CONFIG_ZRAM_BACKEND_*=y`, since 6.12), which its `depends=` covers.
fn crypto_compressor(config: &str) -> Option<String> {
    let own_backends = config
        .lines()
        .any(|l| l.starts_with("CONFIG_ZRAM_BACKEND_") && l.ends_with("=y"));
    if own_backends {
        return None;
    }
    config.lines().find_map(|l| {
        let value = l.strip_prefix("CONFIG_ZRAM_DEF_COMP=")?;
        let value = value.trim().trim_matches('"');
        (!value.is_empty()).then(|| value.to_owned())
    })
}

/// `roots` with everything they depend on, each after what it depends on, each once.
fn load_order(roots: &[String], depends: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    fn visit(
        name: &str,
        depends: &BTreeMap<String, Vec<String>>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(name.to_owned()) {
            return;
        }
        for dep in depends.get(name).into_iter().flatten() {
            visit(dep, depends, seen, order);
        }
        order.push(name.to_owned());
    }
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for root in roots {
        visit(root, depends, &mut seen, &mut order);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_paths_name_the_modules_of_the_release() {
        let listing: Vec<String> = [
            "./boot/config-6.12.117+deb12-cloud-amd64",
            "./lib/modules/6.12.117+deb12-cloud-amd64/kernel/drivers/block/zram/",
            "./lib/modules/6.12.117+deb12-cloud-amd64/kernel/drivers/block/zram/zram.ko.xz",
            "./lib/modules/6.12.117+deb12-cloud-amd64/kernel/lib/lz4/lz4_compress.ko.xz",
            "./lib/modules/6.1.0-57-cloud-amd64/kernel/crypto/lzo-rle.ko",
            "./lib/modules/6.12.117+deb12-cloud-amd64/modules.order",
        ]
        .map(str::to_owned)
        .to_vec();
        let known = module_paths(&listing, "6.12.117+deb12-cloud-amd64");
        assert_eq!(known.len(), 2, "{known:?}");
        assert!(known["zram"].ends_with("zram/zram.ko.xz"));
        let known = module_paths(&listing, "6.1.0-57-cloud-amd64");
        assert!(known["lzo_rle"].ends_with("crypto/lzo-rle.ko"));
    }

    #[test]
    fn depends_come_from_the_modinfo_strings() {
        let module = b"\x7fELF..\0license=GPL\0depends=zsmalloc,lz4hc_compress,lz4_compress\0\
                       retpoline=Y\0name=zram\0vermagic=6.12.117\0";
        assert_eq!(
            modinfo_depends(module),
            vec!["zsmalloc", "lz4hc_compress", "lz4_compress"]
        );
        assert!(modinfo_depends(b"\0license=GPL\0depends=\0name=zsmalloc\0").is_empty());
        assert!(modinfo_depends(b"no modinfo").is_empty());
    }

    #[test]
    fn the_crypto_compressor_only_without_zrams_own_backends() {
        let v6_1 =
            "CONFIG_ZRAM=m\nCONFIG_ZRAM_DEF_COMP_LZORLE=y\nCONFIG_ZRAM_DEF_COMP=\"lzo-rle\"\n";
        assert_eq!(crypto_compressor(v6_1).as_deref(), Some("lzo-rle"));
        let v6_12 = "CONFIG_ZRAM_BACKEND_LZ4=y\n# CONFIG_ZRAM_BACKEND_842 is not set\n\
                     CONFIG_ZRAM_DEF_COMP=\"lz4\"\n";
        assert_eq!(crypto_compressor(v6_12), None);
        assert_eq!(crypto_compressor(""), None);
    }

    #[test]
    fn dependencies_load_first_and_once() {
        let depends: BTreeMap<String, Vec<String>> = [
            ("zram", vec!["zsmalloc", "lz4hc_compress", "lz4_compress"]),
            ("lz4hc_compress", vec![]),
            ("lz4_compress", vec![]),
            ("zsmalloc", vec![]),
            ("lzo_rle", vec![]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
        .collect();
        let roots = [
            "lzo_rle".to_owned(),
            "zram".to_owned(),
            "zsmalloc".to_owned(),
        ];
        assert_eq!(
            load_order(&roots, &depends),
            vec![
                "lzo_rle",
                "zsmalloc",
                "lz4hc_compress",
                "lz4_compress",
                "zram"
            ]
        );
    }
}
