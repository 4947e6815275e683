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
TOOLS="$(cd "$(dirname "$0")/../../tools" && pwd)"

"$TOOLS/apt-install.sh" --no-start mariadb-server mariadb-client rabbitmq-server python3-venv python3-dev procps

# Pinned to the series the lab was verified with; bump together.
PY_PACKAGES=(
    "keystone==30.0.0"
    "openstack-placement==16.0.0"
    "nova==34.0.0"
    "gunicorn"
    "PyMySQL"
)
UPGRADE_PIP=1 "$TOOLS/venv-install.sh" "$VENV" "$PYTHON" .freezer-dr-lab-installed "lab: installed" "${PY_PACKAGES[@]}"
