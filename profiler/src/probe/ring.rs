//! Decoding of the records the kernel programs put in the `EVENTS` ring buffer.
use std::{mem::size_of, os::fd::AsRawFd};

use aya::{
    maps::{MapData, RingBuf},
    Ebpf,
};
use profiler_common::{BurstEvent, OomVictim, RingEventHeader, RingEventKind};
use tokio::io::unix::AsyncFd;

use super::ProbeError;

/// A record from the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelEvent {
    /// A watched cgroup spent its burst budget.
    Burst(BurstEvent),
    /// The OOM killer marked a victim.
    OomVictim(OomVictim),
    /// A record this version does not know (a newer kernel object, or corruption).
    Unknown {
        /// The kind field of the header.
        kind: u32,
        /// Record length.
        len: usize,
    },
}

/// Decodes one ring buffer record.
pub fn decode(bytes: &[u8]) -> KernelEvent {
    let kind = read::<RingEventHeader>(bytes).map(|h| h.kind).unwrap_or(0);
    let event = if kind == RingEventKind::Burst as u32 {
        read::<BurstEvent>(bytes).map(KernelEvent::Burst)
    } else if kind == RingEventKind::OomVictim as u32 {
        read::<OomVictim>(bytes).map(KernelEvent::OomVictim)
    } else {
        None
    };
    event.unwrap_or(KernelEvent::Unknown {
        kind,
        len: bytes.len(),
    })
}

fn read<T: Copy>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: length checked; `T` is one of the `#[repr(C)]` plain-integer types of
    // profiler-common, for which every bit pattern is valid; read_unaligned needs no alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// The ring buffer, readable from tokio.
pub struct RingReader {
    ring: AsyncFd<RingBuf<MapData>>,
}

impl RingReader {
    /// Takes the `EVENTS` ring buffer out of `ebpf`.
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, ProbeError> {
        let map = ebpf.take_map("EVENTS").ok_or(ProbeError::Map(
            "EVENTS",
            aya::maps::MapError::InvalidName {
                name: "EVENTS".into(),
            },
        ))?;
        let ring = RingBuf::try_from(map).map_err(|e| ProbeError::Map("EVENTS", e))?;
        let fd = ring.as_raw_fd();
        // SAFETY: the ring buffer owns its map fd for as long as it lives.
        let ring = unsafe { AsyncFd::register(ring) }.map_err(|e| {
            ProbeError::Map(
                "EVENTS",
                aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                    call: "epoll_ctl",
                    io_error: e.into(),
                }),
            )
        })?;
        log::debug!("ring buffer fd {fd}");
        Ok(Self { ring })
    }

    /// Waits until records are ready, then returns all of them.
    pub async fn next_batch(&mut self) -> std::io::Result<Vec<KernelEvent>> {
        loop {
            let mut guard = self.ring.readable_mut().await?;
            let ring = guard.get_inner_mut();
            let mut events = Vec::new();
            while let Some(item) = ring.next() {
                events.push(decode(&item));
            }
            guard.clear_ready();
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use profiler_common::COMM_LEN;

    use super::*;

    fn bytes_of<T>(value: &T) -> Vec<u8> {
        // SAFETY: test helper over the plain-integer types of profiler-common.
        unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
            .to_vec()
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
        assert_eq!(decode(&bytes_of(&victim)), KernelEvent::OomVictim(victim));
    }

    #[test]
    fn decodes_a_burst() {
        let burst = BurstEvent {
            header: RingEventHeader {
                kind: RingEventKind::Burst as u32,
                _pad: 0,
                ktime_ns: 9,
            },
            slot: 3,
            _pad: 0,
            budget_pages: 512,
            cgroup_id: 77,
        };
        assert_eq!(decode(&bytes_of(&burst)), KernelEvent::Burst(burst));
    }

    #[test]
    fn short_or_unknown_records_are_reported_not_misread() {
        let burst = BurstEvent {
            header: RingEventHeader {
                kind: RingEventKind::Burst as u32,
                _pad: 0,
                ktime_ns: 9,
            },
            slot: 3,
            _pad: 0,
            budget_pages: 512,
            cgroup_id: 77,
        };
        let bytes = bytes_of(&burst);
        assert_eq!(
            decode(&bytes[..20]),
            KernelEvent::Unknown { kind: 1, len: 20 }
        );
        let mut other = bytes.clone();
        other[0] = 99;
        assert_eq!(
            decode(&other),
            KernelEvent::Unknown {
                kind: 99,
                len: bytes.len()
            }
        );
        assert_eq!(decode(&[]), KernelEvent::Unknown { kind: 0, len: 0 });
    }
}
