//! Turns what the running kernel's BTF says into the constants the kernel programs read.
use profiler_common::{ChargeLayout, TaskLayout, ITEM_NONE};

use crate::btf::{self, BtfError, KernelBtf};

/// Item numbers and cgroup-id offsets for the charge-path programs.
pub fn charge_layout(btf: &KernelBtf) -> Result<ChargeLayout, BtfError> {
    let items = btf::memcg_items(btf)?;
    let ids = btf::memcg_id_offsets(btf)?;
    let memcg_css = btf.member_offset("mem_cgroup", &["css"])?;
    let pn_lruvec = btf.member_offset("mem_cgroup_per_node", &["lruvec"])?;
    let pn_memcg = btf.member_offset("mem_cgroup_per_node", &["memcg"])?;
    Ok(ChargeLayout {
        item_anon: items.nr_anon_mapped,
        item_file: items.nr_file_pages,
        item_shmem: items.nr_shmem,
        item_kmem: items.memcg_kmem.unwrap_or(ITEM_NONE),
        event_pgmajfault: items.pgmajfault.unwrap_or(ITEM_NONE),
        memcg_css,
        // `memcg_id_offsets` gives memcg → css.cgroup in one; the programs need the parts.
        css_cgroup: ids.css_cgroup - memcg_css,
        cgroup_kn: ids.cgroup_kn,
        kn_id: ids.kn_id,
        pn_lruvec,
        pn_memcg,
        _pad: 0,
    })
}

/// `task_struct` offsets for the OOM-victim and reclaim programs.
pub fn task_layout(btf: &KernelBtf) -> Result<TaskLayout, BtfError> {
    let t = btf::task_offsets(btf)?;
    let pointer = u32::try_from(std::mem::size_of::<u64>()).unwrap_or(8);
    Ok(TaskLayout {
        pid: t.pid,
        tgid: t.tgid,
        comm: t.comm,
        cgroups: t.cgroups,
        css_set_memory: t.css_set_subsys + t.memory_cgrp_id * pointer,
        mm: t.mm,
        signal: t.signal,
        oom_score_adj: t.oom_score_adj,
        mm_rss_stat: t.mm_rss_stat,
        rss_stride: t.rss_stride,
        rss_count: t.rss_count,
        mm_filepages: t.mm_filepages,
        mm_anonpages: t.mm_anonpages,
        mm_shmempages: t.mm_shmempages,
        mm_total_vm: t.mm_total_vm,
        valid: 1,
        _pad: [0; 4],
    })
}
