//! Charge stacks and process growth with real programs: `leak.c` and `leak.rs`
//! (`tests/workloads/`), servers whose cache leaks through a known call chain (`main` →
//! `handle_request` → `cache_put`) while `churn` allocates as many bytes and frees them, built
//! in a scratch directory by the real `cc` and `rustc`, with and without frame pointers; and
//! readers of the `charge_stacks` lines and of the report's stack sections.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

use crate::{find_in_path, run, run_profiler, TempDir, TestCgroup, Workload, PATIENCE};

/// The C leak, compiled at test time.
pub const LEAK_C: &str = include_str!("../workloads/leak.c");
/// The Rust leak, compiled at test time.
pub const LEAK_RS: &str = include_str!("../workloads/leak.rs");

/// The heading of the report's section of the stacks that charged most before a kill.
pub const TOP_STACKS_HEADING: &str = "Top charging stacks in the minute before the kill";
/// What the report's top-stacks table starts with.
const TOP_STACKS_TABLE: &str = "<table class=\"top-stacks\"";
/// What a report's container section starts with.
const CONTAINER_SECTION: &str = "<section class=\"container\">";

/// How long building a program may take on a busy two-core machine.
const BUILD_TIMEOUT: Duration = Duration::from_secs(120);

/// How a leak program is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// `leak.c` with `cc -O1 -g -fno-omit-frame-pointer -fno-inline`.
    C,
    /// `leak.rs` with `rustc -O -C force-frame-pointers=yes`.
    RustFramePointers,
    /// `leak.rs` with `rustc -C opt-level=2 -C force-frame-pointers=no`.
    RustNoFramePointers,
}

impl Build {
    /// The executable's file name, which is also the process name (`comm`).
    pub fn comm(self) -> &'static str {
        match self {
            Build::C => "leak",
            Build::RustFramePointers => "leak-fp",
            Build::RustNoFramePointers => "leak-nofp",
        }
    }
}

/// A leak program built in a scratch directory (removed when this is dropped).
pub struct LeakProgram {
    _dir: TempDir,
    binary: PathBuf,
    build: Build,
}

impl LeakProgram {
    /// Writes the source to a scratch directory and builds it as `build` says; panics with the
    /// compiler's output if that fails.
    #[track_caller]
    pub fn build(build: Build) -> Self {
        let dir = TempDir::new(build.comm());
        let binary = dir.path().join(build.comm());
        let (compiler, source, flags): (&str, PathBuf, &[&str]) = match build {
            Build::C => (
                "cc",
                dir.path().join("leak.c"),
                &["-O1", "-g", "-fno-omit-frame-pointer", "-fno-inline"],
            ),
            Build::RustFramePointers => (
                "rustc",
                dir.path().join("leak.rs"),
                &[
                    "--crate-name",
                    "leak",
                    "-O",
                    "-C",
                    "force-frame-pointers=yes",
                ],
            ),
            Build::RustNoFramePointers => (
                "rustc",
                dir.path().join("leak.rs"),
                &[
                    "--crate-name",
                    "leak",
                    "-C",
                    "opt-level=2",
                    "-C",
                    "force-frame-pointers=no",
                ],
            ),
        };
        let text = if build == Build::C { LEAK_C } else { LEAK_RS };
        fs::write(&source, text).unwrap_or_else(|e| panic!("writing {}: {e}", source.display()));
        let tool = find_in_path(compiler).unwrap_or_else(|| {
            panic!("`{compiler}` is not on PATH: the stack tests build with it")
        });
        let mut command = crate::process::command(&tool);
        command
            .args(flags)
            .arg("-o")
            .arg(&binary)
            .arg(&source)
            .current_dir(dir.path());
        let finished = run(command, BUILD_TIMEOUT);
        if !finished.status.success() || !binary.is_file() {
            finished.fail(format_args!(
                "{compiler} could not build {}",
                source.display()
            ));
        }
        Self {
            _dir: dir,
            binary,
            build,
        }
    }

