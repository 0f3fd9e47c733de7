//! What the kernel programs need from the running kernel's BTF.
//!
//! The eBPF programs are built without CO-RE relocations, so every enum value they filter on and
//! every struct member they read is computed here, in user space, from the kernel's own type
//! information (`/sys/kernel/btf/vmlinux`) at start-up. Nothing kernel-build-specific is
//! hard-coded: a kernel that differs yields a [`BtfError`] naming the missing type, member or
//! enum, and the loader disables only the feature that needed it.
//!
//! [`KernelBtf`] answers generic questions (enum values, member offsets, sizes, tracepoint
//! prototypes); [`memcg_items`], [`memcg_id_offsets`] and [`task_offsets`] turn those into what
//! each program needs.

mod error;
mod kernel_btf;
mod layout;

pub use error::BtfError;
pub use kernel_btf::{KernelBtf, MemberType, VMLINUX_BTF};
pub use layout::{
    memcg_id_offsets, memcg_items, task_offsets, MemcgIdOffsets, MemcgItems, TaskOffsets,
    RSS_LAYOUT_ATOMIC_ARRAY, RSS_LAYOUT_PERCPU_COUNTERS,
};
