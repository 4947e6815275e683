#!/usr/bin/env bash
# Installs what the freezer-dr lab needs on Debian 12: the OpenStack lab (lab/openstack/install.sh:
# MariaDB and RabbitMQ from Debian, Keystone, Placement and Nova from PyPI into a venv outside the
# repository), OpenIPMI's BMC simulator and ipmitool, and aiosmtpd (the SMTP server that keeps what it
# receives in a Maildir), and what building freezer-dr with its default features needs.
#
#   lab/install.sh
#
# Idempotent: a second run checks and returns in a second or two.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

PACKAGES=(openipmi ipmitool python3-aiosmtpd procps
    # to build freezer-dr with its default features (libvirt, etcd)
    build-essential pkg-config libvirt-dev protobuf-compiler libprotobuf-dev)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update
    $SUDO env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"
fi
"$HERE/openstack/install.sh"
