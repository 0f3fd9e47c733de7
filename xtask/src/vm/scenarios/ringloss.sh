# The ringloss scenario of the vm-test guest: sourced by init.sh, which calls scenario_ringloss.
#
# The events ring overflows on purpose: the watch's reader is stalled (the hidden
# --debug-stall-events) while RINGLOSS_CHILDREN processes of the watched cgroup die of their
# own SIGKILL (`workload sigstorm`: two ring records each, 168 bytes, so about 1,560 fit in the
# 256 KiB ring). The host checks records read (lines) + lost (`lost_events` lines) == records
# produced, and the lines' count against the kernel's own LOST_EVENTS, read here with bpftool
# after the storm's last round and before the watch ends. A process killed after the stall
# shows the watch goes on. No memory limit, so no burst budget runs out: the storm's records
# are the only ones. Works alike on cgroup v1 and v2.
RINGLOSS_CHILDREN=$(param ringloss_children 4000)
RINGLOSS_STALL=$(param ringloss_stall 15)

# The ids of the maps named LOST_EVENTS that process $1 holds (found through its descriptors,
# so no other process's count), one per line.
ringloss_map_ids() {
    for f in /proc/"$1"/fdinfo/*; do
        id=$(sed -n 's/^map_id:[[:space:]]*//p' "$f" 2>/dev/null)
        [ -n "$id" ] || continue
        bpftool -j map show id "$id" 2>/dev/null | grep -q '"name":"LOST_EVENTS"' && echo "$id"
    done
}

# Seconds since boot, to the hundredth.
ringloss_uptime() {
    cut -d' ' -f1 /proc/uptime
}

scenario_ringloss() {
    R=$CGROOT/vmtest-ringloss
    cg_make "$R"
    kv ringloss_cgroup "$R"
    kv ringloss_children "$RINGLOSS_CHILDREN"
    kv ringloss_stall_s "$RINGLOSS_STALL"
    profiler watch --cgroup "$R" --json --interval 1s --debug-stall-events "${RINGLOSS_STALL}s" \
        > /tmp/ringloss.json 2> /tmp/ringloss.err &
    RW=$!
    if wait_watch_start "$RW" /tmp/ringloss.json 180; then
        # The stall started as watch_start was written: at most the 0.2 s of a look ago.
        t0=$(ringloss_uptime)
        kv ringloss_watch_started yes
        say "ringloss: watch attached, reader stalled ${RINGLOSS_STALL} s; killing $RINGLOSS_CHILDREN processes"
        in_cgroup "$R" workload --comm ringstorm sigstorm --children "$RINGLOSS_CHILDREN" \
            > /tmp/ringloss_storm.out 2>&1
        kv ringloss_storm_status $?
        t1=$(ringloss_uptime)
        # Whether the storm ended inside the stall (else fewer records were dropped than
        # could have been; the accounting holds either way).
        kv ringloss_storm_end_s "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
        section ringloss_storm /tmp/ringloss_storm.out
        # Past the stall (and a second), a process killed now must be read as usual.
        wait_s=$(awk -v a="$t0" -v b="$t1" -v s="$RINGLOSS_STALL" \
            'BEGIN { w = a + s + 1 - b; if (w < 0) w = 0; printf "%d", w + 1 }')
        sleep "$wait_s"
        in_cgroup "$R" workload --comm ringafter sigstorm --children 1 > /tmp/ringloss_after.out 2>&1
        kv ringloss_after_status $?
        n=0
        while ! grep '"comm":"ringafter"' /tmp/ringloss.json 2>/dev/null | grep -q '"type":"exit"' \
            && [ "$n" -lt 300 ]; do
            n=$((n + 1))
            sleep 0.2
        done
        kv ringloss_after_seen_s "$(awk -v a="$t0" -v b="$(ringloss_uptime)" 'BEGIN { printf "%.2f", b - a }')"
        # Two more rounds, so every count is in a lost_events line; then the kernel's own
        # count, while the watch (and so its maps) still lives.
        sleep 2
        ids=$(ringloss_map_ids "$RW")
        kv ringloss_map_ids "$(echo $ids)"
        for id in $ids; do bpftool -j map dump id "$id"; echo; done > /tmp/ringloss_lost.json 2>&1
        section ringloss_lost_map /tmp/ringloss_lost.json
    else
        kv ringloss_watch_started no
        say "ringloss: profiler watch did not start"
    fi
    stop_watch "$RW" "profiler watch of the ring loss" /tmp/ringloss.json ringloss_status
    section ringloss_watch /tmp/ringloss.json
    section ringloss_stderr /tmp/ringloss.err
    section ringloss_after /tmp/ringloss_after.out
    rmdir "$R" 2>/dev/null
    say "ringloss done (up $(ringloss_uptime) s)"
}
