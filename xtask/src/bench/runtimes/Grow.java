// The forecast bench's JVM program (`cargo xtask bench forecast`, scenarios 10 and 12),
// compiled with javac when the bench runs. Like the bench's `workload`, it says what it does
// on stdout, one line per event, so the bench can time-stamp it:
//
//   java ... Grow leak --baseline-mib B --hold-s H --rate-kib-s R [--garbage-kib-s G]
//       holds B MiB of live arrays for H s, prints `growth_start <unix s>`, then keeps R KiB/s
//       more live (in a list it never drops) until the JVM is killed or throws.
//   java ... Grow warmup --baseline-mib B --hold-s H --rate-kib-s R --live-mib L
//       [--garbage-kib-s G]
//       holds as above, prints `growth_start <unix s>`, then allocates R KiB/s for ever, each
//       array kept only while it is among the last L MiB: the live set stops growing at L MiB
//       while what dies after surviving a young collection fills the old generation, as a
//       service warming up does.
//
// From the start, both also allocate G KiB/s of garbage (default 0), as a service does: young
// collections then come every few seconds, so what is kept reaches the old generation in small
// steps (without garbage, each step is a whole eden, tens of MiB, every ~20 s).
//
// Every second it prints `allocated <bytes>` (kept since the growth start); first,
// `jvm max_heap <bytes> gc <names>`, so a recording says which collector ran.
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;

final class Grow {
    /** Arrays of this size: small enough for a smooth rate, large enough to cost no CPU. */
    private static final int CHUNK = 64 << 10;
    private static final long MIB = 1 << 20;
    /** How often the allocation catches up with its rate, ms. */
    private static final long TICK_MS = 50;

    /** Where garbage goes, so the JIT cannot prove it unused and skip allocating it. */
    static volatile byte[] sink;

    public static void main(String[] args) throws InterruptedException {
        if (args.length == 0 || args.length % 2 == 0) {
            fail("usage: Grow leak|warmup --baseline-mib B --hold-s H --rate-kib-s R"
                    + " [--live-mib L] [--garbage-kib-s G]");
        }
        String mode = args[0];
        if (!mode.equals("leak") && !mode.equals("warmup")) {
            fail("unknown mode " + mode + " (leak or warmup)");
        }
        Map<String, Long> options = new HashMap<>();
        for (int i = 1; i < args.length; i += 2) {
            if (!args[i].startsWith("--")) {
                fail("expected an option, got " + args[i]);
            }
            try {
                options.put(args[i].substring(2), Long.parseLong(args[i + 1]));
            } catch (NumberFormatException e) {
                fail(args[i] + " takes a whole number, got " + args[i + 1]);
            }
        }
        long rate = need(options, "rate-kib-s") << 10;
        long live = mode.equals("warmup") ? need(options, "live-mib") * MIB : Long.MAX_VALUE;
        long garbage = options.getOrDefault("garbage-kib-s", 0L) << 10;

        describe();
        // Kept live for the whole run, so the quiet phase holds a real baseline.
        ArrayDeque<byte[]> baseline = new ArrayDeque<>();
        keep(baseline, need(options, "baseline-mib") * MIB, Long.MAX_VALUE);
        say("baseline " + baseline.size() * (long) CHUNK);
        if (garbage > 0) {
            Thread churn = new Thread(() -> churn(garbage), "garbage");
            churn.setDaemon(true);
            churn.start();
        }
        Thread.sleep(need(options, "hold-s") * 1000);
        grow(rate, live);
    }

    /** Keeps `rate` bytes a second reachable, the newest `live` bytes of them. */
    private static void grow(long rate, long live) throws InterruptedException {
        ArrayDeque<byte[]> held = new ArrayDeque<>();
        long start = System.currentTimeMillis();
        say("growth_start " + seconds(start));
        long kept = 0;
        long reported = start;
        while (true) {
            long now = System.currentTimeMillis();
            long due = rate * (now - start) / 1000;
            kept += keep(held, due - kept, live);
            if (now - reported >= 1000) {
                say("allocated " + kept);
                reported = now;
            }
            Thread.sleep(TICK_MS);
        }
    }

    /**
     * Adds whole chunks of up to `bytes` to `held` (Java zeroes a new array, which touches its
     * pages), dropping the oldest beyond `live` bytes. Returns the bytes added.
     */
    private static long keep(ArrayDeque<byte[]> held, long bytes, long live) {
        long added = 0;
        for (; added + CHUNK <= bytes; added += CHUNK) {
            held.addLast(new byte[CHUNK]);
            if ((long) held.size() * CHUNK > live) {
                held.removeFirst();
            }
        }
        return added;
    }

    /** Allocates `rate` bytes a second that die at once. */
    private static void churn(long rate) {
        long start = System.currentTimeMillis();
        long allocated = 0;
        while (true) {
            long due = rate * (System.currentTimeMillis() - start) / 1000;
            for (; allocated + CHUNK <= due; allocated += CHUNK) {
                sink = new byte[CHUNK];
            }
            try {
                Thread.sleep(TICK_MS);
            } catch (InterruptedException e) {
                return;
            }
        }
    }

    /** The heap's ceiling and the collectors, as the JVM chose them. */
    private static void describe() {
        StringBuilder gcs = new StringBuilder();
        for (GarbageCollectorMXBean gc : ManagementFactory.getGarbageCollectorMXBeans()) {
            gcs.append(gcs.length() == 0 ? "" : ",").append(gc.getName().replace(' ', '_'));
        }
        say("jvm max_heap " + Runtime.getRuntime().maxMemory() + " gc " + gcs);
    }

    private static long need(Map<String, Long> options, String name) {
        Long value = options.get(name);
        if (value == null || value < 0) {
            fail("--" + name + " is required, a whole number of at least 0");
        }
        return value;
    }

    private static String seconds(long millis) {
        return String.format(Locale.ROOT, "%.3f", millis / 1000.0);
    }

    /** One line, flushed at once: the bench time-stamps it when it reads it. */
    private static void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    private static void fail(String message) {
        System.err.println("Grow: " + message);
        System.exit(2);
    }
}
