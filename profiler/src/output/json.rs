//! `--json`: one record per line, flushed per line so a pipe sees each event at once.
use std::io::{self, Write};

use super::Sink;
use crate::record::Record;

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
        self.out.flush()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
