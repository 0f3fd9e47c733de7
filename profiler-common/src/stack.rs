//! Sampled charge stacks: the kernel programs take one sample every so many pages a watched
//! cgroup charges (per CPU), with the user and kernel stacks of the task that charged, and
//! hand it to user space through their own ring buffer (`STACKS`), apart from the events, so
//! a storm of samples can never crowd out an OOM kill.

use crate::event::{RingEventHeader, COMM_LEN};

/// User frames a sample keeps (deeper stacks are cut at the root end).
pub const STACK_USER_FRAMES: usize = 64;
/// Kernel frames a sample keeps.
pub const STACK_KERNEL_FRAMES: usize = 32;

/// Pages a slot whose sampling is off charges (per CPU) before the kernel looks at its
/// sampling setting again: turning sampling on takes effect within this much.
pub const STACK_RECHECK_PAGES: i64 = 512;

/// One sampled charge, as the kernel took it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChargeStack {
    /// Common header, kind [`RingEventKind::ChargeStack`](crate::RingEventKind::ChargeStack).
    pub header: RingEventHeader,
    /// Slot of the watched cgroup that was charged.
    pub slot: u32,
    /// Thread group id (the pid users see) of the task that charged.
    pub tgid: u32,
    /// Pages this sample stands for: those the slot charged on this CPU since its previous
    /// sample.
    pub weight_pages: u64,
    /// Bytes of [`Self::user`] `bpf_get_stack` filled, or its negative error.
    pub user_bytes: i32,
    /// Bytes of [`Self::kernel`] filled, or a negative error.
    pub kernel_bytes: i32,
    /// Command name of the task that charged.
    pub comm: [u8; COMM_LEN],
    /// Kernel addresses, innermost first.
    pub kernel: [u64; STACK_KERNEL_FRAMES],
    /// User addresses, innermost first.
    pub user: [u64; STACK_USER_FRAMES],
}

/// Per-slot sampling setting (an array entry user space writes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackSampling {
    /// Mean pages between two samples of one CPU; 0: sampling off.
    pub interval_pages: u32,
    /// Explicit padding (always zero).
    pub _pad: u32,
}

#[cfg(feature = "user")]
mod user {
    use super::{ChargeStack, StackSampling};

    // SAFETY: `#[repr(C)]`, made of integers, no implicit padding.
    unsafe impl aya::Pod for StackSampling {}

    impl ChargeStack {
        /// Decodes one record of the `STACKS` ring; `None` when it is too short or not a
        /// sample (never misread).
        pub fn decode(bytes: &[u8]) -> Option<Self> {
            if bytes.len() < size_of::<Self>() {
                return None;
            }
            // SAFETY: length checked; a plain-integer `#[repr(C)]` type, every bit pattern valid.
            let sample = unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<Self>()) };
            (sample.header.kind == crate::RingEventKind::ChargeStack as u32).then_some(sample)
        }

        /// The user addresses filled, innermost first.
        pub fn user_frames(&self) -> &[u64] {
            frames(&self.user, self.user_bytes)
        }

        /// The kernel addresses filled, innermost first.
        pub fn kernel_frames(&self) -> &[u64] {
            frames(&self.kernel, self.kernel_bytes)
        }
    }

    /// The filled part of a stack: `bytes` as the helper returned it, bounded by the array,
    /// trailing zeros cut.
    fn frames(all: &[u64], bytes: i32) -> &[u64] {
        let filled = usize::try_from(bytes).unwrap_or(0) / size_of::<u64>();
        let filled = &all[..filled.min(all.len())];
        let end = filled.iter().rposition(|&a| a != 0).map_or(0, |i| i + 1);
        &filled[..end]
    }

    #[cfg(test)]
    mod tests {
        extern crate std;
        use std::vec::Vec;

        use super::*;
        use crate::{RingEventHeader, RingEventKind, COMM_LEN};

        fn sample() -> ChargeStack {
            let mut s = ChargeStack {
                header: RingEventHeader {
                    kind: RingEventKind::ChargeStack as u32,
                    _pad: 0,
                    ktime_ns: 7,
                },
                slot: 3,
                tgid: 42,
                weight_pages: 128,
                user_bytes: 24,
                kernel_bytes: -14,
                comm: [0; COMM_LEN],
                kernel: [0; crate::STACK_KERNEL_FRAMES],
                user: [0; crate::STACK_USER_FRAMES],
            };
            s.user[..3].copy_from_slice(&[0x401000, 0x401100, 0x401200]);
            s
        }

        fn bytes_of(s: &ChargeStack) -> Vec<u8> {
            // SAFETY: a plain-integer record.
            unsafe {
                core::slice::from_raw_parts(
                    (s as *const ChargeStack).cast::<u8>(),
                    size_of::<ChargeStack>(),
                )
            }
            .to_vec()
        }

        #[test]
        fn decodes_frames_and_errors() {
            let s = ChargeStack::decode(&bytes_of(&sample())).expect("a sample");
            assert_eq!(s.user_frames(), &[0x401000, 0x401100, 0x401200]);
            assert!(s.kernel_frames().is_empty(), "an error is no frames");
        }

        #[test]
        fn short_or_foreign_records_are_not_samples() {
            let bytes = bytes_of(&sample());
            assert_eq!(ChargeStack::decode(&bytes[..100]), None);
            let mut other = sample();
            other.header.kind = RingEventKind::Burst as u32;
            assert_eq!(ChargeStack::decode(&bytes_of(&other)), None);
            let mut huge = sample();
            huge.user_bytes = i32::MAX;
            let huge = ChargeStack::decode(&bytes_of(&huge)).expect("a sample");
            assert_eq!(
                huge.user_frames().len(),
                3,
                "bounded by the array, zeros cut"
            );
        }
    }
}

const _: () = assert!(size_of::<ChargeStack>() == 16 + 8 + 8 + 8 + 16 + 8 * 32 + 8 * 64);
const _: () = assert!(size_of::<StackSampling>() == 8);
