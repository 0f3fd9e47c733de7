//! What the evaluation reads from one recorded `profiler watch --json` trace, through the
//! `records` crate's types.
use records::{Body, Line};

/// The figures of one `sample` line that the evaluation uses (bytes as floats).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sample {
    /// Unix seconds.
    pub ts: f64,
    pub working_set: f64,
    /// `None` when the cgroup has no limit.
    pub limit: Option<f64>,
    pub file: f64,
    pub shmem: f64,
    /// The profiler's ETA to the limit, when it has one.
    pub eta: Option<f64>,
}

/// A `warning` line's level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    Warning,
    Critical,
    Cleared,
}

impl Level {
    /// Whether this level means a warning is raised.
    pub(super) fn raised(self) -> bool {
        !matches!(self, Level::Cleared)
    }
}

/// A `warning` line: the profiler's warning level changed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LevelChange {
    pub ts: f64,
    pub level: Level,
    pub eta: Option<f64>,
}

/// An `oom_kill` line.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Kill {
    /// The kernel's time of the kill, Unix seconds.
    pub ts: f64,
    pub pid: u64,
    pub comm: String,
}

/// What the evaluation reads from one recording.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Trace {
    pub samples: Vec<Sample>,
    pub changes: Vec<LevelChange>,
    pub kills: Vec<Kill>,
    /// Whether the profiler forecasts at all: its samples carry `risk`/`eta_seconds`, or it
    /// printed a `warning` line. A profiler without a forecaster is not judged.
    pub forecaster: bool,
}

impl Trace {
    /// Parses the lines of `profiler watch --json`; lines of other types are skipped.
    pub(crate) fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut trace = Trace::default();
        for (index, text) in lines.into_iter().enumerate() {
            if text.trim().is_empty() {
                continue;
            }
            let at = |e: String| format!("line {}: {e}", index + 1);
            let line = Line::parse(text).map_err(|e| at(format!("{e}: {text}")))?;
            match line.body {
                Body::Sample(sample) => {
                    // `risk` and `eta_seconds` came with the forecaster, together: a sample
                    // names its risk from then on.
                    if sample.risk.is_some() || sample.eta_seconds.is_some() {
                        trace.forecaster = true;
                    }
                    trace.samples.push(Sample {
                        ts: line.ts,
                        working_set: sample.working_set_bytes as f64,
                        limit: sample.limit_bytes.map(|l| l as f64),
                        file: sample.file_bytes.unwrap_or(0) as f64,
                        shmem: sample.shmem_bytes.unwrap_or(0) as f64,
                        eta: sample.eta_seconds,
                    });
                }
                Body::Warning(warning) => {
                    trace.forecaster = true;
                    let level = match warning.level.as_str() {
                        "warning" => Level::Warning,
                        "critical" => Level::Critical,
                        "cleared" => Level::Cleared,
                        other => return Err(at(format!("a warning line with level {other:?}"))),
                    };
                    trace.changes.push(LevelChange {
                        ts: line.ts,
                        level,
                        eta: warning.eta_seconds,
                    });
                }
                Body::OomKill(kill) => trace.kills.push(Kill {
                    ts: line.ts,
                    pid: u64::from(kill.pid),
                    comm: kill.comm,
                }),
                _ => {}
            }
        }
        Ok(trace)
    }
}
