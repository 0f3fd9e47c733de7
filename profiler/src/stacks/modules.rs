//! The files that processes map code from, kept open from the sample on so their code can be
//! named after the process exited (or its binary was replaced), and the names of their
//! addresses, looked up once per (module, file offset).
use std::{
    collections::HashMap,
    fs::{File, Metadata},
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    panic::{catch_unwind, AssertUnwindSafe},
    path::PathBuf,
    sync::Arc,
};

use blazesym::symbolize::{
    source::{Elf, Source},
    Input, Symbolized, Symbolizer as Blazesym,
};

/// Names kept per module before they are forgotten all at once: a long-running process with
/// a huge binary cannot grow the cache without bound, and the steady state of a leak (the same
/// few stacks) fills it again in a round.
const MAX_NAMES_PER_MODULE: usize = 1 << 16;

/// A file a process mapped code from, open. Stacks that hold it keep it open.
#[derive(Debug)]
pub(crate) struct ModuleFile {
    /// Tells modules apart for as long as the [`Modules`] that opened it lives (never reused,
    /// unlike file descriptors and paths).
    id: u64,
    /// The file: the exact inode mapped.
    file: File,
    /// The frame an address of it gets when no symbol covers it: `[unknown] (BASENAME)`.
    unknown: Arc<str>,
}

impl ModuleFile {
    /// What identifies it among the open modules.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The frame of an address no symbol of it covers.
    pub(crate) fn unknown(&self) -> &Arc<str> {
        &self.unknown
    }
}

