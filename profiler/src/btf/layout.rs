//! What each kernel program needs, resolved from BTF: the stat item numbers the charge-path
//! programs filter on, the `mem_cgroup` → cgroup id pointer chain, and the `task_struct` reads
//! of the OOM-victim program.
//!
//! Each resolver fails on its own, so the loader can disable one feature at a time; the error
//! names the type, member or enum this kernel lacks.

use super::{BtfError, KernelBtf, MemberType};

/// [`TaskOffsets::rss_layout`]: `mm_struct.rss_stat` is an array of `struct percpu_counter`
/// (Linux 6.2 and later).
pub const RSS_LAYOUT_PERCPU_COUNTERS: u32 = 0;
/// [`TaskOffsets::rss_layout`]: `mm_struct.rss_stat` is a `struct mm_rss_stat` holding
/// `atomic_long_t count[NR_MM_COUNTERS]` (before Linux 6.2).
pub const RSS_LAYOUT_ATOMIC_ARRAY: u32 = 1;

/// Item numbers the charge-path programs filter on (the `item` argument of the
/// `mod_memcg_state`, `mod_memcg_lruvec_state` and `count_memcg_events` tracepoints).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MemcgItems {
    /// `NR_ANON_MAPPED` in `enum node_stat_item`.
    pub nr_anon_mapped: u32,
    /// `NR_FILE_PAGES` in `enum node_stat_item`.
    pub nr_file_pages: u32,
    /// `NR_SHMEM` in `enum node_stat_item`.
    pub nr_shmem: u32,
    /// `MEMCG_KMEM` in `enum memcg_stat_item`, when this kernel has it.
    pub memcg_kmem: Option<u32>,
    /// `PGMAJFAULT` in `enum vm_event_item`, when this kernel has it.
    pub pgmajfault: Option<u32>,
}

/// Resolves [`MemcgItems`]; fails only when one of the three required items is missing.
pub fn memcg_items(btf: &KernelBtf) -> Result<MemcgItems, BtfError> {
    Ok(MemcgItems {
        nr_anon_mapped: enum_u32(btf, "node_stat_item", "NR_ANON_MAPPED")?,
        nr_file_pages: enum_u32(btf, "node_stat_item", "NR_FILE_PAGES")?,
        nr_shmem: enum_u32(btf, "node_stat_item", "NR_SHMEM")?,
        memcg_kmem: optional(enum_u32(btf, "memcg_stat_item", "MEMCG_KMEM"))?,
        pgmajfault: optional(enum_u32(btf, "vm_event_item", "PGMAJFAULT"))?,
    })
}

/// Offsets of the pointer chain from a `struct mem_cgroup *` to its cgroup id:
/// `id = *(u64 *)(*(kn **)(*(cgroup **)(memcg + css_cgroup) + cgroup_kn) + kn_id)`,
/// i.e. `memcg->css.cgroup->kn->id`, the inode number of the cgroup's directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MemcgIdOffsets {
    /// `offsetof(struct mem_cgroup, css) + offsetof(struct cgroup_subsys_state, cgroup)`.
    pub css_cgroup: u32,
    /// `offsetof(struct cgroup, kn)`.
    pub cgroup_kn: u32,
    /// `offsetof(struct kernfs_node, id)`; the value there is 8 bytes.
    pub kn_id: u32,
}

/// Resolves [`MemcgIdOffsets`], checking that the two links are pointers and the id is 8 bytes.
pub fn memcg_id_offsets(btf: &KernelBtf) -> Result<MemcgIdOffsets, BtfError> {
    expect_pointer(btf, "mem_cgroup", &["css", "cgroup"])?;
    expect_pointer(btf, "cgroup", &["kn"])?;
    expect_size(btf, "kernfs_node", &["id"], 8)?;
    Ok(MemcgIdOffsets {
        css_cgroup: btf.member_offset("mem_cgroup", &["css", "cgroup"])?,
        cgroup_kn: btf.member_offset("cgroup", &["kn"])?,
        kn_id: btf.member_offset("kernfs_node", &["id"])?,
    })
}

