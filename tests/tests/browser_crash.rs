//! The harness against a Chromium that crashes: a browser-process crash while a page opens says
//! nothing about the page, so the page is opened once more, and a second crash is a failure
//! that names both. In a test binary of its own: it points the harness at a fake Chromium
//! through the environment, which every test of a process shares.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use profiler_e2e::{open_page, Page, TempDir, CHROMIUM_OVERRIDE};

/// Debian's Chromium, which the fake starts once it has crashed `crashes` times.
const REAL_CHROMIUM: &str = "/usr/lib/chromium/chromium";

/// A script in `dir` that dies of SIGSEGV the first `crashes` times it runs (counted in a
/// file beside it), then becomes the real Chromium with the same arguments and pipes.
fn crashing_chromium(dir: &Path, crashes: u32) -> (PathBuf, PathBuf) {
    let runs = dir.join("runs");
    let script = dir.join("chromium");
    let text = format!(
        "#!/bin/sh\n\
         echo run >> '{runs}'\n\
         if [ \"$(wc -l < '{runs}')\" -le {crashes} ]; then kill -SEGV $$; fi\n\
         exec {REAL_CHROMIUM} \"$@\"\n",
        runs = runs.display()
    );
    fs::write(&script, text).unwrap_or_else(|e| panic!("writing {}: {e}", script.display()));
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", script.display()));
    (script, runs)
}

fn runs(file: &Path) -> usize {
    fs::read_to_string(file).map_or(0, |text| text.lines().count())
}

#[test]
fn a_chromium_that_crashes_once_is_started_again_and_twice_fails() {
    let dir = TempDir::new("chromium-crash");
    let page_path = dir.path().join("page.html");
    fs::write(
        &page_path,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>t</title></head>\
         <body>opened after a crash</body></html>",
    )
    .unwrap_or_else(|e| panic!("writing the page: {e}"));

    let once = TempDir::new("chromium-crash-once");
    let (script, count) = crashing_chromium(once.path(), 1);
    std::env::set_var(CHROMIUM_OVERRIDE, &script);
    let page = open_page(&page_path, 320, 240);
    assert_eq!(
        runs(&count),
        2,
        "one crash, then one Chromium that opened the page"
    );
    assert_eq!(page.report().text.trim(), "opened after a crash");
    drop(page);

    let always = TempDir::new("chromium-crash-always");
    let (script, count) = crashing_chromium(always.path(), u32::MAX);
    std::env::set_var(CHROMIUM_OVERRIDE, &script);
    let error = match Page::open(&page_path, 320, 240) {
        Err(e) => e,
        Ok(_) => panic!("a Chromium that always crashes opened the page"),
    };
    assert_eq!(runs(&count), 2, "started twice, not more");
    assert_eq!(error.matches("signal: 11 (SIGSEGV)").count(), 2, "{error}");
    assert!(error.contains("chromium crashed once"), "{error}");
}