    /// The process name of the program.
    pub fn comm(&self) -> &'static str {
        self.build.comm()
    }

    /// Starts `leak <mib_per_s>` in `cgroup`: it prints `started`, then `leaked <bytes>` after
    /// every MiB it keeps.
    pub fn spawn(&self, cgroup: &TestCgroup, mib_per_s: u32) -> Workload {
        cgroup.spawn_program(&self.binary, &[&mib_per_s.to_string()])
    }
}

/// The `charge_stacks` lines about `cgroup` among `lines`, in order.
pub fn charge_stacks_of(lines: &[(Instant, Value)], cgroup: &str) -> Vec<Value> {
    lines
        .iter()
        .map(|(_, line)| line)
        .filter(|line| crate::is_line(line, "charge_stacks", cgroup))
        .cloned()
        .collect()
}

/// Whether `frame` names `function`: exactly (`cache_put`), or as the last part of a path
/// (`leak::cache_put`).
pub fn names(frame: &str, function: &str) -> bool {
    frame == function
        || frame
            .strip_suffix(function)
            .is_some_and(|rest| rest.ends_with("::"))
}

/// Whether `frame` is one the profiler could not name.
pub fn is_unnamed(frame: &str) -> bool {
    frame.starts_with("[unknown]") || frame == "[jit]"
}

/// The user frames (root first) of one stack of a `charge_stacks` line; panics if they are not
/// an array of strings (the contract check catches that first).
#[track_caller]
pub fn user_frames(stack: &Value) -> Vec<String> {
    stack["user"]
        .as_array()
        .unwrap_or_else(|| panic!("a charge stack without user frames: {stack}"))
        .iter()
        .map(|frame| {
            frame
                .as_str()
                .unwrap_or_else(|| panic!("a frame that is not a string in {stack}"))
                .to_owned()
        })
        .collect()
}

/// The bytes and samples charged through one user stack, summed over lines, processes and
/// kernel stacks.
#[derive(Clone, Debug)]
pub struct UserStack {
    /// The user frames, root first.
    pub frames: Vec<String>,
    /// Bytes the samples stand for.
    pub bytes: u64,
    /// How many samples.
    pub samples: u64,
}

impl UserStack {
    /// Whether some frame names `function` (see [`names`]).
    pub fn has(&self, function: &str) -> bool {
        self.frames.iter().any(|frame| names(frame, function))
    }

    /// The innermost frame.
    pub fn leaf(&self) -> Option<&str> {
        self.frames.last().map(String::as_str)
    }

    /// The frames between the innermost frame naming `inner` and the innermost frame naming
    /// `outer` above it (both left out), root first; `None` if either is missing.
    pub fn between(&self, outer: &str, inner: &str) -> Option<&[String]> {
        let inner_at = self.frames.iter().rposition(|f| names(f, inner))?;
        let outer_at = self.frames[..inner_at]
            .iter()
            .rposition(|f| names(f, outer))?;
        Some(&self.frames[outer_at + 1..inner_at])
    }

    /// The frames leaf first, joined by ` ← ` as the report shows them.
    pub fn leaf_first(&self) -> String {
        let frames: Vec<&str> = self.frames.iter().rev().map(String::as_str).collect();
        frames.join(" ← ")
    }
}

/// The stacks of `lines` (`charge_stacks` lines) summed by their user frames, most bytes
/// first.
#[track_caller]
pub fn user_stacks(lines: &[Value]) -> Vec<UserStack> {
    let mut totals: Vec<UserStack> = Vec::new();
    for line in lines {
        for stack in line["stacks"].as_array().into_iter().flatten() {
            let frames = user_frames(stack);
            let bytes = stack["bytes"].as_u64().unwrap_or_default();
            let samples = stack["samples"].as_u64().unwrap_or_default();
            match totals.iter_mut().find(|t| t.frames == frames) {
                Some(total) => {
                    total.bytes += bytes;
                    total.samples += samples;
                }
                None => totals.push(UserStack {
                    frames,
                    bytes,
                    samples,
                }),
            }
        }
    }
    totals.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(b.samples.cmp(&a.samples)));
    totals
}

