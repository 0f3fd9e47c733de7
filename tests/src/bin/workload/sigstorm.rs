//! `sigstorm --children N`: N processes that die of a signal, one after another, as fast as
//! the machine forks. Each child sends itself SIGKILL at once; the parent waits for it and
//! checks that SIGKILL is what ended it.
//!
//! For the ring-overflow tests (`tests/tests/ring_overflow.rs`, the vm-test `ringloss`
//! scenario): in a watched cgroup every child costs the kernel programs exactly two ring
//! records, its SIGKILL (`signal:signal_generate`; a new pid each, so the repeat filter never
//! folds one into another) and its death by signal (`sched:sched_process_exit`), so
//! `killed` tells the tests how many records were produced. The children inherit the
//! parent's command name (`--comm`), which tells their lines from others.
use std::io;
use std::time::Instant;

use super::say;

/// Forks `children` children in turn, each killing itself with SIGKILL; prints
/// `sigstorm children=N killed=K secs=S` (K == N, else it fails).
pub(crate) fn run(children: u64) -> Result<(), String> {
    let start = Instant::now();
    let mut killed = 0u64;
    for _ in 0..children {
        // SAFETY: fork in a single-threaded process; the child only calls async-signal-safe
        // functions (getpid, kill, _exit).
        let child = unsafe { libc::fork() };
        if child < 0 {
            return Err(format!(
                "fork after {killed} children: {}",
                io::Error::last_os_error()
            ));
        }
        if child == 0 {
            // SAFETY: as above. SIGKILL cannot be caught: _exit is never reached unless kill
            // failed, and then the parent says so.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
                libc::_exit(3);
            }
        }
        let mut status = 0;
        // SAFETY: waitpid(2) on our own child, into a local.
        if unsafe { libc::waitpid(child, &mut status, 0) } != child {
            return Err(format!("waitpid({child}): {}", io::Error::last_os_error()));
        }
        if !(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL) {
            return Err(format!(
                "child {child} ended with wait status {status:#x}, not SIGKILL"
            ));
        }
        killed += 1;
    }
    say(&format!(
        "sigstorm children={children} killed={killed} secs={:.3}",
        start.elapsed().as_secs_f64()
    ))
}
