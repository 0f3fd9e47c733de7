//! The `EVENTS` ring buffer, read from tokio; its records are decoded beside their types, in
//! `profiler_common`.
use std::os::fd::AsRawFd;

use aya::{
    maps::{MapData, RingBuf},
    Ebpf,
};
use profiler_common::KernelEvent;
use tokio::io::unix::AsyncFd;

use super::ProbeError;

/// The ring buffer, readable from tokio.
pub(crate) struct RingReader {
    ring: AsyncFd<RingBuf<MapData>>,
}

impl RingReader {
    /// Takes the `EVENTS` ring buffer out of `ebpf`.
    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<Self, ProbeError> {
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
    pub(crate) async fn next_batch(&mut self) -> std::io::Result<Vec<KernelEvent>> {
        loop {
            let mut guard = self.ring.readable_mut().await?;
            let ring = guard.get_inner_mut();
            let mut events = Vec::new();
            while let Some(item) = ring.next() {
                events.push(KernelEvent::decode(&item));
            }
            guard.clear_ready();
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }
}
