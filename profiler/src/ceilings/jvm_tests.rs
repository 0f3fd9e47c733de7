//! Tests of the JVM ceiling. Unless said otherwise, each expected figure is the `MaxHeapSize`
//! that `java -XX:+PrintFlagsFinal -version` printed, measured with OpenJDK 17.0.15 in
//! cgroup-v1 memcgs of the given `memory.limit_in_bytes` (or in none, on a node of
//! 25276059648 bytes, two CPUs), with the options and variables given.
use super::*;

/// The ceiling with the node's memory unknown.
fn ceiling(args: &[String], env: &Env, memory: u64, limited: bool) -> HeapCeiling {
    super::ceiling(args, env, memory, limited, None)
}

/// The node the measurements without a limit ran on.
const NODE: u64 = 25_276_059_648;

fn args(line: &str) -> Vec<String> {
    line.split(' ').map(str::to_owned).collect()
}

fn env(entries: &[&str]) -> Env {
    Env::from_entries(entries.iter().copied())
}

/// The ceiling of `java ARGS -version` in a memcg of `limit` (`None`: no limit).
fn measured(limit: Option<u64>, line: &str, vars: &[&str]) -> HeapCeiling {
    let (memory, limited) = limit.map_or((NODE, false), |l| (l, true));
    super::ceiling(
        &args(&format!("java {line} -version")),
        &env(vars),
        memory,
        limited,
        Some(NODE),
    )
}

fn heap(limit: Option<u64>, line: &str, vars: &[&str]) -> Option<u64> {
    measured(limit, line, vars).bytes
}

#[test]
fn default_heap_by_container_limit() {
    // Serial below 1792 MiB, G1 from there (two CPUs): the floor of 124.8 MiB shows from
    // 249.6 MiB to 499.2 MiB; 50 % below, 25 % above.
    let table: &[(u64, u64)] = &[
        (32 * MIB, 16_777_216),
        (64 * MIB, 33_554_432),
        (128 * MIB, 67_108_864),
        (200 * MIB, 104_857_600),
        (240 * MIB, 125_829_120),
        (249 * MIB, 132_120_576),
        (250 * MIB, 132_120_576),
        (256 * MIB, 132_120_576),
        (300 * MIB, 132_120_576),
        (499 * MIB, 132_120_576),
        (500 * MIB, 132_120_576),
        (501 * MIB, 132_120_576),
        (512 * MIB, 134_217_728),
        (GIB, 268_435_456),
        (1791 * MIB, 469_762_048),
        (1792 * MIB, 469_762_048),
        (2 * GIB, 536_870_912),
        (2050 * MIB, 538_968_064),
        (4 * GIB, 1_073_741_824),
        (8 * GIB, 2_147_483_648),
        (16 * GIB, 4_294_967_296),
    ];
    for &(limit, expected) in table {
        let found = measured(Some(limit), "", &[]);
        assert_eq!(found.bytes, Some(expected), "limit {}", human(limit));
        assert!(found.default, "{found:?}");
    }
    // No limit: 25 % of the node, rounded up to G1's 4 MiB regions.
    assert_eq!(heap(None, "", &[]), Some(6_320_816_128));
}

#[test]
fn default_sources_say_which_rule_applied() {
    let source = |limit| measured(Some(limit), "", &[]).source;
    assert_eq!(
        source(128 * MIB),
        "default: 50 % of the 128 MiB limit (MinRAMPercentage, for small memory)"
    );
    assert_eq!(
        source(256 * MIB),
        "default: HotSpot's 124.8 MiB minimum, more than 25 % of the 256 MiB limit"
    );
    assert_eq!(source(4 * GIB), "default: 25 % of the 4.0 GiB limit");
    assert_eq!(
        measured(None, "", &[]).source,
        "default: 25 % of the node's 23.5 GiB"
    );
}

