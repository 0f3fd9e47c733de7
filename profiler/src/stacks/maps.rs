//! What `/proc/PID/maps`, `/proc/PID/stat` and `/proc/PID/status` say, parsed without I/O:
//! the executable mappings of a process, which one holds an address, and what makes a process
//! the same process (so a reused pid or an `exec` is never read through a stale cache).

/// What backs a mapping, as its maps line names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Backing {
    /// A file (also a deleted one, or a memfd): its absolute path as the kernel printed it,
    /// without the ` (deleted)` suffix.
    File {
        /// The path the file was mapped from (in the process's mount namespace).
        path: String,
        /// The kernel marked it ` (deleted)`: the path names nothing, or another file.
        deleted: bool,
    },
    /// Anonymous memory (no path, `[anon:...]`, `[heap]`, `[stack]`, shared anonymous memory
    /// shown as `/dev/zero (deleted)`): executable code here was written at run time (JIT).
    Anon,
    /// The vDSO the kernel maps into every process.
    Vdso,
    /// Another kernel-made mapping (`[vsyscall]`, `[uprobes]`): its bracketed name.
    Special(String),
}

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MapsLine {
    /// First address of the mapping.
    pub(crate) start: u64,
    /// First address past the mapping.
    pub(crate) end: u64,
    /// Whether its pages may be executed (`x` in the permissions).
    pub(crate) exec: bool,
    /// Offset in the file of the mapping's first byte.
    pub(crate) offset: u64,
    /// Device of the file, as (major, minor).
    pub(crate) dev: (u32, u32),
    /// Inode of the file (0 for anonymous memory).
    pub(crate) inode: u64,
    /// What backs it.
    pub(crate) backing: Backing,
}

impl MapsLine {
    /// The file offset an address of this mapping stands for.
    pub(crate) fn file_offset(&self, addr: u64) -> u64 {
        addr.wrapping_sub(self.start).wrapping_add(self.offset)
    }

    /// The name `/proc/PID/map_files/` gives this mapping.
    pub(crate) fn map_files_name(&self) -> String {
        format!("{:x}-{:x}", self.start, self.end)
    }
}

/// Parses one maps line: `START-END PERMS OFFSET MAJ:MIN INODE [PATH]`, with the path
/// after padding and possibly holding spaces. `None` for a line in another form.
pub(crate) fn parse_maps_line(line: &str) -> Option<MapsLine> {
    let mut fields = line.splitn(6, ' ');
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?;
    let offset = fields.next()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let inode = fields.next()?;
    let path = fields.next().unwrap_or("").trim_start();
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    if end <= start {
        return None;
    }
    Some(MapsLine {
        start,
        end,
        exec: perms.as_bytes().get(2) == Some(&b'x'),
        offset: u64::from_str_radix(offset, 16).ok()?,
        dev: (
            u32::from_str_radix(major, 16).ok()?,
            u32::from_str_radix(minor, 16).ok()?,
        ),
        inode: inode.parse().ok()?,
        backing: backing(path),
    })
}

/// What a maps line's path column says backs the mapping.
fn backing(path: &str) -> Backing {
    if path.is_empty() || path.starts_with("[anon") || path == "[heap]" {
        return Backing::Anon;
    }
    if path == "[stack]" || path.starts_with("[stack:") {
        return Backing::Anon;
    }
    if path == "[vdso]" {
        return Backing::Vdso;
    }
    if path.starts_with('[') {
        return Backing::Special(path.to_owned());
    }
    let (path, deleted) = match path.strip_suffix(" (deleted)") {
        Some(p) => (p, true),
        None => (path, false),
    };
    // Shared anonymous memory and SysV shared memory show as deleted pseudo-files; code in them
    // was written at run time like any JIT's.
    let shared_anon = path == "/dev/zero" || path == "/anon_hugepage" || path.starts_with("/SYSV");
    if !path.starts_with('/') || (deleted && shared_anon) {
        return Backing::Anon;
    }
    Backing::File {
        path: path.to_owned(),
        deleted,
    }
}

/// The executable mappings in a maps file, sorted by address (the others cannot hold code,
/// and keeping only these keeps a cached process small).
pub(crate) fn parse_exec_maps(text: &str) -> Vec<MapsLine> {
    let mut lines: Vec<MapsLine> = text
        .lines()
        .filter_map(parse_maps_line)
        .filter(|m| m.exec)
        .collect();
    lines.sort_by_key(|m| m.start);
    lines
}

impl AsRef<MapsLine> for MapsLine {
    fn as_ref(&self) -> &MapsLine {
        self
    }
}

