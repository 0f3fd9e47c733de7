//! What the kernel programs need from the running kernel's BTF.
//!
//! The eBPF programs are built without CO-RE relocations, so every enum value they filter on and
//! every struct member they read is computed here, in user space, from the kernel's own type
//! information (`/sys/kernel/btf/vmlinux`) at start-up. Nothing kernel-build-specific is
//! hard-coded: a kernel that differs yields a [`BtfError`] naming the missing type, member or
//! enum, and the loader disables only the feature that needed it.
//!
//! [`KernelBtf`] answers generic questions (enum values, member offsets, sizes, function and
//! tracepoint prototypes); [`charge_layout`], [`task_layout`] and
//! [`mark_victim_takes_the_task`] turn those into what each program needs.

mod error;
mod kernel_btf;
mod layout;
#[cfg(test)]
mod test_blob;

pub(crate) use error::BtfError;
pub(crate) use kernel_btf::{KernelBtf, MemberType, VMLINUX_BTF};
pub(crate) use layout::{charge_layout, death_fields, mark_victim_takes_the_task, task_layout};
