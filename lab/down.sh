#!/usr/bin/env bash
# Stops everything lab/up.sh (and lab/demo.sh) started in DIR — OpenStack, the BMCs, the SMTP server, a
# freezer-dr daemon — each by its recorded pid and start time, and with --purge removes DIR.
#
#   lab/down.sh [--purge] [DIR]          (DIR defaults to /tmp/freezer-dr-lab)
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PURGE=()
if [ "${1:-}" = "--purge" ]; then PURGE=(--purge); shift; fi
LAB_DIR="${1:-${FREEZER_DR_LAB_DIR:-/tmp/freezer-dr-lab}}"
if [ ! -e "$LAB_DIR" ]; then echo "no lab in $LAB_DIR"; exit 0; fi
if [ ! -f "$LAB_DIR/.freezer-dr-lab" ] && [ ! -d "$LAB_DIR/pids" ]; then
    echo "$LAB_DIR is not a freezer-dr lab: nothing done" >&2
    exit 1
fi
# lab/openstack/down.sh stops every process recorded in DIR/pids (ours included), clients first.
exec "$HERE/openstack/down.sh" "${PURGE[@]}" "$LAB_DIR"
