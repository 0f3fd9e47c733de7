# The pods scenario of the vm-test guest: sourced by init.sh, which calls scenario_pods.
#
# `profiler watch --pod` on the tree a kubelet with the systemd cgroup driver and containerd
# makes (the layout of most nodes today), found without an API server, to a real OOM kill:
#
#   $CGROOT/kubepods.slice/                                memory.max: the node's allocatable
#     kubepods-burstable.slice/
#       kubepods-burstable-pod<uid, _ for ->.slice/        memory.max: the sum of the limits
#         cri-containerd-<sandbox id>.scope                the pause container (no limit)
#         cri-containerd-<container id>.scope              memory.max, memory.oom.group 1
#   /var/log/pods/<namespace>_<pod>_<uid>/<container>/0.log
#   /var/log/containers/<pod>_<namespace>_<container>-<container id>.log -> the file above
#
# The sandbox has no log (the kubelet writes none for it). On cgroup v1 the same names sit in
# the memory hierarchy, with memory.limit_in_bytes and no memory.oom.group (v1 has none).

# 64 lowercase hex digits, as containerd's ids.
pods_hex_id() {
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'
}

# A MiB figure as the kubelet writes it: v2 memory.max, v1 memory.limit_in_bytes.
pods_limit() {
    if [ "$CGV" = 1 ]; then
        echo $(($2 * 1048576)) > "$1/memory.limit_in_bytes"
    else
        echo $(($2 * 1048576)) > "$1/memory.max"
    fi
}

