//! One guest: QEMU in software emulation (TCG; the machine's paravirtual KVM cannot run stock
//! kernels), the console streamed to the terminal, the results port to a file, a time limit.
//!
//! By default the guest's clock counts instructions (`-icount`): the host is shared and busy,
//! and on real time runs of the page-fault workload differed by up to 4× with the host's load,
//! burying any overhead figure; on instruction time the same runs agree within 1 %. The price:
//! one host thread runs both vCPUs (so the guest takes longer, and the profiler's own work on
//! the other vCPU counts against the workload, as on a one-core machine).
use std::{
    collections::VecDeque,
    fs,
    io::{BufRead as _, BufReader, Write as _},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

/// How many console lines a failure report shows.
pub(super) const TAIL_LINES: usize = 30;

/// What to boot and how.
pub(super) struct Boot<'a> {
    /// Prefix of the console lines echoed to the terminal, e.g. `6.1`.
    pub label: &'a str,
    /// The kernel image.
    pub vmlinuz: &'a Path,
    /// The initramfs.
    pub initramfs: &'a Path,
    /// Extra kernel command-line words (`vmtest.NAME=VALUE` options for /init).
    pub options: &'a [String],
    /// Where the console log and the results port's file go.
    pub out_dir: &'a Path,
    /// Kill the guest after this long.
    pub timeout: Duration,
    /// Run on real time (multi-threaded TCG) instead of instruction counting.
    pub realtime: bool,
    /// Boot with the memory controller on cgroup v1 instead of pure v2.
    pub cgroup_v1: bool,
}

/// How a guest ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum End {
    /// QEMU exited by itself (the guest powered off, or panicked and "rebooted").
    Exited,
    /// The time limit passed and QEMU was killed.
    TimedOut,
}

/// What a guest left behind.
pub(super) struct Run {
    /// How it ended.
    pub end: End,
    /// From QEMU's start to its exit (or the kill).
    pub elapsed: Duration,
    /// Everything the guest wrote to its results port (ttyS1).
    pub results: String,
    /// The last console lines.
    pub console_tail: Vec<String>,
    /// Whether the console showed a kernel panic.
    pub panicked: bool,
    /// The console log on disk.
    pub console_log: PathBuf,
}

/// Boots the guest and waits for it to power off, or kills it at the time limit.
pub(super) fn run(boot: &Boot<'_>) -> Result<Run> {
    fs::create_dir_all(boot.out_dir)
        .with_context(|| format!("creating {}", boot.out_dir.display()))?;
    let console_log = boot.out_dir.join("console.log");
    let results_file = boot.out_dir.join("results.txt");
    let _ = fs::remove_file(&results_file);
    let mut append = vec![
        "console=ttyS0".to_owned(),
        // A panic reboots at once, and -no-reboot turns the reboot into QEMU's exit.
        "panic=-1".to_owned(),
        "quiet".to_owned(),
    ];
    if boot.cgroup_v1 {
        // The memory controller on a v1 hierarchy of its own, as on older nodes (init.sh).
        append.push("vmtest.cgroup=1".to_owned());
    } else {
        // Pure cgroup v2, as on most Kubernetes nodes.
        append.push("cgroup_no_v1=all".to_owned());
    }
    append.extend(boot.options.iter().cloned());
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-accel", "tcg"]);
    if !boot.realtime {
        // 2 ns per instruction; with sleep=on an idle guest's clock still follows real time.
        qemu.args(["-icount", "shift=1,sleep=on"]);
    }
    qemu.args(["-cpu", "max", "-m", "1024", "-smp", "2"])
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(boot.vmlinuz)
        .arg("-initrd")
        .arg(boot.initramfs)
        .arg("-append")
        .arg(append.join(" "))
        // ttyS0: the console, on QEMU's stdout; ttyS1: the results, to a file.
        .args(["-serial", "stdio", "-serial"])
        .arg(format!("file:{}", results_file.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec. If xtask
    // dies (Ctrl-C, a CI timeout), QEMU goes with it instead of emulating on unowned.
    unsafe {
        qemu.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = qemu.spawn().context("starting qemu-system-x86_64")?;
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
    let panicked = Arc::new(Mutex::new(false));
    let stdout = child.stdout.take().context("qemu's stdout")?;
    let stderr = child.stderr.take().context("qemu's stderr")?;
    let mut log = fs::File::create(&console_log)
        .with_context(|| format!("creating {}", console_log.display()))?;
    let console = {
        let (tail, panicked, label) = (tail.clone(), panicked.clone(), boot.label.to_owned());
        thread::spawn(move || {
            for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
                let line = String::from_utf8_lossy(&line).trim_end().to_owned();
                let _ = writeln!(log, "{line}");
                eprintln!("  [{label}] {line}");
                if line.contains("Kernel panic") {
                    *panicked.lock().unwrap_or_else(|p| p.into_inner()) = true;
                }
                let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        })
    };
    // QEMU's own complaints (a bad option, a missing firmware) go to the console tail too.
    let errors = {
        let (tail, label) = (tail.clone(), boot.label.to_owned());
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  [{label} qemu] {line}");
                let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(format!("qemu: {line}"));
            }
        })
    };
    let end = loop {
        if child.try_wait().context("waiting for qemu")?.is_some() {
            break End::Exited;
        }
        if started.elapsed() > boot.timeout {
            // Our own child, by its pid.
            let _ = child.kill();
            let _ = child.wait();
            break End::TimedOut;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let elapsed = started.elapsed();
    let _ = console.join();
    let _ = errors.join();
    let results = match fs::read(&results_file) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    };
    let console_tail = tail
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
        .collect();
    let panicked = *panicked.lock().unwrap_or_else(|p| p.into_inner());
    Ok(Run {
        end,
        elapsed,
        results,
        console_tail,
        panicked,
        console_log,
    })
}
