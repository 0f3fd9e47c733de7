//! One sentence per death, from what the kernel said about it.
use std::path::Path;

use serde::Serialize;

use super::status::{exit_code_meaning, signal_meaning, signal_name, ExitStatus};
use crate::{output::bytes, pods::LimitSource};

/// Why a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Cause {
    /// The kernel OOM-killed it because a cgroup's limit was reached.
    OomLimit,
    /// The kernel's global OOM killer chose it: the node ran out of memory.
    OomNode,
    /// A signal ended it (someone's, or the program's own crash).
    Signal,
    /// It exited, with a code.
    Exited,
}

/// What limited the memory when the kernel OOM-killed (the kernel log's `constraint=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Constraint {
    /// A memory cgroup's limit (`CONSTRAINT_MEMCG`).
    Memcg,
    /// The whole node (`CONSTRAINT_NONE`: no cgroup, cpuset or policy limited it).
    Node,
    /// A cpuset's memory nodes (`CONSTRAINT_CPUSET`).
    Cpuset,
    /// A memory policy (`CONSTRAINT_MEMORY_POLICY`).
    Mempolicy,
}

impl Constraint {
    /// From the kernel log's word for it.
    pub(crate) fn from_kernel(word: &str) -> Option<Self> {
        Some(match word {
            "CONSTRAINT_MEMCG" => Constraint::Memcg,
            "CONSTRAINT_NONE" => Constraint::Node,
            "CONSTRAINT_CPUSET" => Constraint::Cpuset,
            "CONSTRAINT_MEMORY_POLICY" => Constraint::Mempolicy,
            _ => return None,
        })
    }
}

/// The kernel's OOM kill of the process, and which limit it was for.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct OomStory<'a> {
    /// What limited the memory; `None` when the kernel log did not say (its lines for this
    /// kill were rate-limited or lost).
    pub(crate) constraint: Option<Constraint>,
    /// Whose limit was reached (memcg OOM), relative to the dead container.
    pub(crate) limit_source: Option<LimitSource>,
    /// The cgroup whose limit was reached.
    pub(crate) oom_cgroup: Option<&'a Path>,
    /// That limit.
    pub(crate) limit_bytes: Option<u64>,
    /// The dead process's container's own limit, if it has one.
    pub(crate) own_limit_bytes: Option<u64>,
    /// The victim's `oom_score_adj` (the kubelet sets it from the QoS class).
    pub(crate) oom_score_adj: Option<i32>,
    /// The cgroup killed whole with it (`memory.oom.group`).
    pub(crate) group: Option<&'a Path>,
    /// For a node OOM: where it stood among the next victims just before.
    pub(crate) standing: Option<Standing>,
    /// The swap the cgroup was allowed, at the last sample: full too when the kill came.
    pub(crate) swap_allowed: Option<u64>,
    /// The process's runtime heap ceiling, when it was at or over the limit reached: (the
    /// runtime, its ceiling, where that came from).
    pub(crate) heap_over: Option<(&'static str, u64, &'a str)>,
}

/// Where a process stood in the last ranking of the node's next OOM victims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Standing {
    /// Its place: 1 is the process the kernel would kill first.
    pub(crate) rank: u32,
    /// Its `oom_score` then.
    pub(crate) oom_score: u32,
}

/// Who sent the signal that ended the process.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct SignalStory<'a> {
    /// The sender's command name.
    pub(crate) sender_comm: &'a str,
    /// The sender's process id.
    pub(crate) sender_pid: u32,
    /// The sender's container (name or id), when it runs in one.
    pub(crate) sender_container: Option<&'a str>,
    /// The kernel sent it itself (not an OOM kill, which has its own story).
    pub(crate) from_kernel: bool,
    /// Seconds between a SIGTERM to the same process and this signal, when one came first.
    pub(crate) after_sigterm_s: Option<f64>,
}

