//! Whether an executable was built by the Go toolchain, from its ELF structure alone: Go's
//! linker writes a `.go.buildinfo` section (the toolchain version and module list, since Go
//! 1.13) that stripping (`-ldflags=-s -w`, `strip`) leaves in place.
//!
//! Only the ELF header, the section header table and the section-name table are read, each
//! with one small bounds-checked read, never the whole file. A file stripped of its section
//! headers altogether (`sstrip`, some packers) is searched as Go's `debug/buildinfo` searches
//! one: for the build-info magic at a 16-byte boundary of the first writable, non-executable
//! `PT_LOAD` segment, here only in its first 64 KiB (the window `go version` read at first).
//! Go's internal linker puts the build information first in that segment, so this finds it; the
//! system linker (cgo, `-linkmode=external`) puts it further in (150 KiB in for containerd), so
//! such a binary stripped of its section headers is missed (golang/go#31861). Those keep their
//! section headers in practice: `strip` and `-ldflags=-s -w` leave them.
//!
//! Not recognised, and counted as any other language: Go 1.12 and older (no `.go.buildinfo`;
//! `GOMEMLIMIT`, the ceiling read for Go, came only in 1.19), and Go before 1.20 linked
//! externally with `--gc-sections`, which dropped the section (golang/go#58222).
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The section Go's linker writes the build information into.
const BUILDINFO_SECTION: &[u8] = b".go.buildinfo";
/// The first bytes of Go's build information.
const BUILDINFO_MAGIC: &[u8] = b"\xff Go buildinf:";
/// Where in its segment the build information may start (`debug/buildinfo`'s alignment).
const BUILDINFO_ALIGN: usize = 16;
/// How much of the data segment is searched for it.
const BUILDINFO_SCAN: u64 = 64 << 10;
/// Bytes in an ELF64 file header.
const FILE_HEADER_LEN: usize = 64;
/// Bytes in an ELF64 section header.
const SECTION_HEADER_LEN: usize = 64;
/// Bytes in an ELF64 program header.
const PROGRAM_HEADER_LEN: usize = 56;
/// A larger header table than any executable has (a Go binary has about 40 sections of 64
/// bytes): the read stays small however the header lies.
const MAX_TABLE: u64 = 1 << 20;
/// A larger section-name table than any executable has (a Go binary's is a few hundred bytes).
const MAX_NAME_TABLE: u64 = 1 << 20;
/// `SHN_XINDEX`: the section-name table's index is in section 0's `sh_link`.
const SHN_XINDEX: u64 = 0xffff;
/// `PT_LOAD`.
const PT_LOAD: u32 = 1;
/// `PF_X`.
const PF_X: u32 = 1;
/// `PF_W`.
const PF_W: u32 = 2;

/// Why an executable's ELF structure could not be read.
#[derive(Debug, Error)]
pub(crate) enum ElfError {
    /// The file could not be opened or read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// A part the headers point to lies past the end of the file.
    #[error("{}: {what} lies past the end of the file: a truncated ELF file", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What was being read.
        what: &'static str,
    },
    /// The headers contradict themselves.
    #[error("{}: not a well-formed ELF file: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Whether the executable at `path` was built by the Go toolchain. Anything but a 64-bit
/// little-endian ELF file (a script, a 32-bit or big-endian binary) is not.
pub(crate) fn is_go_binary(path: &Path) -> Result<bool, ElfError> {
    let file = File::open(path).map_err(|source| ElfError::Io {
        path: path.to_owned(),
        source,
    })?;
    let elf = Elf { file, path };
    let mut header = [0u8; FILE_HEADER_LEN];
    let got = elf.read_up_to(&mut header)?;
    if got < 4 || header[..4] != *b"\x7fELF" {
        return Ok(false);
    }
    if got < 6 {
        return Err(elf.truncated("the ELF header"));
    }
    // EI_CLASS 2: 64-bit; EI_DATA 1: little-endian.
    if header[4] != 2 || header[5] != 1 {
        return Ok(false);
    }
    if got < FILE_HEADER_LEN {
        return Err(elf.truncated("the ELF header"));
    }
    let header = header.as_slice();
    let section_table = u64_at(header, 0x28);
    if section_table != 0 {
        if let Some(found) = elf.named_section(header, section_table)? {
            return Ok(found);
        }
    }
    elf.magic_in_data_segment(header)
}

