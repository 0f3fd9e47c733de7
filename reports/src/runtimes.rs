//! A container's managed runtimes on the page: the settings found wrong (`config_risk`, a
//! callout at the top of its section), its runtime processes with their heap ceilings, and
//! its swap beside its memory.
use crate::chart::clock;
use crate::html::Html;
use crate::page::{mib, opt_mib};
use crate::recording::ConfigRisk;
use crate::timeline::{Container, RiskMark};

/// How people name a runtime (`jvm` → JVM); a name this report does not know, as written.
pub(crate) fn runtime_label(runtime: Option<&str>) -> String {
    match runtime {
        Some("jvm") => "JVM".into(),
        Some("node") => "Node.js".into(),
        Some("go") => "Go".into(),
        Some("dotnet") => ".NET".into(),
        Some(other) => other.to_owned(),
        None => "—".into(),
    }
}

/// The risks, one per distinct finding (a restarted process says the same again, under a
/// new pid), each with the processes that had it.
fn distinct(risks: &[RiskMark]) -> Vec<(&ConfigRisk, Vec<&RiskMark>)> {
    let mut out: Vec<(&ConfigRisk, Vec<&RiskMark>)> = Vec::new();
    for mark in risks {
        let r = &mark.risk;
        // The same setting again (a restarted process): one callout, with the newest figures
        // (its non-heap memory, and so its fix, differ a little from run to run).
        let same = |seen: &ConfigRisk| {
            (seen.kind, &seen.language_runtime, &seen.ceiling_source)
                == (r.kind, &r.language_runtime, &r.ceiling_source)
                && (seen.ceiling_bytes, seen.limit_bytes) == (r.ceiling_bytes, r.limit_bytes)
        };
        match out.iter_mut().find(|(seen, _)| same(seen)) {
            Some((seen, marks)) => {
                *seen = r;
                marks.push(mark);
            }
            None => out.push((r, vec![mark])),
        }
    }
    out
}

/// Every runtime setting found wrong, as a callout: what is wrong and the fix, in the
/// figures the profiler gave.
pub(crate) fn risk_callouts(html: &mut Html, container: &Container) {
    for (risk, marks) in distinct(&container.risks) {
        let processes: Vec<String> = marks
            .iter()
            .map(|m| format!("{} (pid {}) at {}", m.risk.comm, m.risk.pid, clock(m.t)))
            .collect();
        let runtime = risk
            .language_runtime
            .as_deref()
            .map(|r| format!("{} · ", runtime_label(Some(r))))
            .unwrap_or_default();
        html.raw("<div class=\"risk\" role=\"alert\"><strong>Configuration risk:</strong> ")
            .text(&risk.message)
            .raw("<br><strong>Fix:</strong> ")
            .text(if risk.fix.is_empty() {
                "none given"
            } else {
                &risk.fix
            })
            .raw("<br><span class=\"meta\">")
            .text(format!("{runtime}{}", processes.join(", ")))
            .raw("</span></div>\n");
    }
}

/// The runtime processes seen and their heap ceilings, and what those let the container
/// reach; nothing when none was seen.
pub(crate) fn ceilings_section(html: &mut Html, container: &Container) {
    if container.ceilings.is_empty() {
        return;
    }
    html.raw("<h3>Runtimes and their heap ceilings</h3>\n<table class=\"ceilings\">\n")
        .header_row(&["Seen at", "Process", "Runtime", "Heap ceiling", "From"]);
    for mark in &container.ceilings {
        let c = &mark.ceiling;
        let ceiling = match (c.ceiling_bytes, c.gc_off) {
            (Some(bytes), _) if c.default => format!("{} (default)", mib(bytes)),
            (Some(bytes), _) => mib(bytes),
            (None, true) => "none: GOGC=off, nothing collects garbage".into(),
            (None, false) => "none set".into(),
        };
        html.row([
            clock(mark.t),
            format!("{} (pid {})", c.comm, c.pid),
            runtime_label(c.language_runtime.as_deref()),
            ceiling,
            c.source.clone(),
        ]);
    }
    html.raw("</table>\n");
    let last = container.points.iter().rev().find(|p| p.reach.is_some());
    match last {
        Some(p) => {
            let against = p.limit.map_or_else(String::new, |limit| {
                let word = if p.reach.is_some_and(|r| r < limit) {
                    "under"
                } else {
                    "at or above"
                };
                format!(", {word} its limit of {}", mib(limit))
            });
            html.element(
                "<p class=\"meta\">",
                format!(
                    "With these ceilings the container's unreclaimable memory can reach at most \
                     {} (at {}: what it held plus each heap's room under its ceiling){against}.",
                    opt_mib(p.reach),
                    clock(p.t)
                ),
                "</p>\n",
            );
        }
        None => {
            html.raw(
                "<p class=\"meta\">No sample carried a bound from these ceilings: a runtime \
                 process without a ceiling leaves the container's growth unbounded.</p>\n",
            );
        }
    }
}

/// Swap used and allowed, when the container may swap: a kill comes only when memory and
/// swap are both full.
pub(crate) fn swap_line(html: &mut Html, container: &Container) {
    let allowed: Vec<_> = container
        .points
        .iter()
        .filter(|p| p.swap_max.is_some())
        .collect();
    let Some(last) = allowed.last() else {
        return;
    };
    let peak = allowed.iter().filter_map(|p| p.swap).max();
    html.element(
        "<p class=\"meta swap\">",
        format!(
            "Swap: {} used of {} allowed at the last sample; at most {} used over the recording. \
             The kill comes when memory and swap are both full.",
            opt_mib(last.swap),
            opt_mib(last.swap_max),
            opt_mib(peak)
        ),
        "</p>\n",
    );
}

#[cfg(test)]
mod tests;