/// What is known about one death.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Death<'a> {
    /// How it ended.
    pub(crate) status: ExitStatus,
    /// The kernel's OOM kill of it, if that is how it died.
    pub(crate) oom: Option<OomStory<'a>>,
    /// Who sent the fatal signal, if it was sent and seen.
    pub(crate) signal: Option<SignalStory<'a>>,
}

/// Process names of the container runtimes: a signal from one of them is the runtime
/// stopping the container (a delete, a failed liveness probe, an eviction, `docker stop`).
const RUNTIMES: [&str; 8] = [
    "containerd-shim",
    "containerd",
    "runc",
    "dockerd",
    "conmon",
    "crio",
    "kubelet",
    "crun",
];

fn is_runtime(comm: &str) -> bool {
    RUNTIMES.iter().any(|r| comm.starts_with(r))
}

/// The cause of a death, and one plain sentence a person can act on.
pub(crate) fn explain(death: &Death<'_>) -> (Cause, String) {
    if let Some(oom) = &death.oom {
        return oom_sentence(oom);
    }
    match death.status {
        ExitStatus::Signaled { signal, core } => (
            Cause::Signal,
            signal_sentence(signal, core, death.signal.as_ref()),
        ),
        ExitStatus::Exited(code) => (Cause::Exited, exit_sentence(code)),
    }
}

fn oom_sentence(oom: &OomStory<'_>) -> (Cause, String) {
    let (cause, sentence) = oom_limit_sentence(oom);
    let group = oom
        .group
        .map(|g| {
            format!(
                "; the kernel killed every process of {} with it (memory.oom.group is set)",
                g.display()
            )
        })
        .unwrap_or_default();
    (cause, format!("{sentence}{group}"))
}

fn oom_limit_sentence(oom: &OomStory<'_>) -> (Cause, String) {
    let limit = |limit: Option<u64>| {
        limit.map_or("limit".to_string(), |b| format!("limit of {}", bytes(b)))
    };
    match oom.constraint {
        Some(Constraint::Node) => {
            let adj = oom
                .oom_score_adj
                .map(|a| format!("its oom_score_adj is {a}{}", qos_of_adj(a)));
            let standing = oom.standing.map(|s| match s.rank {
                1 => format!("the highest oom_score on the node ({})", s.oom_score),
                n => format!(
                    "number {n} by oom_score ({}) at the last ranking",
                    s.oom_score
                ),
            });
            let why = match (standing, adj) {
                (Some(s), Some(a)) => format!(", {s}; {a}"),
                (Some(s), None) => format!(", {s}"),
                (None, Some(a)) => format!(" ({a})"),
                (None, None) => String::new(),
            };
            (
                Cause::OomNode,
                format!(
                    "OOM-killed by the node's OOM killer: the node ran out of memory and the \
                     kernel chose this process{why}; no cgroup limit was reached"
                ),
            )
        }
        Some(Constraint::Cpuset) => (
            Cause::OomLimit,
            "OOM-killed: the memory nodes of its cpuset ran out".to_string(),
        ),
        Some(Constraint::Mempolicy) => (
            Cause::OomLimit,
            "OOM-killed: the memory nodes its memory policy allows ran out".to_string(),
        ),
        Some(Constraint::Memcg) => {
            let whose = match oom.limit_source {
                Some(LimitSource::Container) => {
                    format!("the container's {}", limit(oom.limit_bytes))
                }
                Some(LimitSource::Cgroup) => format!("its cgroup's {}", limit(oom.limit_bytes)),
                Some(LimitSource::Pod) => format!("the pod's {}", limit(oom.limit_bytes)),
                Some(LimitSource::Qos) => {
                    format!("the QoS class cgroup's {}", limit(oom.limit_bytes))
                }
                Some(LimitSource::Kubepods) => format!(
                    "the node's allocatable memory for pods ({}, the kubepods cgroup's limit)",
                    oom.limit_bytes.map_or("unknown".to_string(), bytes)
                ),
                Some(LimitSource::Ancestor) | Some(LimitSource::Node) | None => {
                    let path = oom
                        .oom_cgroup
                        .map(|p| format!(" ({})", p.display()))
                        .unwrap_or_default();
                    format!("an ancestor cgroup's {}{path}", limit(oom.limit_bytes))
                }
            };
            let own = match (oom.limit_source, oom.own_limit_bytes) {
                (Some(LimitSource::Container | LimitSource::Cgroup), _) => String::new(),
                (_, None) => "; this container has no limit of its own".to_string(),
                (_, Some(own)) => {
                    format!(", before this container's own limit of {} was", bytes(own))
                }
            };
            let swap = oom
                .swap_allowed
                .map(|s| format!(" with its {} of swap full", bytes(s)))
                .unwrap_or_default();
            // The setting that made the kill certain, when there was one.
            let heap = oom
                .heap_over
                .map(|(runtime, ceiling, source)| {
                    format!(
                        "; its {runtime} max heap of {} ({source}) is above that limit, so the \
                         kernel kills it before the runtime runs out of heap",
                        bytes(ceiling)
                    )
                })
                .unwrap_or_default();
            (
                Cause::OomLimit,
                format!("OOM-killed: {whose} was reached{swap}{own}{heap}"),
            )
        }
        None => {
            let applies = match (oom.limit_source, oom.limit_bytes) {
                (Some(source), Some(b)) => format!(
                    "; the limit that applies to it is {} {}",
                    source_words(source),
                    bytes(b)
                ),
                _ => String::new(),
            };
            (
                Cause::OomLimit,
                format!(
                    "OOM-killed by the kernel; which limit was reached is not known (the \
                     kernel log's lines for this kill were not seen){applies}"
                ),
            )
        }
    }
}

