# The detach scenario of the vm-test guest: sourced by init.sh, which calls scenario_detach.
#
# A `kill -9` of the profiler (the agent is what gets SIGKILLed in the field: an OOM kill, a
# pod deleted with no grace) runs none of its clean-up: what it attached must go with its file
# descriptors, not with code of its own. Per run: the kernel's BPF programs, maps and links
# (bpftool), the perf events holding programs, and the lines of kprobe_events and
# uprobe_events (a probe made through tracefs's legacy interface outlives its maker) are
# counted before, while it runs and after its SIGKILL, until they are back where they were
# (programs are freed asynchronously). Nothing else runs in the guest: counts are exact.
# Facts per run RUN (auto, kprobe, fentry, tracepoint, serve):
#   detach_RUN_before/_during/_after  "progs=N maps=N links=N btfs=N perf=N kprobe_events=N
#                          uprobe_events=N" (btfs: the kernel's own and the programs' object's)
#   detach_RUN_settle_ms   ms from the reaping until the counts were back (or `timeout`)
#   detach_RUN_refused     why a forced mode did not start (then no kill: it exited itself)
#   detach_RUN_left        ids found after but not before (`prog 12 13; map 4`)
# and sections detach_RUN_during_bpftool (its programs and links by name) and
# detach_RUN_after_bpftool (bpftool's lists) when the counts did not come back.

# The ids of the kernel's BPF objects of kind $1 (prog, map, link, btf), one a line.
detach_ids() {
    bpftool "$1" list 2>/dev/null | sed -n 's/^\([0-9][0-9]*\): .*/\1/p'
}

# Lines of tracefs file $1 (`none` when the kernel has no such file).
detach_lines() {
    if [ -e "/sys/kernel/tracing/$1" ]; then grep -c . "/sys/kernel/tracing/$1"; else echo none; fi
}

# One count of everything a profiler may attach, on one line.
detach_count() {
    echo "progs=$(detach_ids prog | wc -l) maps=$(detach_ids map | wc -l)" \
        "links=$(detach_ids link | wc -l) btfs=$(detach_ids btf | wc -l)" \
        "perf=$(bpftool perf list 2>/dev/null | grep -c '^pid')" \
        "kprobe_events=$(detach_lines kprobe_events) uprobe_events=$(detach_lines uprobe_events)"
}

# Every id of every kind, as `kind id` lines, to file $1.
detach_snapshot() {
    for kind in prog map link btf; do detach_ids "$kind" | sed "s/^/$kind /"; done > "$1"
}

# Centiseconds since boot.
detach_cs() {
    cut -d' ' -f1 /proc/uptime | tr -d .
}

# After run $1's process is reaped: polls until the count is back to $2 (up to 10 s), then
# sends the count, the time it took and whatever is still there that was not before (ids
# listed in file $3).
detach_settle() {
    run=$1 before=$2
    t0=$(detach_cs)
    after=$(detach_count)
    while [ "$after" != "$before" ] && [ $(($(detach_cs) - t0)) -lt 1000 ]; do
        sleep 0.1
        after=$(detach_count)
    done
    kv "detach_${run}_after" "$after"
    if [ "$after" = "$before" ]; then
        kv "detach_${run}_settle_ms" $((($(detach_cs) - t0) * 10))
    else
        kv "detach_${run}_settle_ms" timeout
        {
            for kind in prog map link btf perf; do echo "--- bpftool $kind list"; bpftool "$kind" list; done
            for f in kprobe_events uprobe_events; do
                echo "--- $f"
                cat "/sys/kernel/tracing/$f"
            done
        } > /tmp/detach.after 2>&1
        section "detach_${run}_after_bpftool" /tmp/detach.after
    fi
    detach_snapshot /tmp/detach.now
    left=""
    for kind in prog map link btf; do
        ids=$(grep "^$kind " /tmp/detach.now | grep -vxF -f "$3" | cut -d' ' -f2 | tr '\n' ' ')
        [ -n "$ids" ] && left="$left${left:+; }$kind ${ids% }"
    done
    kv "detach_${run}_left" "${left:-none}"
}

