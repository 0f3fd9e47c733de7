//! apt for the guest kernels. The series the machine's own sources serve (bookworm's 6.1 and
//! 6.12) come through its own lists; another release's suites (bullseye's 5.10,
//! trixie-backports, sid) through private lists: a sources file, lists and package cache of
//! their own under the VM cache, on the mirror the machine already uses, verified against the
//! Debian archive keyring like any apt source. The machine's apt configuration is never
//! changed, so `apt-get install` can never pick a package from sid.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result};

use crate::setup::run_cmd;

/// Where a series' packages are listed.
#[derive(Clone, Debug)]
pub(super) struct Apt {
    /// `None`: the machine's own lists; else the directory of the private ones.
    private: Option<PathBuf>,
    /// Where the last refresh by this task is remembered.
    stamp: PathBuf,
}

/// One suite of a private source: the mirror, the suite and the key that signs it.
pub(super) struct Suite<'a> {
    pub uri: &'a str,
    pub suite: &'a str,
    pub signed_by: Option<&'a str>,
}

/// The Debian archive keyring, for suites whose host source names no key.
const ARCHIVE_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

impl Apt {
    /// The machine's own lists (`stamp` remembers this task's refreshes of them).
    pub(super) fn host(cache: &Path) -> Apt {
        Apt {
            private: None,
            stamp: cache.join("apt-updated"),
        }
    }

    /// Private lists named `name` under `cache/apt/`, of `suites` (main only).
    pub(super) fn private(cache: &Path, name: &str, suites: &[Suite<'_>]) -> Result<Apt> {
        let dir = cache.join("apt").join(name);
        for sub in ["lists/partial", "archives/partial", "parts"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        }
        let text: String = suites
            .iter()
            .map(|s| {
                format!(
                    "deb [signed-by={}] {} {} main\n",
                    s.signed_by.unwrap_or(ARCHIVE_KEYRING),
                    s.uri,
                    s.suite
                )
            })
            .collect();
        let list = dir.join("sources.list");
        if fs::read_to_string(&list).ok().as_deref() != Some(text.as_str()) {
            fs::write(&list, &text).with_context(|| format!("writing {}", list.display()))?;
            // Lists of other sources are of no use: refresh.
            let _ = fs::remove_file(dir.join("updated"));
        }
        Ok(Apt {
            stamp: dir.join("updated"),
            private: Some(dir),
        })
    }

    /// `program` (apt-get or apt-cache) on these lists.
    pub(super) fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        if let Some(dir) = &self.private {
            let option = |key: &str, value: &Path| format!("{key}={}", value.display());
            for o in [
                option("Dir::Etc::SourceList", &dir.join("sources.list")),
                option("Dir::Etc::SourceParts", &dir.join("parts")),
                option("Dir::State::Lists", &dir.join("lists")),
                option("Dir::Cache", dir),
                option("Dir::Cache::archives", &dir.join("archives")),
                // Kernels only: no translations, no i386 even where the machine has it, no
                // AppStream metadata (DEP-11, 4–6 MB a suite, which the machine's
                // appstream configuration would fetch).
                "Acquire::Languages=none".to_owned(),
                "APT::Architectures=amd64".to_owned(),
                "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".to_owned(),
                "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false".to_owned(),
                "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false".to_owned(),
                "Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false".to_owned(),
            ] {
                cmd.args(["-o", &o]);
            }
        }
        cmd
    }

    /// How long ago the lists were last refreshed, as far as can be told: by this task
    /// (the stamp) or, for the machine's lists, by anyone (the newest list file; apt leaves a
    /// list that did not change untouched, so this alone can look older than it is). `None`:
    /// never, as far as is known.
    pub(super) fn lists_age(&self) -> Option<Duration> {
        let lists = match &self.private {
            Some(_) => None,
            None => fs::read_dir("/var/lib/apt/lists").ok(),
        };
        fs::metadata(&self.stamp)
            .into_iter()
            .chain(
                lists
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.ok()?.metadata().ok()),
            )
            .filter_map(|m| m.modified().ok())
            .max()
            .map(|newest| newest.elapsed().unwrap_or_default())
    }

    /// `apt-get update` of these lists, remembered in the stamp.
    pub(super) fn update(&self) -> Result<()> {
        run_cmd(
            self.command("apt-get")
                .arg("update")
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
        .with_context(|| match &self.private {
            Some(dir) => format!("updating the package lists of {}", dir.display()),
            None => "updating the apt package lists (needs root)".to_owned(),
        })?;
        if let Some(dir) = self.stamp.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        fs::write(&self.stamp, "").with_context(|| format!("writing {}", self.stamp.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_lists_have_their_own_sources_and_state() {
        let cache = std::env::temp_dir().join(format!("vm-apt-test-{}", std::process::id()));
        let apt = Apt::private(
            &cache,
            "bullseye",
            &[
                Suite {
                    uri: "http://deb.debian.org/debian",
                    suite: "bullseye",
                    signed_by: None,
                },
                Suite {
                    uri: "http://deb.debian.org/debian-security",
                    suite: "bullseye-security",
                    signed_by: Some("/k.gpg"),
                },
            ],
        )
        .expect("private lists");
        let dir = cache.join("apt/bullseye");
        let sources = fs::read_to_string(dir.join("sources.list")).expect("sources.list");
        assert_eq!(
            sources,
            format!(
                "deb [signed-by={ARCHIVE_KEYRING}] http://deb.debian.org/debian bullseye main\n\
                 deb [signed-by=/k.gpg] http://deb.debian.org/debian-security bullseye-security \
                 main\n"
            )
        );
        let cmd = apt.command("apt-cache");
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        for option in [
            format!(
                "Dir::Etc::SourceList={}",
                dir.join("sources.list").display()
            ),
            format!("Dir::State::Lists={}", dir.join("lists").display()),
            format!("Dir::Etc::SourceParts={}", dir.join("parts").display()),
        ] {
            assert!(args.contains(&option), "{option} in {args:?}");
        }
        // The machine's own lists: no options at all.
        assert_eq!(Apt::host(&cache).command("apt-cache").get_args().count(), 0);
        let _ = fs::remove_dir_all(&cache);
    }
}
