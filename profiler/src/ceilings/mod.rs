//! Runtime heap ceilings: the most a managed runtime's heap can grow to, read from what its
//! process was started with (`/proc/PID/cmdline` and `environ`).
//!
//! A JVM started with `-Xmx128m` cannot hold more than 128 MiB of Java objects, however fast
//! its heap warms up; a JVM allowed 1 GiB in a 256 MiB container will be OOM-killed by the
//! kernel before it ever throws `OutOfMemoryError`. Both are knowable from the launch, long
//! before any trend shows them. What the container can reach is then at most what it holds
//! now plus the headroom left under each runtime's ceiling; when that stays under the limit,
//! growth toward it is a warm-up, not a leak.
//!
//! Nothing here is guessed: a process whose launch cannot be read (it exited, a permission) or
//! holds nonsense has no ceiling known, and counts as a process of any other language.
pub(crate) mod assess;
pub(crate) mod dotnet;
pub(crate) mod elf;
pub(crate) mod golang;
pub(crate) mod hsperf;
pub(crate) mod jvm;
pub(crate) mod node;
pub(crate) mod procs;
pub(crate) mod size;

use serde::Serialize;

/// A managed runtime with a heap ceiling of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Runtime {
    /// HotSpot or OpenJ9 (`java`).
    Jvm,
    /// Node.js (V8).
    Node,
    /// A Go program.
    Go,
    /// .NET (CoreCLR).
    Dotnet,
}

impl Runtime {
    /// Its name in JSON and in metric labels.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Runtime::Jvm => "jvm",
            Runtime::Node => "node",
            Runtime::Go => "go",
            Runtime::Dotnet => "dotnet",
        }
    }

    /// How people name it in a sentence.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Runtime::Jvm => "JVM",
            Runtime::Node => "Node.js",
            Runtime::Go => "Go",
            Runtime::Dotnet => ".NET",
        }
    }
}

/// A process's environment, as `/proc/PID/environ` holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Env(Vec<(String, String)>);

impl Env {
    /// From `KEY=value` entries (those without `=` are skipped).
    pub(crate) fn from_entries<'a>(entries: impl IntoIterator<Item = &'a str>) -> Self {
        Env(entries
            .into_iter()
            .filter_map(|e| e.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }

    /// The value of `key`, as `getenv` finds it (the first entry).
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The most one runtime's heap can grow to, and where that figure came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct HeapCeiling {
    /// Which runtime. (Named so in JSON: `runtime` on a container's lines is its container
    /// runtime, docker or containerd.)
    #[serde(rename = "language_runtime")]
    pub runtime: Runtime,
    /// The ceiling, bytes; `None` when the runtime has none set (Go without `GOMEMLIMIT`).
    #[serde(rename = "ceiling_bytes")]
    pub bytes: Option<u64>,
    /// Where the figure came from, for people: `-Xmx1g on the command line`,
    /// `JAVA_TOOL_OPTIONS=-XX:MaxRAMPercentage=50`, `default: 25 % of the 256 MiB limit`.
    pub source: String,
    /// Whether `bytes` is the runtime's default (nothing set it).
    pub default: bool,
    /// Go with `GOGC=off` and no `GOMEMLIMIT`: no garbage is ever collected.
    pub gc_off: bool,
}
