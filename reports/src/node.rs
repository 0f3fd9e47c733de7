//! The node in the report: how low its available memory went against the kubelet's eviction
//! threshold, its memory pressure, and the processes its OOM killer would have chosen first;
//! and for a node OOM kill, the ranking just before it.
use crate::chart::clock;
use crate::html::Html;
use crate::page::{mib, seconds};
use crate::recording::NextVictim;
use crate::timeline::{NodeTimeline, Ranking, Timeline};

/// A `node` line stands for at most this long when the time below the threshold is summed
/// (a pause in the recording does not count).
const MAX_GAP_S: f64 = 5.0;

/// One next victim in a sentence: command, pid, score, `oom_score_adj`, QoS and container.
fn victim(v: &NextVictim) -> String {
    let id = &v.identity;
    let owner = match (&id.namespace, &id.pod, &id.container) {
        (Some(ns), Some(pod), Some(c)) => format!(", {ns}/{pod}/{c}"),
        (Some(ns), Some(pod), None) => format!(", {ns}/{pod}"),
        (_, _, Some(c)) => format!(", container {c}"),
        _ => v
            .victim_cgroup
            .as_ref()
            .map(|c| format!(", cgroup {c}"))
            .unwrap_or_default(),
    };
    let qos = id
        .qos
        .as_ref()
        .map(|q| format!(", QoS {q}"))
        .unwrap_or_default();
    format!(
        "{} (pid {}, oom_score {}, oom_score_adj {}, RSS {}{qos}{owner})",
        v.comm,
        v.pid,
        v.oom_score,
        v.oom_score_adj,
        mib(v.rss_bytes)
    )
}

/// The ranking as an ordered list.
fn ranking_list(html: &mut Html, ranking: &Ranking, mark: Option<u32>) {
    html.raw("<ol class=\"victims\">\n");
    for v in &ranking.victims {
        let chosen = if mark == Some(v.pid) {
            " ← the process the kernel killed"
        } else {
            ""
        };
        html.element("<li>", format!("{}{chosen}", victim(v)), "</li>\n");
    }
    html.raw("</ol>\n");
}

/// The evidence of a node OOM kill of `pid` at `t`: the next-victim ranking of the last `node`
/// line before it, and where the killed process stood in it.
pub(crate) fn ranking_row(html: &mut Html, node: &NodeTimeline, t: f64, pid: u32) {
    let Some(ranking) = node.ranking_at(t) else {
        html.row([
            "Next victims before".to_string(),
            "no node line before the kill (a recording from before node lines)".to_string(),
        ]);
        return;
    };
    let place = ranking.victims.iter().position(|v| v.pid == pid);
    let verdict = match place {
        Some(0) => "it was first in the ranking".to_string(),
        Some(i) => format!("it was number {} in the ranking", i + 1),
        None => format!(
            "it was not among the {} highest oom_score processes",
            ranking.victims.len()
        ),
    };
    let names: Vec<String> = ranking
        .victims
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{}. {}", i + 1, victim(v)))
        .collect();
    html.row([
        "Next victims before".to_string(),
        format!(
            "{verdict} {:.1} s before the kill: {}",
            (t - ranking.last_t).max(0.0),
            names.join("; ")
        ),
    ]);
}