/// Everything the OOM-victim program reads from a `struct task_struct` and what hangs off it.
///
/// RSS counter `i` (one of `mm_filepages`, `mm_anonpages`, `mm_shmempages`) of a task is the
/// 8-byte value at `mm + mm_rss_stat + i * rss_stride + rss_count`; with
/// [`RSS_LAYOUT_PERCPU_COUNTERS`] it is the counter's approximate (not yet folded) sum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TaskOffsets {
    /// `task_struct.pid` (4 bytes).
    pub pid: u32,
    /// `task_struct.tgid` (4 bytes).
    pub tgid: u32,
    /// `task_struct.comm` (a `char` array).
    pub comm: u32,
    /// `task_struct.cgroups` (`struct css_set __rcu *`).
    pub cgroups: u32,
    /// `css_set.subsys` (array of `struct cgroup_subsys_state *`, indexed by subsystem id).
    pub css_set_subsys: u32,
    /// Value of `memory_cgrp_id` in `enum cgroup_subsys_id`: the memory controller's index in
    /// `css_set.subsys`.
    pub memory_cgrp_id: u32,
    /// `task_struct.mm` (`struct mm_struct *`, NULL for kernel threads).
    pub mm: u32,
    /// `task_struct.signal` (`struct signal_struct *`).
    pub signal: u32,
    /// `signal_struct.oom_score_adj` (2 bytes, signed).
    pub oom_score_adj: u32,
    /// Offset in `mm_struct` of the first RSS counter element.
    pub mm_rss_stat: u32,
    /// [`RSS_LAYOUT_PERCPU_COUNTERS`] or [`RSS_LAYOUT_ATOMIC_ARRAY`].
    pub rss_layout: u32,
    /// Bytes between consecutive RSS counters.
    pub rss_stride: u32,
    /// Offset of the 8-byte value inside one counter: `percpu_counter.count`, or 0 for
    /// `atomic_long_t`.
    pub rss_count: u32,
    /// Index of `MM_FILEPAGES` among the RSS counters.
    pub mm_filepages: u32,
    /// Index of `MM_ANONPAGES` among the RSS counters.
    pub mm_anonpages: u32,
    /// Index of `MM_SHMEMPAGES` among the RSS counters.
    pub mm_shmempages: u32,
    /// `mm_struct.total_vm` (pages, 8 bytes).
    pub mm_total_vm: u32,
}

/// Resolves [`TaskOffsets`], checking pointer members, value widths and the RSS counter layout.
pub fn task_offsets(btf: &KernelBtf) -> Result<TaskOffsets, BtfError> {
    for member in ["cgroups", "mm", "signal"] {
        expect_pointer(btf, "task_struct", &[member])?;
    }
    expect_size(btf, "task_struct", &["pid"], 4)?;
    expect_size(btf, "task_struct", &["tgid"], 4)?;
    expect_size(btf, "signal_struct", &["oom_score_adj"], 2)?;
    expect_size(btf, "mm_struct", &["total_vm"], 8)?;
    let comm = btf.member_type_info("task_struct", &["comm"])?;
    if comm.array.is_none() {
        return Err(unexpected("task_struct.comm", "a char array", &comm));
    }
    let subsys = btf.member_type_info("css_set", &["subsys"])?;
    let Some((subsys_len, _)) = subsys.array else {
        return Err(unexpected(
            "css_set.subsys",
            "an array of pointers",
            &subsys,
        ));
    };
    let memory_cgrp_id = enum_u32(btf, "cgroup_subsys_id", "memory_cgrp_id")?;
    if memory_cgrp_id >= subsys_len {
        return Err(BtfError::OutOfRange {
            what: "memory_cgrp_id".to_string(),
            value: i64::from(memory_cgrp_id),
            width: "the length of css_set.subsys",
        });
    }

    let rss = rss_counters(btf)?;
    let index = |variant: &str| -> Result<u32, BtfError> {
        let value = btf.enum_value_any(variant)?;
        match u32::try_from(value) {
            Ok(index) if index < rss.len => Ok(index),
            _ => Err(BtfError::OutOfRange {
                what: variant.to_string(),
                value,
                width: "the number of mm_struct.rss_stat counters",
            }),
        }
    };

    Ok(TaskOffsets {
        pid: btf.member_offset("task_struct", &["pid"])?,
        tgid: btf.member_offset("task_struct", &["tgid"])?,
        comm: btf.member_offset("task_struct", &["comm"])?,
        cgroups: btf.member_offset("task_struct", &["cgroups"])?,
        css_set_subsys: btf.member_offset("css_set", &["subsys"])?,
        memory_cgrp_id,
        mm: btf.member_offset("task_struct", &["mm"])?,
        signal: btf.member_offset("task_struct", &["signal"])?,
        oom_score_adj: btf.member_offset("signal_struct", &["oom_score_adj"])?,
        mm_rss_stat: rss.offset,
        rss_layout: rss.layout,
        rss_stride: rss.stride,
        rss_count: rss.count,
        mm_filepages: index("MM_FILEPAGES")?,
        mm_anonpages: index("MM_ANONPAGES")?,
        mm_shmempages: index("MM_SHMEMPAGES")?,
        mm_total_vm: btf.member_offset("mm_struct", &["total_vm"])?,
    })
}

