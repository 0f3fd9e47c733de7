//! Tests of the Node.js ceiling. Unless said otherwise, each expected figure is the
//! `v8.getHeapStatistics().heap_size_limit` that Node.js v20.20.2 printed, measured in cgroup-v1
//! memcgs of the given `memory.limit_in_bytes` (or in none, on a node of 25276059648 bytes),
//! with the options and variables given.
use super::*;

/// The node the measurements without a limit ran on.
const NODE: u64 = 25_276_059_648;

fn args(line: &str) -> Vec<String> {
    line.split(' ').map(str::to_owned).collect()
}

fn env(entries: &[&str]) -> Env {
    Env::from_entries(entries.iter().copied())
}

/// The ceiling of `node ARGS` in a memcg of `limit` (`None`: no limit).
fn measured(limit: Option<u64>, line: &str, vars: &[&str]) -> HeapCeiling {
    let (memory, limited) = limit.map_or((NODE, false), |l| (l, true));
    ceiling(&args(&format!("node {line}")), &env(vars), memory, limited)
}

fn limit(limit: Option<u64>, line: &str, vars: &[&str]) -> Option<u64> {
    measured(limit, line, vars).bytes
}

#[test]
fn default_heap_by_container_limit() {
    // Old generation: half the memory, 256 MiB to 2 GiB (4 GiB from 15.5 GiB), rounded up to
    // 256 KiB; young: three semi-spaces of 1/128 of it (1/256 to 256 MiB) rounded up to a
    // power of two, at least 1 MiB, at most 16 MiB.
    let table: &[(u64, u64)] = &[
        (64 * MIB, 271_581_184),
        (128 * MIB, 271_581_184),
        (256 * MIB, 271_581_184),
        (500 * MIB, 271_581_184),
        (511 * MIB, 271_581_184),
        (512 * MIB, 271_581_184),
        (513 * MIB, 281_542_656),
        (520 * MIB, 285_212_672),
        (600 * MIB, 327_155_712),
        (700 * MIB, 379_584_512),
        (768 * MIB, 415_236_096),
        (1000 * MIB, 536_870_912),
        (1023 * MIB, 548_929_536),
        (GIB, 549_453_824),
        (1025 * MIB, 562_561_024),
        (1536 * MIB, 830_472_192),
        (2047 * MIB, 1_098_383_360),
        (2 * GIB, 1_098_907_648),
        (2049 * MIB, 1_124_597_760),
        (3000 * MIB, 1_623_195_648),
        (3 * GIB, 1_660_944_384),
        (4095 * MIB, 2_197_291_008),
        (4 * GIB, 2_197_815_296),
        (4097 * MIB, 2_197_815_296),
        (6 * GIB, 2_197_815_296),
        (8 * GIB, 2_197_815_296),
        (15 * GIB, 2_197_815_296),
        (15871 * MIB, 2_197_815_296),
        (15872 * MIB, 4_345_298_944),
        (16383 * MIB, 4_345_298_944),
        (16 * GIB, 4_345_298_944),
        (16385 * MIB, 4_345_298_944),
        (17 * GIB, 4_345_298_944),
        (32 * GIB, 4_345_298_944),
    ];
    for &(memory, expected) in table {
        let found = measured(Some(memory), "app.js", &[]);
        assert_eq!(found.bytes, Some(expected), "limit {}", human(memory));
        assert!(found.default, "{found:?}");
    }
    assert_eq!(limit(None, "app.js", &[]), Some(4_345_298_944));
}

#[test]
fn default_sources_say_which_rule_applied() {
    let source = |memory| measured(Some(memory), "app.js", &[]).source;
    assert_eq!(
        source(256 * MIB),
        "default: V8's 256 MiB minimum for the 256 MiB limit + 3 MiB young generation"
    );
    assert_eq!(
        source(GIB),
        "default: half the 1.0 GiB limit + 12 MiB young generation"
    );
    assert_eq!(
        measured(None, "app.js", &[]).source,
        "default: V8's 4.0 GiB maximum for the node's 23.5 GiB + 48 MiB young generation"
    );
}

#[test]
fn heap_flags_in_several_limits() {
    // The young generation still follows the memory when only the old one is set.
    let table: &[(u64, &str, u64)] = &[
        (128 * MIB, "--max-old-space-size=96", 103_809_024),
        (128 * MIB, "--max-old-space-size=1500", 1_576_009_728),
        (128 * MIB, "--max-semi-space-size=3", 281_018_368),
        (128 * MIB, "--max-heap-size=300", 314_572_800),
        (700 * MIB, "--max-old-space-size=96", 113_246_208),
        (700 * MIB, "--max-old-space-size=1500", 1_585_446_912),
        (700 * MIB, "--max-semi-space-size=3", 379_584_512),
        (700 * MIB, "--max-heap-size=300", 314_572_800),
        (1000 * MIB, "--max-old-space-size=96", 113_246_208),
        (1000 * MIB, "--max-semi-space-size=3", 536_870_912),
        (GIB, "--max-old-space-size=96", 113_246_208),
        (GIB, "--max-old-space-size=1500", 1_585_446_912),
        (3000 * MIB, "--max-old-space-size=96", 150_994_944),
        (3000 * MIB, "--max-old-space-size=1500", 1_623_195_648),
        (3000 * MIB, "--max-semi-space-size=3", 1_585_446_912),
        (6 * GIB, "--max-old-space-size=1500", 1_623_195_648),
        (6 * GIB, "--max-semi-space-size=3", 2_160_066_560),
        (6 * GIB, "--max-heap-size=300", 314_572_800),
    ];
    for &(memory, line, expected) in table {
        let found = limit(Some(memory), &format!("{line} app.js"), &[]);
        assert_eq!(found, Some(expected), "{line} in {}", human(memory));
    }
}

