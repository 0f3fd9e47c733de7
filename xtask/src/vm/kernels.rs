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

use super::{
    apt::{Apt, Suite},
    backports, modules,
};
use crate::setup::{output_of, run_cmd};

/// A kernel series the VM test boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Series {
    /// 5.10 LTS, bullseye's kernel: `linux-image-5.10.0-NN-cloud-amd64` (bullseye and
    /// bullseye-security).
    V5_10,
    /// 6.1 LTS, bookworm's own kernel: `linux-image-6.1.0-NN-cloud-amd64`.
    V6_1,
    /// 6.12 LTS, in bookworm's security suite: `linux-image-6.12.NNN+deb12-cloud-amd64`.
    V6_12,
    /// The newest kernel of trixie-backports: `linux-image-6.NN.N+deb13-cloud-amd64`.
    Backports,
    /// The newest kernel of sid: `linux-image-N.N.N+debNN-cloud-amd64`.
    Sid,
}

impl Series {
    /// Every series, in the order they run.
    pub(super) const ALL: [Series; 5] = [
        Series::V5_10,
        Series::V6_1,
        Series::V6_12,
        Series::Backports,
        Series::Sid,
    ];

    /// The name `--kernel` takes.
    pub(super) fn name(self) -> &'static str {
        match self {
            Series::V5_10 => "5.10",
            Series::V6_1 => "6.1",
            Series::V6_12 => "6.12",
            Series::Backports => "backports",
            Series::Sid => "sid",
        }
    }

    /// The series `--kernel NAME` means.
    pub(super) fn parse(name: &str) -> Result<Series> {
        let name = name.strip_prefix("trixie-").unwrap_or(name);
        Series::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .with_context(|| {
                format!(
                    "unknown kernel series `{name}` (known: {})",
                    Series::ALL.map(Series::name).join(", ")
                )
            })
    }

    /// Whether the guest runs the memory controller on cgroup v1 rather than pure v2: the two
    /// oldest, as older nodes do. With 6.12 (fentry) and the newest two (tracepoints) on v2,
    /// every charge-path mode then meets both versions: 5.10 has no fentry mode (it predates
    /// `bpf_get_func_arg`) and runs kprobes, 6.1 runs fentry, the host runs tracepoints on v1.
    pub(super) fn cgroup_v1(self) -> bool {
        matches!(self, Series::V5_10 | Series::V6_1)
    }

    /// What orders the kernels of the series, from the package name: the ABI number for the
    /// `X.Y.0-NN` series (`5.10.0-37`, `6.1.0-57`), the release's numbers for the others
    /// (`6.12.117+deb12`, `6.19.3+deb13`, `7.2.1+deb14`). `None`: not a kernel of the series.
    fn rank(self, package: &str) -> Option<Vec<u64>> {
        let middle = package
            .strip_prefix("linux-image-")?
            .strip_suffix("-cloud-amd64")?;
        let numbers = |text: &str| {
            text.split('.')
                .map(|n| n.parse::<u64>().ok())
                .collect::<Option<Vec<u64>>>()
        };
        match self {
            Series::V5_10 => numbers(middle.strip_prefix("5.10.0-")?),
            Series::V6_1 => numbers(middle.strip_prefix("6.1.0-")?),
            Series::V6_12 => numbers(middle.strip_prefix("6.12.")?.strip_suffix("+deb12")?),
            Series::Backports => numbers(middle.strip_suffix("+deb13")?),
            Series::Sid => {
                let (release, deb) = middle.split_once("+deb")?;
                deb.parse::<u64>().ok()?;
                numbers(release).filter(|n| n.len() == 3)
            }
        }
    }

    /// The regular expression for `apt-cache search --names-only`.
    fn pattern(self) -> &'static str {
        match self {
            Series::V5_10 => r"^linux-image-5\.10\.0-[0-9]+-cloud-amd64$",
            Series::V6_1 => r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64$",
            Series::V6_12 => r"^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64$",
            Series::Backports => r"^linux-image-[0-9]+\.[0-9]+\.[0-9]+\+deb13-cloud-amd64$",
            Series::Sid => r"^linux-image-[0-9]+\.[0-9]+\.[0-9]+\+deb[0-9]+-cloud-amd64$",
        }
    }

    /// Where its packages are listed: the machine's own lists for bookworm's series, private
    /// lists of the suites on the machine's mirror for the others.
    fn apt(self, cache: &Path) -> Result<Apt> {
        let (uri, key) = match self {
            Series::V6_1 | Series::V6_12 => return Ok(Apt::host(cache)),
            _ => backports::mirror_for("")?,
        };
        let suite = |suite| Suite {
            uri: &uri,
            suite,
            signed_by: key.as_deref(),
        };
        match self {
            Series::V5_10 => {
                let (security, security_key) = backports::mirror_for("-security")?;
                Apt::private(
                    cache,
                    "bullseye",
                    &[
                        suite("bullseye"),
                        Suite {
                            uri: &security,
                            suite: "bullseye-security",
                            signed_by: security_key.as_deref(),
                        },
                    ],
                )
            }
            Series::Backports => {
                Apt::private(cache, "trixie-backports", &[suite("trixie-backports")])
            }
            _ => Apt::private(cache, "sid", &[suite("sid")]),
        }
    }

    /// The suites that list it, for messages.
    fn suites(self) -> &'static str {
        match self {
            Series::V5_10 => "bullseye and bullseye-security",
            Series::V6_1 => "bookworm",
            Series::V6_12 => "bookworm-security",
            Series::Backports => "trixie-backports",
            Series::Sid => "sid",
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
fn newest_package(apt: &Apt, series: Series) -> Result<Option<String>> {
    let found = output_of(
        apt.command("apt-cache")
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
fn candidate_version(apt: &Apt, package: &str) -> Result<String> {
    let shown = output_of(
        apt.command("apt-cache")
            .args(["show", "--no-all-versions", package]),
    )?;
    shown
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .map(|v| v.trim().to_owned())
        .with_context(|| format!("apt-cache show {package} names no version"))
}

/// Finds the newest kernel of each series and downloads and unpacks those not in `cache` yet
/// (`busybox` decompresses the modules).
///
/// A series' lists are refreshed first when they are more than a day old (a new machine's may
/// predate the newest kernels, or even the 6.12 series, and the archive drops superseded
/// security builds, so a stale name may no longer download); a refresh that fails (no
/// network) leaves the lists as they are, and the cache can still serve. Anything that fails
/// on lists not refreshed in this run is tried once more after `apt-get update`.
pub(super) fn prepare(series: &[Series], cache: &Path, busybox: &Path) -> Result<Vec<Kernel>> {
    series
        .iter()
        .map(|&s| {
            let apt = s.apt(cache)?;
            let mut updated = false;
            if apt
                .lists_age()
                .is_none_or(|age| age > Duration::from_secs(24 * 3600))
            {
                eprintln!(
                    "vm-test: the lists of {} are more than a day old; running apt-get update",
                    s.suites()
                );
                match apt.update() {
                    Ok(()) => updated = true,
                    Err(e) => eprintln!("vm-test: {e:#}; going on with the lists as they are"),
                }
            }
            match resolve(&apt, s, cache, busybox) {
                Err(e) if !updated => {
                    eprintln!("vm-test: {e:#}; running apt-get update and trying once more");
                    apt.update()?;
                    resolve(&apt, s, cache, busybox)
                }
                result => result,
            }
        })
        .collect()
}

fn resolve(apt: &Apt, series: Series, cache: &Path, busybox: &Path) -> Result<Kernel> {
    let package = newest_package(apt, series)?.with_context(|| {
        format!(
            "no package matches {} in the lists of {}",
            series.pattern(),
            series.suites()
        )
    })?;
    fetch(apt, series, &package, cache, busybox)
}

/// Downloads `package` (unless its .deb is cached) and unpacks its `vmlinuz` and modules
/// (unless cached).
fn fetch(apt: &Apt, series: Series, package: &str, cache: &Path, busybox: &Path) -> Result<Kernel> {
    let version = candidate_version(apt, package)?;
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
            let deb = download(apt, package, &version, &key, cache)?;
            // Since 7.x Debian splits a kernel: `linux-image-R` only depends on
            // `linux-binary-R` (the image) and `linux-modules-R` (the modules).
            let (image_deb, modules_deb) = if vmlinuz_member(&deb, &release)?.is_some() {
                (deb.clone(), deb)
            } else {
                let part = |name: String| -> Result<PathBuf> {
                    let version = candidate_version(apt, &name)?;
                    let key = format!("{name}_{version}").replace(':', "%3a");
                    download(apt, &name, &version, &key, cache)
                };
                (
                    part(format!("linux-binary-{release}"))?,
                    part(format!("linux-modules-{release}"))?,
                )
            };
            if !vmlinuz.is_file() {
                unpack_vmlinuz(&image_deb, &release, &dir)?;
            }
            match cached_modules {
                Some(modules) => modules,
                None => modules::unpack(&modules_deb, &release, &module_dir, busybox)?,
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

/// Where the .deb holds the kernel image of `release`, if it does: `./boot/vmlinuz-R` until
/// 6.x, `./usr/lib/modules/R/vmlinuz` in the split packages of 7.x.
fn vmlinuz_member(deb: &Path, release: &str) -> Result<Option<String>> {
    let listing = output_of(Command::new("dpkg-deb").arg("--contents").arg(deb))
        .with_context(|| format!("listing {}", deb.display()))?;
    let members = [
        format!("./boot/vmlinuz-{release}"),
        format!("./usr/lib/modules/{release}/vmlinuz"),
    ];
    Ok(listing
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .find(|path| members.iter().any(|m| m == path))
        .map(str::to_owned))
}

/// The package's .deb in the cache, downloaded if it is not there yet.
fn download(apt: &Apt, package: &str, version: &str, key: &str, cache: &Path) -> Result<PathBuf> {
    let debs = cache.join("debs");
    fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
    let deb = debs.join(format!("{key}_amd64.deb"));
    if !deb.is_file() {
        eprintln!("vm-test: downloading {package} {version}");
        run_cmd(
            apt.command("apt-get")
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
    let member = vmlinuz_member(deb, release)?.with_context(|| {
        format!(
            "{} holds neither boot/vmlinuz-{release} nor usr/lib/modules/{release}/vmlinuz; \
             the package layout changed",
            deb.display()
        )
    })?;
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
            .arg("-x")
            .arg(&member)
            .stdin(stdout),
    );
    let status = source.wait().context("waiting for dpkg-deb")?;
    unpacked.with_context(|| format!("unpacking {member} from {}", deb.display()))?;
    if !status.success() {
        bail!(
            "dpkg-deb --fsys-tarfile {} failed ({status})",
            deb.display()
        );
    }
    let image = unpack.join(&member);
    if !image.is_file() {
        bail!("tar left no {member} from {}", deb.display());
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
        assert_eq!(s.rank("linux-image-6.1.0-57-cloud-amd64"), Some(vec![57]));
        assert!(
            s.rank("linux-image-6.1.0-57-cloud-amd64") > s.rank("linux-image-6.1.0-9-cloud-amd64")
        );
        assert_eq!(s.rank("linux-image-6.1.0-57-cloud-amd64-dbg"), None);
        assert_eq!(s.rank("linux-image-6.12.117+deb12-cloud-amd64"), None);
        let s = Series::V6_12;
        assert_eq!(
            s.rank("linux-image-6.12.117+deb12-cloud-amd64"),
            Some(vec![117])
        );
        assert_eq!(
            s.rank("linux-image-6.12.117+deb12-cloud-amd64-unsigned"),
            None
        );
        assert_eq!(s.rank("linux-image-6.1.0-57-cloud-amd64"), None);
        let s = Series::V5_10;
        assert!(
            s.rank("linux-image-5.10.0-35-cloud-amd64")
                > s.rank("linux-image-5.10.0-9-cloud-amd64")
        );
        assert_eq!(s.rank("linux-image-5.10.0-35-rt-amd64"), None);
        let s = Series::Backports;
        assert!(
            s.rank("linux-image-6.19.3+deb13-cloud-amd64")
                > s.rank("linux-image-6.18.12+deb13-cloud-amd64")
        );
        assert!(
            s.rank("linux-image-6.19.10+deb13-cloud-amd64")
                > s.rank("linux-image-6.19.9+deb13-cloud-amd64")
        );
        assert_eq!(s.rank("linux-image-6.12.117+deb12-cloud-amd64"), None);
        let s = Series::Sid;
        assert!(
            s.rank("linux-image-7.2.1+deb14-cloud-amd64")
                > s.rank("linux-image-6.19.3+deb14-cloud-amd64")
        );
        assert_eq!(s.rank("linux-image-7.2.1+deb14-cloud-amd64-dbg"), None);
        assert_eq!(s.rank("linux-image-cloud-amd64"), None);
        assert_eq!(Series::parse("6.12").ok(), Some(Series::V6_12));
        assert_eq!(
            Series::parse("trixie-backports").ok(),
            Some(Series::Backports)
        );
        assert!(Series::parse("5.15").is_err());
        assert!(Series::V5_10.cgroup_v1() && Series::V6_1.cgroup_v1());
        assert!(!Series::V6_12.cgroup_v1() && !Series::Sid.cgroup_v1());
    }
}
