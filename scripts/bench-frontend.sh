#!/usr/bin/env bash
# Frontend throughput on the real-world corpus, next to `wc -l` on the same bytes.
# Usage: scripts/bench-frontend.sh [CORPUS_ROOT]   (default: ../shared/conformance)
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-${RBUILD_CONFORMANCE:-$(pwd)/../shared/conformance}}
export RBUILD_CONFORMANCE=$root
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

cat "$root"/real-dockerfiles/*.Dockerfile > "$scratch/corpus"
bytes=$(wc -c < "$scratch/corpus")
# wc -l on the same bytes, repeated into a 256 MiB file so process start-up does not dominate.
reps=$(( 268435456 / bytes + 1 ))
for _ in $(seq "$reps"); do cat "$scratch/corpus"; done > "$scratch/big"
big=$(wc -c < "$scratch/big")
start=$(date +%s.%N); wc -l < "$scratch/big" > /dev/null; end=$(date +%s.%N)
wc_mbps=$(python3 -c "print(f'{$big / ($end - $start) / 1e6:.0f}')")
echo "corpus: $(ls "$root"/real-dockerfiles/*.Dockerfile | wc -l) files, $bytes bytes"
echo "wc -l: $wc_mbps MB/s (on $big bytes)"

cargo bench -p rbuild-frontend --bench parse -- --noplot 2>&1 | grep -E 'real-dockerfiles|thrpt'
