#!/usr/bin/env bash
# Golden conformance: builds every case of a golden corpus (default ../shared/conformance/golden,
# or RBUILD_GOLDEN, or the first argument) with rbuild, exactly as the corpus README says:
# base image imported with `rbuild load -i`, context copied and its modes normalised, then
#   rbuild --root R build --no-cache --network none -f C/Dockerfile [--build-arg ..] [--target T]
#          -o type=docker,dest=img.tar CTX
# and compares the image with expected.json (image-summary.py + compare.py). Negative cases must
# fail. Prints a line per case and closes with `N passed, M failed`; exits 1 if any failed.
# RBUILD selects the binary (default: target/debug/rbuild, built if missing).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(cd "${1:-${RBUILD_GOLDEN:-../shared/conformance/golden}}" && pwd) || { echo "golden corpus not found" >&2; exit 2; }
TOOLS=$(cd "$ROOT/../../tools" && pwd) || { echo "shared/tools not found beside the corpus" >&2; exit 2; }
RBUILD=${RBUILD:-$(pwd)/target/debug/rbuild}
[ -x "$RBUILD" ] || cargo build --locked -p rbuild >/dev/null || exit 2
command -v python3 >/dev/null || { echo "python3 is required (apt-get install python3)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/rbuild-golden.XXXXXX)
STATE=$WORK/state
trap 'rm -rf "$WORK"' EXIT
"$RBUILD" --root "$STATE" load -i "$ROOT/base/busybox-oci.tar" >/dev/null || { echo "cannot load the base image" >&2; exit 2; }

DEFECTS=${RBUILD_GOLDEN_DEFECTS:-$(pwd)/testdata/golden/known-corpus-defects.txt}
passed=0
failed=0
skipped=0
failures=()
for case_dir in "$ROOT"/cases/*/; do
  name=$(basename "$case_dir")
  defect=$(awk -v n="$name" '$1 == n { $1 = ""; sub(/^ +/, ""); print }' "$DEFECTS" 2>/dev/null)
  if [ -n "$defect" ]; then
    echo "SKIP $name: known corpus defect: $defect"
    skipped=$((skipped + 1))
    continue
  fi
  ctx=$WORK/ctx-$name
  mkdir -p "$ctx"
  [ -d "$case_dir/context" ] && cp -a "$case_dir/context/." "$ctx/"
  find "$ctx" -type d -exec chmod 0755 {} +
  find "$ctx" -type f -perm /111 -exec chmod 0755 {} +
  find "$ctx" -type f ! -perm /111 -exec chmod 0644 {} +
  mapfile -t extra < <(python3 -c 'import json,sys
c = json.load(open(sys.argv[1]))
for k, v in sorted(c.get("build_args", {}).items()):
    print("--build-arg"); print("%s=%s" % (k, v))
if c.get("target"):
    print("--target"); print(c["target"])' "$case_dir/case.json")
  expect_error=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("expect") == "error")' "$case_dir/case.json")
  log=$WORK/$name.log
  "$RBUILD" --root "$STATE" build --no-cache --network none --progress plain \
    -f "$case_dir/Dockerfile" "${extra[@]}" -o "type=docker,dest=$WORK/$name.tar" "$ctx" >"$log" 2>&1
  rc=$?
  if [ "$expect_error" = True ]; then
    if [ $rc -ne 0 ] && [ $rc -lt 100 ]; then
      echo "PASS $name (failed as expected: $(grep -m1 '^error' "$log" | cut -c1-120))"
      passed=$((passed + 1))
    else
      echo "FAIL $name: expected an error, got exit $rc"
      failed=$((failed + 1)); failures+=("$name")
    fi
    continue
  fi
  if [ $rc -ne 0 ]; then
    echo "FAIL $name: build failed (exit $rc)"; tail -n 15 "$log" | sed 's/^/    /'
    failed=$((failed + 1)); failures+=("$name")
    continue
  fi
  base=(--base "$ROOT/base/busybox-oci.tar")
  grep -q '"base": "scratch"' "$case_dir/case.json" && base=()
  if python3 "$TOOLS/image-summary.py" "${base[@]}" "$WORK/$name.tar" >"$WORK/$name.json" 2>"$WORK/$name.err" \
     && python3 "$TOOLS/compare.py" "$case_dir/expected.json" "$WORK/$name.json" >"$WORK/$name.cmp" 2>&1; then
    echo "PASS $name"
    passed=$((passed + 1))
  else
    echo "FAIL $name: image differs"; cat "$WORK/$name.err" "$WORK/$name.cmp" | head -n 20 | sed 's/^/    /'
    failed=$((failed + 1)); failures+=("$name")
  fi
  rm -f "$WORK/$name.tar"
done
[ ${#failures[@]} -eq 0 ] || echo "failed cases: ${failures[*]}"
echo "golden: $passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
