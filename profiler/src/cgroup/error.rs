//! Errors of cgroup reading.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while finding, validating or reading a memory cgroup.
///
/// Each message says what was wrong and what to do about it, because these reach the user of the
/// command line unchanged.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CgroupError {
    /// The path does not exist.
    #[error(
        "{path} does not exist; give the directory of an existing cgroup \
         (a process's cgroup is listed in /proc/<pid>/cgroup)"
    )]
    NotFound {
        /// The path as given.
        path: PathBuf,
    },

    /// The path exists but is not a directory.
    #[error(
        "{path} is not a directory; a cgroup is a directory such as \
         /sys/fs/cgroup/memory/<group> (cgroup v1) or /sys/fs/cgroup/<group> (cgroup v2)"
    )]
    NotADirectory {
        /// The path as given.
        path: PathBuf,
    },

    /// The directory exists but is not a memory cgroup; `reason` says why and what to name
    /// instead.
    #[error("{path} is not a memory cgroup: {reason}")]
    NotMemoryCgroup {
        /// The path as given.
        path: PathBuf,
        /// Why it was rejected, with a suggestion.
        reason: String,
    },

    /// The cgroup was removed after it was opened (its files vanished with ENOENT or ENODEV).
    ///
    /// This is an expected event for short-lived containers, not a failure: callers report it
    /// as `cgroup_gone` and stop watching.
    #[error("cgroup {path} is gone: it was removed while being watched")]
    Gone {
        /// The cgroup directory.
        path: PathBuf,
    },

    /// A cgroup or proc file could not be read for a reason other than the cgroup being gone.
    #[error(
        "cannot read {path} (check that it is readable by this user: cgroup files may need root)"
    )]
    Io {
        /// The file or directory that failed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A kernel file did not have the format this module knows.
    #[error(
        "cannot parse {file}{}: {reason}; the kernel's format differs from what this profiler \
         knows, please report it together with the file's contents",
        LineSuffix(*line)
    )]
    Parse {
        /// The file, as a full path where known.
        file: PathBuf,
        /// The 1-based line number of the offending line, if one line is at fault.
        line: Option<usize>,
        /// What was wrong.
        reason: String,
    },

    /// This process's memory cgroup could not be worked out from /proc/self/cgroup and
    /// /proc/self/mountinfo.
    #[error("cannot find this process's memory cgroup: {reason}")]
    OwnCgroup {
        /// Why, with a suggestion.
        reason: String,
    },
}

/// A parse failure inside one file's text, before the file's name is known.
///
/// The pure parsers return this; callers that know which file the text came from turn it into
/// [`CgroupError::Parse`] with [`ParseError::in_file`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ParseError {
    /// The 1-based line number of the offending line, if one line is at fault.
    pub line: Option<usize>,
    /// What was wrong.
    pub reason: String,
}

impl ParseError {
    /// An error about line `line` (1-based).
    pub(crate) fn at(line: usize, reason: impl Into<String>) -> Self {
        Self {
            line: Some(line),
            reason: reason.into(),
        }
    }

    /// An error about the file as a whole.
    pub(crate) fn whole(reason: impl Into<String>) -> Self {
        Self {
            line: None,
            reason: reason.into(),
        }
    }

    /// Attaches the file the text came from.
    pub(crate) fn in_file(self, file: impl Into<PathBuf>) -> CgroupError {
        CgroupError::Parse {
            file: file.into(),
            line: self.line,
            reason: self.reason,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for ParseError {}

/// Formats " line N" after a file name, or nothing when no single line is at fault.
struct LineSuffix(Option<usize>);

impl fmt::Display for LineSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, " line {line}"),
            None => Ok(()),
        }
    }
}
