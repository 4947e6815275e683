#!/usr/bin/env bash
# Installs the Debian packages named that are not installed yet (apt, with sudo when not root); a no-op
# when all are. --no-start: apt must not start the services it installs (they would listen on 0.0.0.0 as
# system services): a policy-rc.d that refuses every start is kept in place while installing.
#
#   tools/apt-install.sh [--no-start] PACKAGE...
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
NO_START=""
if [ "${1:-}" = "--no-start" ]; then NO_START=yes; shift; fi

missing=()
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ "${#missing[@]}" -gt 0 ] || exit 0

restore_policy=""
# Put the machine's policy back however this ends (a failed apt-get included): a refusing policy-rc.d left
# behind would stop every service install on this machine from starting its service.
restore() {
    case "$restore_policy" in
        yes) $SUDO mv /usr/sbin/policy-rc.d.freezer-dr /usr/sbin/policy-rc.d ;;
        remove) $SUDO rm -f /usr/sbin/policy-rc.d ;;
    esac
}
trap restore EXIT
if [ -n "$NO_START" ]; then
    if [ -e /usr/sbin/policy-rc.d ] && ! grep -q "exit 101" /usr/sbin/policy-rc.d; then
        $SUDO cp /usr/sbin/policy-rc.d /usr/sbin/policy-rc.d.freezer-dr
        restore_policy="yes"
    fi
    if [ ! -e /usr/sbin/policy-rc.d ] || [ -n "$restore_policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        [ -n "$restore_policy" ] || restore_policy="remove"
    fi
fi
$SUDO apt-get -o DPkg::Lock::Timeout=600 update
$SUDO env DEBIAN_FRONTEND=noninteractive \
    apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"