#[test]
fn ram_percentages_and_fractions() {
    let table: &[(u64, &str, u64)] = &[
        (256 * MIB, "-XX:MaxRAMPercentage=75", 201_326_592),
        (256 * MIB, "-XX:MaxRAMPercentage=75.5", 203_423_744),
        (GIB, "-XX:MaxRAMPercentage=75", 805_306_368),
        (GIB, "-XX:MaxRAMPercentage=33.3", 358_612_992),
        (GIB, "-XX:MaxRAMPercentage=100", 1_073_741_824),
        (GIB, "-XX:MaxRAMPercentage=0", 132_120_576),
        // Small memory: MinRAMPercentage, whatever MaxRAMPercentage says.
        (128 * MIB, "-XX:MaxRAMPercentage=75", 67_108_864),
        (128 * MIB, "-XX:MinRAMPercentage=75", 100_663_296),
        (256 * MIB, "-XX:MinRAMPercentage=25", 67_108_864),
        (GIB, "-XX:MaxRAMFraction=2", 536_870_912),
        (GIB, "-XX:MaxRAMFraction=3", 358_612_992),
        // The deprecated fraction counts only without the percentage.
        (
            GIB,
            "-XX:MaxRAMFraction=2 -XX:MaxRAMPercentage=10",
            132_120_576,
        ),
    ];
    for &(limit, line, expected) in table {
        assert_eq!(
            heap(Some(limit), line, &[]),
            Some(expected),
            "{line} in {}",
            human(limit)
        );
    }
    let node = |line| heap(None, line, &[]);
    assert_eq!(node("-XX:MaxRAMPercentage=75.0"), Some(18_958_254_080));
    assert_eq!(node("-XX:MaxRAMPercentage=5.5e1"), Some(13_908_312_064));
    assert_eq!(node("-XX:MaxRAMPercentage=07"), Some(1_769_996_288));
    assert_eq!(node("-XX:MaxRAMPercentage=50"), Some(12_641_632_256));
    assert_eq!(node("-XX:MaxRAMFraction=0x2"), Some(12_641_632_256));
    assert_eq!(node("-XX:MaxRAMFraction=2k"), Some(132_120_576));
    // 40 % is 9.4 GiB: G1 takes 8 MiB regions, Serial keeps to 2 MiB.
    assert_eq!(node("-XX:MaxRAMPercentage=40"), Some(10_116_661_248));
    assert_eq!(
        node("-XX:MaxRAMPercentage=40 -XX:+UseSerialGC"),
        Some(10_112_466_944)
    );
}

#[test]
fn max_ram_replaces_the_memory_seen() {
    assert_eq!(
        heap(Some(256 * MIB), "-XX:MaxRAM=1g", &[]),
        Some(268_435_456)
    );
    assert_eq!(
        heap(Some(256 * MIB), "-XX:MaxRAM=100m", &[]),
        Some(52_428_800)
    );
    assert_eq!(heap(None, "-XX:MaxRAM=1g", &[]), Some(268_435_456));
    assert_eq!(heap(None, "-XX:MaxRAM=2g", &[]), Some(536_870_912));
    assert_eq!(heap(None, "-XX:MaxRAM=0x80000000", &[]), Some(536_870_912));
    // Past compressed oops: a RAM flag gives them up, unless they are asked for.
    assert_eq!(heap(None, "-XX:MaxRAM=200g", &[]), Some(53_687_091_200));
    let oops = measured(None, "-XX:MaxRAM=200g -XX:+UseCompressedOops", &[]);
    assert_eq!(oops.bytes, Some(32_178_700_288));
    assert_eq!(
        oops.source,
        "25 % of MaxRAM 200.0 GiB (-XX:MaxRAM=200g on the command line; capped at 30.0 GiB \
         for compressed oops)"
    );
    let serial = "-XX:MaxRAM=200g -XX:MaxRAMPercentage=25 -XX:+UseSerialGC";
    assert_eq!(heap(None, serial, &[]), Some(53_687_091_200));
}

#[test]
fn a_node_past_128_gib_counts_as_128_gib_and_caps_for_compressed_oops() {
    // Not measured (no such node here): derived from set_heap_size. 25 % of 128 GiB is 32 GiB,
    // past what compressed oops address, so the heap stops at 30 GiB − 32 MiB, the figure
    // measured above with -XX:+UseCompressedOops.
    let big = ceiling(&args("java Main"), &Env::default(), 512 * GIB, false);
    assert_eq!(big.bytes, Some(32_178_700_288));
    assert_eq!(
        big.source,
        "default: 25 % of 128 GiB (HotSpot's MaxRAM, less than the node's 512.0 GiB; capped \
         at 30.0 GiB for compressed oops)"
    );
    assert_eq!(
        ceiling(
            &args("java -XX:MaxRAMPercentage=25 Main"),
            &Env::default(),
            200 * GIB,
            false
        )
        .bytes,
        Some(53_687_091_200),
        "a RAM flag counts all memory and gives up compressed oops"
    );
}

