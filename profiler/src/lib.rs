//! The profiler's user space: kernel layout discovery (BTF), cgroup reading, the kernel
//! programs' loader and maps, the collector, and the subcommands.

pub mod btf;
pub mod cgroup;
pub mod cli;
pub mod cmd;
pub mod collector;
pub mod distributions;
pub mod errors;
pub mod forecast;
pub mod kmsg;
pub mod mode;
pub mod output;
pub mod pods;
pub mod privilege;
pub mod probe;
pub mod record;
