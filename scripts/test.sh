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

step "cargo test --all-targets"
cargo test --all-targets

step "all checks passed"