#[test]
fn explicit_max_heap_wins_and_is_aligned() {
    let limit = Some(256 * MIB);
    assert_eq!(
        heap(limit, "-Xmx100m -XX:MaxRAMPercentage=75", &[]),
        Some(104_857_600)
    );
    assert_eq!(heap(limit, "-Xmx100000000", &[]), Some(100_663_296));
    assert_eq!(heap(limit, "-Xmx2m", &[]), Some(2_097_152));
    assert_eq!(heap(limit, "-Xmx3m", &[]), Some(4_194_304));
    assert_eq!(heap(Some(GIB), "-Xmx0x10000000", &[]), Some(268_435_456));
    assert_eq!(heap(Some(GIB), "-Xmx1T", &[]), Some(1_099_511_627_776));
    assert_eq!(heap(None, "-Xmx5000m", &[]), Some(5_242_880_000));
    assert_eq!(heap(None, "-Xmx5001m", &[]), Some(5_247_074_304));
    assert_eq!(
        heap(None, "-Xmx5001m -XX:+UseSerialGC", &[]),
        Some(5_244_977_152)
    );
    assert_eq!(heap(None, "-Xmx513m", &[]), Some(538_968_064));
    assert_eq!(
        heap(None, "-Xmx513m -XX:G1HeapRegionSize=4m", &[]),
        Some(541_065_216)
    );
    assert_eq!(
        heap(None, "-Xmx513m -XX:G1HeapRegionSize=3m", &[]),
        Some(541_065_216)
    );
    let gc = |line| heap(Some(GIB), line, &[]);
    assert_eq!(gc("-XX:+UseZGC -Xmx501m"), Some(526_385_152));
    assert_eq!(gc("-XX:+UseParallelGC -Xmx501m"), Some(526_385_152));
    assert_eq!(gc("-XX:+UseShenandoahGC -Xmx501m"), Some(525_336_576));
    let epsilon = "-XX:+UnlockExperimentalVMOptions -XX:+UseEpsilonGC -Xmx501m";
    assert_eq!(gc(epsilon), Some(525_336_576));
    assert_eq!(heap(limit, "-XX:+UseG1GC", &[]), Some(132_120_576));
    let found = measured(limit, "-Xmx1g", &[]);
    assert_eq!(found.source, "-Xmx1g on the command line");
    assert!(!found.default);
}

#[test]
fn the_last_setting_wins() {
    let limit = Some(256 * MIB);
    assert_eq!(
        heap(limit, "-Xmx100m -XX:MaxHeapSize=300m", &[]),
        Some(314_572_800)
    );
    assert_eq!(
        heap(limit, "-XX:MaxHeapSize=300m -Xmx100m", &[]),
        Some(104_857_600)
    );
    let flip = "-XX:-UseContainerSupport -XX:+UseContainerSupport";
    assert_eq!(heap(limit, flip, &[]), Some(132_120_576));
    // Not measured: the same rule for percentages.
    let twice = "-XX:MaxRAMPercentage=50 -XX:MaxRAMPercentage=75";
    assert_eq!(heap(Some(GIB), twice, &[]), Some(805_306_368));
}

#[test]
fn an_initial_heap_above_the_ergonomic_max_raises_it() {
    let limit = Some(256 * MIB);
    let found = measured(limit, "-Xms512m", &[]);
    assert_eq!(found.bytes, Some(536_870_912));
    assert_eq!(
        found.source,
        "-Xms512m on the command line (an initial heap above the 124.8 MiB max heap raises it)"
    );
    assert_eq!(heap(limit, "-XX:MinHeapSize=400m", &[]), Some(419_430_400));
    let low = "-Xms200m -XX:MaxRAMPercentage=10";
    assert_eq!(heap(limit, low, &[]), Some(209_715_200));
}

