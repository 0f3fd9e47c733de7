//! Tests on real processes: a small C program, compiled here, prints where its functions are
//! and waits; its stacks are normalised and named, also after it was killed, stripped or
//! replaced on disk. They touch only the processes they start, so they pass as any user
//! (skipped, saying so, when there is no `cc`).
use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::Instant,
};

use super::{maps::parse_exec_maps, open::open_mapped, *};

/// The program: `cache_put` called by `handle_request`, a `static` function for the stripped
/// case, a JIT region named in its perf map, the vDSO and libc's `pause`. It prints their
/// addresses.
const PROGRAM: &str = r#"
#include <stdio.h>
#include <unistd.h>
#include <sys/auxv.h>
#include <sys/mman.h>

volatile long sink;

__attribute__((noinline)) void cache_put(long n) {
    for (long i = 0; i < n; i++) sink += i * 7;
}

__attribute__((noinline)) void handle_request(long n) {
    for (long i = 0; i < n; i++) sink ^= i;
    cache_put(n);
}

static __attribute__((noinline)) long hidden_helper(long n) {
    for (long i = 0; i < n; i++) sink += i * 3;
    return sink;
}

int main(int argc, char **argv) {
    (void)argv;
    handle_request(argc);
    hidden_helper(argc);
    void *jit = mmap(NULL, 8192, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char path[64];
    snprintf(path, sizeof path, "/tmp/perf-%d.map", getpid());
    FILE *f = fopen(path, "w");
    if (f) { fprintf(f, "%lx 100 jitted_fn\n", (unsigned long)jit); fclose(f); }
    printf("%lx %lx %lx %lx %lx %lx\n", (unsigned long)cache_put, (unsigned long)handle_request,
           (unsigned long)hidden_helper, (unsigned long)jit, getauxval(AT_SYSINFO_EHDR),
           (unsigned long)pause);
    fflush(stdout);
    pause();
    return 0;
}
"#;

/// The same program with other names: laid out the same, so its offsets hold other names.
const RENAMED: &[&str] = &[
    "-Dcache_put=evil_put",
    "-Dhandle_request=evil_request",
    "-Dhidden_helper=evil_helper",
];

/// Compiles [`PROGRAM`] to `out`; `false` (after saying why) when there is no compiler.
fn compile(out: &Path, defines: &[&str]) -> bool {
    if Command::new("cc").arg("--version").output().is_err() {
        eprintln!("skipped: no `cc` to build the test program");
        return false;
    }
    let source = out.with_extension("c");
    std::fs::write(&source, PROGRAM).expect("writing the test program");
    let status = Command::new("cc")
        .args(["-O1", "-fno-omit-frame-pointer", "-fno-inline", "-o"])
        .arg(out)
        .arg(&source)
        .args(defines)
        .status()
        .expect("running cc");
    assert!(status.success(), "cc failed on the test program");
    true
}

/// A running test program and what it printed; killed, reaped and its perf map removed when
/// dropped.
struct Program {
    child: Child,
    cache_put: u64,
    handle_request: u64,
    hidden_helper: u64,
    jit: u64,
    vdso: u64,
    pause: u64,
}

impl Program {
    fn start(path: &Path) -> Self {
        let mut child = Command::new(path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", path.display()));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("the program's stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the program's addresses");
        let addrs: Vec<u64> = line
            .split_whitespace()
            .map(|hex| u64::from_str_radix(hex, 16).expect("a hex address"))
            .collect();
        assert_eq!(addrs.len(), 6, "the program printed {line:?}");
        Self {
            child,
            cache_put: addrs[0],
            handle_request: addrs[1],
            hidden_helper: addrs[2],
            jit: addrs[3],
            vdso: addrs[4],
            pause: addrs[5],
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it (SIGKILL, as the OOM killer does) and reaps it.
    fn kill(&mut self) {
        // It may already be dead; only its status matters.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(format!("/tmp/perf-{}.map", self.pid()));
    }

    /// A stack as `bpf_get_stack` would give it: `cache_put` (leaf, at its 5th byte) called
    /// from `handle_request` (return address 5 bytes in).
    fn leak_stack(&self) -> [u64; 2] {
        [self.cache_put + 4, self.handle_request + 5]
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        self.kill();
    }
}

fn raw(tgid: u32, user: &[u64]) -> RawStack<'_> {
    RawStack {
        tgid,
        user,
        kernel: &[],
        comm: "leaky",
    }
}

#[test]
fn names_a_live_process_and_its_jit_vdso_and_unmapped_frames() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("leaky");
    if !compile(&path, &[]) {
        return;
    }
    let program = Program::start(&path);
    let mut symbolizer = Symbolizer::new();

    let stack = symbolizer.normalize(raw(program.pid(), &program.leak_stack()));
    let started = Instant::now();
    let (user, kernel) = symbolizer.symbolize(&stack);
    let first = started.elapsed();
    assert_eq!(user, ["handle_request", "cache_put"], "root first");
    assert!(kernel.is_empty());
    let started = Instant::now();
    for _ in 0..1000 {
        let stack = symbolizer.normalize(raw(program.pid(), &program.leak_stack()));
        assert_eq!(
            symbolizer.symbolize(&stack).0,
            ["handle_request", "cache_put"]
        );
    }
    eprintln!(
        "first symbolize {first:?}; then normalize + symbolize {:?} per stack",
        started.elapsed() / 1000
    );

    // A shared library, named from its dynamic symbols (Debian's libc has no .symtab).
    let stack = symbolizer.normalize(raw(program.pid(), &[program.pause + 4]));
    let started = Instant::now();
    let (user, _) = symbolizer.symbolize(&stack);
    eprintln!("first symbolize in libc {:?}", started.elapsed());
    assert_eq!(user, ["pause"]);

    // A return address at a function's first byte is a call that ended the function before
    // it: never named after the function it points at. As the leaf, it is that function.
    let at_start = [program.hidden_helper, program.hidden_helper];
    let stack = symbolizer.normalize(raw(program.pid(), &at_start));
    let (user, _) = symbolizer.symbolize(&stack);
    assert_eq!(user[1], "hidden_helper");
    assert_ne!(user[0], "hidden_helper", "root frame {user:?}");

    let odd = [
        program.jit + 0x10,
        program.jit + 0x1000 + 1,
        program.vdso + 0x10 + 1,
        0x10,
    ];
    let stack = symbolizer.normalize(raw(program.pid(), &odd));
    let (user, _) = symbolizer.symbolize(&stack);
    assert_eq!(user, ["[unknown]", "[vdso]", "[jit]", "jitted_fn"]);
}

#[test]
fn names_survive_the_process_being_killed_and_its_binary_deleted() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("leaky");
    if !compile(&path, &[]) {
        return;
    }
    let mut program = Program::start(&path);
    let mut symbolizer = Symbolizer::new();
    let alive = symbolizer.normalize(raw(program.pid(), &program.leak_stack()));
    // A sample that arrives after the kill, while the process is a zombie (its maps empty),
    // once the pid is due to be checked again: named from what was cached.
    program.child.kill().expect("killing the program");
    std::thread::sleep(Duration::from_millis(300));
    let zombie = symbolizer.normalize(raw(program.pid(), &program.leak_stack()));
    program.kill();
    std::fs::remove_file(&path).expect("deleting the binary");
    symbolizer.prune(1000.0);
    for stack in [&alive, &zombie] {
        assert_eq!(
            symbolizer.symbolize(stack).0,
            ["handle_request", "cache_put"]
        );
    }

    // Past the grace the process is forgotten; its module stays open while a stack holds it.
    symbolizer.prune(1000.0 + GONE_GRACE_S + 1.0);
    assert!(symbolizer.processes.is_empty());
    assert_eq!(symbolizer.modules.len(), 1);
    assert_eq!(
        symbolizer.symbolize(&alive).0,
        ["handle_request", "cache_put"]
    );
    drop((alive, zombie));
    symbolizer.prune(1000.0 + GONE_GRACE_S + 2.0);
    assert_eq!(
        symbolizer.modules.len(),
        0,
        "closed once nothing refers to it"
    );
}

#[test]
fn a_stripped_binary_names_nothing_rather_than_something_wrong() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("leaky-stripped");
    if !compile(&path, &[]) {
        return;
    }
    match Command::new("strip").arg(&path).status() {
        Ok(status) => assert!(status.success(), "strip failed"),
        Err(err) => {
            eprintln!("skipped: no `strip` ({err})");
            return;
        }
    }
    let program = Program::start(&path);
    let mut symbolizer = Symbolizer::new();
    let user = [program.hidden_helper + 4, program.cache_put + 5];
    let stack = symbolizer.normalize(raw(program.pid(), &user));
    let (user, _) = symbolizer.symbolize(&stack);
    assert_eq!(
        user,
        ["[unknown] (leaky-stripped)", "[unknown] (leaky-stripped)"]
    );
}

