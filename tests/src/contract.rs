//! The shape of the profiler's `--json` lines: which keys each line type must carry.
//!
//! Lines of a type not listed here only need the common keys, so the profiler can add types
//! without breaking the tests; a listed type missing a key or carrying a wrong kind of value
//! is a broken contract.

use serde_json::Value;

/// What kind of JSON value a key must hold.
#[derive(Clone, Copy)]
enum Kind {
    /// A non-negative integer.
    Unsigned,
    /// Any integer.
    Integer,
    /// Any non-negative number.
    Number,
    /// Any string.
    Text,
    /// `true` or `false`.
    Bool,
    /// An array (of anything).
    Array,
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// `null` or the inner kind.
    Nullable(&'static Kind),
    /// Exactly `null`.
    Null,
    /// An array whose every element is of the inner kind.
    ArrayOf(&'static Kind),
    /// An object with (at least) these keys, each of its kind.
    Object(&'static [(&'static str, Kind)]),
}

use Kind::{Array, ArrayOf, Bool, Integer, Null, Nullable, Number, Object, OneOf, Text, Unsigned};

const UNSIGNED_OR_NULL: Kind = Nullable(&Unsigned);
const NUMBER_OR_NULL: Kind = Nullable(&Number);
const MODE: Kind = OneOf(&["tracepoint", "fentry", "kprobe", "polling"]);
const TEXT_OR_NULL: Kind = Nullable(&Text);
const LANGUAGE_RUNTIME: Kind = OneOf(&["jvm", "node", "go", "dotnet"]);
const LIMIT_SOURCE: Kind = OneOf(&[
    "container",
    "cgroup",
    "pod",
    "qos",
    "kubepods",
    "ancestor",
    "node",
]);

/// Which Kubernetes pod container a cgroup belongs to: on every line about a cgroup, `null`
/// where unknown (a plain `--cgroup` watch, or no matching pod logs).
const POD_KEYS: [(&str, Kind); 7] = [
    ("namespace", TEXT_OR_NULL),
    ("pod", TEXT_OR_NULL),
    ("pod_uid", TEXT_OR_NULL),
    ("container", TEXT_OR_NULL),
    ("container_id", TEXT_OR_NULL),
    (
        "qos",
        Nullable(&OneOf(&["guaranteed", "burstable", "besteffort"])),
    ),
    ("runtime", TEXT_OR_NULL),
];

/// The line types that are about one cgroup, and so carry [`POD_KEYS`].
const CGROUP_LINES: [&str; 14] = [
    "watch_start",
    "heap_ceiling",
    "config_risk",
    "sample",
    "burst",
    "oom_kill",
    "oom_group_kill",
    "exit",
    "signal",
    "cgroup_gone",
    "warning",
    "summary",
    "processes",
    "charge_stacks",
];
const CONSTRAINT: Kind = Nullable(&OneOf(&["memcg", "node", "cpuset", "mempolicy"]));
const OOM_LIMIT_SOURCE: Kind = Nullable(&OneOf(&[
    "container",
    "cgroup",
    "pod",
    "qos",
    "kubepods",
    "ancestor",
    "node",
]));
const SIGNAL: Kind = OneOf(&["SIGKILL", "SIGTERM"]);
/// One of the top processes of a `processes` line.
const PROCESS: Kind = Object(&[
    ("pid", Unsigned),
    ("comm", Text),
    ("rss_anon_bytes", Unsigned),
    ("rss_file_bytes", Unsigned),
    ("rss_shmem_bytes", Unsigned),
    ("growth_bytes", Integer),
    ("growth_window_s", Number),
]);
/// The rest of a container's processes, summed, in a `processes` line.
const OTHER_PROCESSES: Kind = Object(&[
    ("processes", Unsigned),
    ("rss_bytes", Unsigned),
    ("growth_bytes", Integer),
]);
/// Frames of a charge stack, root first.
const FRAMES: Kind = ArrayOf(&Text);
/// One stack of a `charge_stacks` line.
const CHARGE_STACK: Kind = Object(&[
    ("pid", Unsigned),
    ("comm", Text),
    ("samples", Unsigned),
    ("bytes", Unsigned),
    ("user", FRAMES),
    ("kernel", FRAMES),
]);
const RISK: Kind = OneOf(&["ok", "warning", "critical"]);

