//! Why a process ended, in words a person can act on: the kernel's exit status decoded
//! ([`status`]), the story told from what the kernel said about the death — an OOM kill and
//! which limit, a signal and who sent it, or an exit code ([`explain`]).
//!
//! Pure: the collector gathers the evidence from the kernel programs, the kernel log and the
//! cgroup files, and these functions only phrase it, so every sentence is tested on data.
pub(crate) mod explain;
pub(crate) mod status;

pub(crate) use explain::{explain, Cause, Constraint, Death, OomStory, SignalStory, Standing};
pub(crate) use status::ExitStatus;
