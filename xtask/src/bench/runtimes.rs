//! What each forecast scenario runs in its cgroup: the tests crate's `workload` (scenarios
//! 1–9), or a real managed runtime (10–12): `java` or `node` running a small program of this
//! bench, so the profiler meets the heap ceilings (`-Xmx`, `--max-old-space-size`) and the
//! memory shapes (garbage collections, heap growth) of the runtimes most containers run.
//!
//! The programs are embedded ([`JAVA_SOURCE`], [`NODE_SOURCE`]) and written beside the
//! recordings when the bench starts; the Java one is compiled there with `javac`.
use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use super::scenario::Scenario;

/// The JVM program: `Grow leak|warmup ...` (see the file).
const JAVA_SOURCE: &str = include_str!("runtimes/Grow.java");
const JAVA_FILE: &str = "Grow.java";
const JAVA_CLASS: &str = "Grow";
/// The Node.js program: `grow.js leak ...` (see the file).
const NODE_SOURCE: &str = include_str!("runtimes/grow.js");
const NODE_FILE: &str = "grow.js";

/// Environment variables through which a runtime takes options beside its command line. They
/// are removed from the runtimes' environment: a scenario's heap ceiling is the one its
/// command line gives, whatever the shell that runs the bench has set.
const RUNTIME_ENV: [&str; 4] = [
    "JAVA_TOOL_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "_JAVA_OPTIONS",
    "NODE_OPTIONS",
];

/// What a scenario runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Program {
    /// The tests crate's `workload`, with [`Scenario::workload_args`].
    Workload,
    /// A real runtime: `options` before the bench's program, `args` after it.
    Runtime {
        runtime: Runtime,
        options: &'static [&'static str],
        args: &'static [&'static str],
    },
}

/// A managed runtime the bench runs for real.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Runtime {
    /// `java` (OpenJDK) running `Grow`.
    Java,
    /// `node` running `grow.js`.
    Node,
}

impl Runtime {
    /// The command that starts it, found on `PATH`.
    fn command(self) -> &'static str {
        match self {
            Runtime::Java => "java",
            Runtime::Node => "node",
        }
    }
}

/// The runtimes the selected scenarios need, checked and their programs ready in `dir`.
pub(super) struct Runtimes {
    dir: PathBuf,
    /// Each runtime's version line, e.g. `java: openjdk version "17.0.15" 2025-04-15`.
    versions: Vec<String>,
}

impl Runtimes {
    /// Writes the programs `scenarios` need into `dir`, compiles the Java one, and reads the
    /// runtimes' versions; does nothing for scenarios of the workload alone, so a machine
    /// without Java or Node.js can still run those.
    pub(super) fn prepare<'a>(
        dir: &Path,
        scenarios: impl IntoIterator<Item = &'a Scenario>,
    ) -> Result<Self> {
        let mut needed: Vec<Runtime> = scenarios
            .into_iter()
            .filter_map(|s| match s.program {
                Program::Runtime { runtime, .. } => Some(runtime),
                Program::Workload => None,
            })
            .collect();
        needed.sort_by_key(|r| r.command());
        needed.dedup();
        if !needed.is_empty() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut versions = Vec::new();
        for runtime in needed {
            versions.push(format!("{}: {}", runtime.command(), version(runtime)?));
            match runtime {
                Runtime::Java => compile_java(dir)?,
                Runtime::Node => write(&dir.join(NODE_FILE), NODE_SOURCE)?,
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            versions,
        })
    }

    /// The runtimes' version lines (none when no scenario needs one).
    pub(super) fn versions(&self) -> &[String] {
        &self.versions
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The first line a runtime prints about its version (`java -version` on stderr, `node
/// --version` on stdout).
fn version(runtime: Runtime) -> Result<String> {
    let command = runtime.command();
    let flag = match runtime {
        Runtime::Java => "-version",
        Runtime::Node => "--version",
    };
    let mut run = Command::new(command);
    // Options from these would be announced first ("Picked up JAVA_TOOL_OPTIONS: ...").
    for name in RUNTIME_ENV {
        run.env_remove(name);
    }
    let output = run.arg(flag).output().with_context(|| {
        format!(
            "running `{command} {flag}`: the runtime scenarios need {}",
            match runtime {
                Runtime::Java => "OpenJDK (java and javac) on PATH",
                Runtime::Node => "Node.js (node) on PATH",
            }
        )
    })?;
    if !output.status.success() {
        bail!("`{command} {flag}` failed ({})", output.status);
    }
    let text = [output.stdout, output.stderr].concat();
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .next()
        .unwrap_or("unknown version")
        .trim()
        .to_owned())
}

