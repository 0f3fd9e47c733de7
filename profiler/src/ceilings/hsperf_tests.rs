//! Tests of the perf-data reader, on files captured from real JVMs.
use super::*;

// Captured from OpenJDK 17.0.15 (17.0.15+6-Debian-1deb12u1, x86_64), running
// `java -Xms64m -Xmx128m -cp . Hold 40`, where Hold keeps 160 `byte[256 << 10]` (40 MiB,
// each under G1's humongous size of half a 1 MiB region) and sleeps; copied from
// /tmp/hsperfdata_root/PID once it said so. At that moment, `jstat -gc file:///the/copy`:
//   S0C 0.0  S1C 2048.0  S0U 0.0  S1U 2048.0  EC 13312.0  EU 10240.0  OC 77824.0  OU 41652.5
// `jstat -gccapacity`: NGCMX 131072.0  NGC 15360.0  OGCMX 131072.0  OGC 77824.0 (KiB);
// `jcmd PID VM.flags -all` (as -XX:+PrintFlagsFinal): MaxHeapSize = 134217728,
// G1HeapRegionSize = 1048576; `jcmd PID GC.heap_info`: "garbage-first heap total 93184K".
const G1: &[u8] = include_bytes!("testdata/hsperfdata-g1-xmx128m");
// The same run with `-XX:+UnlockExperimentalVMOptions -XX:+UseSerialGC` added. `jstat -gc`:
//   S0C 2176.0  S1C 2176.0  S0U 2048.1  S1U 0.0  EC 17472.0  EU 8534.4  OC 43712.0  OU 31427.4
// `jstat -gccapacity`: NGCMX 43648.0  NGC 21824.0  OGCMX 87424.0  OGC 43712.0 (KiB);
// MaxHeapSize = 134217728, NewSize = 22347776, MaxNewSize = 44695552.
const SERIAL: &[u8] = include_bytes!("testdata/hsperfdata-serial-xmx128m");
/// The prologue's `used` in [`G1`]: where its entries end.
const G1_USED: usize = 12320;

const MIB: u64 = 1 << 20;

#[test]
fn g1_figures_match_jstat_and_max_heap_size() {
    let heap = parse(G1).expect("a real G1 file");
    // Both generations say 128 MiB + padding (24 and 8 bytes): the whole heap, once.
    assert_eq!(heap.max_bytes, Some(134_217_728));
    // NGC + OGC = 93184 KiB = GC.heap_info's total.
    assert_eq!(heap.committed_bytes, Some(91 * MIB));
    // EU + S0U + S1U + OU = 53940.5 KiB.
    assert_eq!(heap.used_bytes, Some(55_235_072));
}

#[test]
fn serial_figures_match_jstat_and_max_heap_size() {
    let heap = parse(SERIAL).expect("a real Serial file");
    // NGCMX + OGCMX: the generations split the heap.
    assert_eq!(heap.max_bytes, Some(134_217_728));
    // NGC + OGC = -Xms64m.
    assert_eq!(heap.committed_bytes, Some(64 * MIB));
    // EU + S0U + S1U + OU = 42009.9 KiB.
    assert_eq!(heap.used_bytes, Some(43_018_144));
}

#[test]
fn every_truncation_is_an_error() {
    for len in 0..G1_USED {
        assert!(parse(&G1[..len]).is_err(), "cut at {len}");
    }
    // What lies past `used` is unallocated.
    assert_eq!(parse(&G1[..G1_USED]).ok(), parse(G1).ok());
}

