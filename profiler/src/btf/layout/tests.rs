//! The resolvers on two small hand-built kernels, one for each RSS counter layout, so the
//! arithmetic is checked against offsets known by construction on any machine; and, in the host
//! tier, on the running kernel's BTF, cross-checked with `bpftool`.

use std::{path::Path, process::Command, sync::OnceLock};

use super::*;
use crate::btf::{test_blob::*, VMLINUX_BTF};

/// Which `mm_struct.rss_stat` a hand-built kernel has.
#[derive(Clone, Copy, PartialEq)]
enum Rss {
    /// `struct percpu_counter rss_stat[4]` (Linux 6.2+).
    PercpuCounters,
    /// `struct mm_rss_stat { atomic_long_t count[4]; } rss_stat` (before 6.2).
    AtomicArray,
}

/// A kernel reduced to what the programs read, at offsets chosen to be distinct:
///
/// ```c
/// struct cgroup_subsys_state { long ss; struct cgroup *cgroup; };          // cgroup @8
/// struct mem_cgroup { long id; long x; struct cgroup_subsys_state css; };  // css @16
/// struct cgroup { long a; long b; long c; struct kernfs_node *kn; };       // kn @24
/// struct kernfs_node { long count; long parent; u64 id; };                 // id @16
/// struct lruvec { long lists[2]; };
/// struct mem_cgroup_per_node { long pad; struct lruvec lruvec; struct mem_cgroup *memcg; };
/// struct task_struct { long flags; int pid; int tgid; char comm[16]; struct css_set *cgroups;
///                      struct mm_struct *mm; struct signal_struct *signal; int exit_code; };
/// struct css_set { long refcount; struct cgroup_subsys_state *subsys[6]; };
/// struct signal_struct { int sigcnt; atomic_t live; long b; int c; short oom_score_adj; };
/// typedef struct { int counter; } atomic_t;
/// struct kernel_siginfo { struct { int si_signo; int si_errno; int si_code; ... }; };
/// // 6.2+:   struct percpu_counter { long lock; long count; long list; };
/// //         struct mm_struct { long a; struct { long total_vm; struct percpu_counter rss_stat[4]; }; };
/// // before: typedef struct { long counter; } atomic_long_t;
/// //         struct mm_rss_stat { atomic_long_t count[4]; };
/// //         struct mm_struct { long a; long total_vm; struct mm_rss_stat rss_stat; };
/// enum node_stat_item { NR_LRU_BASE, NR_ANON_MAPPED = 3, NR_FILE_PAGES = 5, NR_SHMEM = 7 };
/// enum memcg_stat_item { MEMCG_SWAP = 60, MEMCG_KMEM = 61 };               // `kmem` only
/// enum vm_event_item { PGFAULT = 1, PGMAJFAULT = 2 };
/// enum cgroup_subsys_id { cpuset_cgrp_id, cpu_cgrp_id, memory_cgrp_id = 4, CGROUP_SUBSYS_COUNT = 6 };
/// enum { MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES, NR_MM_COUNTERS };
/// // mark_victim: (void *, struct task_struct *, uid_t) with `task_victim`, else (void *, int pid)
/// ```
fn mini_kernel(rss: Rss, kmem: bool, task_victim: bool) -> KernelBtf {
    parse(mini_builder(rss, kmem, task_victim))
}

fn parse(b: BlobBuilder) -> KernelBtf {
    match KernelBtf::from_bytes(&b.finish()) {
        Ok(btf) => btf,
        Err(e) => panic!("hand-built kernel BTF does not parse: {e}"),
    }
}

