#!/usr/bin/env bash
# The chassis of one lab compute host, as its BMC (ipmi_sim) drives it. ipmi_sim runs a per-host wrapper
# (written by lab/up.sh) that calls:
#
#   lab/bmc-chassis.sh LAB_DIR HOST 0x20 get power        -> prints power:<0|1>
#   lab/bmc-chassis.sh LAB_DIR HOST 0x20 set power 0|1
#
# The power state lives in LAB_DIR/bmc/HOST/power. Power-off is real: the host's nova-compute process is
# killed (SIGKILL to its process group, as a pulled plug) BEFORE the state reads 0, so "off" is never
# reported while it still runs, and so is what the host itself answers on the network (a TCP listener on
# the port in LAB_DIR/bmc/HOST/host-port, what the `tcp` monitor probes). Power-on writes 1 and starts
# both again. Every change is logged to LAB_DIR/bmc/HOST/chassis.log.
#
#   lab/bmc-chassis.sh LAB_DIR HOST 0x20 host-up          -> starts the host's listener (lab/up.sh)
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
LAB_DIR="$1"
HOST="$2"
shift 2
# $1 = the MC address (0x20), $2 = get|set, $3 = the item, $4 = the value.
state="$LAB_DIR/bmc/$HOST/power"
log="$LAB_DIR/bmc/$HOST/chassis.log"
note() { echo "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ) $*" >>"$log"; }
. "$HERE/openstack/common.sh"
# The host's own listener (Debian's python3: any TCP connect to it succeeds while the host has power).
host_up() {
    alive "host-$HOST" && return 0
    start "host-$HOST" /usr/bin/python3 -m http.server --bind 127.0.0.1 "$(cat "$LAB_DIR/bmc/$HOST/host-port")"
}

case "${2:-}" in
    host-up)
        [ -f "$LAB_DIR/bmc/$HOST/host-port" ] && host_up
        ;;
    get)
        if [ "${3:-}" = power ]; then
            printf 'power:%s\n' "$(cat "$state" 2>/dev/null || echo 0)"
        fi
        ;;
    set)
        [ "${3:-}" = power ] || exit 0
        if [ "${4:-}" = 0 ]; then
            pid="$(cut -d' ' -f1 "$LAB_DIR/pids/nova-compute-$HOST" 2>/dev/null || true)"
            if "$HERE/openstack/compute.sh" "$LAB_DIR" status "$HOST" 2>/dev/null | grep -q running; then
                "$HERE/openstack/compute.sh" "$LAB_DIR" kill "$HOST" >>"$log" 2>&1
                note "power off: nova-compute (pid $pid) killed"
            else
                note "power off: nova-compute was not running"
            fi
            if [ -f "$LAB_DIR/bmc/$HOST/host-port" ]; then
                stop "host-$HOST" KILL
                note "power off: the host's listener killed"
            fi
            printf 0 >"$state"
        else
            printf 1 >"$state"
            [ -f "$LAB_DIR/bmc/$HOST/host-port" ] && host_up
            "$HERE/openstack/compute.sh" "$LAB_DIR" start "$HOST" >>"$log" 2>&1
            note "power on: nova-compute started (pid $(cut -d' ' -f1 "$LAB_DIR/pids/nova-compute-$HOST" 2>/dev/null))"
        fi
        ;;
esac
exit 0
