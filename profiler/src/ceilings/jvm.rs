//! A HotSpot JVM's maximum heap (`MaxHeapSize`), from the options it was started with.
//!
//! HotSpot reads options from, in increasing precedence, `JAVA_TOOL_OPTIONS`, the command line
//! (where the `java` launcher first puts `JDK_JAVA_OPTIONS`) and `_JAVA_OPTIONS`; for each flag
//! the last setting wins. Without `-Xmx` it sizes the heap from the memory it sees, as
//! `Arguments::set_heap_size` does in JDK 17, then rounds it up to the heap alignment. Every
//! figure below was checked against `java -XX:+PrintFlagsFinal` of OpenJDK 17.0.15 in cgroup-v1
//! memory cgroups (the tests list the cases); we land on HotSpot's own `MaxHeapSize` to the byte
//! except where a comment says otherwise.
use super::{
    size::{human, jvm_double, jvm_size, GIB, MIB},
    Env, HeapCeiling, Runtime,
};

/// HotSpot's `MaxHeapSize` flag default on 64-bit, `ScaleForWordSize(96 * M)`: 96 MiB × 1.3
/// rounded down to 8 bytes. Not 96 MiB: that is why a 256 MiB container gets a 126 MiB heap.
const HEAP_FLOOR: u64 = 130_862_280;
/// `MaxRAM`'s default: memory beyond it is not counted unless a RAM flag is given.
const DEFAULT_MAX_RAM: u64 = 128 * GIB;
/// `MaxRAMPercentage`'s default.
const DEFAULT_MAX_PERCENT: f64 = 25.0;
/// `MinRAMPercentage`'s default: the share taken when memory is small.
const DEFAULT_MIN_PERCENT: f64 = 50.0;
/// Memory from which HotSpot picks G1 rather than Serial (2 GiB less 256 MiB; with two or
/// more CPUs, which we assume: we cannot see the CPU quota here).
const SERVER_CLASS_MEMORY: u64 = 1792 * MIB;
/// The alignment every collector keeps at least: 512-byte cards of 4 KiB pages.
const CARD_TABLE_ALIGNMENT: u64 = 2 * MIB;
/// What 32-bit compressed oops address with 8-byte objects.
const COMPRESSED_OOPS_SPAN: u64 = 32 * GIB;
/// `HeapBaseMinAddress` on Linux x86-64: the heap starts above it for zero-based oops.
const HEAP_BASE_MIN_ADDRESS: u64 = 2 * GIB;
/// G1's smallest region; its regions are a power of two, about 2048 a heap.
const G1_REGION_MIN: u64 = MIB;
/// G1's largest region.
const G1_REGION_MAX: u64 = 32 * MIB;
/// How many regions G1 aims at.
const G1_TARGET_REGIONS: u64 = 2048;

/// Launcher options whose value is the next argument (`IsWhiteSpaceOption` of the JDK 17
/// launcher): that value is not an option, nor the main class.
const TAKES_VALUE: &str = "-cp -classpath --class-path -p --module-path --upgrade-module-path \
    --add-modules --enable-native-access --limit-modules --add-exports --add-opens --add-reads \
    --patch-module --describe-module -d --source";

/// Whether a process is a JVM started by the `java` launcher: its executable (the basename of
/// `/proc/PID/exe`) or its `argv[0]` is `java`.
pub(crate) fn is_jvm(exe: &str, args: &[String]) -> bool {
    exe == "java"
        || args
            .first()
            .is_some_and(|a| a == "java" || a.ends_with("/java"))
}

/// The most a JVM's heap can grow to. `args` is its whole command line, `argv[0]` included;
/// `memory` is what the JVM sees as its RAM: the container's memory limit when `limited`,
/// else the node's memory. `node_memory` (`MemTotal`) is for a JVM that ignores the
/// container's limit (`-XX:-UseContainerSupport`): without it such a JVM in a limited container
/// has no ceiling known (unless `-Xmx` gives it one).
pub(crate) fn ceiling(
    args: &[String],
    env: &Env,
    memory: u64,
    limited: bool,
    node_memory: Option<u64>,
) -> HeapCeiling {
    let flags = Flags::read(args, env);
    let (bytes, source) = match flags.max_heap_bytes(memory, limited, node_memory) {
        Ok((bytes, source)) => (Some(bytes), source),
        Err(why) => (None, why),
    };
    HeapCeiling {
        runtime: Runtime::Jvm,
        bytes,
        source,
        default: !flags.any_sizing(),
        gc_off: false,
    }
}

