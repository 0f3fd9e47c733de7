use crate::testing::{kill, line, page, sample, MIB};

const LIMIT: u64 = 256 * MIB;

fn jvm_ceiling(ts: f64, pid: u32) -> String {
    line(
        ts,
        &format!(
            r#""type":"heap_ceiling","pid":{pid},"comm":"java","language_runtime":"jvm","ceiling_bytes":1073741824,"source":"-Xmx1g on the command line","default":false,"gc_off":false"#
        ),
    )
}

fn jvm_risk(ts: f64, pid: u32) -> String {
    line(
        ts,
        &format!(
            r#""type":"config_risk","pid":{pid},"comm":"java","language_runtime":"jvm","kind":"ceiling_above_limit","ceiling_bytes":1073741824,"ceiling_source":"-Xmx1g on the command line","non_heap_bytes":62914560,"limit_bytes":268435456,"message":"JVM max heap 1.0 GiB + 60 MiB non-heap > limit 256 MiB: the kernel will OOM-kill it before the JVM throws OutOfMemoryError","fix":"use -XX:MaxRAMPercentage=68 or -Xmx ≤ 176m""#
        ),
    )
}

#[test]
fn a_heap_ceiling_above_the_limit_is_a_callout_and_the_first_advice() {
    // Two lives of a JVM with -Xmx1g in 256 MiB, each heap warming up to the kill.
    let mut lines = Vec::new();
    let mut t = 0.0;
    for (life, pid) in [(0, 7), (1, 90)] {
        lines.push(jvm_ceiling(t + 0.5, pid));
        lines.push(jvm_risk(t + 0.6, pid));
        for i in 0..50 {
            t += 5.0;
            lines.push(sample(t, (60 + i * 4) * MIB, LIMIT, life, ""));
        }
        lines.push(kill(t + 2.0, pid, LIMIT));
        t += 5.0;
    }
    let html = page(&lines);
    // One callout for the two pids that said the same, with the message and the fix.
    assert_eq!(
        html.matches("<div class=\"risk\" role=\"alert\">").count(),
        1
    );
    assert!(html.contains(
        "<strong>Configuration risk:</strong> JVM max heap 1.0 GiB + 60 MiB non-heap &gt; limit \
         256 MiB: the kernel will OOM-kill it before the JVM throws OutOfMemoryError<br>\
         <strong>Fix:</strong> use -XX:MaxRAMPercentage=68 or -Xmx ≤ 176m<br>"
    ));
    assert!(html.contains("JVM · java (pid 7) at 0:01, java (pid 90) at 4:16"));
    // Before anything else in the container's section.
    let section = html
        .find("<section class=\"container\">")
        .expect("a section");
    let callout = html.find("Configuration risk:").expect("a callout");
    let chart = html[section..].find("<img").map(|i| i + section);
    assert!(section < callout && Some(callout) < chart);
    // The processes and their ceilings.
    assert!(html.contains("Runtimes and their heap ceilings"));
    assert!(html.contains(
        "<td>java (pid 90)</td><td>JVM</td><td>1024 MiB</td><td>-Xmx1g on the command line</td>"
    ));
    // The recommendation: fix the setting first; kept, a limit that holds 1 GiB + 60 MiB + 20 %.
    assert!(html.contains(
        "<strong>First:</strong> Fix the runtime setting first: use -XX:MaxRAMPercentage=68 or \
         -Xmx ≤ 176m (JVM max heap"
    ));
    assert!(html.contains(
        "to keep the runtime setting as it is: memory request 273 MiB, memory limit 1301 MiB; \
         once it is fixed, watch again for figures that fit it"
    ));
    assert!(html.contains("1301 MiB (fix the runtime setting first)"));
    // The heap filling to its ceiling also grows to each kill: not called a leak first.
    assert!(!html.contains("This is a leak"));
}

#[test]
fn ceilings_say_where_they_came_from_and_which_are_defaults() {
    let lines = [
        line(
            0.1,
            r#""type":"heap_ceiling","pid":3,"comm":"node","language_runtime":"node","ceiling_bytes":2197815296,"source":"V8's default for 4 GiB of memory","default":true,"gc_off":false"#,
        ),
        line(
            0.2,
            r#""type":"heap_ceiling","pid":4,"comm":"<b>api</b>","language_runtime":"go","ceiling_bytes":null,"source":"no GOMEMLIMIT","default":false,"gc_off":false"#,
        ),
        line(
            0.3,
            r#""type":"heap_ceiling","pid":5,"comm":"batch","language_runtime":"go","ceiling_bytes":null,"source":"GOGC=off in the environment","default":false,"gc_off":true"#,
        ),
        line(
            0.4,
            r#""type":"config_risk","pid":4,"comm":"<b>api</b>","language_runtime":"go","kind":"no_ceiling","ceiling_bytes":null,"non_heap_bytes":null,"limit_bytes":268435456,"message":"Go without GOMEMLIMIT under a 256 MiB limit","fix":"set GOMEMLIMIT=230MiB (90 % of the limit)""#,
        ),
        sample(5.0, 100 * MIB, LIMIT, 0, r#","reach_bytes":null"#),
        sample(10.0, 100 * MIB, LIMIT, 0, r#","reach_bytes":188743680"#),
    ];
    let html = page(&lines);
    assert!(html.contains("<td>Node.js</td><td>2096 MiB (default)</td><td>V8&#39;s default"));
    assert!(html.contains("<td>&lt;b&gt;api&lt;/b&gt; (pid 4)</td><td>Go</td><td>none set</td>"));
    assert!(!html.contains("<b>api"), "names are escaped");
    assert!(html.contains("none: GOGC=off, nothing collects garbage"));
    assert!(html.contains("<strong>Fix:</strong> set GOMEMLIMIT=230MiB (90 % of the limit)"));
    assert!(html.contains(
        "the container&#39;s unreclaimable memory can reach at most 180 MiB (at 0:10: what it \
         held plus each heap&#39;s room under its ceiling), under its limit of 256 MiB."
    ));
    // A risk that is not a ceiling above the limit is no first advice.
    assert!(!html.contains("<strong>First:</strong>"));
}

#[test]
fn swap_is_shown_beside_memory_only_when_the_container_may_swap() {
    let swapping = [
        sample(
            5.0,
            100 * MIB,
            LIMIT,
            0,
            r#","swap_bytes":12582912,"swap_max_bytes":536870912"#,
        ),
        sample(
            10.0,
            100 * MIB,
            LIMIT,
            0,
            r#","swap_bytes":3145728,"swap_max_bytes":536870912"#,
        ),
    ];
    let html = page(&swapping);
    assert!(html.contains(
        "Swap: 3.0 MiB used of 512 MiB allowed at the last sample; at most 12.0 MiB used over \
         the recording."
    ));
    // No swap possible (null), or a profiler from before swap: nothing said.
    let none = [
        sample(
            5.0,
            100 * MIB,
            LIMIT,
            0,
            r#","swap_bytes":0,"swap_max_bytes":null"#,
        ),
        sample(10.0, 100 * MIB, LIMIT, 0, ""),
    ];
    let html = page(&none);
    assert!(!html.contains("Swap:"));
    assert!(!html.contains("Runtimes and their heap ceilings"));
    assert!(!html.contains("Configuration risk"));
}