/// "the pod's", "the container's", ... for a limit source.
fn source_words(source: LimitSource) -> &'static str {
    match source {
        LimitSource::Container => "the container's",
        LimitSource::Cgroup => "its cgroup's",
        LimitSource::Pod => "the pod's",
        LimitSource::Qos => "the QoS class cgroup's",
        LimitSource::Kubepods => "the kubepods cgroup's",
        LimitSource::Ancestor => "an ancestor cgroup's",
        LimitSource::Node => "the node's memory,",
    }
}

/// The QoS class the kubelet's `oom_score_adj` stands for.
fn qos_of_adj(adj: i32) -> &'static str {
    match adj {
        -997 => ", Guaranteed",
        1000 => ", BestEffort",
        2..=999 => ", Burstable",
        _ => "",
    }
}

fn signal_sentence(signal: u8, core: bool, story: Option<&SignalStory<'_>>) -> String {
    let name = signal_name(signal).unwrap_or_else(|| format!("signal {signal}"));
    let core = if core { " (core dumped)" } else { "" };
    match story {
        Some(s) if s.from_kernel => {
            format!("{name} from the kernel{core}: not an OOM kill")
        }
        Some(s) => {
            let who = match s.sender_container {
                Some(container) => format!(
                    "{} (pid {}, container {container})",
                    s.sender_comm, s.sender_pid
                ),
                None => format!("{} (pid {})", s.sender_comm, s.sender_pid),
            };
            let after = s
                .after_sigterm_s
                .filter(|_| signal == 9)
                .map(|t| format!(" {t:.0} s after a SIGTERM"))
                .unwrap_or_default();
            let what = match (signal, is_runtime(s.sender_comm), s.after_sigterm_s.is_some()) {
                (9, true, true) => "stopped by the runtime when the grace period ran out, not an OOM kill",
                (9, true, false) => "killed by the runtime (a kill, or a stop without a grace period), not an OOM kill",
                (9, false, _) => "killed by another process, not an OOM kill",
                (15, true, _) => "stopped by the runtime (a delete, a failed liveness probe, an eviction or a stop) and it did not handle SIGTERM",
                (15, false, _) => "asked to stop by another process, and it did not handle SIGTERM",
                _ => "sent by another process",
            };
            format!("{name} from {who}{after}{core}: {what}")
        }
        None => match signal_meaning(signal) {
            Some(meaning) => format!("killed by {name}{core}: {meaning}"),
            None if signal == 9 => format!(
                "killed by SIGKILL{core} from a sender that was not seen (sent before the watch, \
                 or its record was lost); not an OOM kill"
            ),
            None => format!("killed by {name}{core}, from a sender that was not seen"),
        },
    }
}

