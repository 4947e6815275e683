#!/usr/bin/env bash
# Installs what the local OpenStack lab needs: MariaDB and RabbitMQ from Debian (never started by apt), and
# keystone, openstack-placement and nova from PyPI into a venv OUTSIDE the repository.
#
#   lab/openstack/install.sh            # venv in $FREEZER_DR_LAB_VENV (default /opt/freezer-dr-lab/venv)
#
# Idempotent: a second run checks and returns in a second or two.
set -euo pipefail

VENV="${FREEZER_DR_LAB_VENV:-/opt/freezer-dr-lab/venv}"
PYTHON="${FREEZER_DR_LAB_PYTHON:-/usr/bin/python3}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

PACKAGES=(mariadb-server mariadb-client rabbitmq-server python3-venv python3-dev procps)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    # apt must not start the services (they would listen on 0.0.0.0 as system services): a policy-rc.d
    # that refuses every start is kept in place while installing.
    restore_policy=""
    if [ -e /usr/sbin/policy-rc.d ]; then
        if ! grep -q "exit 101" /usr/sbin/policy-rc.d; then
            $SUDO cp /usr/sbin/policy-rc.d /usr/sbin/policy-rc.d.freezer-dr-lab
            restore_policy="yes"
        fi
    fi
    if [ ! -e /usr/sbin/policy-rc.d ] || [ -n "$restore_policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        [ -n "$restore_policy" ] || restore_policy="remove"
    fi
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update
    $SUDO env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"
    case "$restore_policy" in
        yes) $SUDO mv /usr/sbin/policy-rc.d.freezer-dr-lab /usr/sbin/policy-rc.d ;;
        remove) $SUDO rm -f /usr/sbin/policy-rc.d ;;
    esac
fi

# Pinned to the series the lab was verified with; bump together.
PY_PACKAGES=(
    "keystone==30.0.0"
    "openstack-placement==16.0.0"
    "nova==34.0.0"
    "gunicorn"
    "PyMySQL"
)
stamp="$VENV/.freezer-dr-lab-installed"
want="$(printf '%s\n' "${PY_PACKAGES[@]}")"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
$SUDO mkdir -p "$(dirname "$VENV")"
if [ ! -x "$VENV/bin/python" ]; then
    $SUDO "$PYTHON" -m venv "$VENV"
fi
$SUDO "$VENV/bin/pip" install --quiet --upgrade pip setuptools wheel
$SUDO "$VENV/bin/pip" install --quiet "${PY_PACKAGES[@]}"
printf '%s\n' "${PY_PACKAGES[@]}" | $SUDO tee "$stamp" >/dev/null
echo "lab: installed into $VENV"