/// The types of [`mini_kernel`], 1 to 43, to add more to.
fn mini_builder(rss: Rss, kmem: bool, task_victim: bool) -> BlobBuilder {
    let mut b = BlobBuilder::new();
    let bits = |bytes: u32| bytes * 8;
    // 1 int, 2 long, 3 char, 4 short
    b.ty("int", INT, 0, 0, 4);
    b.words(&[(1 << 24) | 32]);
    b.ty("long", INT, 0, 0, 8);
    b.words(&[(1 << 24) | 64]);
    b.ty("char", INT, 0, 0, 1);
    b.words(&[8]);
    b.ty("short", INT, 0, 0, 2);
    b.words(&[(1 << 24) | 16]);
    // 5 cgroup_subsys_state, 6 mem_cgroup, 7 cgroup, 8 kernfs_node
    b.ty("cgroup_subsys_state", STRUCT, 2, 0, 16);
    b.named3("ss", 2, 0);
    b.named3("cgroup", 20, bits(8));
    b.ty("mem_cgroup", STRUCT, 3, 0, 32);
    b.named3("id", 2, 0);
    b.named3("x", 2, bits(8));
    b.named3("css", 5, bits(16));
    b.ty("cgroup", STRUCT, 4, 0, 32);
    b.named3("a", 2, 0);
    b.named3("b", 2, bits(8));
    b.named3("c", 2, bits(16));
    b.named3("kn", 21, bits(24));
    b.ty("kernfs_node", STRUCT, 3, 0, 24);
    b.named3("count", 2, 0);
    b.named3("parent", 2, bits(8));
    b.named3("id", 2, bits(16));
    // 9 lruvec, 10 long[2], 11 mem_cgroup_per_node
    b.ty("lruvec", STRUCT, 1, 0, 16);
    b.named3("lists", 10, 0);
    b.ty("", ARRAY, 0, 0, 0);
    b.words(&[2, 1, 2]);
    b.ty("mem_cgroup_per_node", STRUCT, 3, 0, 32);
    b.named3("pad", 2, 0);
    b.named3("lruvec", 9, bits(8));
    b.named3("memcg", 22, bits(24));
    // 12 task_struct, 13 char[16], 14 css_set, 15 (cgroup_subsys_state *)[6], 16 signal_struct
    b.ty("task_struct", STRUCT, 8, 0, 64);
    b.named3("flags", 2, 0);
    b.named3("pid", 1, bits(8));
    b.named3("tgid", 1, bits(12));
    b.named3("comm", 13, bits(16));
    b.named3("cgroups", 23, bits(32));
    b.named3("mm", 24, bits(40));
    b.named3("signal", 25, bits(48));
    b.named3("exit_code", 1, bits(56));
    b.ty("", ARRAY, 0, 0, 0);
    b.words(&[3, 1, 16]);
    b.ty("css_set", STRUCT, 2, 0, 56);
    b.named3("refcount", 2, 0);
    b.named3("subsys", 15, bits(8));
    b.ty("", ARRAY, 0, 0, 0);
    b.words(&[26, 1, 6]);
    b.ty("signal_struct", STRUCT, 5, 0, 24);
    b.named3("sigcnt", 1, 0);
    b.named3("live", 41, bits(4));
    b.named3("b", 2, bits(8));
    b.named3("c", 1, bits(16));
    b.named3("oom_score_adj", 4, bits(20));
    // 17 mm_struct, 18 and 19: the RSS counters' types (below)
    match rss {
        Rss::PercpuCounters => {
            b.ty("mm_struct", STRUCT, 2, 0, 120);
            b.named3("a", 2, 0);
            b.named3("", 18, bits(8));
            // 18: the anonymous struct holding nearly everything, as in real kernels
            b.ty("", STRUCT, 2, 0, 104);
            b.named3("total_vm", 2, 0);
            b.named3("rss_stat", 19, bits(8));
            // 19: struct percpu_counter[4]
            b.ty("", ARRAY, 0, 0, 0);
            b.words(&[27, 1, 4]);
        }
        Rss::AtomicArray => {
            b.ty("mm_struct", STRUCT, 3, 0, 48);
            b.named3("a", 2, 0);
            b.named3("total_vm", 2, bits(8));
            b.named3("rss_stat", 18, bits(16));
            // 18: struct mm_rss_stat, 19: atomic_long_t[4]
            b.ty("mm_rss_stat", STRUCT, 1, 0, 32);
            b.named3("count", 19, 0);
            b.ty("", ARRAY, 0, 0, 0);
            b.words(&[28, 1, 4]);
        }
    }
    // 20-25: pointers to cgroup, kernfs_node, mem_cgroup, css_set, mm_struct, signal_struct;
    // 26: to cgroup_subsys_state
    for target in [7, 8, 6, 14, 17, 16, 5] {
        b.ty("", PTR, 0, 0, target);
    }
    // 27 percpu_counter, 28 atomic_long_t (typedef of 29)
    b.ty("percpu_counter", STRUCT, 3, 0, 24);
    b.named3("lock", 2, 0);
    b.named3("count", 2, bits(8));
    b.named3("list", 2, bits(16));
    b.ty("atomic_long_t", TYPEDEF, 0, 0, 29);
    // 29: struct { long counter; }
    b.ty("", STRUCT, 1, 0, 8);
    b.named3("counter", 2, 0);
    // 30-34: the enums
    b.ty("node_stat_item", ENUM, 4, 0, 4);
    b.named2("NR_LRU_BASE", 0);
    b.named2("NR_ANON_MAPPED", 3);
    b.named2("NR_FILE_PAGES", 5);
    b.named2("NR_SHMEM", 7);
    if kmem {
        b.ty("memcg_stat_item", ENUM, 2, 0, 4);
        b.named2("MEMCG_SWAP", 60);
        b.named2("MEMCG_KMEM", 61);
    } else {
        b.ty("memcg_stat_item", ENUM, 1, 0, 4);
        b.named2("MEMCG_SWAP", 60);
    }
    b.ty("vm_event_item", ENUM, 2, 0, 4);
    b.named2("PGFAULT", 1);
    b.named2("PGMAJFAULT", 2);
    b.ty("cgroup_subsys_id", ENUM, 4, 0, 4);
    b.named2("cpuset_cgrp_id", 0);
    b.named2("cpu_cgrp_id", 1);
    b.named2("memory_cgrp_id", 4);
    b.named2("CGROUP_SUBSYS_COUNT", 6);
    b.ty("", ENUM, 5, 0, 4);
    b.named2("MM_FILEPAGES", 0);
    b.named2("MM_ANONPAGES", 1);
    b.named2("MM_SWAPENTS", 2);
    b.named2("MM_SHMEMPAGES", 3);
    b.named2("NR_MM_COUNTERS", 4);
    // 35: void *, 36: task_struct *, 37: the probe's prototype, 38: pointer to it, 39: typedef
    b.ty("", PTR, 0, 0, 0);
    b.ty("", PTR, 0, 0, 12);
    if task_victim {
        b.ty("", FUNC_PROTO, 3, 0, 0);
        b.named2("", 35);
        b.named2("", 36);
        b.named2("", 1);
    } else {
        b.ty("", FUNC_PROTO, 2, 0, 0);
        b.named2("", 35);
        b.named2("", 1);
    }
    b.ty("", PTR, 0, 0, 37);
    b.ty("btf_trace_mark_victim", TYPEDEF, 0, 0, 38);
    // 40: struct { int counter; }, 41: atomic_t
    b.ty("", STRUCT, 1, 0, 4);
    b.named3("counter", 1, 0);
    b.ty("atomic_t", TYPEDEF, 0, 0, 40);
    // 42: the anonymous head of a siginfo, 43: struct kernel_siginfo
    b.ty("", STRUCT, 3, 0, 12);
    b.named3("si_signo", 1, 0);
    b.named3("si_errno", 1, bits(4));
    b.named3("si_code", 1, bits(8));
    b.ty("kernel_siginfo", STRUCT, 1, 0, 48);
    b.named3("", 42, 0);
    b
}

