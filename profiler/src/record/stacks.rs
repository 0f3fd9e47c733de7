//! The lines about who charges a container: `processes` (each process's memory and growth)
//! and `charge_stacks` (the sampled stacks of its charges, named).
use serde::Serialize;

use crate::processes::ProcessesView;

/// Why a `processes` line was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ProcessesTrigger {
    /// The periodic line (every 5 s reading when something moved, every 60 s regardless).
    Periodic,
    /// The container's warning level rose: the processes at that moment.
    RiskRose,
}

/// Fields of a `processes` line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Processes {
    /// Why it was written.
    pub trigger: ProcessesTrigger,
    /// The processes, top growers first, and the rest summed.
    #[serde(flatten)]
    pub view: ProcessesView,
}

/// Fields of a `charge_stacks` line: the samples of one container since its previous line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct ChargeStacks {
    /// Seconds since the container's previous `charge_stacks` line (or since its stacks were
    /// first sampled).
    pub window_s: f64,
    /// Mean bytes charged per sample (per CPU).
    pub interval_bytes: u64,
    /// Samples in this line.
    pub samples: u64,
    /// Bytes they stand for.
    pub bytes: u64,
    /// Distinct stacks, most bytes first.
    pub stacks: Vec<StackEntry>,
}

/// One distinct stack of a `charge_stacks` line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct StackEntry {
    /// The process that charged.
    pub pid: u32,
    /// Its command name (of the thread that charged).
    pub comm: String,
    /// Samples with this stack.
    pub samples: u64,
    /// Bytes they stand for.
    pub bytes: u64,
    /// User frames, outermost first.
    pub user: Vec<String>,
    /// Kernel frames, outermost first.
    pub kernel: Vec<String>,
}