/// What a file was when opened: the same inode with another size or time was written over in
/// place, and its old symbol tables are wrong (its mapped bytes too, for whoever maps it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl From<&Metadata> for FileKey {
    fn from(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

/// blazesym's reader of one module's symbols, made at the first name asked of it.
enum Reader {
    /// Not made yet.
    NotYet,
    /// Reads the module through `/proc/self/fd/N` of its open file. One per module, dropped
    /// with it: a cache keyed by that path can never name another file that later gets `N`.
    Ready(Box<(Blazesym, Source<'static>)>),
    /// Not to be read: the file changed since it was opened (reading it could give wrong
    /// names, or fault if it shrank under blazesym's mapping of it), or blazesym panicked on
    /// it (a container's binaries are anyone's input).
    Unusable,
}

/// An open module and what was learnt from it.
struct Entry {
    module: Arc<ModuleFile>,
    key: FileKey,
    reader: Reader,
    /// Name (or none) per file offset.
    names: HashMap<u64, Option<Arc<str>>>,
    /// When it was last used, in [`Modules`] ticks.
    last_used: u64,
}

impl Entry {
    /// The name of the function at a file offset, asking blazesym.
    fn look_up(&mut self, offset: u64) -> Option<Arc<str>> {
        let unchanged = self
            .module
            .file
            .metadata()
            .is_ok_and(|meta| FileKey::from(&meta) == self.key);
        if !unchanged {
            self.reader = Reader::Unusable;
        }
        if matches!(self.reader, Reader::NotYet) {
            let path = PathBuf::from(format!("/proc/self/fd/{}", self.module.file.as_raw_fd()));
            let mut elf = Elf::new(path);
            elf.debug_syms = false;
            let blazesym = Blazesym::builder()
                .enable_auto_reload(false)
                .enable_code_info(false)
                .enable_inlined_fns(false)
                .enable_demangling(true)
                .build();
            self.reader = Reader::Ready(Box::new((blazesym, Source::from(elf))));
        }
        let Reader::Ready(reader) = &self.reader else {
            return None;
        };
        let (blazesym, source) = reader.as_ref();
        let looked_up = catch_unwind(AssertUnwindSafe(|| {
            match blazesym.symbolize_single(source, Input::FileOffset(offset)) {
                Ok(Symbolized::Sym(sym)) if covers(sym.offset, sym.size) => {
                    Ok(Some(Arc::from(&*sym.name)))
                }
                Ok(_) => Ok(None),
                Err(err) => Err(err),
            }
        }));
        match looked_up {
            Ok(Ok(name)) => name,
            Ok(Err(err)) => {
                log::debug!("cannot read the symbols of {}: {err}", self.module.unknown);
                None
            }
            Err(_panic) => {
                log::warn!(
                    "reading the symbols of {} failed: its frames stay unnamed",
                    self.module.unknown
                );
                self.reader = Reader::Unusable;
                None
            }
        }
    }
}

/// Whether a symbol really covers an address `offset` bytes past its start. blazesym checks
/// sized symbols itself, but names an address after a preceding sizeless `.symtab` symbol at
/// any distance (padding, code with no symbol); such a name is a guess, so only an exact hit
/// on a sizeless symbol is taken.
pub(crate) fn covers(offset: usize, size: Option<usize>) -> bool {
    match size {
        Some(size) => offset < size,
        None => offset == 0,
    }
}

/// The open modules, deduplicated by inode (every process's libc is one module).
///
/// Bounded: when `capacity` modules are open and another is needed, the least recently used
/// one that nothing else refers to (no cached process maps it, no pending stack holds it) is
/// closed; when every one is referred to, the new one is not opened and its frames are
/// `[unknown] (BASENAME)` until [`Modules::prune`] frees room.
pub(crate) struct Modules {
    entries: HashMap<u64, Entry>,
    by_key: HashMap<FileKey, u64>,
    next_id: u64,
    capacity: usize,
}

/// No room for another module (see [`Modules`]).
#[derive(Debug)]
pub(crate) struct Full;

impl Modules {
    /// No modules, room for `capacity`.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            by_key: HashMap::new(),
            next_id: 0,
            capacity,
        }
    }

    /// The module of an opened file: the one already open for the same inode (the new file
    /// is closed), or a new one labelled by `basename`.
    pub(crate) fn intern(
        &mut self,
        file: File,
        basename: &str,
        tick: u64,
    ) -> Result<Arc<ModuleFile>, Full> {
        let key = match file.metadata() {
            Ok(meta) => FileKey::from(&meta),
            Err(err) => {
                // Cannot happen for an open regular file; not sharing it is harmless.
                log::debug!("cannot stat the open {basename}: {err}");
                FileKey {
                    dev: u64::MAX,
                    ino: self.next_id,
                    size: 0,
                    mtime: 0,
                    mtime_nsec: 0,
                }
            }
        };
        if let Some(entry) = self
            .by_key
            .get(&key)
            .and_then(|id| self.entries.get_mut(id))
        {
            entry.last_used = tick;
            return Ok(Arc::clone(&entry.module));
        }
        if self.entries.len() >= self.capacity && !self.evict_one() {
            return Err(Full);
        }
        let id = self.next_id;
        self.next_id += 1;
        let module = Arc::new(ModuleFile {
            id,
            file,
            unknown: Arc::from(format!("[unknown] ({basename})")),
        });
        self.by_key.insert(key, id);
        self.entries.insert(
            id,
            Entry {
                module: Arc::clone(&module),
                key,
                reader: Reader::NotYet,
                names: HashMap::new(),
                last_used: tick,
            },
        );
        Ok(module)
    }

    /// The name of the function at `offset` in `module`, `None` when no symbol covers it.
    pub(crate) fn name(&mut self, module: &ModuleFile, offset: u64, tick: u64) -> Option<Arc<str>> {
        let entry = self.entries.get_mut(&module.id)?;
        entry.last_used = tick;
        if let Some(name) = entry.names.get(&offset) {
            return name.clone();
        }
        let name = entry.look_up(offset);
        if entry.names.len() >= MAX_NAMES_PER_MODULE {
            entry.names.clear();
        }
        entry.names.insert(offset, name.clone());
        name
    }

    /// Closes the modules nothing refers to any more.
    pub(crate) fn prune(&mut self) {
        self.entries.retain(|_, e| Arc::strong_count(&e.module) > 1);
        let entries = &self.entries;
        self.by_key.retain(|_, id| entries.contains_key(id));
    }

    /// Closes the least recently used module nothing refers to; `false` if there is none.
    fn evict_one(&mut self) -> bool {
        let oldest = self
            .entries
            .iter()
            .filter(|(_, e)| Arc::strong_count(&e.module) == 1)
            .min_by_key(|(_, e)| e.last_used)
            .map(|(id, e)| (*id, e.key));
        let Some((id, key)) = oldest else {
            return false;
        };
        self.entries.remove(&id);
        self.by_key.remove(&key);
        true
    }

    /// How many modules are open.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_symbol_that_covers_the_address_names_it() {
        assert!(covers(0, Some(16)));
        assert!(covers(15, Some(16)));
        assert!(!covers(16, Some(16)));
        assert!(covers(0, None));
        assert!(!covers(1, None));
    }

    #[test]
    fn shares_a_module_per_inode_and_closes_unreferenced_ones() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("a");
        std::fs::write(&path, b"not an ELF file").expect("writing a file");
        let open = || File::open(&path).expect("opening the file");
        let mut modules = Modules::new(1);
        let first = modules.intern(open(), "a", 1).expect("room");
        let second = modules.intern(open(), "a", 2).expect("the same module");
        assert_eq!(first.id(), second.id());
        assert_eq!(first.unknown().as_ref(), "[unknown] (a)");
        // Not an ELF file: no name, and no panic.
        assert_eq!(modules.name(&first, 0, 3), None);
        let other = dir.path().join("b");
        std::fs::write(&other, b"another").expect("writing a file");
        // Full and every module referred to: no room.
        let b = || File::open(&other).expect("opening the file");
        assert!(modules.intern(b(), "b", 4).is_err());
        drop((first, second));
        // The unreferenced module makes room.
        let b = modules.intern(b(), "b", 5).expect("room after eviction");
        assert_eq!(modules.len(), 1);
        drop(b);
        modules.prune();
        assert_eq!(modules.len(), 0);
    }
}
