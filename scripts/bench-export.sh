#!/usr/bin/env bash
# Export benchmark (issue 5, point 16, "export uncompressed docker archive vs docker save"):
# the shared harness's 20k-file context scenario, built by BuildKit (dockerd) and by rbuild,
# then exported as an uncompressed docker archive by each, alternating, in one run.
#
# Usage: scripts/bench-export.sh [ROUNDS]   (root; after `cargo build --release`; dockerd
#   running as ../shared/bench/README.md says, the harness's registry started and its
#   scenarios generated: `cd ../shared/bench && ./registry.sh start && ./gen.sh`)
#
# Per round:
# - docker save -o FILE IMAGE (BuildKit's image, built once before the rounds);
# - rbuild build -o type=docker,compression=uncompressed,dest=FILE (a cached build + export);
# - rbuild save NAME -o FILE of an image that was just rebuilt with one file changed, so the
#   changed layer's blob is made from its snapshot first (an image only named keeps its layers
#   as recipes).
# `sync` before each. Medians of wall seconds; ratio = rbuild / docker save.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C
RBUILD=${RBUILD:-$(pwd)/target/release/rbuild}
DOCKER=${DOCKER:-/usr/bin/docker}
CTX=${CTX:-/tmp/rbuild-bench/context}
BASE_REF=${BASE_REF:-127.0.0.1:5000/bench/busybox:1}
rounds=${1:-5}
[ -x "$RBUILD" ] || { echo "bench-export: build first: cargo build --release" >&2; exit 1; }
[ -f "$CTX/Dockerfile" ] || { echo "bench-export: no scenario at $CTX (run ../shared/bench/gen.sh)" >&2; exit 1; }
"$DOCKER" info >/dev/null 2>&1 || { echo "bench-export: dockerd is not running (see ../shared/bench/README.md)" >&2; exit 1; }

work=$(mktemp -d /tmp/rbuild-bench-export.XXXXXX)
root=$work/state
original=$(mktemp)
cp -p "$CTX/changeme.txt" "$original"
cleanup() {
  cp -p "$original" "$CTX/changeme.txt"
  rm -f "$original"
  "$DOCKER" rmi -f rbuild-bench-export-bk >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

DOCKER_BUILDKIT=1 "$DOCKER" build -q --network none -t rbuild-bench-export-bk "$CTX" >/dev/null
"$RBUILD" --root "$root" pull "$BASE_REF" >/dev/null
"$RBUILD" --root "$root" build -q --network none -t rbuild-bench-export "$CTX" >/dev/null

# seconds CMD...: runs CMD quietly after a sync, prints its wall time.
seconds() {
  sync
  local start=$EPOCHREALTIME
  "$@" >/dev/null 2>&1 || { echo "bench-export: failed: $*" >&2; exit 1; }
  echo "$EPOCHREALTIME - $start" | bc
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: > "$work/save"; : > "$work/build"; : > "$work/first"
for i in $(seq "$rounds"); do
  seconds "$DOCKER" save -o "$work/out.tar" rbuild-bench-export-bk >> "$work/save"; rm -f "$work/out.tar"
  seconds "$RBUILD" --root "$root" build -q --network none -t rbuild-bench-export \
    -o "type=docker,compression=uncompressed,dest=$work/out.tar" "$CTX" >> "$work/build"
  rm -f "$work/out.tar"
  printf 'export round %s %s\n' "$i" "$RANDOM" > "$CTX/changeme.txt"
  "$RBUILD" --root "$root" build -q --network none -t rbuild-bench-export "$CTX" >/dev/null
  seconds "$RBUILD" --root "$root" save rbuild-bench-export -o "$work/out.tar" >> "$work/first"
  rm -f "$work/out.tar"
done
save=$(median < "$work/save"); build=$(median < "$work/build"); first=$(median < "$work/first")
printf '| export of the 20k-file context image (%s rounds, medians) | seconds | ratio to docker save |\n|---|---|---|\n' "$rounds"
printf '| docker save (BuildKit image) | %.3f | 1 |\n' "$save"
printf '| rbuild build -o type=docker,compression=uncompressed (cached) | %.3f | %.2f |\n' "$build" "$(echo "$build / $save" | bc -l)"
printf '| rbuild save, right after a rebuild (layer blob made first) | %.3f | %.2f |\n' "$first" "$(echo "$first / $save" | bc -l)"
