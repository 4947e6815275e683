#!/usr/bin/env bash
# Starts the whole freezer-dr lab on 127.0.0.1: the OpenStack lab (lab/openstack/up.sh: Keystone,
# Placement, Nova with one fake-driver nova-compute per host), one BMC per compute host (OpenIPMI's
# ipmi_sim; its power-off really kills that host's nova-compute, its power-on starts it again), an SMTP
# server that keeps every mail it receives (aiosmtpd, Maildir), and a freezer-dr config that points at all
# of it. Installs what is missing first (lab/install.sh).
#
#   lab/up.sh [--dir DIR] [--computes "compute1 compute2 compute3"] [--storm-hosts N]
#   lab/down.sh [--purge] [DIR]
#
# DIR defaults to /tmp/freezer-dr-lab. Idempotent: when a complete lab already runs in DIR it is reused;
# a partial or stopped one there is stopped and started afresh. Every process it starts is recorded in
# DIR/pids (pid and start time) and stopped by lab/down.sh. Writes:
#   DIR/freezer-dr.toml   the freezer-dr config (nova, keystone, ipmi, email, a journal in DIR/freezer-dr)
#   DIR/lab.env           credentials and addresses (shell), DIR/maildir/new/ the mails received
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"

LAB_DIR="${FREEZER_DR_LAB_DIR:-/tmp/freezer-dr-lab}"
COMPUTES="compute1 compute2 compute3"
STORM_HOSTS=1
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) LAB_DIR="$2"; shift 2 ;;
        --computes) COMPUTES="$2"; shift 2 ;;
        --storm-hosts) STORM_HOSTS="$2"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
MARK=".freezer-dr-lab"

"$HERE/install.sh" >/dev/null

# ---- Already up? Reuse it when every recorded process still runs; otherwise start afresh.
if [ -f "$LAB_DIR/$MARK" ] && [ -f "$LAB_DIR/freezer-dr.toml" ]; then
    LAB_DIR="$(cd "$LAB_DIR" && pwd)"
    . "$HERE/openstack/common.sh"
    all_alive=yes
    for h in $(. "$LAB_DIR/lab.env"; echo "$LAB_COMPUTES"); do
        for n in mariadb rabbitmq keystone nova-api nova-conductor nova-scheduler "bmc-$h" smtp; do
            alive "$n" || all_alive=""
        done
    done
    if [ -n "$all_alive" ]; then
        echo "freezer-dr lab already up in $LAB_DIR (config: $LAB_DIR/freezer-dr.toml; stop: $HERE/down.sh)"
        exit 0
    fi
    echo "lab: a partial lab in $LAB_DIR: stopping it and starting afresh" >&2
fi
if [ -e "$LAB_DIR" ]; then
    if [ -f "$LAB_DIR/$MARK" ]; then
        "$HERE/down.sh" --purge "$LAB_DIR" >/dev/null
    elif [ -n "$(ls -A "$LAB_DIR" 2>/dev/null)" ]; then
        echo "lab: $LAB_DIR exists and is not a freezer-dr lab: choose another --dir" >&2
        exit 1
    fi
fi
mkdir -p "$LAB_DIR"
LAB_DIR="$(cd "$LAB_DIR" && pwd)"
touch "$LAB_DIR/$MARK"

fail() {
    echo "lab: $*" >&2
    for f in "$LAB_DIR"/logs/bmc-*.log "$LAB_DIR"/logs/smtp.log; do
        [ -s "$f" ] || continue
        echo "---- $(basename "$f")" >&2
        tail -n 15 "$f" >&2
    done
    "$HERE/openstack/down.sh" "$LAB_DIR" >/dev/null 2>&1 || true
    exit 1
}

# ---- OpenStack (its own script stops what it started if it fails).
"$HERE/openstack/up.sh" --dir "$LAB_DIR" --computes "$COMPUTES" >"$LAB_DIR/openstack.txt"
trap 'fail "failed at line $LINENO"' ERR
. "$LAB_DIR/lab.env"
. "$HERE/openstack/common.sh"
PY="$LAB_VENV/bin/python"
SYSPY=/usr/bin/python3   # Debian's interpreter: it has python3-aiosmtpd
secret() { "$PY" -c 'import secrets; print(secrets.token_hex(12))'; }

