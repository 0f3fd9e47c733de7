use base64::Engine as _;

use super::*;
use crate::recording::{ChargeStack, ChargeStacks};
use crate::testing::{kill, line, page, sample, MIB};

const LIMIT: u64 = 256 * MIB;

/// One stack of a `charge_stacks` line: `samples` of 512 KiB each.
fn stack(pid: u32, comm: &str, samples: u64, user: &[&str], kernel: &[&str]) -> String {
    let list = |frames: &[&str]| {
        serde_json::to_string(frames).unwrap_or_else(|e| panic!("{frames:?}: {e}"))
    };
    format!(
        r#"{{"pid":{pid},"comm":{},"samples":{samples},"bytes":{},"user":{},"kernel":{}}}"#,
        serde_json::Value::from(comm),
        samples * 512 * 1024,
        list(user),
        list(kernel)
    )
}

/// A `charge_stacks` line of the pod's container at `ts`, its round `window` seconds long.
fn charge_stacks(ts: f64, window: f64, stacks: &[String]) -> String {
    let samples: u64 = stacks
        .iter()
        .map(|s| {
            let v: serde_json::Value = serde_json::from_str(s).expect("a stack");
            v["samples"].as_u64().expect("samples")
        })
        .sum();
    line(
        ts,
        &format!(
            r#""type":"charge_stacks","window_s":{window},"interval_bytes":524288,"samples":{samples},"bytes":{},"stacks":[{}]"#,
            samples * 512 * 1024,
            stacks.join(",")
        ),
    )
}

const FAULT: &[&str] = &[
    "asm_exc_page_fault",
    "exc_page_fault",
    "do_user_addr_fault",
    "handle_mm_fault",
    "__mem_cgroup_charge",
];
const READ: &[&str] = &[
    "entry_SYSCALL_64_after_hwframe",
    "do_syscall_64",
    "__x64_sys_read",
    "filemap_read",
    "__mem_cgroup_charge",
];
const LEAK: &[&str] = &[
    "__libc_start_call_main",
    "main",
    "handle_request",
    "cache_put",
];
const LOG: &[&str] = &["__libc_start_call_main", "main", "write_log"];

/// A few samples, then rounds of stacks to a kill at 100 s.
fn leak_to_a_kill(stacks: Vec<String>) -> Vec<String> {
    let mut lines: Vec<String> = (1..=20)
        .map(|i| sample(i as f64 * 5.0, (100 + i * 7) * MIB, LIMIT, 0, ""))
        .collect();
    lines.extend(stacks);
    lines.push(kill(100.0, 4121, LIMIT));
    lines
}

/// The flame graphs of a page, decoded.
fn flame_graphs(html: &str) -> Vec<String> {
    const SRC: &str = "src=\"data:image/svg+xml;base64,";
    html.split(SRC)
        .skip(1)
        .map(|rest| {
            let data = rest.split('"').next().expect("a quoted URI");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .expect("base64");
            String::from_utf8(bytes).expect("UTF-8")
        })
        .collect()
}

/// Reads `svg` as XML to its end: every element closed, every name escaped.
fn well_formed(svg: &str) {
    let mut reader = quick_xml::Reader::from_str(svg);
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("not well-formed at {}: {e}", reader.buffer_position()),
        }
    }
}

/// The HTML of the first `top-stacks` table of a page.
fn top_table(html: &str) -> &str {
    let start = html
        .find("<table class=\"top-stacks\">")
        .expect("a top-stacks table");
    let end = html[start..].find("</table>").expect("its end");
    &html[start..start + end]
}

