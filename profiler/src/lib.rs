//! The profiler's user space: kernel layout discovery (BTF), cgroup reading, the kernel
//! programs' loader and maps, the collector, and the subcommands.
//!
//! The binary is a thin shell over [`cli`] (the arguments) and [`cmd`] (one module per
//! subcommand); everything else is private to this crate, so what nothing uses shows as dead.

mod btf;
mod ceilings;
mod cgroup;
pub mod cli;
pub mod cmd;
mod collector;
mod deaths;
mod distributions;
mod errors;
mod forecast;
mod kmsg;
mod mode;
mod node;
mod output;
mod pods;
mod privilege;
mod probe;
mod processes;
mod record;
mod serve;
mod stacks;
