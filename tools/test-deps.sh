#!/usr/bin/env bash
# Installs everything the tests need on Debian 12 (the build's C libraries and protoc, the real peers the
# tests start on 127.0.0.1: ipmi_sim, libvirtd, etcd, an SMTP server, sushy-emulator, the OpenStack lab).
# Debian packages through apt (with sudo when not root); PyPI packages into venvs under /opt, never into
# the repository. Idempotent: a second run checks and returns in a few seconds.
#
#   tools/test-deps.sh
set -euo pipefail

cd "$(dirname "$0")/.."

PACKAGES=(build-essential pkg-config
    # freezer-dr-drivers-libvirt: libvirt's C library to build; libvirtd, virsh and SASL (saslpasswd2, DIGEST-MD5) for its tests.
    libvirt-dev libvirt-daemon libvirt-clients sasl2-bin libsasl2-modules
    openipmi ipmitool  # freezer-dr-drivers-ipmi: ipmi_sim (the BMC the tests fence) and the reference client
    # freezer-dr-email: the real SMTP server its tests start, and test certificates.
    python3-aiosmtpd openssl
    # HA mode (freezer-dr-core feature etcd): protoc and the protobuf headers to build etcd-client; the etcd
    # server and etcdctl the HA tests start and drive.
    protobuf-compiler libprotobuf-dev etcd-server etcd-client
    # freezer-dr-drivers-redfish: the venv for sushy-emulator (and libvirt-python, built against
    # libvirt-dev), curl to read the emulator back; libvirtd and openssl are listed above.
    python3-venv python3-dev curl
    # tools/package-check.sh: renders the installed man pages, verifies the installed systemd unit.
    man-db systemd
)
bash tools/apt-install.sh "${PACKAGES[@]}"
# A real Prometheus (and promtool) for the tests: freezer-dr-prometheus's monitor tests and
# freezer-dr-metrics' scrape of the daemon and its alert rules. Never started by apt: Debian's package
# would run a service on 0.0.0.0.
bash tools/apt-install.sh --no-start prometheus

# ---- The lab (lab/install.sh): the OpenStack lab of freezer-dr-nova (MariaDB + RabbitMQ from Debian,
# never started by apt; keystone, openstack-placement and nova from PyPI into a venv outside the
# repository), plus OpenIPMI, ipmitool and aiosmtpd for the end-to-end test (freezer-dr-cli/tests/e2e.rs).
# The tests start the lab themselves and fail if it cannot start.
bash lab/install.sh
# ---- end lab

# freezer-dr-drivers-redfish: sushy-tools (sushy-emulator) and libvirt-python into a venv outside the
# repository (its tests start the emulator themselves and fail if it cannot start).
bash freezer-dr-drivers-redfish/tests/setup.sh
