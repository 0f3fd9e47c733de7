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
# Which scenarios run: all, or those named in vmtest.only (comma-separated, e.g.
# `vmtest.only=leak,ringloss`; `cargo xtask vm-test --only`).
ONLY=$(param only "")
want() {
    [ -z "$ONLY" ] && return 0
    case ",$ONLY," in *",$1,"*) return 0 ;; esac
    return 1
}
# The cgroup version: pure v2 (the kernel runs with cgroup_no_v1=all), as on most Kubernetes
# nodes, unless vmtest.cgroup=1: then the memory controller is on a v1 hierarchy of its own at
# /sys/fs/cgroup/memory, as on older nodes (and the host of the e2e tests).
CGV=$(param cgroup 2)
if [ "$CGV" = 1 ]; then
    mount -t tmpfs cgroup /sys/fs/cgroup
    mkdir /sys/fs/cgroup/memory
    mount -t cgroup -o memory memory /sys/fs/cgroup/memory
    CGROOT=/sys/fs/cgroup/memory
else
    mount -t cgroup2 cgroup2 /sys/fs/cgroup
    echo +memory > /sys/fs/cgroup/cgroup.subtree_control
    CGROOT=/sys/fs/cgroup
fi
# Makes cgroup $1 (a path) and, when $2 is given, limits it to $2 MiB of memory and no swap.
cg_make() {
    mkdir -p "$1"
    [ -z "$2" ] && return 0
    if [ "$CGV" = 1 ]; then
        echo $(($2 * 1048576)) > "$1/memory.limit_in_bytes"
        # Only with swap accounting; there is no swap in the guest either way.
        echo $(($2 * 1048576)) > "$1/memory.memsw.limit_in_bytes" 2>/dev/null
    else
        echo "${2}M" > "$1/memory.max"
        echo 0 > "$1/memory.swap.max" 2>/dev/null
    fi
}
# Copies cgroup $1's memory events to file $2: v2's memory.events, or v1's memory.oom_control,
# which has the same `oom_kill N` line (the host reads both alike).
cg_events() {
    if [ "$CGV" = 1 ]; then cat "$1/memory.oom_control"; else cat "$1/memory.events"; fi > "$2" 2>&1
}
# Cgroup $1's peak usage in bytes (v1: memory.max_usage_in_bytes).
cg_peak() {
    if [ "$CGV" = 1 ]; then cat "$1/memory.max_usage_in_bytes"; else cat "$1/memory.peak"; fi 2>/dev/null
}
# Runs a command in cgroup $1: the shell moves itself there, then execs the command.
in_cgroup() {
    sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$@"
}
# Starts `workload ARGS...` in cgroup $1 in the background, its pid (kept across exec: the one
# the kernel will kill) in file $2, its output in file $3.
# STARTED is that pid (the job's own: the shell execs the workload).
start_in() {
    cg=$1 pidfile=$2 out=$3
    shift 3
    sh -c 'echo $$ > "$0/cgroup.procs" && echo $$ > "$1" && shift && exec "$@"' "$cg" "$pidfile" \
        workload "$@" > "$out" 2>&1 &
    STARTED=$!
    n=0
    while [ ! -s "$pidfile" ] && [ "$n" -lt 100 ]; do n=$((n + 1)); sleep 0.05; done
}
# Whether pid $1 lives (a zombie does not: it died, and waits to be reaped).
alive() {
    [ -e "/proc/$1" ] && ! grep -q '^State:.*[ZX]' "/proc/$1/status" 2>/dev/null
}
# Waits up to $2 seconds for file $1 to hold the word $3.
wait_word() {
    n=0
    while ! grep -q "$3" "$1" 2>/dev/null && [ "$n" -lt $(($2 * 10)) ]; do
        n=$((n + 1))
        sleep 0.1
    done
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
# Stops watch $1 with SIGINT and sends its exit status as fact $4; a watch that does not end
# within 60 s is reported as wait_or_report does, named "$2 after SIGINT", with its output $3.
stop_watch() {
    kill -INT "$1" 2>/dev/null
    wait_or_report "$1" 60 "$2 after SIGINT" "$3"
    kv "$4" $?
}
# One line of a process's signal state (and thread count) from /proc/PID/status: whether a
# signal is pending, blocked, ignored or caught tells a lost signal from a deaf handler.
sig_state() {
    grep -E '^(State|Threads|SigQ|SigPnd|ShdPnd|SigBlk|SigIgn|SigCgt|voluntary_ctxt_switches):' \
        "/proc/$1/status" 2>/dev/null | tr -s '\t\n' '  '
}
# Everything about pid $1 that tells why it did not act on a signal, as file $2: per thread its
# signal state, wait channel, system call (with arguments: epoll_wait's timeout) and kernel
# stack; the process's descriptors (what its epoll set holds).
proc_snapshot() {
    {
        echo "uptime $(cut -d' ' -f1 /proc/uptime) date $(date +%s)"
        cat "/proc/$1/status" 2>/dev/null
        for t in /proc/$1/task/*; do
            echo "--- task ${t##*/} comm $(cat "$t/comm" 2>/dev/null)"
            echo "wchan $(cat "$t/wchan" 2>/dev/null)"
            echo "syscall $(cat "$t/syscall" 2>/dev/null)"
            echo "status $(sig_state "$1/task/${t##*/}")"
            echo "stat $(cat "$t/stat" 2>/dev/null)"
            cat "$t/stack" 2>/dev/null
        done
        echo "--- fds"
        ls -l "/proc/$1/fd/" 2>/dev/null
        for f in /proc/$1/fdinfo/*; do
            echo "--- fdinfo ${f##*/}"
            cat "$f" 2>/dev/null
        done
    } > "$2" 2>&1
}
# Waits up to $2 seconds for pid $1 to exit. If it does not, the guest reports what the
# process is stuck on (per thread: signal state, wait channel, system call, kernel stack; its
# descriptors; its output so far, file $4) and the kernel log's tail, tries SIGINT again and
# then SIGTERM (does it hear a second signal?), kills it, and goes on: a hang becomes a named
# failure, not a timeout with nothing to read. Returns the process's exit status.
wait_or_report() {
    n=0
    while kill -0 "$1" 2>/dev/null; do
        n=$((n + 1))
        if [ "$n" -gt $(($2 * 5)) ]; then
            kv hang "$3: pid $1 still running after $2 s (wchan $(cat /proc/$1/wchan 2>/dev/null))"
            section hang_stack "/proc/$1/stack"
            proc_snapshot "$1" /tmp/hang.snap
            section hang_snapshot /tmp/hang.snap
            # Two seconds later: do its context switches go on (a live event loop that missed
            # the signal) or not?
            sleep 2
            proc_snapshot "$1" /tmp/hang.snap2
            section hang_snapshot_later /tmp/hang.snap2
            [ -n "$4" ] && section hang_output "$4"
            dmesg | tail -n 60 > /tmp/dmesg.tail
            section hang_dmesg /tmp/dmesg.tail
            retry=none
            for sig in INT TERM; do
                kill -"$sig" "$1" 2>/dev/null
                m=0
                while kill -0 "$1" 2>/dev/null && [ "$m" -lt 25 ]; do m=$((m + 1)); sleep 0.2; done
                if ! kill -0 "$1" 2>/dev/null; then retry="exited on a second SIG$sig"; break; fi
                kv hang_after_sig$sig "$(sig_state "$1")"
            done
            kv hang_retry "$retry"
            say "$3: pid $1 hung ($retry); killed"
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

say "kernel $(uname -r), cgroup v$CGV, up $(cut -d' ' -f1 /proc/uptime) s${ONLY:+, only $ONLY}"
kv kernel "$(uname -r)"
kv cgroup_version "$CGV"
kv only "$ONLY"
kv init_signals "$(sig_state $$)"
if [ -e /sys/kernel/btf/vmlinux ]; then kv btf yes; else kv btf no; fi
kv memcg_tracepoints "$(ls /sys/kernel/tracing/events/memcg 2>/dev/null | grep -v '^enable$\|^filter$' | tr '\n' ' ')"
say "BTF: $([ -e /sys/kernel/btf/vmlinux ] && echo present || echo missing); running profiler doctor"

profiler doctor --json > /tmp/doctor.json 2> /tmp/doctor.err
kv doctor_status $?
section doctor /tmp/doctor.json
section doctor_stderr /tmp/doctor.err
say "doctor done (up $(cut -d' ' -f1 /proc/uptime) s)"

# The scenarios of their own files (/lib/vmtest/*.sh, each defines scenario_NAME).
for f in /lib/vmtest/*.sh; do . "$f"; done

if want leak; then
CG=$CGROOT/vmtest
cg_make "$CG" "$LIMIT_MIB"
kv cgroup "$CG"
kv limit_bytes $((LIMIT_MIB * 1024 * 1024))

profiler watch --cgroup "$CG" --json --stacks --interval 1s > /tmp/watch.json 2> /tmp/watch.err &
WATCH=$!
if wait_watch_start "$WATCH" /tmp/watch.json 180; then
    kv watch_started yes
    kv watch_signals "$(sig_state "$WATCH")"
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
    cg_events "$CG" /tmp/leak.events
    say "the leak ended (up $(cut -d' ' -f1 /proc/uptime) s): $(grep oom_kill /tmp/leak.events | tr '\n' ' ')"
    section memory_events /tmp/leak.events
    kv memory_peak "$(cg_peak "$CG")"
    # Let the profiler take a sample or two after the kill and read the kernel's record of it.
    sleep 3
else
    kv watch_started no
    say "profiler watch did not start"
fi
stop_watch "$WATCH" "profiler watch" /tmp/watch.json watch_status
section watch /tmp/watch.json
section watch_stderr /tmp/watch.err
section leak_output /tmp/leak.out
say "watch sent (up $(cut -d' ' -f1 /proc/uptime) s)"
fi

# A watch forced to mode $1 (`--mode kprobe`, `--mode fentry`) over a 32 MiB growth under a
# 64 MiB limit, its facts and files named after the mode. kprobe: the fallback of kernels
# without fentry, never chosen where fentry works, so without this run its programs would not
# meet a real charge path. fentry: never chosen where the memcg tracepoints are (7.x); where
# the kernel cannot run it (5.10) the watch must be refused with a reason.
forced_mode() {
M=$1
K=$CGROOT/vmtest-$M
cg_make "$K" "$LIMIT_MIB"
kv "${M}_cgroup" "$K"
profiler watch --mode "$M" --stacks --cgroup "$K" --json --interval 1s > "/tmp/$M.json" 2> "/tmp/$M.err" &
KW=$!
if wait_watch_start "$KW" "/tmp/$M.json" 180; then
    kv "${M}_signals" "$(sig_state "$KW")"
    # `grow` holds its memory once grown (until killed): 8 steps of 250 ms, then two more
    # samples so the last rates cover the end of the growth.
    in_cgroup "$K" workload grow --step-mib 4 --steps 8 --interval-ms 250 > /dev/null 2>&1 &
    GROW=$!
    sleep 4.5
    kill -9 "$GROW" 2>/dev/null
    wait "$GROW"
fi
stop_watch "$KW" "profiler watch --mode $M" "/tmp/$M.json" "${M}_status"
section "${M}_watch" "/tmp/$M.json"
section "${M}_stderr" "/tmp/$M.err"
say "$M run done (up $(cut -d' ' -f1 /proc/uptime) s)"
}
want kprobe && forced_mode kprobe
want fentry && forced_mode fentry

# Adaptive tracing (what `profiler serve` does): the charge path is detached after the first
# round while nothing needs it, attached again (programs loaded anew) when the cgroup grows
# fast toward its limit, and then sees the charges. 48 MiB in 4 MiB steps (8 MiB/s) under 64 MiB.
if want adaptive; then
A=$CGROOT/vmtest-adaptive
cg_make "$A" "$LIMIT_MIB"
kv adaptive_cgroup "$A"
profiler watch --adaptive --cgroup "$A" --json --interval 1s > /tmp/adaptive.json 2> /tmp/adaptive.err &
AW=$!
if wait_watch_start "$AW" /tmp/adaptive.json 180; then
    wait_word /tmp/adaptive.json 30 '"armed":false'
    in_cgroup "$A" workload grow --step-mib 4 --steps 12 --interval-ms 500 > /dev/null 2>&1 &
    AGROW=$!
    sleep 10
    kill -9 "$AGROW" 2>/dev/null
    wait "$AGROW"
fi
stop_watch "$AW" "profiler watch --adaptive" /tmp/adaptive.json adaptive_status
section adaptive_watch /tmp/adaptive.json
section adaptive_stderr /tmp/adaptive.err
say "adaptive run done (up $(cut -d' ' -f1 /proc/uptime) s)"
fi

# A group kill: memory.oom.group set (as the kubelet does on cgroup v2), a process holding a
# little memory and a leak; when the leak reaches the limit the kernel kills both at once.
# cgroup v1 has no memory.oom.group: there the kernel kills one process at a time.
if want group && [ "$CGV" = 1 ]; then
    kv group_unavailable "cgroup v1 has no memory.oom.group"
elif want group; then
G=$CGROOT/vmtest-group
cg_make "$G" "$LIMIT_MIB"
kv group_cgroup "$G"
if echo 1 > "$G/memory.oom.group" 2>/dev/null; then kv group_set yes; else kv group_set no; fi
profiler watch --cgroup "$G" --json --interval 1s > /tmp/group.json 2> /tmp/group.err &
GW=$!
if wait_watch_start "$GW" /tmp/group.json 180; then
    start_in "$G" /tmp/gheld.pid /tmp/gheld.out --comm held hold --mib 4
    GHELD=$STARTED
    wait_word /tmp/gheld.out 30 ready
    start_in "$G" /tmp/gleak.pid /tmp/gleak.out --comm gleak leak --step-mib 4 --interval-ms 100
    GLEAK=$STARTED
    kv group_held_pid "$GHELD"
    kv group_leak_pid "$GLEAK"
    # Neither may outlive the test if the kernel does not kill them.
    ( sleep 60; kill -9 "$GHELD" "$GLEAK" ) 2>/dev/null &
    GWD=$!
    wait "$GLEAK"
    kv group_leak_status $?
    wait "$GHELD"
    kv group_held_status $?
    kill "$GWD" 2>/dev/null
    section group_events "$G/memory.events"
    # The group's line comes a second after its first victim.
    sleep 3
fi
stop_watch "$GW" "profiler watch of the group kill" /tmp/group.json group_status
section group_watch /tmp/group.json
section group_stderr /tmp/group.err
say "group kill done (up $(cut -d' ' -f1 /proc/uptime) s)"
fi

# A SIGINT during a watch's start-up (loading and attaching take seconds here) must end the
# watch once it is set up. A background job of this script starts with SIGINT ignored; a
# profiler that caught it only after attaching lost such a signal and ran on until killed.
if want early; then
cg_make "$CGROOT/vmtest-early" "$LIMIT_MIB"
profiler watch --cgroup "$CGROOT/vmtest-early" --json --interval 1s > /tmp/early.json 2>&1 &
E=$!
# Once the profiler has replaced the forked shell (whose SIGINT stays ignored), 1 s in.
n=0
while [ "$(readlink "/proc/$E/exe" 2>/dev/null)" != /bin/profiler ] && kill -0 "$E" 2>/dev/null \
    && [ "$n" -lt 100 ]; do
    n=$((n + 1))
    sleep 0.05
done
sleep 1
kv early_kill "up $(cut -d' ' -f1 /proc/uptime) s, $(grep -c '"watch_start"' /tmp/early.json) watch_start lines; $(sig_state "$E")"
kill -INT "$E" 2>/dev/null
wait_or_report "$E" 60 "profiler watch after a SIGINT during its start-up" /tmp/early.json
kv early_status $?
section early_watch /tmp/early.json
say "SIGINT during start-up done (up $(cut -d' ' -f1 /proc/uptime) s)"
fi

want ringloss && scenario_ringloss
want detach && scenario_detach
want pods && scenario_pods

# Overhead: the page-fault workload with and without `profiler watch` on its cgroup, the
# order alternating round by round so drift in the emulator hits both alike.
if want overhead; then
kv rounds "$ROUNDS"
B=$CGROOT/bench
cg_make "$B"
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
    # `kprobe`: a watch forced to the kprobe mode, the fallback of kernels without fentry.
    if [ $((round % 2)) -eq 1 ]; then order="none watch kprobe"; else order="kprobe watch none"; fi
    for mode in $order; do
        if [ "$mode" != none ]; then
            force=
            [ "$mode" = kprobe ] && force="--mode kprobe"
            # A file of its own: with one file for every round, the shell could find the last
            # watch's `watch_start` before this watch's redirection had truncated the file, go
            # on at once, and send its SIGINT in the middle of the start-up (where it was lost:
            # the watch ran on, a hang on 6.1) after a workload run that the start-up slowed.
            W=/tmp/bench.$mode.$round.json
            # shellcheck disable=SC2086 # $force is zero or two words
            profiler watch $force --cgroup "$B" --json --interval 1s > "$W" 2>&1 &
            P=$!
            if ! wait_watch_start "$P" "$W" 180; then
                kv overhead_error "round $round: profiler watch $force did not start"
                section bench_watch "$W"
            fi
            # Every watch's signal state once started and again just before its SIGINT: a
            # blocked, ignored or uncaught SIGINT shows here, not only in a hang.
            kv "bench_signals_${mode}_${round}_start" "up $(cut -d' ' -f1 /proc/uptime) s: $(sig_state "$P")"
            put "overhead $mode $round $(pagefault)"
            kv "bench_signals_${mode}_${round}_kill" "up $(cut -d' ' -f1 /proc/uptime) s: $(sig_state "$P")"
            kill -INT "$P" 2>/dev/null
            wait_or_report "$P" 60 "round $round: profiler watch $force after SIGINT" "$W"
        else
            put "overhead $mode $round $(pagefault)"
        fi
    done
    say "overhead round $round done"
    round=$((round + 1))
done
fi
# A node (global) OOM, which only a guest may have: the guest has 1 GiB and no swap. A leak in
# a cgroup without a limit, beside a BestEffort-like process (oom_score_adj 1000) and a
# Guaranteed-like one (-997), each in a cgroup of its own; the profiler, watching the three,
# is never a candidate (-1000). The kernel kills by oom_score: the BestEffort one first.
if want node; then
N=$CGROOT/node
for c in leak best guaranteed; do cg_make "$N-$c"; done
kv node_cgroups "$N-leak $N-best $N-guaranteed"
start_in "$N-best" /tmp/nbest.pid /tmp/nbest.out --comm best hold --mib 16
NBEST=$STARTED
start_in "$N-guaranteed" /tmp/nguar.pid /tmp/nguar.out --comm guaranteed hold --mib 16
NGUAR=$STARTED
wait_word /tmp/nbest.out 30 ready
wait_word /tmp/nguar.out 30 ready
echo 1000 > "/proc/$NBEST/oom_score_adj"
echo -997 > "/proc/$NGUAR/oom_score_adj"
kv node_best_pid "$NBEST"
kv node_guaranteed_pid "$NGUAR"
kv node_meminfo "$(grep -E '^(MemTotal|MemAvailable):' /proc/meminfo | tr -s ' \n' ' ')"
profiler watch --cgroup "$N-leak" --cgroup "$N-best" --cgroup "$N-guaranteed" --json \
    --interval 500ms > /tmp/node.json 2> /tmp/node.err &
NW=$!
echo -1000 > "/proc/$NW/oom_score_adj"
if wait_watch_start "$NW" /tmp/node.json 180; then
    # Quiet node lines first, past the forecaster's 20 s of learning (as for a container, it
    # forecasts nothing before), then 64 MiB/s until the node runs out.
    sleep 22
    start_in "$N-leak" /tmp/nleak.pid /tmp/nleak.out --comm nodeleak leak --step-mib 16 --interval-ms 250
    NLEAK=$STARTED
    kv node_leak_pid "$NLEAK"
    ( sleep 120; kill -9 "$NLEAK" ) 2>/dev/null &
    NWD=$!
    wait "$NLEAK"
    kv node_leak_status $?
    kill "$NWD" 2>/dev/null
    if alive "$NBEST"; then kv node_best_alive yes; else kv node_best_alive no; fi
    if alive "$NGUAR"; then kv node_guaranteed_alive yes; else kv node_guaranteed_alive no; fi
    # The kills' exit lines, and a node line after them.
    sleep 3
fi
stop_watch "$NW" "profiler watch of the node OOM" /tmp/node.json node_status
kill -9 "$NBEST" "$NGUAR" 2>/dev/null
wait "$NBEST" "$NGUAR" 2>/dev/null
dmesg | grep -E 'oom-kill:|Killed process|Out of memory' > /tmp/node.dmesg
section node_dmesg /tmp/node.dmesg
section node_watch /tmp/node.json
section node_stderr /tmp/node.err
say "node OOM done (up $(cut -d' ' -f1 /proc/uptime) s)"
fi

# Swap (last: the node OOM above needs a node without swap). A cgroup allowed to swap
# (memory.swap.max, as Kubernetes' LimitedSwap sets it) on a zram swap device: its anonymous
# memory is then not unreclaimable, and the kernel kills only when memory and swap are both
# full. The leak is of random bytes, which zram cannot compress: `tail -c` keeps everything it
# reads (it prints only at the end of its input), fed a MiB from /dev/urandom every
# SWAP_STEP_MS by a loop outside the cgroup. It starts with the watch, so the forecast made
# 30 s before the kill comes after the forecaster's 20 s of learning.
SWAP_LIMIT_MIB=$(param swap_limit_mib 48)
SWAP_MAX_MIB=$(param swap_max_mib 48)
SWAP_STEP_MS=$(param swap_step_ms 600)
SWAP_DISK_MIB=$(param swap_disk_mib 256)
S=$CGROOT/vmtest-swap
# Loads zram (the kernel's package's modules, unpacked by the host: /lib/modules/RELEASE/NN-*.ko
# in load order) and swaps on a SWAP_DISK_MIB zram0; prints why not where it cannot.
swap_setup() {
    if [ ! -e /sys/fs/cgroup/cgroup.controllers ]; then
        echo "cgroup v1 (memory.swap.max is v2's; this scenario is written for v2)"
        return 1
    fi
    if [ ! -e /sys/class/zram-control ]; then
        mods=$(ls "/lib/modules/$(uname -r)/"*.ko 2>/dev/null)
        if [ -z "$mods" ]; then
            echo "the kernel has no zram (no zram module in its package, and none built in)"
            return 1
        fi
        for m in $mods; do
            if ! insmod "$m" 2> /tmp/swap_setup.err; then
                echo "insmod ${m##*/}: $(tr '\n' ' ' < /tmp/swap_setup.err)"
                return 1
            fi
        done
    fi
    n=0
    while [ ! -e /sys/block/zram0/disksize ] && [ "$n" -lt 50 ]; do n=$((n + 1)); sleep 0.1; done
    if ! echo "${SWAP_DISK_MIB}M" > /sys/block/zram0/disksize 2> /tmp/swap_setup.err; then
        echo "setting zram0's disksize: $(tr '\n' ' ' < /tmp/swap_setup.err)(comp_algorithm $(cat /sys/block/zram0/comp_algorithm 2>/dev/null))"
        return 1
    fi
    if ! mkswap /dev/zram0 > /tmp/swap_setup.err 2>&1; then
        echo "mkswap /dev/zram0: $(tr '\n' ' ' < /tmp/swap_setup.err)"
        return 1
    fi
    if ! swapon /dev/zram0 2> /tmp/swap_setup.err; then
        echo "swapon /dev/zram0: $(tr '\n' ' ' < /tmp/swap_setup.err)"
        return 1
    fi
    mkdir "$S"
    if [ ! -e "$S/memory.swap.max" ]; then
        echo "no memory.swap.max: the kernel does not account swap (swapaccount=0?)"
        return 1
    fi
}
# A MiB of random bytes every SWAP_STEP_MS, until the reader is gone (head dies of SIGPIPE).
swap_feed() {
    step_s=$((SWAP_STEP_MS / 1000)).$(printf %03d $((SWAP_STEP_MS % 1000)))
    i=0
    while [ "$i" -lt 1024 ]; do
        head -c 1048576 /dev/urandom 2>/dev/null || return 0
        sleep "$step_s"
        i=$((i + 1))
    done
}
if ! want swap; then
    :