#[test]
fn charge_layout_follows_the_chain_and_names_the_items() {
    let layout = charge_layout(&mini_kernel(Rss::PercpuCounters, true, true));
    assert_eq!(
        layout.ok(),
        Some(ChargeLayout {
            item_anon: 3,
            item_file: 5,
            item_shmem: 7,
            item_kmem: 61,
            event_pgmajfault: 2,
            memcg_css: 16,
            // Each link on its own: the program adds memcg_css and css_cgroup itself.
            css_cgroup: 8,
            cgroup_kn: 24,
            kn_id: 16,
            pn_lruvec: 8,
            pn_memcg: 24,
            _pad: 0,
        })
    );
}

/// `__mod_memcg_lruvec_state`'s first argument: an lruvec (until 7.1), whose per-node struct
/// is 8 bytes before it, or the per-node struct itself (7.2 on), where the step back is 0.
#[test]
fn the_lruvec_argument_follows_the_functions_prototype() {
    for (pointee, offset) in [(9, 8), (11, 0)] {
        let mut b = mini_builder(Rss::PercpuCounters, true, true);
        // 44: pointer to the argument's type, 45: void (arg, int, long), 46: the function
        b.ty("", PTR, 0, 0, pointee);
        b.ty("", FUNC_PROTO, 3, 0, 0);
        b.named2("pn", 44);
        b.named2("idx", 1);
        b.named2("val", 2);
        b.ty("__mod_memcg_lruvec_state", FUNC, 1, 0, 45);
        let layout = charge_layout(&parse(b));
        assert_eq!(
            layout.map(|l| l.pn_lruvec).ok(),
            Some(offset),
            "pointee {pointee}"
        );
    }
}

