#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, the conformance corpora and the golden
# images (scripts/golden.sh).
# README's test command; .ci/run calls this after installing what CI needs.
# The conformance corpus root is RBUILD_CONFORMANCE (default: ../shared/conformance).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/packages.sh

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "missing tool \`$1\`: install $2" >&2; exit 1; }
}
# Debian packages the tests use as real peers: skopeo and umoci (image interop), docker.io (a
# private dockerd for docker load/run), busybox-static (the rootfs of the sandbox tests). Missing
# ones are installed when running as root.
missing=()
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
command -v umoci >/dev/null 2>&1 || missing+=(umoci)
[ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] || missing+=(docker.io)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# Registry and engine tests (issue 6): a real registry, htpasswd for its basic auth, openssl to
# sign the test token server's JWTs, podman's API service (containers run with runc).
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
# The tty progress test runs the build on a pseudo-terminal with script(1).
command -v script >/dev/null 2>&1 || missing+=(bsdutils)
install_missing "the test suite" "${missing[@]}"

need cargo "the Rust toolchain (rustup)"
need cargo-fmt "rustfmt (rustup component add rustfmt)"
need cargo-clippy "clippy (rustup component add clippy)"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== conformance corpora (cases per corpus)"
cargo test -p rbuild-frontend --test conformance --locked -- --nocapture --test-threads 1
echo "== cargo test (everything)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
echo "== golden conformance (scripts/golden.sh, corpus: ${RBUILD_GOLDEN:-../shared/conformance/golden})"
cargo build --locked -p rbuild >/dev/null 2>&1
scripts/golden.sh 2>&1 | tee -a "$log"
golden_status=${PIPESTATUS[0]}
set -e
# cargo's last lines are doc-test blocks that often run nothing; close on the whole count
# (cargo's results plus the golden cases).
grep -E '^(test result:|golden:)' "$log" \
  | awk '/^golden:/ {passed += $2; failed += $4; next} {passed += $4; failed += $6} END {printf "total: %d passed, %d failed\n", passed, failed}'
[ "$status" -eq 0 ] && [ "$golden_status" -eq 0 ]
