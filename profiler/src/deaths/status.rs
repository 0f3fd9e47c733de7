//! The kernel's exit status of a process (`task_struct.exit_code`, the `wait(2)` status) as a
//! runtime reports it, and the names and meanings of signals and exit codes.

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    /// It called `exit` with this status.
    Exited(u8),
    /// A signal ended it.
    Signaled {
        /// The signal number.
        signal: u8,
        /// Whether it dumped core.
        core: bool,
    },
}

impl ExitStatus {
    /// From the `wait(2)` status the kernel keeps: the signal in the low 7 bits, 0x80 for a
    /// core dump, the exit status in bits 8..16.
    pub(crate) fn from_wait(status: u32) -> Self {
        match (status & 0x7f) as u8 {
            0 => ExitStatus::Exited(((status >> 8) & 0xff) as u8),
            signal => ExitStatus::Signaled {
                signal,
                core: status & 0x80 != 0,
            },
        }
    }

    /// The exit code as runtimes (docker, the kubelet) report it: the status, or 128 plus the
    /// signal.
    pub(crate) fn code(self) -> u32 {
        match self {
            ExitStatus::Exited(code) => u32::from(code),
            ExitStatus::Signaled { signal, .. } => 128 + u32::from(signal),
        }
    }

    /// The signal that ended it, if one did.
    pub(crate) fn signal(self) -> Option<u8> {
        match self {
            ExitStatus::Signaled { signal, .. } => Some(signal),
            ExitStatus::Exited(_) => None,
        }
    }
}

/// Linux's signal names (x86, arm64 and most others number them alike).
const NAMES: [&str; 31] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// `SIGKILL` for 9; `SIGRTMIN+n` for the real-time ones; `None` for 0 or above 64.
pub(crate) fn signal_name(signal: u8) -> Option<String> {
    match signal {
        1..=31 => NAMES.get(usize::from(signal) - 1).map(|n| (*n).to_string()),
        32..=64 => Some(format!("SIGRTMIN+{}", signal - 32)),
        _ => None,
    }
}

/// What a signal that ended a process usually means, for the signals that end programs on
/// their own (a crash, an abort) rather than by someone's request.
pub(crate) fn signal_meaning(signal: u8) -> Option<&'static str> {
    Some(match signal {
        4 => "the program executed an illegal instruction",
        6 => "the program aborted itself (abort(), a failed assertion, a runtime's fatal error)",
        7 => "the program touched memory that is not there (a truncated mapped file, or /dev/shm full)",
        8 => "an arithmetic error in the program (a division by zero)",
        11 => "the program crashed (an invalid memory access)",
        13 => "the program wrote to a pipe or socket nobody reads any more",
        24 => "the program went over its CPU time limit",
        25 => "the program went over its file size limit",
        31 => "the program made a system call its seccomp profile forbids",
        _ => return None,
    })
}

/// What an exit code means, as people look it up. `None` for codes that are only the
/// program's own.
pub(crate) fn exit_code_meaning(code: u8) -> Option<String> {
    Some(match code {
        0 => "it exited normally".to_string(),
        1 => "a general error, reported by the program itself".to_string(),
        2 => "misuse of a command (bad arguments), by the program's own convention".to_string(),
        126 => {
            "the command was found but could not be executed (permissions, or not an executable)"
                .to_string()
        }
        127 => {
            "the command was not found in the image (or its interpreter or a library is missing)"
                .to_string()
        }
        137 => "128 + SIGKILL as an exit status: a child of this process was killed by SIGKILL \
                (an OOM kill, or someone's kill) and a shell passed it on"
            .to_string(),
        143 => "128 + SIGTERM as an exit status: a child of this process was stopped by SIGTERM \
                (a runtime stopping it, or a person or script) and a shell passed it on"
            .to_string(),
        129..=192 => {
            let name = signal_name(code - 128)?;
            format!(
                "128 + {name} as an exit status: the program reported death by {name} itself \
                 (a shell reports a child killed by that signal this way)"
            )
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_statuses_decode_as_runtimes_report_them() {
        // exit(127): status 127 << 8.
        assert_eq!(ExitStatus::from_wait(127 << 8), ExitStatus::Exited(127));
        assert_eq!(ExitStatus::from_wait(127 << 8).code(), 127);
        // Killed by SIGKILL: 9.
        let killed = ExitStatus::from_wait(9);
        assert_eq!(
            killed,
            ExitStatus::Signaled {
                signal: 9,
                core: false
            }
        );
        assert_eq!((killed.code(), killed.signal()), (137, Some(9)));
        // SIGSEGV with a core dump: 11 | 0x80.
        assert_eq!(
            ExitStatus::from_wait(11 | 0x80),
            ExitStatus::Signaled {
                signal: 11,
                core: true
            }
        );
        assert_eq!(ExitStatus::from_wait(0), ExitStatus::Exited(0));
        assert_eq!(ExitStatus::from_wait(15).code(), 143);
    }

    #[test]
    fn signals_and_codes_have_their_names() {
        assert_eq!(signal_name(9).as_deref(), Some("SIGKILL"));
        assert_eq!(signal_name(15).as_deref(), Some("SIGTERM"));
        assert_eq!(signal_name(31).as_deref(), Some("SIGSYS"));
        assert_eq!(signal_name(34).as_deref(), Some("SIGRTMIN+2"));
        assert_eq!(signal_name(0), None);
        assert!(exit_code_meaning(127).is_some_and(|m| m.contains("not found")));
        assert!(exit_code_meaning(126).is_some_and(|m| m.contains("could not be executed")));
        assert!(exit_code_meaning(137).is_some_and(|m| m.contains("SIGKILL")));
        assert!(exit_code_meaning(143).is_some_and(|m| m.contains("SIGTERM")));
        assert!(exit_code_meaning(139).is_some_and(|m| m.contains("SIGSEGV")));
        assert_eq!(exit_code_meaning(42), None);
        assert!(signal_meaning(11).is_some_and(|m| m.contains("crashed")));
        assert_eq!(signal_meaning(9), None);
    }
}
