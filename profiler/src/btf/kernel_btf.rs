//! Generic queries on the kernel's BTF: enum values here, member offsets and sizes in
//! `members`, function and tracepoint prototypes in `prototypes`; the type-chain helpers they
//! share are at the end of this file.

use std::{collections::HashMap, io, path::Path, sync::OnceLock};

use btf_rs::{Backend, Btf, BtfType, Type};

use super::BtfError;

mod members;
mod prototypes;
#[cfg(test)]
mod tests;

/// Where the running kernel exposes its own BTF.
pub(crate) const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// `path`'s BTF, mapped and read where a query needs it rather than parsed whole: parsing a
/// 5 MB vmlinux BTF into btf-rs's cache took 45 MiB at its peak, most of a watch's resident
/// memory. sysfs lets `/sys/kernel/btf/vmlinux` be mapped only on recent kernels (it is on
/// this machine's 6.18): elsewhere a copy in a memfd is mapped instead.
fn mapped(path: &Path) -> Result<Btf, btf_rs::Error> {
    match Btf::from_file_with_backend(path, Backend::Mmap) {
        Ok(btf) => return Ok(btf),
        Err(btf_rs::Error::IO(e)) if e.kind() == io::ErrorKind::NotFound => {
            return Err(btf_rs::Error::IO(e))
        }
        Err(e) => log::debug!("{} cannot be mapped ({e}): mapping a copy", path.display()),
    }
    map_copy(std::fs::read(path)?)
}

/// BTF `bytes`, copied into a memfd and mapped from there.
fn map_copy(bytes: Vec<u8>) -> Result<Btf, btf_rs::Error> {
    use std::io::Write as _;
    use std::os::fd::{AsRawFd as _, FromRawFd as _};
    // SAFETY: memfd_create takes a NUL-terminated name and flags; the descriptor it returns
    // is owned by the File below alone.
    let fd = unsafe { libc::memfd_create(c"vmlinux-btf".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        // No memfd (a very old kernel or a seccomp policy): parse the bytes whole.
        return Btf::from_bytes(&bytes);
    }
    // SAFETY: `fd` was just created and nothing else owns it.
    let mut copy = unsafe { std::fs::File::from_raw_fd(fd) };
    copy.write_all(&bytes)?;
    drop(bytes);
    // The map is made from a new open of the memfd; the copy goes when both are closed.
    Btf::from_file_with_backend(format!("/proc/self/fd/{}", copy.as_raw_fd()), Backend::Mmap)
}

/// Longest chain of typedef / qualifier / pointer / array types followed before the BTF is
/// declared malformed (real kernels need fewer than ten; this only stops cycles).
const MAX_TYPE_DEPTH: u32 = 64;

/// Size of a pointer in the kernel. The profiler runs natively, so the kernel's pointers are as
/// wide as ours.
const POINTER_SIZE: u32 = size_of::<usize>() as u32;

/// The type of a struct member, as far as a BPF program reading it cares.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) struct MemberType {
    /// Size in bytes of the whole member (all elements for an array).
    pub size: u32,
    /// `(number of elements, element size in bytes)` when the member is an array.
    pub array: Option<(u32, u32)>,
    /// Name of the member's type (of the element type for an array), without the
    /// `struct`/`union`/`enum` keyword, typedefs kept: e.g. `percpu_counter`, `mm_rss_stat`,
    /// `atomic_long_t`, `pid_t`; a pointer is spelled `css_set *`.
    pub type_name: String,
}

/// The running kernel's BTF, with the lookups the profiler needs.
pub(crate) struct KernelBtf {
    btf: Btf,
    /// Variant name -> distinct values, over every enum; built on first use.
    enum_variants: OnceLock<HashMap<String, Vec<i64>>>,
}

impl std::fmt::Debug for KernelBtf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelBtf").finish_non_exhaustive()
    }
}

