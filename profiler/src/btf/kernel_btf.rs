//! Generic queries on the kernel's BTF: enum values, member offsets, sizes, tracepoint prototypes.

use std::{collections::HashMap, io, path::Path, sync::OnceLock};

use btf_rs::{Btf, BtfType, Member, Struct, Type};

use super::BtfError;

/// Where the running kernel exposes its own BTF.
pub(crate) const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

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
        // Read whole, then parse from memory: parsing through the file costs ~130,000 seeks
        // on a 5 MB vmlinux BTF, about 0.2 s of start-up.
        let parsed = match std::fs::read(path) {
            Ok(bytes) => Btf::from_bytes(&bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BtfError::Missing {
                    path: path.to_path_buf(),
                })
            }
            Err(e) => Err(btf_rs::Error::IO(e)),
        };
        parsed.map(Self::new).map_err(|source| BtfError::Parse {
            path: path.to_path_buf(),
            source,
        })
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

    /// Byte offset of a member path inside a struct, e.g.
    /// `member_offset("mem_cgroup", &["css", "cgroup"])` is `offsetof(struct mem_cgroup,
    /// css.cgroup)`.
    ///
    /// Members of anonymous structs and unions are found transparently (the kernel nests many
    /// fields in them, e.g. `kernfs_node` or the randomized-layout groups of `task_struct`), and
    /// typedefs and qualifiers are resolved for intermediate members. Every member but the last
    /// must be a struct or union held by value (a pointer needs a separate read). A bitfield
    /// gives [`BtfError::Bitfield`].
    pub(crate) fn member_offset(&self, struct_name: &str, path: &[&str]) -> Result<u32, BtfError> {
        self.walk(struct_name, path).map(|(offset, _)| offset)
    }

    /// Size in bytes of the struct (or union) named `struct_name` (the tests check offsets
    /// against it).
    #[cfg(test)]
    pub(crate) fn struct_size(&self, struct_name: &str) -> Result<u32, BtfError> {
        let composite = self.find_composite(struct_name)?;
        self.checked_u32(composite.size() as u64, struct_name)
    }

    /// Size, array shape and type name of the member at `path` in `struct_name` (path rules as
    /// for [`KernelBtf::member_offset`]).
    pub(crate) fn member_type_info(
        &self,
        struct_name: &str,
        path: &[&str],
    ) -> Result<MemberType, BtfError> {
        let (_, member) = self.walk(struct_name, path)?;
        let what = format!("{struct_name}.{}", path.join("."));
        let ty = self.chained(&member, &what)?;
        match self.strip_modifiers(ty.clone(), &what)? {
            Type::Array(array) => {
                let len = self.checked_u32(array.len() as u64, &what)?;
                let elem = self.chained(&array, &what)?;
                let elem_size = self.type_size(&elem, &what, 0)?;
                let size = u64::from(len) * u64::from(elem_size);
                Ok(MemberType {
                    size: self.checked_u32(size, &what)?,
                    array: Some((len, elem_size)),
                    type_name: self.short_name(&elem, &what, 0)?,
                })
            }
            _ => Ok(MemberType {
                size: self.type_size(&ty, &what, 0)?,
                array: None,
                type_name: self.short_name(&ty, &what, 0)?,
            }),
        }
    }

    /// Parameter types of the raw tracepoint `name`, spelled as in C (`struct task_struct *`,
    /// `uid_t`, `long unsigned int` — base types keep the compiler's spelling, as `bpftool`
    /// prints them), without the leading `void *` context argument.
    ///
    /// They come from the typedef `btf_trace_<name>`, a pointer to the probe's function
    /// prototype. `None` when the kernel has no such tracepoint.
    pub(crate) fn tracepoint_params(&self, name: &str) -> Result<Option<Vec<String>>, BtfError> {
        let typedef_name = format!("btf_trace_{name}");
        let Some(typedef) = self
            .types_by_name(&typedef_name)?
            .into_iter()
            .find(|ty| matches!(ty, Type::Typedef(_)))
        else {
            return Ok(None);
        };
        let pointer = self.strip_modifiers(typedef, &typedef_name)?;
        let Type::Ptr(pointer) = pointer else {
            return Err(self.unexpected(&typedef_name, "a pointer to a function", &pointer));
        };
        let proto = self.chained(&pointer, &typedef_name)?;
        let Type::FuncProto(proto) = proto else {
            return Err(self.unexpected(&typedef_name, "a pointer to a function", &proto));
        };
        let Some((context, params)) = proto.parameters.split_first() else {
            return Err(BtfError::UnexpectedType {
                what: typedef_name,
                expected: "a function whose first parameter is `void *`",
                found: "a function without parameters".to_string(),
            });
        };
        let context_type = self.chained(context, &typedef_name)?;
        let context_type = self.c_name(&context_type, &typedef_name, 0)?;
        if context_type != "void *" {
            return Err(BtfError::UnexpectedType {
                what: typedef_name,
                expected: "a function whose first parameter is `void *`",
                found: format!("a function whose first parameter is `{context_type}`"),
            });
        }
        params
            .iter()
            .map(|param| {
                if param.is_variadic() {
                    return Ok("...".to_string());
                }
                let ty = self.chained(param, &typedef_name)?;
                self.c_name(&ty, &typedef_name, 0)
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Parameter types of the kernel function `name` (a `FUNC` in BTF: a function with an
    /// out-of-line copy, which fentry, fexit and kprobes can hook), spelled as
    /// [`tracepoint_params`](Self::tracepoint_params) spells them. `None` when BTF has no such
    /// function.
    pub(crate) fn function_params(&self, name: &str) -> Result<Option<Vec<String>>, BtfError> {
        let Some(func) = self
            .types_by_name(name)?
            .into_iter()
            .find(|ty| matches!(ty, Type::Func(_)))
        else {
            return Ok(None);
        };
        let Type::Func(func) = func else {
            return Ok(None);
        };
        let proto = self.chained(&func, name)?;
        let Type::FuncProto(proto) = proto else {
            return Err(self.unexpected(name, "a function prototype", &proto));
        };
        proto
            .parameters
            .iter()
            .map(|param| {
                if param.is_variadic() {
                    return Ok("...".to_string());
                }
                let ty = self.chained(param, name)?;
                self.c_name(&ty, name, 0)
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Whether a function (`FUNC`) named `name` exists, i.e. could be an fentry/fexit target
    /// (the loader asks [`function_params`](Self::function_params), which says more).
    #[cfg(test)]
    pub(crate) fn has_function(&self, name: &str) -> bool {
        self.btf
            .resolve_types_by_name(name)
            .map(|types| types.iter().any(|ty| matches!(ty, Type::Func(_))))
            .unwrap_or(false)
    }

    /// Whether the member at `path` is a pointer (after typedefs and qualifiers).
    pub(super) fn member_is_pointer(
        &self,
        struct_name: &str,
        path: &[&str],
    ) -> Result<bool, BtfError> {
        let (_, member) = self.walk(struct_name, path)?;
        let what = format!("{struct_name}.{}", path.join("."));
        let ty = self.chained(&member, &what)?;
        Ok(matches!(self.strip_modifiers(ty, &what)?, Type::Ptr(_)))
    }

    // ---- internals ----

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

    /// The struct (preferred) or union named `name`.
    fn find_composite(&self, name: &str) -> Result<Struct, BtfError> {
        let types = self.types_by_name(name)?;
        let mut union = None;
        for ty in types {
            match ty {
                Type::Struct(s) => return Ok(s),
                Type::Union(u) if union.is_none() => union = Some(u),
                _ => {}
            }
        }
        union.ok_or_else(|| BtfError::StructMissing {
            struct_name: name.to_string(),
        })
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

    /// Finds member `name` in `composite`, descending into anonymous struct/union members.
    /// Returns its bit offset relative to `composite` and the member itself.
    fn find_member(
        &self,
        composite: &Struct,
        name: &str,
        what: &str,
        depth: u32,
    ) -> Result<Option<(u64, Member)>, BtfError> {
        if depth > MAX_TYPE_DEPTH {
            return Err(self.too_deep(what));
        }
        for member in &composite.members {
            let member_name = self.name_of(member, what)?;
            if member_name == name {
                return Ok(Some((u64::from(member.bit_offset()), member.clone())));
            }
            if !member_name.is_empty() {
                continue;
            }
            let ty = self.chained(member, what)?;
            if let Type::Struct(inner) | Type::Union(inner) = self.strip_modifiers(ty, what)? {
                if let Some((offset, found)) = self.find_member(&inner, name, what, depth + 1)? {
                    return Ok(Some((u64::from(member.bit_offset()) + offset, found)));
                }
            }
        }
        Ok(None)
    }

    /// Resolves a member path: byte offset from the start of `struct_name`, and the last member.
    fn walk(&self, struct_name: &str, path: &[&str]) -> Result<(u32, Member), BtfError> {
        let mut composite = self.find_composite(struct_name)?;
        let mut container = format!("struct {struct_name}");
        let mut bits: u64 = 0;
        let mut last = None;
        for (i, part) in path.iter().enumerate() {
            let so_far = path[..=i].join(".");
            let what = format!("{struct_name}.{so_far}");
            let (offset, member) =
                self.find_member(&composite, part, &what, 0)?
                    .ok_or_else(|| BtfError::MemberMissing {
                        struct_name: struct_name.to_string(),
                        member: so_far.clone(),
                        container: container.clone(),
                    })?;
            let is_bitfield = member.bitfield_size().is_some_and(|bits| bits > 0);
            if is_bitfield || offset % 8 != 0 {
                return Err(BtfError::Bitfield {
                    struct_name: struct_name.to_string(),
                    member: so_far,
                });
            }
            bits += offset;
            if i + 1 < path.len() {
                let ty = self.chained(&member, &what)?;
                match self.strip_modifiers(ty, &what)? {
                    Type::Struct(inner) | Type::Union(inner) => {
                        container = format!("{struct_name}.{so_far}");
                        composite = inner;
                    }
                    other => {
                        return Err(self.unexpected(
                            &what,
                            "a struct or union held by value",
                            &other,
                        ))
                    }
                }
            }
            last = Some(member);
        }
        let member = last.ok_or_else(|| BtfError::EmptyPath {
            struct_name: struct_name.to_string(),
        })?;
        let offset = self.checked_u32(bits / 8, &format!("{struct_name}.{}", path.join(".")))?;
        Ok((offset, member))
    }

    /// Size in bytes of a type.
    fn type_size(&self, ty: &Type, what: &str, depth: u32) -> Result<u32, BtfError> {
        if depth > MAX_TYPE_DEPTH {
            return Err(self.too_deep(what));
        }
        let size = match ty {
            Type::Int(t) => t.size(),
            Type::Float(t) => t.size(),
            Type::Enum(t) => t.size(),
            Type::Enum64(t) => t.size(),
            Type::Struct(t) | Type::Union(t) => t.size(),
            Type::Ptr(_) => POINTER_SIZE as usize,
            Type::Array(array) => {
                let elem = self.chained(array, what)?;
                let elem_size = self.type_size(&elem, what, depth + 1)?;
                let total = u64::from(elem_size) * array.len() as u64;
                return self.checked_u32(total, what);
            }
            Type::Typedef(_)
            | Type::Const(_)
            | Type::Volatile(_)
            | Type::Restrict(_)
            | Type::TypeTag(_) => {
                let inner = self.strip_modifiers(ty.clone(), what)?;
                return self.type_size(&inner, what, depth + 1);
            }
            other => return Err(self.unexpected(what, "a type with a size", other)),
        };
        self.checked_u32(size as u64, what)
    }

    /// Name of a type without the struct/union/enum keyword; typedef names are kept.
    fn short_name(&self, ty: &Type, what: &str, depth: u32) -> Result<String, BtfError> {
        if depth > MAX_TYPE_DEPTH {
            return Err(self.too_deep(what));
        }
        match ty {
            Type::Const(_) | Type::Volatile(_) | Type::Restrict(_) | Type::TypeTag(_) => {
                match ty.as_btf_type() {
                    Some(inner) => {
                        let inner = self.chained(inner, what)?;
                        self.short_name(&inner, what, depth + 1)
                    }
                    None => Ok(String::new()),
                }
            }
            Type::Ptr(ptr) => {
                let pointee = self.chained(ptr, what)?;
                let pointee = self.short_name(&pointee, what, depth + 1)?;
                Ok(pointer_to(&pointee))
            }
            Type::Void => Ok("void".to_string()),
            _ => self.type_name(ty, what),
        }
    }

    /// C spelling of a type, e.g. `struct task_struct *`, `const char *`, `uid_t`.
    fn c_name(&self, ty: &Type, what: &str, depth: u32) -> Result<String, BtfError> {
        if depth > MAX_TYPE_DEPTH {
            return Err(self.too_deep(what));
        }
        let inner = |t: &dyn BtfType| -> Result<String, BtfError> {
            let next = self.chained(t, what)?;
            self.c_name(&next, what, depth + 1)
        };
        let anonymous = |name: String| {
            if name.is_empty() {
                "<anonymous>".to_string()
            } else {
                name
            }
        };
        Ok(match ty {
            Type::Void => "void".to_string(),
            Type::Struct(_) => format!("struct {}", anonymous(self.type_name(ty, what)?)),
            Type::Union(_) => format!("union {}", anonymous(self.type_name(ty, what)?)),
            Type::Enum(_) | Type::Enum64(_) => {
                format!("enum {}", anonymous(self.type_name(ty, what)?))
            }
            Type::Fwd(fwd) => {
                let keyword = if fwd.is_union() { "union" } else { "struct" };
                format!("{keyword} {}", self.type_name(ty, what)?)
            }
            Type::Ptr(ptr) => match self.chained(ptr, what)? {
                Type::FuncProto(proto) => {
                    let (ret, params) = self.func_parts(&proto, what, depth)?;
                    format!("{ret} (*)({params})")
                }
                pointee => pointer_to(&self.c_name(&pointee, what, depth + 1)?),
            },
            Type::Const(t) => qualified("const", &inner(t)?),
            Type::Volatile(t) => qualified("volatile", &inner(t)?),
            Type::Restrict(t) => qualified("restrict", &inner(t)?),
            Type::TypeTag(t) => inner(t)?,
            Type::Array(array) => format!("{}[{}]", inner(array)?, array.len()),
            Type::FuncProto(proto) => {
                let (ret, params) = self.func_parts(proto, what, depth)?;
                format!("{ret} ({params})")
            }
            _ => self.type_name(ty, what)?,
        })
    }

    /// Return type and comma-separated parameter types of a function prototype.
    fn func_parts(
        &self,
        proto: &btf_rs::FuncProto,
        what: &str,
        depth: u32,
    ) -> Result<(String, String), BtfError> {
        let ret = self
            .btf
            .resolve_type_by_id(proto.return_type_id())
            .map_err(|source| BtfError::Lookup {
                what: what.to_string(),
                source,
            })?;
        let params = proto
            .parameters
            .iter()
            .map(|p| {
                if p.is_variadic() {
                    return Ok("...".to_string());
                }
                let ty = self.chained(p, what)?;
                self.c_name(&ty, what, depth + 1)
            })
            .collect::<Result<Vec<_>, BtfError>>()?;
        Ok((self.c_name(&ret, what, depth + 1)?, params.join(", ")))
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

#[cfg(test)]
mod tests;
