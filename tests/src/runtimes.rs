//! Managed runtimes in real memory cgroups: a Java program, a Node.js script and a Go program,
//! built in a scratch directory by the real toolchains (`javac`, `go build`), which the heap
//! ceiling tests run under the real `java`, `node` and Go runtime.
//!
//! Each program grows its heap in a known pattern and says so on stdout, so a test can wait for
//! a phase (`steady`, `ready`) as it waits for the workload binary's lines.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{check_line, find_in_path, run, Profiler, TempDir, TestCgroup, Workload, PATIENCE};

/// The environment variables that set a runtime's heap ceiling. A runtime started by a test
/// inherits the test's environment, and the tests decide the ceilings themselves.
const CEILING_VARIABLES: [&str; 8] = [
    "JAVA_TOOL_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "_JAVA_OPTIONS",
    "NODE_OPTIONS",
    "GOMEMLIMIT",
    "GOGC",
    "DOTNET_GCHeapHardLimit",
    "DOTNET_GCHeapHardLimitPercent",
];

/// How long building a program may take on a busy two-core machine.
const BUILD_TIMEOUT: Duration = Duration::from_secs(120);

/// `Heap.java`: `java Heap WARM_MIB_PER_S LIVE_MIB GARBAGE_MIB_PER_S DELAY_MS` sleeps DELAY_MS,
/// then keeps WARM_MIB_PER_S of 256 KiB arrays alive each second until LIVE_MIB are (the heap
/// warms up), then allocates GARBAGE_MIB_PER_S that dies at once (the steady state). Prints
/// `started`, then `steady <live MiB>` when the live data is all there.
const JAVA_HEAP: &str = r#"import java.util.ArrayList;
import java.util.List;

public final class Heap {
    private static final int CHUNK = 256 << 10;
    private static final long TICK_MS = 50;
    /** Where garbage goes, so the JIT cannot leave its allocation out. */
    static volatile byte[] sink;

    private static byte[] touched() {
        byte[] chunk = new byte[CHUNK];
        for (int i = 0; i < CHUNK; i += 4096) {
            chunk[i] = 1;
        }
        return chunk;
    }

    public static void main(String[] args) throws InterruptedException {
        double warmRate = Double.parseDouble(args[0]) * (1 << 20);
        long liveTarget = Long.parseLong(args[1]) << 20;
        double garbageRate = Double.parseDouble(args[2]) * (1 << 20);
        long delayMs = Long.parseLong(args[3]);
        System.out.println("started");
        Thread.sleep(delayMs);
        List<byte[]> live = new ArrayList<>();
        long retained = 0;
        double due = 0;
        boolean steady = false;
        long start = System.nanoTime();
        for (long tick = 1; ; tick++) {
            if (retained < liveTarget) {
                due += warmRate * TICK_MS / 1000.0;
                while (due >= CHUNK && retained < liveTarget) {
                    live.add(touched());
                    retained += CHUNK;
                    due -= CHUNK;
                }
            } else {
                if (!steady) {
                    steady = true;
                    due = 0;
                    System.out.println("steady " + (retained >> 20));
                }
                due += garbageRate * TICK_MS / 1000.0;
                while (due >= CHUNK) {
                    sink = touched();
                    due -= CHUNK;
                }
            }
            long nap = (start + tick * TICK_MS * 1_000_000L - System.nanoTime()) / 1_000_000L;
            if (nap > 0) {
                Thread.sleep(nap);
            }
        }
    }
}
"#;

/// `app.js`: `node app.js DELAY_MS MIB_PER_S` sleeps DELAY_MS, then keeps arrays of doubles
/// (8 bytes each, on V8's heap) alive, MIB_PER_S each second in ten steps, until it is killed.
/// Prints `started`, then `held <MiB>` every second.
const NODE_APP: &str = r#"const [delayMs, mibPerS] = process.argv.slice(2).map(Number);
const live = [];
console.log("started");
setTimeout(() => {
  const perTick = Math.round((mibPerS * 1024 * 1024) / 8 / 10);
  setInterval(() => {
    const array = new Array(perTick);
    for (let i = 0; i < perTick; i++) array[i] = i * 0.5;
    live.push(array);
    if (live.length % 10 === 0) console.log("held", (live.length * mibPerS) / 10);
  }, 100);
}, delayMs);
"#;

