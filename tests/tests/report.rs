//! `profiler report`: a real watch to a real OOM kill, recorded, turned into a report that is
//! opened in headless Chromium; hostile names from the node stay text; bad input is refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use profiler_e2e::{
    is_line, open_page, run_profiler, start_test, u64_at, Profiler, TempDir, TestCgroup, MIB,
    PATIENCE,
};
use serde_json::Value;

/// A cgroup directory name that is markup (no `/`, so it is a valid directory name): if the
/// report let it through as HTML, the browser would run its `onerror`.
const HOSTILE_CGROUP: &str = "<img src=x onerror=alert(1)>";
/// The longest process name the kernel keeps (15 bytes): an unclosed script element.
const HOSTILE_COMM: &str = "<script>alert(1";

/// Browser window size for the checks.
const VIEW: (u32, u32) = (1280, 900);

/// Decodes a PNG: its size and how many distinct colours it has.
#[track_caller]
fn decode_png(bytes: &[u8], what: &str) -> (u32, u32, usize) {
    let mut reader = png::Decoder::new(bytes)
        .read_info()
        .unwrap_or_else(|e| panic!("{what} is not a PNG: {e}"));
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .unwrap_or_else(|e| panic!("{what} does not decode: {e}"));
    let channels = info.color_type.samples();
    let mut colours: Vec<&[u8]> = buf[..info.buffer_size()].chunks_exact(channels).collect();
    colours.sort_unstable();
    colours.dedup();
    (info.width, info.height, colours.len())
}

/// Runs `profiler report FILE -o DIR`; returns its stdout and stderr, panicking on failure.
#[track_caller]
fn report(recording: &Path, dir: &Path) -> (String, String) {
    let finished = run_profiler(
        &[
            "report",
            &recording.display().to_string(),
            "-o",
            &dir.display().to_string(),
        ],
        PATIENCE,
    );
    if !finished.status.success() {
        finished.fail("profiler report failed");
    }
    (finished.stdout.clone(), finished.stderr.clone())
}

/// The chart files in `dir`, sorted.
fn charts_in(dir: &Path) -> Vec<PathBuf> {
    let mut charts: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    charts.sort();
    charts
}

