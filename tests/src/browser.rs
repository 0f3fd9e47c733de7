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

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{find_in_path, PATIENCE};

/// Debian's Chromium binary; `/usr/bin/chromium` is a shell wrapper that adds flags of its own
/// (and prints a shell error on machines with two mounts at /dev/shm) before exec'ing it.
const CHROMIUM_BINARY: &str = "/usr/lib/chromium/chromium";

/// How long the page may go on after its load event before it is collected: for work queued
/// by the load (timers of 0 ms, promise callbacks) to report its messages.
const SETTLE: Duration = Duration::from_millis(100);

/// How long Chromium may take to exit when asked before it is killed.
const CLOSE_PATIENCE: Duration = Duration::from_secs(5);

/// How many of the last lines of Chromium's stderr an error message shows.
const STDERR_LINES: usize = 20;

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
    pub fn open(path: &Path, width: u32, height: u32) -> Result<Page, String> {
        let path = path
            .canonicalize()
            .map_err(|e| format!("cannot open {} in chromium: {e}", path.display()))?;
        let document_url = file_url(&path);
        let mut chromium = Chromium::start(width, height)?;
        let target = chromium.call_browser("Target.createTarget", json!({"url": "about:blank"}))?;
        let target_id = str_in(&target, "targetId", "Target.createTarget")?.to_owned();
        let attached = chromium.call_browser(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        )?;
        let session = str_in(&attached, "sessionId", "Target.attachToTarget")?.to_owned();
        let mut page = Page {
            chromium,
            session,
            document_url,
            report: PageReport::default(),
            loads: 0,
            gone: None,
        };
        for method in [
            "Page.enable",
            "Runtime.enable",
            "Log.enable",
            "Network.enable",
        ] {
            page.call(method, json!({}))?;
        }
        page.call(
            "Fetch.enable",
            json!({"patterns": [{"urlPattern": "*", "requestStage": "Request"}]}),
        )?;
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )?;
        page.loads = 0;
        let navigated = page.call("Page.navigate", json!({"url": page.document_url}))?;
        if let Some(error) = navigated.get("errorText").and_then(Value::as_str) {
            return Err(page.chromium.failure(&format!(
                "chromium could not load {}: {error}",
                page.document_url
            )));
        }
        page.wait_until("Page.loadEventFired", |page| page.loads > 0)?;
        // Two animation frames: the page has been laid out and painted once.
        page.try_eval(
            "new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))",
        )?;
        page.pump_for(SETTLE)?;
        let text = page.try_eval("document.body ? document.body.innerText : ''")?;
        page.report.text = text.as_str().unwrap_or_default().to_owned();
        let shot = page.call("Page.captureScreenshot", json!({"format": "png"}))?;
        let data = str_in(&shot, "data", "Page.captureScreenshot")?;
        page.report.screenshot_png = base64_decode(data)
            .ok_or_else(|| "Page.captureScreenshot returned invalid base64".to_owned())?;
        Ok(page)
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

    /// Records an event of the page's session and answers those that need an answer.
    fn handle(&mut self, message: Value) -> Result<(), String> {
        if message.get("id").is_some() {
            // The reply to a command nobody waits for (dialogs, paused requests).
            if let Some(error) = message.get("error") {
                eprintln!("warning: chromium: a command of the harness failed: {error}");
            }
            return Ok(());
        }
        let Some(method) = message.get("method").and_then(Value::as_str) else {
            return Ok(());
        };
        let params = &message["params"];
        if method == "Target.detachedFromTarget" && params["sessionId"] == *self.session {
            self.gone = Some("the page was detached (closed or crashed)".to_owned());
        }
        if message.get("sessionId").and_then(Value::as_str) != Some(&self.session) {
            return Ok(());
        }
        match method {
            "Runtime.consoleAPICalled" => {
                let args = params["args"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                let text = args.iter().map(remote_object_text).collect::<Vec<_>>();
                self.report.console.push(ConsoleMessage {
                    level: params["type"].as_str().unwrap_or("?").to_owned(),
                    source: "console".to_owned(),
                    text: text.join(" "),
                });
            }
            "Log.entryAdded" => {
                let entry = &params["entry"];
                let mut text = entry["text"].as_str().unwrap_or_default().to_owned();
                if let Some(url) = entry["url"].as_str().filter(|u| !u.is_empty()) {
                    text = format!("{text} ({url})");
                }
                self.report.console.push(ConsoleMessage {
                    level: entry["level"].as_str().unwrap_or("?").to_owned(),
                    source: entry["source"].as_str().unwrap_or("?").to_owned(),
                    text,
                });
            }
            "Runtime.exceptionThrown" => {
                let text = exception_text(&params["exceptionDetails"]);
                self.report.exceptions.push(text);
            }
            "Page.javascriptDialogOpening" => {
                self.report.dialogs.push(format!(
                    "{}: {}",
                    params["type"].as_str().unwrap_or("?"),
                    params["message"].as_str().unwrap_or_default()
                ));
                self.chromium.send(
                    Some(&self.session),
                    "Page.handleJavaScriptDialog",
                    &json!({"accept": true}),
                )?;
            }
            "Network.requestWillBeSent" => {
                let url = params["request"]["url"].as_str().unwrap_or_default();
                let is_document = params["type"] == "Document" && url == self.document_url;
                if !is_document && !url.starts_with("data:") {
                    self.report.requests.push(url.to_owned());
                }
            }
            "Fetch.requestPaused" => {
                let url = params["request"]["url"].as_str().unwrap_or_default();
                let local = ["file:", "data:", "blob:"]
                    .iter()
                    .any(|s| url.starts_with(s));
                let request_id = params["requestId"].clone();
                if local {
                    let params = json!({"requestId": request_id});
                    self.chromium
                        .send(Some(&self.session), "Fetch.continueRequest", &params)?;
                } else {
                    let params = json!({"requestId": request_id, "errorReason": "BlockedByClient"});
                    self.chromium
                        .send(Some(&self.session), "Fetch.failRequest", &params)?;
                }
            }
            "Page.loadEventFired" => self.loads += 1,
            "Inspector.targetCrashed" => {
                self.gone = Some("the page's renderer crashed".to_owned());
            }
            _ => {}
        }
        Ok(())
    }
}