#[test]
fn heap_flags_on_the_node() {
    let mib = |line: &str| limit(None, &format!("{line} hs.js"), &[]).map(|b| b / MIB);
    assert_eq!(mib("--max-old-space-size=96"), Some(144));
    assert_eq!(mib("--max-old-space-size=200"), Some(248));
    assert_eq!(mib("--max-semi-space-size=5"), Some(4120));
    assert_eq!(mib("--max-semi-space-size=32"), Some(4192));
    assert_eq!(mib("--max-semi-space-size=64"), Some(4288));
    assert_eq!(mib("--max-heap-size=200"), Some(200));
    assert_eq!(mib("--max-heap-size=1000"), Some(1000));
    assert_eq!(
        mib("--max-heap-size=1000 --max-old-space-size=500"),
        Some(1268)
    );
    assert_eq!(
        mib("--max-heap-size=1000 --max-semi-space-size=8"),
        Some(1000)
    );
    assert_eq!(
        mib("--max-heap-size=100 --max-old-space-size=500"),
        Some(503)
    );
    let found = measured(None, "--max-old-space-size=96 hs.js", &[]);
    assert_eq!(
        found.source,
        "--max-old-space-size=96 on the command line + 48 MiB young generation"
    );
    assert!(!found.default);
}

#[test]
fn spellings_v8_accepts() {
    let mib = |line: &str| limit(None, &format!("{line} hs.js"), &[]).map(|b| b / MIB);
    assert_eq!(mib("--max_old_space_size=96"), Some(144));
    assert_eq!(mib("-max-old-space-size=96"), Some(144));
    assert_eq!(mib("--max-old-space-size=096"), Some(144));
    assert_eq!(mib("--max-old-space-size=+96"), Some(144));
    // 0 is V8's "not set": the default again.
    assert_eq!(mib("--max-old-space-size=0"), Some(4144));
    assert_eq!(
        mib("--max-old-space-size=96 --max-old-space-size=0"),
        Some(4144)
    );
    assert_eq!(mib("--max-semi-space-size=0"), Some(4144));
    assert!(measured(None, "--max-heap-size=0 hs.js", &[]).default);
}