/// Where an option came from, as a sentence says it; lowest precedence first.
const TOOL_OPTIONS: &str = "in JAVA_TOOL_OPTIONS";
/// Put by the launcher before the command line's options.
const JDK_OPTIONS: &str = "in JDK_JAVA_OPTIONS";
/// Options before the main class.
const COMMAND_LINE: &str = "on the command line";
/// Read last: it overrides everything.
const JAVA_OPTIONS: &str = "in _JAVA_OPTIONS";

/// A flag's value and the option that set it (`Setting<()>`: just the option).
#[derive(Clone, Debug, PartialEq)]
struct Setting<T> {
    value: T,
    option: String,
    origin: &'static str,
}

impl<T> Setting<T> {
    /// `-Xmx1g on the command line`.
    fn said(&self) -> String {
        format!("{} {}", self.option, self.origin)
    }

    /// The same option setting `value`.
    fn with<U>(&self, value: U) -> Setting<U> {
        Setting {
            value,
            option: self.option.clone(),
            origin: self.origin,
        }
    }
}

/// The collectors, for the heap alignment each imposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Collector {
    Serial,
    Parallel,
    G1,
    Z,
    Shenandoah,
    Epsilon,
}

/// The flags that size the heap, as the last option setting each left them.
#[derive(Debug, Default)]
struct Flags {
    max_heap: Option<Setting<u64>>,
    initial_heap: Option<Setting<u64>>,
    min_heap: Option<Setting<u64>>,
    max_ram: Option<Setting<u64>>,
    max_percent: Option<Setting<f64>>,
    min_percent: Option<Setting<f64>>,
    max_fraction: Option<Setting<u64>>,
    min_fraction: Option<Setting<u64>>,
    /// `InitialRAMPercentage` or `InitialRAMFraction` given: it only lifts the 128 GiB cap.
    initial_ram: bool,
    container_support: Option<Setting<bool>>,
    compressed_oops: Option<bool>,
    collector: Option<Collector>,
    region_size: Option<u64>,
}

impl Flags {
    /// The flags from every place HotSpot reads options, in its order.
    fn read(args: &[String], env: &Env) -> Self {
        let mut flags = Flags::default();
        let words = |name, origin| split_options(env.get(name).unwrap_or_default(), origin);
        // The VM reads JAVA_TOOL_OPTIONS and _JAVA_OPTIONS itself: all options. The launcher
        // puts JDK_JAVA_OPTIONS before the command line's options.
        for option in &words("JAVA_TOOL_OPTIONS", TOOL_OPTIONS) {
            flags.apply(option, TOOL_OPTIONS);
        }
        for option in launcher_options(&words("JDK_JAVA_OPTIONS", JDK_OPTIONS)) {
            flags.apply(option, JDK_OPTIONS);
        }
        for option in launcher_options(args.get(1..).unwrap_or_default()) {
            flags.apply(option, COMMAND_LINE);
        }
        for option in &words("_JAVA_OPTIONS", JAVA_OPTIONS) {
            flags.apply(option, JAVA_OPTIONS);
        }
        flags
    }

    /// Takes one option; a malformed value leaves the flag as it was (HotSpot would refuse to
    /// start, so a running JVM rarely has one).
    fn apply(&mut self, option: &str, origin: &'static str) {
        let given = Setting {
            value: (),
            option: option.to_owned(),
            origin,
        };
        let read = if let Some(size) = option.strip_prefix("-Xmx") {
            // HotSpot wants at least one byte of heap.
            jvm_size(size)
                .filter(|&b| b > 0)
                .map(|b| self.max_heap = Some(given.with(b)))
        } else if let Some(size) = option.strip_prefix("-Xms") {
            jvm_size(size).map(|b| {
                self.initial_heap = Some(given.with(b));
                self.min_heap = Some(given.with(b));
            })
        } else if let Some(flag) = option.strip_prefix("-XX:") {
            match (flag.split_once('='), flag.split_at_checked(1)) {
                (Some((name, value)), _) => self.apply_value(name, value, &given),
                (None, Some((sign @ ("+" | "-"), name))) => {
                    self.apply_switch(name, sign == "+", &given);
                    Some(())
                }
                _ => Some(()),
            }
        } else {
            Some(())
        };
        if read.is_none() {
            log::debug!("JVM option {option} {origin}: malformed, ignored");
        }
    }

