#!/usr/bin/env bash
# freezer-dr recovers a real failed compute node, on this machine, in a few minutes.
#
#   lab/demo.sh [--dir DIR] [--crash hang|kill] [--no-storm] [--keep]
#
# 1. builds freezer-dr and starts the lab (lab/up.sh: Keystone + Nova with three fake-driver computes, an
#    IPMI BMC per compute whose power-off really kills that compute's nova-compute, an SMTP server);
# 2. boots servers for two projects (demo: alice, bob; other: dave) on compute1, compute2 and compute3;
# 3. starts `freezer-dr run` and makes compute1 fail: its nova-compute stops reporting (--crash hang,
#    the default: SIGSTOP, a hung kernel whose process still exists until the fence kills it; --crash
#    kill: SIGKILL). Its BMC is left alone: freezer-dr must power it off itself;
# 4. shows, as it happens: detection, the guard, the fence (power-off, read back off, the BMC's own log),
#    isolation in Nova, each evacuation, the mails; then powers compute1 back on through its BMC
#    (`ipmitool chassis power on` starts its nova-compute again) and shows it returned to service;
# 5. prints the timeline per phase, `freezer-dr status`, and every mail each user and operator received;
# 6. storm: compute2 and compute3 fail at once with a budget of one host: nothing is fenced, the
#    operators get one alert.
#
# Everything runs on 127.0.0.1; everything started is stopped at the end (--keep leaves the lab up:
# stop it with lab/down.sh --purge DIR). DIR defaults to /tmp/freezer-dr-lab. FREEZER_DR_BIN: use this
# binary instead of building one.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"

LAB_DIR="${FREEZER_DR_LAB_DIR:-/tmp/freezer-dr-lab}"
CRASH=hang
STORM=yes
KEEP=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) LAB_DIR="$2"; shift 2 ;;
        --crash) CRASH="$2"; shift 2 ;;
        --no-storm) STORM=""; shift ;;
        --keep) KEEP=yes; shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$CRASH" in hang|kill) ;; *) echo "--crash hang|kill" >&2; exit 2 ;; esac

T0=$(date +%s)
say() { printf '\n\033[1m==> [%4ss] %s\033[0m\n' "$(( $(date +%s) - T0 ))" "$*"; }
now_ms() { date +%s%3N; }

# ---- What the lab and the build need (Debian packages, the OpenStack venv): quick when already there.
say "installing what the lab needs (lab/install.sh; the first time takes a few minutes)"
"$HERE/install.sh"

# ---- freezer-dr itself.
if [ -n "${FREEZER_DR_BIN:-}" ]; then
    BIN="$FREEZER_DR_BIN"
else
    say "building freezer-dr (cargo build -p freezer-dr-cli)"
    (cd "$REPO" && cargo build -p freezer-dr-cli)
    BIN="${CARGO_TARGET_DIR:-$REPO/target}/debug/freezer-dr"
fi
[ -x "$BIN" ] || { echo "no freezer-dr binary at $BIN" >&2; exit 1; }

