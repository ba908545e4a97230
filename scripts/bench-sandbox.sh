#!/usr/bin/env bash
# Benchmark of issue 4: the wall time of a `true` step in rbuild's sandbox (overlay view mount +
# namespaces + mounts + exec + wait + unmount, in process) next to `runc run` and `crun run` of
# the same busybox rootfs with runc's default spec (new mount/pid/ipc/uts/net namespaces), in the
# same run. Rounds alternate the engines so drift hits all of them alike.
#
# crun refuses this host's hybrid cgroup layout while /sys/fs/cgroup/unified has controllers
# (see ../shared/bench/README.md), so every engine runs inside one private mount namespace with
# that mount removed, which is how ../shared/bench/limits.sh times crun too.
#
# Usage: scripts/bench-sandbox.sh [OUT_DIR]   (root; ROUNDS=3, RUNS=100 per engine per round)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/packages.sh
missing=()
for tool in hyperfine runc crun python3; do command -v $tool >/dev/null 2>&1 || missing+=($tool); done
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
install_missing "the sandbox benchmark" "${missing[@]}"

OUT=${1:-/tmp/rbuild-bench-sandbox}
ROUNDS=${ROUNDS:-3}
RUNS=${RUNS:-100}
mkdir -p "$OUT"
W=$(mktemp -d /tmp/rbuild-bench-sandbox-work.XXXXXX)
trap 'rm -rf "$W"' EXIT

cargo build --release --locked -p rbuild-sandbox --example sandbox_bench >/dev/null
BENCH=$(pwd)/target/release/examples/sandbox_bench
mkdir -p "$W/bundle"
"$BENCH" --make-rootfs "$W/bundle/rootfs"
(cd "$W/bundle" && runc spec)
python3 - "$W/bundle/config.json" <<'PY'
import json, sys
path = sys.argv[1]
spec = json.load(open(path))
spec["process"]["args"] = ["/bin/true"]
spec["process"]["terminal"] = False
json.dump(spec, open(path, "w"), indent=2)
PY

cat > "$W/rounds.sh" <<SH
set -euo pipefail
umount /sys/fs/cgroup/unified 2>/dev/null || true
for round in \$(seq 1 $ROUNDS); do
  echo "round \$round"
  "$BENCH" --runs $RUNS --network none --rootfs "$W/bundle/rootfs" | sed 's/^/rbuild-none /'
  "$BENCH" --runs $RUNS --network default --rootfs "$W/bundle/rootfs" | sed 's/^/rbuild-default /'
  hyperfine -N --runs $RUNS --warmup 3 --export-json "$W/runc-\$round.json" \
    "runc --root $W/runc-state run --bundle $W/bundle rbb-sandbox-runc" >/dev/null
  hyperfine -N --runs $RUNS --warmup 3 --export-json "$W/crun-\$round.json" \
    "crun --root $W/crun-state run --bundle $W/bundle rbb-sandbox-crun" >/dev/null
done
SH
unshare -m --propagation private bash "$W/rounds.sh" | tee "$W/rbuild.log"

python3 - "$W" "$ROUNDS" "$RUNS" > "$OUT/sandbox-bench.md" <<'PY'
import json, re, statistics, sys, subprocess
w, rounds, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
med = lambda xs: statistics.median(xs)
rb = {"none": [], "default": []}
for line in open(f"{w}/rbuild.log"):
    m = re.match(r"rbuild-(\w+) median_ms=([\d.]+)", line)
    if m:
        rb[m.group(1)].append(float(m.group(2)))
peer = {}
for name in ("runc", "crun"):
    peer[name] = [med(json.load(open(f"{w}/{name}-{r}.json"))["results"][0]["times"]) * 1000 for r in range(1, rounds + 1)]
runc, crun = med(peer["runc"]), med(peer["crun"])
none, default = med(rb["none"]), med(rb["default"])
ver = lambda cmd: subprocess.run(cmd, capture_output=True, text=True).stdout.split("\n")[0]
print(f"# Sandbox start cost: a `true` step, {rounds} rounds x {runs} runs per engine (median of round medians)\n")
print(f"{ver(['runc', '--version'])}; {ver(['crun', '--version'])}; kernel {ver(['uname', '-r'])}; {ver(['nproc'])} cores\n")
print("| engine | median | per-round medians | ratio to runc | ratio to crun |")
print("|---|---:|---|---:|---:|")
for label, value, per in [("rbuild, --network none (new netns, like runc's default spec)", none, rb["none"]),
                          ("rbuild, --network default (host netns)", default, rb["default"]),
                          ("runc run (default spec)", runc, peer["runc"]),
                          ("crun run (default spec, cgroup2 mount hidden)", crun, peer["crun"])]:
    print(f"| {label} | {value:.2f} ms | {', '.join(f'{x:.2f}' for x in per)} | {value / runc:.3f} | {value / crun:.3f} |")
print(f"\nrbuild's time includes the overlay view mount and unmount; runc and crun run a plain rootfs dir.")
print(f"Goal (issue 4): >= 3x faster than runc (ratio <= 0.333) and faster than crun (ratio < 1).")
PY
cat "$OUT/sandbox-bench.md"
