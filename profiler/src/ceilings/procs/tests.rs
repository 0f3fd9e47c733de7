//! The reading rules on a table of processes the test controls (what a process runs comes
//! from recorded command lines), and the real `/proc` for what it must not take for a runtime.
use std::collections::BTreeMap;

use super::{
    procfs::{parse_resident, split_nul},
    *,
};

const MIB: u64 = 1 << 20;
const LIMIT: u64 = 256 * MIB;

/// One process of the fake table.
#[derive(Clone, Debug)]
struct Process {
    launch: Launch,
    resident: u64,
    heap_used: Option<u64>,
}

/// A table of processes, counting what is read.
#[derive(Debug, Default)]
struct Table {
    processes: BTreeMap<u32, Process>,
    launches: BTreeMap<u32, u32>,
    comms: u32,
    figures: u32,
}

impl Table {
    fn start(&mut self, pid: u32, line: &str, env: &[&str]) {
        let args: Vec<String> = line.split(' ').map(str::to_owned).collect();
        let exe = args[0].rsplit('/').next().unwrap_or_default().to_owned();
        self.processes.insert(
            pid,
            Process {
                launch: Launch {
                    comm: exe.clone(),
                    exe,
                    args,
                    env: Env::from_entries(env.iter().copied()),
                },
                resident: 40 * MIB,
                heap_used: Some(10 * MIB),
            },
        );
    }
}

impl ProcessTable for Table {
    fn pids(&mut self, _dir: &Path) -> io::Result<HashSet<u32>> {
        Ok(self.processes.keys().copied().collect())
    }

    fn comm(&mut self, pid: u32) -> io::Result<String> {
        self.comms += 1;
        self.processes
            .get(&pid)
            .map(|p| p.launch.comm.clone())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn launch(&mut self, pid: u32) -> io::Result<Launch> {
        *self.launches.entry(pid).or_default() += 1;
        self.processes
            .get(&pid)
            .map(|p| p.launch.clone())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn is_go(&mut self, pid: u32) -> bool {
        self.processes
            .get(&pid)
            .is_some_and(|p| p.launch.exe.ends_with("-go"))
    }

    fn figures(&mut self, pid: u32, _runtime: Runtime) -> Figures {
        self.figures += 1;
        self.processes
            .get(&pid)
            .map(|p| Figures {
                resident_bytes: Some(p.resident),
                heap_used_bytes: p.heap_used,
            })
            .unwrap_or_default()
    }
}

fn refresh(runtimes: &mut ContainerRuntimes, table: &mut Table, now: f64) -> Findings {
    runtimes.refresh_from(table, Path::new("/cg"), now, LIMIT, true)
}

#[test]
fn each_process_is_read_once_however_many_rounds() {
    let mut table = Table::default();
    table.start(
        10,
        "/usr/bin/java -Xmx128m -jar app.jar",
        &["JAVA_HOME=/opt/jdk"],
    );
    table.start(11, "/bin/sh /entrypoint.sh", &[]);
    let mut runtimes = ContainerRuntimes::new(None);
    let first = refresh(&mut runtimes, &mut table, 0.0);
    assert_eq!(first.new_ceilings.len(), 1, "{first:?}");
    assert_eq!(first.new_ceilings[0].2.bytes, Some(128 * MIB));
    for round in 1..=60 {
        let later = refresh(&mut runtimes, &mut table, f64::from(round));
        assert_eq!(later, Findings::default(), "round {round}");
    }
    assert_eq!(table.launches, BTreeMap::from([(10, 1), (11, 1)]));
    // The JVM's figures every 5 s, not every round: at 0, 5, 10, ... 60.
    assert_eq!(table.figures, 13);
    assert_eq!(
        runtimes
            .processes()
            .map(|p| p.heap_used_bytes)
            .collect::<Vec<_>>(),
        [Some(10 * MIB)]
    );
}

#[test]
fn an_entry_point_that_execs_the_runtime_is_read_again() {
    let mut table = Table::default();
    table.start(
        20,
        "/bin/sh /docker-entrypoint.sh",
        &["NODE_OPTIONS=--max-old-space-size=512"],
    );
    let mut runtimes = ContainerRuntimes::new(None);
    assert_eq!(refresh(&mut runtimes, &mut table, 0.0), Findings::default());
    // `exec node server.js`: the same pid, another program.
    table.start(
        20,
        "/usr/bin/node server.js",
        &["NODE_OPTIONS=--max-old-space-size=512"],
    );
    let found = refresh(&mut runtimes, &mut table, 1.0);
    assert_eq!(found.new_ceilings.len(), 1);
    assert_eq!(found.new_risks.len(), 1, "512 MiB of old space in 256 MiB");
    assert_eq!(table.launches[&20], 2);
    // A runtime's name is not looked at again; an old non-runtime's only every 5 s.
    table.start(21, "/bin/sleep infinity", &[]);
    refresh(&mut runtimes, &mut table, 2.0);
    let comms = table.comms;
    for t in [8.0, 8.5, 9.0, 9.5] {
        refresh(&mut runtimes, &mut table, t);
    }
    assert_eq!(table.comms - comms, 1, "one look at the old sleep in 1.5 s");
}

#[test]
fn a_risk_is_told_once_and_a_gone_process_is_forgotten() {
    let mut table = Table::default();
    table.start(30, "/usr/bin/java -Xmx1g Main", &[]);
    let mut runtimes = ContainerRuntimes::new(None);
    let first = refresh(&mut runtimes, &mut table, 0.0);
    assert_eq!(first.new_risks.len(), 1);
    assert_eq!(first.new_risks[0].non_heap_bytes, Some(30 * MIB));
    assert!(refresh(&mut runtimes, &mut table, 6.0).new_risks.is_empty());
    table.processes.clear();
    refresh(&mut runtimes, &mut table, 7.0);
    assert_eq!(runtimes.processes().count(), 0);
    // Its death is explained a moment later: it is still known then.
    assert_eq!(runtimes.process(30).map(|p| p.pid), Some(30));
    // The same pid again is a new process.
    table.start(30, "/usr/bin/java -Xmx1g Main", &[]);
    assert_eq!(refresh(&mut runtimes, &mut table, 8.0).new_risks.len(), 1);
}

#[test]
fn a_process_that_cannot_be_read_has_no_ceiling_and_stops_nothing() {
    let mut table = Table::default();
    table.start(40, "/usr/bin/java -Xmx64m Main", &[]);
    let mut runtimes = ContainerRuntimes::new(None);
    // It exits between the listing and the reading: no ceiling, no error, no retry.
    let listed = table.processes.clone();
    table.processes.clear();
    struct Racing<'a>(&'a mut Table, BTreeMap<u32, Process>);
    impl ProcessTable for Racing<'_> {
        fn pids(&mut self, _dir: &Path) -> io::Result<HashSet<u32>> {
            Ok(self.1.keys().copied().collect())
        }
        fn comm(&mut self, pid: u32) -> io::Result<String> {
            self.0.comm(pid)
        }
        fn launch(&mut self, pid: u32) -> io::Result<Launch> {
            self.0.launch(pid)
        }
        fn is_go(&mut self, pid: u32) -> bool {
            self.0.is_go(pid)
        }
        fn figures(&mut self, pid: u32, runtime: Runtime) -> Figures {
            self.0.figures(pid, runtime)
        }
    }
    let found = runtimes.refresh_from(
        &mut Racing(&mut table, listed),
        Path::new("/cg"),
        0.0,
        LIMIT,
        true,
    );
    assert_eq!(found, Findings::default());
    assert_eq!(runtimes.processes().count(), 0);
}