# ---- One BMC per compute host.
set -- $COMPUTES
read -r -a BMC_PORTS < <("$PY" "$HERE/lab.py" udp-ports $#)
BMC_PASSWORD="$(secret | cut -c1-16)"   # IPMI v2.0 passwords: at most 20 bytes
(umask 077; printf '%s' "$BMC_PASSWORD" >"$LAB_DIR/bmc.pass"; printf '%s' "$OS_PASSWORD" >"$LAB_DIR/keystone.pass")
AUTHS="none md2 md5 straight"
i=0
for h in $COMPUTES; do
    port="${BMC_PORTS[$i]}"
    i=$((i + 1))
    d="$LAB_DIR/bmc/$h"
    mkdir -p "$d/state"
    printf 1 >"$d/power"
    printf '%s' "$port" >"$d/port"
    printf '#!/bin/sh\nexec %q %q %q "$@"\n' "$HERE/bmc-chassis.sh" "$LAB_DIR" "$h" >"$d/chassis"
    chmod +x "$d/chassis"
    cat >"$d/lan.conf" <<EOF
name "$h"
set_working_mc 0x20
startlan 1
  addr 127.0.0.1 $port
  priv_limit admin
  allowed_auths_callback $AUTHS
  allowed_auths_user $AUTHS
  allowed_auths_operator $AUTHS
  allowed_auths_admin $AUTHS
  guid $(printf '%032x' "$port")
endlan
chassis_control "$d/chassis 0x20"
user 2 true "admin" "$BMC_PASSWORD" admin 10 $AUTHS
EOF
    chmod 600 "$d/lan.conf"
    cat >"$d/sim.emu" <<EOF
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
EOF
    start "bmc-$h" ipmi_sim -c "$d/lan.conf" -f "$d/sim.emu" -s "$d/state" -n
done

# ---- SMTP: every mail kept in DIR/maildir (it must not exist beforehand).
read -r SMTP_PORT < <("$PY" "$HERE/openstack/lab.py" ports 1)
start smtp "$SYSPY" -m aiosmtpd -n -l "127.0.0.1:$SMTP_PORT" -c aiosmtpd.handlers.Mailbox "$LAB_DIR/maildir"

# ---- What each host itself answers on the network (its "sshd"): a TCP listener that lives and dies with
# the host's power (lab/bmc-chassis.sh), not with its nova-compute, for the `tcp` monitor's second opinion.
read -r -a HOST_PORTS < <("$PY" "$HERE/openstack/lab.py" ports "$(echo $COMPUTES | wc -w)")
i=0
for h in $COMPUTES; do
    printf '%s' "${HOST_PORTS[$i]}" >"$LAB_DIR/bmc/$h/host-port"
    i=$((i + 1))
    "$HERE/bmc-chassis.sh" "$LAB_DIR" "$h" 0x20 host-up
done

# ---- Wait for them: every BMC answers ipmitool, the SMTP server accepts connections.
for h in $COMPUTES; do
    ok=""
    for _ in $(seq 1 100); do
        if IPMI_PASSWORD="$BMC_PASSWORD" ipmitool -I lanplus -H 127.0.0.1 -p "$(cat "$LAB_DIR/bmc/$h/port")" \
            -U admin -E -C 3 -N 1 -R 1 chassis power status 2>/dev/null | grep -q "is on"; then
            ok=yes
            break
        fi
        alive "bmc-$h" || fail "ipmi_sim for $h exited"
        sleep 0.2
    done
    [ -n "$ok" ] || fail "the BMC of $h did not answer ipmitool"
done
for h in $COMPUTES; do
    for _ in $(seq 1 100); do
        "$SYSPY" -c "import socket; socket.create_connection(('127.0.0.1', $(cat "$LAB_DIR/bmc/$h/host-port")), 2).close()" \
            2>/dev/null && break
        alive "host-$h" || fail "the host listener of $h exited"
        sleep 0.2
    done
done
for _ in $(seq 1 100); do
    "$SYSPY" -c "import smtplib; smtplib.SMTP('127.0.0.1', $SMTP_PORT, timeout=2).quit()" 2>/dev/null && break
    alive smtp || fail "the SMTP server exited"
    sleep 0.2
done

# ---- The lab's users: the admin may boot servers in the demo and other projects.
"$PY" "$HERE/lab.py" setup

# ---- freezer-dr's config.
OPERATORS_TO="ops@cloud.lab"
OPERATORS_CC="oncall@cloud.lab"
mkdir -p "$LAB_DIR/freezer-dr"
{
    cat <<EOF
# freezer-dr config for the local lab ($LAB_DIR), written by lab/up.sh.
# Short intervals so a recovery takes about a minute; Nova's service_down_time is 10 s here.

[recovery]
interval = "2s"          # between two observations
strikes = 3              # consecutive down observations before fencing
call_timeout = "30s"
step_retry = "5s"

[recovery.fencing]
poll_interval = "1s"
confirm_timeout = "30s"

[recovery.storm]
max_hosts = $STORM_HOSTS          # one of three hosts may be fenced; two down at once is a storm
max_fraction = 0.34
max_new_fencings_per_cycle = 1
cooldown = "20s"

[recovery.evacuation]
concurrency = 2
poll_interval = "1s"
retry_delay = "5s"
timeout = "3m"

[recovery.policy]
# The fake virt driver's servers boot from an image (no volume): evacuate them anyway (Nova rebuilds
# them from their image on the new host).
local_root_disk = "evacuate"

[journal]
path = "$LAB_DIR/freezer-dr/journal.redb"

[monitor]
type = "nova"
heartbeat_timeout = "10s"
[monitor.auth]
auth_url = "$OS_AUTH_URL"
username = "admin"
password = { file = "$LAB_DIR/keystone.pass" }
project_name = "admin"
region_name = "RegionOne"

[[fencer]]
type = "ipmi"
username = "admin"
password = { file = "$LAB_DIR/bmc.pass" }
timeout = "5s"
EOF
    for h in $COMPUTES; do
        printf '[fencer.hosts.%s]\naddress = "127.0.0.1"\nport = %s\n' "$h" "$(cat "$LAB_DIR/bmc/$h/port")"
    done
    cat <<EOF

[evacuator]
type = "nova"
[evacuator.auth]
auth_url = "$OS_AUTH_URL"
username = "admin"
password = { file = "$LAB_DIR/keystone.pass" }
project_name = "admin"
region_name = "RegionOne"

[directory]
type = "keystone"
cache_ttl = "10s"
[directory.auth]
auth_url = "$OS_AUTH_URL"
username = "admin"
password = { file = "$LAB_DIR/keystone.pass" }
project_name = "admin"

[[notifier]]
type = "email"
server = "smtp://127.0.0.1:$SMTP_PORT"
starttls = "never"       # a lab server on loopback; use "required" on a real network
from = "freezer-dr <freezer-dr@cloud.lab>"
to = ["$OPERATORS_TO"]
cc = ["$OPERATORS_CC"]
cloud = "freezer-dr lab"
operator_phases = ["finished"]
timeout = "10s"
EOF
} >"$LAB_DIR/freezer-dr.toml"

BMC_LIST=""
for h in $COMPUTES; do BMC_LIST="$BMC_LIST $h=$(cat "$LAB_DIR/bmc/$h/port")"; done
cat >>"$LAB_DIR/lab.env" <<EOF
export LAB_SMTP_PORT=$SMTP_PORT
export LAB_BMCS="${BMC_LIST# }"
export LAB_OPERATORS="$OPERATORS_TO $OPERATORS_CC"
export FREEZER_DR_CONFIG=$LAB_DIR/freezer-dr.toml
EOF
trap - ERR
cat <<EOF
freezer-dr lab is up in $LAB_DIR
$(sed -n '2,4p' "$LAB_DIR/openstack.txt")
  BMCs      ipmi_sim on 127.0.0.1 (UDP): ${BMC_LIST# }   user admin, password in $LAB_DIR/bmc.pass
            IPMI_PASSWORD=\$(cat $LAB_DIR/bmc.pass) ipmitool -I lanplus -H 127.0.0.1 -p PORT -U admin -E chassis power status
  SMTP      127.0.0.1:$SMTP_PORT, every mail kept in $LAB_DIR/maildir/new
  config    $LAB_DIR/freezer-dr.toml   (export FREEZER_DR_CONFIG=$LAB_DIR/freezer-dr.toml)
  env       . $LAB_DIR/lab.env
  stop      $HERE/down.sh --purge $LAB_DIR
EOF
