//! What a container's stacks say about how they were taken: too short to show who called the
//! leaf (the code has no frame pointers), or with JIT code left unnamed.
use crate::html::Html;
use crate::timeline::StacksMark;

/// Stacks whose median length, weighted by bytes, is at most this many user frames are short.
/// A C program's real stack to a leak is `__libc_start_call_main → main → handle_request →
/// cache_put`: four frames with frame pointers, and three for a program whose `main` calls the
/// function that touches the memory. Without frame pointers the kernel's walk usually gives
/// the leaf and one stale frame more: two and fewer is the sign of missing frame pointers,
/// while three would also flag a shallow program whose stack is whole (only a `main` that
/// touches the memory itself has two).
pub const SHORT_STACK_FRAMES: usize = 2;

/// The weight of a stack: its bytes, or its samples when the line gave no bytes.
fn weight(bytes: u64, samples: u64) -> u64 {
    if bytes > 0 {
        bytes
    } else {
        samples
    }
}

/// The median number of user frames over the samples of `marks`, weighted by bytes; stacks
/// without user frames (kernel threads) are left out, as they have none to lose. `None`
/// without any.
pub(crate) fn median_user_frames(marks: &[StacksMark]) -> Option<usize> {
    let mut lengths: Vec<(usize, u64)> = marks
        .iter()
        .flat_map(|m| &m.stacks.stacks)
        .filter(|s| !s.user.is_empty())
        .map(|s| (s.user.len(), weight(s.bytes, s.samples)))
        .filter(|&(_, w)| w > 0)
        .collect();
    lengths.sort_unstable();
    let total: u64 = lengths.iter().map(|&(_, w)| w).sum();
    let mut seen = 0;
    lengths.into_iter().find_map(|(frames, w)| {
        seen += w;
        (seen * 2 >= total).then_some(frames)
    })
}

/// The notice that the stacks are short: what is seen, why, and how to build for whole
/// stacks in each language; nothing when they are not.
pub(crate) fn short_stacks_note(html: &mut Html, marks: &[StacksMark]) {
    let Some(median) = median_user_frames(marks) else {
        return;
    };
    if median > SHORT_STACK_FRAMES {
        return;
    }
    let frames = if median == 1 { "frame" } else { "frames" };
    html.raw("<div class=\"note short-stacks\" role=\"note\">")
        .text(format!(
            "Half of the bytes sampled were charged by stacks of {median} user {frames} or \
             fewer: the flame graph and the top stacks show the function that touched the \
             memory, but not who called it. "
        ))
        .raw(
            "These stacks are short because the kernel walks user stacks by frame pointers, and \
             code built without frame pointers gives one or two frames. To see whole stacks, \
             build with them: C and C++ <code>-fno-omit-frame-pointer</code>; Rust \
             <code>RUSTFLAGS=\"-C force-frame-pointers=yes\"</code>; the JVM \
             <code>-XX:+PreserveFramePointer</code>; Go has them by default.</div>\n",
        );
}

/// The note that JIT frames are unnamed and how to name them; nothing without `[jit]` frames.
pub(crate) fn jit_note(html: &mut Html, marks: &[StacksMark]) {
    let (mut jit, mut all) = (0u64, 0u64);
    for stack in marks.iter().flat_map(|m| &m.stacks.stacks) {
        let w = weight(stack.bytes, stack.samples);
        all += w;
        if stack.user.iter().any(|f| f == "[jit]") {
            jit += w;
        }
    }
    if jit == 0 {
        return;
    }
    let pct = jit as f64 * 100.0 / all.max(1) as f64;
    html.raw("<div class=\"note jit-frames\" role=\"note\">")
        .text(format!(
            "{pct:.0} % of the bytes sampled were charged under code a runtime compiled as it \
             ran, shown as [jit]. "
        ))
        .raw(
            "JIT frames are named when the runtime writes <code>/tmp/perf-PID.map</code>: for \
             the JVM, <code>-XX:+UnlockDiagnosticVMOptions -XX:+DumpPerfMapAtExit</code> or a \
             perf-map agent (on JDK 17 and later <code>jcmd PID Compiler.perfmap</code> writes \
             it at once); for Node.js, <code>--perf-basic-prof</code>.</div>\n",
        );
}