/// Writes `Grow.java` into `dir` and compiles it there.
fn compile_java(dir: &Path) -> Result<()> {
    let source = dir.join(JAVA_FILE);
    write(&source, JAVA_SOURCE)?;
    let output = Command::new("javac")
        .arg("-d")
        .arg(dir)
        .arg(&source)
        .output()
        .context("running javac: the JVM scenarios need a JDK (javac), not only a JRE")?;
    if !output.status.success() {
        bail!(
            "javac {} failed ({}): {}",
            source.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// How to start each scenario's program.
pub(super) struct Launcher<'a> {
    /// The tests crate's `workload`.
    pub workload: &'a Path,
    /// The file scenario 5 reads (empty when scenario 5 does not run).
    pub pagecache_file: &'a Path,
    pub runtimes: &'a Runtimes,
}

impl Launcher<'_> {
    /// The command that starts `scenario`'s program, its stdout not yet redirected.
    pub(super) fn command(&self, scenario: &Scenario) -> Command {
        let (program, args) = self.argv(scenario);
        let mut command = Command::new(program);
        command.args(args);
        if matches!(scenario.program, Program::Runtime { .. }) {
            for name in RUNTIME_ENV {
                command.env_remove(name);
            }
        }
        command
    }

    /// The program and its arguments.
    fn argv(&self, scenario: &Scenario) -> (OsString, Vec<OsString>) {
        match scenario.program {
            Program::Workload => (
                self.workload.into(),
                scenario
                    .workload_args(self.pagecache_file)
                    .into_iter()
                    .map(OsString::from)
                    .collect(),
            ),
            Program::Runtime {
                runtime,
                options,
                args,
            } => {
                let dir = &self.runtimes.dir;
                let mut argv: Vec<OsString> = options.iter().map(OsString::from).collect();
                match runtime {
                    Runtime::Java => {
                        argv.extend(["-cp".into(), dir.into(), JAVA_CLASS.into()]);
                    }
                    Runtime::Node => argv.push(dir.join(NODE_FILE).into()),
                }
                argv.extend(args.iter().map(OsString::from));
                (runtime.command().into(), argv)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::scenario::SCENARIOS;

    fn launcher(runtimes: &Runtimes) -> Launcher<'_> {
        Launcher {
            workload: Path::new("/bin/workload"),
            pagecache_file: Path::new("/f"),
            runtimes,
        }
    }

    fn scenario(slug: &str) -> &'static Scenario {
        SCENARIOS
            .iter()
            .find(|s| s.slug == slug)
            .expect("a scenario of that name")
    }

    fn strings(args: &[OsString]) -> Vec<&str> {
        args.iter()
            .map(|a| a.to_str().expect("UTF-8 arguments"))
            .collect()
    }

    #[test]
    fn workload_scenarios_run_the_workload() {
        let runtimes = Runtimes {
            dir: PathBuf::from("/r"),
            versions: Vec::new(),
        };
        let (program, args) = launcher(&runtimes).argv(scenario("page-cache"));
        assert_eq!(program, "/bin/workload");
        assert_eq!(strings(&args)[..3], ["--comm", "fc-pagecache", "pagecache"]);
        assert!(strings(&args).contains(&"/f"));
    }

    #[test]
    fn runtime_scenarios_run_their_program_with_their_heap_options() {
        let runtimes = Runtimes {
            dir: PathBuf::from("/r"),
            versions: Vec::new(),
        };
        let launcher = launcher(&runtimes);

        let (program, args) = launcher.argv(scenario("jvm-leak"));
        assert_eq!(program, "java");
        assert_eq!(strings(&args)[..4], ["-Xmx512m", "-cp", "/r", "Grow"]);
        assert_eq!(strings(&args)[4], "leak");

        let (program, args) = launcher.argv(scenario("node-leak"));
        assert_eq!(program, "node");
        assert_eq!(
            strings(&args)[..3],
            ["--max-old-space-size=512", "/r/grow.js", "leak"]
        );

        let (program, args) = launcher.argv(scenario("jvm-warmup"));
        assert_eq!(program, "java");
        assert_eq!(
            strings(&args)[..5],
            ["-Xms128m", "-Xmx128m", "-cp", "/r", "Grow"]
        );
        assert_eq!(strings(&args)[5], "warmup");
    }

    #[test]
    fn runtimes_get_no_options_from_the_benchs_environment() {
        let runtimes = Runtimes {
            dir: PathBuf::from("/r"),
            versions: Vec::new(),
        };
        let command = launcher(&runtimes).command(scenario("node-leak"));
        let removed: Vec<_> = command
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_owned())
            .collect();
        for name in RUNTIME_ENV {
            assert!(removed.iter().any(|r| r == name), "{name} is removed");
        }
    }

    #[test]
    fn nothing_is_prepared_for_the_workload_alone() {
        let dir = Path::new("/nonexistent/bench-forecast/runtimes");
        let runtimes =
            Runtimes::prepare(dir, SCENARIOS.iter().take(9)).expect("nothing to prepare");
        assert!(runtimes.versions().is_empty());
        assert!(!dir.exists());
    }

    #[test]
    fn the_programs_know_every_mode_the_scenarios_use() {
        for s in &SCENARIOS {
            if let Program::Runtime { runtime, args, .. } = s.program {
                let source = match runtime {
                    Runtime::Java => JAVA_SOURCE,
                    Runtime::Node => NODE_SOURCE,
                };
                assert!(
                    source.contains(&format!("'{}'", args[0]))
                        || source.contains(&format!("\"{}\"", args[0])),
                    "{}",
                    s.slug
                );
                for option in args.iter().filter_map(|a| a.strip_prefix("--")) {
                    assert!(
                        source.contains(&format!("\"{option}\""))
                            || source.contains(&format!("'{option}'")),
                        "{} --{option}",
                        s.slug
                    );
                }
            }
        }
    }
}
