//! Kernel programs of the profiler.
//!
//! Three families of programs, all filtered to the cgroups user space asked for:
//! - the memcg charge path (`charge`): every memcg stat update, through the `memcg:*` raw
//!   tracepoints, or fentry or kprobes on the functions they sit in (user space attaches one
//!   of the three): per-CPU counters per watched cgroup, and a burst event when a cgroup
//!   spends its budget;
//! - memcg reclaim (`reclaim`, `mm_vmscan_memcg_reclaim_begin/end`): passes and stall time per
//!   cgroup;
//! - OOM kills (`oom`, `mark_victim`): the victim, its RSS and its own memory cgroup.
//!
//! `maps` holds what they share with user space; `memcg` finds the watched slot of a memcg.
//!
//! There are no CO-RE relocations in Rust eBPF: every enum value and struct offset comes from
//! user space (read from the running kernel's BTF) through the `Global`s below, overridden at
//! load time. Nothing here knows a kernel build.
#![no_std]
#![no_main]
// Atomic fetch-and-add and exchange on map values (see `charge::spend_budget`).
#![feature(core_intrinsics)]
#![allow(
    internal_features,
    reason = "core_intrinsics is the only way to atomics on the BPF target"
)]

mod charge;
mod death;
mod floor;
mod maps;
mod memcg;
mod oom;
mod reclaim;
mod stack;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier rejects any program that could reach this; it exists to satisfy `no_std`.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
