#!/bin/sh
# /init of a `cargo xtask vm-test` guest (busybox ash). Progress goes to the console (ttyS0);
# results go to the second serial port (ttyS1) as lines the host parses (vm/verdict.rs):
#   === kv KEY VALUE          one fact
#   === begin NAME ... === end NAME   a file, verbatim
#   === overhead MODE ROUND PAGES_PER_SEC
#   === done                  everything was sent
# The host judges; this script only runs things and reports what happened.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
# Raw tracepoints need no tracefs; it is mounted to list which memcg tracepoints exist.
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
# Pure cgroup v2 (the kernel runs with cgroup_no_v1=all), as on most Kubernetes nodes.
mount -t cgroup2 cgroup2 /sys/fs/cgroup

say() { echo "vmtest: $*"; }
# Raw mode: no \n -> \r\n translation on the results port.
stty -F /dev/ttyS1 raw -echo 2>/dev/null
exec 3>/dev/ttyS1
put() { echo "=== $*" >&3; }
kv() { put "kv $*"; }
section() {
    put "begin $1"
    [ -f "$2" ] && cat "$2" >&3
    put "end $1"
}
# Options from the kernel command line (vmtest.NAME=VALUE), so the initramfs does not change
# with them.
param() {
    for word in $(cat /proc/cmdline); do
        case "$word" in "vmtest.$1="*) echo "${word#*=}"; return ;; esac
    done
    echo "$2"
}
# Runs a command in cgroup $1: the shell moves itself there, then execs the command.
in_cgroup() {
    sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$@"
}
# Waits until `profiler watch` (pid $1, output $2) has printed its first line: every program is
# attached by then. Fails if it exits or takes longer than $3 seconds.
wait_watch_start() {
    n=0
    while ! grep -q '"watch_start"' "$2" 2>/dev/null; do
        kill -0 "$1" 2>/dev/null || return 1
        n=$((n + 1))
        [ "$n" -gt $(($3 * 5)) ] && return 1
        sleep 0.2
    done
}
# Waits up to $2 seconds for pid $1 to exit. If it does not, the guest reports what the
# process is stuck on (its kernel stack and wait channel) and the kernel log's tail, kills it,
# and goes on: a hang becomes a named failure, not a timeout with nothing to read. Returns the
# process's exit status.
wait_or_report() {
    n=0
    while kill -0 "$1" 2>/dev/null; do
        n=$((n + 1))
        if [ "$n" -gt $(($2 * 5)) ]; then
            kv hang "$3: pid $1 still running after $2 s (wchan $(cat /proc/$1/wchan 2>/dev/null))"
            section hang_stack "/proc/$1/stack"
            dmesg | tail -n 60 > /tmp/dmesg.tail
            section hang_dmesg /tmp/dmesg.tail
            say "$3: pid $1 hung; killed"
            kill -9 "$1" 2>/dev/null
            # A task stuck in the kernel does not die of SIGKILL: do not wait for it.
            return 124
        fi
        sleep 0.2
    done
    wait "$1" 2>/dev/null
}
poweroff_now() {
    exec 3>&-    # closing the port waits until its output has gone out
    sleep 1
    poweroff -f
    echo o > /proc/sysrq-trigger
}

# The leak: a cgroup with memory.max LIMIT_MIB, STEP_MIB more every STEP_MS, killed by this
# script if the kernel has not killed it after LEAK_TIMEOUT s. The overhead: ROUNDS rounds of
# the page-fault workload (PF_MIB mapped and touched, PF_ITERS times) without and with a watch.
LIMIT_MIB=$(param limit_mib 64)
STEP_MIB=$(param step_mib 2)
STEP_MS=$(param step_ms 250)
LEAK_TIMEOUT=$(param leak_timeout 180)
ROUNDS=$(param rounds 4)
PF_MIB=$(param pf_mib 16)
PF_ITERS=$(param pf_iters 4)

say "kernel $(uname -r), up $(cut -d' ' -f1 /proc/uptime) s"
kv kernel "$(uname -r)"
if [ -e /sys/kernel/btf/vmlinux ]; then kv btf yes; else kv btf no; fi
kv memcg_tracepoints "$(ls /sys/kernel/tracing/events/memcg 2>/dev/null | grep -v '^enable$\|^filter$' | tr '\n' ' ')"
say "BTF: $([ -e /sys/kernel/btf/vmlinux ] && echo present || echo missing); running profiler doctor"

profiler doctor --json > /tmp/doctor.json 2> /tmp/doctor.err
kv doctor_status $?
section doctor /tmp/doctor.json
section doctor_stderr /tmp/doctor.err
say "doctor done (up $(cut -d' ' -f1 /proc/uptime) s)"

echo +memory > /sys/fs/cgroup/cgroup.subtree_control
CG=/sys/fs/cgroup/vmtest
mkdir "$CG"
echo "${LIMIT_MIB}M" > "$CG/memory.max"
# Without swap accounting the file is missing; there is no swap in the guest either way.
echo 0 > "$CG/memory.swap.max" 2>/dev/null
kv cgroup "$CG"
kv limit_bytes $((LIMIT_MIB * 1024 * 1024))