/// `main.go`: `goapp HOLD_MIB` keeps HOLD_MIB of touched slices alive, prints `ready <MiB>`,
/// then allocates a little garbage ten times a second until it is killed.
const GO_APP: &str = r#"package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

var held [][]byte

// sink keeps the garbage from being optimized away.
var sink []byte

func main() {
	mib, err := strconv.Atoi(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "usage: goapp HOLD_MIB")
		os.Exit(2)
	}
	for i := 0; i < mib; i++ {
		chunk := make([]byte, 1<<20)
		for j := 0; j < len(chunk); j += 4096 {
			chunk[j] = 1
		}
		held = append(held, chunk)
	}
	fmt.Println("ready", mib)
	for {
		sink = make([]byte, 256<<10)
		time.Sleep(100 * time.Millisecond)
	}
}
"#;

/// A tool the runtime tests run, from PATH; panics naming the command that installs it.
#[track_caller]
pub fn require_tool(name: &str) -> PathBuf {
    find_in_path(name).unwrap_or_else(|| {
        panic!("`{name}` is not on PATH: run `cargo xtask setup` (it installs the runtimes)")
    })
}

/// Panics if the test's environment sets a runtime's heap ceiling: every runtime the tests
/// start would inherit it.
#[track_caller]
pub fn require_clean_environment() {
    let set: Vec<String> = CEILING_VARIABLES
        .iter()
        .filter_map(|name| std::env::var(name).ok().map(|v| format!("{name}={v:?}")))
        .collect();
    assert!(
        set.is_empty(),
        "the runtime tests set the heap ceilings themselves; unset {} to run them",
        set.join(" ")
    );
}

/// How [`JavaHeap`]'s program grows its heap.
#[derive(Clone, Copy, Debug)]
pub struct HeapPlan {
    /// How long it waits before allocating anything.
    pub delay: Duration,
    /// MiB kept alive each second while warming up.
    pub warm_mib_per_s: f64,
    /// MiB of live data the warm-up ends at (more than the heap holds: it fills until killed).
    pub live_mib: u64,
    /// MiB of garbage allocated each second once the live data is there.
    pub garbage_mib_per_s: f64,
}

/// The Java program `Heap` (see [`JAVA_HEAP`]), compiled with the real `javac`.
pub struct JavaHeap {
    dir: TempDir,
    java: PathBuf,
}

impl JavaHeap {
    /// Writes `Heap.java` to a scratch directory and compiles it; panics with javac's output if
    /// it fails.
    #[track_caller]
    pub fn compile() -> Self {
        let java = require_tool("java");
        let javac = require_tool("javac");
        let dir = TempDir::new("java");
        let source = dir.path().join("Heap.java");
        write(&source, JAVA_HEAP);
        let mut command = crate::process::command(&javac);
        command.arg("-d").arg(dir.path()).arg(&source);
        let finished = run(command, BUILD_TIMEOUT);
        if !finished.status.success() {
            finished.fail("javac could not compile Heap.java");
        }
        Self { dir, java }
    }

    /// Starts `java <flags> -cp <dir> Heap <plan>` in `cgroup`.
    pub fn spawn(&self, cgroup: &TestCgroup, flags: &[&str], plan: HeapPlan) -> Workload {
        let classpath = self.classpath();
        let delay_ms = plan.delay.as_millis().to_string();
        let warm = plan.warm_mib_per_s.to_string();
        let live = plan.live_mib.to_string();
        let garbage = plan.garbage_mib_per_s.to_string();
        let mut args: Vec<&str> = flags.to_vec();
        args.extend([
            "-cp",
            classpath,
            "Heap",
            warm.as_str(),
            live.as_str(),
            garbage.as_str(),
            delay_ms.as_str(),
        ]);
        cgroup.spawn_program(&self.java, &args)
    }

