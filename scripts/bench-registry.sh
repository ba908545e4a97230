#!/usr/bin/env bash
# Registry benchmark (issue 6, point 8): pull and push of a 5-layer, ~300 MB image from/to a
# local docker-registry, rbuild next to skopeo in the same run. Not part of the test suite.
#
# Usage: scripts/bench-registry.sh [WORKDIR]   (run as root, after `cargo build --release`)
#   Starts Debian's docker-registry on 127.0.0.1 (a free port, storage under WORKDIR, default
#   /tmp) and stops it at the end; needs about 1.5 GB there.
#
# The image: the golden busybox base plus 5 RUN steps, each writing 60 MB of random bytes (no
# compression can shrink it), built by rbuild and pushed once to `bench/big:1` (gzip layers,
# ~300 MB). Then 3 rounds, alternating ours and the peer so a change of machine load hits both:
# - pull: `rbuild pull` into an empty state root vs `skopeo copy docker://... oci:DIR` into an
#   empty directory (both fetch, hash and store every blob; neither unpacks);
# - push: `rbuild push` vs `skopeo copy oci:DIR docker://...`, each into a second registry
#   emptied just before (every blob is uploaded);
# - push-mount: the same into a new repository of the first registry, where both tools mount
#   the blobs from the repository they were pulled from (rbuild knows it from its image store,
#   skopeo from its blob-info cache).
# `sync` before each pass. Medians of wall seconds; ratio = rbuild / skopeo (below 1: faster).
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C
RBUILD=${RBUILD:-$(pwd)/target/release/rbuild}
[ -x "$RBUILD" ] || { echo "bench-registry: build first: cargo build --release" >&2; exit 1; }
for tool in docker-registry skopeo python3; do
  command -v $tool >/dev/null || { echo "bench-registry: needs $tool" >&2; exit 1; }
done
base=${1:-/tmp}
work=$(mktemp -d "$base/rbuild-bench-registry.XXXXXX")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<YAML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
YAML
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.1; done; }
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
registry_pid=$!
empty_pid=
cleanup() {
  kill $registry_pid $empty_pid 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
wait_port $port
reg=127.0.0.1:$port
# A second registry, emptied before every upload pass: no blob can be mounted or skipped there.
port2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -e "s#$work/registry\$#$work/empty#" -e "s#:$port\$#:$port2#" "$work/registry.yml" > "$work/empty.yml"
empty_registry() {
  if [ -n "$empty_pid" ]; then kill $empty_pid; wait $empty_pid 2>/dev/null || true; fi
  rm -rf "$work/empty"
  docker-registry serve "$work/empty.yml" > "$work/empty.log" 2>&1 &
  empty_pid=$!
  wait_port $port2
}

golden=${RBUILD_GOLDEN:-$(pwd)/../shared/conformance/golden}
seed=$work/seed-root
"$RBUILD" --root "$seed" load -i "$golden/base/busybox-oci.tar" >/dev/null
mkdir -p "$work/ctx"
{
  echo "FROM rbuild-test/busybox:1 AS gen"
  for i in 1 2 3 4 5; do echo "RUN head -c 60000000 /dev/urandom > /blob$i"; done
  echo "FROM scratch"
  for i in 1 2 3 4 5; do echo "COPY --from=gen /blob$i /"; done
} > "$work/ctx/Dockerfile"
echo "== building and pushing the 5-layer image ($reg/bench/big:1)"
"$RBUILD" --root "$seed" build -q -t "$reg/bench/big:1" --push "$work/ctx" >/dev/null
bytes=$(skopeo inspect --raw --tls-verify=false "docker://$reg/bench/big:1" | python3 -c 'import json,sys; m=json.load(sys.stdin); print(sum(l["size"] for l in m["layers"]) + m["config"]["size"])')
echo "image: $(( bytes / 1000000 )) MB in $(skopeo inspect --raw --tls-verify=false "docker://$reg/bench/big:1" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["layers"]))') layers"

now() { date +%s.%N; }
declare -a pull_ours pull_peer push_ours push_peer mount_ours mount_peer
for round in 1 2 3; do
  rm -rf "$work/pull-root" "$work/oci"; sync
  t0=$(now); "$RBUILD" --root "$work/pull-root" pull "$reg/bench/big:1" >/dev/null 2>&1; t1=$(now)
  pull_ours+=("$(echo "$t1 - $t0" | bc)")
  sync
  t0=$(now); skopeo copy -q --src-tls-verify=false "docker://$reg/bench/big:1" "oci:$work/oci:big"; t1=$(now)
  pull_peer+=("$(echo "$t1 - $t0" | bc)")
  # Upload: every blob to a registry that has none.
  empty_registry; sync
  "$RBUILD" --root "$work/pull-root" tag "$reg/bench/big:1" "127.0.0.1:$port2/bench/ours:1"
  t0=$(now); "$RBUILD" --root "$work/pull-root" push "127.0.0.1:$port2/bench/ours:1" >/dev/null 2>&1; t1=$(now)
  push_ours+=("$(echo "$t1 - $t0" | bc)")
  empty_registry; sync
  t0=$(now); skopeo copy -q --dest-tls-verify=false "oci:$work/oci:big" "docker://127.0.0.1:$port2/bench/peer:1"; t1=$(now)
  push_peer+=("$(echo "$t1 - $t0" | bc)")
  # Mount: to a new repository of the registry the image came from (both tools know where its
  # blobs are: rbuild from its image store, skopeo from its blob-info cache).
  sync
  "$RBUILD" --root "$work/pull-root" tag "$reg/bench/big:1" "$reg/bench/ours$round:1"
  t0=$(now); "$RBUILD" --root "$work/pull-root" push "$reg/bench/ours$round:1" >/dev/null 2>&1; t1=$(now)
  mount_ours+=("$(echo "$t1 - $t0" | bc)")
  sync
  t0=$(now); skopeo copy -q --dest-tls-verify=false "oci:$work/oci:big" "docker://$reg/bench/peer$round:1"; t1=$(now)
  mount_peer+=("$(echo "$t1 - $t0" | bc)")
  echo "round $round: pull ${pull_ours[-1]}s vs ${pull_peer[-1]}s; push ${push_ours[-1]}s vs ${push_peer[-1]}s; push-mount ${mount_ours[-1]}s vs ${mount_peer[-1]}s (rbuild vs skopeo)"
done
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
report() {
  local what=$1 ours peer
  ours=$(median "${@:2:3}"); peer=$(median "${@:5:3}")
  printf '%-10s rbuild %6.2fs  skopeo %6.2fs  ratio %.2f  (rbuild %.0f MB/s)\n' "$what" "$ours" "$peer" \
    "$(echo "$ours / $peer" | bc -l)" "$(echo "$bytes / 1000000 / $ours" | bc -l)"
}
echo "== medians of 3 (ratio = rbuild / skopeo; goal <= 1.0)"
report pull "${pull_ours[@]}" "${pull_peer[@]}"
report push "${push_ours[@]}" "${push_peer[@]}"
report push-mount "${mount_ours[@]}" "${mount_peer[@]}"
