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
        expected: &'static str,
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
    /// The kernel refused to attach the loaded program.
    #[error("attach")]
    Attach(#[source] aya::programs::ProgramError),
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