/// The whole product story: a leak in a cgroup whose name is markup, by a process whose name
/// is markup, watched with `--record` to its OOM kill; `profiler report` on the recording; the
/// page opened in Chromium shows the container and the kill as text, runs no script, loads
/// nothing from outside, and draws both charts.
#[test]
fn a_recorded_kill_becomes_a_report_a_browser_shows() {
    let _test = start_test!();
    let parent = TestCgroup::without_limit("report");
    let child = parent.create_child(Path::new(HOSTILE_CGROUP), Some(48 * MIB));
    let child_str = child.display().to_string();
    let scratch = TempDir::new("report");
    let recording = scratch.path().join("kill.rec");
    let mut profiler = Profiler::watch(&[
        "--cgroup",
        &child_str,
        "--interval",
        "250ms",
        "--record",
        &recording.display().to_string(),
    ]);
    profiler.wait_watching(&[&child_str]);
    let leak = parent.spawn_in(
        Path::new(HOSTILE_CGROUP),
        &[
            "--comm",
            HOSTILE_COMM,
            "leak",
            "--step-mib",
            "2",
            "--interval-ms",
            "100",
        ],
    );
    let pid = leak.pid();
    let (_, kill) = profiler.wait_for("oom_kill", Duration::from_secs(90), |l| {
        is_line(l, "oom_kill", &child_str)
    });
    assert_eq!(u64_at(&kill, "pid"), u64::from(pid), "{kill}");
    assert_eq!(kill["comm"], HOSTILE_COMM, "{kill}");
    leak.wait_exit(PATIENCE);
    // One more round, then Ctrl-C: the recording ends with its summary and end lines.
    std::thread::sleep(Duration::from_millis(600));
    profiler.interrupt();
    let (status, _) = profiler.wait(PATIENCE);
    assert!(status.success(), "watch: {status}\n{}", profiler.report());

    let out = scratch.path().join("out");
    let (stdout, stderr) = report(&recording, &out);
    let page_path = out.join("report.html");
    assert!(
        stdout.contains(&page_path.display().to_string()),
        "the report's path is printed: {stdout}"
    );
    assert!(
        stderr.is_empty(),
        "a whole recording gives no warning: {stderr}"
    );

    // Two charts, named safely inside DIR, of the stated size, not blank.
    let charts = charts_in(&out);
    assert_eq!(charts.len(), 2, "{charts:?}");
    for chart in &charts {
        assert_eq!(chart.parent(), Some(out.as_path()));
        let name = chart
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c)),
            "{name}"
        );
        let bytes = std::fs::read(chart).unwrap_or_else(|e| panic!("{}: {e}", chart.display()));
        let (width, height, colours) = decode_png(&bytes, name);
        let expected = if name.ends_with("-memory.png") {
            (1200, 520)
        } else {
            (1200, 360)
        };
        assert_eq!((width, height), expected, "{name}");
        assert!(colours > 50, "{name} looks blank: {colours} colours");
    }

    let mut page = open_page(&page_path, VIEW.0, VIEW.1);
    let seen = page.report().clone();
    assert!(
        seen.errors().is_empty(),
        "the page has errors: {:?}",
        seen.errors()
    );
    assert!(seen.dialogs.is_empty(), "a script ran: {:?}", seen.dialogs);
    assert!(
        seen.requests.is_empty(),
        "the page is not self-contained, it loaded {:?}",
        seen.requests
    );
    // The hostile names are on the page, as text.
    assert!(
        seen.text.contains(HOSTILE_CGROUP),
        "cgroup name not shown as text"
    );
    assert!(
        seen.text.contains(HOSTILE_COMM),
        "process name not shown as text"
    );
    assert!(seen.text.contains("How containers ended"));
    assert!(seen.text.contains(&format!("pid {pid}")), "the kill's pid");
    assert_eq!(page.eval("document.querySelectorAll('script').length"), 0);
    // Only the two charts are images, and the browser decoded both.
    assert_eq!(
        page.eval(
            "[...document.images].map(i => i.naturalWidth + 'x' + i.naturalHeight).join(' ')"
        ),
        "1200x520 1200x360"
    );
    // The kill is listed in the kill section, with the container's name.
    let kill_heading = page.eval("document.querySelector('.kill h3').textContent");
    let kill_heading = kill_heading.as_str().unwrap_or_default();
    assert!(
        kill_heading.contains(HOSTILE_COMM) && kill_heading.contains(HOSTILE_CGROUP),
        "{kill_heading}"
    );
    let screenshot = out.join("screenshot.png");
    std::fs::write(&screenshot, &seen.screenshot_png).expect("save the screenshot");
    let (width, _, colours) = decode_png(&seen.screenshot_png, "the screenshot");
    assert_eq!(width, VIEW.0);
    assert!(colours > 50, "the screenshot looks blank");
}

/// The real recording of the reports crate's tests, with its victim renamed to the issue's
/// `<script>alert(1)</script>` (a name a pod or a kmsg line could carry in full).
fn hostile_recording(dir: &Path) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports/testdata/leak.rec");
    let text =
        std::fs::read_to_string(&fixture).unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
    assert!(text.contains("\"comm\":\"leaky<app>\""));
    let path = dir.join("hostile.rec");
    std::fs::write(
        &path,
        text.replace(
            "\"comm\":\"leaky<app>\"",
            "\"comm\":\"<script>alert(1)</script>\"",
        ),
    )
    .expect("write");
    path
}

