//! Reading a recording written by `profiler watch --record`: a header line, then the lines of
//! `profiler watch --json` ([`Line`]).
//!
//! The reader is tolerant where a recording can honestly be damaged and strict where a guess
//! would mislead: a last line cut short (the watch was killed) is dropped and said; the first
//! line that does not read ends the reading, and the report shows everything before it with a
//! warning naming that line; a file that is not a recording, or of a version this reader does
//! not know, is an error.
use std::io::BufRead;

use serde::Deserialize;
use thiserror::Error;

use crate::{line::Line, probe::Probe};

/// The recording versions this reader understands.
pub const SUPPORTED_VERSIONS: [u32; 1] = [1];

/// The first line of a recording.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Header {
    /// Format version.
    pub version: u32,
    /// The profiler that wrote it.
    #[serde(default)]
    pub profiler_version: Option<String>,
    /// Unix seconds.
    #[serde(default)]
    pub started: Option<f64>,
    /// Host name of the node.
    #[serde(default)]
    pub node: Option<String>,
    /// `v1` or `v2`.
    #[serde(default)]
    pub cgroup_version: Option<String>,
    /// Seconds between samples.
    #[serde(default)]
    pub interval_s: Option<f64>,
    /// `--warn`, seconds.
    #[serde(default)]
    pub warn_s: Option<f64>,
    /// `--critical`, seconds.
    #[serde(default)]
    pub critical_s: Option<f64>,
    /// Kernel, hooks and mode.
    #[serde(default)]
    pub probe: Option<Probe>,
}

/// Where reading stopped early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Damage {
    /// The last line has no end: the watch was killed while writing it. Harmless.
    CutShort {
        /// Its line number (1-based).
        line: usize,
    },
    /// A complete line that is not a record: reading stopped there.
    BadLine {
        /// Its line number (1-based).
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// A recording as read.
#[derive(Clone, Debug, PartialEq)]
pub struct Recording {
    /// Its first line.
    pub header: Header,
    /// Every line read after it.
    pub lines: Vec<Line>,
    /// Where reading stopped early, if it did.
    pub damage: Option<Damage>,
}

/// Why nothing could be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReadError {
    /// An empty file.
    #[error(
        "the file is empty: it is not a recording (make one with `profiler watch --record FILE`)"
    )]
    Empty,
    /// The first line is not a recording header.
    #[error("the first line is not a profiler recording header ({reason}); make one with `profiler watch --record FILE`")]
    NotARecording {
        /// What is wrong with it.
        reason: String,
    },
    /// A version this reader does not know.
    #[error("recording version {found} is not supported (this profiler reads versions {supported:?}); use the profiler version that wrote it, or a newer one")]
    UnknownVersion {
        /// The file's version.
        found: u32,
        /// Versions this reader knows.
        supported: Vec<u32>,
    },
    /// The file could not be read.
    #[error("cannot read the recording: {reason}")]
    Io {
        /// What the system said.
        reason: String,
    },
}

#[derive(Deserialize)]
struct Probe0 {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    format: Option<String>,
    version: u32,
}

/// Reads a recording from its text, keeping every line.
pub fn read(text: &str) -> Result<Recording, ReadError> {
    let mut lines = Vec::new();
    let scan = scan(text.as_bytes(), |_, line| lines.push(line))?;
    Ok(Recording {
        header: scan.header,
        lines,
        damage: scan.damage,
    })
}

/// What [`scan`] found besides the lines it handed over.
#[derive(Clone, Debug, PartialEq)]
pub struct Scan {
    /// The recording's first line.
    pub header: Header,
    /// Lines read after the header.
    pub lines: usize,
    /// Where reading stopped early, if it did.
    pub damage: Option<Damage>,
}

/// Reads a recording line by line, handing each line (with the header) to `each` as it is
/// read, so that a recording of a day on a busy node never has to be in memory at once.
pub fn scan(
    mut input: impl BufRead,
    mut each: impl FnMut(&Header, Line),
) -> Result<Scan, ReadError> {
    let mut raw = Vec::new();
    let got = input.read_until(b'\n', &mut raw).map_err(io_error)?;
    if got == 0 {
        return Err(ReadError::Empty);
    }
    let header = read_header(&raw)?;
    let mut lines = 0;
    let mut damage = None;
    let mut number = 1;
    loop {
        raw.clear();
        if input.read_until(b'\n', &mut raw).map_err(io_error)? == 0 {
            break;
        }
        number += 1;
        if raw.last() != Some(&b'\n') {
            damage = Some(Damage::CutShort { line: number });
            break;
        }
        match serde_json::from_slice::<Line>(&raw) {
            Ok(line) => {
                lines += 1;
                each(&header, line);
            }
            Err(e) => {
                damage = Some(Damage::BadLine {
                    line: number,
                    reason: e.to_string(),
                });
                break;
            }
        }
    }
    Ok(Scan {
        header,
        lines,
        damage,
    })
}

fn io_error(e: std::io::Error) -> ReadError {
    ReadError::Io {
        reason: e.to_string(),
    }
}

