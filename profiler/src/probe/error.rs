//! Why a hook did not attach, why a mode cannot be used, and why the profiler cannot start:
//! typed, with the kernel's (or aya's) error kept as the source, so the message a user reads
//! ends with the kernel's own reason.
use std::sync::Arc;

use thiserror::Error;

use crate::{btf::BtfError, mode::ChargeMode};

/// Why a hook's kernel function cannot be used: what the kernel's BTF says of it.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub(crate) enum TargetError {
    /// The kernel's BTF has none of the function's names.
    #[error("the kernel's BTF has no function {0}")]
    NoFunction(String),
    /// The function exists, with another first parameter than the program reads.
    #[error("the kernel's BTF has {seen} but not with a first parameter `{expected}`")]
    Prototype {
        /// The functions found, with their parameters.
        seen: String,
        /// The first parameter the program reads.
        expected: String,
    },
}

/// Why one hook did not attach. Rendered with its sources ([`crate::errors::chain`]): aya's
/// verifier errors carry the verifier log in theirs.
#[derive(Debug, Error)]
pub(crate) enum AttachError {
    /// The hook's function is not there, or not as the program reads it.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// The object lacks the program (an inconsistent build).
    #[error("program {0} missing from the object")]
    MissingProgram(&'static str),
    /// The program is not of the type its hook needs (an inconsistent build).
    #[error("program of the wrong type")]
    ProgramType(#[source] aya::programs::ProgramError),
    /// aya could not read the kernel's BTF, which fentry needs.
    #[error("aya cannot read the BTF")]
    AyaBtf(#[source] Arc<aya::BtfError>),
    /// The kernel refused to load the program (the verifier, or a missing permission).
    #[error("load")]
    Load(#[source] aya::programs::ProgramError),
    /// The verifier refused a BPF helper the program calls that this kernel predates.
    #[error(
        "this kernel lacks the BPF helper {} (added in Linux {}), which the program calls",
        helper.name,
        helper.since
    )]
    MissingHelper {
        /// The helper.
        helper: &'static Helper,
        /// The load error with the verifier's log (boxed: this variant is rare, and the error
        /// type stays small).
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// The kernel refused to attach the loaded program.
    #[error("attach")]
    Attach(#[source] aya::programs::ProgramError),
}

/// A BPF helper some kernels lack.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Helper {
    /// Its number (`enum bpf_func_id`).
    id: u32,
    /// Its name, e.g. `bpf_get_func_arg`.
    pub(crate) name: &'static str,
    /// The first kernel that has it, e.g. `5.17`.
    pub(crate) since: &'static str,
}

/// The helpers the programs call that are newer than the oldest kernel the ring buffer allows
/// (5.8): what the verifier names `unknown#N` on a kernel that predates one.
const NEWER_HELPERS: [Helper; 2] = [
    Helper {
        id: 158,
        name: "bpf_get_current_task_btf",
        since: "5.11",
    },
    Helper {
        id: 183,
        name: "bpf_get_func_arg",
        since: "5.17",
    },
];

impl AttachError {
    /// A load error, named as a missing helper when the verifier's complaint is one: `invalid
    /// func unknown#183` is 5.10's word for a helper it does not know.
    pub(crate) fn load(error: aya::programs::ProgramError) -> AttachError {
        match missing_helper(&error.to_string()) {
            Some(helper) => AttachError::MissingHelper {
                helper,
                source: Box::new(error),
            },
            None => AttachError::Load(error),
        }
    }
}

/// The helper a verifier log says this kernel does not know, if it names one of
/// [`NEWER_HELPERS`].
pub(crate) fn missing_helper(log: &str) -> Option<&'static Helper> {
    const SAID: &str = "invalid func unknown#";
    let at = log.find(SAID)? + SAID.len();
    let digits: String = log[at..].chars().take_while(char::is_ascii_digit).collect();
    let id: u32 = digits.parse().ok()?;
    NEWER_HELPERS.iter().find(|h| h.id == id)
}

/// Why a charge-path mode cannot be used on this kernel.
#[derive(Debug, Error)]
pub(crate) enum Unavailable {
    /// The kernel's BTF could not be read at all.
    #[error("no usable BTF, so no program can find its way in kernel structures")]
    NoBtf(#[source] BtfError),
    /// The BTF lacks what the charge-path programs read.
    #[error("no charge-path hook can be used")]
    ChargeLayout(#[source] BtfError),
    /// The family's primary hook did not attach.
    #[error("{hook} did not attach")]
    Hook {
        /// `fentry __mod_memcg_lruvec_state`, ...
        hook: String,
        /// Why, down to the kernel's error.
        #[source]
        source: AttachError,
    },
}

/// Errors that stop the profiler from starting.
#[derive(Debug, Error)]
pub(crate) enum ProbeError {
    /// The binary was built with `AYA_BUILD_SKIP`.
    #[error(
        "this profiler binary was built without its kernel programs (AYA_BUILD_SKIP); \
         rebuild it with `cargo xtask build`"
    )]
    NoPrograms,
    /// The user asked for one charge-path mode and it cannot work here.
    #[error(
        "--mode {mode} is not available on this kernel (use --mode auto, or run `profiler \
         doctor` to see every hook)"
    )]
    ModeUnavailable {
        /// The mode asked for.
        mode: ChargeMode,
        /// Why it cannot be used, down to the kernel's reason.
        #[source]
        reason: Unavailable,
    },
    /// Loading the object failed as a whole.
    #[error("loading the kernel programs failed")]
    Load(#[from] aya::EbpfError),
    /// A map the programs define is missing or of the wrong type.
    #[error("the kernel programs lack map {0}: the binary is inconsistent, rebuild it")]
    Map(&'static str, #[source] aya::maps::MapError),
    /// The logger of the kernel programs could not start.
    #[error("starting the kernel programs' logger failed")]
    Logger(#[from] aya_log::Error),
}

#[cfg(test)]
mod helper_tests {
    use super::missing_helper;

    #[test]
    fn a_helper_the_kernel_predates_is_named() {
        // 5.10's verifier on the fentry programs (a vm-test guest).
        let log = "Verifier output: 0: (79) r1 = *(u64 *)(r1 +0)\ninvalid func unknown#183\n\
                   verification time 30 usec";
        let helper = missing_helper(log).map(|h| (h.name, h.since));
        assert_eq!(helper, Some(("bpf_get_func_arg", "5.17")));
        assert_eq!(missing_helper("invalid func unknown#9999"), None);
        assert_eq!(missing_helper("R1 invalid mem access 'scalar'"), None);
    }
}
