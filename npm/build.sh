#!/usr/bin/env bash
# Builds the npm packages: one package per platform holding the binary
# (@agentferry/<platform>, with `os` and `cpu` so npm installs only the matching one), and the
# `agentferry` package whose launcher runs it. Writes `npm pack` tarballs into OUT; publishing
# them (`npm publish <tarball>`, platform packages first) is a separate, manual step.
#
#   npm/build.sh [--out DIR] [PLATFORM...]
#
# PLATFORM is one of the keys below; the default is this machine's. Each is cross-compiled with
# `cargo build --release --target TRIPLE` (the target must be installed with rustup, plus a
# linker for it); a release pipeline runs this once per runner (Linux, macOS, Windows) and
# publishes everything with the same version. Only linux-x64 is built on the development VM.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/target/npm"

# platform -> Rust target triple. A `-musl` platform is a static build (needs the target from
# rustup and musl-gcc, Debian's musl-tools): npm installs it on musl systems by its `libc`
# field, and it runs on any Linux.
declare -A TRIPLE=(
    [linux-x64]=x86_64-unknown-linux-gnu
    [linux-x64-musl]=x86_64-unknown-linux-musl
    [linux-arm64]=aarch64-unknown-linux-gnu
    [linux-arm64-musl]=aarch64-unknown-linux-musl
    [darwin-x64]=x86_64-apple-darwin
    [darwin-arm64]=aarch64-apple-darwin
    [win32-x64]=x86_64-pc-windows-msvc
)

platforms=()
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) [ -n "${TRIPLE[$1]:-}" ] || { echo "unknown platform $1 (known: ${!TRIPLE[*]})" >&2; exit 2; }
           platforms+=("$1"); shift ;;
    esac
done
if [ ${#platforms[@]} -eq 0 ]; then
    case "$(uname -s)-$(uname -m)" in
        Linux-x86_64) platforms=(linux-x64 linux-x64-musl) ;;
        Linux-aarch64) platforms=(linux-arm64 linux-arm64-musl) ;;
        Darwin-x86_64) platforms=(darwin-x64) ;;
        Darwin-arm64) platforms=(darwin-arm64) ;;
        *) echo "no npm platform for $(uname -s)-$(uname -m); name one" >&2; exit 2 ;;
    esac
fi

version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
mkdir -p "$out"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

for platform in "${platforms[@]}"; do
    triple="${TRIPLE[$platform]}"
    IFS=- read -r os cpu libc <<<"$platform"
    libc_field=""
    if [ "$os" = linux ]; then
        libc_field="
  \"libc\": [\"${libc:-glibc}\"],"
    fi
    exe=agentferry
    [ "$os" = win32 ] && exe=agentferry.exe
    host_triple="$(rustc -vV | sed -n 's/^host: //p')"
    if [ "$triple" = "$host_triple" ]; then
        # The host build: the same artifact `cargo build --release` makes, so tests reuse it.
        cargo build --release --locked --bin agentferry --manifest-path "$root/Cargo.toml"
        binary="$target_dir/release/$exe"
    else
        cargo build --release --locked --bin agentferry --target "$triple" --manifest-path "$root/Cargo.toml"
        binary="$target_dir/$triple/release/$exe"
    fi
    dir="$stage/$platform"
    mkdir -p "$dir/bin"
    cp "$binary" "$dir/bin/$exe"
    cat > "$dir/package.json" <<JSON
{
  "name": "@agentferry/$platform",
  "version": "$version",
  "description": "The agentferry binary for $platform (installed by the agentferry package)",
  "license": "MIT OR Apache-2.0",
  "repository": { "type": "git", "url": "https://github.com/agentferry/agentferry" },
  "os": ["$os"],
  "cpu": ["$cpu"],$libc_field
  "files": ["bin"],
  "preferUnplugged": true
}
JSON
    npm pack --silent --pack-destination "$out" "$dir" >/dev/null
    echo "$out/agentferry-$platform-$version.tgz"
done

# The launcher package, at the same version, pinning every platform package to it.
cp -r "$root/npm/agentferry" "$stage/agentferry"
node -e '
    const fs = require("fs"), file = process.argv[1], version = process.argv[2];
    const pkg = JSON.parse(fs.readFileSync(file, "utf8"));
    pkg.version = version;
    for (const name of Object.keys(pkg.optionalDependencies)) pkg.optionalDependencies[name] = version;
    fs.writeFileSync(file, JSON.stringify(pkg, null, 2) + "\n");
' "$stage/agentferry/package.json" "$version"
npm pack --silent --pack-destination "$out" "$stage/agentferry" >/dev/null
echo "$out/agentferry-$version.tgz"