/// The "Node" section; nothing when the recording has no `node` lines.
pub(crate) fn node_section(html: &mut Html, timeline: &Timeline) {
    let node = &timeline.node;
    let (Some(lowest), Some(last)) = (node.lowest(), node.points.last()) else {
        return;
    };
    html.raw("<h2 id=\"node\">Node</h2>\n<table>\n")
        .row(["Memory".to_string(), mib(last.total)])
        .row([
            "Lowest available".to_string(),
            format!("{} at {}", mib(lowest.available), clock(lowest.t)),
        ])
        .row([
            "Eviction threshold".to_string(),
            format!(
                "{} of memory.available (the kubelet's hard eviction)",
                mib(last.threshold)
            ),
        ])
        .row([
            "Time below the threshold".to_string(),
            seconds(node.time_below_threshold(MAX_GAP_S)),
        ]);
    let first_forecast = node.points.iter().find(|p| p.eta_eviction.is_some());
    html.row([
        "Eviction forecast".to_string(),
        first_forecast
            .and_then(|p| p.eta_eviction.map(|eta| (p.t, eta)))
            .map_or_else(
                || "never forecast".to_string(),
                |(t, eta)| format!("first at {}: the threshold in {eta:.0} s", clock(t)),
            ),
    ]);
    let psi = node
        .points
        .iter()
        .filter_map(|p| p.psi.map(|psi| (p.t, psi)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((t, psi)) = psi {
        html.row([
            "Highest memory pressure".to_string(),
            format!("some avg10 {psi:.1} % at {}", clock(t)),
        ]);
    }
    html.raw("</table>\n");
    if let Some(ranking) = node.rankings.iter().rev().find(|r| !r.victims.is_empty()) {
        html.element(
            "<p>",
            format!(
                "The processes the kernel would have killed first had the node run out of \
                 memory, as last ranked (at {}):",
                clock(ranking.last_t)
            ),
            "</p>\n",
        );
        ranking_list(html, ranking, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::Line;

    fn node_line(ts: f64, available_mib: u64, victims: &str) -> Line {
        let text = format!(
            r#"{{"ts":{ts},"cgroup":null,"type":"node","mem_total_bytes":1073741824,"mem_available_bytes":{},"eviction_threshold_bytes":104857600,"eta_eviction_seconds":null,"eta_oom_seconds":null,"psi_some_avg10":1.5,"next_victims":[{victims}]}}"#,
            available_mib << 20
        );
        Line::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    const HOG: &str = r#"{"pid":40,"comm":"<hog>","oom_score":1400,"oom_score_adj":1000,"rss_bytes":4194304,"victim_cgroup":"/sys/fs/cgroup/best","namespace":"ns","pod":"p","container":"c","container_id":null,"qos":"BestEffort"}"#;
    const LEAK: &str = r#"{"pid":41,"comm":"leak","oom_score":700,"oom_score_adj":0,"rss_bytes":734003200,"victim_cgroup":"/sys/fs/cgroup/leak","namespace":null,"pod":null,"container":null,"container_id":null,"qos":null}"#;

    #[test]
    fn the_node_section_and_the_ranking_before_a_node_kill() {
        let mut timeline = Timeline::new(Some(100.0));
        timeline.add(node_line(100.0, 900, LEAK));
        timeline.add(node_line(101.0, 80, &format!("{HOG},{LEAK}")));
        timeline.add(node_line(102.0, 50, &format!("{HOG},{LEAK}")));
        timeline.add(node_line(103.0, 300, LEAK));
        assert_eq!(
            timeline.node.rankings.len(),
            3,
            "a new ranking when it changes"
        );
        assert_eq!(timeline.node.time_below_threshold(MAX_GAP_S), 2.0);

        let mut html = Html::default();
        node_section(&mut html, &timeline);
        // The kill came at 2.5 s: the ranking of the lines at 1 s and 2 s stands.
        html.raw("<table>\n");
        ranking_row(&mut html, &timeline.node, 2.5, 40);
        ranking_row(&mut html, &timeline.node, 2.5, 41);
        ranking_row(&mut html, &timeline.node, 2.5, 99);
        let page = html.finish();
        assert!(
            page.contains("Lowest available</td><td>50.0 MiB at 0:02"),
            "{page}"
        );
        assert!(page.contains("2.0 s"), "{page}");
        assert!(
            page.contains("it was first in the ranking 0.5 s before the kill: 1. &lt;hog&gt; (pid 40, oom_score 1400, oom_score_adj 1000, RSS 4.0 MiB, QoS BestEffort, ns/p/c)"),
            "{page}"
        );
        assert!(page.contains("it was number 2 in the ranking"), "{page}");
        assert!(page.contains("it was not among the 2 highest"), "{page}");
        assert!(!page.contains("<hog>"), "names are escaped");
    }

    #[test]
    fn no_node_lines_no_section() {
        let timeline = Timeline::new(Some(100.0));
        let mut html = Html::default();
        node_section(&mut html, &timeline);
        assert_eq!(html.finish(), "");
    }
}
