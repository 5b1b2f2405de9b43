#!/usr/bin/env bash
# POSIX conformance: runs pjdfstest 0.2.x on a fresh warabifs mount and, with the same
# configuration, on a private tmpfs as the reference. Fails if warabifs fails any test,
# or skips a test that tmpfs does not skip. Needs root (pjdfstest switches to the dummy
# users, and the tmpfs is mounted with mount -t tmpfs).
#
#   bash scripts/pjdfstest.sh
#
# The full pjdfstest output of both runs and the warabifs daemon log are kept in
# target/conformance/. The last line printed is
#   pjdfstest: N passed, N failed, N skipped
# with the numbers of the warabifs run.
set -euo pipefail

SCRIPT_NAME=pjdfstest.sh
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/mount.sh
source "$ROOT/scripts/lib/mount.sh"

# One pjdfstest run may take at most this long (the whole suite takes about 10 s here).
TIMEOUT_SECONDS=900
# The dummy users pjdfstest switches to; both must exist on the machine.
DUMMY_AUTH=("nobody:nogroup" "daemon:daemon")
# open::interact_2gb writes at offset 2 GiB, and a warabifs file is one contiguous region
# (files are not sparse), so the pool needs more than 2 GiB. libpmemobj allocates the
# whole pool file when it creates it, so this takes 3 GiB of /dev/shm (memory) while the
# script runs.
POOL_SIZE=3G
POOL_BYTES=$((3 << 30))

[[ $(id -u) -eq 0 ]] || die "run as root: pjdfstest switches users and this script mounts a tmpfs"

PJDFSTEST=$(find_tool pjdfstest) || die "pjdfstest not found on PATH or in $HOME/.cargo/bin; run scripts/setup.sh"
version=$("$PJDFSTEST" --version)
[[ $version == "pjdfstest 0.2."* ]] || die "$PJDFSTEST is '$version'; pjdfstest 0.2.x is needed (scripts/setup.sh)"

auth_toml=()
for entry in "${DUMMY_AUTH[@]}"; do
    user=${entry%%:*} group=${entry#*:}
    getent passwd "$user" >/dev/null || die "user '$user' does not exist; pjdfstest's dummy_auth needs it (create it, e.g. useradd -r $user)"
    getent group "$group" >/dev/null || die "group '$group' does not exist; pjdfstest's dummy_auth needs it (create it, e.g. groupadd -r $group)"
    auth_toml+=("[\"$user\", \"$group\"]")
done
command -v fusermount3 >/dev/null || die "fusermount3 not found (Debian package fuse3; run scripts/setup.sh)"
[[ -e /dev/fuse ]] || die "/dev/fuse does not exist: warabifs cannot mount here"

BIN=$(build_warabifs "$ROOT")

ARTIFACTS=$ROOT/target/conformance
mkdir -p "$ARTIFACTS"
LOG_WARABIFS=$ARTIFACTS/pjdfstest-warabifs.log
LOG_TMPFS=$ARTIFACTS/pjdfstest-tmpfs.log
LOG_DAEMON=$ARTIFACTS/pjdfstest-warabifs-daemon.log
rm -f "$LOG_WARABIFS" "$LOG_TMPFS" "$LOG_DAEMON"

shm_avail=$(df --output=avail -B1 /dev/shm | tail -n 1)
((shm_avail > POOL_BYTES + (512 << 20))) ||
    die "/dev/shm has $((shm_avail >> 20)) MiB free; the $POOL_SIZE pool and the tmpfs run need $(((POOL_BYTES >> 20) + 512)) MiB"
WORK=$(mktemp -d /dev/shm/warabifs-pjd.XXXXXX)
# mktemp makes it 0700; the dummy users must be able to reach the directories inside.
chmod 0755 "$WORK"
TMPFS_MNT=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_running
    stop_warabifs
    if [[ -n $TMPFS_MNT ]] && is_mounted "$TMPFS_MNT"; then
        umount "$TMPFS_MNT" 2>/dev/null || umount -l "$TMPFS_MNT" || true
    fi
    remove_work_dir "$WORK"
    exit "$rc"
}
install_cleanup cleanup

