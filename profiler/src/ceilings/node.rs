//! V8's heap limit in a Node.js process, as `v8.getHeapStatistics().heap_size_limit` reports
//! it: the old generation plus the young one (two semi-spaces and a new large-object space of
//! one semi-space each), from `--max-old-space-size`, `--max-semi-space-size` and
//! `--max-heap-size` (MiB), else from the memory Node sees (the cgroup limit, through
//! `uv_get_constrained_memory`, or the node's). The arithmetic is V8 11.3's (`Heap::
//! HeapSizeFromPhysicalMemory` and `Heap::ConfigureHeap`, x64 without pointer compression);
//! every case in the tests was measured with Node.js v20.20.2 in cgroup-v1 memcgs, and this
//! lands on `heap_size_limit` to the byte in all of them.
use super::{
    size::{human, GIB, KIB, MIB},
    Env, HeapCeiling, Runtime,
};

/// V8's page: its sizes are rounded to it.
const PAGE: u64 = 256 * KIB;
/// The default old generation's least (`V8HeapTrait::kMinSize`)...
const OLD_MIN: u64 = 256 * MIB;
/// ...its most (`kMaxSize`)...
const OLD_MAX: u64 = 2 * GIB;
/// ...and its most with 15.5 GiB or more (`huge_max_old_generation_size`).
const OLD_MAX_HUGE: u64 = 4 * GIB;
/// Memory from which the huge maximum applies: V8 rounds it to GiB with 512 MiB added and
/// wants 16 (measured: 15871 MiB gives 2 GiB, 15872 MiB gives 4 GiB).
const HUGE_MEMORY: u64 = 16 * GIB - 512 * MIB;
/// The smallest semi-space.
const SEMI_MIN: u64 = MIB;
/// The largest semi-space of the default young generation.
const SEMI_MAX: u64 = 16 * MIB;
/// `MinOldGenerationSize`: a page per growable space. A Node given less than a few MiB dies
/// on start-up anyway.
const OLD_FLOOR: u64 = 4 * PAGE;
/// The young generation is this many semi-spaces: two, and the new large-object space.
const SEMI_SPACES: u64 = 3;

/// Node's own options whose value is the next argument: that value is neither an option nor
/// the script. (V8's, such as `--max-old-space-size`, take theirs only after `=`.)
const TAKES_VALUE: &str = "-r --require --import -e --eval -p --print -pe -C --conditions \
    --loader --experimental-loader --input-type --title --inspect-port --debug-port --env-file \
    --experimental-policy --policy-integrity --icu-data-dir --openssl-config \
    --redirect-warnings --report-dir --report-directory --report-filename --report-signal \
    --secure-heap --secure-heap-min --tls-cipher-list --tls-keylog --unhandled-rejections \
    --use-largepages --diagnostic-dir --dns-result-order --heapsnapshot-signal \
    --heapsnapshot-near-heap-limit --cpu-prof-dir --cpu-prof-name --cpu-prof-interval \
    --heap-prof-dir --heap-prof-name --heap-prof-interval --max-http-header-size \
    --disable-proto --experimental-specifier-resolution --es-module-specifier-resolution \
    --watch-path --test-name-pattern --test-reporter --test-reporter-destination \
    --test-concurrency --test-shard --test-timeout --experimental-sea-config --snapshot-blob \
    --trace-event-categories --trace-event-file-pattern --experimental-default-type";

/// Where an option came from, as a sentence says it: Node's own options...
const COMMAND_LINE: &str = "on the command line";
/// ...and those of `NODE_OPTIONS`, which Node applies first.
const NODE_OPTIONS: &str = "in NODE_OPTIONS";

/// Whether a process is Node.js: its executable (the basename of `/proc/PID/exe`) or its
/// `argv[0]` is `node` or `nodejs`.
pub(crate) fn is_node(exe: &str, args: &[String]) -> bool {
    let named = |name: &str| name == "node" || name == "nodejs";
    named(exe)
        || args
            .first()
            .is_some_and(|a| named(a.rsplit('/').next().unwrap_or(a)))
}