/// An open ELF64 little-endian file.
struct Elf<'a> {
    /// The file.
    file: File,
    /// Its path, for errors.
    path: &'a Path,
}

impl Elf<'_> {
    /// Whether a section is named `.go.buildinfo`, or `None` when the file has no section
    /// names to tell (no sections, no name table).
    fn named_section(&self, header: &[u8], table: u64) -> Result<Option<bool>, ElfError> {
        let entry_len = u64::from(u16_at(header, 0x3a));
        if entry_len < SECTION_HEADER_LEN as u64 {
            return Err(self.malformed("section headers are shorter than 64 bytes"));
        }
        let mut count = u64::from(u16_at(header, 0x3c));
        let mut names_index = u64::from(u16_at(header, 0x3e));
        if count == 0 || names_index == SHN_XINDEX {
            // Extended numbering: the real figures are in section 0 (`sh_size`, `sh_link`).
            let first = self.read(table, SECTION_HEADER_LEN as u64, "section header 0")?;
            if count == 0 {
                count = u64_at(&first, 0x20);
            }
            if names_index == SHN_XINDEX {
                names_index = u64::from(u32_at(&first, 0x28));
            }
        }
        // Index 0 is `SHN_UNDEF`: no name table.
        if count == 0 || names_index == 0 {
            return Ok(None);
        }
        if names_index >= count {
            return Err(self.malformed("its section-name table is not one of its sections"));
        }
        let sections = self.read_table(table, count, entry_len, "the section header table")?;
        let entry_len = entry_len as usize;
        let names_header = sections
            .chunks_exact(entry_len)
            .nth(names_index as usize)
            .ok_or_else(|| self.malformed("its section-name table is not one of its sections"))?;
        let names_size = u64_at(names_header, 0x20);
        if names_size > MAX_NAME_TABLE {
            return Err(self.malformed("its section-name table is larger than any executable's"));
        }
        let names = self.read(
            u64_at(names_header, 0x18),
            names_size,
            "the section-name table",
        )?;
        for section in sections.chunks_exact(entry_len) {
            let name = names
                .get(u32_at(section, 0) as usize..)
                .and_then(|rest| rest.split(|&b| b == 0).next())
                .ok_or_else(|| self.malformed("a section's name lies outside the name table"))?;
            if name == BUILDINFO_SECTION {
                return Ok(Some(true));
            }
        }
        Ok(Some(false))
    }

    /// Whether the first writable, non-executable `PT_LOAD` segment holds Go's build-info
    /// magic at a 16-byte boundary in its first 64 KiB.
    fn magic_in_data_segment(&self, header: &[u8]) -> Result<bool, ElfError> {
        let table = u64_at(header, 0x20);
        let entry_len = u64::from(u16_at(header, 0x36));
        let count = u64::from(u16_at(header, 0x38));
        if table == 0 || count == 0 {
            return Ok(false);
        }
        if entry_len < PROGRAM_HEADER_LEN as u64 {
            return Err(self.malformed("program headers are shorter than 56 bytes"));
        }
        let segments = self.read_table(table, count, entry_len, "the program header table")?;
        let entry_len = entry_len as usize;
        let data = segments.chunks_exact(entry_len).find(|segment| {
            u32_at(segment, 0) == PT_LOAD && u32_at(segment, 4) & (PF_X | PF_W) == PF_W
        });
        let Some(data) = data else {
            return Ok(false);
        };
        let start = self.read(
            u64_at(data, 0x08),
            u64_at(data, 0x20).min(BUILDINFO_SCAN),
            "the data segment",
        )?;
        Ok(start
            .chunks(BUILDINFO_ALIGN)
            .any(|chunk| chunk.starts_with(BUILDINFO_MAGIC)))
    }

    /// A table of `count` headers of `entry_len` bytes at `offset`.
    fn read_table(
        &self,
        offset: u64,
        count: u64,
        entry_len: u64,
        what: &'static str,
    ) -> Result<Vec<u8>, ElfError> {
        match count.checked_mul(entry_len) {
            Some(len) if len <= MAX_TABLE => self.read(offset, len, what),
            _ => Err(self.malformed("a header table is larger than any executable's")),
        }
    }

    /// `len` bytes at `offset`, all of them.
    fn read(&self, offset: u64, len: u64, what: &'static str) -> Result<Vec<u8>, ElfError> {
        // Callers bound `len` far below what a Vec can hold.
        let mut buf = vec![0; usize::try_from(len).map_err(|_| self.truncated(what))?];
        match self.file.read_exact_at(&mut buf, offset) {
            Ok(()) => Ok(buf),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(self.truncated(what)),
            // An offset past what the file system can address is past the end all the same.
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => Err(self.truncated(what)),
            Err(source) => Err(self.io(source)),
        }
    }

    /// As much of `buf` as the file fills from its start.
    fn read_up_to(&self, buf: &mut [u8]) -> Result<usize, ElfError> {
        let mut got = 0;
        while got < buf.len() {
            match self.file.read_at(&mut buf[got..], got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(self.io(source)),
            }
        }
        Ok(got)
    }

    /// The error for a read that failed.
    fn io(&self, source: io::Error) -> ElfError {
        ElfError::Io {
            path: self.path.to_owned(),
            source,
        }
    }

    /// The error for `what` lying past the end.
    fn truncated(&self, what: &'static str) -> ElfError {
        ElfError::Truncated {
            path: self.path.to_owned(),
            what,
        }
    }

    /// The error for headers that contradict themselves.
    fn malformed(&self, reason: &'static str) -> ElfError {
        ElfError::Malformed {
            path: self.path.to_owned(),
            reason,
        }
    }
}

