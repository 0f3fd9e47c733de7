use super::*;
use crate::testing::{kill, line, line_of, page, sample, MIB};

const LIMIT: u64 = 512 * MIB;

/// A process of a `processes` line: `(pid, comm, anonymous RSS MiB, growth MiB)`.
fn process(pid: u32, comm: &str, anon_mib: u64, growth_mib: i64) -> String {
    format!(
        r#"{{"pid":{pid},"comm":{},"rss_anon_bytes":{},"rss_file_bytes":4096,"rss_shmem_bytes":0,"growth_bytes":{},"growth_window_s":60.0}}"#,
        serde_json::Value::from(comm),
        anon_mib * MIB,
        growth_mib * (MIB as i64)
    )
}

/// The body of a `processes` line with `processes` and the rest's growth.
fn processes(list: &[String], others_growth: i64) -> String {
    format!(
        r#""type":"processes","trigger":"periodic","window_s":60.0,"rss_bytes":419430400,"processes":[{}],"others":{{"processes":3,"rss_bytes":10485760,"growth_bytes":{others_growth}}}"#,
        list.join(",")
    )
}

/// The pod's second container, `sidecar`.
const SIDECAR: (&str, Option<&str>, Option<&str>, Option<&str>) = (
    "/sys/fs/cgroup/kubepods/pod1/c2",
    Some("shop"),
    Some("web-0"),
    Some("sidecar"),
);

/// The app's java growing 180 MiB to a kill at 100 s, its shell flat; the sidecar's lines
/// with `sidecar_growth` MiB.
fn java_leak(sidecar_growth: Option<i64>) -> Vec<String> {
    let mut lines: Vec<String> = (1..=20)
        .map(|i| sample(i as f64 * 5.0, (200 + i * 9) * MIB, LIMIT, 0, ""))
        .collect();
    lines.push(line(
        50.0,
        &processes(&[process(4121, "java", 200, 90), process(9, "sh", 1, 0)], 0),
    ));
    lines.push(line(
        95.0,
        &processes(
            &[process(4121, "java", 380, 180), process(9, "sh", 1, 0)],
            -4096,
        ),
    ));
    if let Some(growth) = sidecar_growth {
        lines.push(line_of(
            SIDECAR,
            94.0,
            &processes(&[process(300, "envoy", 50, growth)], 0),
        ));
    }
    lines.push(kill(100.0, 4121, LIMIT));
    lines
}

#[test]
fn the_process_that_grew_before_a_kill_is_named_and_a_flat_pod_said_flat() {
    let html = page(&java_leak(Some(0)));
    assert!(
        html.contains(
            "<p class=\"process-growth\">pid 4121 (java) grew 180 MiB in the last 60 s; the rest \
             of the pod was flat. Measured at the last processes line, 5 s before the kill.</p>"
        ),
        "{html}"
    );
}

#[test]
fn a_pod_whose_rest_grew_too_says_how_much() {
    let html = page(&java_leak(Some(40)));
    assert!(
        html.contains(
            "pid 4121 (java) grew 180 MiB in the last 60 s; the rest of the pod grew 40.0 MiB."
        ),
        "{html}"
    );
    let html = page(&java_leak(Some(-30)));
    assert!(
        html.contains("; the rest of the pod shrank 30.0 MiB."),
        "{html}"
    );
    // Under 5 % of 180 MiB (9 MiB) is flat.
    let html = page(&java_leak(Some(8)));
    assert!(html.contains("; the rest of the pod was flat."), "{html}");
}

#[test]
fn without_other_containers_the_rest_is_the_containers() {
    let html = page(&java_leak(None));
    assert!(html.contains(
        "pid 4121 (java) grew 180 MiB in the last 60 s; the rest of the container was flat."
    ));
    // A container outside any pod, its shell growing 2 MiB of the 20 its server did.
    let solo = ("/sys/fs/cgroup/solo", None, None, None);
    let html = page(&[
        line_of(
            solo,
            10.0,
            &processes(&[process(5, "server", 30, 20), process(6, "sh", 3, 2)], 0),
        ),
        line_of(
            solo,
            12.0,
            r#""type":"oom_kill","pid":5,"comm":"server","constraint":"memcg""#,
        ),
    ]);
    assert!(
        html.contains(
            "pid 5 (server) grew 20.0 MiB in the last 60 s; the rest of the container grew 2.0 MiB."
        ),
        "{html}"
    );
}

#[test]
fn a_kill_long_after_the_last_processes_line_says_it_is_not_known() {
    let mut lines = java_leak(None);
    lines.push(kill(300.0, 4121, LIMIT));
    let html = page(&lines);
    assert!(html.contains(
        "No processes line was written in the 60 s before the kill: which process grew is not \
         known."
    ));
    // A recording without processes lines says nothing of them.
    let html = page(&[sample(5.0, MIB, LIMIT, 0, ""), kill(10.0, 7, LIMIT)]);
    assert!(!html.contains("process-growth"));
    assert!(!html.contains("Processes by growth"));
}

#[test]
fn the_container_section_has_its_latest_processes_by_growth() {
    let html = page(&java_leak(Some(0)));
    let start = html
        .find("<table class=\"processes\">")
        .expect("a processes table");
    let table = &html[start..start + html[start..].find("</table>").expect("its end")];
    assert_eq!(
        table.split("<tr>").skip(2).collect::<Vec<_>>(),
        [
            "<td>java (pid 4121)</td><td>380 MiB</td><td>0.0 MiB</td><td>0.0 MiB</td><td>+180 \
             MiB</td><td>60 s</td></tr>\n",
            "<td>sh (pid 9)</td><td>1.0 MiB</td><td>0.0 MiB</td><td>0.0 MiB</td><td>0.0 \
             MiB</td><td>60 s</td></tr>\n",
            "<td>3 other processes</td><td>10.0 MiB in all</td><td>—</td><td>—</td><td>0.0 \
             MiB</td><td>60 s</td></tr>\n",
        ]
    );
    assert!(html.contains("<h3>Processes by growth</h3>"));
    assert!(html.contains(
        "At 1:35 into the recording; all its processes hold 400 MiB of RSS; growth over the \
         last 60 s (less for younger processes)."
    ));
    assert!(!html.to_ascii_lowercase().contains("<script"));
}

#[test]
fn signed_sizes() {
    assert_eq!(signed_mib(180 * MIB as i64), "+180 MiB");
    assert_eq!(signed_mib(-(3 * MIB as i64)), "−3.0 MiB");
    assert_eq!(signed_mib(0), "0.0 MiB");
    assert_eq!(signed_mib(-4096), "0.0 MiB");
}
