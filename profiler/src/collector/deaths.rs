//! Deaths: each process of a watched cgroup that dies of a signal, and each cgroup's last
//! process, told with the kernel's evidence — the OOM kill and the kernel log's word on which
//! limit, or the SIGTERM and SIGKILL and who sent them — and the `signal` records of those.
//!
//! The pieces come apart and in any order: the kernel programs' SIGKILL, OOM victim and
//! process exit through the ring buffer, the kernel log's "oom-kill:" and "Killed process"
//! lines through `/dev/kmsg`. An OOM kill of the kernel programs waits (at most
//! [`CONTEXT_WAIT_S`]) for the kernel log's lines of the same pid, and an exit waits for its
//! kill's record, so each record is written once, complete.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use profiler_common::{LastExit, ProcessExit, SignalSent, COMM_LEN, SIGKILL, SIGTERM, SI_KERNEL};

use super::{
    attribution::{OomContext, Victim},
    boot_ns_to_unix,
    group::GroupKills,
    state::Collector,
    unix_now, CollectError,
};
use crate::{
    cgroup::{has_no_processes, memory_cgroup_of, MemoryCgroup},
    deaths::{
        explain, status::signal_name, Cause, Death, ExitStatus, OomStory, SignalStory, Standing,
    },
    pods::{Identity, LimitSource, LogTree, RuntimeNames},
    record::{Exit, RecordBody, SignalRecord},
};

/// How long an OOM kill of the kernel programs waits for the kernel log's lines on it. The
/// kernel prints them in the same call that marks the victim, so they come within
/// milliseconds unless the log rate-limits or drops them (a kill storm).
pub(super) const CONTEXT_WAIT_S: f64 = 1.0;
/// How long the story of an OOM kill, or of a signal, is kept for the exit it explains.
const KEEP_KILL_S: f64 = 60.0;
/// A SIGKILL comes after a SIGTERM by the grace period, 30 s by default, up to minutes.
const KEEP_SIGNAL_S: f64 = 600.0;

/// What is known of an OOM kill, for the exit of its victim.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct OomNote {
    /// When it was reported.
    pub(super) ts: f64,
    /// The kernel log's word on it.
    pub(super) context: Option<OomContext>,
    /// The cgroup whose limit was reached, and whose it is.
    pub(super) oom_cgroup: Option<PathBuf>,
    /// Whose limit that is.
    pub(super) limit_source: Option<LimitSource>,
    /// That limit.
    pub(super) limit_bytes: Option<u64>,
    /// The watched cgroup's own limit.
    pub(super) own_limit_bytes: Option<u64>,
    /// The victim's `oom_score_adj`.
    pub(super) oom_score_adj: Option<i32>,
    /// The cgroup killed whole with it.
    pub(super) oom_group: Option<PathBuf>,
    /// For a node OOM, where it stood in the last ranking of the next victims.
    pub(super) standing: Option<Standing>,
}

/// A SIGTERM or SIGKILL to one process.
#[derive(Clone, Debug, PartialEq)]
struct SignalNote {
    ts: f64,
    sender_tgid: u32,
    sender_comm: String,
    sender_cgroup: Option<PathBuf>,
    sender_container: Option<String>,
    from_kernel: bool,
}

/// The last SIGTERM and SIGKILL to one process.
#[derive(Clone, Debug, Default, PartialEq)]
struct SignalNotes {
    term: Option<SignalNote>,
    kill: Option<SignalNote>,
}

/// A process exit, as the kernel programs told it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ExitEvent {
    slot: u32,
    tgid: u32,
    exit_code: u32,
    ktime_ns: u64,
    comm: [u8; COMM_LEN],
}

impl From<&ProcessExit> for ExitEvent {
    fn from(e: &ProcessExit) -> Self {
        Self {
            slot: e.slot,
            tgid: e.tgid,
            exit_code: e.exit_code,
            ktime_ns: e.header.ktime_ns,
            comm: e.comm,
        }
    }
}

