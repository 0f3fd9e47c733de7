//! Charge stacks of the watched containers: the kernel's samples are normalised as they
//! arrive (while their process still exists), then named and summed into one
//! `charge_stacks` line per container and round. Sampling is on for every watched container
//! (`watch --stacks`) or only while one is at risk (`serve`).
use std::collections::HashMap;

use profiler_common::ChargeStack;

use super::{page_size, state::Collector, CollectError};
use crate::{
    forecast::risk::Risk,
    record::{ChargeStacks, LostEvents, RecordBody, StackEntry},
    stacks::{NormalizedStack, RawStack, Symbolizer},
};

/// Distinct stacks one `charge_stacks` line keeps; the rest are summed into one entry.
const MAX_STACKS_PER_LINE: usize = 100;

/// Which containers have their charges sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StackPolicy {
    /// None.
    Off,
    /// Every watched container (`watch --stacks`).
    Always,
    /// Those whose warning level is `warning` or `critical` (`serve`).
    AtRisk,
}

/// How charges are sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StackOptions {
    /// Which containers.
    pub policy: StackPolicy,
    /// Mean bytes charged (per CPU) between two samples.
    pub interval_bytes: u64,
}

impl StackOptions {
    /// No sampling.
    #[cfg(test)]
    pub(crate) const OFF: StackOptions = StackOptions {
        policy: StackPolicy::Off,
        interval_bytes: 512 * 1024,
    };
}

/// A sample waiting for its names.
#[derive(Clone, Debug)]
struct Pending {
    tgid: u32,
    comm: String,
    weight_bytes: u64,
    stack: NormalizedStack,
}

/// One container's samples since its last `charge_stacks` line.
#[derive(Debug, Default)]
pub(super) struct ContainerStacks {
    pending: Vec<Pending>,
    /// When its previous line was written, or its sampling turned on (Unix seconds).
    since: Option<f64>,
    /// Whether the kernel samples it now.
    pub(super) sampled: bool,
}

/// The collector's stack work: the options, the symbolizer and the losses reported.
pub(super) struct StackWork {
    options: StackOptions,
    symbolizer: Symbolizer,
    lost_reported: u64,
}

impl std::fmt::Debug for StackWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackWork")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl StackWork {
    /// The stack work for `options`; `None` when nothing is sampled. When every container is
    /// sampled, kallsyms is read now, before the watch starts, not on the first sample (it
    /// takes about 0.1 s of CPU and some MiB; `serve` reads it only once a container is at
    /// risk).
    pub(super) fn new(options: StackOptions) -> Option<Self> {
        if options.policy == StackPolicy::Off {
            return None;
        }
        let mut symbolizer = Symbolizer::new();
        if options.policy == StackPolicy::Always {
            symbolizer.warm();
        }
        Some(Self {
            options,
            symbolizer,
            lost_reported: 0,
        })
    }

    /// Whether a container at `level` is sampled.
    fn wanted(&self, level: Risk) -> bool {
        match self.options.policy {
            StackPolicy::Off => false,
            StackPolicy::Always => true,
            StackPolicy::AtRisk => level >= Risk::Warning,
        }
    }

    /// The interval in pages, as the kernel takes it (at least one page).
    fn interval_pages(&self) -> u32 {
        u32::try_from(self.options.interval_bytes / page_size())
            .unwrap_or(u32::MAX)
            .max(1)
    }
}

