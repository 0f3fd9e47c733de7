//! What charged a container's memory, from its `charge_stacks` lines: in its section, a flame
//! graph of the bytes charged by stack, with a notice when the stacks are too short to say who
//! called the leaf and a note on unnamed JIT frames; at each kill, the stacks that charged most
//! in the minute before it.
//!
//! A recording has these lines only when the watch sampled stacks (`--stacks`).
mod advice;
mod flame;

use std::collections::HashMap;

use crate::html::Html;
use crate::page::mib;
use crate::timeline::{Container, Kill, StacksMark, Timeline};

pub use advice::SHORT_STACK_FRAMES;
pub use flame::{folded, svg as flame_svg, KernelFrames, KERNEL_FRAMES, MAX_STACKS, OTHER};

/// The time before a kill whose stacks are its top charging stacks, seconds.
pub const KILL_WINDOW_S: f64 = 60.0;
/// Rows of the top charging stacks of a kill.
pub const TOP_STACKS: usize = 5;
/// User frames shown of one stack in a table; the rest are counted.
const SHOWN_FRAMES: usize = 12;

/// The bytes a line stands for: as it says, or its stacks' when it says less.
fn line_bytes(mark: &StacksMark) -> u64 {
    let stacks: u64 = mark.stacks.stacks.iter().map(|s| s.bytes).sum();
    mark.stacks.bytes.max(stacks)
}

/// The samples of a line: as it says, or its stacks' when it says fewer.
fn line_samples(mark: &StacksMark) -> u64 {
    let stacks: u64 = mark.stacks.stacks.iter().map(|s| s.samples).sum();
    mark.stacks.samples.max(stacks)
}

/// How a process entered the kernel to charge memory, in words: `read()` for a system call,
/// `page fault`, else the kernel's first frame; `—` without kernel frames.
fn entry_label(kernel: &[String]) -> String {
    let Some(entry) = flame::kernel_entry(kernel) else {
        return "—".into();
    };
    let syscall = ["__x64_sys_", "__arm64_sys_", "__ia32_sys_", "__se_sys_"]
        .iter()
        .find_map(|p| entry.strip_prefix(p));
    match syscall {
        Some(name) => format!("{name}()"),
        None if entry.contains("page_fault") => "page fault".into(),
        None => entry.to_owned(),
    }
}

/// User frames, leaf first, joined by arrows; `(no user frames)` for a kernel thread.
fn leaf_first(user: &[String]) -> String {
    if user.is_empty() {
        return "(no user frames)".into();
    }
    let mut shown: Vec<&str> = user
        .iter()
        .rev()
        .take(SHOWN_FRAMES)
        .map(String::as_str)
        .collect();
    let more = user.len().saturating_sub(SHOWN_FRAMES);
    let tail = format!("… ({more} more)");
    if more > 0 {
        shown.push(&tail);
    }
    shown.join(" ← ")
}

/// `12 %`, or `0.4 %` under one percent.
fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "—".into();
    }
    let pct = part as f64 * 100.0 / whole as f64;
    if pct < 1.0 {
        format!("{pct:.1} %")
    } else {
        format!("{pct:.0} %")
    }
}

/// A note on the page when stack samples were lost: the graphs and tables undercount.
pub(crate) fn lost_note(html: &mut Html, timeline: &Timeline) {
    if timeline.lost_stack_samples == 0 {
        return;
    }
    html.element(
        "<div class=\"note\" role=\"note\">",
        format!(
            "The watch lost {} charge-stack samples (its ring buffer was full): the flame \
             graphs and the top charging stacks below undercount.",
            timeline.lost_stack_samples
        ),
        "</div>\n",
    );
}

/// The container's flame graph of the bytes charged, by stack, and the notes on its stacks;
/// nothing when the recording has no stacks of it.
pub(crate) fn stacks_section(html: &mut Html, container: &Container) {
    let marks = &container.stacks;
    let (Some(first), Some(last)) = (marks.first(), marks.last()) else {
        return;
    };
    let bytes: u64 = marks.iter().map(line_bytes).sum();
    let samples: u64 = marks.iter().map(line_samples).sum();
    html.raw("<h3>Bytes charged, by stack</h3>\n");
    let title = format!(
        "Bytes charged, by stack: {} in {samples} samples",
        mib(bytes)
    );
    html.element(
        "<p class=\"meta\">",
        format!(
            "{title}, from {} charge_stacks lines between {} and {} into the recording. Each box \
             is a function, as wide as the bytes charged while it was on the stack: at the \
             bottom the process, above it its user frames from the root to the leaf, and on \
             top, in orange, how it entered the kernel (a page fault or a system call).",
            marks.len(),
            crate::chart::clock(first.t),
            crate::chart::clock(last.t),
        ),
        "</p>\n",
    );
    let lines = folded(marks, KERNEL_FRAMES);
    if lines.is_empty() {
        html.raw("<p>The samples carried no bytes: nothing to draw.</p>\n");
    } else {
        match flame_svg(&lines, &title) {
            Ok(svg) => {
                use base64::Engine as _;
                html.raw("<img class=\"flame\" alt=\"")
                    .text(format!(
                        "Flame graph of the bytes charged to {}, by stack",
                        container.name()
                    ))
                    .raw("\" src=\"data:image/svg+xml;base64,")
                    // Base64 is letters, digits, `+`, `/` and `=`: nothing to escape.
                    .text(base64::engine::general_purpose::STANDARD.encode(svg))
                    .raw("\">\n");
            }
            Err(e) => {
                html.element(
                    "<p class=\"note\">",
                    format!("The flame graph could not be drawn: {e}."),
                    "</p>\n",
                );
            }
        }
        if lines.last().is_some_and(|l| l.starts_with(OTHER)) {
            html.element(
                "<p class=\"meta\">",
                format!(
                    "Only the {MAX_STACKS} stacks that charged most are drawn; the others are \
                     summed in one {OTHER} box."
                ),
                "</p>\n",
            );
        }
    }
    advice::short_stacks_note(html, marks);
    advice::jit_note(html, marks);
}