#[test]
fn a_binary_replaced_on_disk_never_gets_the_new_programs_names() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("app");
    let renamed = dir.path().join("app.new");
    if !compile(&path, &[]) || !compile(&renamed, RENAMED) {
        return;
    }
    let program = Program::start(&path);
    std::fs::rename(&renamed, &path).expect("replacing the binary");
    let mut symbolizer = Symbolizer::new();
    let stack = symbolizer.normalize(raw(program.pid(), &program.leak_stack()));
    let (user, _) = symbolizer.symbolize(&stack);
    for (name, right) in user.iter().zip(["handle_request", "cache_put"]) {
        assert!(name == right || name == "[unknown] (app)", "{user:?}");
    }
    eprintln!("replaced binary named {user:?}");
}

#[test]
fn the_path_is_used_only_when_it_is_still_the_inode_mapped() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("app");
    let renamed = dir.path().join("app.new");
    if !compile(&path, &[]) || !compile(&renamed, RENAMED) {
        return;
    }
    let program = Program::start(&path);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", program.pid())).expect("its maps");
    let mut line = parse_exec_maps(&maps)
        .into_iter()
        .find(|m| m.start <= program.cache_put && program.cache_put < m.end)
        .expect("the mapping of cache_put");
    // A range map_files does not have: only the path through /proc/PID/root is left.
    line.start += 1;
    assert!(
        open_mapped(program.pid(), &line).is_ok(),
        "the path is the file mapped"
    );
    std::fs::rename(&renamed, &path).expect("replacing the binary");
    let err = open_mapped(program.pid(), &line).expect_err("the path names another file now");
    assert!(err.to_string().contains("replaced"), "{err}");
}