# ---- A fresh lab (a previous demo's journal, servers and mails would blur this one).
say "starting the lab in $LAB_DIR (OpenStack, BMCs, SMTP; about a minute)"
if [ -f "$LAB_DIR/.freezer-dr-lab" ]; then "$HERE/down.sh" --purge "$LAB_DIR" >/dev/null; fi
cleanup() {
    local rc=$?
    if [ -n "$KEEP" ]; then
        echo
        echo "The lab is still up (--keep): . $LAB_DIR/lab.env; $BIN status; $HERE/down.sh --purge $LAB_DIR"
    else
        echo
        echo "Stopping the lab (every process it started, by recorded pid)..."
        "$HERE/down.sh" --purge "$LAB_DIR" >/dev/null 2>&1 || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$HERE/up.sh" --dir "$LAB_DIR"
. "$LAB_DIR/lab.env"
. "$HERE/openstack/common.sh"
PY="$LAB_VENV/bin/python"
export FREEZER_DR_CONFIG="$LAB_DIR/freezer-dr.toml" IPMI_PASSWORD
IPMI_PASSWORD="$(cat "$LAB_DIR/bmc.pass")"
bmc() { ipmitool -I lanplus -H 127.0.0.1 -p "$(cat "$LAB_DIR/bmc/$1/port")" -U admin -E -C 3 "${@:2}"; }

say "freezer-dr validate --connect (config: $FREEZER_DR_CONFIG)"
"$BIN" validate --connect

say "booting servers for two projects (demo: alice, bob, carol without email; other: dave)"
"$PY" "$HERE/lab.py" boot demo:compute1:2 other:compute1:1 demo:compute2:1 other:compute2:1 \
    demo:compute3:1 other:compute3:1

say "starting the daemon: freezer-dr run (log: $LAB_DIR/logs/freezer-dr.log)"
start freezer-dr "$BIN" run
sleep 4
alive freezer-dr || { cat "$LAB_DIR/logs/freezer-dr.log"; exit 1; }
"$BIN" status

read -r PID _ <"$LAB_DIR/pids/nova-compute-compute1"
say "compute1 fails: its nova-compute (pid $PID) stops reporting ($CRASH); its BMC still answers"
CRASH_MS=$(now_ms)
if [ "$CRASH" = hang ]; then
    kill -STOP "$PID"
    echo "  SIGSTOP: the process exists but does nothing (state $(ps -o stat= -p "$PID")), like a hung kernel"
else
    "$HERE/openstack/compute.sh" "$LAB_DIR" kill compute1
    echo "  SIGKILL: nova-compute is gone, the BMC still says the chassis is on"
fi
echo "  BMC of compute1: $(bmc compute1 chassis power status)"

say "watching freezer-dr (journal history, BMC actions, mails), times from the failure"
"$PY" "$HERE/lab.py" follow "$BIN" "$CRASH_MS" recovered compute1 240

say "the fence was real"
echo "  BMC of compute1: $(bmc compute1 chassis power status)"
if kill -0 "$PID" 2>/dev/null; then echo "  nova-compute pid $PID STILL EXISTS"; else echo "  nova-compute pid $PID: gone"; fi
"$PY" "$HERE/lab.py" services
say "every server (evacuate calls counted from Nova's instance actions)"
"$PY" "$HERE/lab.py" instances

say "compute1 is repaired: ipmitool chassis power on (its BMC starts nova-compute again)"
POWERON_MS=$(now_ms)
bmc compute1 chassis power on
"$PY" "$HERE/lab.py" follow "$BIN" "$POWERON_MS" restored compute1 180
"$PY" "$HERE/lab.py" services

say "the timeline of compute1's recovery, per phase (freezer-dr history, mails, BMC log)"
"$PY" "$HERE/lab.py" phases "$BIN" compute1 "$CRASH_MS" "$POWERON_MS"

say "freezer-dr status"
"$BIN" status

say "the mails (users first, then the operators)"
"$PY" "$HERE/lab.py" mails

if [ -n "$STORM" ]; then
    say "storm: compute2 AND compute3 fail at once; the budget allows one host ([recovery.storm] max_hosts = 1)"
    STORM_MS=$(now_ms)
    "$HERE/openstack/compute.sh" "$LAB_DIR" kill compute2 &
    k2=$!
    "$HERE/openstack/compute.sh" "$LAB_DIR" kill compute3 &
    k3=$!
    wait "$k2" "$k3"   # not a bare `wait`: the daemon is a child of this shell too
    "$PY" "$HERE/lab.py" follow "$BIN" "$STORM_MS" storm - 120
    sleep 8   # a few more cycles: still nothing may be fenced
    say "nothing was fenced: both BMCs still on, both services untouched"
    for h in compute2 compute3; do echo "  BMC of $h: $(bmc "$h" chassis power status)"; done
    "$PY" "$HERE/lab.py" services
    "$BIN" status
    say "the operators' mails (one storm alert)"
    "$PY" "$HERE/lab.py" mails --operators
    say "repairing compute2 and compute3 (nova-compute started again)"
    "$HERE/openstack/compute.sh" "$LAB_DIR" start compute2
    "$HERE/openstack/compute.sh" "$LAB_DIR" start compute3
    "$PY" "$HERE/lab.py" wait-service compute2 up 90
    "$PY" "$HERE/lab.py" wait-service compute3 up 90
    "$PY" "$HERE/lab.py" services
fi

stop freezer-dr
say "done in $(( $(date +%s) - T0 )) s"
