//! Struct members: offsets along a path (through anonymous structs and unions), sizes, and
//! the type of a member as a BPF program reading it cares.
use btf_rs::{Member, Struct, Type};

use super::{pointer_to, KernelBtf, MemberType, MAX_TYPE_DEPTH, POINTER_SIZE};
use crate::btf::BtfError;

impl KernelBtf {
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

    /// Whether the member at `path` is a pointer (after typedefs and qualifiers).
    pub(crate) fn member_is_pointer(
        &self,
        struct_name: &str,
        path: &[&str],
    ) -> Result<bool, BtfError> {
        let (_, member) = self.walk(struct_name, path)?;
        let what = format!("{struct_name}.{}", path.join("."));
        let ty = self.chained(&member, &what)?;
        Ok(matches!(self.strip_modifiers(ty, &what)?, Type::Ptr(_)))
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
}