scenario_pods() {
    NS=shop POD=web-7d4b9c CNAME=app
    APP_MIB=$(param pods_app_mib 64)
    NODE_MIB=$(param pods_node_mib 768)
    UID_=$(cat /proc/sys/kernel/random/uuid)
    CID=$(pods_hex_id)
    SANDBOX=$(pods_hex_id)
    SLICE_UID=$(echo "$UID_" | tr - _)
    KP=$CGROOT/kubepods.slice
    QOS=$KP/kubepods-burstable.slice
    PODCG=$QOS/kubepods-burstable-pod$SLICE_UID.slice
    APPCG=$PODCG/cri-containerd-$CID.scope
    PAUSECG=$PODCG/cri-containerd-$SANDBOX.scope
    LOGDIR=/var/log/pods/${NS}_${POD}_$UID_
    LINK=/var/log/containers/${POD}_${NS}_${CNAME}-$CID.log

    # The kubelet makes each level and enables the memory controller for the next one (v2:
    # a process may only live in a leaf, so the scopes enable nothing).
    # v1 before 5.11: a limit covers the children only with use_hierarchy, which systemd turns
    # on at the root of every v1 node. Here the root may have children already (it cannot
    # change then), so each level turns it on while it is still empty.
    for cg in "$KP" "$QOS" "$PODCG"; do
        mkdir "$cg"
        if [ "$CGV" = 2 ]; then
            echo +memory > "$cg/cgroup.subtree_control"
        else
            echo 1 > "$cg/memory.use_hierarchy" 2>/dev/null
        fi
    done
    [ "$CGV" = 1 ] && kv pods_use_hierarchy "$(cat "$PODCG/memory.use_hierarchy" 2>/dev/null)"
    mkdir -p "$PAUSECG" "$APPCG"
    # Node allocatable on kubepods; a Burstable pod whose every container has a limit gets
    # their sum on its slice (the sandbox counts for nothing); the container its own limit.
    pods_limit "$KP" "$NODE_MIB"
    pods_limit "$PODCG" "$APP_MIB"
    pods_limit "$APPCG" "$APP_MIB"
    if [ "$CGV" = 2 ]; then
        echo 0 > "$APPCG/memory.swap.max" 2>/dev/null
        # What the kubelet asks of the runtime on v2 (singleProcessOOMKill false): the
        # container dies whole.
        if echo 1 > "$APPCG/memory.oom.group" 2>/dev/null; then
            kv pods_oom_group "$(cat "$APPCG/memory.oom.group")"
        else
            kv pods_oom_group "not writable"
        fi
    fi
    mkdir -p "$LOGDIR/$CNAME" /var/log/containers
    echo "$(date -u +%Y-%m-%dT%H:%M:%S.000000000Z) stdout F starting" > "$LOGDIR/$CNAME/0.log"
    ln -s "$LOGDIR/$CNAME/0.log" "$LINK"
    kv pods_namespace "$NS"
    kv pods_pod "$POD"
    kv pods_container "$CNAME"
    kv pods_uid "$UID_"
    kv pods_container_id "$CID"
    kv pods_sandbox_id "$SANDBOX"
    kv pods_pod_cgroup "$PODCG"
    kv pods_container_cgroup "$APPCG"
    kv pods_sandbox_cgroup "$PAUSECG"
    kv pods_limit_bytes $((APP_MIB * 1048576))
    find /var/log/pods /var/log/containers > /tmp/pods.logs 2>&1
    ls -l /var/log/containers >> /tmp/pods.logs 2>&1
    section pods_logs /tmp/pods.logs

    # The pause process, as the kubelet starts it: -998, never the OOM killer's choice.
    start_in "$PAUSECG" /tmp/pause.pid /tmp/pause.out --comm pause hold --mib 1
    PAUSE=$STARTED
    echo -998 > "/proc/$PAUSE/oom_score_adj" 2>/dev/null
    wait_word /tmp/pause.out 30 ready
    kv pods_pause_pid "$PAUSE"

    profiler watch --pod "$POD" --json --interval 1s > /tmp/pods.json 2> /tmp/pods.err &
    PW=$!
    # Its first watch_start may be the sandbox's: wait for the container's own.
    STARTED_ON="cri-containerd-$CID.scope\".*\"watch_start\""
    if wait_watch_start "$PW" /tmp/pods.json 180 && wait_word /tmp/pods.json 30 "$STARTED_ON" \
        && grep -q "$STARTED_ON" /tmp/pods.json; then
        kv pods_watch_started yes
        say "pods: watch --pod $POD attached (up $(cut -d' ' -f1 /proc/uptime) s); starting the leak"
        start_in "$APPCG" /tmp/app.pid /tmp/app.out --comm app leak --step-mib 4 --interval-ms 100
        APP=$STARTED
        kv pods_leak_pid "$APP"
        # A leak the kernel never kills must not hang the guest.
        ( sleep 90; touch /tmp/app.timeout; kill -9 "$APP" ) 2>/dev/null &
        PDOG=$!
        wait "$APP"
        kv pods_leak_status $?
        kill "$PDOG" 2>/dev/null
        [ -e /tmp/app.timeout ] && kv pods_leak_timeout 90
        if alive "$PAUSE"; then kv pods_pause_alive yes; else kv pods_pause_alive no; fi
        say "pods: the leak ended (up $(cut -d' ' -f1 /proc/uptime) s): $(grep oom_kill "$APPCG/memory.events" 2>/dev/null | tr '\n' ' ')"
        # The kill's exit and group lines, and a sample after it.
        sleep 4
    else
        kv pods_watch_started no
        say "pods: profiler watch --pod did not start on the container"
    fi
    stop_watch "$PW" "profiler watch --pod" /tmp/pods.json pods_watch_status
    cg_events "$APPCG" /tmp/pods.app.events
    cg_events "$PODCG" /tmp/pods.pod.events
    section pods_container_events /tmp/pods.app.events
    section pods_pod_events /tmp/pods.pod.events
    kv pods_container_peak "$(cg_peak "$APPCG")"
    dmesg | grep -E 'oom-kill:|Killed process|invoked oom-killer|Tasks in|Memory cgroup out of memory' \
        > /tmp/pods.dmesg
    section pods_dmesg /tmp/pods.dmesg
    section pods_watch /tmp/pods.json
    section pods_stderr /tmp/pods.err
    section pods_leak_output /tmp/app.out

    # Leave nothing behind: the pause process, then the cgroups bottom-up and the logs.
    kill -9 "$PAUSE" 2>/dev/null
    wait "$PAUSE" 2>/dev/null
    for cg in "$APPCG" "$PAUSECG" "$PODCG" "$QOS" "$KP"; do rmdir "$cg" 2>/dev/null; done
    [ -d "$KP" ] && kv pods_left_behind "$(find "$KP" -type d | tr '\n' ' ')"
    rm -rf "$LOGDIR" "$LINK"
    say "pods done (up $(cut -d' ' -f1 /proc/uptime) s)"
}
