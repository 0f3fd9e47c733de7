// The forecast bench's Node.js program (`cargo xtask bench forecast`, scenario 11). Like the
// bench's `workload`, it says what it does on stdout, one line per event (writes to a pipe are
// synchronous on Linux), so the bench can time-stamp it:
//
//   node ... grow.js leak --baseline-mib B --hold-s H --rate-kib-s R [--garbage-kib-s G]
//       holds B MiB of live arrays for H s, prints `growth_start <unix s>`, then keeps R KiB/s
//       more live (in an array it never drops) until it is killed or V8 gives up; from the
//       start it also allocates G KiB/s of garbage, as a service does.
//
// What it keeps is on V8's heap, which `--max-old-space-size` bounds (not Buffers, which live
// outside it): arrays of 8192 small integers, 64 KiB each on a 64-bit V8 without pointer
// compression (Node's default build). Every second it prints `allocated <bytes>` (kept since
// the growth start); first, `node max_heap <bytes>`, V8's own heap limit.
'use strict';

const v8 = require('v8');

/** Elements per chunk: 64 KiB of 8-byte slots, a regular (not large-object) allocation. */
const ELEMENTS = 8192;
const CHUNK = ELEMENTS * 8;
const MIB = 1 << 20;
/** How often the allocation catches up with its rate, ms. */
const TICK_MS = 50;

function fail(message) {
  process.stderr.write(`grow.js: ${message}\n`);
  process.exit(2);
}

/** One line at once: the bench time-stamps it when it reads it. */
function say(line) {
  process.stdout.write(`${line}\n`);
}

function parse(argv) {
  const [mode, ...rest] = argv;
  if (mode !== 'leak' || rest.length % 2 !== 0) {
    fail('usage: grow.js leak --baseline-mib B --hold-s H --rate-kib-s R [--garbage-kib-s G]');
  }
  const options = new Map();
  for (let i = 0; i < rest.length; i += 2) {
    const value = Number(rest[i + 1]);
    if (!rest[i].startsWith('--') || !Number.isInteger(value) || value < 0) {
      fail(`expected --option <whole number>, got ${rest[i]} ${rest[i + 1]}`);
    }
    options.set(rest[i].slice(2), value);
  }
  const need = (name) => {
    if (!options.has(name)) {
      fail(`--${name} is required`);
    }
    return options.get(name);
  };
  return {
    baseline: need('baseline-mib') * MIB,
    holdMs: need('hold-s') * 1000,
    rate: need('rate-kib-s') * 1024,
    garbage: (options.get('garbage-kib-s') ?? 0) * 1024,
  };
}

/** A new chunk of distinct small integers. */
function chunk(seed) {
  return new Array(ELEMENTS).fill(seed & 0xffff);
}

/** Pushes whole chunks of up to `bytes` onto `held`; returns the bytes added. */
function keep(held, bytes) {
  let added = 0;
  for (; added + CHUNK <= bytes; added += CHUNK) {
    held.push(chunk(held.length));
  }
  return added;
}

/** Calls `step(elapsedMs)` every tick from now on. */
function every(step) {
  const start = Date.now();
  setInterval(() => step(Date.now() - start), TICK_MS);
}

function main() {
  const options = parse(process.argv.slice(2));
  say(`node max_heap ${v8.getHeapStatistics().heap_size_limit}`);
  // Kept live for the whole run, so the quiet phase holds a real baseline.
  const baseline = [];
  keep(baseline, options.baseline);
  say(`baseline ${baseline.length * CHUNK}`);
  if (options.garbage > 0) {
    let allocated = 0;
    let sink = null;
    every((ms) => {
      for (; allocated + CHUNK <= (options.garbage * ms) / 1000; allocated += CHUNK) {
        sink = chunk(allocated);
      }
      return sink;
    });
  }
  setTimeout(() => {
    const held = [baseline];
    let kept = 0;
    let reported = 0;
    say(`growth_start ${(Date.now() / 1000).toFixed(3)}`);
    every((ms) => {
      kept += keep(held, (options.rate * ms) / 1000 - kept);
      if (ms - reported >= 1000) {
        say(`allocated ${kept}`);
        reported = ms;
      }
    });
  }, options.holdMs);
}

main();