/// The most V8's heap can grow to in a Node.js process. `args` is its whole command line,
/// `argv[0]` included; `memory` is what Node sees as its memory: the container's limit when
/// `limited` (Node takes the smaller of it and the node's), else the node's memory.
pub(crate) fn ceiling(args: &[String], env: &Env, memory: u64, limited: bool) -> HeapCeiling {
    let flags = Flags::read(args, env);
    let base = if limited {
        format!("the {} limit", human(memory))
    } else {
        format!("the node's {}", human(memory))
    };
    let (bytes, source) = match flags.heap_limit(memory) {
        Some((old, young)) => (
            old.checked_add(young),
            flags.source(old, young, memory, &base),
        ),
        None => (None, "V8 heap flags past 64 bits".to_owned()),
    };
    HeapCeiling {
        runtime: Runtime::Node,
        bytes,
        source,
        default: !flags.any(),
        gc_off: false,
    }
}

/// A V8 size flag (MiB) and the option that set it.
#[derive(Clone, Debug, PartialEq)]
struct Setting {
    mib: u64,
    option: String,
    origin: &'static str,
}

impl Setting {
    /// `--max-old-space-size=96 on the command line`.
    fn said(&self) -> String {
        format!("{} {}", self.option, self.origin)
    }

    /// The flag in bytes, `None` when 0 (V8's "not set") or past 64 bits.
    fn bytes(&self) -> Option<u64> {
        self.mib.checked_mul(MIB).filter(|&b| b > 0)
    }
}

/// The heap flags, as the last option setting each left them.
#[derive(Debug, Default)]
struct Flags {
    old: Option<Setting>,
    semi: Option<Setting>,
    heap: Option<Setting>,
}

impl Flags {
    /// Node applies `NODE_OPTIONS` first, then the command line's options: the last wins.
    fn read(args: &[String], env: &Env) -> Self {
        let mut flags = Flags::default();
        for option in split_node_options(env.get("NODE_OPTIONS").unwrap_or_default()) {
            flags.apply(&option, NODE_OPTIONS);
        }
        for option in node_options(args.get(1..).unwrap_or_default()) {
            flags.apply(option, COMMAND_LINE);
        }
        flags
    }

    /// Takes one option. V8 reads `-` and `_` alike in names and takes one leading dash as
    /// well as two (not in `NODE_OPTIONS`, where Node refuses it); a malformed value makes
    /// Node refuse to start, and leaves the flag here as it was.
    fn apply(&mut self, option: &str, origin: &'static str) {
        let name_value = match option.strip_prefix("--") {
            Some(rest) => rest,
            None if origin == COMMAND_LINE => match option.strip_prefix('-') {
                Some(rest) => rest,
                None => return,
            },
            None => return,
        };
        let (name, value) = name_value.split_once('=').unwrap_or((name_value, ""));
        let slot = match name.replace('_', "-").as_str() {
            "max-old-space-size" => &mut self.old,
            "max-semi-space-size" => &mut self.semi,
            // Node refuses to start when NODE_OPTIONS holds it.
            "max-heap-size" if origin == COMMAND_LINE => &mut self.heap,
            _ => return,
        };
        match v8_size(value) {
            Some(mib) => {
                *slot = Some(Setting {
                    mib,
                    option: option.to_owned(),
                    origin,
                })
            }
            None => log::debug!("Node.js option {option} {origin}: malformed, ignored"),
        }
    }

    /// Whether any flag is set (to other than 0, which V8 takes for "not set").
    fn any(&self) -> bool {
        [&self.old, &self.semi, &self.heap]
            .into_iter()
            .any(|s| s.as_ref().and_then(Setting::bytes).is_some())
    }

    /// V8's old and young generations, bytes (`Heap::ConfigureHeap`); `None` past 64 bits.
    fn heap_limit(&self, memory: u64) -> Option<(u64, u64)> {
        let old_flag = self.old.as_ref().and_then(Setting::bytes);
        let heap_flag = self.heap.as_ref().and_then(Setting::bytes);
        let default_old = default_old(memory);
        let mut semi = match (self.semi.as_ref().and_then(Setting::bytes), heap_flag) {
            (Some(semi), _) => semi,
            (None, Some(heap)) => match old_flag {
                Some(old) => heap.saturating_sub(old) / SEMI_SPACES,
                None => young_of_heap(heap) / SEMI_SPACES,
            },
            (None, None) => young_of_old(default_old) / SEMI_SPACES,
        };
        semi = semi.checked_next_power_of_two()?.max(SEMI_MIN);
        semi -= semi % PAGE;
        let old = match (old_flag, heap_flag) {
            (Some(old), _) => old,
            (None, Some(heap)) => heap.saturating_sub(SEMI_SPACES.checked_mul(semi)?),
            (None, None) => default_old,
        };
        let old = old.max(OLD_FLOOR);
        Some((old - old % PAGE, SEMI_SPACES.checked_mul(semi)?))
    }