/// The median number of user frames per sample in `lines` (`charge_stacks` lines); `None`
/// without samples.
#[track_caller]
pub fn median_user_frames(lines: &[Value]) -> Option<f64> {
    let mut depths: Vec<(usize, u64)> = user_stacks(lines)
        .iter()
        .map(|s| (s.frames.len(), s.samples))
        .filter(|&(_, samples)| samples > 0)
        .collect();
    depths.sort_unstable();
    let total: u64 = depths.iter().map(|&(_, samples)| samples).sum();
    if total == 0 {
        return None;
    }
    // The depth of the sample at (0-based) rank `rank`.
    let at = |rank: u64| -> usize {
        let mut seen = 0;
        for &(depth, samples) in &depths {
            seen += samples;
            if rank < seen {
                return depth;
            }
        }
        depths.last().map_or(0, |&(depth, _)| depth)
    };
    let low = at((total - 1) / 2);
    let high = at(total / 2);
    Some((low + high) as f64 / 2.0)
}

/// A few lines that show the `count` stacks with most bytes of `stacks`, for messages.
pub fn describe_stacks(stacks: &[UserStack], count: usize) -> String {
    let all: u64 = stacks.iter().map(|s| s.bytes).sum::<u64>().max(1);
    stacks
        .iter()
        .take(count)
        .map(|s| {
            format!(
                "    {:5.1} % {} bytes {} samples: {}\n",
                s.bytes as f64 * 100.0 / all as f64,
                s.bytes,
                s.samples,
                s.leaf_first()
            )
        })
        .collect()
}

/// Runs `profiler report <recording> -o <dir>`; returns the HTML of `<dir>/report.html`.
/// Panics with the command's output if it fails.
#[track_caller]
pub fn render_report(recording: &Path, dir: &Path) -> String {
    let finished = run_profiler(
        &[
            "report",
            &recording.display().to_string(),
            "-o",
            &dir.display().to_string(),
        ],
        PATIENCE,
    );
    if !finished.status.success() {
        finished.fail("profiler report failed");
    }
    let page = dir.join("report.html");
    fs::read_to_string(&page).unwrap_or_else(|e| {
        finished.fail(format_args!("reading {}: {e}", page.display()));
    })
}

/// The text of an HTML fragment: each tag made a space, the entities the report writes
/// decoded, runs of white space made one space.
pub fn text_of(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    let decoded = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&larr;", "←")
        .replace("&#8592;", "←")
        .replace("&amp;", "&");
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The data rows (rows with `<td>` cells) of the first `<table class="top-stacks">` after the
/// first `heading` in `html`, each as text (see [`text_of`]).
pub fn top_stack_rows(html: &str, heading: &str) -> Result<Vec<String>, String> {
    let from = html
        .find(heading)
        .ok_or_else(|| format!("the report has no {heading:?}"))?;
    let rest = &html[from..];
    let table_at = rest
        .find(TOP_STACKS_TABLE)
        .ok_or_else(|| format!("no {TOP_STACKS_TABLE}> after {heading:?}"))?;
    let table = &rest[table_at..];
    let table = &table[..table.find("</table>").unwrap_or(table.len())];
    Ok(table
        .split("<tr")
        .skip(1)
        .filter(|row| row.contains("<td"))
        .map(|row| text_of(&format!("<tr{}", row.split("</tr>").next().unwrap_or(row))))
        .collect())
}

/// The SVG documents of the `<img>` elements of `html` whose `src` is a base64
/// `data:image/svg+xml` URI, decoded; an error for one that does not decode.
pub fn svg_images(html: &str) -> Result<Vec<String>, String> {
    let mut svgs = Vec::new();
    for (at, _) in html.match_indices("src=\"data:image/svg+xml") {
        let uri = &html[at + "src=\"".len()..];
        let uri = &uri[..uri.find('"').unwrap_or(uri.len())];
        let Some((_, payload)) = uri.split_once(";base64,") else {
            return Err(format!(
                "an SVG image that is not base64: {}",
                excerpt(uri, 0, 120)
            ));
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(payload.trim())
            .map_err(|e| format!("an SVG image's base64 does not decode: {e}"))?;
        let svg =
            String::from_utf8(bytes).map_err(|e| format!("an SVG image that is not UTF-8: {e}"))?;
        svgs.push(svg);
    }
    Ok(svgs)
}

/// The report's section about the container whose cgroup is `cgroup`: from its
/// `<section class="container">` to the next one (or the end of the page).
pub fn container_section<'a>(html: &'a str, cgroup: &str) -> Option<&'a str> {
    let needle = format!("<code>{cgroup}</code>");
    let starts: Vec<usize> = html
        .match_indices(CONTAINER_SECTION)
        .map(|(at, _)| at)
        .collect();
    starts.iter().enumerate().find_map(|(i, &start)| {
        let end = starts.get(i + 1).copied().unwrap_or(html.len());
        let section = &html[start..end];
        section.contains(&needle).then_some(section)
    })
}

