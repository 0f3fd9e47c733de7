//! Opens a local HTML file in Debian's headless Chromium and reports what the page did: console
//! messages, uncaught exceptions, dialogs, the URLs it requested, its text and a screenshot.
//! For end-to-end tests of the HTML reports.
//!
//! ```ignore
//! let mut page = profiler_e2e::open_page(&report_html, 1280, 800);
//! assert_eq!(page.report().errors(), Vec::<String>::new());
//! assert_eq!(page.eval("document.querySelectorAll('svg').length"), 3);
//! ```
//!
//! Chromium is driven over the DevTools protocol on `--remote-debugging-pipe`: it reads
//! NUL-terminated JSON commands from fd 3 and writes NUL-terminated JSON replies and events to
//! fd 4, so no port is opened. Each [`Page`] has its own Chromium and a fresh profile directory,
//! both gone when it is dropped.
//!
//! The page is hermetic: every request other than `file:`, `data:` and `blob:` URLs is recorded
//! in [`PageReport::requests`] and then failed by the harness (`Fetch` domain), so a report that
//! needs the network shows up the same on every machine, with or without one, and never waits
//! for a connection.
//!
//! The harness is split by concern: this module is the API the tests use ([`Page`],
//! [`PageReport`], [`open_page`]) and the waiting loop that drives a page; [`chromium`] starts
//! and tears down the process; [`protocol`] frames commands and replies on the pipe; [`events`]
//! turns the page's events into its report.

mod chromium;
mod events;
mod protocol;

use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::PATIENCE;
use chromium::Chromium;
pub use chromium::CHROMIUM_OVERRIDE;
use events::exception_text;
use protocol::{decode_screenshot, reply_result, str_in};

/// How long the page may go on after its load event before it is collected: for work queued
/// by the load (timers of 0 ms, promise callbacks) to report its messages.
const SETTLE: Duration = Duration::from_millis(100);

/// One console message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleMessage {
    /// `console.*` calls: the call's type (`log`, `info`, `warning`, `error`, `assert`,
    /// `debug`, ...). Browser messages (`Log.entryAdded`): `verbose`, `info`, `warning` or
    /// `error`.
    pub level: String,
    /// `console` for `console.*` calls, else the browser's source (`network`, `security`,
    /// `javascript`, `rendering`, ...).
    pub source: String,
    /// The arguments joined with spaces (strings as they are, other values as JSON or their
    /// description), or the browser's message.
    pub text: String,
}

/// What a page did when loaded in headless Chromium.
#[derive(Clone, Debug, Default)]
pub struct PageReport {
    /// Every console message: `console.*` calls (`Runtime.consoleAPICalled`) and the browser's
    /// own (`Log.entryAdded`, e.g. a failed resource load), in the order they came.
    pub console: Vec<ConsoleMessage>,
    /// Uncaught exceptions and unhandled rejections (`Runtime.exceptionThrown`), each as
    /// `Uncaught Error: ... at url:line:column` with the stack when there is one.
    pub exceptions: Vec<String>,
    /// Dialogs the page opened (`alert`, `confirm`, `prompt`, `beforeunload`), as
    /// `type: message`. The harness accepts each one so the page goes on.
    pub dialogs: Vec<String>,
    /// Every URL the page requested (`Network.requestWillBeSent`) other than the document
    /// itself and `data:` URLs, in order; non-local ones were failed by the harness.
    pub requests: Vec<String>,
    /// `document.body.innerText` once the page had loaded and settled.
    pub text: String,
    /// A PNG of the viewport (not the full page), `width` × `height` pixels, taken once the
    /// page had loaded and settled.
    pub screenshot_png: Vec<u8>,
}

impl PageReport {
    /// What went wrong: console messages of level `error` or `assert`, then exceptions, then
    /// dialogs (a report has no business opening one).
    pub fn errors(&self) -> Vec<String> {
        let console = self
            .console
            .iter()
            .filter(|m| m.level == "error" || m.level == "assert")
            .map(|m| format!("console {} ({}): {}", m.level, m.source, m.text));
        let exceptions = self.exceptions.iter().map(|e| format!("exception: {e}"));
        let dialogs = self.dialogs.iter().map(|d| format!("dialog {d}"));
        console.chain(exceptions).chain(dialogs).collect()
    }
}