    /// A `-XX:+Name` or `-XX:-Name` option.
    fn apply_switch(&mut self, name: &str, on: bool, given: &Setting<()>) {
        let collector = match name {
            "UseContainerSupport" => {
                self.container_support = Some(given.with(on));
                return;
            }
            "UseCompressedOops" => {
                self.compressed_oops = Some(on);
                return;
            }
            "UseSerialGC" => Collector::Serial,
            "UseParallelGC" => Collector::Parallel,
            "UseG1GC" => Collector::G1,
            "UseZGC" => Collector::Z,
            "UseShenandoahGC" => Collector::Shenandoah,
            "UseEpsilonGC" => Collector::Epsilon,
            _ => return,
        };
        if on {
            self.collector = Some(collector);
        } else if self.collector == Some(collector) {
            self.collector = None;
        }
    }

    /// A `-XX:Name=value` option; `None` when the value is malformed for a flag we read.
    fn apply_value(&mut self, name: &str, value: &str, given: &Setting<()>) -> Option<()> {
        let size = || jvm_size(value).map(|b| given.with(b));
        // HotSpot's range for the percentages is 0 to 100; for the fractions, from 1.
        let percent = || {
            jvm_double(value)
                .filter(|p| (0.0..=100.0).contains(p))
                .map(|p| given.with(p))
        };
        let fraction = || size().filter(|s| s.value >= 1);
        match name {
            "MaxHeapSize" => self.max_heap = Some(size().filter(|s| s.value > 0)?),
            "InitialHeapSize" => self.initial_heap = Some(size()?),
            "MinHeapSize" => self.min_heap = Some(size()?),
            "MaxRAM" => self.max_ram = Some(size()?),
            "MaxRAMPercentage" => self.max_percent = Some(percent()?),
            "MinRAMPercentage" => self.min_percent = Some(percent()?),
            "MaxRAMFraction" => self.max_fraction = Some(fraction()?),
            "MinRAMFraction" => self.min_fraction = Some(fraction()?),
            "InitialRAMPercentage" => self.initial_ram = percent().map(|_| true)?,
            "InitialRAMFraction" => self.initial_ram = fraction().map(|_| true)?,
            "G1HeapRegionSize" => self.region_size = Some(size()?.value),
            // Options in a file: a pure parser cannot read it.
            "Flags" | "VMOptionsFile" => {
                log::debug!("JVM options in the file {value} are not read")
            }
            _ => {}
        }
        Some(())
    }

    /// Whether any flag that sizes the heap was given: the ceiling is then not the default.
    fn any_sizing(&self) -> bool {
        self.ram_flags()
            || self.max_heap.is_some()
            || self.initial_heap.is_some()
            || self.min_heap.is_some()
            || self.container_support.as_ref().is_some_and(|s| !s.value)
    }

    /// Whether a RAM flag was given: HotSpot then counts memory past 128 GiB, and prefers
    /// giving up compressed oops to capping the heap (`override_coop_limit`).
    fn ram_flags(&self) -> bool {
        self.max_ram.is_some()
            || self.max_percent.is_some()
            || self.min_percent.is_some()
            || self.max_fraction.is_some()
            || self.min_fraction.is_some()
            || self.initial_ram
    }

    /// `MaxHeapSize` as HotSpot sets it, and where it came from; `Err` with the reason when it
    /// cannot be known.
    fn max_heap_bytes(
        &self,
        memory: u64,
        limited: bool,
        node_memory: Option<u64>,
    ) -> Result<(u64, String), String> {
        // What `os::physical_memory()` returns: the limit, unless container support is off.
        let ignores_limit = self.container_support.as_ref().filter(|s| !s.value);
        let seen = |bytes, phrase, note| Seen {
            bytes,
            phrase,
            note,
        };
        let seen = match (ignores_limit, limited, node_memory) {
            (Some(off), true, Some(node)) => seen(
                node,
                format!("the node's {}", human(node)),
                Some(off.said()),
            ),
            (Some(off), true, None) => {
                let why = || {
                    format!(
                        "{}: heap sized from the node's memory, unknown here",
                        off.said()
                    )
                };
                return self.explicit(memory).ok_or_else(why);
            }
            (_, true, _) => seen(memory, format!("the {} limit", human(memory)), None),
            (_, false, _) => seen(memory, format!("the node's {}", human(memory)), None),
        };
        if let Some(found) = self.explicit(seen.bytes) {
            return Ok(found);
        }
        if seen.bytes == 0 && self.max_ram.is_none() {
            return Err("the memory the JVM sees is unknown".to_owned());
        }
        let collector = self.collector(seen.bytes);
        let (heap, phrase) = self.ergonomic(seen);
        let bytes = align_up(heap, self.alignment(collector, heap)).unwrap_or(heap);
        let default = if self.any_sizing() { "" } else { "default: " };
        Ok((bytes, format!("{default}{phrase}")))
    }

