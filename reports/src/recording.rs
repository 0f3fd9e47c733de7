//! Reading a recording written by `profiler watch --record`.
//!
//! The reader and the line types live in the `records` crate, shared with xtask (which reads
//! the same lines and must build without the reports' chart dependencies); they are
//! re-exported here so that `reports::recording::…` keeps naming them.
pub use records::ceiling::{ConfigRisk, HeapCeiling, RiskKind};
pub use records::line::{
    Body, End, Exit, GroupVictim, Identity, Line, OomGroupKill, OomKill, Sample, Signal, Warning,
    WatchStart,
};
pub use records::node::{NextVictim, Node};
pub use records::probe::{Hook, Probe};
pub use records::recording::{
    read, scan, Damage, Header, ReadError, Recording, Scan, SUPPORTED_VERSIONS,
};
pub use records::stacks::{ChargeStack, ChargeStacks, OtherProcesses, ProcessGrowth, Processes};