#[test]
fn a_kernel_without_kmem_counts_no_kernel_memory() {
    let layout = charge_layout(&mini_kernel(Rss::PercpuCounters, false, true));
    assert_eq!(layout.map(|l| l.item_kmem).ok(), Some(ITEM_NONE));
}

#[test]
fn task_layout_with_percpu_counters() {
    let layout = task_layout(&mini_kernel(Rss::PercpuCounters, true, true));
    assert_eq!(
        layout.ok(),
        Some(TaskLayout {
            pid: 8,
            tgid: 12,
            comm: 16,
            cgroups: 32,
            // subsys @8, memory_cgrp_id 4, pointers of 8 bytes.
            css_set_memory: 8 + 4 * 8,
            mm: 40,
            signal: 48,
            oom_score_adj: 20,
            // rss_stat in the anonymous struct @8, itself @8 in it.
            mm_rss_stat: 16,
            rss_stride: 24,
            rss_count: 8,
            mm_filepages: 0,
            mm_anonpages: 1,
            mm_shmempages: 3,
            mm_total_vm: 8,
            valid: 1,
            exit_code: 0,
            signal_live: 0,
            siginfo_code: 0,
            _pad: 0,
        })
    );
}

#[test]
fn death_fields_are_found_through_typedefs_and_anonymous_structs() {
    let btf = mini_kernel(Rss::PercpuCounters, true, true);
    assert_eq!(
        death_fields(&btf).ok(),
        Some(DeathFields {
            exit_code: 56,
            signal_live: 4,
            siginfo_code: 8,
        })
    );
    let mut layout = task_layout(&btf).unwrap_or_else(|e| panic!("task layout: {e}"));
    death_fields(&btf)
        .unwrap_or_else(|e| panic!("death fields: {e}"))
        .apply(&mut layout);
    assert_eq!(
        (layout.exit_code, layout.signal_live, layout.siginfo_code),
        (56, 4, 8)
    );
}

#[test]
fn task_layout_with_an_atomic_array_before_6_2() {
    let layout = task_layout(&mini_kernel(Rss::AtomicArray, true, true));
    let layout = layout.unwrap_or_else(|e| panic!("old RSS layout: {e}"));
    assert_eq!(
        (
            layout.mm_rss_stat,
            layout.rss_stride,
            layout.rss_count,
            layout.mm_total_vm
        ),
        (16, 8, 0, 8)
    );
}

