//! The agent's rolling recording: a directory of recording segments, each a complete
//! recording (header, then records) that `profiler report` reads alone, the oldest removed
//! first, never more than `--max-disk` in all, none older than `--retain`.
//!
//! A segment is `segment-<unix ms of its start>.rec`: names sort by time. What an earlier
//! agent wrote there is kept (and counted against the bound). A write that fails (a full
//! disk) stops the recording, with a log line and `profiler_recording_active` 0; the agent
//! goes on, and tries again a minute later.
use std::{
    collections::VecDeque,
    fs::{self, File},
    io::{self, BufWriter, Read, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use super::metrics::AgentMetrics;
use crate::{
    output::{RecordingHeader, Sink},
    record::{Record, RecordBody},
};

/// How long after a failed write the recording is tried again.
const RETRY_S: f64 = 60.0;
/// The smallest segment worth rotating to.
const MIN_SEGMENT: u64 = 64 << 10;

/// The bounds of the recording.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    /// Records older than this many seconds are removed (with their segment).
    pub retain_s: f64,
    /// Bytes on disk, at most.
    pub max_disk: u64,
}

impl Bounds {
    /// The size at which a segment is closed: a quarter of the bound, so that removing the
    /// oldest segment always makes room for the next while three quarters stay.
    fn segment_max(self) -> u64 {
        (self.max_disk / 4).max(MIN_SEGMENT.min(self.max_disk))
    }

    /// How long a segment is written before the next starts: a 24th of the retention
    /// (between a minute and an hour), so that expiry removes recording in small steps.
    fn segment_span_s(self) -> f64 {
        (self.retain_s / 24.0).clamp(60.0, 3600.0)
    }
}

/// A closed segment.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Closed {
    pub(super) path: PathBuf,
    /// Unix seconds of its first record.
    pub(super) start: f64,
    /// Unix seconds of its last record (when it was closed; for a segment found in the
    /// directory, its last complete line's).
    pub(super) end: f64,
    size: u64,
}

/// The segment being written.
struct Current {
    file: BufWriter<File>,
    path: PathBuf,
    start: f64,
    size: u64,
}

/// Writes the rolling recording.
pub(crate) struct RollingRecording {
    dir: PathBuf,
    header: RecordingHeader,
    bounds: Bounds,
    closed: VecDeque<Closed>,
    current: Option<Current>,
    /// When writing last failed (Unix seconds), while it is stopped.
    failed_at: Option<f64>,
    line: Vec<u8>,
    /// The size of a segment's header line.
    header_len: u64,
    metrics: Arc<AgentMetrics>,
}

/// The segment file names in `dir`, oldest first, with their start times and sizes.
pub(super) fn list(dir: &Path) -> io::Result<Vec<Closed>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(start) = name.to_str().and_then(segment_start) else {
            continue;
        };
        // A segment removed meanwhile is simply not there.
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_file() {
            let path = entry.path();
            let end = last_ts(&path).unwrap_or(start).max(start);
            segments.push(Closed {
                path,
                start,
                end,
                size: meta.len(),
            });
        }
    }
    segments.sort_by(|a, b| a.start.total_cmp(&b.start).then(a.path.cmp(&b.path)));
    Ok(segments)
}

/// The start (Unix seconds) a segment's file name says, or `None` for other files.
fn segment_start(name: &str) -> Option<f64> {
    let ms = name.strip_prefix("segment-")?.strip_suffix(".rec")?;
    if ms.is_empty() || !ms.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ms.parse::<u64>().ok().map(|ms| ms as f64 / 1000.0)
}

/// The time of a segment's last complete record (from its tail: segments are written in
/// time order), or `None` when it has none.
fn last_ts(path: &Path) -> Option<f64> {
    use std::io::{Seek, SeekFrom};
    const TAIL: u64 = 64 << 10;
    let mut file = File::open(path).ok()?;
    let size = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(size.saturating_sub(TAIL))).ok()?;
    let mut tail = Vec::new();
    file.take(TAIL).read_to_end(&mut tail).ok()?;
    // Complete lines only: the text up to the last newline.
    let end = tail.iter().rposition(|&b| b == b'\n')?;
    tail[..end].split(|&b| b == b'\n').rev().find_map(line_ts)
}

fn segment_name(start: f64) -> String {
    format!("segment-{:013}.rec", (start.max(0.0) * 1000.0) as u64)
}