impl KernelBtf {
    /// Parses a raw BTF file, normally [`VMLINUX_BTF`].
    ///
    /// A file that does not exist gives [`BtfError::Missing`] (kernel without
    /// `CONFIG_DEBUG_INFO_BTF`); one that cannot be read or parsed gives [`BtfError::Parse`].
    pub(crate) fn load(path: &Path) -> Result<Self, BtfError> {
        let parse_error = |source| BtfError::Parse {
            path: path.to_path_buf(),
            source,
        };
        match mapped(path) {
            Ok(btf) => Ok(Self::new(btf)),
            Err(btf_rs::Error::IO(e)) if e.kind() == io::ErrorKind::NotFound => {
                Err(BtfError::Missing {
                    path: path.to_path_buf(),
                })
            }
            Err(source) => Err(parse_error(source)),
        }
    }

    /// Parses raw BTF data already in memory (a BTF blob, not an ELF file): the hand-built
    /// kernels of the tests.
    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, BtfError> {
        Btf::from_bytes(bytes)
            .map(Self::new)
            .map_err(|source| BtfError::Parse {
                path: "<bytes>".into(),
                source,
            })
    }

    fn new(btf: Btf) -> Self {
        Self {
            btf,
            enum_variants: OnceLock::new(),
        }
    }

    /// Value of `variant` in the enum named `enum_name` (`Enum` and `Enum64` kinds).
    ///
    /// Values are returned as `i64`; an unsigned 64-bit value above `i64::MAX` wraps.
    pub(crate) fn enum_value(&self, enum_name: &str, variant: &str) -> Result<i64, BtfError> {
        let types = self.types_by_name(enum_name)?;
        let mut found_enum = false;
        for ty in &types {
            let values = match ty {
                Type::Enum(_) | Type::Enum64(_) => self.enum_members(ty, enum_name)?,
                _ => continue,
            };
            found_enum = true;
            if let Some((_, value)) = values.into_iter().find(|(name, _)| name == variant) {
                return Ok(value);
            }
        }
        if found_enum {
            Err(BtfError::VariantMissing {
                enum_name: enum_name.to_string(),
                variant: variant.to_string(),
            })
        } else {
            Err(BtfError::EnumMissing {
                enum_name: enum_name.to_string(),
            })
        }
    }

    /// Value of `variant` searched in every enum, named or anonymous (the kernel declares some,
    /// like `MM_FILEPAGES`, in an anonymous enum).
    ///
    /// Several enums defining the name with different values give
    /// [`BtfError::AmbiguousVariant`].
    pub(crate) fn enum_value_any(&self, variant: &str) -> Result<i64, BtfError> {
        let index = match self.enum_variants.get() {
            Some(index) => index,
            None => {
                let built = self.build_enum_index()?;
                self.enum_variants.get_or_init(|| built)
            }
        };
        match index.get(variant).map(Vec::as_slice) {
            Some([value]) => Ok(*value),
            Some(values) if !values.is_empty() => Err(BtfError::AmbiguousVariant {
                variant: variant.to_string(),
                values: values.to_vec(),
            }),
            _ => Err(BtfError::AnyVariantMissing {
                variant: variant.to_string(),
            }),
        }
    }

    // ---- internals: type chains, shared by the lookups of this module and its children ----

    fn types_by_name(&self, name: &str) -> Result<Vec<Type>, BtfError> {
        self.btf
            .resolve_types_by_name(name)
            .map_err(|source| BtfError::Lookup {
                what: format!("types named `{name}`"),
                source,
            })
    }

    fn chained<T: BtfType + ?Sized>(&self, ty: &T, what: &str) -> Result<Type, BtfError> {
        self.btf
            .resolve_chained_type(ty)
            .map_err(|source| BtfError::Lookup {
                what: what.to_string(),
                source,
            })
    }

    fn name_of(&self, ty: &dyn BtfType, what: &str) -> Result<String, BtfError> {
        if ty.get_name_offset().is_none() {
            return Ok(String::new());
        }
        self.btf
            .resolve_name(ty)
            .map_err(|source| BtfError::Lookup {
                what: format!("a name in {what}"),
                source,
            })
    }