    /// What HotSpot makes of `flags` in `cgroup`: its `MaxHeapSize` as `java <flags>
    /// -XX:+PrintFlagsFinal -version` prints it when run there (the JVM sizes its default heap
    /// from the limit of the cgroup it runs in, and rounds any size to its heap alignment).
    #[track_caller]
    pub fn max_heap_size(&self, cgroup: &TestCgroup, flags: &[&str]) -> u64 {
        let mut args: Vec<&str> = flags.to_vec();
        args.extend(["-XX:+PrintFlagsFinal", "-version"]);
        let mut jvm = cgroup.spawn_program(&self.java, &args);
        let (_, line) = jvm.wait_for_line("the MaxHeapSize line", PATIENCE, |line| {
            line.split_whitespace().nth(1) == Some("MaxHeapSize")
        });
        let (status, _) = jvm.wait_exit(PATIENCE);
        if !status.success() {
            jvm.fail("java -XX:+PrintFlagsFinal -version failed");
        }
        // `   size_t MaxHeapSize    = 134217728    {product} {command line}`
        line.split_whitespace()
            .nth(3)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| jvm.fail(format_args!("cannot read a size from {line:?}")))
    }

    /// Charges the page cache of the files a JVM maps to the test's own cgroups, before a test
    /// drives a JVM into its limit (see [`charge_mapped_files_here`]).
    #[track_caller]
    pub fn charge_files_here(&self) {
        charge_mapped_files_here(
            &self.java,
            &["-cp", self.classpath(), "Heap", "0", "0", "0", "600000"],
        );
    }

    fn classpath(&self) -> &str {
        self.dir
            .path()
            .to_str()
            .expect("scratch directories have UTF-8 paths")
    }
}

/// The Node.js script `app.js` (see [`NODE_APP`]), run by the real `node`.
pub struct NodeApp {
    _dir: TempDir,
    script: String,
    node: PathBuf,
}

impl NodeApp {
    /// Writes `app.js` to a scratch directory.
    #[track_caller]
    pub fn write() -> Self {
        let node = require_tool("node");
        let dir = TempDir::new("node");
        let script = dir.path().join("app.js");
        write(&script, NODE_APP);
        let script = script
            .to_str()
            .expect("scratch directories have UTF-8 paths")
            .to_owned();
        Self {
            _dir: dir,
            script,
            node,
        }
    }

    /// Charges the page cache of the files node maps (its executable is 94 MiB on Debian) to
    /// the test's own cgroups, before a test drives node into its limit (see
    /// [`charge_mapped_files_here`]).
    #[track_caller]
    pub fn charge_files_here(&self) {
        charge_mapped_files_here(&self.node, &[self.script.as_str(), "600000", "0"]);
    }

    /// Starts `node <flags> app.js <delay> <mib_per_s>` in `cgroup`.
    pub fn spawn(
        &self,
        cgroup: &TestCgroup,
        flags: &[&str],
        delay: Duration,
        mib_per_s: u64,
    ) -> Workload {
        let delay_ms = delay.as_millis().to_string();
        let rate = mib_per_s.to_string();
        let mut args: Vec<&str> = flags.to_vec();
        args.extend([self.script.as_str(), delay_ms.as_str(), rate.as_str()]);
        cgroup.spawn_program(&self.node, &args)
    }
}

/// The Go program `goapp` (see [`GO_APP`]), built with the real `go build`, offline.
pub struct GoApp {
    _dir: TempDir,
    binary: PathBuf,
}

