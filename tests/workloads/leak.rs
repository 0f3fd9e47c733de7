//! `leak.rs`: the Rust twin of `leak.c`, a server whose cache leaks, for the end-to-end tests
//! of charge stacks. `tests/tests/stacks.rs` compiles it with `rustc --crate-name leak`, once
//! with `-O -C force-frame-pointers=yes` and once with `-C opt-level=2 -C
//! force-frame-pointers=no`.
//!
//! ```text
//! leak MIB_PER_S
//! ```
//!
//! `main` serves a request every 1/(4 × MIB_PER_S) s: `handle_request` calls `cache_put`, which
//! keeps a 256 KiB entry forever (the leak, MIB_PER_S MiB/s), then `main` calls `churn`, which
//! allocates as many bytes in 64 KiB blocks and drops each at once. Prints `started`, then
//! `leaked <bytes>` after every MiB, until it is killed.
//!
//! Why the stacks come out as they do (see `leak.c` for the same reasoning in C):
//! - an entry (256 KiB) is above glibc's mmap threshold (Rust's system allocator is malloc):
//!   fresh zero pages that nothing but the loop in `cache_put` writes, so the page faults that
//!   charge the memcg happen in `cache_put`, one write per page (`write_volatile`, which the
//!   optimizer cannot drop or turn into a memset in libc, which has no frame pointers);
//! - `churn`'s blocks (64 KiB) come from the brk heap and go back to its top, whose pages glibc
//!   keeps when it trims (M_TOP_PAD, 128 KiB): after the first request they charge nothing new.
//!
//! Every function of the chain is `#[inline(never)]`, so each has a frame of its own.

use std::io::Write;
use std::time::{Duration, Instant};

const ENTRY_BYTES: usize = 256 << 10;
const BLOCK_BYTES: usize = 64 << 10;
const BLOCKS_PER_REQUEST: usize = ENTRY_BYTES / BLOCK_BYTES;
const PAGE: usize = 4096;

/// Keeps a new 256 KiB entry in `cache` forever, every page of it written here.
#[inline(never)]
fn cache_put(cache: &mut Vec<Vec<u8>>) {
    let mut entry: Vec<u8> = Vec::with_capacity(ENTRY_BYTES);
    let base = entry.as_mut_ptr();
    for offset in (0..ENTRY_BYTES).step_by(PAGE) {
        // SAFETY: offset < ENTRY_BYTES, the capacity just allocated.
        unsafe { std::ptr::write_volatile(base.add(offset), 1) };
    }
    cache.push(entry);
}

/// One request: the leak. Returns the bytes the cache holds; working on after `cache_put`
/// returns keeps the call a call (a tail call would leave no frame of `handle_request`).
#[inline(never)]
fn handle_request(cache: &mut Vec<Vec<u8>>) -> usize {
    cache_put(cache);
    cache.len() * ENTRY_BYTES
}

/// Allocates as many bytes as a request leaks, in blocks dropped at once.
#[inline(never)]
fn churn() {
    for _ in 0..BLOCKS_PER_REQUEST {
        let mut block: Vec<u8> = Vec::with_capacity(BLOCK_BYTES);
        let base = block.as_mut_ptr();
        for offset in (0..BLOCK_BYTES).step_by(PAGE) {
            // SAFETY: offset < BLOCK_BYTES, the capacity just allocated.
            unsafe { std::ptr::write_volatile(base.add(offset), 1) };
        }
        drop(block);
    }
}

/// Prints one line and flushes it (stdout is a pipe).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(3);
    }
}

#[inline(never)]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mib_per_s: u32 = match args.as_slice() {
        [rate] => rate.parse().unwrap_or(0),
        _ => 0,
    };
    if mib_per_s == 0 {
        eprintln!("usage: leak MIB_PER_S");
        std::process::exit(2);
    }
    let requests_per_mib = (1 << 20) / ENTRY_BYTES as u32;
    let period = Duration::from_secs(1) / (mib_per_s * requests_per_mib);
    let mut cache = Vec::new();
    let start = Instant::now();
    say("started");
    for served in 1u32.. {
        let held = handle_request(&mut cache);
        churn();
        if served % requests_per_mib == 0 {
            say(&format!("leaked {held}"));
        }
        let next = start + period * served;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}
