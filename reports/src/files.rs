//! The output directory: checked before any work, file names that cannot leave it, and writes
//! that never leave a half-written file or follow a planted symlink.
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

/// Longest part of a file name taken from a container's name.
const SLUG_MAX: usize = 60;

/// Makes `dir` (and its parents) if needed and proves a file can be created in it, so that an
/// unwritable directory is an error before the recording is read.
pub fn prepare_dir(dir: &Path) -> Result<(), std::io::Error> {
    fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".profiler-write-check-{}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    fs::remove_file(&probe)
}

/// A file name for `name` (a pod or container name, a cgroup path: anything from the node)
/// that is one plain path component: lowercase ASCII letters, digits and `-` only, never
/// empty, never `.` or `..`, and short. `index` keeps names that fold to the same text apart.
pub fn safe_name(index: usize, name: &str, suffix: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.len() >= SLUG_MAX {
            break;
        }
    }
    let slug = slug.trim_matches('-');
    let slug = if slug.is_empty() { "container" } else { slug };
    format!("{index:02}-{slug}-{suffix}")
}

/// Writes `bytes` to `dir/name` through a temporary file and a rename: a reader never sees a
/// half-written file, and a symlink planted at `dir/name` is replaced, not followed.
pub fn write_in(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, std::io::Error> {
    let mut parts = Path::new(name).components();
    if !matches!(
        (parts.next(), parts.next()),
        (Some(Component::Normal(_)), None)
    ) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{name:?} is not a plain file name"),
        ));
    }
    let target = dir.join(name);
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&temporary, &target));
    if written.is_err() {
        // Best effort: the error that matters is the one returned.
        let _ = fs::remove_file(&temporary);
    }
    written.map(|()| target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_node_stay_one_plain_component() {
        for hostile in [
            "../../etc/passwd",
            "/",
            "..",
            ".",
            "",
            "a/../../b",
            "<script>alert(1)</script>",
            "\0nul",
            "ünïcode/名前",
            &"x".repeat(5000),
        ] {
            let name = safe_name(3, hostile, "memory.png");
            let mut parts = Path::new(&name).components();
            assert!(
                matches!(
                    (parts.next(), parts.next()),
                    (Some(Component::Normal(_)), None)
                ),
                "{hostile:?} → {name:?}"
            );
            assert!(name.starts_with("03-"), "{name}");
            assert!(name.ends_with("-memory.png"), "{name}");
            assert!(name.len() <= 3 + SLUG_MAX + 11, "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c)),
                "{name}"
            );
        }
        assert_eq!(
            safe_name(1, "shop/web-7f9c/app", "memory.png"),
            "01-shop-web-7f9c-app-memory.png"
        );
        assert_eq!(safe_name(2, "../..", "x.png"), "02-container-x.png");
    }

    #[test]
    fn writes_replace_a_planted_symlink_instead_of_following_it() {
        let dir = std::env::temp_dir().join(format!("reports-files-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        prepare_dir(&dir).expect("a temp dir is writable");
        let outside = dir.with_extension("outside");
        fs::write(&outside, b"keep").expect("write");
        std::os::unix::fs::symlink(&outside, dir.join("report.html")).expect("symlink");
        let written = write_in(&dir, "report.html", b"new").expect("write");
        assert_eq!(fs::read(&written).expect("read"), b"new");
        assert_eq!(fs::read(&outside).expect("read"), b"keep");
        assert!(write_in(&dir, "../escape.html", b"x").is_err());
        assert!(write_in(&dir, "/tmp/abs.html", b"x").is_err());
        // No temporary file is left behind.
        let left: Vec<_> = fs::read_dir(&dir)
            .expect("list")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["report.html"]);
        fs::remove_dir_all(&dir).expect("clean up");
        fs::remove_file(&outside).expect("clean up");
    }

    #[test]
    fn an_unwritable_dir_is_refused() {
        // A path under a regular file cannot be a directory, whoever runs the test.
        let file = std::env::temp_dir().join(format!("reports-file-{}", std::process::id()));
        fs::write(&file, b"").expect("write");
        assert!(prepare_dir(&file.join("out")).is_err());
        fs::remove_file(&file).expect("clean up");
    }
}