/// One row of a kill's top charging stacks: a process's user stack, summed over the lines.
struct TopStack<'a> {
    pid: u32,
    comm: &'a str,
    user: &'a [String],
    bytes: u64,
    samples: u64,
    /// How it entered the kernel, with the bytes of each way.
    entries: Vec<(String, u64)>,
}

/// The lines of the minute before a kill at `t`: those written in it, and the first one after
/// it when its window began at or before the kill (a line is written at the end of its round,
/// so the samples just before a kill are in the line of the round the kill fell in).
fn before_kill(container: &Container, t: f64) -> Vec<&StacksMark> {
    let mut marks: Vec<&StacksMark> = container
        .stacks
        .iter()
        .filter(|m| m.t >= t - KILL_WINDOW_S && m.t <= t)
        .collect();
    let next = container
        .stacks
        .iter()
        .filter(|m| m.t > t)
        .min_by(|a, b| a.t.total_cmp(&b.t));
    if let Some(next) = next {
        if next.stacks.window_s.is_some_and(|w| next.t - w <= t) {
            marks.push(next);
        }
    }
    marks
}

/// The stacks of `marks` by process and user stack, most bytes first.
fn top_stacks<'a>(marks: &[&'a StacksMark]) -> Vec<TopStack<'a>> {
    let mut by_stack: HashMap<(u32, &str, &[String]), TopStack<'a>> = HashMap::new();
    for stack in marks.iter().flat_map(|m| &m.stacks.stacks) {
        let key = (stack.pid, stack.comm.as_str(), stack.user.as_slice());
        let row = by_stack.entry(key).or_insert_with(|| TopStack {
            pid: stack.pid,
            comm: &stack.comm,
            user: &stack.user,
            bytes: 0,
            samples: 0,
            entries: Vec::new(),
        });
        row.bytes += stack.bytes;
        row.samples += stack.samples;
        let entry = entry_label(&stack.kernel);
        match row.entries.iter_mut().find(|(e, _)| *e == entry) {
            Some((_, b)) => *b += stack.bytes,
            None => row.entries.push((entry, stack.bytes)),
        }
    }
    let mut rows: Vec<TopStack<'a>> = by_stack.into_values().collect();
    rows.sort_by(|a, b| {
        (b.bytes, b.samples)
            .cmp(&(a.bytes, a.samples))
            .then_with(|| (a.pid, a.comm, a.user).cmp(&(b.pid, b.comm, b.user)))
    });
    rows
}

/// At a kill: the stacks that charged most to its container in the minute before it, or why
/// none are shown.
pub(crate) fn kill_stacks(html: &mut Html, container: &Container, kill: &Kill) {
    html.raw(
        "<div class=\"kill-stacks\">\n<h4>Top charging stacks in the minute before the kill</h4>\n",
    );
    let marks = before_kill(container, kill.t);
    let total: u64 = marks.iter().map(|m| line_bytes(m)).sum();
    let rows = top_stacks(&marks);
    if rows.is_empty() || total == 0 {
        let why = if container.stacks.is_empty() {
            "no charge stacks were recorded in the minute before this kill: run watch with --stacks"
        } else {
            "no charge stacks were recorded in the minute before this kill: stacks were sampled \
             at other times, so little was charged then, or its samples were lost"
        };
        html.element("<p class=\"no-stacks\">", why, "</p>\n</div>\n");
        return;
    }
    let samples: u64 = marks.iter().map(|m| line_samples(m)).sum();
    html.element(
        "<p class=\"meta\">",
        format!(
            "{} charged in {samples} samples in the {KILL_WINDOW_S:.0} s before the kill; the \
             {} that charged most, the leaf first:",
            mib(total),
            if rows.len() >= TOP_STACKS {
                format!("{TOP_STACKS} stacks")
            } else {
                "stacks".into()
            }
        ),
        "</p>\n",
    );
    html.raw("<table class=\"top-stacks\">\n").header_row(&[
        "Bytes",
        "Share",
        "Process",
        "Stack, leaf first",
        "Entered the kernel by",
    ]);
    for row in rows.iter().take(TOP_STACKS) {
        let mut entries = row.entries.clone();
        entries.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let entries: Vec<String> = entries.into_iter().map(|(e, _)| e).collect();
        html.row([
            mib(row.bytes),
            share(row.bytes, total),
            format!("{} (pid {})", row.comm, row.pid),
            leaf_first(row.user),
            entries.join(", "),
        ]);
    }
    html.raw("</table>\n</div>\n");
}

#[cfg(test)]
mod tests;