/// A headless Chromium started by the harness, and the DevTools pipe to it.
struct Chromium {
    child: Child,
    /// Chromium's fd 3: commands.
    commands: File,
    /// Chromium's fd 4, split at NULs and parsed by a thread; an error once it closes.
    messages: Receiver<Result<Value, String>>,
    /// Set once the pipe has closed: nothing more will come.
    closed: Option<String>,
    stderr: Arc<Mutex<StderrTail>>,
    next_id: u64,
    /// Removed once Chromium has exited (fields drop after `Drop::drop`).
    _profile: ProfileDir,
}

impl Chromium {
    fn start(width: u32, height: u32) -> Result<Chromium, String> {
        let binary = chromium_binary()?;
        let profile = ProfileDir::new()?;
        let (commands_read, commands_write) = cloexec_pipe()?;
        let (messages_read, messages_write) = cloexec_pipe()?;
        let mut command = Command::new(&binary);
        command
            .args([
                "--headless",
                // Chromium refuses to run as root inside its sandbox.
                "--no-sandbox",
                "--disable-gpu",
                // No network on the test machines: no QUIC, no update or sync or first-run
                // traffic, no extensions or default apps fetching anything.
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-default-apps",
                // Shared memory in the profile's file system, not /dev/shm: containers have a
                // /dev/shm of 64 MiB, and Chromium crashes when it is full.
                "--disable-dev-shm-usage",
                // Screenshots as a page looks, whatever the machine's display.
                "--hide-scrollbars",
                "--force-color-profile=srgb",
                "--mute-audio",
                // No keyring (over D-Bus, which the test machines do not run).
                "--password-store=basic",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            // Nothing of Chromium's outside its profile: no ~/.pki/nssdb, no ~/.cache.
            .env("HOME", profile.path())
            .env("XDG_CONFIG_HOME", profile.path().join(".config"))
            .env("XDG_CACHE_HOME", profile.path().join(".cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let fds = [commands_read.as_raw_fd(), messages_write.as_raw_fd()];
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the closure only makes async-signal-safe calls (fcntl, dup2, prctl,
        // getppid) on fds that stay open in the parent until spawn returns.
        unsafe {
            command.pre_exec(move || child_setup(fds, parent));
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        // Chromium's ends: only Chromium may hold them, or the pipe never reports its exit.
        drop(commands_read);
        drop(messages_write);
        let stderr = Arc::new(Mutex::new(StderrTail::default()));
        if let Some(pipe) = child.stderr.take() {
            let tail = Arc::clone(&stderr);
            thread::spawn(move || keep_tail(pipe, &tail));
        }
        let (sender, messages) = mpsc::channel();
        let reader = File::from(messages_read);
        thread::spawn(move || read_messages(reader, &sender));
        Ok(Chromium {
            child,
            commands: File::from(commands_write),
            messages,
            closed: None,
            stderr,
            next_id: 0,
            _profile: profile,
        })
    }

    /// Sends a command, returning its id without waiting for the reply.
    fn send(&mut self, session: Option<&str>, method: &str, params: &Value) -> Result<u64, String> {
        self.next_id += 1;
        let mut message = json!({"id": self.next_id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        if let Err(e) = self.commands.write_all(&bytes) {
            return Err(self.failure(&format!("sending {method} to chromium: {e}")));
        }
        Ok(self.next_id)
    }

    /// Sends a browser-level command and waits for its reply (events meanwhile are dropped:
    /// there is no page yet).
    fn call_browser(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.send(None, method, &params)?;
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.recv(deadline)? {
                Some(message) if message.get("id").and_then(Value::as_u64) == Some(id) => {
                    return reply_result(message, method)
                }
                Some(_) => {}
                None => {
                    return Err(self.failure(&format!(
                        "timed out after {PATIENCE:?} waiting for the reply to {method}"
                    )))
                }
            }
        }
    }

    /// The next message, `None` once `deadline` has passed, an error if the pipe is closed.
    fn recv(&mut self, deadline: Instant) -> Result<Option<Value>, String> {
        if let Some(why) = &self.closed {
            let why = why.clone();
            return Err(self.failure(&why));
        }
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.messages.recv_timeout(timeout) {
            Ok(Ok(message)) => Ok(Some(message)),
            Ok(Err(why)) => {
                self.closed = Some(why.clone());
                Err(self.failure(&why))
            }
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                let why = "the DevTools pipe reader stopped".to_owned();
                self.closed = Some(why.clone());
                Err(self.failure(&why))
            }
        }
    }

    /// `what`, with Chromium's exit status if it has ended and the last lines of its stderr.
    fn failure(&mut self, what: &str) -> String {
        // A Chromium that has just died may still be writing why.
        let exited = match self.child.try_wait() {
            Ok(Some(status)) => Some(status),
            _ if self.closed.is_some() => {
                thread::sleep(Duration::from_millis(200));
                self.child.try_wait().ok().flatten()
            }
            _ => None,
        };
        let status = exited.map_or(String::new(), |s| format!(" (chromium exited: {s})"));
        let (lines, dbus_errors) = self
            .stderr
            .lock()
            .map(|t| (Vec::from(t.lines.clone()), t.dbus_errors))
            .unwrap_or_default();
        let tail = if lines.is_empty() {
            "(nothing)".to_owned()
        } else {
            lines.join("\n")
        };
        format!(
            "{what}{status}; the last lines of chromium's stderr \
             (less {dbus_errors} D-Bus errors):\n{tail}"
        )
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // Asked to close, Chromium ends its renderer and GPU processes and reaps them; killed,
        // it leaves them to exit on their own as orphans.
        if self.closed.is_none() && self.send(None, "Browser.close", &json!({})).is_ok() {
            let deadline = Instant::now() + CLOSE_PATIENCE;
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                thread::sleep(Duration::from_millis(10));
            }
        }
        // Only the process the harness started, by its pid; std does not signal a child it
        // has already reaped. No panic here: a test may already be panicking.
        if let Err(e) = self.child.kill() {
            eprintln!("warning: killing chromium ({}): {e}", self.child.id());
        }
        if let Err(e) = self.child.wait() {
            eprintln!("warning: waiting for chromium ({}): {e}", self.child.id());
        }
    }
}

/// Chromium's profile directory, also its `HOME`: fresh, and removed with everything in it
/// when dropped.
struct ProfileDir(PathBuf);

impl ProfileDir {
    fn new() -> Result<ProfileDir, String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "profiler-e2e-chromium-profile-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&path)
            .map_err(|e| format!("cannot create chromium's profile {}: {e}", path.display()))?;
        Ok(ProfileDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ProfileDir {
    fn drop(&mut self) {
        // Chromium's crashpad handlers (in sessions of their own, outside its process tree;
        // `--disable-crashpad-for-testing` makes its network service crash) keep its
        // `$HOME/.config/chromium/Crash Reports` here and exit a moment after it, and a helper
        // process may outlive a killed Chromium by a moment: removed until it stays gone.
        // No panic here: a test may be panicking.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let removed = fs::remove_dir_all(&self.0);
            thread::sleep(Duration::from_millis(20));
            if !self.0.exists() {
                return;
            }
            if Instant::now() > deadline {
                eprintln!("warning: removing {}: {removed:?}", self.0.display());
                return;
            }
        }
    }
}

/// In the forked child before exec: the pipes on fds 3 and 4, and death with the parent.
fn child_setup(fds: [libc::c_int; 2], parent: libc::pid_t) -> io::Result<()> {
    // First above 4, so that moving one onto 3 or 4 cannot close the other.
    let mut moved = [0; 2];
    for (to, fd) in moved.iter_mut().zip(fds) {
        // SAFETY: fcntl on an fd that is open in the child.
        *to = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
        if *to < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    for (target, fd) in [3, 4].into_iter().zip(moved) {
        // SAFETY: dup2 onto fds 3 and 4; the copy it makes is not close-on-exec.
        if unsafe { libc::dup2(fd, target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: prctl(PR_SET_PDEATHSIG) and getppid have no memory-safety preconditions.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::getppid() != parent {
            return Err(io::Error::other(
                "the test process exited while chromium started",
            ));
        }
    }
    Ok(())
}

/// A pipe `(read, write)`, both ends close-on-exec (no other child inherits them).
fn cloexec_pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!(
            "cannot create a pipe for chromium: {}",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: both fds were just created and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The Chromium binary, or the error telling how to install it.
fn chromium_binary() -> Result<PathBuf, String> {
    let binary = Path::new(CHROMIUM_BINARY);
    if binary.is_file() {
        return Ok(binary.to_owned());
    }
    find_in_path("chromium").ok_or_else(|| {
        format!(
            "chromium is not installed: run cargo xtask setup \
             (no {CHROMIUM_BINARY}, no chromium on PATH)"
        )
    })
}

/// Reads NUL-terminated JSON messages into `sender` until the pipe closes.
fn read_messages(pipe: File, sender: &mpsc::Sender<Result<Value, String>>) {
    let mut reader = BufReader::new(pipe);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        let message = match reader.read_until(0, &mut buffer) {
            Ok(0) => Err("chromium closed the DevTools pipe".to_owned()),
            Ok(_) if buffer.last() != Some(&0) => {
                Err("chromium closed the DevTools pipe in the middle of a message".to_owned())
            }
            Ok(n) => serde_json::from_slice(&buffer[..n - 1]).map_err(|e| {
                let start = String::from_utf8_lossy(&buffer[..n.min(200)]).into_owned();
                format!("chromium sent a message that is not JSON ({e}): {start}")
            }),
            Err(e) => Err(format!("reading the DevTools pipe: {e}")),
        };
        let last = message.is_err();
        if sender.send(message).is_err() || last {
            return;
        }
    }
}

/// The last lines of Chromium's stderr.
#[derive(Default)]
struct StderrTail {
    lines: VecDeque<String>,
    /// D-Bus errors left out: Chromium writes a dozen at every start on a machine without a
    /// D-Bus daemon (`Failed to connect to the bus: ...`), and they would hide the rest.
    dbus_errors: usize,
}

/// Keeps the last [`STDERR_LINES`] lines of `pipe` in `tail` until it closes.
fn keep_tail(pipe: impl io::Read, tail: &Mutex<StderrTail>) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    while let Ok(n) = reader.read_until(b'\n', &mut line) {
        if n == 0 {
            return;
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        if let Ok(mut tail) = tail.lock() {
            if text.contains(":ERROR:dbus/") {
                tail.dbus_errors += 1;
            } else {
                if tail.lines.len() == STDERR_LINES {
                    tail.lines.pop_front();
                }
                tail.lines.push_back(text);
            }
        }
        line.clear();
    }
}

/// The `result` of a reply, or its `error`.
fn reply_result(mut reply: Value, method: &str) -> Result<Value, String> {
    if let Some(error) = reply.get("error") {
        return Err(format!("chromium refused {method}: {error}"));
    }
    Ok(reply["result"].take())
}

/// The string at `key` of a command's result.
fn str_in<'a>(result: &'a Value, key: &str, method: &str) -> Result<&'a str, String> {
    result[key]
        .as_str()
        .ok_or_else(|| format!("the reply to {method} has no {key:?}: {result}"))
}

/// A console argument as text: strings as they are, other primitives as JSON, objects by
/// their description.
fn remote_object_text(object: &Value) -> String {
    match object.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(value) => value.to_string(),
        None => object["unserializableValue"]
            .as_str()
            .or(object["description"].as_str())
            .or(object["type"].as_str())
            .unwrap_or("?")
            .to_owned(),
    }
}

/// An exception as `Uncaught Error: message\n    at url:line:column` (its description, with
/// the stack), or `Uncaught "value" (at url:line:column)` for a value thrown that is no error.
fn exception_text(details: &Value) -> String {
    let text = details["text"].as_str().unwrap_or("exception");
    let mut out = match details["exception"]["description"].as_str() {
        Some(description) => format!("{text} {description}"),
        None => match &details["exception"]["value"] {
            Value::Null => text.to_owned(),
            value => format!("{text} {value}"),
        },
    };
    // A stack says where already.
    if let Some(url) = details["url"]
        .as_str()
        .filter(|u| !u.is_empty() && !out.contains(u))
    {
        let line = details["lineNumber"].as_u64().unwrap_or(0) + 1;
        let column = details["columnNumber"].as_u64().unwrap_or(0) + 1;
        out = format!("{out} (at {url}:{line}:{column})");
    }
    out
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

/// Standard base64 with padding (what `Page.captureScreenshot` returns); `None` if malformed.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let last = i + 1 == bytes.len() / 4;
        let padding = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 || (padding > 0 && !last) {
            return None;
        }
        let mut bits = 0;
        for &c in &chunk[..4 - padding] {
            bits = bits << 6 | value(c)?;
        }
        bits <<= 6 * padding;
        out.extend_from_slice(&bits.to_be_bytes()[1..4 - padding]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(base64_decode(""), Some(vec![]));
        assert_eq!(base64_decode("TWFu"), Some(b"Man".to_vec()));
        assert_eq!(base64_decode("TWE="), Some(b"Ma".to_vec()));
        assert_eq!(base64_decode("TQ=="), Some(b"M".to_vec()));
        assert_eq!(base64_decode("+/+/"), Some(vec![0xfb, 0xff, 0xbf]));
        assert_eq!(base64_decode("TQ==TWFu"), None);
        assert_eq!(base64_decode("TWF"), None);
        assert_eq!(base64_decode("TW-u"), None);
    }

    #[test]
    fn file_urls_are_percent_encoded() {
        assert_eq!(
            file_url(Path::new("/tmp/a b/r#1%.html")),
            "file:///tmp/a%20b/r%231%25.html"
        );
    }
}
