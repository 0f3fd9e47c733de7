//! Resolvers run against this machine's kernel BTF (`/sys/kernel/btf/vmlinux`, kernel 6.18).

use std::{path::Path, sync::OnceLock};

use super::*;
use crate::btf::VMLINUX_BTF;

fn vmlinux() -> &'static KernelBtf {
    static BTF: OnceLock<KernelBtf> = OnceLock::new();
    BTF.get_or_init(|| match KernelBtf::load(Path::new(VMLINUX_BTF)) {
        Ok(btf) => btf,
        Err(e) => panic!("this test needs the machine's kernel BTF: {e}"),
    })
}

#[test]
fn memcg_id_chain_matches_hand_checked_offsets() {
    // Checked by hand on this kernel with a BPF program following memcg->css.cgroup->kn->id.
    let offsets = memcg_id_offsets(vmlinux());
    assert_eq!(
        offsets.ok(),
        Some(MemcgIdOffsets {
            css_cgroup: 0,
            cgroup_kn: 256,
            kn_id: 96,
        })
    );
}

#[test]
fn memcg_items_are_distinct_and_plausible() {
    let items = match memcg_items(vmlinux()) {
        Ok(items) => items,
        Err(e) => panic!("memcg items: {e}"),
    };
    let node_items = [items.nr_anon_mapped, items.nr_file_pages, items.nr_shmem];
    for (i, a) in node_items.iter().enumerate() {
        assert!(*a < 200, "node_stat_item value {a} is implausibly large");
        for b in &node_items[i + 1..] {
            assert_ne!(a, b, "{items:?}");
        }
    }
    // memcg_stat_item continues after the last node_stat_item.
    let kmem = items.memcg_kmem.unwrap_or_default();
    assert!(kmem > items.nr_shmem && kmem < 400, "{items:?}");
    let pgmajfault = items.pgmajfault.unwrap_or_default();
    assert!(pgmajfault > 0 && pgmajfault < 400, "{items:?}");
}

#[test]
fn task_offsets_fit_their_structs() {
    let btf = vmlinux();
    let t = match task_offsets(btf) {
        Ok(t) => t,
        Err(e) => panic!("task offsets: {e}"),
    };
    let size = |name: &str| match btf.struct_size(name) {
        Ok(size) => size,
        Err(e) => panic!("{e}"),
    };
    let task = size("task_struct");
    for (name, offset, width) in [
        ("pid", t.pid, 4),
        ("tgid", t.tgid, 4),
        ("comm", t.comm, 16),
        ("cgroups", t.cgroups, 8),
        ("mm", t.mm, 8),
        ("signal", t.signal, 8),
    ] {
        assert!(
            offset + width <= task,
            "task_struct.{name} at {offset} of {task}"
        );
    }
    assert_eq!(
        t.tgid,
        t.pid + 4,
        "pid and tgid are adjacent in task_struct"
    );
    assert!(t.css_set_subsys + 8 * (t.memory_cgrp_id + 1) <= size("css_set"));
    assert!(t.oom_score_adj + 2 <= size("signal_struct"));
    let mm = size("mm_struct");
    assert!(t.mm_total_vm + 8 <= mm);
    // 6.18 keeps struct percpu_counter rss_stat[NR_MM_COUNTERS].
    assert_eq!(t.rss_layout, RSS_LAYOUT_PERCPU_COUNTERS);
    assert_eq!(t.rss_stride, size("percpu_counter"));
    assert!(t.rss_count + 8 <= t.rss_stride);
    let last = t.mm_filepages.max(t.mm_anonpages).max(t.mm_shmempages);
    assert!(t.mm_rss_stat + (last + 1) * t.rss_stride <= mm);
    let mut counters = [t.mm_filepages, t.mm_anonpages, t.mm_shmempages];
    counters.sort_unstable();
    assert!(
        counters[0] != counters[1] && counters[1] != counters[2],
        "{t:?}"
    );
}