#[test]
fn a_process_gone_before_its_sample_is_normalised_gives_unknown() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("leaky");
    if !compile(&path, &[]) {
        return;
    }
    let mut program = Program::start(&path);
    let user = program.leak_stack();
    program.kill();
    let mut symbolizer = Symbolizer::new();
    let stack = symbolizer.normalize(raw(program.pid(), &user));
    assert_eq!(symbolizer.symbolize(&stack).0, ["[unknown]", "[unknown]"]);
}

#[test]
fn names_a_kernel_function_from_kallsyms() {
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").expect("reading /proc/kallsyms");
    let mut functions: Vec<(u64, &str)> = Vec::new();
    let mut at_address: HashMap<u64, usize> = HashMap::new();
    for line in kallsyms.lines() {
        let mut fields = line.split_whitespace();
        let (Some(addr), Some(kind), Some(name), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue; // a module's symbol, or another form
        };
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            continue;
        };
        *at_address.entry(addr).or_default() += 1;
        if matches!(kind, "T" | "t") {
            functions.push((addr, name));
        }
    }
    if functions.iter().all(|(addr, _)| *addr == 0) {
        eprintln!("skipped: kallsyms shows no addresses (kptr_restrict, not root)");
        return;
    }
    // An address with one symbol only (aliases would make the expected name ambiguous),
    // do_sys_openat2 if it is one.
    let unique = |(addr, _): &&(u64, &str)| *addr != 0 && at_address.get(addr) == Some(&1);
    let &(addr, name) = functions
        .iter()
        .filter(unique)
        .find(|(_, name)| *name == "do_sys_openat2")
        .or_else(|| functions.iter().find(unique))
        .expect("a kernel function at an address of its own");
    let mut symbolizer = Symbolizer::new();
    let kernel = [addr, addr + 1];
    let stack = symbolizer.normalize(RawStack {
        tgid: std::process::id(),
        user: &[],
        kernel: &kernel,
        comm: "test",
    });
    let started = Instant::now();
    let (user, kernel) = symbolizer.symbolize(&stack);
    eprintln!(
        "first kernel symbolize (reads kallsyms) {:?}",
        started.elapsed()
    );
    assert!(user.is_empty());
    assert_eq!(kernel, [name, name]);
}

