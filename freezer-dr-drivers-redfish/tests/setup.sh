#!/usr/bin/env bash
# Installs what the Redfish fencer's tests need: sushy-tools (sushy-emulator) and libvirt-python (its
# libvirt backend, built against Debian's libvirt-dev) from PyPI into a venv OUTSIDE the repository.
# libvirtd, virsh, openssl and curl come from Debian (.ci/run installs them).
#
#   freezer-dr-drivers-redfish/tests/setup.sh   # venv in $FREEZER_DR_REDFISH_VENV (default /opt/freezer-dr-redfish-venv)
#
# Idempotent: a second run checks a stamp and returns at once.
set -euo pipefail

VENV="${FREEZER_DR_REDFISH_VENV:-/opt/freezer-dr-redfish-venv}"
PYTHON="${FREEZER_DR_REDFISH_PYTHON:-/usr/bin/python3}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Pinned to the versions the tests were written against; bump together.
PY_PACKAGES=("sushy-tools==2.2.0" "libvirt-python==12.8.0")
stamp="$VENV/.freezer-dr-redfish-installed"
want="$(printf '%s\n' "${PY_PACKAGES[@]}")"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
$SUDO mkdir -p "$(dirname "$VENV")"
if [ ! -x "$VENV/bin/python" ]; then
    $SUDO "$PYTHON" -m venv "$VENV"
fi
$SUDO "$VENV/bin/pip" install --quiet "${PY_PACKAGES[@]}"
printf '%s\n' "${PY_PACKAGES[@]}" | $SUDO tee "$stamp" >/dev/null
echo "redfish tests: sushy-tools installed into $VENV"