#[test]
fn variables_in_their_precedence() {
    let limit = Some(256 * MIB);
    let tool = measured(limit, "", &["JAVA_TOOL_OPTIONS=-XX:MaxRAMPercentage=75"]);
    assert_eq!(tool.bytes, Some(201_326_592));
    assert_eq!(
        tool.source,
        "75 % of the 256 MiB limit (-XX:MaxRAMPercentage=75 in JAVA_TOOL_OPTIONS)"
    );
    assert!(!tool.default);
    let cases: &[(&str, &[&str], u64)] = &[
        ("-Xmx200m", &["_JAVA_OPTIONS=-Xmx300m"], 314_572_800),
        ("-Xmx200m", &["JAVA_TOOL_OPTIONS=-Xmx300m"], 209_715_200),
        ("-Xmx200m", &["JDK_JAVA_OPTIONS=-Xmx300m"], 209_715_200),
        (
            "",
            &["JDK_JAVA_OPTIONS=-Xmx300m", "JAVA_TOOL_OPTIONS=-Xmx100m"],
            314_572_800,
        ),
    ];
    for &(line, vars, expected) in cases {
        assert_eq!(
            heap(limit, line, vars),
            Some(expected),
            "{line} with {vars:?}"
        );
    }
    let java_options = measured(limit, "-Xmx200m", &["_JAVA_OPTIONS=-Xmx300m"]);
    assert_eq!(java_options.source, "-Xmx300m in _JAVA_OPTIONS");
    // Not measured: quotes group words, blanks of any kind part them.
    let quoted = ["JAVA_TOOL_OPTIONS=-Dname='a b'\t-Xmx64m \"-Dx=\"y -Xmx96m"];
    let found = measured(limit, "", &quoted);
    assert_eq!(found.bytes, Some(96 * MIB));
    assert_eq!(found.source, "-Xmx96m in JAVA_TOOL_OPTIONS");
}

#[test]
fn only_options_before_the_main_class_count() {
    // Each measured with OpenJDK 17.0.15 outside any limit (G1, so 300m, 400m and 500m stay).
    let cases: &[(&str, u64)] = &[
        ("-Xmx300m NoSuch -Xmx500m", 300),
        ("-Xmx300m -jar app.jar -Xmx500m", 300),
        ("-Xmx300m -jar -Xmx500m app.jar", 500),
        ("-Xmx300m -cp . -Xmx400m Main -Xmx500m", 400),
        ("-Xmx300m -cp . Main.java -Xmx500m", 300),
        ("-Xmx300m --class-path=x -Xmx400m NoSuch", 400),
        ("-Xmx300m -m mod/x -Xmx500m", 300),
        ("-Xmx300m --module=mod -Xmx500m", 300),
        (
            "-Xmx300m --add-opens java.base/java.lang=ALL-UNNAMED -Xmx400m NoSuch",
            400,
        ),
        ("-Xmx300m --source 17 -Xmx400m Nosuch.java -Xmx500m", 400),
        ("-Xmx300m -XshowSettings:vm -Xmx400m NoSuch", 400),
        ("-Xmx300m -splash:x -Xmx400m NoSuch", 400),
    ];
    for &(line, mib) in cases {
        let found = ceiling(&args(&format!("java {line}")), &Env::default(), NODE, false);
        assert_eq!(found.bytes, Some(mib * MIB), "{line}");
    }
}

#[test]
fn a_recorded_command_line() {
    // /proc/PID/cmdline of `java -Xms64m -Xmx128m -cp . Sleep`, NULs and all.
    let cmdline = "java\0-Xms64m\0-Xmx128m\0-cp\0.\0Sleep\0";
    let argv: Vec<String> = cmdline.split_terminator('\0').map(str::to_owned).collect();
    assert!(is_jvm("java", &argv));
    let found = ceiling(&argv, &Env::default(), 256 * MIB, true);
    assert_eq!(found.bytes, Some(128 * MIB));
    assert_eq!(found.source, "-Xmx128m on the command line");
    assert!(!found.default && !found.gc_off);
    assert_eq!(found.runtime, Runtime::Jvm);
}

#[test]
fn without_container_support_the_node_decides() {
    let limit = Some(256 * MIB);
    let found = measured(limit, "-XX:-UseContainerSupport", &[]);
    assert_eq!(found.bytes, Some(6_320_816_128));
    assert_eq!(
        found.source,
        "25 % of the node's 23.5 GiB (-XX:-UseContainerSupport on the command line)"
    );
    // Without the node's memory there is no knowing, unless -Xmx says.
    let blind = |line| ceiling(&args(line), &Env::default(), 256 * MIB, true);
    let unknown = blind("java -XX:-UseContainerSupport Main");
    assert_eq!(unknown.bytes, None);
    assert_eq!(
        unknown.source,
        "-XX:-UseContainerSupport on the command line: heap sized from the node's memory, \
         unknown here"
    );
    assert_eq!(
        blind("java -XX:-UseContainerSupport -Xmx64m Main").bytes,
        Some(64 * MIB)
    );
}

