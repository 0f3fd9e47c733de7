//! Charge stacks in the guests: the leak's watch and the forced kprobe and fentry runs sample
//! with `--stacks`, so the programs of every mode the kernel has take stacks on a real charge
//! path, and the guest's profiler names them from its own files and kallsyms.
use records::{Body, Line};

use super::{Check, GuestReport};

/// What the samples of one watch show.
struct Seen {
    samples: u64,
    /// A sample whose user frames name the workload's code (`workload::...`).
    named_user: bool,
    /// A sample whose kernel frames name the anonymous page fault.
    named_kernel: bool,
}

fn seen(lines: &[Line]) -> Seen {
    let mut seen = Seen {
        samples: 0,
        named_user: false,
        named_kernel: false,
    };
    for line in lines {
        let Body::ChargeStacks(stacks) = &line.body else {
            continue;
        };
        seen.samples += stacks.samples;
        for stack in &stacks.stacks {
            seen.named_user |= stack.user.iter().any(|f| f.starts_with("workload::"));
            seen.named_kernel |= stack.kernel.iter().any(|f| f == "handle_mm_fault");
        }
    }
    seen
}

/// `watch --stacks` took samples on the growth and named them, user and kernel side, in the
/// section `section` (the leak's watch, or the kprobe run).
pub(super) fn stacks_check(report: &GuestReport, section: &str, name: &'static str) -> Check {
    let lines = report.json_lines(section);
    let s = seen(&lines);
    Check {
        name,
        passed: s.samples > 0 && s.named_user && s.named_kernel,
        detail: format!(
            "{} samples; a user frame in workload::: {}; handle_mm_fault in a kernel stack: {}",
            s.samples, s.named_user, s.named_kernel
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(json: &str) -> Line {
        Line::parse(json).expect("a line")
    }

    #[test]
    fn named_samples_pass_and_unnamed_do_not() {
        let named = line(
            r#"{"ts":1.0,"cgroup":"/x","type":"charge_stacks","samples":3,"bytes":1572864,"stacks":[{"pid":7,"comm":"leaky","samples":3,"bytes":1572864,"user":["workload::Region::touched"],"kernel":["asm_exc_page_fault","handle_mm_fault"]}]}"#,
        );
        let s = seen(&[named]);
        assert!(s.samples == 3 && s.named_user && s.named_kernel);
        let unnamed = line(
            r#"{"ts":1.0,"cgroup":"/x","type":"charge_stacks","samples":3,"bytes":1572864,"stacks":[{"pid":7,"comm":"leaky","samples":3,"bytes":1572864,"user":["[unknown] (workload)"],"kernel":["[unknown] (kernel)"]}]}"#,
        );
        let s = seen(&[unnamed]);
        assert!(s.samples == 3 && !s.named_user && !s.named_kernel);
        assert_eq!(seen(&[]).samples, 0);
    }
}
