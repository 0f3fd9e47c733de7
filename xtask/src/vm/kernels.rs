//! The guest kernels: stock Debian cloud kernels, the newest of each series the machine's apt
//! sources offer, downloaded with `apt-get download` and unpacked once into the cache: the
//! `vmlinuz`, and the few modules the guest loads itself ([`modules`](super::modules)).
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use super::modules;
use crate::setup::{output_of, run_cmd};

/// A kernel series the VM test boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Series {
    /// 6.1 LTS, bookworm's own kernel: `linux-image-6.1.0-NN-cloud-amd64`.
    V6_1,
    /// 6.12 LTS, in bookworm's security suite: `linux-image-6.12.NNN+deb12-cloud-amd64`.
    V6_12,
}

impl Series {
    /// Every series, in the order they run.
    pub(super) const ALL: [Series; 2] = [Series::V6_1, Series::V6_12];

    /// The name `--kernel` takes.
    pub(super) fn name(self) -> &'static str {
        match self {
            Series::V6_1 => "6.1",
            Series::V6_12 => "6.12",
        }
    }

    /// The series `--kernel NAME` means.
    pub(super) fn parse(name: &str) -> Result<Series> {
        Series::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .with_context(|| format!("unknown kernel series `{name}` (known: 6.1, 6.12)"))
    }

    /// The part of a package name between `linux-image-` and `-cloud-amd64` whose number
    /// orders the kernels of the series: the ABI number for 6.1 (`6.1.0-57`), the stable
    /// release for 6.12 (`6.12.117+deb12`).
    fn rank(self, package: &str) -> Option<u64> {
        let middle = package
            .strip_prefix("linux-image-")?
            .strip_suffix("-cloud-amd64")?;
        let number = match self {
            Series::V6_1 => middle.strip_prefix("6.1.0-")?,
            Series::V6_12 => middle.strip_prefix("6.12.")?.strip_suffix("+deb12")?,
        };
        number.parse().ok()
    }

    /// The regular expression for `apt-cache search --names-only`.
    fn pattern(self) -> &'static str {
        match self {
            Series::V6_1 => r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64$",
            Series::V6_12 => r"^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64$",
        }
    }
}

/// A kernel ready to boot.
#[derive(Clone, Debug)]
pub(super) struct Kernel {
    /// The series it was chosen for.
    pub series: Series,
    /// The Debian package, e.g. `linux-image-6.1.0-57-cloud-amd64`.
    pub package: String,
    /// The package version, e.g. `6.1.192-3`.
    pub version: String,
    /// The release `uname -r` will print, e.g. `6.1.0-57-cloud-amd64`.
    pub release: String,
    /// The unpacked `vmlinuz` in the cache.
    pub vmlinuz: PathBuf,
    /// The modules the guest loads (zram and what it needs), decompressed, in load order;
    /// empty when the package has no zram module.
    pub modules: Vec<PathBuf>,
}

/// The newest package of `series` in the apt lists as they are (no network).
fn newest_package(series: Series) -> Result<Option<String>> {
    let found = output_of(
        Command::new("apt-cache")
            .args(["search", "--names-only"])
            .arg(series.pattern()),
    )?;
    Ok(found
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|name| series.rank(name).map(|rank| (rank, name.to_owned())))
        .max()
        .map(|(_, name)| name))
}

/// The candidate version apt would download for `package`.
fn candidate_version(package: &str) -> Result<String> {
    let shown = output_of(Command::new("apt-cache").args(["show", "--no-all-versions", package]))?;
    shown
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .map(|v| v.trim().to_owned())
        .with_context(|| format!("apt-cache show {package} names no version"))
}

/// Finds the newest kernel of each series and downloads and unpacks those not in `cache` yet
/// (`busybox` decompresses the modules).
///
/// The apt lists are refreshed first when they are more than a day old (a new machine's may
/// predate the newest kernels, or even the 6.12 series, and the archive drops superseded
/// security builds, so a stale name may no longer download); a refresh that fails (no
/// network) leaves the lists as they are, and the cache can still serve. Anything that fails
/// on lists not refreshed in this run is tried once more after `apt-get update`.
pub(super) fn prepare(series: &[Series], cache: &Path, busybox: &Path) -> Result<Vec<Kernel>> {
    let stamp = cache.join("apt-updated");
    let mut updated = false;
    if lists_age(&stamp).is_none_or(|age| age > Duration::from_secs(24 * 3600)) {
        eprintln!("vm-test: the apt lists are more than a day old; running apt-get update");
        match update_lists(&stamp) {
            Ok(()) => updated = true,
            Err(e) => eprintln!("vm-test: {e:#}; going on with the lists as they are"),
        }
    }
    match resolve(series, cache, busybox) {
        Err(e) if !updated => {
            eprintln!("vm-test: {e:#}; running apt-get update and trying once more");
            update_lists(&stamp)?;
            resolve(series, cache, busybox)
        }
        result => result,
    }
}

fn resolve(series: &[Series], cache: &Path, busybox: &Path) -> Result<Vec<Kernel>> {
    series
        .iter()
        .map(|&s| {
            let package = newest_package(s)?.with_context(|| {
                format!(
                    "no package matches {} in the apt lists; the {} series needs bookworm and \
                     bookworm-security among the apt sources",
                    s.pattern(),
                    s.name()
                )
            })?;
            fetch(s, &package, cache, busybox)
        })
        .collect()
}