/// The keys every line of `type` must have, besides `type`, `ts`, `cgroup` and (for lines about
/// a cgroup) [`POD_KEYS`].
fn keys(line_type: &str) -> Option<&'static [(&'static str, Kind)]> {
    Some(match line_type {
        "watch_start" => &[
            ("cgroup", Text),
            ("cgroup_id", Unsigned),
            ("cgroup_version", OneOf(&["v1", "v2"])),
            ("limit_bytes", UNSIGNED_OR_NULL),
            ("limit_source", LIMIT_SOURCE),
            ("mode", MODE),
        ],
        "sample" => &[
            ("cgroup", Text),
            ("usage_bytes", Unsigned),
            ("working_set_bytes", Unsigned),
            ("anon_bytes", Unsigned),
            ("file_bytes", Unsigned),
            ("shmem_bytes", Unsigned),
            ("kernel_bytes", UNSIGNED_OR_NULL),
            ("limit_bytes", UNSIGNED_OR_NULL),
            ("limit_pct", NUMBER_OR_NULL),
            ("charge_rate_bytes_per_s", NUMBER_OR_NULL),
            ("uncharge_rate_bytes_per_s", NUMBER_OR_NULL),
            ("reclaim_count", UNSIGNED_OR_NULL),
            ("reclaim_stall_us", UNSIGNED_OR_NULL),
            ("oom_kills", Unsigned),
            ("failcnt", UNSIGNED_OR_NULL),
            ("mode", MODE),
            ("restarts", Unsigned),
            ("limit_source", LIMIT_SOURCE),
            ("unreclaimable_bytes", Unsigned),
            ("eta_seconds", NUMBER_OR_NULL),
            ("eta_low_seconds", NUMBER_OR_NULL),
            ("eta_high_seconds", NUMBER_OR_NULL),
            ("risk", RISK),
            ("psi_some_avg10", NUMBER_OR_NULL),
            ("psi_full_avg10", NUMBER_OR_NULL),
            ("reach_bytes", UNSIGNED_OR_NULL),
            ("swap_bytes", UNSIGNED_OR_NULL),
            ("swap_max_bytes", UNSIGNED_OR_NULL),
        ],
        "heap_ceiling" => &[
            ("cgroup", Text),
            ("pid", Unsigned),
            ("comm", Text),
            ("language_runtime", LANGUAGE_RUNTIME),
            ("ceiling_bytes", UNSIGNED_OR_NULL),
            ("source", Text),
            ("default", Bool),
            ("gc_off", Bool),
        ],
        "config_risk" => &[
            ("cgroup", Text),
            ("pid", Unsigned),
            ("comm", Text),
            ("language_runtime", LANGUAGE_RUNTIME),
            (
                "kind",
                OneOf(&["ceiling_above_limit", "no_ceiling", "gc_off"]),
            ),
            ("ceiling_bytes", UNSIGNED_OR_NULL),
            ("ceiling_source", Text),
            ("non_heap_bytes", UNSIGNED_OR_NULL),
            ("limit_bytes", Unsigned),
            ("message", Text),
            ("fix", Text),
        ],
        "warning" => &[
            ("cgroup", Text),
            ("level", OneOf(&["warning", "critical", "cleared"])),
            ("previous", RISK),
            ("eta_seconds", NUMBER_OR_NULL),
            ("eta_low_seconds", NUMBER_OR_NULL),
            ("eta_high_seconds", NUMBER_OR_NULL),
            ("reason", Text),
            ("unreclaimable_bytes", Unsigned),
            ("usage_bytes", Unsigned),
            ("limit_bytes", UNSIGNED_OR_NULL),
        ],
        "summary" => &[
            ("cgroup", Text),
            ("duration_s", Number),
            ("samples", Unsigned),
            ("oom_kills", Unsigned),
            ("warnings", Unsigned),
            ("worst_risk", RISK),
        ],
        "burst" => &[
            ("cgroup", Text),
            ("budget_bytes", Unsigned),
            ("usage_bytes", Unsigned),
            ("limit_bytes", UNSIGNED_OR_NULL),
        ],
        "oom_kill" => &[
            ("cgroup", Text),
            ("victim_cgroup", Text),
            ("pid", Unsigned),
            ("comm", Text),
            ("anon_rss_bytes", Unsigned),
            ("file_rss_bytes", Unsigned),
            ("shmem_rss_bytes", Unsigned),
            ("total_vm_bytes", UNSIGNED_OR_NULL),
            ("oom_score_adj", Integer),
            ("limit_bytes", UNSIGNED_OR_NULL),
            ("source", OneOf(&["bpf", "kmsg"])),
            ("constraint", CONSTRAINT),
            ("oom_cgroup", TEXT_OR_NULL),
            ("oom_limit_source", OOM_LIMIT_SOURCE),
            ("oom_group", TEXT_OR_NULL),
            ("oom_score", UNSIGNED_OR_NULL),
            ("next_victim_rank", UNSIGNED_OR_NULL),
        ],
        "oom_group_kill" => &[
            ("cgroup", Text),
            ("oom_group", Text),
            ("victims", Array),
            ("constraint", CONSTRAINT),
            ("oom_cgroup", TEXT_OR_NULL),
        ],
        "exit" => &[
            ("cgroup", Text),
            ("pid", Unsigned),
            ("comm", Text),
            ("exit_code", Unsigned),
            ("signal", TEXT_OR_NULL),
            (
                "cause",
                OneOf(&["oom_limit", "oom_node", "signal", "exited"]),
            ),
            ("oom_cgroup", TEXT_OR_NULL),
            ("limit_source", OOM_LIMIT_SOURCE),
            ("sender_pid", UNSIGNED_OR_NULL),
            ("sender_comm", TEXT_OR_NULL),
            ("sender_cgroup", TEXT_OR_NULL),
            ("sender_container", TEXT_OR_NULL),
            ("explanation", Text),
        ],
        "signal" => &[
            ("cgroup", Text),
            ("pid", Unsigned),
            ("comm", Text),
            ("signal", SIGNAL),
            ("sender_pid", Unsigned),
            ("sender_comm", Text),
            ("sender_cgroup", TEXT_OR_NULL),
            ("sender_container", TEXT_OR_NULL),
            ("delivered", Bool),
            ("repeats", Unsigned),
        ],
        "cgroup_gone" => &[("cgroup", Text)],
        "processes" => &[
            ("cgroup", Text),
            ("trigger", OneOf(&["periodic", "risk_rose"])),
            ("window_s", Number),
            ("rss_bytes", Unsigned),
            ("processes", ArrayOf(&PROCESS)),
            ("others", OTHER_PROCESSES),
        ],
        "charge_stacks" => &[
            ("cgroup", Text),
            ("window_s", Number),
            ("interval_bytes", Unsigned),
            ("samples", Unsigned),
            ("bytes", Unsigned),
            ("stacks", ArrayOf(&CHARGE_STACK)),
        ],
        "lost_events" => &[("cgroup", Null), ("count", Unsigned), ("source", Text)],
        "charge_tracing" => &[
            ("cgroup", Null),
            ("armed", Bool),
            (
                "why",
                OneOf(&[
                    "near_limit",
                    "forecast",
                    "growth",
                    "pressure",
                    "node",
                    "idle",
                    "attach_failed",
                ]),
            ),
            ("reason", Text),
        ],
        "node" => &[
            ("cgroup", Null),
            ("mem_total_bytes", Unsigned),
            ("mem_available_bytes", Unsigned),
            ("eviction_threshold_bytes", Unsigned),
            ("eta_eviction_seconds", NUMBER_OR_NULL),
            ("eta_oom_seconds", NUMBER_OR_NULL),
            ("psi_some_avg10", NUMBER_OR_NULL),
            ("next_victims", Array),
        ],
        "end" => &[
            ("cgroup", Null),
            ("reason", OneOf(&["duration", "signal", "all_gone"])),
        ],
        _ => return None,
    })
}