impl ExitEvent {
    fn from_last(slot: u32, last: &LastExit) -> Self {
        Self {
            slot,
            tgid: last.tgid,
            exit_code: last.exit_code,
            ktime_ns: last.ktime_ns,
            comm: last.comm,
        }
    }
}

/// What the collector remembers to tell deaths.
#[derive(Debug, Default)]
pub(super) struct DeathLog {
    /// Whether the kernel log is read for the OOM kills' context (else nothing waits for it).
    pub(super) kmsg_context: bool,
    /// The kernel log's word on OOM kills, by pid.
    contexts: HashMap<u32, (f64, OomContext)>,
    /// OOM kills of the kernel programs waiting for the kernel log's word, with their deadline.
    pending_kills: Vec<(f64, Victim)>,
    /// Exits waiting for their OOM kill's record, each until a deadline (Unix seconds).
    pending_exits: Vec<(f64, ExitEvent)>,
    /// The OOM kills reported, by pid.
    oom_kills: HashMap<u32, OomNote>,
    /// SIGTERMs and SIGKILLs seen, by target pid.
    signals: HashMap<u32, SignalNotes>,
    /// Exits counted per slot at the last look.
    exits_seen: HashMap<u32, u64>,
    /// Group kills being gathered.
    pub(super) groups: GroupKills,
}

impl DeathLog {
    /// The earliest deadline of a waiting kill.
    pub(super) fn next_deadline(&self) -> Option<f64> {
        self.pending_kills
            .iter()
            .map(|(deadline, _)| *deadline)
            .chain(self.pending_exits.iter().map(|(deadline, _)| *deadline))
            .chain(self.groups.next_deadline())
            .reduce(f64::min)
    }

    /// Keeps the kernel log's word on pid `pid`'s kill, heard at `now`, and returns all it
    /// said of it. A process killed by `memory.oom.group` as the OOM's own victim is logged
    /// twice: "oom-kill:" and "Killed process", then, after "Tasks in ... are going to be
    /// killed", a second "Killed process" line alone; that second word does not undo the first
    /// (it would leave the kill without the cgroup whose limit was reached).
    pub(super) fn context_heard(&mut self, pid: u32, context: OomContext, now: f64) -> OomContext {
        let context = match self.contexts.remove(&pid) {
            Some((_, earlier)) => context.or(earlier),
            None => context,
        };
        self.contexts.insert(pid, (now, context.clone()));
        context
    }

    /// Forgets what no death can need any more.
    fn prune(&mut self, now: f64) {
        self.contexts.retain(|_, (ts, _)| now - *ts < KEEP_KILL_S);
        self.oom_kills.retain(|_, note| now - note.ts < KEEP_KILL_S);
        self.signals.retain(|_, notes| {
            [&notes.term, &notes.kill]
                .into_iter()
                .flatten()
                .any(|n| now - n.ts < KEEP_SIGNAL_S)
        });
    }

    /// A slot was given to another cgroup: its exits count from zero.
    pub(super) fn slot_reset(&mut self, slot: u32) {
        self.exits_seen.remove(&slot);
    }

    /// Whether the kill of `pid` is still waiting for the kernel log.
    fn kill_pending(&self, pid: u32) -> bool {
        self.pending_kills.iter().any(|(_, v)| v.kill.pid == pid)
    }

    /// Whether an exit may be an OOM kill not reported yet: a SIGKILL that the kernel sent
    /// itself (or whose sending was not seen), and no OOM kill of the process known.
    fn may_be_oom_kill(&self, exit: &ExitEvent) -> bool {
        let sigkill = ExitStatus::from_wait(exit.exit_code)
            .signal()
            .is_some_and(|s| u32::from(s) == SIGKILL);
        let by_kernel = self
            .signals
            .get(&exit.tgid)
            .and_then(|n| n.kill.as_ref())
            .is_none_or(|n| n.from_kernel);
        sigkill && by_kernel && !self.oom_kills.contains_key(&exit.tgid)
    }
}

