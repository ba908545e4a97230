#!/usr/bin/env bash
# README's main job: with the rbuild built by `cargo build --release`, make the busybox base
# image from Debian's busybox-static (rbuild builds it FROM scratch), build the bundled
# multi-stage example (testdata/examples/hello) and run the result with `rbuild run`.
# State goes to RBUILD_ROOT (default: /tmp/rbuild-example); run as root (namespaces, mounts).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/packages.sh
missing=()
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
install_missing "the example" "${missing[@]}"

RBUILD=${RBUILD:-$(pwd)/target/release/rbuild}
export RBUILD_ROOT=${RBUILD_ROOT:-/tmp/rbuild-example}
base_ctx=$(mktemp -d /tmp/rbuild-busybox-ctx.XXXXXX)
trap 'rm -rf "$base_ctx"' EXIT
cp /bin/busybox "$base_ctx/busybox"

echo "== building the base image rbuild-example/busybox:1 from busybox-static"
"$RBUILD" build -t rbuild-example/busybox:1 -f testdata/examples/busybox/Dockerfile "$base_ctx"
echo "== building the multi-stage example (testdata/examples/hello)"
"$RBUILD" build -t rbuild-example/hello:1 testdata/examples/hello
echo "== running it: rbuild run rbuild-example/hello:1"
"$RBUILD" run rbuild-example/hello:1