fn matches(kind: Kind, value: &Value) -> bool {
    match kind {
        Unsigned => value.is_u64(),
        Integer => value.is_i64() || value.is_u64(),
        Number => value.as_f64().is_some_and(|n| n >= 0.0),
        Text => value.is_string(),
        Bool => value.is_boolean(),
        Array => value.is_array(),
        OneOf(choices) => value.as_str().is_some_and(|s| choices.contains(&s)),
        Nullable(inner) => value.is_null() || matches(*inner, value),
        Null => value.is_null(),
        ArrayOf(inner) => value
            .as_array()
            .is_some_and(|items| items.iter().all(|item| matches(*inner, item))),
        Object(keys) => value.as_object().is_some_and(|object| {
            keys.iter()
                .all(|&(key, kind)| object.get(key).is_some_and(|v| matches(kind, v)))
        }),
    }
}

fn describe(kind: Kind) -> String {
    match kind {
        Unsigned => "a non-negative integer".to_owned(),
        Integer => "an integer".to_owned(),
        Number => "a non-negative number".to_owned(),
        Text => "a string".to_owned(),
        Bool => "true or false".to_owned(),
        Array => "an array".to_owned(),
        OneOf(choices) => format!("one of {choices:?}"),
        Nullable(inner) => format!("null or {}", describe(*inner)),
        Null => "null".to_owned(),
        ArrayOf(inner) => format!("an array of which each is {}", describe(*inner)),
        Object(keys) => {
            let keys: Vec<String> = keys
                .iter()
                .map(|&(key, kind)| format!("{key:?}: {}", describe(kind)))
                .collect();
            format!("an object with {{{}}}", keys.join(", "))
        }
    }
}

/// Checks one line against the contract; the error says which key is missing or wrong.
pub fn check_line(line: &Value) -> Result<(), String> {
    let Some(object) = line.as_object() else {
        return Err("the line is not a JSON object".to_owned());
    };
    let Some(line_type) = object.get("type").and_then(Value::as_str) else {
        return Err("no string \"type\"".to_owned());
    };
    let common: [(&str, Kind); 2] = [("ts", Number), ("cgroup", Nullable(&Text))];
    let specific = keys(line_type).unwrap_or(&[]);
    let pod: &[(&str, Kind)] = if CGROUP_LINES.contains(&line_type) {
        &POD_KEYS
    } else {
        &[]
    };
    for &(key, kind) in common.iter().chain(specific).chain(pod) {
        match object.get(key) {
            None => return Err(format!("a {line_type:?} line has no {key:?}")),
            Some(value) if !matches(kind, value) => {
                return Err(format!(
                    "{key:?} of a {line_type:?} line should be {}, is {value}",
                    describe(kind)
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}