#[test]
fn the_flame_graph_is_an_image_of_an_svg_with_the_frames_and_no_script() {
    let html = page(&leak_to_a_kill(vec![
        charge_stacks(
            90.0,
            1.0,
            &[
                stack(4121, "leaky", 10, LEAK, FAULT),
                stack(4121, "leaky", 2, LOG, READ),
            ],
        ),
        charge_stacks(91.0, 1.0, &[stack(4121, "leaky", 4, LEAK, FAULT)]),
    ]));
    assert!(!html.to_ascii_lowercase().contains("<script"));
    assert!(html.contains("<h3>Bytes charged, by stack</h3>"), "{html}");
    assert!(html.contains(
        "<p class=\"meta\">Bytes charged, by stack: 8.0 MiB in 16 samples, from 2 charge_stacks \
         lines"
    ));
    assert!(html.contains(
        "<img class=\"flame\" alt=\"Flame graph of the bytes charged to shop/web-0/app, by \
         stack\" src=\"data:image/svg+xml;base64,"
    ));
    let graphs = flame_graphs(&html);
    assert_eq!(graphs.len(), 1);
    let svg = &graphs[0];
    well_formed(svg);
    assert!(svg.starts_with("<?xml"), "{svg}");
    assert!(svg.contains("<svg"));
    for frame in [
        "leaky",
        "__libc_start_call_main",
        "main",
        "handle_request",
        "cache_put",
        "write_log",
        // The kernel's entry: the fault, and the system call rather than its trampoline.
        "asm_exc_page_fault",
        "__x64_sys_read",
    ] {
        assert!(svg.contains(&format!(">{frame}<")), "no box for {frame}");
    }
    // The kernel below the entry is not drawn.
    assert!(!svg.contains("handle_mm_fault"));
    assert!(svg.contains("Bytes charged, by stack: 8.0 MiB in 16 samples"));
    // Weighted in bytes: 14 samples of 512 KiB under cache_put.
    assert!(svg.contains("cache_put (7,340,032 bytes, 87.50%)"), "{svg}");
    // Nothing that needs a script: no script, no handler, no search button.
    for scripted in ["<script", "onload", "init(evt)", ">Search<", "Reset Zoom"] {
        assert!(!svg.contains(scripted), "{scripted}");
    }
}

#[test]
fn without_stacks_there_is_no_graph_and_each_kill_says_how_to_get_them() {
    let html = page(&leak_to_a_kill(Vec::new()));
    assert!(!html.contains("Bytes charged, by stack"));
    assert!(!html.contains("image/svg+xml"));
    assert!(html.contains(
        "<h4>Top charging stacks in the minute before the kill</h4>\n<p class=\"no-stacks\">no \
         charge stacks were recorded in the minute before this kill: run watch with \
         --stacks</p>"
    ));
    assert!(!html.contains("top-stacks"));
}

#[test]
fn the_top_stacks_of_a_kill_are_those_of_its_minute_leak_first() {
    let html = page(&leak_to_a_kill(vec![
        // Long before the kill: much more, but not in its minute.
        charge_stacks(
            30.0,
            1.0,
            &[stack(4121, "leaky", 500, &["main", "warm_up"], FAULT)],
        ),
        charge_stacks(
            45.0,
            1.0,
            &[
                stack(4121, "leaky", 6, LEAK, FAULT),
                stack(4121, "leaky", 1, LOG, READ),
            ],
        ),
        charge_stacks(
            90.0,
            1.0,
            &[
                stack(4121, "leaky", 10, LEAK, FAULT),
                stack(4121, "leaky", 2, LOG, READ),
                stack(77, "<b>sidecar</b>", 1, &["[unknown] (libc.so.6)"], FAULT),
            ],
        ),
        // The round the kill fell in: written after it, its samples from before it.
        charge_stacks(
            100.5,
            1.0,
            &[stack(
                4121,
                "leaky",
                4,
                &["__libc_start_call_main", "main"],
                FAULT,
            )],
        ),
        // A round after the kill.
        charge_stacks(
            110.0,
            1.0,
            &[stack(4200, "leaky", 300, &["main", "after_restart"], FAULT)],
        ),
    ]));
    let table = top_table(&html);
    let rows: Vec<&str> = table.split("<tr>").skip(2).collect();
    assert_eq!(rows.len(), 4, "{table}");
    assert_eq!(
        rows[0],
        "<td>8.0 MiB</td><td>67 %</td><td>leaky (pid 4121)</td><td>cache_put ← handle_request \
         ← main ← __libc_start_call_main</td><td>page fault</td></tr>\n"
    );
    assert!(
        rows[1].contains("<td>main ← __libc_start_call_main</td>"),
        "{table}"
    );
    assert!(
        rows[2].contains("<td>write_log ← main ← __libc_start_call_main</td><td>read()</td>"),
        "{table}"
    );
    // Names from the node are text.
    assert!(
        rows[3].contains("&lt;b&gt;sidecar&lt;/b&gt; (pid 77)"),
        "{table}"
    );
    assert!(rows[3].contains("<td>4 %</td>"), "{table}");
    for outside in ["warm_up", "after_restart"] {
        assert!(!table.contains(outside), "{outside}");
    }
    assert!(html.contains("12.0 MiB charged in 24 samples in the 60 s before the kill"));
}