impl Collector<'_> {
    /// Whether the kernel samples the charges of any watched container now.
    pub(super) fn stacks_sampled(&self) -> bool {
        self.stack_work.is_some() && self.watched.iter().any(|w| w.stacks.sampled)
    }

    /// Samples from the kernel: each is normalised at once, while its process is most likely
    /// still there to be read.
    pub(super) fn on_stack_samples(&mut self, batch: Vec<ChargeStack>) {
        let Some(work) = self.stack_work.as_mut() else {
            return;
        };
        // Slot to container once per batch, not a search of every container per sample.
        let by_slot: HashMap<u32, usize> = self
            .watched
            .iter()
            .enumerate()
            .filter(|(_, w)| !w.gone)
            .map(|(i, w)| (w.slot.index(), i))
            .collect();
        for sample in batch {
            let Some(&index) = by_slot.get(&sample.slot) else {
                continue;
            };
            let w = &mut self.watched[index];
            let comm_len = sample
                .comm
                .iter()
                .position(|&c| c == 0)
                .unwrap_or(sample.comm.len());
            let comm = String::from_utf8_lossy(&sample.comm[..comm_len]).into_owned();
            let stack = work.symbolizer.normalize(RawStack {
                tgid: sample.tgid,
                user: sample.user_frames(),
                kernel: sample.kernel_frames(),
                comm: &comm,
            });
            w.stacks.pending.push(Pending {
                tgid: sample.tgid,
                comm,
                weight_bytes: sample.weight_pages.saturating_mul(self.page_size),
                stack,
            });
        }
    }

    /// Turns watched container `index`'s sampling on or off for its warning level.
    pub(super) fn steer_stacks(&mut self, index: usize, now: f64) -> Result<(), CollectError> {
        let (Some(work), Some(maps)) = (self.stack_work.as_ref(), self.maps.as_mut()) else {
            return Ok(());
        };
        let w = &mut self.watched[index];
        let wanted = work.wanted(w.outlook.level());
        if wanted == w.stacks.sampled {
            return Ok(());
        }
        let interval = if wanted { work.interval_pages() } else { 0 };
        maps.set_stack_interval(w.slot.index(), interval)?;
        w.stacks.sampled = wanted;
        if wanted && w.stacks.since.is_none() {
            w.stacks.since = Some(now);
        }
        log::debug!(
            "{}: charge stacks {}",
            w.cgroup.path().display(),
            if wanted {
                "sampled"
            } else {
                "no longer sampled"
            }
        );
        Ok(())
    }

    /// Names the samples of the round and writes one `charge_stacks` line per container that
    /// had any; reports samples the kernel lost.
    pub(super) fn flush_stacks(&mut self, now: f64) -> Result<(), CollectError> {
        let Some(mut work) = self.stack_work.take() else {
            return Ok(());
        };
        let result = self.write_stacks(&mut work, now);
        work.symbolizer.prune(now);
        let lost = match self.maps.as_ref().map(|m| m.lost_stacks()) {
            Some(Ok(lost)) => lost,
            Some(Err(e)) => {
                self.stack_work = Some(work);
                return Err(e.into());
            }
            None => work.lost_reported,
        };
        let count = lost.saturating_sub(work.lost_reported);
        work.lost_reported = lost;
        self.stack_work = Some(work);
        result?;
        if count > 0 {
            self.emit_node(RecordBody::LostEvents(LostEvents {
                count,
                source: "charge_stacks",
            }))?;
        }
        Ok(())
    }

    fn write_stacks(&mut self, work: &mut StackWork, now: f64) -> Result<(), CollectError> {
        for index in 0..self.watched.len() {
            let w = &mut self.watched[index];
            if w.stacks.pending.is_empty() {
                continue;
            }
            let pending = std::mem::take(&mut w.stacks.pending);
            let since = w.stacks.since.replace(now).unwrap_or(w.started);
            let line = summarize(
                &mut work.symbolizer,
                pending,
                now - since,
                work.options.interval_bytes,
            );
            self.emit_about(now, index, RecordBody::ChargeStacks(line))?;
        }
        Ok(())
    }
}

/// What samples are summed by: the process, its command name, and the user and kernel
/// frames.
type StackKey = (u32, String, Vec<String>, Vec<String>);

/// Names each sample's frames and sums the samples by process and stack.
fn summarize(
    symbolizer: &mut Symbolizer,
    pending: Vec<Pending>,
    window_s: f64,
    interval_bytes: u64,
) -> ChargeStacks {
    let samples = pending.len() as u64;
    let mut bytes = 0u64;
    let mut sums: HashMap<StackKey, (u64, u64)> = HashMap::new();
    for p in pending {
        let (user, mut kernel) = symbolizer.symbolize(&p.stack);
        trim_probe_frames(&mut kernel);
        bytes = bytes.saturating_add(p.weight_bytes);
        let sum = sums.entry((p.tgid, p.comm, user, kernel)).or_default();
        sum.0 += 1;
        sum.1 = sum.1.saturating_add(p.weight_bytes);
    }
    ChargeStacks {
        window_s,
        interval_bytes,
        samples,
        bytes,
        stacks: bounded(
            sums.into_iter()
                .map(|((pid, comm, user, kernel), (samples, bytes))| StackEntry {
                    pid,
                    comm,
                    samples,
                    bytes,
                    user,
                    kernel,
                })
                .collect(),
        ),
    }
}

/// The kernel functions the charge path hooks (each kernel has one spelling of each): a
/// stack is cut after the innermost of them.
const HOOKED: [&str; 6] = [
    "__mod_memcg_lruvec_state",
    "mod_memcg_lruvec_state",
    "__mod_memcg_state",
    "mod_memcg_state",
    "__count_memcg_events",
    "count_memcg_events",
];