#[test]
fn mark_victim_must_hand_over_the_task() {
    assert!(mark_victim_takes_the_task(&mini_kernel(Rss::PercpuCounters, true, true)).is_ok());
    match mark_victim_takes_the_task(&mini_kernel(Rss::PercpuCounters, true, false)) {
        Err(e @ BtfError::Unsupported(_)) => {
            assert!(e.to_string().contains("mark_victim takes (int)"), "{e}")
        }
        other => panic!("old mark_victim: {other:?}"),
    }
}

// ---- the host tier: the running kernel's BTF ----

fn vmlinux() -> &'static KernelBtf {
    static BTF: OnceLock<KernelBtf> = OnceLock::new();
    BTF.get_or_init(|| match KernelBtf::load(Path::new(VMLINUX_BTF)) {
        Ok(btf) => btf,
        Err(e) => panic!("this test needs the running kernel's BTF: {e}"),
    })
}

/// `bpftool`'s own reading of the running kernel's BTF (`format raw`, as JSON): an oracle
/// independent of btf-rs and of this crate.
struct Bpftool(serde_json::Value);

impl Bpftool {
    fn dump() -> &'static Bpftool {
        static DUMP: OnceLock<Bpftool> = OnceLock::new();
        DUMP.get_or_init(|| {
            let out = Command::new("bpftool")
                .args(["-j", "btf", "dump", "file", VMLINUX_BTF, "format", "raw"])
                .output()
                .unwrap_or_else(|e| panic!("bpftool (installed by `cargo xtask setup`): {e}"));
            assert!(out.status.success(), "bpftool failed: {out:?}");
            Bpftool(
                serde_json::from_slice(&out.stdout)
                    .unwrap_or_else(|e| panic!("bpftool printed no JSON: {e}")),
            )
        })
    }

    fn types(&self) -> &[serde_json::Value] {
        self.0["types"].as_array().map_or(&[], Vec::as_slice)
    }

    fn by_id(&self, id: u64) -> &serde_json::Value {
        let index = usize::try_from(id).unwrap_or(usize::MAX).wrapping_sub(1);
        self.types()
            .get(index)
            .unwrap_or_else(|| panic!("bpftool has no type {id}"))
    }

    /// Every value bpftool lists for `variant`, in any enum.
    fn enum_values(&self, variant: &str) -> Vec<i64> {
        let mut values: Vec<i64> = self
            .types()
            .iter()
            .filter(|t| matches!(t["kind"].as_str(), Some("ENUM" | "ENUM64")))
            .flat_map(|t| t["values"].as_array().into_iter().flatten())
            .filter(|v| v["name"] == variant)
            .filter_map(|v| v["val"].as_i64())
            .collect();
        values.dedup();
        values
    }

    /// Byte offset of `member` in the struct named `name`, looking into anonymous members.
    fn offset(&self, name: &str, member: &str) -> u32 {
        let ty = self
            .types()
            .iter()
            .find(|t| t["kind"] == "STRUCT" && t["name"] == name)
            .unwrap_or_else(|| panic!("bpftool has no struct {name}"));
        self.find(ty, member)
            .map(|bits| u32::try_from(bits / 8).unwrap_or(u32::MAX))
            .unwrap_or_else(|| panic!("bpftool has no member {name}.{member}"))
    }

    fn find(&self, ty: &serde_json::Value, member: &str) -> Option<u64> {
        for m in ty["members"].as_array().into_iter().flatten() {
            let offset = m["bits_offset"].as_u64()?;
            if m["name"] == member {
                return Some(offset);
            }
            if m["name"] == "(anon)" {
                let inner = self.by_id(m["type_id"].as_u64()?);
                if let Some(found) = self.find(inner, member) {
                    return Some(offset + found);
                }
            }
        }
        None
    }
}