/// `apt-get update`, remembered in `stamp`.
fn update_lists(stamp: &Path) -> Result<()> {
    run_cmd(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("updating the apt package lists (needs root)")?;
    if let Some(dir) = stamp.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(stamp, "").with_context(|| format!("writing {}", stamp.display()))
}

/// How long ago the apt lists were last refreshed, as far as can be told: by this task
/// (`stamp`) or by anyone (the newest list file; apt leaves a list that did not change
/// untouched, so this alone can look older than it is). `None`: never, as far as is known.
fn lists_age(stamp: &Path) -> Option<Duration> {
    let lists = fs::read_dir("/var/lib/apt/lists")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.metadata().ok());
    fs::metadata(stamp)
        .into_iter()
        .chain(lists)
        .filter_map(|m| m.modified().ok())
        .max()
        .map(|newest| newest.elapsed().unwrap_or_default())
}

/// Downloads `package` (unless its .deb is cached) and unpacks its `vmlinuz` and modules
/// (unless cached).
fn fetch(series: Series, package: &str, cache: &Path, busybox: &Path) -> Result<Kernel> {
    let version = candidate_version(package)?;
    let release = package
        .strip_prefix("linux-image-")
        .unwrap_or(package)
        .to_owned();
    // Versions hold `~` and `+`, both fine in file names; an epoch's `:` is not (kernels
    // have none, but apt-get would write it as %3a).
    let key = format!("{package}_{version}").replace(':', "%3a");
    let dir = cache.join("kernels").join(&key);
    let vmlinuz = dir.join("vmlinuz");
    let module_dir = dir.join("modules");
    let cached_modules = modules::cached(&module_dir)?;
    let modules = match cached_modules {
        Some(modules) if vmlinuz.is_file() => modules,
        cached_modules => {
            let deb = download(package, &version, &key, cache)?;
            if !vmlinuz.is_file() {
                unpack_vmlinuz(&deb, &release, &dir)?;
            }
            match cached_modules {
                Some(modules) => modules,
                None => modules::unpack(&deb, &release, &module_dir, busybox)?,
            }
        }
    };
    Ok(Kernel {
        series,
        package: package.to_owned(),
        version,
        release,
        vmlinuz,
        modules,
    })
}

/// The package's .deb in the cache, downloaded if it is not there yet.
fn download(package: &str, version: &str, key: &str, cache: &Path) -> Result<PathBuf> {
    let debs = cache.join("debs");
    fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
    let deb = debs.join(format!("{key}_amd64.deb"));
    if !deb.is_file() {
        eprintln!("vm-test: downloading {package} {version}");
        run_cmd(
            Command::new("apt-get")
                .current_dir(&debs)
                // The cache belongs to root; apt's unprivileged `_apt` user could not write it.
                .args(["-o", "APT::Sandbox::User=root", "download"])
                .arg(format!("{package}={version}")),
        )
        .with_context(|| format!("downloading {package} {version} with apt-get"))?;
        if !deb.is_file() {
            bail!(
                "apt-get download of {package} {version} did not leave {}",
                deb.display()
            );
        }
    }
    Ok(deb)
}

/// Unpacks the kernel image of `deb` as `<dir>/vmlinuz`.
fn unpack_vmlinuz(deb: &Path, release: &str, dir: &Path) -> Result<()> {
    let vmlinuz = dir.join("vmlinuz");
    let unpack = dir.with_extension("partial");
    let _ = fs::remove_dir_all(&unpack);
    fs::create_dir_all(&unpack).with_context(|| format!("creating {}", unpack.display()))?;
    let mut source = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting dpkg-deb")?;
    let stdout = source.stdout.take().context("dpkg-deb's stdout")?;
    let unpacked = run_cmd(
        Command::new("tar")
            .current_dir(&unpack)
            .args(["-x", "--wildcards", "./boot/vmlinuz-*"])
            .stdin(stdout),
    );
    let status = source.wait().context("waiting for dpkg-deb")?;
    unpacked.with_context(|| format!("unpacking boot/vmlinuz-* from {}", deb.display()))?;
    if !status.success() {
        bail!(
            "dpkg-deb --fsys-tarfile {} failed ({status})",
            deb.display()
        );
    }
    let image = unpack.join("boot").join(format!("vmlinuz-{release}"));
    if !image.is_file() {
        bail!(
            "{} holds no boot/vmlinuz-{release}; the package layout changed",
            deb.display()
        );
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::rename(&image, &vmlinuz)
        .with_context(|| format!("moving {} to {}", image.display(), vmlinuz.display()))?;
    let _ = fs::remove_dir_all(&unpack);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_order_packages_within_a_series() {
        let s = Series::V6_1;
        assert_eq!(s.rank("linux-image-6.1.0-57-cloud-amd64"), Some(57));
        assert_eq!(s.rank("linux-image-6.1.0-9-cloud-amd64"), Some(9));
        assert_eq!(s.rank("linux-image-6.1.0-57-cloud-amd64-dbg"), None);
        assert_eq!(s.rank("linux-image-6.12.117+deb12-cloud-amd64"), None);
        let s = Series::V6_12;
        assert_eq!(s.rank("linux-image-6.12.117+deb12-cloud-amd64"), Some(117));
        assert_eq!(
            s.rank("linux-image-6.12.117+deb12-cloud-amd64-unsigned"),
            None
        );
        assert_eq!(s.rank("linux-image-6.1.0-57-cloud-amd64"), None);
        assert_eq!(Series::parse("6.12").ok(), Some(Series::V6_12));
        assert!(Series::parse("5.15").is_err());
    }
}
