#!/usr/bin/env bash
# The project's checks, as CI runs them: system packages, formatting, lints, then every
# test (unit, integration and FUSE mount tests on real pools in /dev/shm).
# The FUSE tests need /dev/fuse; this script never tells them to skip.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "bash scripts/setup.sh"
bash scripts/setup.sh

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test 2>&1 | tee "$log"
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"

step "all checks passed"