/// Opens `path` in a fresh headless Chromium with a `width` × `height` viewport, waits for
/// its load event and a short settle, and collects what happened; panics on any failure of
/// the harness (not of the page: see [`PageReport::errors`]).
#[track_caller]
pub fn open_page(path: &Path, width: u32, height: u32) -> Page {
    match Page::open(path, width, height) {
        Ok(page) => page,
        Err(e) => panic!("{e}"),
    }
}

/// Why a page could not be opened, and whether Chromium itself crashed.
struct OpenFailure {
    message: String,
    browser_crashed: bool,
}

impl OpenFailure {
    /// A failure that is not a crash of the browser.
    fn of_page(message: String) -> Self {
        Self {
            message,
            browser_crashed: false,
        }
    }
}

/// A local HTML file loaded in a headless Chromium of its own. When this is dropped, Chromium
/// is asked to close (`Browser.close`), killed by its pid if it has not exited within 5 s, and
/// its profile removed.
///
/// Chromium is started with `PR_SET_PDEATHSIG`, so it is also killed if the thread that
/// opened the page ends (keep a `Page` in the thread that opened it) or the test process dies.
pub struct Page {
    chromium: Chromium,
    session: String,
    document_url: String,
    report: PageReport,
    /// `Page.loadEventFired` events seen since `Page.navigate` was sent.
    loads: u32,
    /// Why the page cannot go on (its renderer crashed, it was detached).
    gone: Option<String>,
}

impl Page {
    /// [`open_page`], returning what failed instead of panicking.
    ///
    /// Chromium itself (the browser process, not a page's renderer) rarely dies of a signal
    /// while opening a page (seen once, SIGSEGV in a full test run on a loaded machine; not in
    /// 17 runs of the browser and report tests since, with and without load). Such a crash
    /// says nothing about the page, so the page is opened once more in a new Chromium, and the
    /// first crash is named on stderr and in a second failure. A page that crashes its
    /// renderer is reported as the page's failure, never retried.
    pub fn open(path: &Path, width: u32, height: u32) -> Result<Page, String> {
        match Self::open_once(path, width, height) {
            Err(OpenFailure {
                message,
                browser_crashed: true,
            }) => {
                eprintln!("chromium crashed while opening a page; opening it once more: {message}");
                Self::open_once(path, width, height).map_err(|again| {
                    format!(
                        "{} (and before, chromium crashed once: {message})",
                        again.message
                    )
                })
            }
            other => other.map_err(|failure| failure.message),
        }
    }

    /// Opens the page in a new Chromium, once.
    fn open_once(path: &Path, width: u32, height: u32) -> Result<Page, OpenFailure> {
        let path = path.canonicalize().map_err(|e| {
            OpenFailure::of_page(format!("cannot open {} in chromium: {e}", path.display()))
        })?;
        let chromium = Chromium::start(width, height).map_err(OpenFailure::of_page)?;
        let mut page = Page {
            chromium,
            session: String::new(),
            document_url: file_url(&path),
            report: PageReport::default(),
            loads: 0,
            gone: None,
        };
        match page.load(width, height) {
            Ok(()) => Ok(page),
            Err(message) => Err(OpenFailure {
                browser_crashed: page.chromium.crashed(),
                message,
            }),
        }
    }

