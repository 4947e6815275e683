#!/usr/bin/env bash
# Builds the Debian package target/debian/freezer-dr_<version>_amd64.deb with cargo-deb (installed with
# `cargo install --locked cargo-deb` if missing): the release binary with the default features (every
# production driver, no `testing` drivers), then what the binary itself writes for the package (the
# example config `freezer-dr example`, the man pages `freezer-dr man`, the completions `freezer-dr
# completions`), then `cargo deb --no-build` with freezer-dr-cli/Cargo.toml's [package.metadata.deb].
# Prints the .deb's path last.
#
#   tools/build-deb.sh
set -euo pipefail

cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-deb.sh: installing cargo-deb (cargo install --locked cargo-deb)" >&2
    cargo install --locked cargo-deb
fi

# Where Cargo puts its output (CARGO_TARGET_DIR and .cargo/config.toml included).
target_dir=$(cargo metadata --format-version 1 --no-deps --locked \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
version=$(cargo metadata --format-version 1 --no-deps --locked | python3 -c \
    'import json, sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "freezer-dr-cli"))')

cargo build --release --locked -p freezer-dr-cli
bin="$target_dir/release/freezer-dr"

# A fake fencer in a production package would let a config "fence" nothing: refuse to package one.
if "$bin" drivers | awk '$2 == "testing" { found = 1 } END { exit !found }'; then
    echo "build-deb.sh: $bin links the \`testing\` drivers; the package must not (feature \`testing\` is on?)" >&2
    exit 1
fi

# The paths [package.metadata.deb] names as target/release/package/... (cargo-deb maps target/release/).
out="$target_dir/release/package"
rm -rf "$out"
mkdir -p "$out/man" "$out/completions"
"$bin" example >"$out/freezer-dr.toml"
"$bin" man "$out/man"
gzip -9n "$out"/man/*.1
"$bin" completions bash >"$out/completions/freezer-dr"
"$bin" completions zsh >"$out/completions/_freezer-dr"
"$bin" completions fish >"$out/completions/freezer-dr.fish"

mkdir -p "$target_dir/debian"
deb="$target_dir/debian/freezer-dr_${version}_amd64.deb"
rm -f "$deb"
cargo deb --locked -p freezer-dr-cli --no-build --output "$deb" >&2
test -f "$deb"
echo "$deb"