#[test]
#[ignore = "host tier (cargo xtask test): reads the running kernel's BTF, and bpftool"]
fn charge_layout_agrees_with_bpftool() {
    let layout = charge_layout(vmlinux()).unwrap_or_else(|e| panic!("charge layout: {e}"));
    let bpftool = Bpftool::dump();
    let item = |name: &str| match bpftool.enum_values(name).as_slice() {
        [value] => u32::try_from(*value).unwrap_or(u32::MAX),
        other => panic!("bpftool lists {name} as {other:?}"),
    };
    assert_eq!(layout.item_anon, item("NR_ANON_MAPPED"));
    assert_eq!(layout.item_file, item("NR_FILE_PAGES"));
    assert_eq!(layout.item_shmem, item("NR_SHMEM"));
    assert_eq!(layout.item_kmem, item("MEMCG_KMEM"));
    assert_eq!(layout.event_pgmajfault, item("PGMAJFAULT"));
    assert_eq!(layout.memcg_css, bpftool.offset("mem_cgroup", "css"));
    assert_eq!(
        layout.css_cgroup,
        bpftool.offset("cgroup_subsys_state", "cgroup")
    );
    assert_eq!(layout.cgroup_kn, bpftool.offset("cgroup", "kn"));
    assert_eq!(layout.kn_id, bpftool.offset("kernfs_node", "id"));
    assert_eq!(
        layout.pn_lruvec,
        bpftool.offset("mem_cgroup_per_node", "lruvec")
    );
    assert_eq!(
        layout.pn_memcg,
        bpftool.offset("mem_cgroup_per_node", "memcg")
    );
}

#[test]
#[ignore = "host tier (cargo xtask test): reads the running kernel's BTF"]
fn charge_items_are_distinct_and_plausible() {
    let layout = charge_layout(vmlinux()).unwrap_or_else(|e| panic!("charge layout: {e}"));
    let node_items = [layout.item_anon, layout.item_file, layout.item_shmem];
    for (i, a) in node_items.iter().enumerate() {
        assert!(*a < 200, "node_stat_item value {a} is implausibly large");
        for b in &node_items[i + 1..] {
            assert_ne!(a, b, "{layout:?}");
        }
    }
    // memcg_stat_item continues after the last node_stat_item.
    assert!(
        layout.item_kmem > layout.item_shmem && layout.item_kmem < 400,
        "{layout:?}"
    );
    assert!(
        layout.event_pgmajfault > 0 && layout.event_pgmajfault < 400,
        "{layout:?}"
    );
}

