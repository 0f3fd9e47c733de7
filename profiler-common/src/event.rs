//! Records the kernel programs put in the `EVENTS` ring buffer, and (with the `user` feature)
//! their decoding in user space.

/// Length of a task's command name in the kernel (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// Kind of a ring buffer record. The discriminants are part of the kernel/user contract.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingEventKind {
    /// A watched cgroup spent its burst budget: see [`BurstEvent`].
    Burst = 1,
    /// The kernel chose an OOM victim: see [`OomVictim`].
    OomVictim = 2,
    /// A process of a watched cgroup died of a signal: see [`ProcessExit`].
    ProcessExit = 3,
    /// SIGKILL or SIGTERM was sent to a task of a watched cgroup: see [`SignalSent`].
    SignalSent = 4,
    /// A sampled charge, in the `STACKS` ring: see [`ChargeStack`](crate::ChargeStack).
    ChargeStack = 5,
}

/// `SIGKILL`, the signals the death programs follow: it ends a process without a say.
pub const SIGKILL: u32 = 9;
/// `SIGTERM`: the polite request to end that runtimes send first.
pub const SIGTERM: u32 = 15;
/// `si_code` of a signal the kernel sent itself (`SEND_SIG_PRIV`, `SI_KERNEL`): the OOM
/// killer's SIGKILL, for one.
pub const SI_KERNEL: i32 = 0x80;
/// `si_code` of a signal sent with `kill(2)` (`SEND_SIG_NOINFO`, `SI_USER`).
pub const SI_USER: i32 = 0;

/// Header at the start of every ring buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingEventHeader {
    /// A [`RingEventKind`] discriminant.
    pub kind: u32,
    /// Explicit padding (always zero).
    pub _pad: u32,
    /// `bpf_ktime_get_boot_ns()` when the kernel produced the record.
    pub ktime_ns: u64,
}

/// A burst: the cgroup in `slot` charged its whole budget before user space's next sync.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BurstEvent {
    /// Common header, kind [`RingEventKind::Burst`].
    pub header: RingEventHeader,
    /// Slot of the watched cgroup.
    pub slot: u32,
    /// Explicit padding (always zero).
    pub _pad: u32,
    /// The budget that was spent, pages.
    pub budget_pages: i64,
    /// Cgroup id (kernfs inode) of the memcg that made the charge that spent it.
    pub cgroup_id: u64,
}

/// The victim the OOM killer marked (`oom:mark_victim`), with what the kernel knew of it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OomVictim {
    /// Common header, kind [`RingEventKind::OomVictim`].
    pub header: RingEventHeader,
    /// Cgroup id (kernfs inode) of the victim's own memory cgroup.
    pub cgroup_id: u64,
    /// Thread group id (the "pid" users see) of the victim.
    pub tgid: u32,
    /// Thread id of the victim task.
    pub pid: u32,
    /// Anonymous RSS, pages.
    pub anon_rss_pages: i64,
    /// File-backed RSS, pages.
    pub file_rss_pages: i64,
    /// Shared-memory RSS, pages.
    pub shmem_rss_pages: i64,
    /// Virtual size, pages.
    pub total_vm_pages: u64,
    /// `oom_score_adj` of the victim (-1000 ..= 1000).
    pub oom_score_adj: i32,
    /// Bit 0: the cgroup chain could not be read; bit 1: the mm could not be read.
    pub read_errors: u32,
    /// Command name, NUL padded.
    pub comm: [u8; COMM_LEN],
}

/// A process of a watched cgroup died of a signal (`sched:sched_process_exit`, its last
/// thread). Normal exits are only counted, in [`LastExit`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessExit {
    /// Common header, kind [`RingEventKind::ProcessExit`].
    pub header: RingEventHeader,
    /// Cgroup id of the process's own memory cgroup.
    pub cgroup_id: u64,
    /// Slot of the watched cgroup.
    pub slot: u32,
    /// Thread group id.
    pub tgid: u32,
    /// `task_struct.exit_code`: the `wait(2)` status (signal in the low 7 bits, 0x80 for a
    /// core dump, the exit status in bits 8..16).
    pub exit_code: u32,
    /// Explicit padding (always zero).
    pub _pad: u32,
    /// Command name, NUL padded.
    pub comm: [u8; COMM_LEN],
}