#[test]
fn go_programs_are_told_by_their_binary_and_a_new_limit_reads_everything_again() {
    let mut table = Table::default();
    table.start(50, "/app/server-go --port 80", &[]);
    let mut runtimes = ContainerRuntimes::new(None);
    let found = refresh(&mut runtimes, &mut table, 0.0);
    assert_eq!(found.new_risks[0].kind, RiskKind::NoCeiling);
    // Without a limit nothing is a risk; a changed limit makes the defaults anew.
    let found = runtimes.refresh_from(&mut table, Path::new("/cg"), 1.0, 8 << 30, false);
    assert_eq!(found.new_ceilings.len(), 1);
    assert!(found.new_risks.is_empty());
}

#[test]
fn the_real_proc_of_this_test_is_no_runtime() {
    let mut procfs = Procfs::default();
    let me = std::process::id();
    let launch = procfs.launch(me).expect("this process can be read");
    assert!(!launch.args.is_empty());
    assert!(!procfs.is_go(me), "a Rust test binary is not Go");
    let runtimes = ContainerRuntimes::new(None);
    assert_eq!(
        runtimes.ceiling(&mut procfs, me, &launch, LIMIT, true),
        None
    );
    assert!(procfs.figures(me, Runtime::Jvm).resident_bytes.is_some());
    // A pid that does not exist is an error to log, not a panic.
    assert!(procfs.launch(u32::MAX).is_err());
}

#[test]
fn resident_memory_is_anon_plus_shmem() {
    let status = "Name:\tjava\nVmRSS:\t   82160 kB\nRssAnon:\t   61376 kB\n\
                  RssFile:\t   20000 kB\nRssShmem:\t     784 kB\n";
    assert_eq!(parse_resident(status), (61376 + 784) * 1024);
    assert_eq!(parse_resident("Name:\tkthreadd\nState:\tS\n"), 0);
    assert_eq!(parse_resident("RssAnon:\tnonsense kB\n"), 0);
}

#[test]
fn nul_separated_entries_keep_spaces_and_drop_the_final_empty_one() {
    assert_eq!(
        split_nul(b"java\0-Xmx1g\0-cp\0a b\0"),
        vec!["java", "-Xmx1g", "-cp", "a b"]
    );
    assert_eq!(split_nul(b""), Vec::<String>::new());
    assert_eq!(split_nul(b"\xff\0x"), vec!["\u{fffd}", "x"]);
}
