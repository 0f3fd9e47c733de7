//! Opening the file a process mapped, so that it is the very file mapped (never one put at its
//! path since).
use std::{
    fs::{File, Metadata, OpenOptions},
    io,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::PathBuf,
};

use thiserror::Error;

use super::maps::{Backing, MapsLine};

/// Why the file of a mapping could not be opened.
#[derive(Debug, Error)]
pub(crate) enum OpenError {
    /// Opening failed (the process is gone, or the path names nothing any more).
    #[error("cannot open {}", path.display())]
    Open {
        /// What was opened.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// What the path names is not a regular file (a FIFO or directory put in its place).
    #[error("{} is not a regular file", path.display())]
    NotRegular {
        /// What was opened.
        path: PathBuf,
    },
    /// The path names another file than the one mapped (replaced since): its names would be
    /// wrong.
    #[error("{} is not the file mapped (its device or inode differ): replaced since", path.display())]
    Replaced {
        /// What was opened.
        path: PathBuf,
    },
    /// The mapping's file cannot be reached by a path (deleted, or not a file).
    #[error("the mapped file has no path to open it by (deleted)")]
    NoPath,
}

/// Opens the file mapped at `line` in process `pid`: `/proc/PID/map_files/START-END` (the
/// exact inode, even replaced or deleted; it needs `CAP_SYS_ADMIN`), else the path through
/// the process's root, accepted only if its device and inode are those of the maps line.
pub(crate) fn open_mapped(pid: u32, line: &MapsLine) -> Result<File, OpenError> {
    let direct = PathBuf::from(format!("/proc/{pid}/map_files/{}", line.map_files_name()));
    match open_regular(direct, 0) {
        Ok((file, _)) => return Ok(file),
        Err(err) => log::debug!("{err}; trying the mapped path"),
    }
    let Backing::File {
        path,
        deleted: false,
    } = &line.backing
    else {
        return Err(OpenError::NoPath);
    };
    let through_root = PathBuf::from(format!("/proc/{pid}/root{path}"));
    // A maps path has no symbolic links in it; one at its end would be a swap since.
    let (file, meta) = open_regular(through_root.clone(), libc::O_NOFOLLOW)?;
    if (dev_major_minor(meta.dev()), meta.ino()) != (line.dev, line.inode) {
        return Err(OpenError::Replaced { path: through_root });
    }
    Ok(file)
}

/// Opens a regular file for reading without blocking on a FIFO put in its place.
fn open_regular(path: PathBuf, flags: i32) -> Result<(File, Metadata), OpenError> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(flags | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .and_then(|file| file.metadata().map(|meta| (file, meta)));
    match opened {
        Ok((file, meta)) if meta.is_file() => Ok((file, meta)),
        Ok(_) => Err(OpenError::NotRegular { path }),
        Err(source) => Err(OpenError::Open { path, source }),
    }
}

/// `st_dev` as the (major, minor) pair maps lines print (glibc's `gnu_dev_major`/`minor`).
pub(crate) fn dev_major_minor(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (
        u32::try_from(major).unwrap_or(u32::MAX),
        u32::try_from(minor).unwrap_or(u32::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_as_maps_prints_them() {
        assert_eq!(dev_major_minor(0xfe00), (0xfe, 0));
        assert_eq!(dev_major_minor(0x0801), (8, 1));
        // Numbers past 8 bits of minor and 12 of major (glibc's `makedev(0x103, 0x1007)`).
        assert_eq!(dev_major_minor(0x0101_0307), (0x103, 0x1007));
    }
}
