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
# What the lab needs, and what building freezer-dr with its default features (libvirt, etcd) needs.
"$HERE/../tools/apt-install.sh" openipmi ipmitool python3-aiosmtpd procps \
    build-essential pkg-config libvirt-dev protobuf-compiler libprotobuf-dev
"$HERE/openstack/install.sh"