elif why=$(swap_setup); then
    echo "${SWAP_LIMIT_MIB}M" > "$S/memory.max"
    echo "${SWAP_MAX_MIB}M" > "$S/memory.swap.max"
    kv swap_cgroup "$S"
    kv swap_limit_bytes $((SWAP_LIMIT_MIB * 1024 * 1024))
    kv swap_max_set_bytes $((SWAP_MAX_MIB * 1024 * 1024))
    kv swap_step_ms "$SWAP_STEP_MS"
    kv swap_modules "$(cut -d' ' -f1 /proc/modules | grep -E 'zram|zsmalloc|lz4|lzo' | tr '\n' ' ')"
    kv swap_device "$(tail -n +2 /proc/swaps | tr -s ' \t' ' ')"
    kv zram_comp_algorithm "$(cat /sys/block/zram0/comp_algorithm)"
    kv swap_meminfo "$(grep -E '^Swap(Total|Free):' /proc/meminfo | tr -s ' \n' ' ')"
    profiler watch --cgroup "$S" --json --interval 1s > /tmp/swap.json 2> /tmp/swap.err &
    SW=$!
    if wait_watch_start "$SW" /tmp/swap.json 180; then
        say "swap: zram0 on, watch attached (up $(cut -d' ' -f1 /proc/uptime) s); starting the leak"
        swap_feed | sh -c 'echo $$ > "$0/cgroup.procs" && echo $$ > /tmp/swap.pid && exec tail -c 256m' \
            "$S" > /dev/null 2> /tmp/swap_tail.err &
        SLEAK=$!
        n=0
        while [ ! -s /tmp/swap.pid ] && [ "$n" -lt 100 ]; do n=$((n + 1)); sleep 0.05; done
        kv swap_pid "$(cat /tmp/swap.pid 2>/dev/null)"
        ( sleep 300; kill -9 "$SLEAK" ) 2>/dev/null &
        SWD=$!
        wait "$SLEAK"
        kv swap_leak_status $?
        kill "$SWD" 2>/dev/null
        say "swap: the leak ended (up $(cut -d' ' -f1 /proc/uptime) s): $(grep oom_kill "$S/memory.events" | tr '\n' ' ')"
        section swap_memory_events "$S/memory.events"
        section swap_swap_events "$S/memory.swap.events"
        kv swap_memory_peak "$(cat "$S/memory.peak" 2>/dev/null)"
        kv swap_swap_peak "$(cat "$S/memory.swap.peak" 2>/dev/null)"
        # orig_data_size compr_data_size mem_used_total mem_limit mem_used_max same_pages
        # pages_compacted huge_pages huge_pages_since: mem_used_max near what was swapped and
        # huge_pages_since (pages stored uncompressed) show the pages did not compress.
        kv zram_mm_stat "$(cat /sys/block/zram0/mm_stat)"
        sleep 3
    else
        say "swap: profiler watch did not start"
    fi
    stop_watch "$SW" "profiler watch of the swap leak" /tmp/swap.json swap_status
    section swap_watch /tmp/swap.json
    section swap_stderr /tmp/swap.err
    section swap_tail_stderr /tmp/swap_tail.err
    say "swap done (up $(cut -d' ' -f1 /proc/uptime) s)"
else
    kv swap_unavailable "not available: $why"
    say "swap: not available: $why"
fi
kv uptime "$(cut -d' ' -f1 /proc/uptime)"
put done
say "done (up $(cut -d' ' -f1 /proc/uptime) s); powering off"
poweroff_now
