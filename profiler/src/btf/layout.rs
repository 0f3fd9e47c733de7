//! What each kernel program needs, resolved from BTF straight into the layouts the programs
//! read ([`ChargeLayout`], [`TaskLayout`]): the stat item numbers the charge-path programs
//! filter on, the `mem_cgroup` → cgroup id pointer chain, and the `task_struct` reads of the
//! OOM-victim and reclaim programs.
//!
//! Each resolver fails on its own, so the loader can disable one feature at a time; the error
//! names the type, member or enum this kernel lacks. Every pointer a program follows is
//! checked to be a pointer, and every value it reads to have the width it reads.

use profiler_common::{ChargeLayout, TaskLayout, ITEM_NONE};

use super::{BtfError, KernelBtf, MemberType};

/// Size of a pointer in the kernel (the profiler runs natively, so as wide as ours).
const POINTER_SIZE: u32 = size_of::<u64>() as u32;

/// Resolves the charge-path programs' [`ChargeLayout`]: the item numbers they filter on (the
/// `item` argument of `mod_memcg_state`, `mod_memcg_lruvec_state` and `count_memcg_events`),
/// the chain `memcg->css.cgroup->kn->id` (the inode number of the cgroup's directory), and
/// where an lruvec's memcg is. Fails when one of the three required items or a link of the
/// chain is missing; `MEMCG_KMEM` and `PGMAJFAULT` are optional ([`ITEM_NONE`] without them).
pub(crate) fn charge_layout(btf: &KernelBtf) -> Result<ChargeLayout, BtfError> {
    expect_pointer(btf, "cgroup_subsys_state", &["cgroup"])?;
    expect_pointer(btf, "cgroup", &["kn"])?;
    expect_size(btf, "kernfs_node", &["id"], 8)?;
    expect_pointer(btf, "mem_cgroup_per_node", &["memcg"])?;
    Ok(ChargeLayout {
        item_anon: enum_u32(btf, "node_stat_item", "NR_ANON_MAPPED")?,
        item_file: enum_u32(btf, "node_stat_item", "NR_FILE_PAGES")?,
        item_shmem: enum_u32(btf, "node_stat_item", "NR_SHMEM")?,
        item_kmem: optional(enum_u32(btf, "memcg_stat_item", "MEMCG_KMEM"))?.unwrap_or(ITEM_NONE),
        event_pgmajfault: optional(enum_u32(btf, "vm_event_item", "PGMAJFAULT"))?
            .unwrap_or(ITEM_NONE),
        memcg_css: btf.member_offset("mem_cgroup", &["css"])?,
        css_cgroup: btf.member_offset("cgroup_subsys_state", &["cgroup"])?,
        cgroup_kn: btf.member_offset("cgroup", &["kn"])?,
        kn_id: btf.member_offset("kernfs_node", &["id"])?,
        pn_lruvec: lruvec_arg_offset(btf)?,
        pn_memcg: btf.member_offset("mem_cgroup_per_node", &["memcg"])?,
        _pad: 0,
    })
}

/// Where `__mod_memcg_lruvec_state`'s first argument sits in its `struct mem_cgroup_per_node`
/// (the programs step back by this much to read the memcg): the lruvec's offset where the
/// argument is a `struct lruvec *`, 0 where it is the per-node struct itself (Linux 7.2 on).
/// Read from the same function the lruvec hook resolves to, the first of its names the BTF has.
fn lruvec_arg_offset(btf: &KernelBtf) -> Result<u32, BtfError> {
    let first_param = crate::probe::LRUVEC_STATE
        .iter()
        .find_map(|name| btf.function_params(name).ok().flatten())
        .and_then(|params| params.into_iter().next());
    match first_param.as_deref() {
        Some("struct mem_cgroup_per_node *") => Ok(0),
        _ => btf.member_offset("mem_cgroup_per_node", &["lruvec"]),
    }
}

