#!/usr/bin/env bash
# The project's checks, as CI runs them: system packages, formatting, lints, the model
# test in release mode, every test (unit, integration and FUSE mount tests on real pools
# in /dev/shm), then the POSIX conformance suites on real mounts: pjdfstest
# (scripts/pjdfstest.sh) and 20,000 fsx operations (scripts/fsx.sh).
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

# The core against its model (tests/model.rs), built as users run it: optimized, with
# 256 random sequences of operations and crashes. (The passes below run it again, with
# debug assertions.) It mounts nothing, so it runs once.
step "cargo test --release --test model (256 cases)"
PROPTEST_CASES=256 cargo test --release --test model

# shellcheck source=scripts/lib/uring.sh
source scripts/lib/uring.sh
log=$(mktemp)
trap 'rm -f "$log"; uring_restore' EXIT

# Every test that mounts, pjdfstest and fsx run twice: once over /dev/fuse and once over
# FUSE-over-io_uring (the kernel's switch on; warabifs then uses the rings by default).
# WARABIFS_SKIP_URING=1 leaves out the second pass on a kernel without the rings.
passes=(dev)
if [[ ${WARABIFS_SKIP_URING:-} != 1 ]]; then
    passes+=(uring)
fi
summary=()
for pass in "${passes[@]}"; do
    case $pass in
        dev) uring_switch N; what="over /dev/fuse" ;;
        uring) uring_switch Y; what="over FUSE-over-io_uring" ;;
    esac

    step "cargo test ($what)"
    cargo test 2>&1 | tee "$log"
    # One closing line per pass, summed over every test binary; printed here and again
    # at the very end of the script.
    tests_line=$(awk -v what="$what" '/^test result:/ { passed += $4; failed += $6 } END { printf "tests %s: %d passed, %d failed\n", what, passed, failed }' "$log")
    echo "$tests_line"
    summary+=("$tests_line")

    # POSIX conformance on a real mount (pjdfstest, compared with tmpfs; needs root).
    step "bash scripts/pjdfstest.sh ($what)"
    bash scripts/pjdfstest.sh

    # The data path against fsx's model; scripts/fsx.sh alone runs the full 100,000.
    step "bash scripts/fsx.sh 20000 ($what)"
    bash scripts/fsx.sh 20000
    # The kernel's writeback cache changes who holds size and times: the same run with it.
    step "bash scripts/fsx.sh 20000 writeback_cache ($what)"
    bash scripts/fsx.sh 20000 writeback_cache
done

step "all checks passed"
printf '%s\n' "${summary[@]}"