/// At most `len` bytes of `text` from byte `from`, cut at character boundaries, for messages.
pub fn excerpt(text: &str, from: usize, len: usize) -> &str {
    let mut start = from.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = start.saturating_add(len).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[start..end]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn line(stacks: Value) -> Value {
        json!({"type": "charge_stacks", "stacks": stacks})
    }

    #[test]
    fn stacks_are_summed_by_user_frames_and_the_median_is_per_sample() {
        let lines = [
            line(json!([
                {"samples": 3, "bytes": 300, "user": ["main", "handle_request", "cache_put"], "kernel": ["a"]},
                {"samples": 1, "bytes": 100, "user": ["main", "churn"], "kernel": []},
            ])),
            line(json!([
                {"samples": 2, "bytes": 200, "user": ["main", "handle_request", "cache_put"], "kernel": ["b"]},
            ])),
        ];
        let stacks = user_stacks(&lines);
        assert_eq!(stacks.len(), 2);
        assert_eq!((stacks[0].bytes, stacks[0].samples), (500, 5));
        assert_eq!(stacks[0].leaf_first(), "cache_put ← handle_request ← main");
        assert_eq!(
            stacks[0].between("main", "cache_put"),
            Some(&["handle_request".to_owned()][..])
        );
        // Depths 3 ×5 and 2 ×1: the median sample has 3 frames.
        assert_eq!(median_user_frames(&lines), Some(3.0));
        assert_eq!(median_user_frames(&[line(json!([]))]), None);
    }

    #[test]
    fn frames_name_functions_by_their_last_path_part() {
        assert!(names("cache_put", "cache_put"));
        assert!(names("leak::cache_put", "cache_put"));
        assert!(!names("leak::my_cache_put", "cache_put"));
        assert!(!names("[unknown] (leak)", "cache_put"));
        assert!(is_unnamed("[unknown] (libc.so.6)") && is_unnamed("[jit]"));
    }

    #[test]
    fn the_report_readers_find_rows_images_and_sections() {
        let svg = "<svg xmlns=\"http://www.w3.org/2000/svg\"><text>cache_put</text></svg>";
        let encoded = base64::engine::general_purpose::STANDARD.encode(svg);
        let html = format!(
            "<h2>Top charging stacks in the minute before the kill</h2>\n\
             <table class=\"top-stacks\"><tr><th>Stack</th></tr>\n\
             <tr><td>cache_put ← handle_request ← main</td><td>90 %</td></tr>\n\
             <tr><td>churn &amp; co</td></tr></table>\n\
             <img src=\"data:image/svg+xml;base64,{encoded}\" alt=\"flame\">\n\
             <section class=\"container\"><h2>a</h2><p class=\"meta\">cgroup <code>/x/a</code></p>\
             </section>\n<section class=\"container\"><h2>b</h2>\
             <p class=\"meta\">cgroup <code>/x/b</code></p><p>stacks are short</p></section>"
        );
        let rows = top_stack_rows(&html, TOP_STACKS_HEADING).expect("rows");
        assert_eq!(
            rows,
            ["cache_put ← handle_request ← main 90 %", "churn & co"]
        );
        assert_eq!(svg_images(&html).expect("images"), [svg]);
        assert!(!text_of(container_section(&html, "/x/a").expect("a")).contains("short"));
        assert!(text_of(container_section(&html, "/x/b").expect("b")).contains("stacks are short"));
        assert!(container_section(&html, "/x/c").is_none());
        assert!(top_stack_rows("<p>nothing</p>", TOP_STACKS_HEADING).is_err());
    }
}