/// The index of the mapping holding `addr` in mappings sorted by start.
pub(crate) fn find_mapping<M: AsRef<MapsLine>>(mappings: &[M], addr: u64) -> Option<usize> {
    let after = mappings.partition_point(|m| m.as_ref().start <= addr);
    let index = after.checked_sub(1)?;
    (addr < mappings.get(index)?.as_ref().end).then_some(index)
}

/// The file name of a path (what frames of an unnamed address show), e.g. `libc.so.6`.
pub(crate) fn basename(path: &str) -> &str {
    path.rsplit('/')
        .find(|part| !part.is_empty())
        .unwrap_or(path)
}

/// What tells one process from another that later got the same pid, or from the same process
/// after an `exec`: its start time, and where its code and stack are (`exec` moves both,
/// address-space randomisation or not, unless it is the same binary laid out the same way, and
/// then the cached mappings are still right).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    /// `starttime` (field 22 of `/proc/PID/stat`), in clock ticks since boot.
    pub(crate) start_time: u64,
    /// `startcode` (field 26): 0 when the reader may not see it.
    pub(crate) start_code: u64,
    /// `startstack` (field 28): 0 when the reader may not see it.
    pub(crate) start_stack: u64,
}

impl Identity {
    /// Whether both are the same process image; a field one of them could not see (0) is
    /// left out.
    pub(crate) fn same_as(&self, other: &Identity) -> bool {
        let agree = |a: u64, b: u64| a == 0 || b == 0 || a == b;
        self.start_time == other.start_time
            && agree(self.start_code, other.start_code)
            && agree(self.start_stack, other.start_stack)
    }
}

/// Parses `/proc/PID/stat`; the command name in parentheses may hold spaces and parentheses,
/// so fields are counted from the last `)`. `None` for a zombie (state `Z` or `X`): its
/// memory is gone, what was cached of it is all there is.
pub(crate) fn parse_identity(stat: &str) -> Option<Identity> {
    let (_, rest) = stat.rsplit_once(')')?;
    // `rest` starts at field 3 (the state), so field N is at index N - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z" | &"X")) {
        return None;
    }
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(Identity {
        start_time: field(22)?,
        start_code: field(26).unwrap_or(0),
        start_stack: field(28).unwrap_or(0),
    })
}