/// A damaged recording: a report of what reads, a warning on stderr and a banner on the page
/// naming the first bad line; the exact hostile name shows as text.
#[test]
fn a_damaged_recording_reports_what_reads_with_a_visible_warning() {
    let _test = start_test!();
    let scratch = TempDir::new("report-damaged");
    let whole = std::fs::read_to_string(hostile_recording(scratch.path())).expect("read");
    let mut lines: Vec<&str> = whole.lines().collect();
    let bad = 30;
    lines[bad - 1] = "{\"ts\": 1, \"type\": \"sample\", \"usage_bytes\": \"many\"}";
    let damaged = scratch.path().join("damaged.rec");
    std::fs::write(&damaged, lines.join("\n") + "\n").expect("write");
    let out = scratch.path().join("out");
    let (_, stderr) = report(&damaged, &out);
    assert!(
        stderr.contains(&format!("line {bad} is not a record")),
        "{stderr}"
    );
    let mut page = open_page(&out.join("report.html"), VIEW.0, VIEW.1);
    let seen = page.report().clone();
    assert!(seen.errors().is_empty(), "{:?}", seen.errors());
    assert!(seen.dialogs.is_empty(), "a script ran: {:?}", seen.dialogs);
    let banner = page.eval("document.getElementById('damage').textContent");
    let banner = banner.as_str().unwrap_or_default();
    assert!(
        banner.contains("damaged") && banner.contains(&format!("Line {bad}")),
        "{banner}"
    );
    // The banner is on screen, not hidden.
    assert_eq!(
        page.eval("getComputedStyle(document.getElementById('damage')).display !== 'none' && document.getElementById('damage').getBoundingClientRect().height > 0"),
        Value::Bool(true)
    );
    // The kill is after the bad line: the page must not show what it could not read.
    assert!(
        seen.text.contains("No process was OOM-killed"),
        "a kill after the bad line shown"
    );

    // The whole hostile recording: the exact string shows as text, and no script runs.
    let out = scratch.path().join("out-hostile");
    report(&scratch.path().join("hostile.rec"), &out);
    let mut page = open_page(&out.join("report.html"), VIEW.0, VIEW.1);
    let seen = page.report().clone();
    assert!(seen.errors().is_empty(), "{:?}", seen.errors());
    assert!(seen.dialogs.is_empty(), "a script ran: {:?}", seen.dialogs);
    assert!(seen.text.contains("<script>alert(1)</script>"));
    assert_eq!(page.eval("document.querySelectorAll('script').length"), 0);
}

/// Bad input: every case exits non-zero with a message that says what to do, and writes
/// nothing.
#[test]
fn bad_input_is_refused_with_a_message() {
    let _test = start_test!();
    let scratch = TempDir::new("report-bad");
    let dir = scratch.path();
    let good = hostile_recording(dir);
    let out = dir.join("out").display().to_string();
    let a_file = dir.join("a-file");
    std::fs::write(&a_file, b"").expect("write");

    // An unwritable DIR fails before the recording is read: the missing recording is not
    // what the message is about.
    let unwritable = a_file.join("out").display().to_string();
    run_profiler(&["report", "/nonexistent.rec", "-o", &unwritable], PATIENCE)
        .expect_error(&["cannot write the report into", "-o DIR"]);
    let missing = run_profiler(&["report", "/nonexistent.rec", "-o", &out], PATIENCE);
    missing.expect_error(&["cannot open the recording /nonexistent.rec"]);
    // The system's reason ends the message, once.
    let reason = "No such file or directory (os error 2)";
    if missing.stderr.matches(reason).count() != 1 {
        missing.fail(format_args!("expected {reason:?} exactly once on stderr"));
    }
    let empty = dir.join("empty.rec");
    std::fs::write(&empty, b"").expect("write");
    run_profiler(
        &["report", &empty.display().to_string(), "-o", &out],
        PATIENCE,
    )
    .expect_error(&["the file is empty", "profiler watch --record"]);
    let text = dir.join("notes.txt");
    std::fs::write(&text, b"hello\n").expect("write");
    run_profiler(
        &["report", &text.display().to_string(), "-o", &out],
        PATIENCE,
    )
    .expect_error(&["not a profiler recording"]);
    let future = dir.join("future.rec");
    std::fs::write(
        &future,
        "{\"type\":\"recording\",\"format\":\"profiler-recording\",\"version\":99}\n",
    )
    .expect("write");
    run_profiler(
        &["report", &future.display().to_string(), "-o", &out],
        PATIENCE,
    )
    .expect_error(&["version 99 is not supported"]);
    let header = std::fs::read_to_string(&good).expect("read");
    let header = header.lines().next().expect("a header");
    let garbage = dir.join("garbage.rec");
    std::fs::write(&garbage, format!("{header}\n\u{1}garbage\n")).expect("write");
    run_profiler(
        &["report", &garbage.display().to_string(), "-o", &out],
        PATIENCE,
    )
    .expect_error(&["nothing in the recording is readable: line 2"]);
    assert!(
        !Path::new(&out).exists(),
        "a refused recording left {out} behind"
    );
}