/// Where and how `mm_struct` keeps its RSS counters.
struct RssCounters {
    offset: u32,
    layout: u32,
    stride: u32,
    count: u32,
    len: u32,
}

fn rss_counters(btf: &KernelBtf) -> Result<RssCounters, BtfError> {
    let rss = btf.member_type_info("mm_struct", &["rss_stat"])?;
    let rss_offset = btf.member_offset("mm_struct", &["rss_stat"])?;
    match rss.array {
        // Linux 6.2+: struct percpu_counter rss_stat[NR_MM_COUNTERS];
        Some((len, stride)) if rss.type_name == "percpu_counter" => {
            expect_size(btf, "percpu_counter", &["count"], 8)?;
            Ok(RssCounters {
                offset: rss_offset,
                layout: RSS_LAYOUT_PERCPU_COUNTERS,
                stride,
                count: btf.member_offset("percpu_counter", &["count"])?,
                len,
            })
        }
        // Before 6.2: struct mm_rss_stat { atomic_long_t count[NR_MM_COUNTERS]; } rss_stat;
        None if rss.type_name == "mm_rss_stat" => {
            let counters = btf.member_type_info("mm_rss_stat", &["count"])?;
            let Some((len, stride)) = counters.array else {
                return Err(unexpected(
                    "mm_rss_stat.count",
                    "an array of atomic_long_t",
                    &counters,
                ));
            };
            if stride != 8 {
                return Err(unexpected(
                    "mm_rss_stat.count",
                    "an array of 8-byte counters",
                    &counters,
                ));
            }
            Ok(RssCounters {
                offset: rss_offset + btf.member_offset("mm_rss_stat", &["count"])?,
                layout: RSS_LAYOUT_ATOMIC_ARRAY,
                stride,
                // atomic_long_t is `struct { s64 counter; }`: the value is its first byte.
                count: 0,
                len,
            })
        }
        _ => Err(unexpected(
            "mm_struct.rss_stat",
            "`struct percpu_counter[]` or `struct mm_rss_stat`",
            &rss,
        )),
    }
}

/// An enum value that the programs compare with a 32-bit field.
fn enum_u32(btf: &KernelBtf, enum_name: &str, variant: &str) -> Result<u32, BtfError> {
    let value = btf.enum_value(enum_name, variant)?;
    u32::try_from(value).map_err(|_| BtfError::OutOfRange {
        what: format!("{enum_name}::{variant}"),
        value,
        width: "an unsigned 32-bit item number",
    })
}

/// `None` when the kernel lacks the enum or the variant; other errors stay errors.
fn optional(result: Result<u32, BtfError>) -> Result<Option<u32>, BtfError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(BtfError::EnumMissing { .. } | BtfError::VariantMissing { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn expect_pointer(btf: &KernelBtf, struct_name: &str, path: &[&str]) -> Result<(), BtfError> {
    if btf.member_is_pointer(struct_name, path)? {
        Ok(())
    } else {
        let info = btf.member_type_info(struct_name, path)?;
        Err(unexpected(
            &format!("{struct_name}.{}", path.join(".")),
            "a pointer",
            &info,
        ))
    }
}

fn expect_size(
    btf: &KernelBtf,
    struct_name: &str,
    path: &[&str],
    size: u32,
) -> Result<(), BtfError> {
    let info = btf.member_type_info(struct_name, path)?;
    if info.size == size {
        Ok(())
    } else {
        Err(BtfError::UnexpectedType {
            what: format!("{struct_name}.{}", path.join(".")),
            expected: match size {
                2 => "a 2-byte value",
                4 => "a 4-byte value",
                _ => "an 8-byte value",
            },
            found: format!("{} ({} bytes)", info.type_name, info.size),
        })
    }
}

fn unexpected(what: &str, expected: &'static str, found: &MemberType) -> BtfError {
    let shape = match found.array {
        Some((len, _)) => format!("{}[{len}]", found.type_name),
        None => found.type_name.clone(),
    };
    BtfError::UnexpectedType {
        what: what.to_string(),
        expected,
        found: format!("{shape} ({} bytes)", found.size),
    }
}

#[cfg(test)]
mod tests;
