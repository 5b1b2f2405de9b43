#!/usr/bin/env bash
# Data-path exerciser: runs fsx 0.3.x on a fresh warabifs mount with every operation it
# has weighted in (pread/pwrite, mmap read/write, msync invalidate, truncate, fsync,
# fdatasync, posix_fallocate, hole punching, copy_file_range, sendfile, posix_fadvise,
# close/open), with a fixed seed, and checks every read against fsx's model of the file.
#
#   bash scripts/fsx.sh            # 100,000 operations (the full run)
#   bash scripts/fsx.sh 20000      # what scripts/test.sh (CI) runs
#   bash scripts/fsx.sh 20000 writeback_cache   # with extra mount options
#
# On a failure fsx leaves fsx.file.fsxlog (its operation log) and fsx.file.fsxgood (the
# expected contents) in target/conformance/fsx/, next to fsx's output and the daemon log.
set -euo pipefail

SCRIPT_NAME=fsx.sh
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/mount.sh
source "$ROOT/scripts/lib/mount.sh"

NUMOPS=${1:-100000}
[[ $NUMOPS =~ ^[1-9][0-9]*$ ]] || die "usage: scripts/fsx.sh [NUMOPS [MOUNT_OPTIONS]] (NUMOPS a positive number; default 100000)"
EXTRA_OPTIONS=${2:-}
SEED=7
POOL_SIZE=256M
# Generous: 100,000 operations take a few minutes.
TIMEOUT_SECONDS=3600

FSX=$(find_tool fsx) || die "fsx not found on PATH or in $HOME/.cargo/bin; run scripts/setup.sh"
version=$("$FSX" --version)
[[ $version == "fsx 0.3."* ]] || die "$FSX is '$version'; fsx 0.3.x is needed (scripts/setup.sh)"
command -v fusermount3 >/dev/null || die "fusermount3 not found (Debian package fuse3; run scripts/setup.sh)"
[[ -e /dev/fuse ]] || die "/dev/fuse does not exist: warabifs cannot mount here"

BIN=$(build_warabifs "$ROOT")

ARTIFACTS=$ROOT/target/conformance/fsx
rm -rf "$ARTIFACTS"
mkdir -p "$ARTIFACTS"
LOG_FSX=$ARTIFACTS/fsx.log
LOG_DAEMON=$ARTIFACTS/warabifs-daemon.log
CONF=$ARTIFACTS/fsx.toml

# libpmemobj allocates the whole pool file up front: 256 MiB of /dev/shm.
WORK=$(mktemp -d /dev/shm/warabifs-fsx.XXXXXX)
MNT=$WORK/mnt
POOL=$WORK/pool.pmem
mkdir -p "$MNT"
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_running
    stop_warabifs
    remove_work_dir "$WORK"
    exit "$rc"
}
install_cleanup cleanup

# Every operation fsx 0.3 knows, weighted in. The file may grow to 1 MiB, past the
# 256 KiB libpmemobj chunk size, so regions of both kinds (and the moves from one region
# to a larger one) are exercised. [opsize] min = 1: with min = 0 fsx stops on a
# zero-length posix_fallocate (EINVAL by POSIX).
cat >"$CONF" <<'EOF'
# fsx configuration for warabifs (written by scripts/fsx.sh)
flen = 1048576
nomsyncafterwrite = false
nosizechecks = false
blockmode = false

[opsize]
min = 1
max = 65536
align = 1

[weights]
close_open = 2
read = 10
write = 10
mapread = 10
mapwrite = 10
invalidate = 2
truncate = 5
fsync = 2
fdatasync = 2
posix_fallocate = 5
punch_hole = 5
copy_file_range = 5
sendfile = 5
posix_fadvise = 2
EOF

echo "==> fsx: $NUMOPS operations, seed $SEED, on warabifs${EXTRA_OPTIONS:+ -o $EXTRA_OPTIONS}"
start_warabifs "$BIN" "$POOL" "$MNT" "$LOG_DAEMON" "create_if_missing_with_size=$POOL_SIZE${EXTRA_OPTIONS:+,$EXTRA_OPTIONS}"
echo "$ $FSX -f $CONF -N $NUMOPS -S $SEED -P $ARTIFACTS $MNT/fsx.file"
start=$SECONDS
rc=0
run_with_timeout "$TIMEOUT_SECONDS" "$LOG_FSX" \
    env RUST_LOG_STYLE=never "$FSX" -f "$CONF" -N "$NUMOPS" -S "$SEED" -P "$ARTIFACTS" "$MNT/fsx.file" || rc=$?
elapsed=$((SECONDS - start))
stop_warabifs

if ((rc != 0)); then
    echo "fsx failed (exit status $rc) after ${elapsed} s; the end of its output:"
    tail -n 60 "$LOG_FSX"
    echo "(fsx output $LOG_FSX; operation log and expected contents in $ARTIFACTS; daemon log $LOG_DAEMON)"
    echo "fsx: FAILED ($NUMOPS operations, seed $SEED)"
    exit 1
fi
if [[ -s $LOG_FSX ]]; then
    echo "fsx output:"
    tail -n 20 "$LOG_FSX"
fi
echo "fsx: $NUMOPS operations completed in ${elapsed} s (seed $SEED)"