fn read_header(first: &[u8]) -> Result<Header, ReadError> {
    if first.last() != Some(&b'\n') {
        return Err(ReadError::NotARecording {
            reason:
                "the header line is cut short: the watch was killed before it wrote anything else"
                    .into(),
        });
    }
    let probe: Probe0 = serde_json::from_slice(first).map_err(|e| ReadError::NotARecording {
        reason: e.to_string(),
    })?;
    if probe.kind != "recording" || probe.format.as_deref() != Some("profiler-recording") {
        return Err(ReadError::NotARecording {
            reason: format!("its type is {:?}", probe.kind),
        });
    }
    if !SUPPORTED_VERSIONS.contains(&probe.version) {
        return Err(ReadError::UnknownVersion {
            found: probe.version,
            supported: SUPPORTED_VERSIONS.to_vec(),
        });
    }
    serde_json::from_slice(first).map_err(|e| ReadError::NotARecording {
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::{Body, OomKill};

    /// A real recording: a leak in a 64 MiB memcg to its OOM kill, with a critical warning,
    /// by a process named `leaky<app>`.
    fn fixture() -> String {
        read_testdata("leak.rec")
    }

    /// The same, cut down to its header, two samples and its events (for the every-byte test).
    fn small() -> String {
        read_testdata("small.rec")
    }

    /// The reports' fixtures, real recordings (the end-to-end tests read them there too).
    fn read_testdata(name: &str) -> String {
        let path = format!("{}/../reports/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn a_real_recording_reads_whole() {
        let text = fixture();
        let recording = read(&text).expect("reads");
        assert_eq!(recording.damage, None);
        assert_eq!(recording.lines.len(), text.lines().count() - 1);
        assert_eq!(recording.header.version, 1);
        assert!(recording
            .header
            .probe
            .as_ref()
            .is_some_and(|p| !p.hooks.is_empty()));
        let kills: Vec<&OomKill> = recording
            .lines
            .iter()
            .filter_map(|l| match &l.body {
                Body::OomKill(k) => Some(k),
                _ => None,
            })
            .collect();
        assert_eq!(kills.len(), 1);
        assert_eq!(kills[0].comm, "leaky<app>");
        assert!(recording
            .lines
            .iter()
            .any(|l| matches!(l.body, Body::Warning(_))));
        assert!(matches!(
            recording.lines.last().map(|l| &l.body),
            Some(Body::End(_))
        ));
    }

    #[test]
    fn truncated_at_every_byte() {
        let text = small();
        let header_end = text.find('\n').expect("a header line") + 1;
        let full = read(&text).expect("reads").lines;
        for cut in 0..text.len() {
            let prefix = &text[..cut];
            match read(prefix) {
                Ok(recording) => {
                    assert!(cut >= header_end, "cut {cut}: read without a whole header");
                    // Everything read is what the whole file says, in order.
                    assert_eq!(
                        recording.lines[..],
                        full[..recording.lines.len()],
                        "cut {cut}"
                    );
                    let whole_lines = prefix[header_end..].matches('\n').count();
                    assert_eq!(recording.lines.len(), whole_lines, "cut {cut}");
                    let cut_short = !prefix.ends_with('\n');
                    assert_eq!(
                        matches!(recording.damage, Some(Damage::CutShort { .. })),
                        cut_short,
                        "cut {cut}"
                    );
                }
                Err(e) => assert!(cut < header_end, "cut {cut}: {e}"),
            }
        }
    }

    #[test]
    fn a_bad_line_stops_reading_and_is_named() {
        let text = fixture();
        let mut lines: Vec<&str> = text.lines().collect();
        lines[5] = "{\"ts\": \"not a number\", \"type\": \"sample\"}";
        let broken = lines.join("\n") + "\n";
        let recording = read(&broken).expect("reads up to the bad line");
        assert_eq!(recording.lines.len(), 4);
        assert!(
            matches!(recording.damage, Some(Damage::BadLine { line: 6, .. })),
            "{:?}",
            recording.damage
        );
    }

    #[test]
    fn unknown_line_types_are_skipped() {
        let text = fixture();
        let (header, rest) = text.split_once('\n').expect("header");
        let newer = format!(
            "{header}\n{{\"ts\":1.0,\"cgroup\":null,\"type\":\"from_the_future\",\"x\":1}}\n{rest}"
        );
        let recording = read(&newer).expect("reads");
        assert_eq!(recording.damage, None);
        assert_eq!(recording.lines[0].body, Body::Other);
    }

    #[test]
    fn not_a_recording_and_unknown_versions() {
        assert_eq!(read(""), Err(ReadError::Empty));
        assert!(matches!(
            read("hello\n"),
            Err(ReadError::NotARecording { .. })
        ));
        assert!(matches!(
            read("{\"type\":\"sample\",\"version\":1}\n"),
            Err(ReadError::NotARecording { .. })
        ));
        let future = "{\"type\":\"recording\",\"format\":\"profiler-recording\",\"version\":99}\n";
        let err = read(future).expect_err("unknown version");
        assert_eq!(
            err,
            ReadError::UnknownVersion {
                found: 99,
                supported: vec![1]
            }
        );
        assert!(err.to_string().contains("version 99"));
    }
}
