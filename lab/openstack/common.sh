# Shared by up.sh, down.sh and compute.sh: process bookkeeping. Every service runs in its own process
# group (setsid); its pid file holds "PID STARTTIME" so a recycled pid is never signalled.

starttime() {
    # Field 22 of /proc/PID/stat, counted after the command name (which may contain spaces and ')').
    sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'
}

# start NAME COMMAND...  (environment as exported by the caller)
start() {
    local name="$1"
    shift
    setsid "$@" >>"$LAB_DIR/logs/$name.log" 2>&1 </dev/null &
    local pid=$!
    echo "$pid $(starttime "$pid")" >"$LAB_DIR/pids/$name"
}

# alive NAME: the recorded process still runs (and is the same process).
alive() {
    local f="$LAB_DIR/pids/$1"
    [ -f "$f" ] || return 1
    local pid st
    read -r pid st <"$f"
    [ -n "$pid" ] && [ "$(starttime "$pid")" = "$st" ]
}

# stop NAME [SIGNAL]: signal the process group, wait up to 15 s, then SIGKILL it.
stop() {
    local name="$1" sig="${2:-TERM}" f="$LAB_DIR/pids/$1"
    [ -f "$f" ] || return 0
    local pid st
    read -r pid st <"$f"
    if [ -n "$pid" ] && [ "$(starttime "$pid")" = "$st" ]; then
        kill "-$sig" -- "-$pid" 2>/dev/null || true
        for _ in $(seq 1 150); do
            [ "$(starttime "$pid")" = "$st" ] || break
            sleep 0.1
        done
        if [ "$(starttime "$pid")" = "$st" ]; then
            kill -KILL -- "-$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do
                [ "$(starttime "$pid")" = "$st" ] || break
                sleep 0.1
            done
        fi
    fi
    rm -f "$f"
}
