//! A flame graph of the bytes charged to a container, drawn by inferno as SVG and shown as an
//! `<img>` with a `data:` URI, so that nothing in it can run.
//!
//! Each sampled stack becomes one folded line, `comm;user root;…;user leaf;kernel_[k] BYTES`:
//! the process name at the root, then its user frames root first, then how it entered the
//! kernel, weighted by the bytes its samples stand for. The width of a box is the bytes charged
//! while that function was on the stack.
use std::collections::HashMap;

use crate::timeline::StacksMark;

/// How much of the kernel stack a flame graph shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFrames {
    /// None: the user frames alone.
    Omit,
    /// One frame: how the process entered the kernel, the system call when one is named, else
    /// the first frame (a page fault).
    Entry,
    /// The whole kernel stack.
    All,
}

/// What the page's flame graphs show of the kernel. Nearly every charge runs the same kernel
/// path below its entry (fault or system call, then the page allocator and the memcg charge),
/// so the whole stack adds a dozen rows that are alike on every tower and say nothing about
/// the program; the entry alone still tells a page fault on the heap from a `read()` into the
/// page cache or a `write()` to a socket, which differ in what a fix is.
pub const KERNEL_FRAMES: KernelFrames = KernelFrames::Entry;

/// Distinct stacks drawn at most; the rest are summed into one `[other]` box, so a long
/// recording gives a graph of bounded size.
pub const MAX_STACKS: usize = 2000;

/// The box that stands for the stacks beyond [`MAX_STACKS`].
pub const OTHER: &str = "[other]";

/// The SVG's width, pixels (the page scales it to its own width).
const WIDTH: usize = 1200;

/// Boxes narrower than this share of the width are not drawn, percent: at 1200 pixels, one
/// pixel and a little more.
const MIN_WIDTH_PCT: f64 = 0.1;

/// The frame of `kernel` (root first) that says how the process entered the kernel: the
/// system call when one is named, else the first frame (a fault, an interrupt).
pub(crate) fn kernel_entry(kernel: &[String]) -> Option<&str> {
    const SYSCALL_PREFIXES: [&str; 4] = ["__x64_sys_", "__arm64_sys_", "__ia32_sys_", "__se_sys_"];
    kernel
        .iter()
        .find(|f| SYSCALL_PREFIXES.iter().any(|p| f.starts_with(p)))
        .or_else(|| kernel.first())
        .map(String::as_str)
}

/// A frame as one field of a folded line: `;` separates frames and a line is split at its last
/// space, so neither may be misread; control characters and a leading `#` (a comment to
/// inferno) are replaced.
fn field(frame: &str) -> String {
    let mut out: String = frame
        .chars()
        .map(|c| match c {
            ';' => ':',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    out = out.trim().to_owned();
    if out.is_empty() {
        return "[unknown]".into();
    }
    if out.starts_with('#') {
        out.insert(0, '_');
    }
    out
}

/// One folded stack, without its weight.
fn fold(comm: &str, user: &[String], kernel: &[String], frames: KernelFrames) -> String {
    let mut parts = vec![field(comm)];
    parts.extend(user.iter().map(|f| {
        let f = field(f);
        // inferno colours `_[j]` frames as JIT code (and shows them without the suffix).
        if f == "[jit]" {
            format!("{f}_[j]")
        } else {
            f
        }
    }));
    let kernel: Vec<&str> = match frames {
        KernelFrames::Omit => Vec::new(),
        KernelFrames::Entry => kernel_entry(kernel).into_iter().collect(),
        KernelFrames::All => kernel.iter().map(String::as_str).collect(),
    };
    parts.extend(kernel.into_iter().map(|f| format!("{}_[k]", field(f))));
    parts.join(";")
}

/// The folded lines of `marks`, heaviest first: at most [`MAX_STACKS`] stacks, and one
/// [`OTHER`] line for the rest. Stacks of no bytes are left out.
pub fn folded(marks: &[StacksMark], frames: KernelFrames) -> Vec<String> {
    let mut bytes: HashMap<String, u64> = HashMap::new();
    for stack in marks.iter().flat_map(|m| &m.stacks.stacks) {
        if stack.bytes > 0 {
            *bytes
                .entry(fold(&stack.comm, &stack.user, &stack.kernel, frames))
                .or_default() += stack.bytes;
        }
    }
    let mut all: Vec<(String, u64)> = bytes.into_iter().collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let rest: u64 = all.iter().skip(MAX_STACKS).map(|(_, b)| b).sum();
    let mut lines: Vec<String> = all
        .into_iter()
        .take(MAX_STACKS)
        .map(|(stack, b)| format!("{stack} {b}"))
        .collect();
    if rest > 0 {
        lines.push(format!("{OTHER} {rest}"));
    }
    lines
}

/// The flame graph of `lines` (folded, weighted in bytes) as an SVG document that draws
/// without script: inferno's script, its `onload` and the controls only the script works
/// (search, reset zoom) are taken out.
pub fn svg(lines: &[String], title: &str) -> std::io::Result<String> {
    use inferno::flamegraph::{color::MultiPalette, Options, Palette};

    let mut options = Options::default();
    options.title = title.to_owned();
    options.count_name = "bytes".into();
    options.name_type = "Function:".into();
    // Java's palette: kernel frames orange, JIT frames green, C++ and Rust paths yellow, the
    // rest red; the colour within a hue from the name, the same on every machine.
    options.colors = Palette::Multi(MultiPalette::Java);
    options.deterministic = true;
    options.image_width = Some(WIDTH);
    options.min_width = MIN_WIDTH_PCT;
    let mut out = Vec::new();
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut out)?;
    let svg = String::from_utf8(out)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(without_script(&svg))
}

/// `svg` without its `<script>` elements, `onload` handler and the script's controls.
fn without_script(svg: &str) -> String {
    let mut out = svg.replace(" onload=\"init(evt)\"", "");
    for (open, close) in [
        ("<script", "</script>"),
        ("<text id=\"search\"", "</text>"),
        ("<text id=\"unzoom\"", "</text>"),
        ("<text id=\"details\"", "</text>"),
        ("<text id=\"matched\"", "</text>"),
    ] {
        out = without_element(&out, open, close);
    }
    out
}

/// `text` without every span from `open` to the next `close`, both included.
fn without_element(text: &str, open: &str, close: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(open) {
        out.push_str(&rest[..start]);
        match rest[start..].find(close) {
            Some(end) => rest = &rest[start + end + close.len()..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out
}
