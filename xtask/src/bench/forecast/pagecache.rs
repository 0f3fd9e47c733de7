//! The file the page-cache scenario (5) reads.
use std::{
    fs::{self, File},
    io::{BufWriter, Write as _},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};

/// The file the page-cache scenario reads: on the target directory's (disk) file system, not
/// tmpfs, whose pages would be shmem charged to whoever wrote them. Removed when dropped.
pub(super) struct PagecacheFile {
    path: PathBuf,
}

impl PagecacheFile {
    /// Where the file is.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `mib` MiB to `<dir>/pagecache.data` (from this process, outside the test cgroups)
    /// and flushes it to disk.
    pub(super) fn create(dir: &Path, mib: u64) -> Result<Self> {
        let path = dir.join("pagecache.data");
        let this = Self { path };
        let mut file = BufWriter::new(
            File::create(&this.path)
                .with_context(|| format!("creating {}", this.path.display()))?,
        );
        let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        for _ in 0..mib {
            file.write_all(&chunk)
                .with_context(|| format!("writing {}", this.path.display()))?;
        }
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
            .with_context(|| format!("syncing {}", this.path.display()))?;
        Ok(this)
    }

    /// Evicts the file's (clean) pages from the page cache, so each run reads it from disk and
    /// its cgroup is charged for the cache.
    pub(super) fn drop_from_cache(&self) -> Result<()> {
        let file =
            File::open(&self.path).with_context(|| format!("opening {}", self.path.display()))?;
        // SAFETY: fadvise on a descriptor we own; offset 0, length 0 means the whole file.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            bail!(
                "posix_fadvise(DONTNEED) on {}: {}",
                self.path.display(),
                std::io::Error::from_raw_os_error(rc)
            );
        }
        Ok(())
    }
}

impl Drop for PagecacheFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