    /// `-Xmx` or `-XX:MaxHeapSize=`, aligned as HotSpot aligns it.
    fn explicit(&self, seen: u64) -> Option<(u64, String)> {
        let max = self.max_heap.as_ref()?;
        let alignment = self.alignment(self.collector(seen), max.value);
        // Past 64 bits HotSpot refuses to start; the value as given is as good as any.
        let bytes = align_up(max.value, alignment).unwrap_or(max.value);
        Some((bytes, max.said()))
    }

    /// The collector HotSpot runs: the one chosen, else G1 on a server-class machine.
    fn collector(&self, seen: u64) -> Collector {
        self.collector.unwrap_or(if seen >= SERVER_CLASS_MEMORY {
            Collector::G1
        } else {
            Collector::Serial
        })
    }

    /// What `MaxHeapSize` is rounded up to. Exact for Serial, Parallel, G1 and Z (checked with
    /// `PrintFlagsFinal`); Shenandoah and Epsilon kept `-Xmx501m` as given, so they get none
    /// (Shenandoah aligns to its region, at most 32 MiB: we may be that much under).
    fn alignment(&self, collector: Collector, heap: u64) -> u64 {
        match collector {
            Collector::G1 => {
                let region = self
                    .region_size
                    .unwrap_or(heap / G1_TARGET_REGIONS)
                    .clamp(G1_REGION_MIN, G1_REGION_MAX)
                    .next_power_of_two();
                region.max(CARD_TABLE_ALIGNMENT)
            }
            Collector::Serial | Collector::Parallel | Collector::Z => CARD_TABLE_ALIGNMENT,
            Collector::Shenandoah | Collector::Epsilon => 1,
        }
    }

    /// HotSpot's ergonomic heap (`Arguments::set_heap_size` of JDK 17) before alignment, and a
    /// phrase saying how it came to be.
    fn ergonomic(&self, seen: Seen) -> (u64, String) {
        let sized_by_flags = self.ram_flags();
        let mut notes: Vec<String> = seen.note.into_iter().collect();
        let (physical, base) = match &self.max_ram {
            Some(max_ram) => {
                notes.push(max_ram.said());
                (max_ram.value, format!("MaxRAM {}", human(max_ram.value)))
            }
            // Without a RAM flag, memory past MaxRAM's default is not counted.
            None if !sized_by_flags && seen.bytes > DEFAULT_MAX_RAM => {
                notes.push(format!("HotSpot's MaxRAM, less than {}", seen.phrase));
                (DEFAULT_MAX_RAM, "128 GiB".to_owned())
            }
            None => (seen.bytes, seen.phrase),
        };
        let max = Percent::of(
            self.max_percent.as_ref(),
            self.max_fraction.as_ref(),
            DEFAULT_MAX_PERCENT,
        );
        let min = Percent::of(
            self.min_percent.as_ref(),
            self.min_fraction.as_ref(),
            DEFAULT_MIN_PERCENT,
        );
        // f64 as HotSpot computes it; `as` truncates (and saturates) like its cast to julong.
        let share = |percent: f64| (physical as f64 * percent / 100.0) as u64;
        let (mut heap, main) = if share(min.value) < HEAP_FLOOR {
            // Small memory: HotSpot takes MinRAMPercentage, whatever MaxRAMPercentage says.
            let main = format!("{} % of {base}", min.shown());
            let why = "MinRAMPercentage, for small memory";
            notes.push(min.said.unwrap_or_else(|| why.to_owned()));
            if let Some(ignored) = max.said {
                notes.push(format!("{ignored} counts for larger memory only"));
            }
            (share(min.value), main)
        } else if share(max.value) < HEAP_FLOOR {
            notes.extend(max.said.clone());
            (
                HEAP_FLOOR,
                format!(
                    "HotSpot's {} minimum, more than {} % of {base}",
                    human(HEAP_FLOOR),
                    max.shown()
                ),
            )
        } else {
            notes.extend(max.said.clone());
            (share(max.value), format!("{} % of {base}", max.shown()))
        };
        let cap = self.compressed_oops_cap();
        // ZGC never compresses oops; with a RAM flag and no word on compressed oops, HotSpot
        // keeps the heap and gives up compressed oops instead.
        let oops_off = self.compressed_oops == Some(false) || self.collector == Some(Collector::Z);
        if heap > cap && !oops_off && !(sized_by_flags && self.compressed_oops.is_none()) {
            heap = cap;
            notes.push(format!("capped at {} for compressed oops", human(cap)));
        }
        let mut phrase = if notes.is_empty() {
            main
        } else {
            format!("{main} ({})", notes.join("; "))
        };
        // An initial heap above it raises the max heap to match.
        let raised_by = self.initial_heap.as_ref().or(self.min_heap.as_ref());
        if let Some(initial) = raised_by.filter(|s| s.value > heap) {
            phrase = format!(
                "{} (an initial heap above the {} max heap raises it)",
                initial.said(),
                human(heap)
            );
            heap = initial.value;
        }
        (heap, phrase)
    }