profiler watch --cgroup "$CG" --json --interval 1s > /tmp/watch.json 2> /tmp/watch.err &
WATCH=$!
if wait_watch_start "$WATCH" /tmp/watch.json 180; then
    kv watch_started yes
    say "profiler watch attached (up $(cut -d' ' -f1 /proc/uptime) s); starting the leak"
    # The shell that joins the cgroup writes its own pid, which the workload keeps across exec:
    # that is the pid the kernel will kill, whatever processes the job itself adds.
    sh -c 'echo $$ > "$0/cgroup.procs" && echo $$ > /tmp/leak.pid && exec "$@"' "$CG" \
        workload --comm leaky leak --step-mib "$STEP_MIB" --interval-ms "$STEP_MS" \
        > /tmp/leak.out 2>&1 &
    LEAK=$!
    while [ ! -s /tmp/leak.pid ] && kill -0 "$LEAK" 2>/dev/null; do sleep 0.1; done
    kv workload_pid "$(cat /tmp/leak.pid 2>/dev/null)"
    # A leak the kernel never kills must not hang the guest until the host's timeout.
    ( sleep "$LEAK_TIMEOUT"; touch /tmp/leak.timeout; kill -9 "$LEAK" ) 2>/dev/null &
    WATCHDOG=$!
    wait "$LEAK"
    kv workload_status $?
    kill "$WATCHDOG" 2>/dev/null
    [ -e /tmp/leak.timeout ] && kv workload_timeout "$LEAK_TIMEOUT"
    say "the leak ended (up $(cut -d' ' -f1 /proc/uptime) s): $(grep oom_kill "$CG/memory.events" | tr '\n' ' ')"
    section memory_events "$CG/memory.events"
    kv memory_peak "$(cat "$CG/memory.peak" 2>/dev/null)"
    # Let the profiler take a sample or two after the kill and read the kernel's record of it.
    sleep 3
else
    kv watch_started no
    say "profiler watch did not start"
fi
kill -INT "$WATCH" 2>/dev/null
wait_or_report "$WATCH" 60 "profiler watch after SIGINT"
kv watch_status $?
section watch /tmp/watch.json
section watch_stderr /tmp/watch.err
section leak_output /tmp/leak.out
say "watch sent (up $(cut -d' ' -f1 /proc/uptime) s); overhead: $ROUNDS rounds"
kv rounds "$ROUNDS"

# The kprobe fallback, forced: fentry is the mode on these kernels, so without this run the
# kprobe programs would never meet a real charge path. A 32 MiB growth under a 64 MiB limit.
K=/sys/fs/cgroup/vmtest-kprobe
mkdir "$K"
echo "${LIMIT_MIB}M" > "$K/memory.max"
kv kprobe_cgroup "$K"
profiler watch --mode kprobe --cgroup "$K" --json --interval 1s > /tmp/kprobe.json 2> /tmp/kprobe.err &
KW=$!
if wait_watch_start "$KW" /tmp/kprobe.json 180; then
    # `grow` holds its memory once grown (until killed): 8 steps of 250 ms, then two more
    # samples so the last rates cover the end of the growth.
    in_cgroup "$K" workload grow --step-mib 4 --steps 8 --interval-ms 250 > /dev/null 2>&1 &
    GROW=$!
    sleep 4.5
    kill -9 "$GROW" 2>/dev/null
    wait "$GROW"
fi
kill -INT "$KW" 2>/dev/null
wait_or_report "$KW" 60 "profiler watch --mode kprobe after SIGINT"
kv kprobe_status $?
section kprobe_watch /tmp/kprobe.json
section kprobe_stderr /tmp/kprobe.err
say "kprobe run done (up $(cut -d' ' -f1 /proc/uptime) s)"

# Overhead: the page-fault workload with and without `profiler watch` on its cgroup, the
# order alternating round by round so drift in the emulator hits both alike.
B=/sys/fs/cgroup/bench
mkdir "$B"
# Debian's kernels default to transparent huge pages `always`: the workload's regions then
# fault in 2 MiB at a time and the charge-path hooks almost never fire (a ratio of 1.000 on
# 6.12 showed it). `madvise`, as on the host of `cargo xtask bench overhead`, makes every
# 4 KiB page a fault and a charge: the worst case the figure is meant to be.
echo madvise > /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null
kv thp "$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
pagefault() {
    in_cgroup "$B" workload pagefault --mib "$PF_MIB" --iters "$PF_ITERS" 2>&1 \
        | sed -n 's/.*pages_per_sec=\([0-9.e+-]*\).*/\1/p'
}
round=1
while [ "$round" -le "$ROUNDS" ]; do
    if [ $((round % 2)) -eq 1 ]; then order="none watch"; else order="watch none"; fi
    for mode in $order; do
        if [ "$mode" = watch ]; then
            profiler watch --cgroup "$B" --json --interval 1s > /tmp/bench.json 2>&1 &
            P=$!
            if ! wait_watch_start "$P" /tmp/bench.json 180; then
                kv overhead_error "round $round: profiler watch did not start"
                section bench_watch /tmp/bench.json
            fi
            put "overhead $mode $round $(pagefault)"
            kill -INT "$P" 2>/dev/null
            wait_or_report "$P" 60 "round $round: profiler watch after SIGINT"
            # On 6.1 a watch started right after the previous one exited twice made page
            # faults twice as slow, and once did not exit (before this pause): the kernel may
            # still be tearing down the last watch's trampolines. Let it finish.
            sleep 2
        else
            put "overhead $mode $round $(pagefault)"
        fi
    done
    say "overhead round $round done"
    round=$((round + 1))
done
kv uptime "$(cut -d' ' -f1 /proc/uptime)"
put done
say "done (up $(cut -d' ' -f1 /proc/uptime) s); powering off"
poweroff_now
