//! Errors of the BTF lookups.

use std::path::PathBuf;

/// Why a lookup in the kernel's BTF failed. Each variant names the type, member or enum involved
/// so that the loader can say which feature it disabled and why.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BtfError {
    /// The BTF file does not exist.
    #[error(
        "no kernel BTF at {}: this kernel was built without CONFIG_DEBUG_INFO_BTF, so kernel \
         struct offsets cannot be computed; the profiler falls back to sources that need no \
         kernel type information",
        path.display()
    )]
    Missing {
        /// The path that was tried.
        path: PathBuf,
    },
    /// The BTF file exists but could not be read or parsed.
    #[error(
        "cannot read kernel BTF from {} (check that the file is readable, as root, and is a raw \
         BTF blob such as /sys/kernel/btf/vmlinux)",
        path.display()
    )]
    Parse {
        /// The file that was read (`<bytes>` for in-memory data).
        path: PathBuf,
        /// What the BTF parser reported.
        #[source]
        source: btf_rs::Error,
    },
    /// The BTF data is internally inconsistent (a type id or string that does not resolve).
    #[error(
        "kernel BTF is inconsistent while resolving {what} (the BTF blob is corrupt or uses an \
         encoding btf-rs does not understand)"
    )]
    Lookup {
        /// What was being resolved.
        what: String,
        /// What the BTF parser reported.
        #[source]
        source: btf_rs::Error,
    },
    /// No enum with this name exists.
    #[error(
        "kernel BTF has no enum named `{enum_name}`: this kernel version does not define it, \
         so the feature that needs it is unavailable"
    )]
    EnumMissing {
        /// The enum type name.
        enum_name: String,
    },
    /// The enum exists but has no such variant.
    #[error(
        "enum `{enum_name}` in kernel BTF has no variant `{variant}`: this kernel version does \
         not define it, so the feature that needs it is unavailable"
    )]
    VariantMissing {
        /// The enum type name.
        enum_name: String,
        /// The variant that was looked for.
        variant: String,
    },
    /// No enum at all has a variant with this name.
    #[error(
        "no enum in kernel BTF has a variant `{variant}`: this kernel version does not define \
         it, so the feature that needs it is unavailable"
    )]
    AnyVariantMissing {
        /// The variant that was looked for.
        variant: String,
    },
    /// Several enums define a variant with this name, with different values.
    #[error(
        "enum variant `{variant}` is defined with different values {values:?} in kernel BTF; \
         look it up in its named enum instead"
    )]
    AmbiguousVariant {
        /// The variant that was looked for.
        variant: String,
        /// The distinct values found.
        values: Vec<i64>,
    },
    /// No struct or union with this name exists.
    #[error(
        "kernel BTF has no struct `{struct_name}`: this kernel version does not define it, so \
         the feature that reads it is unavailable"
    )]
    StructMissing {
        /// The struct name.
        struct_name: String,
    },
    /// A member along the path does not exist.
    #[error(
        "struct `{struct_name}` in kernel BTF has no member `{member}` (looked in `{container}`, \
         including its anonymous structs and unions): this kernel's layout differs, so the \
         feature that reads it is unavailable"
    )]
    MemberMissing {
        /// The outermost struct of the lookup.
        struct_name: String,
        /// The member path up to and including the missing member, dot separated.
        member: String,
        /// The type the member was looked for in.
        container: String,
    },
    /// A member path was empty.
    #[error("empty member path for struct `{struct_name}`: name at least one member")]
    EmptyPath {
        /// The struct name.
        struct_name: String,
    },
    /// A member along the path is a bitfield, which has no byte offset.
    #[error(
        "member `{member}` of struct `{struct_name}` is a bitfield; it has no byte offset and \
         cannot be read with a plain load"
    )]
    Bitfield {
        /// The outermost struct of the lookup.
        struct_name: String,
        /// The member path, dot separated.
        member: String,
    },
    /// A type was not of the kind the lookup needs (e.g. a path descends into a pointer).
    #[error(
        "`{what}` in kernel BTF is `{found}`, expected {expected}: this kernel's layout differs \
         from what the profiler reads, so the feature is unavailable"
    )]
    UnexpectedType {
        /// The type or member that was inspected.
        what: String,
        /// What the lookup needs.
        expected: &'static str,
        /// What the BTF says.
        found: String,
    },
    /// A kernel feature a program needs is absent or has another shape than the profiler
    /// reads (e.g. a tracepoint with different arguments); the message says which.
    #[error("{0}")]
    Unsupported(String),
    /// A value does not fit the width the programs use.
    #[error("`{what}` is {value} in kernel BTF, which does not fit in {width}")]
    OutOfRange {
        /// What was computed.
        what: String,
        /// The value found.
        value: i64,
        /// The width it must fit in.
        width: &'static str,
    },
}