impl GoApp {
    /// Builds `goapp` in a scratch directory, with the build cache and module path there too
    /// and no network (`GOPROXY=off`, `GOTOOLCHAIN=local`: the program needs only the standard
    /// library); panics with go's output if it fails.
    #[track_caller]
    pub fn build() -> Self {
        let go = require_tool("go");
        let dir = TempDir::new("go");
        write(&dir.path().join("go.mod"), "module goapp\n\ngo 1.19\n");
        write(&dir.path().join("main.go"), GO_APP);
        let binary = dir.path().join("goapp");
        let mut command = crate::process::command(&go);
        command
            .args(["build", "-o"])
            .arg(&binary)
            .arg(".")
            .current_dir(dir.path())
            .env("GOCACHE", dir.path().join("cache"))
            .env("GOPATH", dir.path().join("gopath"))
            .env("GOENV", "off")
            .env("GOFLAGS", "-mod=mod")
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("CGO_ENABLED", "0");
        let finished = run(command, BUILD_TIMEOUT);
        if !finished.status.success() || !binary.is_file() {
            finished.fail("go build of the test program failed");
        }
        Self { _dir: dir, binary }
    }

    /// Starts `goapp <hold_mib>` in `cgroup`, with `env` added to its environment (through
    /// `env(1)`, which execs the program: the pid stays the same).
    pub fn spawn(&self, cgroup: &TestCgroup, env: &[(&str, &str)], hold_mib: u64) -> Workload {
        let hold = hold_mib.to_string();
        let binary = self
            .binary
            .to_str()
            .expect("scratch directories have UTF-8 paths");
        if env.is_empty() {
            return cgroup.spawn_program(&self.binary, &[&hold]);
        }
        let assignments: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args: Vec<&str> = assignments.iter().map(String::as_str).collect();
        args.extend([binary, hold.as_str()]);
        cgroup.spawn_program(&require_tool("env"), &args)
    }
}

/// Starts `program args` in the test's own cgroups, waits for its `started` line, and reads
/// every regular file it maps (executable, libraries, a JVM's modules image and class data
/// archive) to the end, then kills it.
///
/// Why: cgroup v1 charges a page of the page cache to the memcg that first reads it. A runtime
/// whose code pages are charged to its own small memcg (no swap) lives on at the limit: each
/// allocation makes the kernel evict those pages, the runtime reads them back, reclaim counts
/// as progress, and the OOM kill waits for a minute or more (node, a 94 MiB executable, did so
/// in a 192 MiB memcg). Read from here first, the pages are charged to the test's memcg, which
/// the test cgroup's reclaim does not touch, and the heap reaches the limit in seconds.
#[track_caller]
fn charge_mapped_files_here(program: &Path, args: &[&str]) {
    let mut runtime = Workload::start(program, args);
    runtime.wait_line("started", PATIENCE);
    let maps_path = format!("/proc/{}/maps", runtime.pid());
    let maps = fs::read_to_string(&maps_path)
        .unwrap_or_else(|e| runtime.fail(format_args!("reading {maps_path}: {e}")));
    let mut files: Vec<&str> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.starts_with('/'))
        .collect();
    files.sort_unstable();
    files.dedup();
    for file in files {
        let path = Path::new(file);
        if !fs::metadata(path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let read = fs::File::open(path).and_then(|mut f| io::copy(&mut f, &mut io::sink()));
        if let Err(e) = read {
            runtime.fail(format_args!("reading {}: {e}", path.display()));
        }
    }
}

/// Whether `line` is a `line_type` line about process `pid` of the cgroup at `cgroup`.
pub fn is_process_line(line: &Value, line_type: &str, cgroup: &str, pid: u32) -> bool {
    line["type"] == line_type && line["cgroup"] == cgroup && line["pid"] == u64::from(pid)
}

/// Every line the profiler printed so far, each checked against the JSON contract; fails with
/// the profiler's report at the first that breaks it.
#[track_caller]
pub fn checked_lines(profiler: &Profiler) -> Vec<(Instant, Value)> {
    let lines = profiler.lines_so_far();
    for (_, line) in &lines {
        if let Err(e) = check_line(line) {
            profiler.fail(format_args!(
                "a JSON line breaks the output contract: {e}: {line}"
            ));
        }
    }
    lines
}

#[track_caller]
fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