#[test]
fn the_leaf_is_looked_up_as_is_and_return_addresses_one_byte_back() {
    assert_eq!(lookup_address(0, 0x1000), 0x1000);
    assert_eq!(lookup_address(1, 0x1000), 0xfff);
    assert_eq!(lookup_address(5, 0), 0);
}

/// The start of the executable mapping of `file` (a path suffix) in `pid`'s maps.
fn text_of(pid: u32, file: &str) -> Option<u64> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines()
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|p| p.contains('x')))
        .find(|l| l.ends_with(file))
        .and_then(|l| l.split('-').next())
        .and_then(|start| u64::from_str_radix(start, 16).ok())
}

#[test]
fn an_exec_is_noticed_at_the_first_sample_with_the_new_name() {
    // `sh` waits for a line, then becomes `sleep`: same pid, another image.
    let Some(sleep) = ["/usr/bin/sleep", "/bin/sleep"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        eprintln!("skipped: no sleep binary");
        return;
    };
    let mut child = Command::new("sh")
        .args(["-c", &format!("read line; exec {sleep} 30")])
        .stdin(Stdio::piped())
        .spawn()
        .expect("sh starts");
    let pid = child.id();
    let mut symbolizer = Symbolizer::new();
    // sh's own image, mapped once it runs.
    let sh_text = (0..200)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(5));
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
            let exe = exe.file_name()?.to_str()?.to_owned();
            text_of(pid, &exe).map(|t| (t, exe))
        })
        .expect("sh's text mapping");
    let before = RawStack {
        tgid: pid,
        user: &[sh_text.0 + 16],
        kernel: &[],
        comm: "sh",
    };
    let stack = symbolizer.normalize(before);
    let (named, _) = symbolizer.symbolize(&stack);
    assert!(
        named[0].contains(&sh_text.1) || !named[0].starts_with('['),
        "{named:?}"
    );
    // The exec, then a sample of the new image well within the periodic recheck (250 ms).
    {
        use std::io::Write as _;
        let stdin = child.stdin.as_mut().expect("sh's stdin");
        stdin.write_all(b"go\n").expect("a line to sh");
    }
    let sleep_text = (0..400)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(5));
            text_of(pid, "sleep")
        })
        .expect("sleep's text mapping after the exec");
    // A renamed sample forces a check at most every 10 ms; the periodic one comes after 250.
    std::thread::sleep(Duration::from_millis(20));
    let after = RawStack {
        tgid: pid,
        user: &[sleep_text + 16],
        kernel: &[],
        comm: "sleep",
    };
    let stack = symbolizer.normalize(after);
    let (named, _) = symbolizer.symbolize(&stack);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        named[0].ends_with("(sleep)") || !named[0].starts_with('['),
        "the new image's address is named from the new image: {named:?}"
    );
}