    /// Attaches to a new tab, loads the document in it, waits for it to settle, and takes its
    /// text and a screenshot.
    fn load(&mut self, width: u32, height: u32) -> Result<(), String> {
        let chromium = &mut self.chromium;
        let target = chromium.call_browser("Target.createTarget", json!({"url": "about:blank"}))?;
        let target_id = str_in(&target, "targetId", "Target.createTarget")?.to_owned();
        let attached = chromium.call_browser(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        )?;
        self.session = str_in(&attached, "sessionId", "Target.attachToTarget")?.to_owned();
        for method in [
            "Page.enable",
            "Runtime.enable",
            "Log.enable",
            "Network.enable",
        ] {
            self.call(method, json!({}))?;
        }
        self.call(
            "Fetch.enable",
            json!({"patterns": [{"urlPattern": "*", "requestStage": "Request"}]}),
        )?;
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )?;
        self.loads = 0;
        let navigated = self.call("Page.navigate", json!({"url": self.document_url}))?;
        if let Some(error) = navigated.get("errorText").and_then(Value::as_str) {
            return Err(self.chromium.failure(&format!(
                "chromium could not load {}: {error}",
                self.document_url
            )));
        }
        self.wait_until("Page.loadEventFired", |page| page.loads > 0)?;
        // Two animation frames: the page has been laid out and painted once.
        self.try_eval(
            "new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))",
        )?;
        self.pump_for(SETTLE)?;
        let text = self.try_eval("document.body ? document.body.innerText : ''")?;
        self.report.text = text.as_str().unwrap_or_default().to_owned();
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}))?;
        let data = str_in(&shot, "data", "Page.captureScreenshot")?;
        self.report.screenshot_png = decode_screenshot(data)?;
        Ok(())
    }

    /// What the page did. `text` and `screenshot_png` are from when it was opened; console
    /// messages, exceptions, dialogs and requests go on being collected during [`Page::eval`].
    pub fn report(&self) -> &PageReport {
        &self.report
    }

    /// The `file://` URL the page was loaded from.
    pub fn url(&self) -> &str {
        &self.document_url
    }

    /// The JSON value of the JavaScript `expression` evaluated in the page (a promise is
    /// awaited; `undefined` and values JSON cannot hold are null); panics if it throws or the
    /// harness fails.
    #[track_caller]
    pub fn eval(&mut self, expression: &str) -> Value {
        match self.try_eval(expression) {
            Ok(value) => value,
            Err(e) => panic!("in {}: {e}", self.document_url),
        }
    }

    /// [`Page::eval`], returning what failed instead of panicking.
    pub fn try_eval(&mut self, expression: &str) -> Result<Value, String> {
        let reply = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .map_err(|e| format!("evaluating `{expression}`: {e}"))?;
        if let Some(details) = reply.get("exceptionDetails") {
            return Err(format!("`{expression}` threw {}", exception_text(details)));
        }
        Ok(reply["result"].get("value").cloned().unwrap_or(Value::Null))
    }

    /// Sends `method` to the page's session and waits for its reply, handling the events that
    /// come meanwhile.
    fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.chromium.send(Some(&self.session), method, &params)?;
        let deadline = Instant::now() + PATIENCE;
        loop {
            let message = self.next_message(deadline, &format!("the reply to {method}"))?;
            if message.get("id").and_then(Value::as_u64) == Some(id) {
                return reply_result(message, method);
            }
            self.handle(message)?;
        }
    }

    /// Handles events until `done` holds.
    fn wait_until(&mut self, what: &str, done: impl Fn(&Page) -> bool) -> Result<(), String> {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            let message = self.next_message(deadline, what)?;
            self.handle(message)?;
        }
        Ok(())
    }

    /// Handles the events that come within `duration`.
    fn pump_for(&mut self, duration: Duration) -> Result<(), String> {
        let deadline = Instant::now() + duration;
        while let Some(message) = self.chromium.recv(deadline)? {
            self.handle(message)?;
        }
        Ok(())
    }

    /// The next message from Chromium, or an error naming `what` was waited for.
    fn next_message(&mut self, deadline: Instant, what: &str) -> Result<Value, String> {
        if let Some(gone) = &self.gone {
            return Err(self
                .chromium
                .failure(&format!("waiting for {what}: {gone}")));
        }
        match self.chromium.recv(deadline) {
            Ok(Some(message)) => Ok(message),
            Ok(None) => Err(self.chromium.failure(&format!(
                "timed out after {PATIENCE:?} waiting for {what} from chromium ({})",
                self.document_url
            ))),
            Err(e) => Err(format!("waiting for {what}: {e}")),
        }
    }
}

/// `file://` and the absolute `path`, percent-encoded.
fn file_url(path: &Path) -> String {
    let mut url = String::from("file://");
    for &byte in path.as_os_str().as_bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            url.push(char::from(byte));
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_are_percent_encoded() {
        assert_eq!(
            file_url(Path::new("/tmp/a b/r#1%.html")),
            "file:///tmp/a%20b/r%231%25.html"
        );
    }
}