    fn type_name(&self, ty: &Type, what: &str) -> Result<String, BtfError> {
        match ty.as_btf_type() {
            Some(inner) => self.name_of(inner, what),
            None => Ok(String::new()),
        }
    }

    fn checked_u32(&self, value: u64, what: &str) -> Result<u32, BtfError> {
        u32::try_from(value).map_err(|_| BtfError::OutOfRange {
            what: what.to_string(),
            value: i64::try_from(value).unwrap_or(i64::MAX),
            width: "32 bits",
        })
    }

    fn unexpected(&self, what: &str, expected: &'static str, found: &Type) -> BtfError {
        let found = self
            .c_name(found, what, 0)
            .unwrap_or_else(|_| found.name().to_string());
        BtfError::UnexpectedType {
            what: what.to_string(),
            expected,
            found,
        }
    }

    /// Members of an `Enum` / `Enum64` type as `(name, value)`.
    fn enum_members(&self, ty: &Type, what: &str) -> Result<Vec<(String, i64)>, BtfError> {
        match ty {
            Type::Enum(e) => e
                .members
                .iter()
                .map(|m| {
                    let value = if e.is_signed() {
                        i64::from(m.val() as i32)
                    } else {
                        i64::from(m.val())
                    };
                    Ok((self.name_of(m, what)?, value))
                })
                .collect(),
            Type::Enum64(e) => e
                .members
                .iter()
                .map(|m| Ok((self.name_of(m, what)?, m.val() as i64)))
                .collect(),
            _ => Ok(Vec::new()),
        }
    }

    fn build_enum_index(&self) -> Result<HashMap<String, Vec<i64>>, BtfError> {
        // Type ids are dense: walk them rather than the crate's `FallibleIterator`, whose trait
        // is not re-exported.
        let (first, last) = self.btf.base().type_id_range();
        let mut index: HashMap<String, Vec<i64>> = HashMap::new();
        for id in first..=last {
            let ty = self
                .btf
                .resolve_type_by_id(id)
                .map_err(|source| BtfError::Lookup {
                    what: format!("type id {id} while listing all enums"),
                    source,
                })?;
            if !matches!(ty, Type::Enum(_) | Type::Enum64(_)) {
                continue;
            }
            for (name, value) in self.enum_members(&ty, "an enum")? {
                let values = index.entry(name).or_default();
                if !values.contains(&value) {
                    values.push(value);
                }
            }
        }
        Ok(index)
    }

    /// Follows typedefs, qualifiers and type tags down to the underlying type.
    fn strip_modifiers(&self, mut ty: Type, what: &str) -> Result<Type, BtfError> {
        for _ in 0..MAX_TYPE_DEPTH {
            match &ty {
                Type::Typedef(_)
                | Type::Const(_)
                | Type::Volatile(_)
                | Type::Restrict(_)
                | Type::TypeTag(_) => {
                    let next = match ty.as_btf_type() {
                        Some(inner) => self.chained(inner, what)?,
                        None => return Ok(ty),
                    };
                    ty = next;
                }
                _ => return Ok(ty),
            }
        }
        Err(self.too_deep(what))
    }

    fn too_deep(&self, what: &str) -> BtfError {
        BtfError::UnexpectedType {
            what: what.to_string(),
            expected: "a type chain shorter than 64 links",
            found: "a longer (cyclic?) chain".to_string(),
        }
    }
}

/// `T *`, or `T **` when `T` is itself a pointer.
fn pointer_to(pointee: &str) -> String {
    if pointee.ends_with('*') {
        format!("{pointee}*")
    } else {
        format!("{pointee} *")
    }
}

/// `const T`, or `T const` when `T` is a pointer (the pointer itself is qualified).
fn qualified(qualifier: &str, inner: &str) -> String {
    if inner.ends_with('*') {
        format!("{inner}{qualifier}")
    } else {
        format!("{qualifier} {inner}")
    }
}
