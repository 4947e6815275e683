#!/usr/bin/env bash
# Installs pinned PyPI packages into a venv OUTSIDE the repository (created with PYTHON if missing), once:
# a stamp in the venv records what was installed, and a second run with the same list returns at once.
#
#   tools/venv-install.sh VENV PYTHON STAMP-NAME LABEL PACKAGE...
#   (set UPGRADE_PIP=1 to upgrade pip, setuptools and wheel first)
set -euo pipefail
VENV="$1" PYTHON="$2" STAMP_NAME="$3" LABEL="$4"
shift 4
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

stamp="$VENV/$STAMP_NAME"
want="$(printf '%s\n' "$@")"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
$SUDO mkdir -p "$(dirname "$VENV")"
if [ ! -x "$VENV/bin/python" ]; then
    $SUDO "$PYTHON" -m venv "$VENV"
fi
if [ "${UPGRADE_PIP:-}" = "1" ]; then
    $SUDO "$VENV/bin/pip" install --quiet --upgrade pip setuptools wheel
fi
$SUDO "$VENV/bin/pip" install --quiet "$@"
printf '%s\n' "$@" | $SUDO tee "$stamp" >/dev/null
echo "$LABEL into $VENV"
