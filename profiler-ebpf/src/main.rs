//! Kernel programs of the profiler.
//!
//! Three families of raw tracepoints, all filtered to the cgroups user space asked for:
//! - the memcg charge path (`mod_memcg_state`, `mod_memcg_lruvec_state`, `count_memcg_events`):
//!   per-CPU counters per watched cgroup, and a burst event when a cgroup spends its budget;
//! - memcg reclaim (`mm_vmscan_memcg_reclaim_begin/end`): passes and stall time per cgroup;
//! - OOM kills (`mark_victim`): the victim, its RSS and its own memory cgroup.
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
mod floor;
mod layout;
mod oom;
mod reclaim;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this; it exists to satisfy `no_std`.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
