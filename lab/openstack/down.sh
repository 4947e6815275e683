#!/usr/bin/env bash
# Stops a lab started by up.sh (every recorded service, in parallel) and, with --purge, removes its dir.
#
#   lab/openstack/down.sh [--purge] DIR
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PURGE=""
if [ "${1:-}" = "--purge" ]; then PURGE=yes; shift; fi
LAB_DIR="${1:?usage: down.sh [--purge] DIR}"
. "$HERE/common.sh"
[ -d "$LAB_DIR/pids" ] || { echo "no lab in $LAB_DIR"; exit 0; }
# Clients first, then the message bus and the database they use.
for f in "$LAB_DIR"/pids/*; do
    [ -e "$f" ] || continue
    n="$(basename "$f")"
    case "$n" in mariadb|rabbitmq|epmd) ;; *) stop "$n" & ;; esac
done
wait
for n in rabbitmq mariadb; do stop "$n" & done
wait
stop epmd
echo "lab in $LAB_DIR stopped"
if [ -n "$PURGE" ]; then rm -rf "$LAB_DIR"; fi