# pjdfstest 0.2.2 has an integer underflow in create_path_max (src/context.rs), which
# builds a path of exactly PATH_MAX - 1 bytes for the *::enametoolong_path tests. With
# component_len = NAME_MAX / 2 = 127 it computes
#     (PATH_MAX - 1 - len(base_path)) % component_len - 1
# in usize, where base_path = TESTDIR/.tmpXXXXXX/.tmpYYYYYY, i.e. len(TESTDIR) + 22 (two
# tempfile directories). When the remainder is 0 that wraps around and every
# enametoolong_path test fails with "capacity overflow" (seen with TESTDIR=/tmp/abcd).
# When it is 1 the code takes its other branch, whose path comes out one byte shorter
# than PATH_MAX - 1; avoid that too. So the directory pjdfstest runs in must have a
# length for which (4095 - (len + 22)) % 127 is neither 0 nor 1: the names below are
# padded until it holds, and assert_path_max_safe checks it against the NAME_MAX and
# PATH_MAX that the mounted file system reports.
path_max_remainder() { # DIR [NAME_MAX PATH_MAX]
    local dir=$1 name_max=${2:-255} path_max=${3:-4096}
    echo $(((path_max - 1 - (${#dir} + 22)) % (name_max / 2)))
}
pick_dir() { # PARENT NAME: PARENT/NAME, padded with '_' until the remainder is safe
    local candidate=$1/$2 r
    for _ in 1 2 3; do
        r=$(path_max_remainder "$candidate")
        if ((r != 0 && r != 1)); then
            echo "$candidate"
            return 0
        fi
        candidate+=_
    done
    die "no safe length found for $1/$2"
}
assert_path_max_safe() { # DIR: checks with the NAME_MAX and PATH_MAX the mount reports
    local dir=$1 name_max path_max r
    name_max=$(getconf NAME_MAX "$dir")
    path_max=$(getconf PATH_MAX "$dir")
    r=$(path_max_remainder "$dir" "$name_max" "$path_max")
    ((r != 0 && r != 1)) || die "pjdfstest would trip on its create_path_max underflow in $dir" \
        "(NAME_MAX $name_max, PATH_MAX $path_max, remainder $r); pick another directory name"
}

MNT=$(pick_dir "$WORK" mnt)
TMPFS_MNT=$(pick_dir "$WORK" tmpfs)
OTHER=$WORK/other # the second file system for the EXDEV tests: /dev/shm's tmpfs
POOL=$WORK/pool.pmem
CONF=$WORK/pjdfstest.toml
mkdir -p "$MNT" "$TMPFS_MNT" "$OTHER"

cat >"$CONF" <<EOF
# pjdfstest configuration for Linux (written by scripts/pjdfstest.sh)
[features]
posix_fallocate = {}
utime_now = {}
utimensat = {}
rename_ctime = {}

[settings]
naptime = 0.01
allow_remount = false

[dummy_auth]
entries = [$(IFS=,; echo "${auth_toml[*]}")]
EOF

# run_pjdfstest DIR LOG: runs the suite in DIR; returns pjdfstest's exit status
# (non-zero when a test failed; 124 on timeout).
run_pjdfstest() {
    local dir=$1 log=$2 rc=0
    echo "$ $PJDFSTEST -c $CONF -p $dir -s $OTHER"
    run_with_timeout "$TIMEOUT_SECONDS" "$log" \
        env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE NO_COLOR=1 CLICOLOR=0 "$PJDFSTEST" -c "$CONF" -p "$dir" -s "$OTHER" || rc=$?
    # Strip colour codes in case the tool prints them anyway.
    sed -i 's/\x1b\[[0-9;]*m//g' "$log"
    return "$rc"
}

summary_of() { grep '^Summary:' "$1" | tail -n 1 || true; }
# "Summary: 0 failed, 14 skipped, 384 passed, ..." -> the number before WORD
count_of() { grep -o "[0-9][0-9]* $2," <<<"$1" | head -n 1 | cut -d' ' -f1; }
skipped_names() { awk '$NF == "skipped" && NF == 2 { print $1 }' "$1" | sort -u; }
# Each failed test's line and its message (every line up to the next test's result).
failures_of() {
    awk '
        /^[^ \t]+ +(ok|FAILED|skipped|PASSED UNEXPECTEDLY|failed as expected)$/ || /^Summary:/ {
            p = ($0 ~ / (FAILED|PASSED UNEXPECTEDLY)$/)
        }
        p && NF { print }
    ' "$1"
}
# Each skipped test's line and its reasons.
skip_reasons_of() { # LOG NAME
    awk -v name="$2" '
        /^[^ \t]+ +(ok|FAILED|skipped|PASSED UNEXPECTEDLY|failed as expected)$/ || /^Summary:/ {
            p = ($1 == name && $NF == "skipped")
        }
        p && NF { print }
    ' "$1"
}

echo "==> pjdfstest on warabifs"
start_warabifs "$BIN" "$POOL" "$MNT" "$LOG_DAEMON" "create_if_missing_with_size=$POOL_SIZE,allow_other"
chmod 0777 "$MNT" # the dummy users create files in it
assert_path_max_safe "$MNT"
rc_warabifs=0
run_pjdfstest "$MNT" "$LOG_WARABIFS" || rc_warabifs=$?
stop_warabifs

echo "==> pjdfstest on tmpfs (the reference)"
mount -t tmpfs -o size=4g,mode=0777 warabifs-pjd-tmpfs "$TMPFS_MNT"
assert_path_max_safe "$TMPFS_MNT"
rc_tmpfs=0
run_pjdfstest "$TMPFS_MNT" "$LOG_TMPFS" || rc_tmpfs=$?
umount "$TMPFS_MNT"

summary_warabifs=$(summary_of "$LOG_WARABIFS")
summary_tmpfs=$(summary_of "$LOG_TMPFS")
echo
echo "warabifs: ${summary_warabifs:-no Summary line (pjdfstest exited with status $rc_warabifs)}"
echo "tmpfs:    ${summary_tmpfs:-no Summary line (pjdfstest exited with status $rc_tmpfs)}"

ok=1
if [[ -z $summary_warabifs ]]; then
    echo "pjdfstest did not finish on warabifs (exit status $rc_warabifs); the end of its output:"
    tail -n 30 "$LOG_WARABIFS"
    echo "(the daemon log is $LOG_DAEMON)"
    exit 1
fi
if [[ -z $summary_tmpfs ]]; then
    echo "pjdfstest did not finish on tmpfs (exit status $rc_tmpfs), so the skips cannot be compared; the end of its output:"
    tail -n 30 "$LOG_TMPFS"
    ok=0
fi

failed=$(count_of "$summary_warabifs" failed)
skipped=$(count_of "$summary_warabifs" skipped)
passed=$(count_of "$summary_warabifs" passed)

if ((failed > 0)); then
    ok=0
    echo
    echo "warabifs failures:"
    failures_of "$LOG_WARABIFS"
fi
if [[ -n $summary_tmpfs ]]; then
    tmpfs_failed=$(count_of "$summary_tmpfs" failed)
    if ((tmpfs_failed > 0)); then
        echo
        echo "NOTE: tmpfs itself fails $tmpfs_failed tests on this machine:"
        failures_of "$LOG_TMPFS"
    fi
    extra_skips=$(comm -23 <(skipped_names "$LOG_WARABIFS") <(skipped_names "$LOG_TMPFS"))
    if [[ -n $extra_skips ]]; then
        ok=0
        echo
        echo "skipped on warabifs but not on tmpfs:"
        while read -r name; do
            skip_reasons_of "$LOG_WARABIFS" "$name"
        done <<<"$extra_skips"
    fi
fi
echo "(full output: $LOG_WARABIFS and $LOG_TMPFS)"
if ((ok == 0)); then
    # The result line stays last; cleanup prints nothing on success of the unmounts.
    echo "pjdfstest: $passed passed, $failed failed, $skipped skipped"
    exit 1
fi
echo "pjdfstest: $passed passed, $failed failed, $skipped skipped"
