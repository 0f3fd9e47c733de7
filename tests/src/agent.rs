//! `profiler serve`, the node agent, run for a test: on a free loopback port, with its own
//! recording directory, and a plain HTTP/1.0 client for its endpoints.
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::docker::Dockerd;
use crate::profiler::Profiler;
use crate::tempdir::TempDir;

/// A response of the agent.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The header lines, as sent (`Name: value`).
    pub headers: Vec<String>,
    /// The body.
    pub body: String,
}

impl Response {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| {
            let (n, v) = h.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

/// A running `profiler serve`. Dropping it SIGKILLs the agent if it still runs.
pub struct Agent {
    /// The agent process (its stderr and exit).
    pub profiler: Profiler,
    /// Its address, `127.0.0.1:PORT`.
    pub address: String,
    record_dir: PathBuf,
    /// The recording directory, when the agent made it for itself.
    _owned_dir: Option<TempDir>,
}

/// A port nobody listens on now (bound and released: another process could take it before
/// the agent, which then fails to start with a message saying so).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

impl Agent {
    /// Starts `profiler serve --listen 127.0.0.1:PORT --record-dir DIR <args>` and waits (up
    /// to a minute) until `/healthz` answers.
    #[track_caller]
    pub fn start(args: &[&str]) -> Self {
        let owned = TempDir::new("agent-recording");
        let record_dir = owned.path().to_path_buf();
        Self::launch(record_dir, Some(owned), args)
    }

    /// Like [`start`](Self::start), with the recording in `record_dir`, which the caller
    /// keeps (and removes): to start an agent where an earlier one recorded, or on a
    /// file system of its own.
    #[track_caller]
    pub fn start_in(record_dir: &Path, args: &[&str]) -> Self {
        Self::launch(record_dir.to_path_buf(), None, args)
    }

    #[track_caller]
    fn launch(record_dir: PathBuf, owned: Option<TempDir>, args: &[&str]) -> Self {
        let address = format!("127.0.0.1:{}", free_port());
        let mut all = vec![
            "serve".to_owned(),
            "--listen".to_owned(),
            address.clone(),
            "--record-dir".to_owned(),
            record_dir.display().to_string(),
        ];
        all.extend(args.iter().map(|&a| a.to_owned()));
        let agent = Self {
            profiler: Profiler::start(all),
            address,
            record_dir,
            _owned_dir: owned,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = agent.try_get("/healthz", None) {
                if response.status == 200 {
                    return agent;
                }
            }
            if agent.profiler.exit().is_some() || Instant::now() > deadline {
                agent.profiler.fail("the agent did not answer /healthz");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts the agent over the containers of a private dockerd, as [`Dockerd::watch`] watches
    /// them: the whole memory hierarchy as the cgroup root, the containers' names from the
    /// daemon's state; then `args`.
    #[track_caller]
    pub fn start_over_docker(dockerd: &Dockerd, args: &[&str]) -> Self {
        let all = dockerd.profiler_args(args);
        Self::start(&all.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// The rolling recording's directory.
    pub fn record_dir(&self) -> &Path {
        &self.record_dir
    }

    /// `GET path`, with an `Accept` header if given.
    pub fn try_get(&self, path: &str, accept: Option<&str>) -> std::io::Result<Response> {
        get(&self.address, path, accept)
    }

    /// `GET path`, which must answer (any status).
    #[track_caller]
    pub fn get(&self, path: &str) -> Response {
        self.try_get(path, None)
            .unwrap_or_else(|e| self.profiler.fail(format_args!("GET {path}: {e}")))
    }

    /// `GET /metrics` in the text format, which must answer 200.
    #[track_caller]
    pub fn metrics(&self) -> String {
        let response = self.get("/metrics");
        if response.status != 200 {
            self.profiler
                .fail(format_args!("GET /metrics answered {response:?}"));
        }
        response.body
    }

    /// Polls `/metrics` (every 250 ms, up to `timeout`) until `found` picks something from it.
    #[track_caller]
    pub fn wait_metrics<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut found: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            if let Ok(response) = self.try_get("/metrics", None) {
                if let Some(t) = found(&response.body) {
                    return t;
                }
                last = response.body;
            }
            if Instant::now() > deadline {
                self.profiler.fail(format_args!(
                    "no {what} in /metrics within {timeout:?}; the last:\n{last}"
                ));
            }
            thread::sleep(Duration::from_millis(250));
        }
    }
}

/// The value of the sample `name{labels}` in a text exposition, where every `label="value"`
/// pair of `labels` is among the sample's labels.
pub fn sample_value(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (set, value) = match rest.strip_prefix('{') {
            Some(rest) => rest.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        let all = labels
            .iter()
            .all(|(k, v)| set.contains(&format!("{k}=\"{v}\"")));
        all.then(|| value.trim().parse().ok()).flatten()
    })
}

/// `GET path` from `address` over HTTP/1.0.
pub fn get(address: &str, path: &str, accept: Option<&str>) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {address}\r\n{accept}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head:?}")))?;
    Ok(Response {
        status,
        headers: lines.map(str::to_owned).collect(),
        body: body.to_owned(),
    })
}
