#!/usr/bin/env bash
# Storage benchmark (issue 3, point 10): rbuild's layer writer and layer applier next to GNU tar,
# pigz and zstd, on a generated image-like tree (20,000 files, 200 MB, ~370 dirs, 200 symlinks;
# snapshotter/examples/storage_bench.rs). Not part of the test suite.
#
# Usage: scripts/bench-storage.sh [WORKDIR]
#   Works in a fresh directory made under WORKDIR (default /tmp) and removes it at the end; needs
#   about 1.2 GB there. Installs pigz, zstd and time (Debian packages) when missing and root.
#   Applies are measured twice: into WORKDIR's filesystem (what a build does, but on a small VM
#   dominated by dirty-page writeback throttling: seconds vary 3x from pass to pass) and into a
#   tmpfs (the applier's own cost): BENCH_TMPFS, default /dev/shm; that row is skipped when it is
#   not a tmpfs.
#
# Method, the same for ours and the peer of every row:
# - one warm-up pass of each first (tree, tar and binaries in the page cache; nothing is dropped,
#   so all figures are warm-cache figures), then 3 rounds of (ours, peer), alternating so that a
#   change of machine load hits both; `sync` before every pass, so no pass pays for the writeback
#   of the one before; an apply destination is removed and made again before every pass;
# - the median of the 3 is reported; ratio = ours / peer (below 1: ours is faster);
# - ours: the wall seconds of the write_layer / apply_layer call that the example prints (process
#   start-up, a few ms, not included); peers: the wall seconds of the whole pipeline;
# - peak RSS: /usr/bin/time -f %M, the largest over the passes; for a pipeline it is that of its
#   largest process (Linux reports the maximum over the waited-for children), not a sum;
# - MB/s: bytes of our uncompressed layer tar / median seconds (10^6 bytes).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/packages.sh
export LC_ALL=C

runs=3

missing=()
command -v pigz >/dev/null 2>&1 || missing+=(pigz)
command -v zstd >/dev/null 2>&1 || missing+=(zstd)
[ -x /usr/bin/time ] || missing+=(time)
install_missing "bench-storage" "${missing[@]}"
tar --version | head -n 1 | grep -q 'GNU tar' || { echo "bench-storage: needs GNU tar" >&2; exit 1; }

base=${1:-/tmp}
mkdir -p "$base"
work=$(mktemp -d "$(realpath "$base")/rbuild-bench-storage.XXXXXX")
shm=
trap 'rm -rf "$work" ${shm:+"$shm"}' EXIT
tmpfs=${BENCH_TMPFS:-/dev/shm}
if [ "$(stat -f -c %T "$tmpfs" 2>/dev/null)" = tmpfs ]; then
  shm=$(mktemp -d "$tmpfs/rbuild-bench-storage.XXXXXX")
else
  echo "bench-storage: $tmpfs is not a tmpfs: no tmpfs apply row" >&2
fi

echo "== building the example (release)"
bin=$(cargo build --release -p rbuild-snapshotter --example storage_bench \
        --message-format=json-render-diagnostics |
      sed -n 's/.*"executable":"\([^"]*\/storage_bench\)".*/\1/p' | tail -n 1)
[ -x "$bin" ] || { echo "bench-storage: example binary not found" >&2; exit 1; }

tree=$work/tree
tar_file=$work/layer.tar
dest_ours=$work/apply-ours
dest_peer=$work/apply-peer
echo "== generating the tree in $tree"
"$bin" gen "$tree"
"$bin" layer "$tree" none "$tar_file" > "$work/layer.txt"
field() { { grep -o "$1=[^ ]*" || true; } | head -n 1 | cut -d= -f2; }
tar_bytes=$(field tar_bytes < "$work/layer.txt")
diff_id=$(field diff_id < "$work/layer.txt")
echo "   layer tar: $tar_bytes bytes, diff_id $diff_id"

load_start=$(uptime)

# One pass: `pass ours|peer CMD [PREP]`; sets $secs and $rss. PREP runs before the sync.
pass() {
  local who=$1 cmd=$2 prep=${3:-} out start end
  if [ -n "$prep" ]; then bash -c "$prep"; fi
  sync
  start=$EPOCHREALTIME
  if ! out=$(/usr/bin/time -f %M -o "$work/rss" bash -o pipefail -c "$cmd" 2>&1); then
    echo "bench-storage: failed: $cmd" >&2
    printf '%s\n' "$out" >&2
    cat "$work/rss" >&2
    exit 1
  fi
  end=$EPOCHREALTIME
  rss=$(tail -n 1 "$work/rss")
  if [ "$who" = ours ]; then
    secs=$(printf '%s\n' "$out" | field seconds)
    [ -n "$secs" ] || { echo "bench-storage: no seconds= in: $out" >&2; exit 1; }
    last_out=$out
  else
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')
  fi
}

median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
max() { printf '%s\n' "$@" | sort -g | tail -n 1; }