fn exit_sentence(code: u8) -> String {
    match (code, exit_code_meaning(code)) {
        (0, _) => "exit 0: it exited normally".to_string(),
        (_, Some(meaning)) => format!("exit {code}: {meaning}"),
        (_, None) => format!("exit {code}: the program's own error code"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const MIB: u64 = 1 << 20;

    fn killed(signal: u8) -> ExitStatus {
        ExitStatus::Signaled {
            signal,
            core: false,
        }
    }

    #[test]
    fn a_pod_limit_names_the_pod_and_the_missing_own_limit() {
        let pod = Path::new("/sys/fs/cgroup/kubepods/burstable/pod1");
        let death = Death {
            status: killed(9),
            oom: Some(OomStory {
                constraint: Some(Constraint::Memcg),
                limit_source: Some(LimitSource::Pod),
                oom_cgroup: Some(pod),
                limit_bytes: Some(512 * MIB),
                own_limit_bytes: None,
                oom_score_adj: Some(500),
                ..OomStory::default()
            }),
            signal: None,
        };
        assert_eq!(
            explain(&death),
            (
                Cause::OomLimit,
                "OOM-killed: the pod's limit of 512.0MiB was reached; this container has no \
                 limit of its own"
                    .to_string()
            )
        );
    }

    #[test]
    fn the_containers_own_limit() {
        let death = Death {
            status: killed(9),
            oom: Some(OomStory {
                constraint: Some(Constraint::Memcg),
                limit_source: Some(LimitSource::Container),
                limit_bytes: Some(64 * MIB),
                own_limit_bytes: Some(64 * MIB),
                ..OomStory::default()
            }),
            signal: None,
        };
        assert_eq!(
            explain(&death).1,
            "OOM-killed: the container's limit of 64.0MiB was reached"
        );
    }

    #[test]
    fn a_full_swap_and_a_heap_ceiling_over_the_limit_are_said() {
        let death = Death {
            status: killed(9),
            oom: Some(OomStory {
                constraint: Some(Constraint::Memcg),
                limit_source: Some(LimitSource::Container),
                limit_bytes: Some(256 * MIB),
                own_limit_bytes: Some(256 * MIB),
                swap_allowed: Some(64 * MIB),
                heap_over: Some(("JVM", 1024 * MIB, "-Xmx1g on the command line")),
                ..OomStory::default()
            }),
            signal: None,
        };
        assert_eq!(
            explain(&death).1,
            "OOM-killed: the container's limit of 256.0MiB was reached with its 64.0MiB of swap \
             full; its JVM max heap of 1.0GiB (-Xmx1g on the command line) is above that limit, \
             so the kernel kills it before the runtime runs out of heap"
        );
    }

    #[test]
    fn a_node_oom_names_the_score_and_the_qos() {
        let death = Death {
            status: killed(9),
            oom: Some(OomStory {
                constraint: Some(Constraint::Node),
                oom_score_adj: Some(1000),
                ..OomStory::default()
            }),
            signal: None,
        };
        let (cause, text) = explain(&death);
        assert_eq!(cause, Cause::OomNode);
        assert!(text.contains("node ran out of memory"), "{text}");
        assert!(text.contains("oom_score_adj is 1000, BestEffort"), "{text}");
        let ranked = Death {
            oom: death.oom.clone().map(|oom| OomStory {
                standing: Some(Standing {
                    rank: 1,
                    oom_score: 1312,
                }),
                ..oom
            }),
            ..death
        };
        assert_eq!(
            explain(&ranked).1,
            "OOM-killed by the node's OOM killer: the node ran out of memory and the kernel \
             chose this process, the highest oom_score on the node (1312); its oom_score_adj \
             is 1000, BestEffort; no cgroup limit was reached"
        );
    }

    #[test]
    fn a_group_kill_says_the_whole_cgroup_died() {
        let c1 = Path::new("/sys/fs/cgroup/kubepods.slice/pod1/c1");
        let death = Death {
            status: killed(9),
            oom: Some(OomStory {
                constraint: Some(Constraint::Memcg),
                limit_source: Some(LimitSource::Container),
                limit_bytes: Some(64 * MIB),
                own_limit_bytes: Some(64 * MIB),
                group: Some(c1),
                ..OomStory::default()
            }),
            signal: None,
        };
        assert_eq!(
            explain(&death).1,
            "OOM-killed: the container's limit of 64.0MiB was reached; the kernel killed every \
             process of /sys/fs/cgroup/kubepods.slice/pod1/c1 with it (memory.oom.group is set)"
        );
    }

    #[test]
    fn without_the_kernel_logs_word_the_limit_is_not_guessed() {
        let death = Death {
            status: killed(9),
            oom: Some(OomStory {
                constraint: None,
                limit_source: Some(LimitSource::Pod),
                limit_bytes: Some(256 * MIB),
                ..OomStory::default()
            }),
            signal: None,
        };
        let (cause, text) = explain(&death);
        assert_eq!(cause, Cause::OomLimit);
        assert!(text.contains("is not known"), "{text}");
        assert!(
            text.contains("applies to it is the pod's 256.0MiB"),
            "{text}"
        );
    }

    #[test]
    fn sigkill_from_the_runtime_after_a_sigterm() {
        let death = Death {
            status: killed(9),
            oom: None,
            signal: Some(SignalStory {
                sender_comm: "containerd-shim",
                sender_pid: 812,
                after_sigterm_s: Some(30.2),
                ..SignalStory::default()
            }),
        };
        assert_eq!(
            explain(&death),
            (
                Cause::Signal,
                "SIGKILL from containerd-shim (pid 812) 30 s after a SIGTERM: stopped by the \
                 runtime when the grace period ran out, not an OOM kill"
                    .to_string()
            )
        );
    }

    #[test]
    fn sigkill_from_another_process_and_from_nobody_seen() {
        let death = Death {
            status: killed(9),
            oom: None,
            signal: Some(SignalStory {
                sender_comm: "bash",
                sender_pid: 77,
                ..SignalStory::default()
            }),
        };
        assert_eq!(
            explain(&death).1,
            "SIGKILL from bash (pid 77): killed by another process, not an OOM kill"
        );
        let unseen = Death {
            signal: None,
            ..death
        };
        assert!(explain(&unseen).1.contains("sender that was not seen"));
    }

    #[test]
    fn sigterm_and_crashes() {
        let term = Death {
            status: killed(15),
            oom: None,
            signal: Some(SignalStory {
                sender_comm: "runc",
                sender_pid: 5,
                ..SignalStory::default()
            }),
        };
        assert!(explain(&term)
            .1
            .starts_with("SIGTERM from runc (pid 5): stopped by the runtime"));
        let segv = Death {
            status: ExitStatus::Signaled {
                signal: 11,
                core: true,
            },
            oom: None,
            signal: None,
        };
        assert_eq!(
            explain(&segv),
            (
                Cause::Signal,
                "killed by SIGSEGV (core dumped): the program crashed (an invalid memory access)"
                    .to_string()
            )
        );
    }

    #[test]
    fn exit_codes_people_look_up() {
        let exited = |code| Death {
            status: ExitStatus::Exited(code),
            oom: None,
            signal: None,
        };
        assert_eq!(
            explain(&exited(0)),
            (Cause::Exited, "exit 0: it exited normally".to_string())
        );
        assert!(explain(&exited(127))
            .1
            .starts_with("exit 127: the command was not found in the image"));
        assert!(explain(&exited(137))
            .1
            .contains("128 + SIGKILL as an exit status"));
        assert_eq!(
            explain(&exited(3)).1,
            "exit 3: the program's own error code"
        );
    }
}