/// SIGKILL or SIGTERM generated for a task of a watched cgroup (`signal:signal_generate`),
/// with who sent it, read at send time (the sender may be gone by the time user space looks).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignalSent {
    /// Common header, kind [`RingEventKind::SignalSent`].
    pub header: RingEventHeader,
    /// Cgroup id of the target's memory cgroup.
    pub target_cgroup_id: u64,
    /// Cgroup id of the sender's memory cgroup (0 when it could not be read).
    pub sender_cgroup_id: u64,
    /// Slot of the watched cgroup the target belongs to.
    pub slot: u32,
    /// [`SIGKILL`] or [`SIGTERM`].
    pub sig: u32,
    /// Thread group id of the target.
    pub target_tgid: u32,
    /// Thread group id of the sender (the task running when the signal was generated).
    pub sender_tgid: u32,
    /// `si_code`: [`SI_USER`] for `kill(2)`, [`SI_KERNEL`] for the kernel's own, others for
    /// `tgkill`, queued signals, ...
    pub si_code: i32,
    /// The tracepoint's `result`: 0 delivered, 1 ignored, 2 already pending, 3 queue full,
    /// 4 information lost.
    pub result: i32,
    /// Command name of the target, NUL padded.
    pub target_comm: [u8; COMM_LEN],
    /// Command name of the sender, NUL padded.
    pub sender_comm: [u8; COMM_LEN],
    /// The same signal from the same sender to the same target sent again within
    /// [`SIGNAL_REPEAT_NS`] of the last record of it, counted instead of recorded: how many
    /// times since that record.
    pub repeats: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// A SIGKILL or SIGTERM from one sender to one target is recorded at most once in this long;
/// the repeats are counted (a process that sends SIGTERM in a loop would otherwise fill the
/// ring buffer and crowd out the OOM kills).
pub const SIGNAL_REPEAT_NS: u64 = 1_000_000_000;
/// How many (target, sender, signal) the repeat filter remembers (least recently used go).
pub const MAX_SIGNAL_KEYS: u32 = 4096;

/// The key of the repeat filter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalKey {
    /// The target's thread group id.
    pub target_tgid: u32,
    /// The sender's thread group id.
    pub sender_tgid: u32,
    /// The signal.
    pub sig: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// The repeat filter's memory of one (target, sender, signal).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalSeen {
    /// `bpf_ktime_get_boot_ns()` of the last record.
    pub recorded_ns: u64,
    /// Repeats counted since the key was first seen (added to atomically by every CPU).
    pub repeats: u64,
    /// [`repeats`](Self::repeats) at the last record: the record after it carries the
    /// difference.
    pub repeats_recorded: u64,
}

/// The processes of a watched cgroup that ended, per CPU: how many, and the last one (user
/// space takes the newest over the CPUs), so the exit of a container's last process is known
/// without a ring record per exit of a fork-heavy container.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LastExit {
    /// Processes that ended on this CPU since the slot was given out.
    pub exits: u64,
    /// `bpf_ktime_get_boot_ns()` of the last one.
    pub ktime_ns: u64,
    /// Its thread group id.
    pub tgid: u32,
    /// Its `task_struct.exit_code` (see [`ProcessExit::exit_code`]).
    pub exit_code: u32,
    /// Its command name, NUL padded.
    pub comm: [u8; COMM_LEN],
}

/// Bits of [`OomVictim::read_errors`].
pub mod read_error {
    /// The victim's cgroup could not be read.
    pub const CGROUP: u32 = 1;
    /// The victim's memory counters could not be read.
    pub const MM: u32 = 2;
}

// The layouts are part of the kernel/user contract: fail the build if padding creeps in.
const _: () = assert!(size_of::<RingEventHeader>() == 16);
const _: () = assert!(size_of::<BurstEvent>() == 40);
const _: () = assert!(size_of::<OomVictim>() == 88);
const _: () = assert!(size_of::<ProcessExit>() == 56);
const _: () = assert!(size_of::<SignalSent>() == 96);
const _: () = assert!(size_of::<SignalKey>() == 16);
const _: () = assert!(size_of::<SignalSeen>() == 24);
const _: () = assert!(size_of::<LastExit>() == 40);

#[cfg(feature = "user")]
pub use user::KernelEvent;

#[cfg(feature = "user")]
mod user {
    use core::mem::size_of;

    use super::{
        BurstEvent, LastExit, OomVictim, ProcessExit, RingEventHeader, RingEventKind, SignalSent,
    };

