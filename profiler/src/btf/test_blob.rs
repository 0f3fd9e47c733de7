//! A writer of raw BTF blobs for tests: small hand-built kernels, independent of the machine's.
#![allow(dead_code, reason = "each test uses the kinds it needs")]

pub(crate) const INT: u32 = 1;
pub(crate) const PTR: u32 = 2;
pub(crate) const ARRAY: u32 = 3;
pub(crate) const STRUCT: u32 = 4;
pub(crate) const UNION: u32 = 5;
pub(crate) const ENUM: u32 = 6;
pub(crate) const TYPEDEF: u32 = 8;
pub(crate) const CONST: u32 = 10;
pub(crate) const FUNC: u32 = 12;
pub(crate) const FUNC_PROTO: u32 = 13;
pub(crate) const ENUM64: u32 = 19;

/// Writes a raw little-endian BTF blob: a header, the type section, the string section.
pub(crate) struct BlobBuilder {
    types: Vec<u8>,
    strings: Vec<u8>,
}

impl BlobBuilder {
    pub(crate) fn new() -> Self {
        Self {
            types: Vec::new(),
            strings: vec![0],
        }
    }

    pub(crate) fn string(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let offset = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        offset
    }

    pub(crate) fn words(&mut self, words: &[u32]) {
        for w in words {
            self.types.extend_from_slice(&w.to_le_bytes());
        }
    }

    /// `struct btf_type`: name, info (vlen, kind, kind_flag), size or type.
    pub(crate) fn ty(
        &mut self,
        name: &str,
        kind: u32,
        vlen: u32,
        kind_flag: u32,
        size_or_type: u32,
    ) {
        let name = self.string(name);
        self.words(&[name, (kind_flag << 31) | (kind << 24) | vlen, size_or_type]);
    }

    /// `struct btf_member` / `struct btf_enum64` style triple with a leading name.
    pub(crate) fn named3(&mut self, name: &str, a: u32, b: u32) {
        let name = self.string(name);
        self.words(&[name, a, b]);
    }

    /// `struct btf_enum` / `struct btf_param` style pair with a leading name.
    pub(crate) fn named2(&mut self, name: &str, a: u32) {
        let name = self.string(name);
        self.words(&[name, a]);
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        let mut blob = Vec::new();
        blob.extend_from_slice(&0xeb9f_u16.to_le_bytes());
        blob.push(1); // version
        blob.push(0); // flags
        for w in [
            24,                        // hdr_len
            0,                         // type_off
            self.types.len() as u32,   // type_len
            self.types.len() as u32,   // str_off
            self.strings.len() as u32, // str_len
        ] {
            blob.extend_from_slice(&w.to_le_bytes());
        }
        blob.extend_from_slice(&self.types);
        blob.extend_from_slice(&self.strings);
        blob
    }
}