    /// Where the figure came from, for people.
    fn source(&self, old: u64, young: u64, memory: u64, base: &str) -> String {
        let young = format!("{} young generation", human(young));
        let set = |s: &Option<Setting>| s.clone().filter(|s| s.bytes().is_some());
        let semi = set(&self.semi).map(|s| format!(", {}", s.said()));
        let semi = semi.unwrap_or_default();
        if let Some(flag) = set(&self.old) {
            return format!("{} + {young}{semi}", flag.said());
        }
        if let Some(flag) = set(&self.heap) {
            return format!("{}{semi}", flag.said());
        }
        let old_max = if memory >= HUGE_MEMORY {
            OLD_MAX_HUGE
        } else {
            OLD_MAX
        };
        let old_part = if old <= OLD_MIN {
            format!("V8's {} minimum for {base}", human(OLD_MIN))
        } else if old >= old_max {
            format!("V8's {} maximum for {base}", human(old_max))
        } else {
            format!("half {base}")
        };
        let default = if semi.is_empty() { "default: " } else { "" };
        format!("{default}{old_part} + {young}{semi}")
    }
}

/// The old generation V8 sizes from the memory it is told of (`HeapSizeFromPhysicalMemory`):
/// half of it, within its bounds, rounded up to a page.
fn default_old(memory: u64) -> u64 {
    let max = if memory >= HUGE_MEMORY {
        OLD_MAX_HUGE
    } else {
        OLD_MAX
    };
    let old = (memory / 4 * 2).clamp(OLD_MIN, max);
    old.div_ceil(PAGE) * PAGE
}

/// The young generation V8 pairs with an old one (`YoungGenerationSizeFromOldGenerationSize`):
/// three semi-spaces of 1/128 of it (1/256 up to 256 MiB), 1 to 16 MiB, rounded up to a page.
fn young_of_old(old: u64) -> u64 {
    let ratio = if old <= OLD_MIN { 256 } else { 128 };
    let semi = (old / ratio).clamp(SEMI_MIN, SEMI_MAX);
    SEMI_SPACES * semi.div_ceil(PAGE) * PAGE
}

/// The young generation of the largest split of `heap` that fits
/// (`GenerationSizesFromHeapSize`'s binary search), for `--max-heap-size`.
fn young_of_heap(heap: u64) -> u64 {
    let (mut lower, mut upper, mut young) = (0, heap, 0);
    while lower + 1 < upper {
        let old = lower + (upper - lower) / 2;
        let fits = young_of_old(old);
        if old.saturating_add(fits) <= heap {
            young = fits;
            lower = old;
        } else {
            upper = old;
        }
    }
    young
}

/// A V8 `size_t` flag's value: decimal digits, an optional `+` before them (V8 takes it);
/// `None` otherwise (`96MB`, `0x60`, `96.5`, `-5` and an empty value all stop Node with
/// "illegal value" or "out of bounds").
fn v8_size(text: &str) -> Option<u64> {
    let digits = text.strip_prefix('+').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `NODE_OPTIONS` split as Node splits it: at spaces, with double quotes grouping and, within
/// them, backslashes escaping the next character.
fn split_node_options(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quoted = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => match chars.next() {
                Some(next) => word.get_or_insert_default().push(next),
                None => log::debug!("NODE_OPTIONS ends in an escape: Node refuses it"),
            },
            ' ' if !quoted => words.extend(word.take()),
            '"' => {
                quoted = !quoted;
                word.get_or_insert_default();
            }
            _ => word.get_or_insert_default().push(c),
        }
    }
    words.extend(word);
    words
}

/// The options Node itself takes from its command line: those before the script (or `--`);
/// past it, arguments are the script's. Node options whose value is the next argument
/// (`-r module`) are skipped with it.
fn node_options(args: &[String]) -> Vec<&str> {
    let mut options = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--" || arg == "-" || !arg.starts_with('-') {
            break;
        }
        if TAKES_VALUE.split_whitespace().any(|o| o == arg) {
            rest.next();
            continue;
        }
        options.push(arg.as_str());
    }
    options
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