#[test]
fn damaged_headers_are_errors() {
    let damaged = |at: usize, bytes: &[u8]| {
        let mut file = G1.to_vec();
        file[at..at + bytes.len()].copy_from_slice(bytes);
        parse(&file).expect_err("damaged")
    };
    let err = damaged(0, &[0xca, 0xfe, 0xba, 0xbe]);
    assert!(matches!(err, HsPerfError::BadMagic { .. }), "{err}");
    assert!(matches!(damaged(4, &[9]), HsPerfError::ByteOrder(9)));
    let err = damaged(5, &[1]);
    assert!(
        matches!(err, HsPerfError::Version { major: 1, .. }),
        "{err}"
    );
    assert!(matches!(damaged(7, &[0]), HsPerfError::NotAccessible));
    // `used` past the end of the file.
    let err = damaged(8, &0x10_0000u32.to_le_bytes());
    assert!(matches!(err, HsPerfError::OutOfRange { .. }), "{err}");
    // The entry table past `used`.
    let err = damaged(24, &0xffff_fff0u32.to_le_bytes());
    assert!(matches!(err, HsPerfError::OutOfRange { .. }), "{err}");
    // More entries than there are.
    let err = damaged(28, &100_000u32.to_le_bytes());
    assert!(matches!(err, HsPerfError::OutOfRange { .. }), "{err}");
    // The first entry (at 32): longer than the data, shorter than its header, its name
    // and its value outside it.
    let err = damaged(32, &0x7fff_ffffu32.to_le_bytes());
    assert!(matches!(err, HsPerfError::OutOfRange { .. }), "{err}");
    let err = damaged(32, &8u32.to_le_bytes());
    assert!(
        matches!(err, HsPerfError::BadEntry { index: 0, .. }),
        "{err}"
    );
    let err = damaged(36, &0xffff_ffffu32.to_le_bytes());
    assert!(matches!(err, HsPerfError::OutOfRange { .. }), "{err}");
    let err = damaged(48, &4000u32.to_le_bytes());
    assert!(matches!(err, HsPerfError::OutOfRange { .. }), "{err}");
}

#[test]
fn no_damaged_byte_panics() {
    // Every byte of the prologue and the first entries, set to values that make lengths
    // and offsets zero, odd, negative or huge.
    for at in 0..2048 {
        for value in [0x00, 0x01, 0x13, 0x7f, 0x80, 0xff] {
            let mut file = G1.to_vec();
            file[at] = value;
            let _ = parse(&file);
        }
    }
}

/// A counter for [`build`].
enum Counter<'a> {
    Long(i64),
    Text(&'a str),
}