/// The little-endian field of `N` bytes at `at`; zeros past the end (every caller's record is
/// at least as long as the fields it reads, as checked against its header's entry size).
fn field<const N: usize>(record: &[u8], at: usize) -> [u8; N] {
    record
        .get(at..at + N)
        .and_then(|b| b.try_into().ok())
        .unwrap_or([0; N])
}

/// The `u16` at `at`.
fn u16_at(record: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(field(record, at))
}

/// The `u32` at `at`.
fn u32_at(record: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(field(record, at))
}

/// The `u64` at `at`.
fn u64_at(record: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(field(record, at))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A minimal ELF64 little-endian executable: the file header, one read-only and one
    /// writable `PT_LOAD` segment (the latter's bytes `data`), a section-name table, and the
    /// section headers (null, `.shstrtab`, then one per name in `sections`; none at all when
    /// `sections` is `None`, as after `sstrip`).
    fn elf(sections: Option<&[&str]>, data: &[u8]) -> Vec<u8> {
        let mut names = b"\0.shstrtab\0".to_vec();
        let mut name_offsets = Vec::new();
        for name in sections.unwrap_or_default() {
            name_offsets.push(names.len() as u32);
            names.extend(name.as_bytes());
            names.push(0);
        }
        let segments_at = FILE_HEADER_LEN;
        let data_at = (segments_at + 2 * PROGRAM_HEADER_LEN).next_multiple_of(16);
        let names_at = data_at + data.len();
        let sections_at = (names_at + names.len()).next_multiple_of(8);
        let count = 2 + name_offsets.len();

        let mut out = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
        out.resize(16, 0);
        out.extend(2u16.to_le_bytes()); // ET_EXEC
        out.extend(62u16.to_le_bytes()); // EM_X86_64
        out.extend(1u32.to_le_bytes());
        out.extend(0x40_1000u64.to_le_bytes()); // e_entry
        out.extend((segments_at as u64).to_le_bytes());
        let section_table = if sections.is_some() { sections_at } else { 0 };
        out.extend((section_table as u64).to_le_bytes());
        out.extend(0u32.to_le_bytes()); // e_flags
        out.extend((FILE_HEADER_LEN as u16).to_le_bytes());
        out.extend((PROGRAM_HEADER_LEN as u16).to_le_bytes());
        out.extend(2u16.to_le_bytes());
        out.extend((SECTION_HEADER_LEN as u16).to_le_bytes());
        let (shnum, shstrndx) = if sections.is_some() {
            (count, 1)
        } else {
            (0, 0)
        };
        out.extend((shnum as u16).to_le_bytes());
        out.extend((shstrndx as u16).to_le_bytes());
        assert_eq!(out.len(), FILE_HEADER_LEN);

        let segment = |out: &mut Vec<u8>, flags: u32, offset: usize, size: usize| {
            out.extend(PT_LOAD.to_le_bytes());
            out.extend(flags.to_le_bytes());
            out.extend((offset as u64).to_le_bytes());
            out.extend((0x40_0000 + offset as u64).to_le_bytes()); // p_vaddr
            out.extend((0x40_0000 + offset as u64).to_le_bytes()); // p_paddr
            out.extend((size as u64).to_le_bytes()); // p_filesz
            out.extend((size as u64).to_le_bytes()); // p_memsz
            out.extend(0x1000u64.to_le_bytes());
        };
        segment(&mut out, 4 | PF_X, 0, data_at); // R E: the headers, standing in for text
        segment(&mut out, 4 | PF_W, data_at, data.len()); // RW
        out.resize(data_at, 0);
        out.extend(data);
        out.extend(&names);
        if sections.is_some() {
            out.resize(sections_at, 0);
            let section = |out: &mut Vec<u8>, name: u32, kind: u32, offset: usize, size: usize| {
                out.extend(name.to_le_bytes());
                out.extend(kind.to_le_bytes());
                out.extend([0; 16]); // sh_flags, sh_addr
                out.extend((offset as u64).to_le_bytes());
                out.extend((size as u64).to_le_bytes());
                out.extend([0; 24]); // sh_link, sh_info, sh_addralign, sh_entsize
            };
            section(&mut out, 0, 0, 0, 0);
            section(&mut out, 1, 3, names_at, names.len()); // SHT_STRTAB
            for name in name_offsets {
                section(&mut out, name, 1, data_at, data.len()); // SHT_PROGBITS
            }
        }
        out
    }

    /// Go's build information as its linker lays it out: the magic, then pointer size and flags.
    fn buildinfo() -> Vec<u8> {
        let mut data = BUILDINFO_MAGIC.to_vec();
        data.extend([8, 2]);
        data.resize(32, 0);
        data
    }

    /// `bytes` in a file of their own.
    fn file(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(bytes).expect("write");
        file
    }

    /// [`is_go_binary`] of `bytes`.
    fn is_go(bytes: &[u8]) -> Result<bool, ElfError> {
        is_go_binary(file(bytes).path())
    }

    const GO_SECTIONS: &[&str] = &[".text", ".rodata", ".go.buildinfo", ".data"];
    const C_SECTIONS: &[&str] = &[".text", ".rodata", ".data", ".bss"];

    #[test]
    fn a_go_buildinfo_section_makes_a_go_binary() {
        assert!(is_go(&elf(Some(GO_SECTIONS), &buildinfo())).expect("well-formed"));
        // The section name decides; the magic is only looked for without sections.
        assert!(!is_go(&elf(Some(C_SECTIONS), &buildinfo())).expect("well-formed"));
        assert!(!is_go(&elf(Some(&[]), &[0; 64])).expect("well-formed"));
    }

    #[test]
    fn without_section_headers_the_data_segment_is_searched() {
        assert!(is_go(&elf(None, &buildinfo())).expect("well-formed"));
        let mut later = vec![0; 48];
        later.extend(buildinfo());
        assert!(is_go(&elf(None, &later)).expect("well-formed"));
        // Go aligns it to 16 bytes; anywhere else it is data that happens to match.
        let mut misaligned = vec![0; 8];
        misaligned.extend(buildinfo());
        assert!(!is_go(&elf(None, &misaligned)).expect("well-formed"));
        assert!(!is_go(&elf(None, &[0; 64])).expect("well-formed"));
    }

    #[test]
    fn other_files_are_not_go() {
        assert!(!is_go(b"").expect("empty"));
        assert!(!is_go(b"\x7fEL").expect("too short to be ELF"));
        assert!(!is_go(b"#!/bin/sh\nexec java -jar app.jar\n").expect("script"));
        let mut elf32 = elf(Some(GO_SECTIONS), &buildinfo());
        elf32[4] = 1;
        assert!(!is_go(&elf32).expect("32-bit"));
        let mut big_endian = elf(Some(GO_SECTIONS), &buildinfo());
        big_endian[5] = 2;
        assert!(!is_go(&big_endian).expect("big-endian"));
    }

    #[test]
    fn this_rust_test_binary_is_not_go() {
        assert!(!is_go_binary(Path::new("/proc/self/exe")).expect("readable"));
    }

    #[test]
    fn truncated_files_are_errors() {
        let whole = elf(Some(GO_SECTIONS), &buildinfo());
        // Cut inside the header, the name table, the section table.
        for len in [5, 6, 40, 63, whole.len() - 300, whole.len() - 1] {
            let err = is_go(&whole[..len]).expect_err("truncated");
            assert!(
                matches!(err, ElfError::Truncated { .. }),
                "cut at {len}: {err}"
            );
        }
        let stripped = elf(None, &buildinfo());
        let err = is_go(&stripped[..FILE_HEADER_LEN + 60]).expect_err("truncated");
        assert!(matches!(err, ElfError::Truncated { .. }), "{err}");
        let err = is_go_binary(Path::new("/nonexistent/app")).expect_err("missing");
        assert!(matches!(err, ElfError::Io { .. }), "{err}");
    }

    #[test]
    fn lying_headers_are_errors() {
        let whole = elf(Some(GO_SECTIONS), &buildinfo());
        let damaged = |at: usize, bytes: &[u8]| {
            let mut file = whole.clone();
            file[at..at + bytes.len()].copy_from_slice(bytes);
            is_go(&file)
        };
        let malformed =
            |result: Result<bool, ElfError>| matches!(result, Err(ElfError::Malformed { .. }));
        // The name table's index past the sections; section headers of 16 bytes.
        assert!(malformed(damaged(0x3e, &9u16.to_le_bytes())));
        assert!(malformed(damaged(0x3a, &16u16.to_le_bytes())));
        // Extended numbering: section 0 claims 2^40 sections.
        let sections_at = u64_at(&whole, 0x28) as usize;
        let mut huge = whole.clone();
        huge[0x3c..0x3e].copy_from_slice(&0u16.to_le_bytes());
        huge[sections_at + 0x20..sections_at + 0x28].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(malformed(is_go(&huge)));
        // A section's name past the name table.
        let third = sections_at + 2 * SECTION_HEADER_LEN;
        assert!(malformed(damaged(third, &0xffffu32.to_le_bytes())));
        // The name table itself past the end of the file.
        let names = sections_at + SECTION_HEADER_LEN + 0x18;
        let err = damaged(names, &(1u64 << 62).to_le_bytes()).expect_err("past the end");
        assert!(matches!(err, ElfError::Truncated { .. }), "{err}");
    }

    #[test]
    fn no_damaged_header_byte_panics() {
        for whole in [
            elf(Some(GO_SECTIONS), &buildinfo()),
            elf(None, &buildinfo()),
        ] {
            let file = file(&whole);
            for at in 0..FILE_HEADER_LEN + 2 * PROGRAM_HEADER_LEN {
                for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                    let mut damaged = whole.clone();
                    damaged[at] = value;
                    std::fs::write(file.path(), &damaged).expect("write");
                    let _ = is_go_binary(file.path());
                }
            }
        }
    }
}
