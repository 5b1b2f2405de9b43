# Helpers shared by scripts/pjdfstest.sh and scripts/fsx.sh (sourced, not run).
#
# A mount made here is served by a warabifs started in the foreground (-f) in the
# background of the calling script, so its PID is known: stop_warabifs unmounts and
# then waits for exactly that process, and signals it (by PID) only if it does not exit.
# Callers install a trap that calls stop_warabifs, so every mount is undone on failure.

die() {
    echo "${SCRIPT_NAME:-$0}: error: $*" >&2
    exit 1
}

# Prints the path of a cargo-installed tool: PATH first, then $CARGO_HOME/bin and
# ~/.cargo/bin (where scripts/setup.sh's `cargo install` puts it).
find_tool() {
    local name=$1 dir
    if command -v "$name" 2>/dev/null; then
        return 0
    fi
    for dir in "${CARGO_HOME:-$HOME/.cargo}/bin" "$HOME/.cargo/bin"; do
        if [[ -x $dir/$name ]]; then
            echo "$dir/$name"
            return 0
        fi
    done
    return 1
}

# Builds target/release/warabifs (a no-op when it is up to date); prints its path.
build_warabifs() {
    local root=$1
    if command -v cargo >/dev/null 2>&1; then
        (cd "$root" && cargo build --release --bin warabifs >&2) || die "cargo build --release failed"
    elif [[ ! -x $root/target/release/warabifs ]]; then
        die "cargo is not on PATH and $root/target/release/warabifs does not exist"
    else
        echo "${SCRIPT_NAME:-$0}: WARNING: cargo not found; using the existing target/release/warabifs" >&2
    fi
    echo "$root/target/release/warabifs"
}

# Whether something is mounted exactly on $1 (read from mountinfo, so a dead FUSE mount,
# whose stat fails with ENOTCONN, still counts as mounted).
is_mounted() {
    awk -v m="$1" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# remove_work_dir DIR: deletes a script's scratch directory, but never through a mount
# that is somehow still there (then it warns and leaves DIR).
remove_work_dir() {
    if awk -v w="$1/" 'index($5, w) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
        echo "$SCRIPT_NAME: WARNING: something is still mounted under $1; leaving it" >&2
    else
        rm -rf "$1"
    fi
}

# install_cleanup FUNCTION: runs FUNCTION on exit, and turns Ctrl-C and SIGTERM into
# exits (status 130 and 143) so that it runs then too.
install_cleanup() {
    trap "$1" EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# start_warabifs BIN POOL MNT LOG OPTIONS: mounts in the foreground, in the background of
# this shell; sets WARABIFS_PID and WARABIFS_MNT; returns once the mount is live.
WARABIFS_PID=""
WARABIFS_MNT=""
start_warabifs() {
    local bin=$1 pool=$2 mnt=$3 log=$4 options=$5
    # Warnings, and the one line that says which transport serves the mount.
    WARABIFS_LOG=${WARABIFS_LOG:-warn,warabifs::mount=info} \
        "$bin" "$pool" "$mnt" -f -o "$options" </dev/null >"$log" 2>&1 &
    WARABIFS_PID=$!
    WARABIFS_MNT=$mnt
    local waited=0
    while ! is_mounted "$mnt"; do
        if ! kill -0 "$WARABIFS_PID" 2>/dev/null; then
            wait "$WARABIFS_PID" || true
            WARABIFS_PID=""
            cat "$log" >&2
            die "warabifs exited before mounting $mnt"
        fi
        ((waited < 400)) || die "warabifs did not mount $mnt within 20 s"
        sleep 0.05
        waited=$((waited + 1))
    done
    # Logged just after the mount goes live.
    while ! grep -q 'transport: ' "$log" && ((waited < 400)); do
        sleep 0.05
        waited=$((waited + 1))
    done
    echo "${SCRIPT_NAME:-$0}: $(grep -o -m 1 'transport: .*' "$log" || echo 'transport: not logged')" >&2
}

# Unmounts the mount start_warabifs made (if still mounted) and waits for its daemon to
# close the pool and exit. Safe to call more than once.
stop_warabifs() {
    if [[ -n $WARABIFS_MNT ]] && is_mounted "$WARABIFS_MNT"; then
        if ! fusermount3 -u "$WARABIFS_MNT" 2>/dev/null && ! umount "$WARABIFS_MNT" 2>/dev/null; then
            # Busy or dead: detach it, so nothing is left mounted.
            umount -l "$WARABIFS_MNT" || true
        fi
    fi
    if [[ -n $WARABIFS_PID ]]; then
        local waited=0
        while kill -0 "$WARABIFS_PID" 2>/dev/null && ((waited < 400)); do
            sleep 0.05
            waited=$((waited + 1))
        done
        if kill -0 "$WARABIFS_PID" 2>/dev/null; then
            echo "${SCRIPT_NAME:-$0}: warabifs (PID $WARABIFS_PID) did not exit after the unmount; sending SIGTERM" >&2
            kill -TERM "$WARABIFS_PID" 2>/dev/null || true
            sleep 2
            kill -KILL "$WARABIFS_PID" 2>/dev/null || true
        fi
        wait "$WARABIFS_PID" 2>/dev/null || true
        WARABIFS_PID=""
    fi
}

# Stops the command run_with_timeout is running, if any (by its PID: SIGTERM, then
# SIGKILL after 5 s). Cleanup traps call it before unmounting.
RUNNING_PID=""
stop_running() {
    [[ -n $RUNNING_PID ]] || return 0
    kill -TERM "$RUNNING_PID" 2>/dev/null || true
    local waited=0
    while kill -0 "$RUNNING_PID" 2>/dev/null && ((waited < 50)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    kill -KILL "$RUNNING_PID" 2>/dev/null || true
    wait "$RUNNING_PID" 2>/dev/null || true
    RUNNING_PID=""
}

# run_with_timeout SECONDS LOG CMD...: runs CMD with its output in LOG; if it runs longer
# than SECONDS, stops it (by its PID) and returns 124. Otherwise returns CMD's exit
# status.
run_with_timeout() {
    local limit=$1 log=$2
    shift 2
    "$@" >"$log" 2>&1 &
    RUNNING_PID=$!
    local start=$SECONDS rc=0
    while kill -0 "$RUNNING_PID" 2>/dev/null; do
        if ((SECONDS - start >= limit)); then
            echo "${SCRIPT_NAME:-$0}: '$*' ran for more than $limit s; stopping it (PID $RUNNING_PID)" >&2
            stop_running
            return 124
        fi
        sleep 1
    done
    wait "$RUNNING_PID" || rc=$?
    RUNNING_PID=""
    return "$rc"
}