/// A perf-data file holding `counters`, laid out as HotSpot lays them out.
fn build(big_endian: bool, counters: &[(&str, Counter<'_>)]) -> Vec<u8> {
    let int = |v: usize| {
        let v = u32::try_from(v).expect("small");
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut out = vec![0xca, 0xfe, 0xc0, 0xc0, u8::from(!big_endian), 2, 0, 1];
    out.resize(PROLOGUE_LEN, 0);
    for (name, value) in counters {
        let start = out.len();
        let data_offset = (ENTRY_HEADER_LEN + name.len() + 1).next_multiple_of(8);
        let (kind, vector, data) = match value {
            Counter::Long(v) if big_endian => (b'J', 0, v.to_be_bytes().to_vec()),
            Counter::Long(v) => (b'J', 0, v.to_le_bytes().to_vec()),
            Counter::Text(s) => (b'B', s.len() + 1, [s.as_bytes(), b"\0"].concat()),
        };
        let length = (data_offset + data.len()).next_multiple_of(8);
        out.extend(int(length));
        out.extend(int(ENTRY_HEADER_LEN));
        out.extend(int(vector));
        out.extend([kind, 0, 0, 0]);
        out.extend(int(data_offset));
        out.extend(name.as_bytes());
        out.resize(start + data_offset, 0);
        out.extend(data);
        out.resize(start + length, 0);
    }
    let used = out.len();
    out[8..12].copy_from_slice(&int(used));
    out[24..28].copy_from_slice(&int(PROLOGUE_LEN));
    out[28..32].copy_from_slice(&int(counters.len()));
    out
}

#[test]
fn generational_zgc_counts_the_shared_maximum_once() {
    // JDK 21's generational ZGC: both generations may grow to the whole heap. Big-endian,
    // as a JVM on s390x writes it.
    use Counter::*;
    let file = build(
        true,
        &[
            (
                "sun.gc.collector.0.name",
                Text("ZGC minor collection pauses"),
            ),
            ("sun.gc.generation.0.name", Text("young")),
            ("sun.gc.generation.0.maxCapacity", Long(512 << 20)),
            ("sun.gc.generation.0.capacity", Long(100 << 20)),
            ("sun.gc.generation.0.space.0.used", Long(60 << 20)),
            ("sun.gc.generation.1.name", Text("old")),
            ("sun.gc.generation.1.maxCapacity", Long(512 << 20)),
            ("sun.gc.generation.1.capacity", Long(50 << 20)),
            ("sun.gc.generation.1.space.0.used", Long(50 << 20)),
        ],
    );
    let heap = parse(&file).expect("well-formed");
    assert_eq!(heap.max_bytes, Some(512 * MIB));
    assert_eq!(heap.committed_bytes, Some(150 * MIB));
    assert_eq!(heap.used_bytes, Some(110 * MIB));
}

#[test]
fn the_permanent_generation_is_not_heap_and_a_missing_part_is_no_whole() {
    use Counter::*;
    let file = build(
        false,
        &[
            ("sun.gc.generation.0.name", Text("new")),
            ("sun.gc.generation.0.maxCapacity", Long(40 << 20)),
            ("sun.gc.generation.0.space.0.used", Long(1 << 20)),
            ("sun.gc.generation.1.name", Text("old")),
            ("sun.gc.generation.1.maxCapacity", Long(88 << 20)),
            ("sun.gc.generation.1.capacity", Long(44 << 20)),
            ("sun.gc.generation.2.name", Text("perm")),
            ("sun.gc.generation.2.maxCapacity", Long(82 << 20)),
            ("sun.gc.generation.2.space.0.used", Long(9 << 20)),
        ],
    );
    let heap = parse(&file).expect("well-formed");
    assert_eq!(heap.max_bytes, Some(128 * MIB));
    assert_eq!(heap.committed_bytes, None);
    assert_eq!(heap.used_bytes, Some(MIB));
    let none = build(false, &[("sun.rt.javaCommand", Text("Main"))]);
    assert_eq!(parse(&none).expect("well-formed"), JvmHeap::default());
    let negative = build(false, &[("sun.gc.generation.1.capacity", Long(-8))]);
    let err = parse(&negative).expect_err("negative size");
    assert!(matches!(err, HsPerfError::BadFigure { .. }), "{err}");
}

#[test]
fn status_ids() {
    let status = "Name:\tjava\nUid:\t1000\t1001\t1000\t1000\nNSpid:\t4242\t17\t7\n";
    let ids = StatusIds::parse(status).expect("well-formed");
    assert_eq!((ids.nspid, ids.euid), (Some(7), Some(1001)));
    let old_kernel = StatusIds::parse("Name:\tjava\n").expect("well-formed");
    assert_eq!((old_kernel.nspid, old_kernel.euid), (None, None));
    assert_eq!(StatusIds::parse("NSpid:\t12x\n"), None);
    assert_eq!(StatusIds::parse("NSpid:\n"), None);
}

#[test]
fn read_finds_the_file_under_the_pid_in_the_jvm_namespace() {
    let proc = tempfile::tempdir().expect("tempdir");
    let uid = fs::metadata(proc.path()).expect("tempdir").uid();
    let process = proc.path().join("4242");
    let status = format!("Name:\tjava\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nNSpid:\t4242\t7\n");
    let tmp = process.join("root/tmp");
    for dir in ["hsperfdata_app", "hsperfdata_old", "hsperfdata_host"] {
        fs::create_dir_all(tmp.join(dir)).expect("mkdir");
    }
    fs::write(process.join("status"), status).expect("write");
    fs::write(tmp.join("hsperfdata_app/7"), G1).expect("write");
    // A stale file of an earlier JVM with the same pid, and one named after the host pid.
    let stale = tmp.join("hsperfdata_old/7");
    fs::write(&stale, SERIAL).expect("write");
    let long_ago = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 30);
    File::options()
        .write(true)
        .open(&stale)
        .and_then(|f| f.set_modified(long_ago))
        .expect("set mtime");
    fs::write(tmp.join("hsperfdata_host/4242"), SERIAL).expect("write");
    assert_eq!(read_under(proc.path(), 4242).ok(), parse(G1).ok());

    fs::remove_file(tmp.join("hsperfdata_app/7")).expect("rm");
    assert_eq!(read_under(proc.path(), 4242).ok(), parse(SERIAL).ok());
    fs::remove_file(stale).expect("rm");
    let err = read_under(proc.path(), 4242).expect_err("no file");
    assert!(matches!(err, HsPerfError::NotFound { pid: 4242 }), "{err}");
    let err = read_under(proc.path(), 4243).expect_err("no process");
    assert!(matches!(err, HsPerfError::Io { .. }), "{err}");
}