# Run $1: profiler args $2... (a `watch --json` or a `serve`); started, counted, SIGKILLed,
# counted again. A run that ends by itself before it is up was refused (a forced mode this
# kernel lacks): that is sent, and it must have left nothing either.
detach_run() {
    run=$1
    shift
    before=$(detach_count)
    detach_snapshot /tmp/detach.before
    kv "detach_${run}_before" "$before"
    kv "detach_${run}_args" "$*"
    profiler "$@" > /tmp/detach.out 2> /tmp/detach.err &
    P=$!
    if [ "$1" = serve ]; then
        # serve prints its address on stderr once its programs are attached.
        n=0
        while ! grep -q '^profiler serve: http://' /tmp/detach.err && alive "$P" && [ "$n" -lt 900 ]; do
            n=$((n + 1))
            sleep 0.2
        done
        grep -q '^profiler serve: http://' /tmp/detach.err
    else
        wait_watch_start "$P" /tmp/detach.out 180
    fi
    up=$?
    if [ "$up" -ne 0 ] && ! alive "$P"; then
        wait "$P"
        kv "detach_${run}_status" $?
        kv "detach_${run}_refused" "$(grep -v '^$' /tmp/detach.err | tail -n 3 | tr '\n' ' ')"
        say "detach: $run refused: $(tail -n 1 /tmp/detach.err)"
        detach_settle "$run" "$before" /tmp/detach.before
        return
    fi
    [ "$up" -ne 0 ] && kv "detach_${run}_slow" "not up after 180 s; killed anyway"
    # The mode it chose: a watch says it on its lines, serve on its stderr (`...; fentry mode`).
    kv "detach_${run}_mode" "$(sed -n -e 's/.*"mode":"\([a-z]*\)".*/\1/p' \
        -e 's/^profiler serve: .*; \([a-z]*\) mode$/\1/p' /tmp/detach.out /tmp/detach.err | head -n 1)"
    kv "detach_${run}_during" "$(detach_count)"
    # What it holds, by name: which programs are loaded without a link, for one.
    {
        for kind in prog link; do echo "--- bpftool $kind list"; bpftool "$kind" list; done
    } > /tmp/detach.during 2>&1
    section "detach_${run}_during_bpftool" /tmp/detach.during
    kill -9 "$P"
    wait "$P"
    kv "detach_${run}_status" $?
    say "detach: $run SIGKILLed (up $(cut -d' ' -f1 /proc/uptime) s)"
    detach_settle "$run" "$before" /tmp/detach.before
    [ "$1" = serve ] && section "detach_${run}_stderr" /tmp/detach.err
}

scenario_detach() {
    D=$CGROOT/vmtest-detach
    cg_make "$D" "$LIMIT_MIB"
    kv detach_cgroup "$D"
    if bpftool prog list > /tmp/detach.bpftool 2>&1; then
        kv detach_bpftool ok
    else
        kv detach_bpftool "$(head -n 3 /tmp/detach.bpftool | tr '\n' ' ')"
    fi
    runs="auto kprobe fentry tracepoint"
    for mode in $runs; do
        detach_run "$mode" watch --mode "$mode" --stacks --cgroup "$D" --json --interval 1s
    done
    # The agent: every container and the node, the charge path attached all the time (the
    # default attaches it only while a container needs it) and every stack sampled; port 0
    # is any free one.
    rm -rf /tmp/detach-serve
    detach_run serve serve --listen 127.0.0.1:0 --record-dir /tmp/detach-serve \
        --cgroup-root "$CGROOT" --charge-tracing always --stacks always --interval 1s
    kv detach_runs "$runs serve"
    rmdir "$D" 2>/dev/null
    say "detach done (up $(cut -d' ' -f1 /proc/uptime) s)"
}
