//! Scratch directories that a test removes when it ends, also when it fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A fresh directory `<temp>/profiler-e2e-<what>-<pid>-<counter>`, removed with everything in
/// it when dropped (also while a test panics).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates the directory; panics if it cannot.
    #[track_caller]
    pub fn new(what: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "profiler-e2e-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("could not create {}: {e}", path.display()));
        Self { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // No panic here: a test may already be panicking, and a second panic would abort.
        if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!("warning: removing {}: {e}", self.path.display());
        }
    }
}
