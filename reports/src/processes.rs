//! Which process grew, from the `processes` lines: in a container's section, its processes by
//! growth at the latest line; at each kill, a sentence on the process that grew most in the
//! last minute and what the rest of its pod (or container) did meanwhile.
use crate::chart::clock;
use crate::html::Html;
use crate::page::{mib, GROWTH_WINDOW_S};
use crate::recording::Processes;
use crate::timeline::{Container, Kill, ProcessesMark, Timeline};

/// The rest grew less than this share of the top grower's growth: flat, percent.
pub(crate) const FLAT_SHARE_PCT: f64 = 5.0;
/// ...or less than this, bytes: a few pages come and go in any process.
pub(crate) const FLAT_BYTES: u64 = 1 << 20;

/// `+180 MiB`, `−4.0 MiB` (a true minus sign), and `0.0 MiB` for what rounds to nothing.
fn signed_mib(bytes: i64) -> String {
    let size = mib(bytes.unsigned_abs());
    if size == mib(0) {
        return size;
    }
    match bytes.signum() {
        1 => format!("+{size}"),
        -1 => format!("−{size}"),
        _ => size,
    }
}

/// `60 s`, from a window in seconds; `—` when not given.
fn window(seconds: Option<f64>) -> String {
    seconds.map_or_else(|| "—".into(), |s| format!("{s:.0} s"))
}

/// The growth of every process of a line: listed and not.
fn line_growth(p: &Processes) -> i64 {
    let listed: i64 = p.processes.iter().map(|g| g.growth_bytes).sum();
    listed.saturating_add(p.others.as_ref().map_or(0, |o| o.growth_bytes))
}

/// The processes of the container's latest `processes` line, by growth; nothing without one.
pub(crate) fn processes_section(html: &mut Html, container: &Container) {
    let Some(last) = container.processes.last() else {
        return;
    };
    let p = &last.processes;
    html.raw("<h3>Processes by growth</h3>\n");
    let mut facts = vec![format!("At {} into the recording", clock(last.t))];
    if p.trigger.as_deref() == Some("risk_rose") {
        facts.push("written as the container's risk rose".into());
    }
    if let Some(rss) = p.rss_bytes {
        facts.push(format!("all its processes hold {} of RSS", mib(rss)));
    }
    if let Some(w) = p.window_s {
        facts.push(format!(
            "growth over the last {w:.0} s (less for younger processes)"
        ));
    }
    html.element("<p class=\"meta\">", facts.join("; ") + ".", "</p>\n");
    html.raw("<table class=\"processes\">\n").header_row(&[
        "Process",
        "RSS anonymous",
        "RSS file",
        "RSS shared memory",
        "Growth",
        "Over",
    ]);
    for g in &p.processes {
        html.row([
            format!("{} (pid {})", g.comm, g.pid),
            mib(g.rss_anon_bytes),
            mib(g.rss_file_bytes),
            mib(g.rss_shmem_bytes),
            signed_mib(g.growth_bytes),
            window(g.growth_window_s.or(p.window_s)),
        ]);
    }
    if let Some(o) = p.others.as_ref().filter(|o| o.processes > 0) {
        html.row([
            format!("{} other processes", o.processes),
            format!("{} in all", mib(o.rss_bytes)),
            "—".into(),
            "—".into(),
            signed_mib(o.growth_bytes),
            window(p.window_s),
        ]);
    }
    html.raw("</table>\n");
}

/// The last `processes` line of `container` at or before `t`, if written in the minute before.
fn last_before(container: &Container, t: f64) -> Option<&ProcessesMark> {
    container
        .processes
        .iter()
        .filter(|m| m.t <= t && m.t >= t - GROWTH_WINDOW_S)
        .max_by(|a, b| a.t.total_cmp(&b.t))
}

/// The other containers of `container`'s pod in the recording (matched by namespace and pod);
/// none for a container outside a pod.
fn pod_mates<'a>(timeline: &'a Timeline, container: &'a Container) -> Vec<&'a Container> {
    let id = &container.identity;
    let (Some(ns), Some(pod)) = (&id.namespace, &id.pod) else {
        return Vec::new();
    };
    timeline
        .containers
        .iter()
        .filter(|c| !std::ptr::eq(*c, container))
        .filter(|c| {
            c.identity.namespace.as_ref() == Some(ns) && c.identity.pod.as_ref() == Some(pod)
        })
        .collect()
}

/// The sentence about the process that grew most before a kill at `t` and the rest of its pod
/// (or of its container); `None` when the container has no `processes` lines at all.
pub(crate) fn growth_sentence(
    timeline: &Timeline,
    container: &Container,
    t: f64,
) -> Option<String> {
    if container.processes.is_empty() {
        return None;
    }
    let Some(own) = last_before(container, t) else {
        return Some(format!(
            "No processes line was written in the {GROWTH_WINDOW_S:.0} s before the kill: \
             which process grew is not known."
        ));
    };
    let p = &own.processes;
    let when = format!(
        "Measured at the last processes line, {:.0} s before the kill.",
        t - own.t
    );
    let Some(top) = p.processes.iter().max_by_key(|g| g.growth_bytes) else {
        return Some(format!("The processes line lists no process. {when}"));
    };
    if top.growth_bytes <= 0 {
        return Some(format!(
            "No process of the container grew in the last {}. {when}",
            window(p.window_s.or(Some(GROWTH_WINDOW_S)))
        ));
    }
    // The rest: the line's other processes, listed or summed, and the other containers of the
    // pod at their own last line of the minute.
    let mates: Vec<&ProcessesMark> = pod_mates(timeline, container)
        .into_iter()
        .filter_map(|c| last_before(c, t))
        .collect();
    let rest = line_growth(p).saturating_sub(top.growth_bytes)
        + mates.iter().map(|m| line_growth(&m.processes)).sum::<i64>();
    let scope = if mates.is_empty() {
        "the rest of the container".to_owned()
    } else {
        "the rest of the pod".to_owned()
    };
    let top_growth = top.growth_bytes.unsigned_abs();
    let flat = (top_growth as f64 * FLAT_SHARE_PCT / 100.0).max(FLAT_BYTES as f64);
    let rest_said = if (rest.unsigned_abs() as f64) < flat {
        format!("{scope} was flat")
    } else if rest > 0 {
        format!("{scope} grew {}", mib(rest.unsigned_abs()))
    } else {
        format!("{scope} shrank {}", mib(rest.unsigned_abs()))
    };
    Some(format!(
        "pid {} ({}) grew {} in the last {}; {rest_said}. {when}",
        top.pid,
        top.comm,
        mib(top_growth),
        window(top.growth_window_s.or(p.window_s)),
    ))
}

/// At a kill: which process grew, as [`growth_sentence`] says it.
pub(crate) fn kill_growth(
    html: &mut Html,
    timeline: &Timeline,
    container: &Container,
    kill: &Kill,
) {
    if let Some(sentence) = growth_sentence(timeline, container, kill.t) {
        html.element("<p class=\"process-growth\">", sentence, "</p>\n");
    }
}

#[cfg(test)]
mod tests;
