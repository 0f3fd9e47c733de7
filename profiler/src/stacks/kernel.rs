//! Kernel frame names, from `/proc/kallsyms` (no vmlinux needed): the function at or before
//! each address.
use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    sync::Arc,
};

use blazesym::{
    symbolize::{
        source::{Kernel, Source},
        Input, Symbolized, Symbolizer as Blazesym,
    },
    MaybeDefault,
};

/// Names kept before they are forgotten all at once (kernel stacks of memory charges pass
/// through a few hundred functions; this bounds a pathological mix).
const MAX_NAMES: usize = 1 << 16;
/// kallsyms has no sizes, so an address is named after the last symbol at or before it
/// however far that is. No kernel function is this long: an address farther from its symbol
/// is in something kallsyms did not list when read (a BPF program loaded since).
const MAX_FUNCTION_BYTES: usize = 256 << 10;

/// Names kernel addresses; kallsyms is read at the first name asked and again after the set
/// of loaded modules changed (their code moves the symbols around).
pub(crate) struct KernelNames {
    /// blazesym with kallsyms read, and the signature of `/proc/modules` when it was.
    reader: Option<(Blazesym, u64)>,
    source: Source<'static>,
    /// Name per address (already moved back into the call for return addresses).
    names: HashMap<u64, Arc<str>>,
    /// `[unknown] (kernel)`: kallsyms unreadable, or its addresses hidden (`kptr_restrict`).
    unknown: Arc<str>,
}

impl KernelNames {
    /// Nothing read yet.
    pub(crate) fn new() -> Self {
        let kernel = Kernel {
            kallsyms: MaybeDefault::Default,
            vmlinux: MaybeDefault::None,
            kaslr_offset: None,
            debug_syms: false,
            ..Kernel::default()
        };
        Self {
            reader: None,
            source: Source::from(kernel),
            names: HashMap::new(),
            unknown: Arc::from("[unknown] (kernel)"),
        }
    }

    /// Reads kallsyms now rather than at the first name asked (it takes about 0.1 s of CPU:
    /// better before a watch starts than during it).
    pub(crate) fn warm(&mut self) {
        let _ = self.name(0);
    }

    /// The function at `addr`, or `[unknown] (kernel)`.
    pub(crate) fn name(&mut self, addr: u64) -> Arc<str> {
        if let Some(name) = self.names.get(&addr) {
            return Arc::clone(name);
        }
        let (blazesym, _) = self.reader.get_or_insert_with(|| {
            let reader = Blazesym::builder()
                .enable_code_info(false)
                .enable_inlined_fns(false)
                .enable_demangling(false)
                .build();
            (reader, modules_signature())
        });
        let name = match blazesym.symbolize_single(&self.source, Input::AbsAddr(addr)) {
            Ok(Symbolized::Sym(sym)) if sym.offset < MAX_FUNCTION_BYTES => Arc::from(&*sym.name),
            Ok(_) => Arc::clone(&self.unknown),
            Err(err) => {
                log::debug!("cannot name kernel address {addr:#x}: {err}");
                Arc::clone(&self.unknown)
            }
        };
        if self.names.len() >= MAX_NAMES {
            self.names.clear();
        }
        self.names.insert(addr, Arc::clone(&name));
        name
    }

    /// Forgets kallsyms if modules were loaded or unloaded since it was read.
    pub(crate) fn prune(&mut self) {
        if self
            .reader
            .as_ref()
            .is_some_and(|(_, seen)| *seen != modules_signature())
        {
            log::debug!("kernel modules changed: reading kallsyms again");
            self.reader = None;
            self.names.clear();
        }
    }
}

/// A hash of the loaded modules and where they are, from `/proc/modules` (its use counts
/// change all the time and are left out). 0 when it cannot be read.
fn modules_signature() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/modules") else {
        return 0;
    };
    signature_of(&text)
}

/// The signature of a `/proc/modules` text: each module's name and address.
fn signature_of(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        fields.next().hash(&mut hasher);
        fields.last().hash(&mut hasher);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_signature_ignores_use_counts() {
        let before = "nf_conntrack 172032 5 nf_nat, Live 0xffffffffc0a00000\n\
                      overlay 151552 10 - Live 0xffffffffc0900000\n";
        let used = "nf_conntrack 172032 7 nf_nat, Live 0xffffffffc0a00000\n\
                    overlay 151552 12 - Live 0xffffffffc0900000\n";
        let reloaded = "nf_conntrack 172032 5 nf_nat, Live 0xffffffffc0b00000\n\
                        overlay 151552 10 - Live 0xffffffffc0900000\n";
        assert_eq!(signature_of(before), signature_of(used));
        assert_ne!(signature_of(before), signature_of(reloaded));
        assert_ne!(signature_of(before), signature_of(""));
    }
}
