//! Lookups on a small hand-built BTF blob, independent of the machine's kernel; one host-tier
//! test on the running kernel's BTF.

use std::path::Path;

use super::*;

use crate::btf::test_blob::*;

/// ```c
/// struct inner { int x; int y; };
/// typedef struct inner inner_t;
/// struct outer {                      // size 64
///     int first;                      // 0
///     union {                         // 8
///         long whole;
///         struct { int lo; int hi; };
///     };
///     int flags:3;                    // bit 128
///     const inner_t nested;           // 24
///     struct inner arr[4];            // 32
/// };
/// struct with_ptr { struct outer *next; };
/// enum color { RED = 0, BLUE = 5 };
/// enum { ANON_A = 7, NEG = -1 };
/// enum big { HUGE = 0x100000002 };    // Enum64
/// enum { NEG = -2 };                  // (another translation unit)
/// typedef void (*btf_trace_demo)(void *, struct outer *, const inner_t);
/// void demo_fn(void *, struct outer *, const inner_t);
/// ```
fn demo_blob() -> Vec<u8> {
    let mut b = BlobBuilder::new();
    // 1, 2: base types.
    b.ty("int", INT, 0, 0, 4);
    b.words(&[(1 << 24) | 32]);
    b.ty("long", INT, 0, 0, 8);
    b.words(&[(1 << 24) | 64]);
    // 3: struct { int lo; int hi; }
    b.ty("", STRUCT, 2, 0, 8);
    b.named3("lo", 1, 0);
    b.named3("hi", 1, 32);
    // 4: union { long whole; struct { .. }; }
    b.ty("", UNION, 2, 0, 8);
    b.named3("whole", 2, 0);
    b.named3("", 3, 0);
    // 5: struct inner
    b.ty("inner", STRUCT, 2, 0, 8);
    b.named3("x", 1, 0);
    b.named3("y", 1, 32);
    // 6: typedef inner_t, 7: const inner_t
    b.ty("inner_t", TYPEDEF, 0, 0, 5);
    b.ty("", CONST, 0, 0, 6);
    // 8: struct outer (kind_flag 1: member offsets carry bitfield sizes)
    b.ty("outer", STRUCT, 5, 1, 64);
    b.named3("first", 1, 0);
    b.named3("", 4, 64);
    b.named3("flags", 1, (3 << 24) | 128);
    b.named3("nested", 7, 192);
    b.named3("arr", 9, 256);
    // 9: struct inner[4]
    b.ty("", ARRAY, 0, 0, 0);
    b.words(&[5, 1, 4]);
    // 10: enum color
    b.ty("color", ENUM, 2, 0, 4);
    b.named2("RED", 0);
    b.named2("BLUE", 5);
    // 11: anonymous signed enum
    b.ty("", ENUM, 2, 1, 4);
    b.named2("ANON_A", 7);
    b.named2("NEG", u32::MAX);
    // 12: enum64 big
    b.ty("big", ENUM64, 1, 0, 8);
    b.named3("HUGE", 2, 1);
    // 13: struct outer *, 14: void *
    b.ty("", PTR, 0, 0, 8);
    b.ty("", PTR, 0, 0, 0);
    // 15: void (void *, struct outer *, const inner_t)
    b.ty("", FUNC_PROTO, 3, 0, 0);
    b.named2("", 14);
    b.named2("", 13);
    b.named2("", 7);
    // 16: pointer to it, 17: typedef btf_trace_demo, 18: func demo_fn
    b.ty("", PTR, 0, 0, 15);
    b.ty("btf_trace_demo", TYPEDEF, 0, 0, 16);
    b.ty("demo_fn", FUNC, 1, 0, 15);
    // 19: struct with_ptr
    b.ty("with_ptr", STRUCT, 1, 0, 8);
    b.named3("next", 13, 0);
    // 20: another anonymous enum redefining NEG
    b.ty("", ENUM, 1, 1, 4);
    b.named2("NEG", u32::MAX - 1);
    b.finish()
}

fn demo() -> KernelBtf {
    match KernelBtf::from_bytes(&demo_blob()) {
        Ok(btf) => btf,
        Err(e) => panic!("hand-built BTF blob does not parse: {e}"),
    }
}

