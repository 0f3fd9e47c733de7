//! Function and tracepoint prototypes, with their parameter types spelled as C spells them.
use btf_rs::{BtfType, Type};

use super::{pointer_to, qualified, KernelBtf, MAX_TYPE_DEPTH};
use crate::btf::BtfError;

impl KernelBtf {
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

    /// C spelling of a type, e.g. `struct task_struct *`, `const char *`, `uid_t`.
    pub(super) fn c_name(&self, ty: &Type, what: &str, depth: u32) -> Result<String, BtfError> {
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