#[test]
fn a_kill_with_stacks_at_other_times_only_says_so() {
    let html = page(&leak_to_a_kill(vec![charge_stacks(
        10.0,
        1.0,
        &[stack(4121, "leaky", 3, LEAK, FAULT)],
    )]));
    assert!(html.contains(
        "no charge stacks were recorded in the minute before this kill: stacks were sampled at \
         other times"
    ));
    assert!(!html.contains("run watch with --stacks"));
}

#[test]
fn short_stacks_have_a_notice_and_deep_ones_do_not() {
    const NOTICE: &str = "These stacks are short because the kernel walks user stacks by frame \
                          pointers";
    // No frame pointers: the leaf, and sometimes one stale frame more.
    let short = page(&leak_to_a_kill(vec![charge_stacks(
        90.0,
        1.0,
        &[
            stack(4121, "leaky", 10, &["cache_put"], FAULT),
            stack(4121, "leaky", 6, &["[unknown]", "cache_put"], FAULT),
            stack(4121, "leaky", 5, LEAK, FAULT),
            // A kernel thread has no user frames to lose: not counted.
            stack(3, "kworker/0:1", 40, &[], FAULT),
        ],
    )]));
    assert!(short.contains(NOTICE), "{short}");
    assert!(short
        .contains("Half of the bytes sampled were charged by stacks of 2 user frames or fewer"));
    for fix in [
        "<code>-fno-omit-frame-pointer</code>",
        "<code>RUSTFLAGS=\"-C force-frame-pointers=yes\"</code>",
        "<code>-XX:+PreserveFramePointer</code>",
        "Go has them by default",
    ] {
        assert!(short.contains(fix), "{fix}");
    }
    let deep = page(&leak_to_a_kill(vec![charge_stacks(
        90.0,
        1.0,
        &[
            stack(4121, "leaky", 10, LEAK, FAULT),
            stack(4121, "leaky", 9, &["cache_put"], FAULT),
        ],
    )]));
    assert!(!deep.contains("stacks are short"), "{deep}");
    assert!(!deep.contains("jit-frames"));
}

#[test]
fn the_median_is_weighted_by_bytes() {
    let mark = |stacks: Vec<ChargeStack>| StacksMark {
        t: 1.0,
        stacks: ChargeStacks {
            stacks,
            ..ChargeStacks::default()
        },
    };
    let of = |frames: usize, bytes: u64| ChargeStack {
        user: vec!["f".into(); frames],
        bytes,
        ..ChargeStack::default()
    };
    // Many samples of short stacks, but most bytes in deep ones.
    let marks = [
        mark(vec![of(1, 1), of(1, 1), of(2, 1)]),
        mark(vec![of(4, 10)]),
    ];
    assert_eq!(advice::median_user_frames(&marks), Some(4));
    let marks = [mark(vec![of(2, 10), of(5, 9)])];
    assert_eq!(advice::median_user_frames(&marks), Some(2));
    assert_eq!(advice::median_user_frames(&[mark(vec![of(0, 10)])]), None);
    assert_eq!(advice::median_user_frames(&[]), None);
}