/// Drops the innermost kernel frames that are the sampling itself: the program, its
/// subprogram, and what ran it (`bpf_trace_run3` for a raw tracepoint, a trampoline for
/// fentry, the kprobe handlers), so a stack ends in the kernel function that charged. They
/// follow the hooked function; where it is not in the stack, frames that are plainly BPF or
/// kprobe machinery (or unnamed) are dropped from the inner end.
fn trim_probe_frames(kernel: &mut Vec<String>) {
    if let Some(hooked) = kernel.iter().rposition(|f| HOOKED.contains(&f.as_str())) {
        kernel.truncate(hooked + 1);
        return;
    }
    const MACHINERY: [&str; 4] = ["bpf_", "__bpf", "ftrace", "arch_ftrace"];
    while kernel.last().is_some_and(|f| {
        MACHINERY.iter().any(|m| f.starts_with(m))
            || f.starts_with("[unknown]")
            || f.contains("kprobe")
    }) {
        kernel.pop();
    }
}

/// The stacks, most bytes first, at most [`MAX_STACKS_PER_LINE`]: the rest are summed into
/// one last entry whose only frame is `[other stacks]`.
fn bounded(mut stacks: Vec<StackEntry>) -> Vec<StackEntry> {
    stacks.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then_with(|| a.pid.cmp(&b.pid))
            .then_with(|| a.user.cmp(&b.user))
    });
    if stacks.len() > MAX_STACKS_PER_LINE {
        let rest = stacks.split_off(MAX_STACKS_PER_LINE - 1);
        stacks.push(StackEntry {
            pid: 0,
            comm: String::new(),
            samples: rest.iter().map(|s| s.samples).sum(),
            bytes: rest.iter().map(|s| s.bytes).sum(),
            user: vec!["[other stacks]".to_owned()],
            kernel: Vec::new(),
        });
    }
    stacks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: u32, bytes: u64) -> StackEntry {
        StackEntry {
            pid,
            comm: "w".into(),
            samples: 1,
            bytes,
            user: vec![format!("f{pid}")],
            kernel: Vec::new(),
        }
    }

    #[test]
    fn stacks_are_sorted_and_bounded_with_the_rest_summed() {
        let stacks: Vec<_> = (0..250).map(|i| entry(i, u64::from(i) * 10)).collect();
        let total: u64 = stacks.iter().map(|s| s.bytes).sum();
        let kept = bounded(stacks);
        assert_eq!(kept.len(), MAX_STACKS_PER_LINE);
        assert_eq!(kept[0].pid, 249, "most bytes first");
        let last = kept.last().expect("an entry");
        assert_eq!(last.user, ["[other stacks]"]);
        assert_eq!(last.samples, 250 - 99);
        assert_eq!(
            kept.iter().map(|s| s.bytes).sum::<u64>(),
            total,
            "no byte lost"
        );
    }

    #[test]
    fn the_sampling_programs_are_cut_from_kernel_stacks() {
        let owned = |v: &[&str]| v.iter().map(|&f| f.to_owned()).collect::<Vec<_>>();
        // Raw tracepoint (6.18), fentry (a trampoline kallsyms does not name), kprobe.
        let cases = [
            &[
                "do_anonymous_page",
                "mod_memcg_lruvec_state",
                "bpf_trace_run3",
                "bpf_prog_130168124b59ee60_memcg_lruvec_state",
                "bpf_prog_3405062715c3a1fd_sample_stack",
            ][..],
            &[
                "do_anonymous_page",
                "mod_memcg_lruvec_state",
                "[unknown] (kernel)",
                "bpf_prog_1_fentry_memcg_lruvec_state",
                "bpf_prog_2_sample_stack",
            ][..],
            &[
                "do_anonymous_page",
                "mod_memcg_lruvec_state",
                "kprobe_ftrace_handler",
                "kprobe_perf_func",
                "bpf_prog_3_sample_stack",
            ][..],
        ];
        for case in cases {
            let mut kernel = owned(case);
            trim_probe_frames(&mut kernel);
            assert_eq!(kernel[0], "do_anonymous_page");
            assert!(
                kernel[1].starts_with("mod_memcg_lruvec_state"),
                "{kernel:?}"
            );
            assert_eq!(kernel.len(), 2, "{kernel:?}");
        }
    }

    #[test]
    fn few_stacks_are_kept_as_they_are() {
        let kept = bounded(vec![entry(1, 5), entry(2, 50)]);
        assert_eq!(kept.iter().map(|s| s.pid).collect::<Vec<_>>(), [2, 1]);
    }

    #[test]
    fn at_risk_samples_only_warning_and_critical() {
        let work = |policy| StackWork {
            options: StackOptions {
                policy,
                interval_bytes: 512 * 1024,
            },
            symbolizer: Symbolizer::new(),
            lost_reported: 0,
        };
        let at_risk = work(StackPolicy::AtRisk);
        assert!(!at_risk.wanted(Risk::Ok));
        assert!(at_risk.wanted(Risk::Warning));
        assert!(at_risk.wanted(Risk::Critical));
        assert!(work(StackPolicy::Always).wanted(Risk::Ok));
        assert!(StackWork::new(StackOptions::OFF).is_none());
    }
}
