//! The profiler's JSON output, read back through types: the lines of `profiler watch --json`
//! ([`Line`]; a container's processes and charge stacks in [`stacks`]), the recordings of
//! `profiler watch --record` ([`recording`]), and the document of `profiler doctor --json`
//! ([`Doctor`]).
//!
//! The profiler writes this contract (`profiler/src/record.rs`, `profiler/src/cmd/doctor.rs`);
//! this crate is its one reader, used by the reports and by xtask's benchmark and VM verdicts.
//! It depends on serde alone so that xtask, built before anything is installed, stays light.
//!
//! Only the fields those readers need are read, each optional where older profilers may not
//! write it, and line types this reader does not know are skipped: output of newer profilers
//! still reads.
pub mod ceiling;
pub mod doctor;
pub mod line;
pub mod node;
pub mod probe;
pub mod recording;
pub mod stacks;

pub use ceiling::{ConfigRisk, HeapCeiling, RiskKind};
pub use doctor::{Doctor, DoctorError};
pub use line::{
    Body, End, Exit, GroupVictim, Identity, Line, LineError, OomGroupKill, OomKill, Sample, Signal,
    Warning, WatchStart,
};
pub use node::{NextVictim, Node};
pub use probe::{Hook, Probe};
pub use stacks::{ChargeStack, ChargeStacks, OtherProcesses, ProcessGrowth, Processes};
