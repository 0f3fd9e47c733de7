//! File names inside a memory cgroup directory (v1 and v2), in one place for the reader and
//! the snapshot builder.

/// v1 and v2: the statistics breakdown.
pub(crate) const STAT: &str = "memory.stat";
/// v1: hierarchical usage; its presence marks a v1 memory cgroup.
pub(crate) const V1_USAGE: &str = "memory.usage_in_bytes";
/// v1: this cgroup's limit.
pub(crate) const V1_LIMIT: &str = "memory.limit_in_bytes";
/// v1: how often the limit was hit.
pub(crate) const V1_FAILCNT: &str = "memory.failcnt";
/// v1: OOM killer state and kill count.
pub(crate) const V1_OOM_CONTROL: &str = "memory.oom_control";
/// v1: kernel memory usage (deprecated, absent with kmem accounting off).
pub(crate) const V1_KMEM_USAGE: &str = "memory.kmem.usage_in_bytes";
/// v1 limit of memory and swap together (present with swap accounting).
pub(crate) const V1_MEMSW_LIMIT: &str = "memory.memsw.limit_in_bytes";
/// v2 swap in use.
pub(crate) const V2_SWAP_CURRENT: &str = "memory.swap.current";
/// v2 swap limit.
pub(crate) const V2_SWAP_MAX: &str = "memory.swap.max";
/// v1: whether children are charged to this cgroup too.
pub(crate) const V1_USE_HIERARCHY: &str = "memory.use_hierarchy";
/// v2: hierarchical usage; its presence marks a v2 cgroup with the memory controller.
pub(crate) const V2_CURRENT: &str = "memory.current";
/// v2: this cgroup's hard limit.
pub(crate) const V2_MAX: &str = "memory.max";
/// v2: event counters (`max`, `oom`, `oom_kill`, ...).
pub(crate) const V2_EVENTS: &str = "memory.events";
/// v2: pressure stall information.
pub(crate) const V2_PRESSURE: &str = "memory.pressure";
/// v2: present in every cgroup but the root (since 4.14).
pub(crate) const V2_TYPE: &str = "cgroup.type";
/// v1 and v2: the processes in the cgroup itself (not its descendants).
pub(crate) const PROCS: &str = "cgroup.procs";
/// v2: present in every cgroup, the root included.
pub(crate) const V2_CONTROLLERS: &str = "cgroup.controllers";
/// v2: controllers this cgroup enables for its children.
pub(crate) const V2_SUBTREE_CONTROL: &str = "cgroup.subtree_control";
