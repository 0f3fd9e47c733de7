//! Self-tests of the headless Chromium harness: small HTML pages that do one thing each. They
//! need chromium (`cargo xtask setup`) but neither root nor the profiler.

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use profiler_e2e::{open_page, ConsoleMessage, Page, TempDir};
use serde_json::json;

const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;

/// Writes `html` to a fresh directory and opens it; the directory goes with the page.
#[track_caller]
fn open_html(name: &str, html: &str) -> (Page, TempDir) {
    let dir = TempDir::new(name);
    let path = write(&dir, "page.html", html);
    let start = Instant::now();
    let page = open_page(&path, WIDTH, HEIGHT);
    eprintln!("{name}: opened in {:?}", start.elapsed());
    (page, dir)
}

#[track_caller]
fn write(dir: &TempDir, name: &str, contents: &str) -> PathBuf {
    let path = dir.path().join(name);
    fs::write(&path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// A page of its own: `<!doctype html>`, UTF-8, the `body` given.
fn html(body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>t</title></head>\
         <body>{body}</body></html>"
    )
}

#[test]
fn a_clean_page_has_no_errors_its_text_and_a_screenshot_of_the_viewport() {
    let (mut page, _dir) = open_html(
        "clean",
        &html(
            "<h1>Memory report</h1>\
             <div style=\"width:200px;height:100px;background:#c03\"></div>\
             <p id=\"note\">All within limits.</p>",
        ),
    );
    let report = page.report();
    assert_eq!(report.errors(), Vec::<String>::new(), "{report:#?}");
    assert_eq!(report.console, vec![], "{report:#?}");
    assert_eq!(report.requests, Vec::<String>::new(), "{report:#?}");
    assert!(
        report.text.contains("Memory report") && report.text.contains("All within limits."),
        "expected the heading and the paragraph in the page's text, got {:?}",
        report.text
    );

    let decoder = png::Decoder::new(report.screenshot_png.as_slice());
    let mut reader = decoder
        .read_info()
        .unwrap_or_else(|e| panic!("the screenshot is not a PNG: {e}"));
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader
        .next_frame(&mut pixels)
        .unwrap_or_else(|e| panic!("decoding the screenshot: {e}"));
    assert_eq!((frame.width, frame.height), (WIDTH, HEIGHT));
    let pixels = &pixels[..frame.buffer_size()];
    let pixel = frame.color_type.samples() * usize::from(frame.bit_depth as u8).div_ceil(8);
    let first = &pixels[..pixel];
    assert!(
        pixels.chunks(pixel).any(|p| p != first),
        "the screenshot is all one colour ({first:?})"
    );
    // The red box is at the top left, below the heading; the page's background is white.
    assert!(
        pixels.chunks(pixel).any(|p| p[..3] == [0xcc, 0x00, 0x33]),
        "no pixel of the red box (#cc0033) in the screenshot"
    );

    assert_eq!(
        page.eval("document.getElementById('note').textContent"),
        "All within limits."
    );
    assert_eq!(page.eval("document.querySelectorAll('div').length"), 1);
    assert_eq!(
        page.eval("({a: [1, 'x'], b: null})"),
        json!({"a": [1, "x"], "b": null})
    );
    assert_eq!(page.eval("undefined"), json!(null));
    assert_eq!(page.eval("Promise.resolve(6 * 7)"), 42);
}

#[test]
fn console_error_is_one_error_with_its_text() {
    let (page, _dir) = open_html(
        "console",
        &html("<script>console.log('fine', 1); console.error('boom');</script>"),
    );
    let report = page.report();
    assert_eq!(
        report.console,
        vec![
            ConsoleMessage {
                level: "log".into(),
                source: "console".into(),
                text: "fine 1".into(),
            },
            ConsoleMessage {
                level: "error".into(),
                source: "console".into(),
                text: "boom".into(),
            },
        ],
        "{report:#?}"
    );
    assert_eq!(report.errors(), vec!["console error (console): boom"]);
}

#[test]
fn thrown_exceptions_and_unhandled_rejections_are_reported() {
    let (page, _dir) = open_html(
        "exception",
        &html(
            "<script>Promise.reject(new Error('later'));</script>\
             <script>throw new Error('nope');</script>\
             <p>still here</p>",
        ),
    );
    let report = page.report();
    assert_eq!(report.exceptions.len(), 2, "{report:#?}");
    assert!(
        report.exceptions.iter().any(|e| e.contains("Error: nope")),
        "{report:#?}"
    );
    assert!(
        report.exceptions.iter().any(|e| e.contains("Error: later")),
        "{report:#?}"
    );
    assert_eq!(report.errors().len(), 2, "{report:#?}");
    assert!(report.text.contains("still here"), "{report:#?}");
}

#[test]
fn dialogs_are_reported_and_accepted_without_hanging() {
    let start = Instant::now();
    let (mut page, _dir) = open_html(
        "dialog",
        &html(
            "<script>alert(1); window.confirmed = confirm('sure?');\
             document.body.append('after the dialogs');</script>",
        ),
    );
    let report = page.report();
    assert_eq!(
        report.dialogs,
        vec!["alert: 1", "confirm: sure?"],
        "{report:#?}"
    );
    assert_eq!(
        report.errors(),
        vec!["dialog alert: 1", "dialog confirm: sure?"]
    );
    assert!(report.text.contains("after the dialogs"), "{report:#?}");
    assert_eq!(page.eval("window.confirmed"), true);
    // A dialog opened by an evaluation is handled too.
    page.eval("alert('again')");
    assert_eq!(page.report().dialogs.len(), 3, "{:#?}", page.report());
    assert!(
        start.elapsed() < profiler_e2e::PATIENCE / 2,
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn requests_are_recorded_and_only_local_ones_load() {
    let dir = TempDir::new("requests");
    write(
        &dir,
        "dot.svg",
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"4\" height=\"3\"><rect width=\"4\" height=\"3\"/></svg>",
    );
    let path = write(
        &dir,
        "page.html",
        &html(
            "<img id=\"remote\" src=\"http://192.0.2.1/x.png\"><img id=\"local\" src=\"dot.svg\">",
        ),
    );
    let mut page = open_page(&path, WIDTH, HEIGHT);
    let report = page.report().clone();
    let local = format!(
        "{}/dot.svg",
        page.url().rsplit_once('/').expect("a file URL").0
    );
    assert!(
        report
            .requests
            .contains(&"http://192.0.2.1/x.png".to_owned()),
        "{report:#?}"
    );
    assert!(report.requests.contains(&local), "{report:#?}");
    assert_eq!(report.requests.len(), 2, "{report:#?}");
    assert_eq!(
        page.eval("document.getElementById('local').naturalWidth"),
        4
    );
    assert_eq!(
        page.eval("document.getElementById('remote').naturalWidth"),
        0
    );
    assert_eq!(
        page.eval("[...document.images].every(i => i.complete && i.naturalWidth > 0)"),
        false
    );
    // The blocked request is a console error of the browser's.
    assert!(
        report
            .errors()
            .iter()
            .any(|e| e.contains("ERR_BLOCKED_BY_CLIENT")),
        "{report:#?}"
    );
}

#[test]
fn escaped_markup_is_text_not_a_script() {
    let (mut page, _dir) = open_html(
        "escaped",
        &html("<p id=\"name\">&lt;script&gt;alert(1)&lt;/script&gt;</p>"),
    );
    let report = page.report();
    assert!(
        report.text.contains("<script>alert(1)</script>"),
        "{report:#?}"
    );
    assert_eq!(report.dialogs, Vec::<String>::new());
    assert_eq!(report.errors(), Vec::<String>::new(), "{report:#?}");
    assert_eq!(page.eval("document.querySelectorAll('script').length"), 0);
    assert_eq!(
        page.eval("document.getElementById('name').textContent"),
        "<script>alert(1)</script>"
    );
}

#[test]
fn failures_of_the_harness_are_errors_that_say_what() {
    let missing = Page::open(
        std::path::Path::new("/nonexistent/report.html"),
        WIDTH,
        HEIGHT,
    );
    let error = missing.err().expect("opening a missing file should fail");
    assert!(error.contains("/nonexistent/report.html"), "{error}");

    let (mut page, _dir) = open_html("eval-error", &html("<p>x</p>"));
    let error = page
        .try_eval("null.property")
        .expect_err("reading a property of null should throw");
    assert!(error.contains("TypeError"), "{error}");
}
