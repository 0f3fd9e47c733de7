//! Whether the node may have changed since the last look at it: inotify on every directory
//! that look listed (the cgroup tree above the containers, the kubelet's log directories and
//! each pod's), so a quiet node is not walked again every round.
//!
//! cgroupfs reports `mkdir` and `rmdir` to inotify like any file system (a runtime makes and
//! removes cgroups with those system calls); a log link or directory made by the kubelet is an
//! ordinary file system event. What inotify cannot see (a change below a directory it was not
//! asked to watch, a runtime's state file rewritten) is caught by a full look every
//! [`FULL_LOOK`]; a queue overflow is an event, so a change.
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use inotify::{Inotify, WatchMask};

/// A full look at the node at least this often, whatever inotify said. Directories are watched
/// before they are listed, so no change falls between a look and the watch; this is the net
/// under what inotify cannot see (a tree of 20,000 cgroups takes about half a second to walk).
pub(crate) const FULL_LOOK: Duration = Duration::from_secs(300);
/// How often the node is looked at when inotify ran out of watches (`max_user_watches`)
/// before every directory had one: changes in the others are seen this late at worst.
pub(crate) const PARTIAL_LOOK: Duration = Duration::from_secs(10);

/// The node's directories under watch, and when the node was last looked at.
pub(crate) struct NodeChanges {
    /// `None` when inotify is unavailable or ran out of watches: every round looks.
    inotify: Option<Inotify>,
    /// Read buffer for events.
    buffer: Vec<u8>,
    /// When the node was last looked at.
    last_look: Option<Instant>,
    /// Some directories could not be watched: look every [`PARTIAL_LOOK`].
    partial: bool,
}

impl NodeChanges {
    /// Starts with nothing watched: the first call to [`due`](Self::due) says to look.
    pub(crate) fn new() -> Self {
        let inotify = Inotify::init()
            .map_err(|e| log::info!("inotify unavailable ({e}): the node is looked at every round"))
            .ok();
        Self {
            inotify,
            buffer: vec![0; 16 * 1024],
            last_look: None,
            partial: false,
        }
    }

    /// Whether to look at the node now: never looked, [`FULL_LOOK`] passed, inotify
    /// unavailable, or a watched directory changed (the events are consumed).
    pub(crate) fn due(&mut self, now: Instant) -> bool {
        let Some(inotify) = self.inotify.as_mut() else {
            return true;
        };
        let Some(last) = self.last_look else {
            return true;
        };
        let every = if self.partial {
            PARTIAL_LOOK
        } else {
            FULL_LOOK
        };
        let mut changed = now.duration_since(last) >= every;
        // Drain everything queued, so a change after this look shows at the next round.
        loop {
            match inotify.read_events(&mut self.buffer) {
                Ok(events) => {
                    let mut any = false;
                    for event in events {
                        any = true;
                        log::trace!("node change: {:?} {:?}", event.mask, event.name);
                    }
                    if !any {
                        break;
                    }
                    changed = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    log::warn!(
                        "reading inotify events failed ({e}): the node is looked at every round"
                    );
                    self.inotify = None;
                    return true;
                }
            }
        }
        changed
    }

    /// Look at the node at the next round, whatever inotify says (a watched cgroup was found
    /// gone: one made again under its name joins by the next look).
    pub(crate) fn force(&mut self) {
        self.last_look = None;
    }

    /// The node was looked at now; `dirs` were listed and are watched from now on.
    pub(crate) fn looked(&mut self, dirs: &[PathBuf], now: Instant) {
        self.last_look = Some(now);
        for dir in dirs {
            self.watch(dir);
        }
    }

    /// Watches `dir` for entries made, removed or renamed (a directory watched already keeps
    /// its watch; a removed one lost it with it). Called before a look lists it, a change
    /// after the call is seen either by that look or by the watch.
    pub(crate) fn watch(&mut self, dir: &Path) {
        let Some(inotify) = self.inotify.as_mut() else {
            return;
        };
        if self.partial {
            // Out of watches: the rest of the node is looked at every PARTIAL_LOOK.
            return;
        }
        let mask = WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::ONLYDIR;
        match inotify.watches().add(dir, mask) {
            Ok(_) => {}
            // Gone already: the look will not list it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // Out of watches: those made still tell their changes, the rest are looked at
            // every PARTIAL_LOOK (not every round: a huge tree would cost a walk a round).
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                if !self.partial {
                    log::warn!(
                        "cannot watch every directory of the node for changes ({e}; raise \
                         fs.inotify.max_user_watches): the node is looked at every {}s",
                        PARTIAL_LOOK.as_secs()
                    );
                }
                self.partial = true;
            }
            Err(e) => {
                log::warn!(
                    "cannot watch {} for changes ({e}): the node is looked at every round",
                    dir.display()
                );
                self.inotify = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_look_is_due_only_after_a_change_or_when_forced() {
        let temp = tempfile::tempdir().expect("temporary directory");
        let root = temp.path().to_path_buf();
        let mut changes = NodeChanges::new();
        // Linux always has inotify; a test that skipped itself without it could never fail.
        assert!(changes.inotify.is_some(), "inotify_init1 failed");
        let t0 = Instant::now();
        assert!(changes.due(t0), "never looked");
        changes.looked(std::slice::from_ref(&root), t0);
        assert!(!changes.due(t0), "nothing changed");
        std::fs::create_dir(root.join("pod1")).expect("mkdir");
        assert!(changes.due(t0), "a directory was made");
        assert!(!changes.due(t0), "the event was consumed");
        std::fs::remove_dir(root.join("pod1")).expect("rmdir");
        assert!(changes.due(t0), "a directory was removed");
        // A file written inside is not a change in what a look lists.
        std::fs::write(root.join("x"), "").expect("write");
        let _ = changes.due(t0);
        std::fs::write(root.join("x"), "more").expect("rewrite");
        assert!(
            !changes.due(t0),
            "a file's contents changed, not the listing"
        );
        changes.force();
        assert!(changes.due(t0), "forced");
        changes.looked(std::slice::from_ref(&root), t0);
        assert!(
            changes.due(t0 + FULL_LOOK),
            "a full look is due after {FULL_LOOK:?}"
        );
    }
}
