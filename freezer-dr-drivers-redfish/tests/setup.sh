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
TOOLS="$(cd "$(dirname "$0")/../../tools" && pwd)"

# Pinned to the versions the tests were written against; bump together.
PY_PACKAGES=("sushy-tools==2.2.0" "libvirt-python==12.8.0")
"$TOOLS/venv-install.sh" "$VENV" "$PYTHON" .freezer-dr-redfish-installed "redfish tests: sushy-tools installed" \
    "${PY_PACKAGES[@]}"
