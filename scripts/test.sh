#!/usr/bin/env bash
# The project's checks, as CI runs them: system packages, formatting, lints, every test
# (unit, integration and FUSE mount tests on real pools in /dev/shm), then the POSIX
# conformance suites on real mounts: pjdfstest (scripts/pjdfstest.sh) and 20,000 fsx
# operations (scripts/fsx.sh).
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
# One closing line for the whole run, summed over every test binary; printed here and
# again as the very last line of the script.
tests_line=$(awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log")
echo "$tests_line"

# POSIX conformance on a real mount (pjdfstest, compared with tmpfs; needs root).
step "bash scripts/pjdfstest.sh"
bash scripts/pjdfstest.sh

# The data path against fsx's model; scripts/fsx.sh alone runs the full 100,000.
step "bash scripts/fsx.sh 20000"
bash scripts/fsx.sh 20000
# The kernel's writeback cache changes who holds size and times: the same run with it.
step "bash scripts/fsx.sh 20000 writeback_cache"
bash scripts/fsx.sh 20000 writeback_cache

step "all checks passed"
echo "$tests_line"
