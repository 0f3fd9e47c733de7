//! `--json`: one record per line. Events are flushed at once so a pipe sees each when it
//! happens; a round's samples are flushed together at the end of the round.
use std::io::{self, Write};

use super::Sink;
use crate::record::{Record, RecordBody};

/// Writes records as JSON lines.
pub(crate) struct JsonSink<W: Write> {
    out: W,
}

impl<W: Write> JsonSink<W> {
    /// A sink writing to `out`.
    pub(crate) fn new(out: W) -> Self {
        Self { out }
    }
}

impl<W: Write> Sink for JsonSink<W> {
    fn emit(&mut self, record: &Record) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, record)?;
        self.out.write_all(b"\n")?;
        // A round's samples and node line go out together when the round ends (the
        // collector flushes then): one write for hundreds of containers, not one each.
        // Everything else (a kill, an exit, a warning) goes out at once.
        match record.body {
            RecordBody::Sample(_) | RecordBody::Node(_) => Ok(()),
            _ => self.out.flush(),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