/// Resolves the task-based programs' [`TaskLayout`], checking pointer members, value widths
/// and the RSS counter layout (an array of `percpu_counter` since Linux 6.2, of
/// `atomic_long_t` in a `struct mm_rss_stat` before).
pub(crate) fn task_layout(btf: &KernelBtf) -> Result<TaskLayout, BtfError> {
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

    Ok(TaskLayout {
        pid: btf.member_offset("task_struct", &["pid"])?,
        tgid: btf.member_offset("task_struct", &["tgid"])?,
        comm: btf.member_offset("task_struct", &["comm"])?,
        cgroups: btf.member_offset("task_struct", &["cgroups"])?,
        // The memory controller's entry of `css_set.subsys[]`, an array of pointers.
        css_set_memory: btf.member_offset("css_set", &["subsys"])? + memory_cgrp_id * POINTER_SIZE,
        mm: btf.member_offset("task_struct", &["mm"])?,
        signal: btf.member_offset("task_struct", &["signal"])?,
        oom_score_adj: btf.member_offset("signal_struct", &["oom_score_adj"])?,
        mm_rss_stat: rss.offset,
        rss_stride: rss.stride,
        rss_count: rss.count,
        mm_filepages: index("MM_FILEPAGES")?,
        mm_anonpages: index("MM_ANONPAGES")?,
        mm_shmempages: index("MM_SHMEMPAGES")?,
        mm_total_vm: btf.member_offset("mm_struct", &["total_vm"])?,
        valid: 1,
        // Filled in by `DeathFields::apply` where the kernel has them.
        exit_code: 0,
        signal_live: 0,
        siginfo_code: 0,
        _pad: 0,
    })
}

/// What the death programs read beyond [`TaskLayout`]'s common part: how a process ended and
/// who signalled it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DeathFields {
    /// `offsetof(task_struct, exit_code)`.
    pub(crate) exit_code: u32,
    /// `offsetof(signal_struct, live)`.
    pub(crate) signal_live: u32,
    /// `offsetof(kernel_siginfo, si_code)`.
    pub(crate) siginfo_code: u32,
}

impl DeathFields {
    /// Puts the fields into the layout the programs read.
    pub(crate) fn apply(self, layout: &mut TaskLayout) {
        layout.exit_code = self.exit_code;
        layout.signal_live = self.signal_live;
        layout.siginfo_code = self.siginfo_code;
    }
}

/// Resolves [`DeathFields`], checking each is a 4-byte value (`signal_struct.live` is an
/// `atomic_t`, whose counter is its first member). Fails on its own: without it only the
/// death programs are left out.
pub(crate) fn death_fields(btf: &KernelBtf) -> Result<DeathFields, BtfError> {
    expect_size(btf, "task_struct", &["exit_code"], 4)?;
    expect_size(btf, "signal_struct", &["live"], 4)?;
    expect_size(btf, "kernel_siginfo", &["si_code"], 4)?;
    Ok(DeathFields {
        exit_code: btf.member_offset("task_struct", &["exit_code"])?,
        signal_live: btf.member_offset("signal_struct", &["live"])?,
        siginfo_code: btf.member_offset("kernel_siginfo", &["si_code"])?,
    })
}

/// Whether the `oom:mark_victim` tracepoint hands its program the victim's `task_struct`
/// (Linux 6.8 and later), which the OOM-victim program reads with [`TaskLayout`]; before, it
/// passes only the pid.
pub(crate) fn mark_victim_takes_the_task(btf: &KernelBtf) -> Result<(), BtfError> {
    match btf.tracepoint_params("mark_victim")? {
        Some(params)
            if params
                .first()
                .is_some_and(|p| p.starts_with("struct task_struct")) =>
        {
            Ok(())
        }
        Some(params) => Err(BtfError::Unsupported(format!(
            "mark_victim takes ({}), not the task (kernels before 6.8)",
            params.join(", ")
        ))),
        None => Err(BtfError::Unsupported(
            "the kernel has no mark_victim tracepoint".into(),
        )),
    }
}

/// Where `mm_struct` keeps its RSS counters: counter `i`'s 8-byte value is at
/// `offset + i * stride + count`.
struct RssCounters {
    offset: u32,
    stride: u32,
    count: u32,
    /// How many counters there are (`NR_MM_COUNTERS`).
    len: u32,
}

fn rss_counters(btf: &KernelBtf) -> Result<RssCounters, BtfError> {
    let rss = btf.member_type_info("mm_struct", &["rss_stat"])?;
    let rss_offset = btf.member_offset("mm_struct", &["rss_stat"])?;
    match rss.array {
        // Linux 6.2+: struct percpu_counter rss_stat[NR_MM_COUNTERS]; the program reads the
        // counter's approximate (not yet folded) sum.
        Some((len, stride)) if rss.type_name == "percpu_counter" => {
            expect_size(btf, "percpu_counter", &["count"], 8)?;
            Ok(RssCounters {
                offset: rss_offset,
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