rows=()
commands=()
# `measure NAME OURS_CMD PEER_CMD [OURS_PREP PEER_PREP]`
measure() {
  local name=$1 ours=$2 peer=$3 ours_prep=${4:-} peer_prep=${5:-}
  local load ours_s=() peer_s=() ours_rss=() peer_rss=()
  load=$(cut -d' ' -f1 /proc/loadavg)
  echo "== $name (load $load)"
  pass ours "$ours" "$ours_prep"
  ours_rss+=("$rss")
  pass peer "$peer" "$peer_prep"
  peer_rss+=("$rss")
  for _ in $(seq "$runs"); do
    pass ours "$ours" "$ours_prep"
    ours_s+=("$secs"); ours_rss+=("$rss")
    pass peer "$peer" "$peer_prep"
    peer_s+=("$secs"); peer_rss+=("$rss")
  done
  local om pm
  om=$(median "${ours_s[@]}")
  pm=$(median "${peer_s[@]}")
  echo "   ours: ${ours_s[*]} s   peer: ${peer_s[*]} s"
  rows+=("$(awk -v n="$name" -v o="$om" -v p="$pm" -v b="$tar_bytes" -v orss="$(max "${ours_rss[@]}")" \
    -v prss="$(max "${peer_rss[@]}")" -v l="$load" \
    'BEGIN { printf "%-22s %8.3f %8.3f %7.2f %9.0f %9.1f %9.1f %6s", n, o, p, o / p, b / o / 1e6,
             orss / 1024, prss / 1024, l }')")
  commands+=("$name" "ours: $ours" "peer: $peer")
}

q() { printf '%q' "$1"; }
T=$(q "$tree"); B=$(q "$bin"); F=$(q "$tar_file")

measure "layer gzip-6" "$B layer $T gzip /dev/null" "tar -C $T -c . | pigz -6 > /dev/null"
measure "layer zstd-3" "$B layer $T zstd /dev/null" "tar -C $T -c . | zstd -3 -T0 -q > /dev/null"
measure "layer zstd-1" "$B layer $T zstd:1 /dev/null" "tar -C $T -c . | zstd -1 -T0 -q > /dev/null"
measure "layer uncompressed" "$B layer $T none /dev/null" "tar -C $T -c . | cat > /dev/null"
measure "layer uncompr. | cat" "$B layer $T none - | cat > /dev/null" \
  "tar -C $T -c . | cat > /dev/null"
# `measure_apply NAME DEST_OURS DEST_PEER`, then checks the trees the last passes left.
measure_apply() {
  local name=$1 d_ours=$2 d_peer=$3 applied_id
  measure "$name" "$B apply $F $(q "$d_ours")" "tar -xf $F -C $(q "$d_peer")" \
    "rm -rf $(q "$d_ours") && mkdir $(q "$d_ours")" "rm -rf $(q "$d_peer") && mkdir $(q "$d_peer")"
  applied_id=$(printf '%s\n' "$last_out" | field diff_id)
  if [ "$applied_id" != "$diff_id" ]; then
    echo "bench-storage: apply diff_id $applied_id != $diff_id" >&2
    exit 1
  fi
  for d in "$d_ours" "$d_peer"; do
    diff -r --no-dereference "$tree" "$d" > /dev/null || { echo "bench-storage: $d differs" >&2; exit 1; }
    rm -rf "$d"
  done
}
measure_apply "apply to disk" "$dest_ours" "$dest_peer"
if [ -n "$shm" ]; then
  measure_apply "apply to tmpfs" "$shm/apply-ours" "$shm/apply-peer"
fi

# Ours computes the diff_id (sha256 of the tar) in its one thread; tar does not. For scale: the
# same hash alone, with the same warm-up and median.
sha_line="(openssl missing: no sha256 reference)"
if command -v openssl >/dev/null 2>&1; then
  sha_cmd="openssl dgst -sha256 $F > /dev/null"
  sha_s=()
  for i in $(seq 0 "$runs"); do
    pass peer "$sha_cmd"
    [ "$i" -eq 0 ] || sha_s+=("$secs")
  done
  sha_line="sha256 of the layer tar alone (the diff_id, which tar does not compute): $(median "${sha_s[@]}") s = \
$(awk -v b="$tar_bytes" -v s="$(median "${sha_s[@]}")" 'BEGIN { printf "%.0f", b / s / 1e6 }') MB/s: ${sha_cmd//"$work"/\$WORK}"
fi

echo
echo "rbuild storage benchmark: $(nproc) cores, $(uname -r), $(tar --version | head -n 1), pigz $(pigz --version 2>&1 | cut -d' ' -f2), zstd $(zstd -V | grep -o 'v[0-9.]*' | head -n 1)"
echo "tree: 20,000 files, 200 MB; layer tar $tar_bytes bytes; median of $runs warm-cache passes after one warm-up"
echo
printf '%-22s %8s %8s %7s %9s %9s %9s %6s\n' measurement "ours s" "peer s" ours/pr "ours MB/s" "ours RSS" "peer RSS" load1
printf '%-22s %8s %8s %7s %9s %9s %9s %6s\n' "" "" "" "" "" "MiB" "MiB" ""
printf '%s\n' "${rows[@]}"
echo
echo "commands (BIN=$bin WORK=$work${shm:+ SHM=$shm}):"
for ((i = 0; i < ${#commands[@]}; i += 3)); do
  echo "  ${commands[i]}"
  for c in "${commands[@]:i+1:2}"; do
    c=${c//"$B"/\$BIN}
    c=${c//"$work"/\$WORK}
    [ -z "$shm" ] || c=${c//"$shm"/\$SHM}
    echo "    $c"
  done
done
echo
echo "$sha_line"
echo "load at start: $load_start"
echo "load at end:   $(uptime)"
