//! The processes of each watched container: their memory read every 5 s, growth over the last
//! minute, and a `processes` line at each reading where something moved (every 60 s
//! regardless), and at once when the container's warning level rises. A line at every reading
//! that moved, not every other one: a process that leaks to its kill in 8 s is otherwise never
//! in a line.
use super::{state::Collector, CollectError};
use crate::{
    processes::read_cgroup,
    record::{Processes, ProcessesTrigger, RecordBody},
};

/// The growth window of the `processes` lines, seconds.
pub(super) const GROWTH_WINDOW_S: f64 = 60.0;
/// Processes a line names one by one; the rest are summed.
const TOP_PROCESSES: usize = 10;
/// Shortest time between two periodic lines of a container, seconds (the readings' period:
/// a little less, for a round that comes early).
const LINE_EVERY_S: f64 = 4.5;
/// Longest time between two periodic lines of a container, seconds, even when nothing moved.
const LINE_AT_LEAST_EVERY_S: f64 = 60.0;

impl Collector<'_> {
    /// After watched container `index`'s sample at `now`: reads its processes when due (at
    /// once when its risk rose) and writes a `processes` line when one is due.
    pub(super) fn follow_processes(
        &mut self,
        index: usize,
        now: f64,
        risk_rose: bool,
    ) -> Result<(), CollectError> {
        let w = &mut self.watched[index];
        if !(risk_rose || w.processes.due(now)) {
            return Ok(());
        }
        match read_cgroup(w.cgroup.path()) {
            Ok(readings) => w.processes.observe(now, readings),
            Err(e) => {
                log::debug!(
                    "{}: cannot read its processes: {e}",
                    w.cgroup.path().display()
                );
                return Ok(());
            }
        }
        let view = w.processes.view(TOP_PROCESSES);
        let trigger = if risk_rose {
            ProcessesTrigger::RiskRose
        } else {
            match &w.processes_line {
                None => ProcessesTrigger::Periodic,
                Some((at, last)) => {
                    let age = now - at;
                    let moved = age >= LINE_EVERY_S && w.processes.changed_since(last);
                    if !(moved || age >= LINE_AT_LEAST_EVERY_S) {
                        return Ok(());
                    }
                    ProcessesTrigger::Periodic
                }
            }
        };
        w.processes_line = Some((now, view.clone()));
        self.emit_about(
            now,
            index,
            RecordBody::Processes(Processes { trigger, view }),
        )
    }
}