#[test]
fn node_options_and_the_command_line_in_their_precedence() {
    let mib = |line: &str, vars: &[&str]| limit(None, line, vars).map(|b| b / MIB);
    let old200 = ["NODE_OPTIONS=--max-old-space-size=200"];
    assert_eq!(mib("--max-old-space-size=96 hs.js", &old200), Some(144));
    assert_eq!(mib("hs.js", &old200), Some(248));
    let twice = ["NODE_OPTIONS=--max-old-space-size=200 --max-old-space-size=300"];
    assert_eq!(mib("hs.js", &twice), Some(348));
    assert_eq!(
        mib("hs.js", &["NODE_OPTIONS=--max_old_space_size=96"]),
        Some(144)
    );
    assert_eq!(
        mib("hs.js", &["NODE_OPTIONS=--max-semi-space-size=32"]),
        Some(4192)
    );
    // Node refuses to start with these in NODE_OPTIONS; here they are ignored.
    assert_eq!(
        mib("hs.js", &["NODE_OPTIONS=-max-old-space-size=96"]),
        Some(4144)
    );
    assert_eq!(
        mib("hs.js", &["NODE_OPTIONS=--max-heap-size=200"]),
        Some(4144)
    );
    let found = measured(None, "hs.js", &old200);
    assert_eq!(
        found.source,
        "--max-old-space-size=200 in NODE_OPTIONS + 48 MiB young generation"
    );
    // Not measured: quotes and escapes as Node's ParseNodeOptionsEnvVar reads them.
    let quoted = [r#"NODE_OPTIONS=--title "a b\" c" --max-old-space-size=100"#];
    assert_eq!(mib("hs.js", &quoted), Some(148));
    assert_eq!(
        split_node_options(r#"-r "./my \"x\" mod"  --inspect"#),
        ["-r", "./my \"x\" mod", "--inspect"]
    );
}

#[test]
fn only_options_before_the_script_count() {
    let mib = |line: &str| limit(None, line, &[]).map(|b| b / MIB);
    assert_eq!(mib("hs.js --max-old-space-size=96"), Some(4144));
    assert_eq!(mib("-r ./app.js --max-old-space-size=96 hs.js"), Some(144));
    assert_eq!(mib("-e code --max-old-space-size=96"), Some(144));
    let dashes = "--max-old-space-size=96 -- hs.js --max-old-space-size=200";
    assert_eq!(mib(dashes), Some(144));
    assert_eq!(
        mib("--stack-size=2000 --max-old-space-size=96 hs.js"),
        Some(144)
    );
    for option in [
        "--title x",
        "-C dev",
        "--conditions dev",
        "--import ./m.mjs",
        "--env-file .env",
        "--report-dir /tmp",
        "--unhandled-rejections strict",
        "--inspect-port 9999",
        "--dns-result-order ipv4first",
        "--loader ./m.mjs",
        "--redirect-warnings /tmp/w",
        "--icu-data-dir /tmp",
        "--disable-proto delete",
        "--heapsnapshot-signal SIGUSR2",
        "--input-type module",
        "--secure-heap 0",
        "--diagnostic-dir /tmp",
        "--test-reporter spec",
    ] {
        let line = format!("{option} --max-old-space-size=96 hs.js");
        assert_eq!(mib(&line), Some(144), "{option}");
    }
}

#[test]
fn a_recorded_command_line() {
    // /proc/PID/cmdline of `node --max-old-space-size=96 app.js --port 8080`.
    let cmdline = "node\0--max-old-space-size=96\0app.js\0--port\08080\0";
    let argv: Vec<String> = cmdline.split_terminator('\0').map(str::to_owned).collect();
    assert!(is_node("node", &argv));
    let found = ceiling(&argv, &Env::default(), GIB, true);
    // 96 MiB old + 3 × 4 MiB young (the young generation of a 1 GiB limit).
    assert_eq!(found.bytes, Some(108 * MIB));
    assert_eq!(found.runtime, Runtime::Node);
    assert!(!found.default && !found.gc_off);
}

#[test]
fn malformed_values_are_ignored_and_the_previous_setting_stays() {
    // Each makes Node 20 refuse to start; here the earlier 96 stays.
    for bad in [
        "--max-old-space-size=96MB",
        "--max-old-space-size=0x60",
        "--max-old-space-size=-5",
        "--max-old-space-size=96.5",
        "--max-old-space-size=",
        "--max-old-space-size",
        "--max-old-space-size=99999999999999999999",
        "--max-old-space-size=9€",
    ] {
        let line = format!("--max-old-space-size=96 {bad} hs.js");
        assert_eq!(limit(None, &line, &[]), Some(144 * MIB), "{bad}");
    }
    // The value apart is not V8's syntax: Node stops ("illegal value"); "96" would be the
    // script.
    assert_eq!(
        limit(None, "--max-old-space-size 96 hs.js", &[]),
        Some(4144 * MIB)
    );
    // Past 64 bits in bytes: V8 cannot have it either; no panic, no figure from it.
    let huge = "--max-old-space-size=17592186044416 hs.js";
    assert_eq!(limit(None, huge, &[]), Some(4144 * MIB));
    let semi = "--max-semi-space-size=17592186044415 hs.js";
    assert_eq!(limit(None, semi, &[]), None);
    for line in ["", "-", "--", "-r", "--=", "---"] {
        assert_eq!(limit(Some(GIB), line, &[]), Some(549_453_824), "{line:?}");
    }
    assert!(ceiling(&[], &env(&["NODE_OPTIONS=\"\\"]), 0, false)
        .bytes
        .is_some());
}

#[test]
fn is_node_looks_at_the_executable_and_argv0() {
    assert!(is_node("node", &args("node app.js")));
    assert!(is_node("nodejs", &[]));
    assert!(is_node("", &args("/usr/local/bin/node server.js")));
    assert!(!is_node("java", &args("java Main")));
    assert!(!is_node("sh", &args("/bin/sh -c node")));
    assert!(!is_node("bash", &[]));
}

#[test]
fn no_option_makes_it_panic() {
    let options = [
        "--max-old-space-size=",
        "--max_semi_space_size=",
        "--max-heap-size=",
        "-max-heap-size=",
        "--max-heap-size=1000 --max-old-space-size=",
        "--max-heap-size=1 --max-semi-space-size=",
        "-r ",
        "--",
        "",
    ];
    let values = [
        "",
        "0",
        "1",
        "+",
        "€",
        "18446744073709551615",
        "17592186044415",
        "17592186044416",
        "8796093022208",
        "\"",
        "\\",
    ];
    for option in options {
        for value in values {
            let text = format!("{option}{value}");
            let node_options = format!("NODE_OPTIONS={text}");
            for memory in [0, 1, u64::MAX] {
                ceiling(
                    &args(&format!("node {text} app.js")),
                    &env(&[&node_options]),
                    memory,
                    true,
                );
            }
        }
    }
}
