//! Where records go: JSON lines, or a live table for a person at a terminal.
mod json;
mod live;
pub(crate) mod recording;

use std::io;

pub(crate) use json::JsonSink;
pub(crate) use live::LiveSink;
pub(crate) use recording::{RecordingHeader, RecordingSink};

use crate::record::Record;

/// Receives the records of a watch.
pub(crate) trait Sink {
    /// Writes one record; events are written at once, samples may wait for [`Sink::flush`].
    fn emit(&mut self, record: &Record) -> io::Result<()>;
    /// Called after each round of samples and before exit.
    fn flush(&mut self) -> io::Result<()>;
    /// Told how long a round of samples took (after its flush).
    fn round_done(&mut self, _took: std::time::Duration) {}
}

/// Hands every record to each of several sinks, in order.
pub(crate) struct Fanout(pub Vec<Box<dyn Sink>>);

impl Sink for Fanout {
    fn emit(&mut self, record: &Record) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|sink| sink.emit(record))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|sink| sink.flush())
    }

    fn round_done(&mut self, took: std::time::Duration) {
        for sink in &mut self.0 {
            sink.round_done(took);
        }
    }
}

/// Human-readable byte count (binary units).
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn formats_bytes() {
        assert_eq!(bytes(0), "0B");
        assert_eq!(bytes(1023), "1023B");
        assert_eq!(bytes(64 << 20), "64.0MiB");
        assert_eq!(bytes(3 << 29), "1.5GiB");
    }
}
