#!/usr/bin/env bash
# CI check of the Debian package: builds it (tools/build-deb.sh), installs it for real on this machine
# with `dpkg -i` (as root: CI machines are throwaway; the maintainer scripts run as they would on a
# controller), checks what was installed, removes and reinstalls it keeping an edited conffile, purges it,
# and puts the machine back (the package purged, the freezer-dr user deleted if this script made it).
# Needs root, man-db and systemd (tools/test-deps.sh installs them). Refuses to run where freezer-dr is
# installed already.
#
#   tools/package-check.sh
set -euo pipefail

cd "$(dirname "$0")/.."

passed=0
failed=0
phase_start=$SECONDS
ok() { passed=$((passed + 1)); echo "package-check: ok: $*"; }
fail() { failed=$((failed + 1)); echo "package-check: FAILED: $*" >&2; }
die() { echo "package-check: $*" >&2; exit 1; }
# `check DESCRIPTION COMMAND...`: one check, its output shown only when it fails.
check() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then ok "$what"; else fail "$what"$'\n'"$out"; fi
}
timed() { echo "package-check: $1 took $((SECONDS - phase_start)) s"; phase_start=$SECONDS; }

[ "$(id -u)" = 0 ] || die "needs root (dpkg -i); run it on a throwaway machine such as CI's"
for tool in dpkg dpkg-deb man systemd-analyze runuser adduser deluser; do
    command -v "$tool" >/dev/null || die "$tool is missing: run tools/test-deps.sh"
done
if dpkg-query -W -f='${Status}' freezer-dr 2>/dev/null | grep -qv 'not-installed'; then
    die "the freezer-dr package is installed here already; this check installs and purges it"
fi

