//! The release's backports suite as an apt source, for `cargo xtask setup`: QEMU must come
//! from there (the image's `qemu-utils` is the backported one, and the release's own qemu
//! conflicts with it), and the suite is added on the mirror the machine already uses.
use std::fs;

use anyhow::{Context as _, Result};

/// Where `cargo xtask setup` adds the backports suite when no apt source names it yet.
const BACKPORTS_SOURCE: &str = "/etc/apt/sources.list.d/profiler-backports.sources";

/// The Debian release's code name (`VERSION_CODENAME` in /etc/os-release, e.g. `bookworm`).
fn os_codename() -> Result<String> {
    let text = fs::read_to_string("/etc/os-release").context("reading /etc/os-release")?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
        .context("/etc/os-release names no VERSION_CODENAME")
}

/// Adds `<codename>-backports` as an apt source on the mirror that serves `<codename>`,
/// unless some source names that suite already; returns the suite's name.
pub(crate) fn ensure_source() -> Result<String> {
    let codename = os_codename()?;
    let codename = codename.as_str();
    let sources = host_sources();
    let suite = format!("{codename}-backports");
    if sources.iter().any(|s| s.suites.contains(&suite)) {
        return Ok(suite);
    }
    let release = sources
        .iter()
        .find(|s| s.suites.iter().any(|x| x == codename))
        .with_context(|| format!("no apt source serves {codename}, so no mirror for {suite}"))?;
    let mut text = format!(
        "# Added by `cargo xtask setup` for qemu-system-x86 (cargo xtask vm-test).\n\
         Types: deb\nURIs: {}\nSuites: {suite}\nComponents: main\n",
        release.uri
    );
    if let Some(key) = &release.signed_by {
        text.push_str(&format!("Signed-By: {key}\n"));
    }
    eprintln!(
        "xtask setup: adding {suite} from {} ({BACKPORTS_SOURCE})",
        release.uri
    );
    fs::write(BACKPORTS_SOURCE, text)
        .with_context(|| format!("writing {BACKPORTS_SOURCE} (needs root)"))?;
    Ok(suite)
}

/// The `deb` sources of the machine's apt configuration.
fn host_sources() -> Vec<AptSource> {
    let mut sources = Vec::new();
    for file in ["/etc/apt/sources.list".into()].into_iter().chain(
        fs::read_dir("/etc/apt/sources.list.d")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "list" || x == "sources")),
    ) {
        if let Ok(text) = fs::read_to_string(&file) {
            sources.extend(apt_sources(&text));
        }
    }
    sources
}

/// The mirror (URI and key) the machine uses for its release's suite `suffix` (`""` for the
/// release itself, `"-security"` for its security suite): another release's suites are on the
/// same mirror under their own names (`bullseye`, `bullseye-security`, `sid`).
pub(crate) fn mirror_for(suffix: &str) -> Result<(String, Option<String>)> {
    let suite = format!("{}{suffix}", os_codename()?);
    host_sources()
        .into_iter()
        .find(|s| s.suites.contains(&suite))
        .map(|s| (s.uri, s.signed_by))
        .with_context(|| format!("no apt source of this machine serves {suite}"))
}

/// One `deb` source: its first mirror, its suites and its key.
#[derive(Debug, PartialEq)]
struct AptSource {
    uri: String,
    suites: Vec<String>,
    signed_by: Option<String>,
}

/// The `deb` (not `deb-src`) sources in a one-line `sources.list` or a deb822 `.sources` file.
fn apt_sources(text: &str) -> Vec<AptSource> {
    let mut found = Vec::new();
    for line in text.lines().map(str::trim) {
        // One-line style: `deb [options] URI suite component...`.
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let (options, rest) = match rest.trim_start().strip_prefix('[') {
            Some(bracketed) => bracketed.split_once(']').unwrap_or(("", bracketed)),
            None => ("", rest),
        };
        let signed_by = options
            .split_whitespace()
            .find_map(|o| o.strip_prefix("signed-by="))
            .map(str::to_owned);
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            found.push(AptSource {
                uri: uri.to_owned(),
                suites: vec![suite.to_owned()],
                signed_by,
            });
        }
    }
    // deb822 style: stanzas of `Key: value` separated by blank lines.
    for stanza in text.split("\n\n") {
        let field = |key: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .map(str::trim)
        };
        let is_deb = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let enabled = field("Enabled").is_none_or(|e| e != "no");
        if let (true, true, Some(uris), Some(suites)) =
            (is_deb, enabled, field("URIs"), field("Suites"))
        {
            if let Some(uri) = uris.split_whitespace().next() {
                found.push(AptSource {
                    uri: uri.to_owned(),
                    suites: suites.split_whitespace().map(str::to_owned).collect(),
                    signed_by: field("Signed-By").map(str::to_owned),
                });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_sources_both_styles() {
        let deb822 = "Types: deb\n# comment\nURIs: http://deb.debian.org/debian\n\
                      Suites: bookworm bookworm-updates\nComponents: main\n\
                      Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                      Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n";
        assert_eq!(
            apt_sources(deb822),
            vec![AptSource {
                uri: "http://deb.debian.org/debian".into(),
                suites: vec!["bookworm".into(), "bookworm-updates".into()],
                signed_by: Some("/usr/share/keyrings/debian-archive-keyring.gpg".into()),
            }]
        );
        let one_line = "# deb http://old/ bullseye main\n\
                        deb [arch=amd64 signed-by=/k.gpg] http://mirror/debian bookworm main\n\
                        deb-src http://mirror/debian bookworm main\n\
                        deb http://security/debian-security bookworm-security main\n";
        assert_eq!(
            apt_sources(one_line),
            vec![
                AptSource {
                    uri: "http://mirror/debian".into(),
                    suites: vec!["bookworm".into()],
                    signed_by: Some("/k.gpg".into()),
                },
                AptSource {
                    uri: "http://security/debian-security".into(),
                    suites: vec!["bookworm-security".into()],
                    signed_by: None,
                },
            ]
        );
    }
}