#[test]
#[ignore = "host tier (cargo xtask test): reads the running kernel's BTF, and bpftool"]
fn task_layout_fits_its_structs_and_agrees_with_bpftool() {
    let btf = vmlinux();
    let t = task_layout(btf).unwrap_or_else(|e| panic!("task layout: {e}"));
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
    assert!(t.css_set_memory + 8 <= size("css_set"));
    assert!(t.oom_score_adj + 2 <= size("signal_struct"));
    let mm = size("mm_struct");
    assert!(t.mm_total_vm + 8 <= mm);
    assert!(t.rss_count + 8 <= t.rss_stride);
    let last = t.mm_filepages.max(t.mm_anonpages).max(t.mm_shmempages);
    assert!(t.mm_rss_stat + (last + 1) * t.rss_stride <= mm);
    let mut counters = [t.mm_filepages, t.mm_anonpages, t.mm_shmempages];
    counters.sort_unstable();
    assert!(
        counters[0] != counters[1] && counters[1] != counters[2],
        "{t:?}"
    );

    // The same figures, read by bpftool.
    let bpftool = Bpftool::dump();
    for (member, offset) in [
        ("pid", t.pid),
        ("tgid", t.tgid),
        ("comm", t.comm),
        ("cgroups", t.cgroups),
        ("mm", t.mm),
        ("signal", t.signal),
    ] {
        assert_eq!(offset, bpftool.offset("task_struct", member), "{member}");
    }
    let memory = bpftool.enum_values("memory_cgrp_id");
    assert_eq!(
        Some(i64::from(t.css_set_memory)),
        memory
            .first()
            .map(|id| i64::from(bpftool.offset("css_set", "subsys")) + id * 8),
        "css_set.subsys[memory_cgrp_id]"
    );
    assert_eq!(
        t.oom_score_adj,
        bpftool.offset("signal_struct", "oom_score_adj")
    );
    assert_eq!(t.mm_total_vm, bpftool.offset("mm_struct", "total_vm"));
    for (name, index) in [
        ("MM_FILEPAGES", t.mm_filepages),
        ("MM_ANONPAGES", t.mm_anonpages),
        ("MM_SHMEMPAGES", t.mm_shmempages),
    ] {
        assert_eq!(bpftool.enum_values(name), vec![i64::from(index)], "{name}");
    }
    // The RSS counters: percpu_counter elements (6.2+) or atomic_long_t ones.
    match btf.member_type_info("mm_struct", &["rss_stat"]) {
        Ok(MemberType {
            array: Some((_, stride)),
            type_name,
            ..
        }) if type_name == "percpu_counter" => {
            assert_eq!(t.mm_rss_stat, bpftool.offset("mm_struct", "rss_stat"));
            assert_eq!((t.rss_stride, stride), (size("percpu_counter"), stride));
            assert_eq!(t.rss_count, bpftool.offset("percpu_counter", "count"));
        }
        Ok(_) => {
            assert_eq!(
                t.mm_rss_stat,
                bpftool.offset("mm_struct", "rss_stat") + bpftool.offset("mm_rss_stat", "count")
            );
            assert_eq!((t.rss_stride, t.rss_count), (8, 0));
        }
        Err(e) => panic!("mm_struct.rss_stat: {e}"),
    }
}

#[test]
#[ignore = "host tier (cargo xtask test): reads the running kernel's BTF"]
fn tracepoint_prototypes_match_the_kernel() {
    let btf = vmlinux();
    let params = |name: &str| match btf.tracepoint_params(name) {
        Ok(params) => params,
        Err(e) => panic!("tracepoint {name}: {e}"),
    };
    // Since 6.8 mark_victim hands over the task, before only the pid: either way the
    // resolver's verdict must follow the prototype.
    let victim = params("mark_victim").unwrap_or_else(|| panic!("no mark_victim tracepoint"));
    let takes_task = victim.first().map(String::as_str) == Some("struct task_struct *");
    assert_eq!(
        mark_victim_takes_the_task(btf).is_ok(),
        takes_task,
        "{victim:?}"
    );
    // The memcg stat tracepoints (2025 kernels on) get the memcg, the item and the value;
    // BTF spells `unsigned long` the way the compiler names the base type.
    for (name, value) in [
        ("mod_memcg_lruvec_state", "int"),
        ("mod_memcg_state", "int"),
        ("count_memcg_events", "long unsigned int"),
    ] {
        if let Some(found) = params(name) {
            assert_eq!(found, ["struct mem_cgroup *", "int", value], "{name}");
        }
    }
    assert_eq!(params("no_such_tracepoint_xyz"), None);
}

#[test]
#[ignore = "host tier (cargo xtask test): reads the running kernel's BTF"]
fn functions_are_found() {
    let btf = vmlinux();
    assert!(btf.has_function("try_charge_memcg"));
    assert!(btf.has_function("out_of_memory"));
    assert!(!btf.has_function("no_such_function_xyz"));
    // A struct is not a function.
    assert!(!btf.has_function("task_struct"));
}

#[test]
#[ignore = "host tier (cargo xtask test): reads the running kernel's BTF"]
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
#[ignore = "host tier (cargo xtask test): reads the running kernel's BTF"]
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