/// A NUL-padded command name as text.
fn comm_text(comm: &[u8; COMM_LEN]) -> String {
    let len = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..len]).into_owned()
}

/// The absolute path of the kernel log's `oom_memcg`, from the victim's cgroup: the kernel
/// names both relative to the hierarchy's root, and the victim's absolute path ends with its
/// relative one.
pub(super) fn oom_cgroup_path(victim: &Path, task_memcg: &str, oom_memcg: &str) -> Option<PathBuf> {
    let relative = Path::new(task_memcg.trim_start_matches('/'));
    if !victim.ends_with(relative) {
        return None;
    }
    let mut root = victim.to_path_buf();
    for _ in relative.components() {
        root.pop();
    }
    Some(root.join(oom_memcg.trim_start_matches('/')))
}

impl Collector<'_> {
    /// A SIGKILL or SIGTERM: remembered for the exit it may explain, and a `signal` line
    /// unless the kernel sent it itself (the OOM killer's SIGKILL is told by `oom_kill`).
    pub(super) fn on_signal_sent(&mut self, s: &SignalSent) -> Result<(), CollectError> {
        let ts = boot_ns_to_unix(s.header.ktime_ns);
        let from_kernel = s.si_code == SI_KERNEL;
        let (sender_cgroup, sender_container) = if from_kernel {
            (None, None)
        } else {
            self.sender_of(s.sender_cgroup_id, s.sender_tgid)
        };
        let note = SignalNote {
            ts,
            sender_tgid: s.sender_tgid,
            sender_comm: comm_text(&s.sender_comm),
            sender_cgroup: sender_cgroup.clone(),
            sender_container: sender_container.clone(),
            from_kernel,
        };
        let notes = self.deaths.signals.entry(s.target_tgid).or_default();
        match s.sig {
            SIGKILL => notes.kill = Some(note.clone()),
            SIGTERM => notes.term = Some(note.clone()),
            _ => return Ok(()),
        }
        if from_kernel {
            return Ok(());
        }
        let Some(index) = self.index_of_slot(s.slot) else {
            return Ok(());
        };
        let body = RecordBody::Signal(SignalRecord {
            pid: s.target_tgid,
            comm: comm_text(&s.target_comm),
            signal: signal_name(s.sig as u8).unwrap_or_else(|| s.sig.to_string()),
            sender_pid: s.sender_tgid,
            sender_comm: note.sender_comm,
            sender_cgroup,
            sender_container,
            delivered: s.result == 0,
            repeats: s.repeats,
        });
        self.emit_about(ts, index, body)
    }

    /// A process of a watched cgroup died of a signal. Its record waits for its OOM kill's
    /// when that is still being written, or may yet come: the OOM killer sends its SIGKILL
    /// before it marks the victim, so on another CPU the victim can die first, and the kernel
    /// log's kill comes later still.
    pub(super) fn on_process_exit(&mut self, e: &ProcessExit) -> Result<(), CollectError> {
        let event = ExitEvent::from(e);
        let deadline = boot_ns_to_unix(event.ktime_ns) + CONTEXT_WAIT_S;
        if self.deaths.kill_pending(event.tgid) || self.deaths.may_be_oom_kill(&event) {
            self.deaths.pending_exits.push((deadline, event));
            return Ok(());
        }
        self.emit_exit(&event)
    }

    /// The kernel log's word on an OOM kill the kernel programs report: kept, and the kill
    /// waiting for it (and its exit) written.
    pub(super) fn on_oom_context(
        &mut self,
        pid: u32,
        context: OomContext,
        now: f64,
    ) -> Result<(), CollectError> {
        let context = self.deaths.context_heard(pid, context, now);
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deaths.pending_kills)
            .into_iter()
            .partition(|(_, v)| v.kill.pid == pid);
        self.deaths.pending_kills = waiting;
        for (_, mut victim) in ready {
            victim.context = Some(context.clone());
            self.finish_kill(victim)?;
        }
        self.release_exits(now)
    }

    /// Kills whose deadline has passed are written without the kernel log's word.
    pub(super) fn flush_deaths(&mut self, now: f64) -> Result<(), CollectError> {
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deaths.pending_kills)
            .into_iter()
            .partition(|(deadline, _)| *deadline <= now);
        self.deaths.pending_kills = waiting;
        for (_, victim) in due {
            self.finish_kill(victim)?;
        }
        self.release_exits(now)?;
        self.flush_group_kills(now)?;
        self.deaths.prune(now);
        Ok(())
    }

    /// Writes every waiting kill and exit (at the end of the watch).
    pub(super) fn flush_all_deaths(&mut self) -> Result<(), CollectError> {
        self.flush_deaths(f64::INFINITY)
    }

    /// Exits whose kill has been written, or need wait no longer (at `now`).
    pub(super) fn release_exits(&mut self, now: f64) -> Result<(), CollectError> {
        let exits = std::mem::take(&mut self.deaths.pending_exits);
        for (deadline, exit) in exits {
            let killed = self.deaths.oom_kills.contains_key(&exit.tgid);
            if self.deaths.kill_pending(exit.tgid) || (!killed && deadline > now) {
                self.deaths.pending_exits.push((deadline, exit));
            } else {
                self.emit_exit(&exit)?;
            }
        }
        Ok(())
    }

    /// An OOM kill of the kernel programs: written now if the kernel log has spoken (or is not
    /// read), else when it does or at the deadline.
    pub(super) fn on_bpf_kill(&mut self, mut victim: Victim) -> Result<(), CollectError> {
        if let Some((_, context)) = self.deaths.contexts.get(&victim.kill.pid) {
            victim.context = Some(context.clone());
        }
        if victim.context.is_some() || !self.deaths.kmsg_context {
            self.finish_kill(victim)?;
            return self.release_exits(unix_now());
        }
        let deadline = victim.ts + CONTEXT_WAIT_S;
        self.deaths.pending_kills.push((deadline, victim));
        Ok(())
    }

    /// Remembers what an OOM kill's record said, for its victim's exit.
    pub(super) fn note_kill(&mut self, pid: u32, note: OomNote) {
        self.deaths.oom_kills.insert(pid, note);
    }

    /// The watched cgroup that has kernel slot `slot` (one reported gone in the last round
    /// included: a death races with the cgroup's removal).
    fn index_of_slot(&self, slot: u32) -> Option<usize> {
        self.watched.iter().position(|w| w.slot.index() == slot)
    }

    /// The `exit` line of one process.
    fn emit_exit(&mut self, event: &ExitEvent) -> Result<(), CollectError> {
        let Some(index) = self.index_of_slot(event.slot) else {
            return Ok(());
        };
        let status = ExitStatus::from_wait(event.exit_code);
        let oom_note = self.deaths.oom_kills.get(&event.tgid).cloned();
        let watched = &self.watched[index];
        let heap_over = watched.runtimes().process(event.tgid).and_then(|p| {
            let ceiling = p.ceiling.bytes?;
            let limit = oom_note.as_ref()?.limit_bytes?;
            (ceiling >= limit).then(|| {
                (
                    p.ceiling.runtime.label(),
                    ceiling,
                    p.ceiling.source.as_str(),
                )
            })
        });
        let swap_allowed = watched.last_swap.map(|s| s.allowed);
        let oom = oom_note.as_ref().map(|note| OomStory {
            constraint: note.context.as_ref().and_then(|c| c.constraint),
            limit_source: note.limit_source,
            oom_cgroup: note.oom_cgroup.as_deref(),
            limit_bytes: note.limit_bytes,
            own_limit_bytes: note.own_limit_bytes,
            oom_score_adj: note.oom_score_adj,
            group: note.oom_group.as_deref(),
            standing: note.standing,
            swap_allowed,
            heap_over,
        });
        let notes = self
            .deaths
            .signals
            .get(&event.tgid)
            .cloned()
            .unwrap_or_default();
        let sender = match status.signal().map(u32::from) {
            Some(SIGKILL) => notes.kill.as_ref(),
            Some(SIGTERM) => notes.term.as_ref(),
            _ => None,
        };
        let signal = sender.filter(|_| oom.is_none()).map(|n| SignalStory {
            sender_comm: &n.sender_comm,
            sender_pid: n.sender_tgid,
            sender_container: n.sender_container.as_deref(),
            from_kernel: n.from_kernel,
            after_sigterm_s: notes
                .term
                .as_ref()
                .filter(|_| status.signal() == Some(SIGKILL as u8))
                .map(|term| n.ts - term.ts)
                .filter(|gap| *gap >= 0.0),
        });
        let (cause, explanation) = explain(&Death {
            status,
            oom: oom.clone(),
            signal: signal.clone(),
        });
        let (oom_cgroup, limit_source) = match (&oom_note, cause) {
            (Some(note), Cause::OomLimit | Cause::OomNode) => {
                (note.oom_cgroup.clone(), note.limit_source)
            }
            _ => (None, None),
        };
        let body = RecordBody::Exit(Exit {
            pid: event.tgid,
            comm: comm_text(&event.comm),
            exit_code: status.code(),
            signal: status.signal().and_then(signal_name),
            cause,
            oom_cgroup,
            limit_source,
            sender_pid: sender.filter(|_| signal.is_some()).map(|n| n.sender_tgid),
            sender_comm: sender
                .filter(|_| signal.is_some())
                .map(|n| n.sender_comm.clone()),
            sender_cgroup: sender
                .filter(|_| signal.is_some())
                .and_then(|n| n.sender_cgroup.clone()),
            sender_container: sender
                .filter(|_| signal.is_some())
                .and_then(|n| n.sender_container.clone()),
            explanation,
        });
        self.emit_about(boot_ns_to_unix(event.ktime_ns), index, body)
    }

    /// Looks at the processes watched cgroup `index` lost since the last look: when its last
    /// one has exited (the cgroup is empty, or `gone`), that exit gets its `exit` line, unless
    /// it died of a signal and so has one already.
    pub(super) fn check_last_exit(&mut self, index: usize, gone: bool) -> Result<(), CollectError> {
        let Some(maps) = self.maps.as_ref() else {
            return Ok(());
        };
        let slot = self.watched[index].slot.index();
        let (exits, newest) = maps.last_exit(slot)?;
        let seen = self.deaths.exits_seen.insert(slot, exits).unwrap_or(0);
        let Some(newest) = newest.filter(|_| exits > seen) else {
            return Ok(());
        };
        if newest.exit_code & 0x7f != 0 {
            return Ok(());
        }
        let w = &self.watched[index];
        let ended = gone
            || w.slot
                .paths()
                .all(|dir| has_no_processes(dir).unwrap_or(true));
        if !ended {
            return Ok(());
        }
        self.emit_exit(&ExitEvent::from_last(slot, &newest))
    }

    /// The sender's memory cgroup and container: from a watched subtree, else from its
    /// `/proc` entry while it lives (checked against the id the kernel recorded at send time).
    fn sender_of(&self, cgroup_id: u64, tgid: u32) -> (Option<PathBuf>, Option<String>) {
        if cgroup_id == 0 {
            return (None, None);
        }
        for w in &self.watched {
            if let Some(path) = w.slot.path_of(cgroup_id) {
                return (Some(path.to_path_buf()), container_name(&w.identity));
            }
        }
        let Ok(path) = memory_cgroup_of(tgid) else {
            return (None, None);
        };
        match MemoryCgroup::open(&path) {
            Ok(c) if c.id() == cgroup_id => {}
            _ => return (None, None),
        }
        let logs = LogTree::read(&self.roots.pod_logs, &self.roots.container_logs);
        let names = RuntimeNames::read(&self.roots.runtime_state);
        let identity = Identity::of(&path, &logs, &names);
        (Some(path), container_name(&identity))
    }
}