#[test]
fn member_offset_descends_through_anonymous_members() {
    let btf = demo();
    let offset = |path: &[&str]| match btf.member_offset("outer", path) {
        Ok(offset) => offset,
        Err(e) => panic!("outer.{}: {e}", path.join(".")),
    };
    assert_eq!(offset(&["first"]), 0);
    assert_eq!(offset(&["whole"]), 8);
    assert_eq!(offset(&["lo"]), 8);
    assert_eq!(offset(&["hi"]), 12);
    assert_eq!(offset(&["nested"]), 24);
    // Through a const typedef.
    assert_eq!(offset(&["nested", "y"]), 28);
    assert_eq!(offset(&["arr"]), 32);
}

#[test]
fn member_offset_errors_name_what_is_wrong() {
    let btf = demo();
    match btf.member_offset("outer", &["flags"]) {
        Err(e @ BtfError::Bitfield { .. }) => assert!(e.to_string().contains("flags")),
        other => panic!("bitfield: {other:?}"),
    }
    match btf.member_offset("outer", &["nested", "zz"]) {
        Err(e @ BtfError::MemberMissing { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("nested.zz") && msg.contains("outer"), "{msg}");
        }
        other => panic!("missing member: {other:?}"),
    }
    match btf.member_offset("with_ptr", &["next", "first"]) {
        Err(e @ BtfError::UnexpectedType { .. }) => {
            assert!(e.to_string().contains("struct outer *"), "{e}")
        }
        other => panic!("through a pointer: {other:?}"),
    }
    match btf.member_offset("nope", &["x"]) {
        Err(e @ BtfError::StructMissing { .. }) => assert!(e.to_string().contains("nope")),
        other => panic!("missing struct: {other:?}"),
    }
    assert!(matches!(
        btf.member_offset("outer", &[]),
        Err(BtfError::EmptyPath { .. })
    ));
}

#[test]
fn sizes_and_member_types() {
    let btf = demo();
    assert_eq!(btf.struct_size("outer").ok(), Some(64));
    assert_eq!(btf.struct_size("inner").ok(), Some(8));
    let info = |s: &str, path: &[&str]| match btf.member_type_info(s, path) {
        Ok(info) => info,
        Err(e) => panic!("{s}.{}: {e}", path.join(".")),
    };
    let member = |size, array, name: &str| MemberType {
        size,
        array,
        type_name: name.to_string(),
    };
    assert_eq!(info("outer", &["arr"]), member(32, Some((4, 8)), "inner"));
    assert_eq!(info("outer", &["nested"]), member(8, None, "inner_t"));
    assert_eq!(info("outer", &["whole"]), member(8, None, "long"));
    assert_eq!(info("outer", &["hi"]), member(4, None, "int"));
    assert_eq!(info("with_ptr", &["next"]), member(8, None, "outer *"));
    assert_eq!(
        btf.member_is_pointer("with_ptr", &["next"]).ok(),
        Some(true)
    );
    assert_eq!(
        btf.member_is_pointer("outer", &["nested"]).ok(),
        Some(false)
    );
}

#[test]
fn enum_lookup() {
    let btf = demo();
    assert_eq!(btf.enum_value("color", "BLUE").ok(), Some(5));
    assert_eq!(btf.enum_value("color", "RED").ok(), Some(0));
    assert_eq!(btf.enum_value("big", "HUGE").ok(), Some(0x1_0000_0002));
    assert_eq!(btf.enum_value_any("ANON_A").ok(), Some(7));
    assert_eq!(btf.enum_value_any("BLUE").ok(), Some(5));
    match btf.enum_value("color", "GREEN") {
        Err(e @ BtfError::VariantMissing { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("GREEN") && msg.contains("color"), "{msg}");
        }
        other => panic!("missing variant: {other:?}"),
    }
    match btf.enum_value("nope", "X") {
        Err(e @ BtfError::EnumMissing { .. }) => assert!(e.to_string().contains("nope")),
        other => panic!("missing enum: {other:?}"),
    }
    match btf.enum_value_any("MISSING") {
        Err(e @ BtfError::AnyVariantMissing { .. }) => assert!(e.to_string().contains("MISSING")),
        other => panic!("missing variant anywhere: {other:?}"),
    }
    match btf.enum_value_any("NEG") {
        Err(BtfError::AmbiguousVariant { values, .. }) => assert_eq!(values, vec![-1, -2]),
        other => panic!("ambiguous variant: {other:?}"),
    }
}