#[test]
fn jit_frames_have_a_note_on_perf_maps() {
    let html = page(&leak_to_a_kill(vec![charge_stacks(
        90.0,
        1.0,
        &[
            stack(
                4121,
                "java",
                3,
                &["start_thread", "JavaMain", "[jit]", "[jit]"],
                FAULT,
            ),
            stack(
                4121,
                "java",
                1,
                &["start_thread", "JavaMain", "JVM_Sleep"],
                FAULT,
            ),
        ],
    )]));
    assert!(html.contains(
        "<div class=\"note jit-frames\" role=\"note\">75 % of the bytes sampled were charged \
         under code a runtime compiled as it ran, shown as [jit]. JIT frames are named when the \
         runtime writes <code>/tmp/perf-PID.map</code>"
    ));
    for how in [
        "<code>-XX:+UnlockDiagnosticVMOptions -XX:+DumpPerfMapAtExit</code>",
        "perf-map agent",
        "<code>--perf-basic-prof</code>",
    ] {
        assert!(html.contains(how), "{how}");
    }
    // In the graph the JIT frames are one box, drawn in the JIT colour but named as recorded.
    let svg = &flame_graphs(&html)[0];
    assert!(svg.contains(">[jit]<") && !svg.contains("_[j]"), "{svg}");
}

#[test]
fn folded_lines_bound_the_stacks_and_keep_the_kernel_as_asked() {
    let mark = |stacks: Vec<ChargeStack>| StacksMark {
        t: 1.0,
        stacks: ChargeStacks {
            stacks,
            ..ChargeStacks::default()
        },
    };
    let one = ChargeStack {
        pid: 1,
        comm: "# app;x".into(),
        samples: 1,
        bytes: 4096,
        user: vec!["main".into(), "a;b\n".into()],
        kernel: READ.iter().map(|f| (*f).to_owned()).collect(),
    };
    let marks = [mark(vec![one.clone(), one.clone()])];
    // `;` and control characters cannot split a frame, nor `#` make the line a comment.
    assert_eq!(
        folded(&marks, KernelFrames::Entry),
        ["_# app:x;main;a:b;__x64_sys_read_[k] 8192"]
    );
    assert_eq!(
        folded(&marks, KernelFrames::Omit),
        ["_# app:x;main;a:b 8192"]
    );
    assert_eq!(
        folded(&marks, KernelFrames::All),
        [
            "_# app:x;main;a:b;entry_SYSCALL_64_after_hwframe_[k];do_syscall_64_[k];\
          __x64_sys_read_[k];filemap_read_[k];__mem_cgroup_charge_[k] 8192"
        ]
    );

    // More distinct stacks than drawn: the lightest are summed into one box.
    let many: Vec<ChargeStack> = (0..MAX_STACKS as u64 + 5)
        .map(|i| ChargeStack {
            pid: 1,
            comm: "app".into(),
            bytes: 1000 + i,
            user: vec![format!("f{i}")],
            ..ChargeStack::default()
        })
        .collect();
    let lines = folded(&[mark(many)], KernelFrames::Entry);
    assert_eq!(lines.len(), MAX_STACKS + 1);
    assert_eq!(
        lines[0],
        format!("app;f{} {}", MAX_STACKS + 4, 1000 + MAX_STACKS + 4)
    );
    assert_eq!(lines[MAX_STACKS], format!("{OTHER} {}", 1000 * 5 + 10));
    let svg = flame_svg(&lines, "many").expect("an SVG");
    well_formed(&svg);
    assert!(
        svg.contains(">[other]<") || svg.contains("[other] ("),
        "{svg}"
    );
}

#[test]
fn lost_stack_samples_are_a_note_not_lost_kills() {
    let lost = |source: &str| {
        format!(
            r#"{{"ts":1050.0,"cgroup":null,"type":"lost_events","count":7,"source":"{source}"}}"#
        )
    };
    let mut lines = leak_to_a_kill(vec![charge_stacks(
        90.0,
        1.0,
        &[stack(4121, "leaky", 3, LEAK, FAULT)],
    )]);
    lines.push(lost("charge_stacks"));
    let html = page(&lines);
    assert!(html.contains(
        "The watch lost 7 charge-stack samples (its ring buffer was full): the flame graphs and \
         the top charging stacks below undercount."
    ));
    assert!(!html.contains("kernel records"), "{html}");
    lines.push(lost("ring_buffer"));
    let html = page(&lines);
    assert!(html.contains("The watch lost 7 kernel records"));
    assert!(html.contains("The watch lost 7 charge-stack samples"));
}