/// A container's name for a sentence: its name, else its id.
fn container_name(identity: &Identity) -> Option<String> {
    identity
        .container
        .clone()
        .or_else(|| identity.container_id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        deaths::Constraint,
        kmsg::{parse_record, OomKillAssembler},
    };

    /// The kernel log of a group kill in the sid guest (7.2.13, issue 17): the OOM's victim is
    /// also a member of its `memory.oom.group` cgroup, so "Killed process 5647" comes twice, the
    /// second time without its "oom-kill:" line. The kill the kernel programs reported came
    /// after both had been read, and said no `oom_cgroup`.
    #[test]
    fn a_second_killed_process_line_keeps_what_the_first_said() {
        let pod = "/kubepods.slice/kubepods-burstable.slice/\
                   kubepods-burstable-pod54796436_fd24_4f44_a384_bf5402496a6d.slice";
        let scope =
            "cri-containerd-2ee1a3e332f77fca01abca48b30382d0d49ed7475f977482d40365616c7d5c33.scope";
        let killed = "Memory cgroup out of memory: Killed process 5647 (app) total-vm:67452kB, \
                      anon-rss:64136kB, file-rss:8kB, shmem-rss:1356kB, UID:0 pgtables:168kB \
                      oom_score_adj:0";
        let records = [
            format!(
                "6,901,100499256,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),\
                 cpuset=/,mems_allowed=0,oom_memcg={pod},task_memcg={pod}/{scope},task=app,\
                 pid=5647,uid=0"
            ),
            format!("3,902,100499438,-;{killed}"),
            format!(
                "6,903,100499485,-;Tasks in {pod}/{scope} are going to be killed due to \
                 memory.oom.group set"
            ),
            format!("3,904,100499526,-;{killed}"),
        ];
        let mut assembler = OomKillAssembler::new();
        let mut log = DeathLog::default();
        let (mut alone, mut heard) = (Vec::new(), Vec::new());
        for raw in &records {
            let record = parse_record(raw.as_bytes()).expect("a kernel log record");
            if let Some(kill) = assembler.push(&record) {
                alone.push(OomContext::of(&kill));
                heard.push(log.context_heard(kill.pid, OomContext::of(&kill), 1.0));
            }
        }
        let full = OomContext {
            constraint: Some(Constraint::Memcg),
            oom_memcg: Some(pod.to_owned()),
            task_memcg: Some(format!("{pod}/{scope}")),
        };
        assert_eq!(heard.len(), 2, "two Killed process lines");
        assert_eq!(heard[0], full);
        // Alone, the second line knows only that a memcg's limit was reached ...
        assert_eq!(
            alone[1],
            OomContext {
                constraint: Some(Constraint::Memcg),
                oom_memcg: None,
                task_memcg: None
            }
        );
        // ... and, heard after the first, it loses nothing of it.
        assert_eq!(heard[1], full);
        assert_eq!(log.contexts.get(&5647).map(|(_, c)| c), Some(&full));
    }

    #[test]
    fn oom_memcg_is_placed_beside_the_victims_cgroup() {
        let victim = Path::new("/sys/fs/cgroup/memory/kubepods/burstable/pod1/c1");
        assert_eq!(
            oom_cgroup_path(
                victim,
                "/kubepods/burstable/pod1/c1",
                "/kubepods/burstable/pod1"
            ),
            Some(PathBuf::from(
                "/sys/fs/cgroup/memory/kubepods/burstable/pod1"
            ))
        );
        assert_eq!(
            oom_cgroup_path(
                victim,
                "/kubepods/burstable/pod1/c1",
                "/kubepods/burstable/pod1/c1"
            ),
            Some(victim.to_path_buf())
        );
        // A path the victim's does not end with names another hierarchy: no guess.
        assert_eq!(oom_cgroup_path(victim, "/other/c1", "/other"), None);
    }
}
