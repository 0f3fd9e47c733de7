//! The asynchronous reader of `/dev/kmsg`.
use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use tokio::io::{unix::AsyncFd, Interest};

use super::*;

/// Reads `/dev/kmsg` from the moment it is opened and yields the OOM kills logged after that.
pub(crate) struct KmsgOomWatcher {
    fd: AsyncFd<File>,
    path: PathBuf,
    buf: Vec<u8>,
    assembler: OomKillAssembler,
    losses: LossCounter,
}

/// Counts records lost to ring-buffer overruns, from `EPIPE` and sequence number gaps.
#[derive(Debug, Default)]
pub(super) struct LossCounter {
    last_seq: Option<u64>,
    /// `read(2)` reported `EPIPE` and no record has been read since.
    overrun_pending: bool,
    pub(super) lost: u64,
}

impl LossCounter {
    pub(super) fn overrun(&mut self) {
        self.overrun_pending = true;
    }

    /// Counts the records lost between the previous record and `seq`; after an overrun whose
    /// size is unknown (no previous record) counts one.
    pub(super) fn record(&mut self, seq: u64) {
        let gap = match self.last_seq {
            Some(last) if seq > last => seq - last - 1,
            _ => 0,
        };
        self.lost += if self.overrun_pending {
            gap.max(1)
        } else {
            gap
        };
        self.overrun_pending = false;
        self.last_seq = Some(seq);
    }
}

impl std::fmt::Debug for KmsgOomWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsgOomWatcher")
            .field("losses", &self.losses)
            .finish_non_exhaustive()
    }
}

impl KmsgOomWatcher {
    /// Opens [`DEV_KMSG`] non-blocking and positions it after the newest record, so only kills
    /// logged from now on are reported. Must be called inside a tokio runtime with I/O enabled.
    pub(crate) fn open() -> Result<Self, KmsgError> {
        Self::open_path(Path::new(DEV_KMSG))
    }

    fn open_path(path: &Path) -> Result<Self, KmsgError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(KmsgError::NoRuntime);
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| KmsgError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        file.seek(SeekFrom::End(0))
            .map_err(|source| KmsgError::Seek {
                path: path.to_path_buf(),
                source,
            })?;
        // SAFETY: the `File` owns its descriptor, keeps it open until the `AsyncFd` drops it
        // and always returns the same one; it is never swapped out through `get_mut`.
        let fd =
            unsafe { AsyncFd::register_with_interest(file, Interest::READABLE) }.map_err(|e| {
                KmsgError::Register {
                    path: path.to_path_buf(),
                    source: e.into_parts().1,
                }
            })?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
            buf: vec![0; RECORD_BUFFER],
            assembler: OomKillAssembler::new(),
            losses: LossCounter::default(),
        })
    }

    /// How many records the kernel overwrote before they could be read (a kill among them is
    /// lost). A count of at least one per overrun when the exact number is unknown.
    pub(crate) fn overwritten(&self) -> u64 {
        self.losses.lost
    }

    /// Waits for the next OOM kill. Records that do not parse are skipped (logged at debug
    /// level); only an I/O error on the device ends the wait with an error.
    ///
    /// Cancel-safe (usable in `tokio::select!`): a record is read and handled without an await
    /// in between, so dropping the future loses nothing.
    pub(crate) async fn next_kill(&mut self) -> Result<KmsgOomKill, KmsgError> {
        loop {
            let raw = self.next_raw_record().await?;
            match parse_record(&raw) {
                Ok(record) => {
                    self.losses.record(record.seq);
                    if let Some(kill) = self.assembler.push(&record) {
                        return Ok(kill);
                    }
                }
                Err(e) => log::debug!("skipping kernel log record: {e}"),
            }
        }
    }

    /// One `read(2)`, which returns exactly one record; waits while there is none.
    async fn next_raw_record(&mut self) -> Result<Vec<u8>, KmsgError> {
        loop {
            let mut guard = self.fd.readable().await.map_err(|source| KmsgError::Read {
                path: self.path.clone(),
                source,
            })?;
            let buf = &mut self.buf;
            match guard.try_io(|file| file.get_ref().read(buf)) {
                Ok(Ok(0)) => {
                    return Err(KmsgError::Read {
                        path: self.path.clone(),
                        source: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the kernel log device returned end of file",
                        ),
                    })
                }
                Ok(Ok(n)) => return Ok(buf[..n].to_vec()),
                // The ring buffer wrapped past our position; the next read resumes at the
                // oldest record still there.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EPIPE) => {
                    self.losses.overrun();
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(source)) => {
                    return Err(KmsgError::Read {
                        path: self.path.clone(),
                        source,
                    })
                }
                // EAGAIN: readiness was cleared, wait for the next record.
                Err(_would_block) => {}
            }
        }
    }
}
