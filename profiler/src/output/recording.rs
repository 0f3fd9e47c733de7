//! `--record FILE`: the watch written to a file as it goes, for `profiler report` and for a
//! colleague.
//!
//! The format is line-oriented JSON: a header line (`"type":"recording"`, the format version,
//! the node, kernel, cgroup version and hooks in use), then the same records `--json` prints.
//! Events are flushed at once and samples at the end of every round, so a `kill -9` loses at
//! most the last interval and leaves a file that reads up to its last complete line.
use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use serde::Serialize;

use super::Sink;
use crate::{
    cgroup::CgroupVersion,
    probe::ProbeReport,
    record::{Record, RecordBody},
};

/// The version of the recording format; readers refuse versions they do not know.
pub const RECORDING_VERSION: u32 = 1;

/// The first line of a recording.
#[derive(Clone, Debug, Serialize)]
pub struct RecordingHeader {
    /// Always `recording`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Always `profiler-recording`: tells the file from other JSON lines.
    pub format: &'static str,
    /// [`RECORDING_VERSION`].
    pub version: u32,
    /// The profiler that wrote it.
    pub profiler_version: &'static str,
    /// Unix seconds when the watch started.
    pub started: f64,
    /// The node's host name.
    pub node: String,
    /// The cgroup version of the node's memory hierarchy.
    pub cgroup_version: Option<CgroupVersion>,
    /// Seconds between samples.
    pub interval_s: f64,
    /// `--warn` and `--critical`, seconds.
    pub warn_s: f64,
    /// See `warn_s`.
    pub critical_s: f64,
    /// The kernel, its hooks and the mode in use.
    pub probe: ProbeReport,
}

/// The node's host name (`/proc/sys/kernel/hostname`), or `unknown`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Writes the recording; wraps the sink the user watches (live view or JSON).
pub struct RecordingSink {
    inner: Box<dyn Sink>,
    file: BufWriter<File>,
    path: PathBuf,
}

impl RecordingSink {
    /// Writes the header to `file` (created at `path`) at once.
    pub fn start(
        file: File,
        path: &Path,
        header: &RecordingHeader,
        inner: Box<dyn Sink>,
    ) -> io::Result<Self> {
        let mut file = BufWriter::new(file);
        serde_json::to_writer(&mut file, header)?;
        file.write_all(b"\n")?;
        file.flush()?;
        Ok(Self {
            inner,
            file,
            path: path.to_path_buf(),
        })
    }

    fn context(&self, e: io::Error) -> io::Error {
        io::Error::new(
            e.kind(),
            format!("writing the recording {}: {e}", self.path.display()),
        )
    }
}

impl Sink for RecordingSink {
    fn emit(&mut self, record: &Record) -> io::Result<()> {
        self.inner.emit(record)?;
        let written = serde_json::to_writer(&mut self.file, record)
            .map_err(io::Error::from)
            .and_then(|()| self.file.write_all(b"\n"));
        written.map_err(|e| self.context(e))?;
        // Events at once; samples wait for the end of the round.
        if !matches!(record.body, RecordBody::Sample(_)) {
            self.file.flush().map_err(|e| self.context(e))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()?;
        self.file.flush().map_err(|e| self.context(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        mode::{ChargeMode, OomSource},
        record::{End, EndReason, Sample},
    };

    struct Discard;

    impl Sink for Discard {
        fn emit(&mut self, _: &Record) -> io::Result<()> {
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn header() -> RecordingHeader {
        RecordingHeader {
            kind: "recording",
            format: "profiler-recording",
            version: RECORDING_VERSION,
            profiler_version: env!("CARGO_PKG_VERSION"),
            started: 1.0,
            node: "node-1".into(),
            cgroup_version: Some(CgroupVersion::V1),
            interval_s: 1.0,
            warn_s: 600.0,
            critical_s: 60.0,
            probe: ProbeReport {
                kernel: "6.18".into(),
                btf: Ok(()),
                hooks: Vec::new(),
                mode: ChargeMode::Tracepoint,
                mode_reason: "test".into(),
                oom_source: OomSource::MarkVictim,
                oom_reason: "test".into(),
            },
        }
    }

    #[test]
    fn header_then_records_events_flushed_at_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("watch.rec");
        let file = File::create(&path).expect("create");
        let mut sink =
            RecordingSink::start(file, &path, &header(), Box::new(Discard)).expect("start");
        let text = std::fs::read_to_string(&path).expect("read");
        let first: serde_json::Value = serde_json::from_str(text.trim()).expect("header JSON");
        assert_eq!(first["type"], "recording");
        assert_eq!(first["version"], RECORDING_VERSION);
        assert_eq!(first["node"], "node-1");
        assert_eq!(first["probe"]["mode"], "tracepoint");

        let sample = Record {
            ts: 2.0,
            cgroup: Some("/cg".into()),
            identity: None,
            body: RecordBody::Sample(Sample::default()),
        };
        sink.emit(&sample).expect("emit");
        // A sample waits for the end of the round...
        assert_eq!(
            std::fs::read_to_string(&path)
                .expect("read")
                .lines()
                .count(),
            1
        );
        sink.flush().expect("flush");
        assert_eq!(
            std::fs::read_to_string(&path)
                .expect("read")
                .lines()
                .count(),
            2
        );
        // ...an event is on disk at once.
        let end = Record {
            ts: 3.0,
            cgroup: None,
            identity: None,
            body: RecordBody::End(End {
                reason: EndReason::Signal,
            }),
        };
        sink.emit(&end).expect("emit");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 3);
        assert!(text.ends_with("\n"));
        assert!(text
            .lines()
            .last()
            .is_some_and(|l| l.contains("\"type\":\"end\"")));
    }
}