    /// A ring buffer record, decoded.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum KernelEvent {
        /// A watched cgroup spent its burst budget.
        Burst(BurstEvent),
        /// The OOM killer marked a victim.
        OomVictim(OomVictim),
        /// A process of a watched cgroup died of a signal.
        ProcessExit(ProcessExit),
        /// SIGKILL or SIGTERM was sent to a task of a watched cgroup.
        SignalSent(SignalSent),
        /// A record this version does not know (a newer kernel object, or corruption).
        Unknown {
            /// The kind field of the header (0 when the record is shorter than a header).
            kind: u32,
            /// Record length.
            len: usize,
        },
    }

    impl KernelEvent {
        /// Decodes one ring buffer record; a record too short for its kind, or of a kind this
        /// version does not know, is [`KernelEvent::Unknown`], never misread.
        pub fn decode(bytes: &[u8]) -> KernelEvent {
            let kind = read::<RingEventHeader>(bytes).map(|h| h.kind).unwrap_or(0);
            let event = if kind == RingEventKind::Burst as u32 {
                read::<BurstEvent>(bytes).map(KernelEvent::Burst)
            } else if kind == RingEventKind::OomVictim as u32 {
                read::<OomVictim>(bytes).map(KernelEvent::OomVictim)
            } else if kind == RingEventKind::ProcessExit as u32 {
                read::<ProcessExit>(bytes).map(KernelEvent::ProcessExit)
            } else if kind == RingEventKind::SignalSent as u32 {
                read::<SignalSent>(bytes).map(KernelEvent::SignalSent)
            } else {
                None
            };
            event.unwrap_or(KernelEvent::Unknown {
                kind,
                len: bytes.len(),
            })
        }
    }

    // SAFETY: `#[repr(C)]`, made of integers and byte arrays, with no implicit padding: every
    // bit pattern is a valid value.
    unsafe impl aya::Pod for LastExit {}

    /// Reads a `T` from the start of `bytes`, if they are long enough.
    fn read<T: Copy>(bytes: &[u8]) -> Option<T> {
        if bytes.len() < size_of::<T>() {
            return None;
        }
        // SAFETY: length checked; `T` is one of the `#[repr(C)]` plain-integer record types of
        // this module, for which every bit pattern is valid; read_unaligned needs no alignment.
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
    }

    #[cfg(test)]
    mod tests {
        extern crate std;
        use std::vec::Vec;

        use super::*;
        use crate::event::COMM_LEN;

        fn bytes_of<T>(value: &T) -> Vec<u8> {
            // SAFETY: test helper over the plain-integer record types of this module.
            unsafe { core::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
                .to_vec()
        }

        fn burst() -> BurstEvent {
            BurstEvent {
                header: RingEventHeader {
                    kind: RingEventKind::Burst as u32,
                    _pad: 0,
                    ktime_ns: 9,
                },
                slot: 3,
                _pad: 0,
                budget_pages: 512,
                cgroup_id: 77,
            }
        }

        #[test]
        fn decodes_a_victim() {
            let mut comm = [0u8; COMM_LEN];
            comm[..4].copy_from_slice(b"leak");
            let victim = OomVictim {
                header: RingEventHeader {
                    kind: RingEventKind::OomVictim as u32,
                    _pad: 0,
                    ktime_ns: 5,
                },
                cgroup_id: 42,
                tgid: 100,
                pid: 101,
                anon_rss_pages: 1000,
                file_rss_pages: 2,
                shmem_rss_pages: 3,
                total_vm_pages: 4000,
                oom_score_adj: -17,
                read_errors: 0,
                comm,
            };
            assert_eq!(
                KernelEvent::decode(&bytes_of(&victim)),
                KernelEvent::OomVictim(victim)
            );
        }

        #[test]
        fn decodes_a_burst() {
            let burst = burst();
            assert_eq!(
                KernelEvent::decode(&bytes_of(&burst)),
                KernelEvent::Burst(burst)
            );
        }

        #[test]
        fn short_or_unknown_records_are_reported_not_misread() {
            let bytes = bytes_of(&burst());
            assert_eq!(
                KernelEvent::decode(&bytes[..20]),
                KernelEvent::Unknown { kind: 1, len: 20 }
            );
            let mut other = bytes.clone();
            other[0] = 99;
            assert_eq!(
                KernelEvent::decode(&other),
                KernelEvent::Unknown {
                    kind: 99,
                    len: bytes.len()
                }
            );
            assert_eq!(
                KernelEvent::decode(&[]),
                KernelEvent::Unknown { kind: 0, len: 0 }
            );
        }
    }
}