impl RollingRecording {
    /// Opens the recording in `dir` (made if missing): keeps the segments there within the
    /// bounds and starts a new one at `now`. Errors when the directory cannot be made or
    /// read, or the first segment cannot be written: then the user has named a wrong place.
    pub(crate) fn open(
        dir: &Path,
        header: RecordingHeader,
        bounds: Bounds,
        metrics: Arc<AgentMetrics>,
        now: f64,
    ) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let closed = list(dir)?.into();
        let mut recording = Self {
            dir: dir.to_path_buf(),
            header,
            bounds,
            closed,
            current: None,
            failed_at: None,
            line: Vec::with_capacity(4096),
            header_len: 0,
            metrics,
        };
        recording.start_segment(now, 0)?;
        Ok(recording)
    }

    /// Bytes on disk (as written by this process, and as found of the earlier ones).
    fn total(&self) -> u64 {
        self.closed.iter().map(|c| c.size).sum::<u64>()
            + self.current.as_ref().map_or(0, |c| c.size)
    }

    /// Removes segments past the retention, then the oldest until `room` more bytes fit.
    fn prune(&mut self, now: f64, room: u64) {
        let cutoff = now - self.bounds.retain_s;
        while let Some(oldest) = self.closed.front() {
            let expired = oldest.end < cutoff;
            let too_big = self.total().saturating_add(room) > self.bounds.max_disk;
            if !(expired || too_big) {
                break;
            }
            let path = oldest.path.clone();
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("cannot remove the old recording {}: {e}", path.display()),
            }
            self.closed.pop_front();
        }
        self.metrics.recording_bytes.set(gauge(self.total()));
    }

    /// Closes the current segment and starts one at `now` with room for at least `room`
    /// bytes (a segment's size, or the line that must go in it).
    fn start_segment(&mut self, now: f64, room: u64) -> io::Result<()> {
        if let Some(current) = self.current.take() {
            // Counted as closed whatever the flush does: the file is there, and its bytes
            // count against the bound until it is removed.
            let (file, flushed) = match current.file.into_inner() {
                Ok(file) => (Some(file), Ok(())),
                Err(e) => {
                    let (error, writer) = e.into_parts();
                    drop(writer.into_parts());
                    (None, Err(error))
                }
            };
            drop(file);
            let size = fs::metadata(&current.path).map_or(current.size, |m| m.len());
            self.closed.push_back(Closed {
                path: current.path,
                start: current.start,
                end: now.max(current.start),
                size,
            });
            flushed?;
        }
        self.prune(now, room.max(self.bounds.segment_max()));
        // Never two segments of one name: a restart within the same millisecond waits.
        let mut start = now;
        let mut path = self.dir.join(segment_name(start));
        while path.exists() {
            start += 0.001;
            path = self.dir.join(segment_name(start));
        }
        let file = File::options().write(true).create_new(true).open(&path)?;
        let mut file = BufWriter::with_capacity(64 << 10, file);
        let mut header = self.header.clone();
        header.started = start;
        self.line.clear();
        serde_json::to_writer(&mut self.line, &header)?;
        self.line.push(b'\n');
        self.header_len = self.line.len() as u64;
        if let Err(e) = file.write_all(&self.line).and_then(|()| file.flush()) {
            // What was made of it stays on disk and is counted, like any closed segment.
            drop(file.into_parts());
            let size = fs::metadata(&path).map_or(0, |m| m.len());
            self.closed.push_back(Closed {
                path,
                start,
                end: start,
                size,
            });
            return Err(e);
        }
        self.current = Some(Current {
            file,
            path,
            start,
            size: self.line.len() as u64,
        });
        self.metrics.recording_active.set(1);
        self.metrics.recording_bytes.set(gauge(self.total()));
        Ok(())
    }

    /// Writing failed: stop, say so, try again later.
    fn fail(&mut self, now: f64, e: &io::Error) {
        if self.failed_at.is_none() {
            log::warn!(
                "the recording in {} stopped: {e}; the agent goes on without it and tries again \
                 every {RETRY_S:.0} s (free space, or give --max-disk a size that fits)",
                self.dir.display()
            );
        }
        self.failed_at = Some(now);
        self.metrics.recording_errors.inc();
        self.metrics.recording_active.set(0);
        if let Some(current) = self.current.take() {
            // What could not be written is lost; what was is a segment like any other.
            let size = fs::metadata(&current.path).map_or(current.size, |m| m.len());
            drop(current.file.into_parts());
            self.closed.push_back(Closed {
                path: current.path,
                start: current.start,
                end: now.max(current.start),
                size,
            });
        }
        self.metrics.recording_bytes.set(gauge(self.total()));
    }

    fn write(&mut self, record: &Record) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, record)?;
        self.line.push(b'\n');
        let len = self.line.len() as u64;
        let rotate = self.current.as_ref().is_none_or(|c| {
            c.size + len > self.bounds.segment_max()
                || record.ts - c.start >= self.bounds.segment_span_s()
        });
        if rotate {
            // A line longer than a segment (a group kill of thousands) gets room of its own;
            // one that cannot fit in the bound at all is left out, the bound kept.
            let room = len.saturating_add(self.header_len);
            if room > self.bounds.max_disk {
                log::warn!(
                    "a record of {len} bytes is left out of the recording: it does not fit \
                     --max-disk {}",
                    self.bounds.max_disk
                );
                return Ok(());
            }
            let line = std::mem::take(&mut self.line);
            let started = self.start_segment(record.ts, room);
            self.line = line;
            started?;
        }
        let Some(current) = self.current.as_mut() else {
            return Ok(());
        };
        current.file.write_all(&self.line)?;
        current.size += len;
        if !matches!(record.body, RecordBody::Sample(_) | RecordBody::Node(_)) {
            current.file.flush()?;
        }
        Ok(())
    }
}

impl Sink for RollingRecording {
    fn emit(&mut self, record: &Record) -> io::Result<()> {
        if let Some(failed) = self.failed_at {
            if record.ts - failed < RETRY_S {
                return Ok(());
            }
            self.failed_at = None;
            log::info!("trying the recording in {} again", self.dir.display());
        }
        if let Err(e) = self.write(record) {
            self.fail(record.ts, &e);
        } else if self.current.is_some() {
            self.metrics.recording_bytes.set(gauge(self.total()));
        }
        // The agent goes on whatever the disk does.
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(current) = self.current.as_mut() {
            if let Err(e) = current.file.flush() {
                let now = current.start.max(crate::collector::unix_now());
                self.fail(now, &e);
            }
        }
        Ok(())
    }
}

/// A record line's `ts` (every record's first field), without parsing the rest.
pub(super) fn line_ts(line: &[u8]) -> Option<f64> {
    let rest = line.strip_prefix(b"{\"ts\":")?;
    let end = rest.iter().position(|&b| b == b',' || b == b'}')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

fn gauge(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

#[cfg(test)]
pub(crate) use super::readback::{read_back, Ask, Filter, ReadBackError};

#[cfg(test)]
mod tests;
