//! Types shared byte for byte between the kernel programs (`profiler-ebpf`) and the collector
//! (`profiler`).
//!
//! Every type here is `#[repr(C)]`, `Copy`, made of fixed-width integers and padded explicitly,
//! so both sides agree on the layout without a serializer. Each module holds one part of the
//! contract; with the `user` feature, the user-space half sits beside the types it reads
//! ([`aya::Pod`] for the map values, the decoder of the ring records), so a type and the code
//! that interprets its bytes change together.
#![no_std]

mod counters;
mod event;
mod layout;
mod stack;

pub use counters::{
    BurstBudget, MemcgSlot, ReclaimStart, SlotCounters, BUDGET_BATCH_PAGES, MAX_SLOTS,
    MAX_WATCHED_IDS, MEMCG_CACHE_ENTRIES, SLOT_UNWATCHED,
};
#[cfg(feature = "user")]
pub use event::KernelEvent;
pub use event::{
    read_error, BurstEvent, LastExit, OomVictim, ProcessExit, RingEventHeader, RingEventKind,
    SignalKey, SignalSeen, SignalSent, COMM_LEN, MAX_SIGNAL_KEYS, SIGKILL, SIGNAL_REPEAT_NS,
    SIGTERM, SI_KERNEL, SI_USER,
};
pub use layout::{ChargeLayout, TaskLayout, ITEM_NONE};
pub use stack::{
    ChargeStack, StackSampling, STACK_KERNEL_FRAMES, STACK_RECHECK_PAGES, STACK_USER_FRAMES,
};