user_existed=false
getent passwd freezer-dr >/dev/null && user_existed=true
scratch=$(mktemp -d)
cleanup() {
    dpkg --purge freezer-dr >/dev/null 2>&1 || true
    rm -f /etc/freezer-dr/keystone.pass
    rmdir /etc/freezer-dr 2>/dev/null || true
    if ! $user_existed && getent passwd freezer-dr >/dev/null; then
        deluser --system --quiet freezer-dr >/dev/null 2>&1 || true
        getent group freezer-dr >/dev/null && delgroup --system --quiet freezer-dr >/dev/null 2>&1 || true
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT

# ---- Build.
deb=$(bash tools/build-deb.sh | tail -n 1)
version=$(dpkg-deb -f "$deb" Version)
[[ "$(basename "$deb")" == "freezer-dr_${version}_amd64.deb" ]] || die "unexpected package name $deb"
timed "building $(basename "$deb") ($(du -h "$deb" | cut -f1))"

# ---- Install.
conf=/etc/freezer-dr/freezer-dr.toml
unit=/lib/systemd/system/freezer-dr.service
if ! out=$(dpkg -i "$deb" 2>&1); then die "dpkg -i $deb failed:"$'\n'"$out"; fi
ok "dpkg -i $(basename "$deb")"
for f in /usr/bin/freezer-dr "$unit" "$conf" /usr/share/man/man1/freezer-dr.1.gz \
    /usr/share/man/man1/freezer-dr-run.1.gz /usr/share/bash-completion/completions/freezer-dr \
    /usr/share/zsh/vendor-completions/_freezer-dr /usr/share/fish/vendor_completions.d/freezer-dr.fish; do
    check "installed $f" test -s "$f"
done
check "$conf is a conffile" \
    bash -c "dpkg-query -W -f='\${Conffiles}' freezer-dr | grep -q '^ $conf '"
check "system user freezer-dr, home /var/lib/freezer-dr, no login shell" bash -c '
    IFS=: read -r _ _ uid _ _ home shell < <(getent passwd freezer-dr)
    [ "$uid" -lt 1000 ] && [ "$home" = /var/lib/freezer-dr ] && [[ "$shell" == */nologin || "$shell" == */false ]]'
check "$conf: freezer-dr:freezer-dr 600" test "$(stat -c '%U:%G %a' "$conf")" = "freezer-dr:freezer-dr 600"
check "/etc/freezer-dr: root:freezer-dr 750" test "$(stat -c '%U:%G %a' /etc/freezer-dr)" = "root:freezer-dr 750"
check "/var/lib/freezer-dr: freezer-dr:freezer-dr 700" \
    test "$(stat -c '%U:%G %a' /var/lib/freezer-dr)" = "freezer-dr:freezer-dr 700"
check "the shipped config is the binary's own example" cmp -s "$conf" <(/usr/bin/freezer-dr example)

# ---- The binary: its version, and no `testing` driver.
version_text=$(/usr/bin/freezer-dr --version)
check "--version starts with freezer-dr $version" test "$(head -n 1 <<<"$version_text")" = "freezer-dr $version"
check "--version lists the production drivers" bash -c '
    grep -qx "fencer: *ipmi (freezer-dr-drivers-ipmi), libvirt (freezer-dr-drivers-libvirt), redfish (freezer-dr-drivers-redfish)" <<<"$1" &&
    grep -qx "monitor: *nova (freezer-dr-nova), prometheus (freezer-dr-prometheus), tcp (freezer-dr-tcp)" <<<"$1" && grep -qx "ha: *etcd" <<<"$1"' _ "$version_text"
check "--version lists no testing driver" bash -c '! grep -qw testing <<<"$1"' _ "$version_text"
check "drivers lists no testing driver" bash -c '! /usr/bin/freezer-dr drivers | awk "\$2 == \"testing\"" | grep -q .'
printf '[journal]\npath = "%s/j.redb"\n[monitor]\ntype = "testing"\n[[fencer]]\ntype = "testing"\n[evacuator]\ntype = "testing"\n' \
    "$scratch" >"$scratch/testing.toml"
check "a config with type = \"testing\" is refused" bash -c '
    out=$(/usr/bin/freezer-dr validate --config "$1" 2>&1); rc=$?
    [ "$rc" = 1 ] && grep -q "unknown monitor type \"testing\"" <<<"$out" || { echo "exit $rc: $out"; exit 1; }' \
    _ "$scratch/testing.toml"

# ---- Man pages: every one renders without a warning.
for page in /usr/share/man/man1/freezer-dr*.1.gz; do
    check "man -l $(basename "$page")" bash -c '
        warnings=$(MANWIDTH=80 man --warnings -l "$1" 2>&1 >/dev/null) && [ -z "$warnings" ] || { echo "$warnings"; exit 1; }' \
        _ "$page"
done
check "man freezer-dr finds the installed page" bash -c 'man -w freezer-dr | grep -q /usr/share/man/man1/freezer-dr.1.gz'

# ---- Completions: bash loads the script and completes the subcommands.
check "bash completion registers and completes subcommands" bash -c '
    source /usr/share/bash-completion/completions/freezer-dr
    complete -p freezer-dr >/dev/null
    COMP_WORDS=(freezer-dr val); COMP_CWORD=1; COMP_LINE="freezer-dr val"; COMP_POINT=${#COMP_LINE}
    _freezer__dr freezer-dr val freezer-dr
    printf "%s\n" "${COMPREPLY[@]}" | grep -qx validate'

# ---- validate on the shipped example, as the daemon's user (it reads the 0600 config as its owner).
# As shipped it names credentials that are not there yet: it must fail for exactly that reason.
validate() { (cd / && runuser -u freezer-dr -- env "$@" /usr/bin/freezer-dr validate --config "$conf" 2>&1); }
check "validate of the untouched example names the missing clouds.yaml entry" bash -c '
    out=$(cd / && runuser -u freezer-dr -- env -u OS_CLOUD -u OS_CLIENT_CONFIG_FILE /usr/bin/freezer-dr validate --config "$1" 2>&1) && exit 1
    grep -q "cloud \"mycloud\" not found in clouds.yaml" <<<"$out" || { echo "$out"; exit 1; }' _ "$conf"
# With what it names in place (no service is reached without --connect) it passes.
cat >"$scratch/clouds.yaml" <<'YAML'
clouds:
  mycloud:
    auth:
      auth_url: https://keystone.example.org:5000/v3
      username: freezer-dr
      password: example-password
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
YAML
chmod 755 "$scratch" && chmod 644 "$scratch/clouds.yaml"
install -o freezer-dr -g freezer-dr -m 0600 /dev/null /etc/freezer-dr/keystone.pass
echo example-password >/etc/freezer-dr/keystone.pass
if out=$(validate OS_CLIENT_CONFIG_FILE="$scratch/clouds.yaml" FREEZER_DR_APP_CRED_SECRET=example-secret); then
    grep -q "^$conf: OK" <<<"$out" && ok "validate of the example with its credentials in place" ||
        fail "validate printed no OK line:"$'\n'"$out"
else
    fail "validate of the example with its credentials in place:"$'\n'"$out"
fi

# ---- The unit, as installed (its ExecStart binary and its man: pages exist now).
check "systemd-analyze verify $unit" bash -c '
    out=$(systemd-analyze verify "$1" 2>&1) && [ -z "$out" ] || { echo "$out"; exit 1; }' _ "$unit"
check "the unit runs the real command line" bash -c '
    exec_start=$(sed -n "s/^ExecStart=//p" "$1")
    [ "$exec_start" = "/usr/bin/freezer-dr run --config /etc/freezer-dr/freezer-dr.toml" ] &&
    /usr/bin/freezer-dr run --help | grep -q -- "--config"' _ "$unit"
if security=$(systemd-analyze security --offline=yes --threshold=30 "$unit" 2>&1); then
    ok "systemd-analyze security: $(tail -n 1 <<<"$security" | sed 's/^→ //')"
else
    fail "systemd-analyze security above 3.0:"$'\n'"$security"
fi
timed "checking the installed package"

# ---- Remove (the conffile and the journal stay), reinstall (an edited conffile is kept), purge.
echo "# edited by package-check" >>"$conf"
install -o freezer-dr -g freezer-dr -m 0600 /dev/null /var/lib/freezer-dr/journal.redb
check "dpkg -r freezer-dr" dpkg -r freezer-dr
check "removed: the binary and the unit are gone" bash -c '! test -e /usr/bin/freezer-dr && ! test -e "$1"' _ "$unit"
check "removed: the conffile, the journal and the user stay" bash -c '
    grep -q "edited by package-check" "$1" && test -e /var/lib/freezer-dr/journal.redb && getent passwd freezer-dr >/dev/null &&
    dpkg-query -W -f="\${Status}" freezer-dr | grep -q config-files' _ "$conf"
check "reinstall over the kept conffile (no prompt)" dpkg -i "$deb" </dev/null
check "reinstalled: the edited conffile is kept, freezer-dr:freezer-dr 600" bash -c '
    grep -q "edited by package-check" "$1" && test "$(stat -c "%U:%G %a" "$1")" = "freezer-dr:freezer-dr 600"' _ "$conf"
check "dpkg --purge freezer-dr" dpkg --purge freezer-dr
check "purged: conffile, journal and package record gone; the administrator's file left" bash -c '
    ! test -e "$1" && ! test -e /var/lib/freezer-dr && test -e /etc/freezer-dr/keystone.pass &&
    ! dpkg-query -W freezer-dr >/dev/null 2>&1' _ "$conf"
timed "remove, reinstall and purge"

echo "package-check: $passed passed, $failed failed"
[ "$failed" = 0 ]