/// The pid a process has in its own pid namespace: the last field of `NSpid:` in
/// `/proc/PID/status` (kernels without it, before 4.1, give `None`).
pub(crate) fn parse_ns_pid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded from a process on Debian 12, with a JIT region, a deleted file, a memfd and the
    /// kernel's own mappings added.
    const MAPS: &str = "\
55a5e562c000-55a5e562e000 r--p 00000000 fe:00 247030                     /usr/bin/cat
55a5e562e000-55a5e5633000 r-xp 00002000 fe:00 247030                     /usr/bin/cat
55a611738000-55a611759000 rw-p 00000000 00:00 0                          [heap]
7f5c4b994000-7f5c4b9b6000 rw-p 00000000 00:00 0 
7f5c4ba3f000-7f5c4bb95000 r-xp 00026000 fe:00 326279                     /usr/lib/x86_64-linux-gnu/libc.so.6
7f5c4bc00000-7f5c4bc10000 rwxp 00000000 00:00 0 
7f5c4bc10000-7f5c4bc20000 r-xp 00000000 00:00 0                          [anon:v8 code]
7f5c4bc20000-7f5c4bc21000 r-xp 00001000 fe:00 99                         /opt/app/lib old.so (deleted)
7f5c4bc21000-7f5c4bc22000 r-xs 00000000 00:01 5                          /dev/zero (deleted)
7f5c4bc22000-7f5c4bc23000 r-xp 00000000 00:01 6                          /memfd:jit (deleted)
7ffd1a9f1000-7ffd1a9f3000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    #[test]
    fn parses_a_file_line() {
        let line = parse_maps_line(
            "7f5c4ba3f000-7f5c4bb95000 r-xp 00026000 fe:00 326279                     /usr/lib/x86_64-linux-gnu/libc.so.6",
        );
        assert_eq!(
            line,
            Some(MapsLine {
                start: 0x7f5c4ba3f000,
                end: 0x7f5c4bb95000,
                exec: true,
                offset: 0x26000,
                dev: (0xfe, 0),
                inode: 326279,
                backing: Backing::File {
                    path: "/usr/lib/x86_64-linux-gnu/libc.so.6".into(),
                    deleted: false
                },
            })
        );
    }

    #[test]
    fn keeps_only_executable_mappings_and_classifies_them() {
        let maps = parse_exec_maps(MAPS);
        let backings: Vec<&Backing> = maps.iter().map(|m| &m.backing).collect();
        let file = |path: &str, deleted| Backing::File {
            path: path.into(),
            deleted,
        };
        assert_eq!(
            backings,
            [
                &file("/usr/bin/cat", false),
                &file("/usr/lib/x86_64-linux-gnu/libc.so.6", false),
                &Backing::Anon,
                &Backing::Anon,
                &file("/opt/app/lib old.so", true),
                &Backing::Anon,
                &file("/memfd:jit", true),
                &Backing::Vdso,
                &Backing::Special("[vsyscall]".into()),
            ]
        );
    }

    #[test]
    fn rejects_lines_of_another_form() {
        assert_eq!(parse_maps_line(""), None);
        assert_eq!(parse_maps_line("garbage"), None);
        assert_eq!(parse_maps_line("1000-0800 r-xp 0 00:00 0"), None);
        assert_eq!(parse_maps_line("1000-2000 r-xp zz 00:00 0 /x"), None);
    }

    #[test]
    fn finds_the_mapping_of_an_address() {
        let maps = parse_exec_maps(MAPS);
        let libc = find_mapping(&maps, 0x7f5c4ba3f000).map(|i| maps[i].start);
        assert_eq!(libc, Some(0x7f5c4ba3f000));
        assert_eq!(find_mapping(&maps, 0x7f5c4bb94fff), Some(1));
        // The end is outside; so are gaps, addresses before the first and after the last.
        assert_eq!(find_mapping(&maps, 0x7f5c4bb95000), None);
        assert_eq!(find_mapping(&maps, 0x55a611738000), None);
        assert_eq!(find_mapping(&maps, 0), None);
        assert_eq!(find_mapping(&maps, u64::MAX), None);
        assert_eq!(find_mapping::<MapsLine>(&[], 0x1000), None);
    }

    #[test]
    fn file_offsets_and_map_files_names() {
        let maps = parse_exec_maps(MAPS);
        assert_eq!(maps[1].file_offset(0x7f5c4ba3f010), 0x26010);
        assert_eq!(maps[1].map_files_name(), "7f5c4ba3f000-7f5c4bb95000");
    }

    #[test]
    fn basenames() {
        assert_eq!(basename("/usr/lib/x86_64-linux-gnu/libc.so.6"), "libc.so.6");
        assert_eq!(basename("/memfd:jit"), "memfd:jit");
        assert_eq!(basename("/opt/app/lib old.so"), "lib old.so");
        assert_eq!(basename("/"), "/");
    }

    #[test]
    fn identity_from_stat() {
        // Recorded, with a command name holding ") (" to show fields are counted from the end.
        let stat = "4121 (a) (b) S 1 4121 4121 0 -1 4194560 118 0 0 0 0 0 0 0 20 0 1 0 \
                    981234 2732032 230 18446744073709551615 94180100616192 94180100634065 \
                    140727051881984 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_identity(stat),
            Some(Identity {
                start_time: 981234,
                start_code: 94180100616192,
                start_stack: 140727051881984,
            })
        );
        assert_eq!(
            parse_identity(&stat.replace(") S ", ") Z ")),
            None,
            "a zombie"
        );
        assert_eq!(parse_identity("4121 (a) S 1"), None);
        assert_eq!(parse_identity(""), None);
    }

    #[test]
    fn identities_compare_what_both_could_see() {
        let seen = Identity {
            start_time: 5,
            start_code: 0x1000,
            start_stack: 0x7000,
        };
        let hidden = Identity {
            start_code: 0,
            start_stack: 0,
            ..seen
        };
        let exec = Identity {
            start_code: 0x2000,
            ..seen
        };
        let reused = Identity {
            start_time: 6,
            ..seen
        };
        assert!(seen.same_as(&seen) && seen.same_as(&hidden) && hidden.same_as(&seen));
        assert!(!seen.same_as(&exec) && !seen.same_as(&reused));
    }

    #[test]
    fn namespace_pid_from_status() {
        let status = "Name:\tjava\nTgid:\t4121\nNSpid:\t4121\t7\nPPid:\t1\n";
        assert_eq!(parse_ns_pid(status), Some(7));
        assert_eq!(parse_ns_pid("Name:\tx\nNSpid:\t42\n"), Some(42));
        assert_eq!(parse_ns_pid("Name:\tx\n"), None);
    }
}