#[test]
fn tracepoint_prototype_and_functions() {
    let btf = demo();
    let params = btf.tracepoint_params("demo").ok().flatten();
    assert_eq!(
        params,
        Some(vec![
            "struct outer *".to_string(),
            "const inner_t".to_string()
        ])
    );
    assert!(matches!(btf.tracepoint_params("nope"), Ok(None)));
    assert!(btf.has_function("demo_fn"));
    assert!(!btf.has_function("btf_trace_demo"));
    assert!(!btf.has_function("nope"));
    // A function's own parameters: all of them (no context argument to drop).
    assert_eq!(
        btf.function_params("demo_fn").ok().flatten(),
        Some(vec![
            "void *".to_string(),
            "struct outer *".to_string(),
            "const inner_t".to_string()
        ])
    );
    assert!(matches!(btf.function_params("nope"), Ok(None)));
    // A typedef of that name is not a function.
    assert!(matches!(btf.function_params("btf_trace_demo"), Ok(None)));
}

/// The charge-path functions the fentry and kprobe modes hook, on the running kernel: under
/// one of their names (6.18 dropped the `__`), with the first parameter the mode expects.
#[test]
#[ignore = "host tier (cargo xtask test): reads the running kernel's BTF"]
fn the_running_kernel_has_the_charge_path_functions() {
    // Every kernel this project supports has BTF (no BTF means polling, and doctor says so);
    // a test that skipped itself without it could never fail.
    let btf = KernelBtf::load(std::path::Path::new(VMLINUX_BTF))
        .unwrap_or_else(|e| panic!("the running kernel's BTF does not load: {e}"));
    for (names, first) in [
        (
            ["__mod_memcg_lruvec_state", "mod_memcg_lruvec_state"],
            "struct lruvec *",
        ),
        (
            ["__mod_memcg_state", "mod_memcg_state"],
            "struct mem_cgroup *",
        ),
        (
            ["__count_memcg_events", "count_memcg_events"],
            "struct mem_cgroup *",
        ),
    ] {
        let found = names
            .iter()
            .find_map(|n| btf.function_params(n).ok().flatten());
        let params = found.unwrap_or_else(|| panic!("none of {names:?} in the kernel's BTF"));
        assert_eq!(params.first().map(String::as_str), Some(first), "{names:?}");
    }
}

/// The copy mapped from a memfd (kernels whose sysfs BTF cannot be mapped) answers as the
/// BTF parsed whole does.
#[test]
#[ignore = "host tier (cargo xtask test): reads the running kernel's BTF"]
fn a_mapped_copy_of_the_kernel_btf_answers_as_the_parsed_one() {
    let bytes = std::fs::read(VMLINUX_BTF).expect("the running kernel's BTF");
    let parsed = KernelBtf::new(Btf::from_bytes(&bytes).expect("parse whole"));
    let copied = KernelBtf::new(map_copy(bytes).expect("map a copy"));
    for function in ["mark_oom_victim", "__oom_kill_process", "do_send_sig_info"] {
        assert_eq!(
            parsed.function_params(function).ok().flatten(),
            copied.function_params(function).ok().flatten(),
            "{function}"
        );
    }
    assert!(copied
        .function_params("mark_oom_victim")
        .ok()
        .flatten()
        .is_some());
}

#[test]
fn load_reports_missing_and_unparsable_files() {
    match KernelBtf::load(Path::new("/nonexistent/btf/vmlinux")) {
        Err(e @ BtfError::Missing { .. }) => {
            assert!(e.to_string().contains("CONFIG_DEBUG_INFO_BTF"), "{e}")
        }
        other => panic!("missing file: {other:?}"),
    }
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("tempdir: {e}"),
    };
    let garbage = dir.path().join("garbage");
    if let Err(e) = std::fs::write(&garbage, b"not BTF at all") {
        panic!("write {}: {e}", garbage.display());
    }
    assert!(matches!(
        KernelBtf::load(&garbage),
        Err(BtfError::Parse { .. })
    ));
    // Truncated blob: the header promises more than there is.
    let mut blob = demo_blob();
    blob.truncate(blob.len() - 10);
    assert!(KernelBtf::from_bytes(&blob).is_err());
}
