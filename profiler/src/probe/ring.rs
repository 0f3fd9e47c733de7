//! The ring buffers, read from tokio: `EVENTS` (bursts, OOM victims, deaths, signals) and
//! `STACKS` (charge stack samples). Their records are decoded beside their types, in
//! `profiler_common`.
use std::os::fd::AsRawFd;

use aya::{
    maps::{MapData, RingBuf},
    Ebpf,
};
use profiler_common::{ChargeStack, KernelEvent};
use tokio::io::unix::AsyncFd;

use super::ProbeError;

/// A ring buffer, readable from tokio, whose records decode to `T`.
pub(crate) struct RingReader<T = KernelEvent> {
    ring: AsyncFd<RingBuf<MapData>>,
    decode: fn(&[u8]) -> Option<T>,
}

/// The `STACKS` ring buffer.
pub(crate) type StackReader = RingReader<ChargeStack>;

impl RingReader<KernelEvent> {
    /// Takes the `EVENTS` ring buffer out of `ebpf`.
    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<Self, ProbeError> {
        Self::take_named(ebpf, "EVENTS", |bytes| Some(KernelEvent::decode(bytes)))
    }
}

impl RingReader<ChargeStack> {
    /// Takes the `STACKS` ring buffer out of `ebpf`.
    pub(crate) fn take_stacks(ebpf: &mut Ebpf) -> Result<Self, ProbeError> {
        Self::take_named(ebpf, "STACKS", |bytes| {
            let sample = ChargeStack::decode(bytes);
            if sample.is_none() {
                log::debug!(
                    "a {}-byte record in the stacks ring is no sample",
                    bytes.len()
                );
            }
            sample
        })
    }
}

impl<T> RingReader<T> {
    fn take_named(
        ebpf: &mut Ebpf,
        name: &'static str,
        decode: fn(&[u8]) -> Option<T>,
    ) -> Result<Self, ProbeError> {
        let map = ebpf.take_map(name).ok_or(ProbeError::Map(
            name,
            aya::maps::MapError::InvalidName { name: name.into() },
        ))?;
        let ring = RingBuf::try_from(map).map_err(|e| ProbeError::Map(name, e))?;
        let fd = ring.as_raw_fd();
        // SAFETY: the ring buffer owns its map fd for as long as it lives.
        let ring = unsafe { AsyncFd::register(ring) }.map_err(|e| {
            ProbeError::Map(
                name,
                aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                    call: "epoll_ctl",
                    io_error: e.into(),
                }),
            )
        })?;
        log::debug!("{name} ring buffer fd {fd}");
        Ok(Self { ring, decode })
    }

    /// The records ready now, without waiting (for a ring whose producer wakes its reader only
    /// when it fills: it is looked at on a timer too).
    pub(crate) fn drain(&mut self) -> Vec<T> {
        let ring = self.ring.get_mut();
        let mut records = Vec::new();
        while let Some(item) = ring.next() {
            records.extend((self.decode)(&item));
        }
        records
    }

    /// Waits until records are ready, then returns all of them.
    pub(crate) async fn next_batch(&mut self) -> std::io::Result<Vec<T>> {
        loop {
            let mut guard = self.ring.readable_mut().await?;
            let ring = guard.get_inner_mut();
            let mut records = Vec::new();
            while let Some(item) = ring.next() {
                records.extend((self.decode)(&item));
            }
            guard.clear_ready();
            if !records.is_empty() {
                return Ok(records);
            }
        }
    }
}
