#!/usr/bin/env bash
# Stops, kills or starts one nova-compute of a lab (a compute host "crashing" and "being repaired").
#
#   lab/openstack/compute.sh DIR kill|stop|start|status HOST
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
LAB_DIR="${1:?usage: compute.sh DIR kill|stop|start|status HOST}"
ACTION="${2:?}"
HOST="${3:?}"
. "$HERE/common.sh"
. "$LAB_DIR/lab.env"
conf="$LAB_DIR/nova/compute-$HOST.conf"
[ -f "$conf" ] || { echo "no compute $HOST in $LAB_DIR" >&2; exit 2; }
case "$ACTION" in
    kill) stop "nova-compute-$HOST" KILL ;;
    stop) stop "nova-compute-$HOST" TERM ;;
    start)
        if alive "nova-compute-$HOST"; then echo "nova-compute on $HOST already runs"; exit 0; fi
        start "nova-compute-$HOST" "$LAB_VENV/bin/nova-compute" \
            --config-file "$LAB_DIR/nova/nova.conf" --config-file "$conf"
        ;;
    status) if alive "nova-compute-$HOST"; then echo running; else echo stopped; fi ;;
    *) echo "unknown action $ACTION" >&2; exit 2 ;;
esac