    /// The largest heap compressed oops address (`max_heap_for_compressed_oops`, less the
    /// zero-based heap's base as `set_heap_size` takes it): 30 GiB − 32 MiB with G1. Derived
    /// from the source and checked with `-XX:MaxRAM=200g -XX:+UseCompressedOops`; a node with
    /// 123 GiB or more would show it by default.
    fn compressed_oops_cap(&self) -> u64 {
        // The null page is padded to the most the collector may align the heap to: G1's (and
        // Shenandoah's) largest region; a large page otherwise.
        let null_page = match self.collector {
            None | Some(Collector::G1 | Collector::Shenandoah) => G1_REGION_MAX,
            Some(_) => CARD_TABLE_ALIGNMENT,
        };
        COMPRESSED_OOPS_SPAN - null_page - HEAP_BASE_MIN_ADDRESS
    }
}

/// The memory the JVM sees, for the sentence.
struct Seen {
    bytes: u64,
    /// `the 256 MiB limit`.
    phrase: String,
    /// Why, when it is not the obvious (`-XX:-UseContainerSupport on the command line`).
    note: Option<String>,
}

/// A RAM percentage from its flag, or its deprecated fraction flag (used only when the
/// percentage is not given), or the default.
struct Percent {
    value: f64,
    /// The option that set it, `None` for the default.
    said: Option<String>,
}

impl Percent {
    fn of(percent: Option<&Setting<f64>>, fraction: Option<&Setting<u64>>, default: f64) -> Self {
        let (value, said) = match (percent, fraction) {
            (Some(p), _) => (p.value, Some(p.said())),
            (None, Some(f)) => (100.0 / f.value as f64, Some(f.said())),
            (None, None) => (default, None),
        };
        Percent { value, said }
    }

    /// `25`, `75.5`, `33.3`.
    fn shown(&self) -> String {
        let text = format!("{:.1}", self.value);
        text.strip_suffix(".0").map_or(text.clone(), str::to_owned)
    }
}

/// `value` rounded up to a multiple of `alignment` (at least 1); `None` past 64 bits.
fn align_up(value: u64, alignment: u64) -> Option<u64> {
    value
        .div_ceil(alignment.max(1))
        .checked_mul(alignment.max(1))
}

/// Splits an options variable as HotSpot (and the launcher) do: at blanks, except within
/// single or double quotes, which are removed.
fn split_options(text: &str, origin: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote = None;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.get_or_insert_default().push(c),
            None if c == '"' || c == '\'' => {
                // Even an empty pair of quotes makes a word.
                word.get_or_insert_default();
                quote = Some(c);
            }
            None if c.is_whitespace() => words.extend(word.take()),
            None => word.get_or_insert_default().push(c),
        }
    }
    if quote.is_some() {
        log::debug!("unmatched quote {origin}: read to its end");
    }
    words.extend(word);
    words
}

/// The options a `java` command line gives the JVM: those before the main class (or jar, or
/// source file, or `-m module`); past it, arguments are the program's. Launcher options that
/// take the next argument as their value (`-cp DIR`) are skipped with it.
fn launcher_options(args: &[String]) -> Vec<&str> {
    let mut options = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg.starts_with('@') {
            // The launcher reads more arguments from that file; we cannot.
            log::debug!("java argument file {arg} is not read");
            continue;
        }
        if !arg.starts_with('-') || arg == "-m" || arg == "--module" || arg.starts_with("--module=")
        {
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
#[path = "jvm_tests.rs"]
mod tests;