#[test]
fn malformed_values_are_ignored_and_the_previous_setting_stays() {
    let limit = Some(256 * MIB);
    // Each of these makes HotSpot refuse to start; here the earlier -Xmx1g stays.
    for bad in [
        "-Xmx",
        "-Xmx0",
        "-Xmx1gb",
        "-Xmx-1g",
        "-Xmx1.5g",
        "-XX:MaxHeapSize=1q",
        "-XX:MaxHeapSize=0",
        "-Xmx17179869184G",
        "-Xmx99999999999999999999",
    ] {
        assert_eq!(
            heap(limit, &format!("-Xmx1g {bad}"), &[]),
            Some(GIB),
            "{bad}"
        );
    }
    for bad in [
        "-XX:MaxRAMPercentage=1e1",
        "-XX:MaxRAMPercentage=.5",
        "-XX:MaxRAMPercentage=5.",
        "-XX:MaxRAMPercentage=+5",
        "-XX:MaxRAMPercentage=-1",
        "-XX:MaxRAMPercentage=150",
        "-XX:MaxRAMPercentage=1.2.3",
        "-XX:MaxRAMPercentage=NaN",
        "-XX:MaxRAMPercentage=inf",
        "-XX:MaxRAMPercentage=",
        "-XX:MaxRAMFraction=0",
        "-XX:MaxRAM=lots",
    ] {
        let line = format!("-XX:MaxRAMPercentage=75 {bad}");
        assert_eq!(heap(Some(GIB), &line, &[]), Some(805_306_368), "{bad}");
    }
    // Nothing to read, or nonsense: the default, and no panic.
    for line in [
        "",
        "-XX:",
        "-XX:=",
        "-XX:+",
        "-",
        "--",
        "@args.txt",
        "-cp",
        "-m",
    ] {
        assert_eq!(heap(limit, line, &[]), Some(132_120_576), "{line:?}");
    }
    let odd = ["JAVA_TOOL_OPTIONS=\"-Xmx64m", "_JAVA_OPTIONS=' "];
    assert_eq!(
        heap(limit, "", &odd),
        Some(64 * MIB),
        "unmatched quotes read to the end"
    );
    assert_eq!(ceiling(&[], &Env::default(), 0, true).bytes, None);
}

#[test]
fn is_jvm_looks_at_the_executable_and_argv0() {
    assert!(is_jvm("java", &args("java -version")));
    assert!(is_jvm(
        "",
        &args("/usr/lib/jvm/java-17-openjdk-amd64/bin/java Main")
    ));
    assert!(!is_jvm("node", &args("node app.js")));
    assert!(!is_jvm("javac", &args("javac Main.java")));
    assert!(!is_jvm("bash", &args("/opt/myjava Main")));
    assert!(!is_jvm("bash", &[]));
}

#[test]
fn no_option_makes_it_panic() {
    let options = [
        "-Xmx",
        "-Xms",
        "-XX:MaxHeapSize=",
        "-XX:InitialHeapSize=",
        "-XX:MinHeapSize=",
        "-XX:MaxRAMPercentage=",
        "-XX:MinRAMPercentage=",
        "-XX:MaxRAMFraction=",
        "-XX:MinRAMFraction=",
        "-XX:InitialRAMFraction=",
        "-XX:MaxRAM=",
        "-XX:G1HeapRegionSize=",
        "-XX:+UseZGC -Xmx",
        "-XX:+UseShenandoahGC -XX:MaxRAM=",
        "-XX:-UseCompressedOops -Xms",
        "-XX:+",
        "-XX:-",
        "-XX:",
        "@",
        "-cp ",
        "-m ",
        "",
    ];
    let values = [
        "",
        "0",
        "1",
        "€",
        "0x",
        "99999999999999999999999",
        "18446744073709551615",
        "16777215t",
        "100",
        "1.5",
        "-1",
        "\"",
        "'",
    ];
    let memories = [
        (0, true, None),
        (1, false, None),
        (u64::MAX, true, Some(u64::MAX)),
    ];
    for option in options {
        for value in values {
            let text = format!("{option}{value}");
            let line = format!("java {text} Main");
            let vars = [
                format!("JAVA_TOOL_OPTIONS={text}"),
                format!("JDK_JAVA_OPTIONS={text}"),
                format!("_JAVA_OPTIONS={text}"),
            ];
            let env = Env::from_entries(vars.iter().map(String::as_str));
            for (memory, limited, node) in memories {
                super::ceiling(&args(&line), &env, memory, limited, node);
                super::ceiling(&args(&line), &Env::default(), memory, limited, node);
            }
        }
    }
}