#[test]
fn task_offsets_match_bpftool() {
    // Values read with `bpftool btf dump file /sys/kernel/btf/vmlinux format c` on this kernel.
    let btf = vmlinux();
    assert_eq!(btf.enum_value_any("MM_FILEPAGES").ok(), Some(0));
    assert_eq!(btf.enum_value_any("MM_ANONPAGES").ok(), Some(1));
    assert_eq!(btf.enum_value_any("MM_SHMEMPAGES").ok(), Some(3));
    assert_eq!(
        btf.enum_value("cgroup_subsys_id", "memory_cgrp_id").ok(),
        Some(4)
    );
    assert_eq!(
        btf.enum_value("node_stat_item", "NR_ANON_MAPPED").ok(),
        Some(17)
    );
    assert_eq!(
        btf.enum_value("node_stat_item", "NR_FILE_PAGES").ok(),
        Some(19)
    );
    assert_eq!(btf.enum_value("node_stat_item", "NR_SHMEM").ok(), Some(22));
    assert_eq!(
        btf.enum_value("memcg_stat_item", "MEMCG_KMEM").ok(),
        Some(55)
    );
    assert_eq!(btf.enum_value("vm_event_item", "PGMAJFAULT").ok(), Some(24));
    let rss = btf.member_type_info("mm_struct", &["rss_stat"]);
    assert_eq!(
        rss.ok(),
        Some(MemberType {
            size: 4 * 40,
            array: Some((4, 40)),
            type_name: "percpu_counter".to_string(),
        })
    );
    assert_eq!(
        btf.member_offset("percpu_counter", &["count"]).ok(),
        Some(8)
    );
}

#[test]
fn tracepoint_prototypes_match_the_kernel() {
    let btf = vmlinux();
    let params = |name: &str| match btf.tracepoint_params(name) {
        Ok(params) => params,
        Err(e) => panic!("tracepoint {name}: {e}"),
    };
    let strings = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(
        params("mark_victim"),
        strings(&["struct task_struct *", "uid_t"])
    );
    assert_eq!(
        params("mod_memcg_lruvec_state"),
        strings(&["struct mem_cgroup *", "int", "int"])
    );
    assert_eq!(
        params("mod_memcg_state"),
        strings(&["struct mem_cgroup *", "int", "int"])
    );
    // BTF spells `unsigned long` the way the compiler names the base type.
    assert_eq!(
        params("count_memcg_events"),
        strings(&["struct mem_cgroup *", "int", "long unsigned int"])
    );
    assert_eq!(params("no_such_tracepoint_xyz"), None);
}

#[test]
fn functions_are_found() {
    let btf = vmlinux();
    assert!(btf.has_function("try_charge_memcg"));
    assert!(btf.has_function("out_of_memory"));
    assert!(!btf.has_function("no_such_function_xyz"));
    // A struct is not a function.
    assert!(!btf.has_function("task_struct"));
}

#[test]
fn missing_names_give_precise_errors() {
    let btf = vmlinux();
    match btf.enum_value("no_such_enum_xyz", "X") {
        Err(e @ BtfError::EnumMissing { .. }) => {
            assert!(e.to_string().contains("no_such_enum_xyz"))
        }
        other => panic!("missing enum: {other:?}"),
    }
    match btf.enum_value("node_stat_item", "NO_SUCH_ITEM") {
        Err(e @ BtfError::VariantMissing { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("NO_SUCH_ITEM") && msg.contains("node_stat_item"));
        }
        other => panic!("missing variant: {other:?}"),
    }
    match btf.enum_value_any("NO_SUCH_VARIANT_XYZ") {
        Err(e @ BtfError::AnyVariantMissing { .. }) => {
            assert!(e.to_string().contains("NO_SUCH_VARIANT_XYZ"))
        }
        other => panic!("missing variant anywhere: {other:?}"),
    }
    match btf.member_offset("no_such_struct_xyz", &["x"]) {
        Err(e @ BtfError::StructMissing { .. }) => {
            assert!(e.to_string().contains("no_such_struct_xyz"))
        }
        other => panic!("missing struct: {other:?}"),
    }
    match btf.member_offset("mem_cgroup", &["css", "no_such_member"]) {
        Err(e @ BtfError::MemberMissing { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("css.no_such_member") && msg.contains("mem_cgroup"));
        }
        other => panic!("missing member: {other:?}"),
    }
    // css.cgroup is a pointer: a path cannot continue through it.
    match btf.member_offset("mem_cgroup", &["css", "cgroup", "kn"]) {
        Err(e @ BtfError::UnexpectedType { .. }) => {
            assert!(e.to_string().contains("struct cgroup *"), "{e}")
        }
        other => panic!("through a pointer: {other:?}"),
    }
}

#[test]
fn anonymous_members_of_the_real_kernel() {
    let btf = vmlinux();
    // mm_struct keeps nearly everything in an anonymous struct; kernfs_node has an anonymous
    // union of dir/symlink/attr.
    assert!(btf.member_offset("mm_struct", &["total_vm"]).is_ok());
    assert!(btf.member_offset("kernfs_node", &["dir"]).is_ok());
    assert_eq!(
        btf.member_offset("kernfs_node", &["dir"]).ok(),
        btf.member_offset("kernfs_node", &["attr"]).ok()
    );
}
