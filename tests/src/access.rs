//! Which files and directories a process opened or read, seen through inotify: for checks that
//! the profiler reads nothing outside the directories it was given.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One open or read of a watched directory itself (`name` empty) or of an entry in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// The watched directory.
    pub dir: PathBuf,
    /// The entry within it that was opened or read; empty for the directory itself.
    pub name: String,
}

/// An inotify instance watching directories for `IN_OPEN` and `IN_ACCESS` (listing a
/// directory opens it; reading a file opens and reads it). A `stat` is not seen.
pub struct AccessWatch {
    fd: libc::c_int,
    dirs: Vec<(libc::c_int, PathBuf)>,
}

impl AccessWatch {
    /// Starts watching each of `dirs` (not their subdirectories).
    #[track_caller]
    pub fn new(dirs: &[&Path]) -> Self {
        // SAFETY: no pointers involved.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1: {}", io::Error::last_os_error());
        let mut watch = Self {
            fd,
            dirs: Vec::new(),
        };
        for dir in dirs {
            let path = CString::new(dir.as_os_str().as_bytes()).expect("paths have no NUL bytes");
            // SAFETY: `path` is a NUL-terminated string that outlives the call.
            let wd = unsafe {
                libc::inotify_add_watch(fd, path.as_ptr(), libc::IN_OPEN | libc::IN_ACCESS)
            };
            assert!(
                wd >= 0,
                "inotify_add_watch {}: {}",
                dir.display(),
                io::Error::last_os_error()
            );
            watch.dirs.push((wd, dir.to_path_buf()));
        }
        watch
    }

    /// The accesses since the last call (or since the start).
    #[track_caller]
    pub fn take(&self) -> Vec<Access> {
        let header = size_of::<libc::inotify_event>();
        let mut accesses = Vec::new();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: reads at most buffer.len() bytes into the buffer.
            let got = unsafe { libc::read(self.fd, buffer.as_mut_ptr().cast(), buffer.len()) };
            let Ok(got) = usize::try_from(got) else {
                let error = io::Error::last_os_error();
                match error.kind() {
                    io::ErrorKind::WouldBlock => return accesses,
                    io::ErrorKind::Interrupted => continue,
                    _ => panic!("reading inotify events: {error}"),
                }
            };
            let mut at = 0;
            while at + header <= got {
                // SAFETY: the kernel wrote a whole event header at `at`; read_unaligned as the
                // buffer has no particular alignment.
                let event: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buffer[at..].as_ptr().cast()) };
                let name_len = event.len as usize;
                let name = buffer
                    .get(at + header..at + header + name_len)
                    .unwrap_or_default();
                let name = String::from_utf8_lossy(name)
                    .trim_end_matches('\0')
                    .to_owned();
                if let Some((_, dir)) = self.dirs.iter().find(|(wd, _)| *wd == event.wd) {
                    accesses.push(Access {
                        dir: dir.clone(),
                        name,
                    });
                }
                at += header + name_len;
            }
        }
    }
}

impl Drop for AccessWatch {
    fn drop(&mut self) {
        // SAFETY: closes the descriptor this value owns, once.
        unsafe { libc::close(self.fd) };
    }
}
