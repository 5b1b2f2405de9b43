# shellcheck shell=bash
# The kernel's switch for FUSE-over-io_uring, set for a stretch of a script and put back
# as it was on every exit path (normal end, failure, Ctrl-C).
#
#   source scripts/lib/uring.sh
#   uring_switch Y    # new FUSE mounts may use io_uring (warabifs then does, by default)
#   uring_switch N    # they may not: warabifs serves over /dev/fuse
#
# The first call remembers the value found and installs an EXIT trap that restores it;
# a script with its own EXIT trap calls uring_restore from it instead.

URING_SWITCH=/sys/module/fuse/parameters/enable_uring
URING_ORIGINAL=""

uring_restore() {
    if [[ -n $URING_ORIGINAL && -w $URING_SWITCH ]]; then
        echo "$URING_ORIGINAL" >"$URING_SWITCH" || true
        echo "uring: $URING_SWITCH restored to $URING_ORIGINAL" >&2
    fi
}

uring_switch() {
    if [[ ! -e $URING_SWITCH ]]; then
        echo "uring: $URING_SWITCH does not exist: this kernel has no FUSE-over-io_uring (Linux 6.14+ with CONFIG_FUSE_IO_URING)" >&2
        return 1
    fi
    if [[ -z $URING_ORIGINAL ]]; then
        URING_ORIGINAL=$(cat "$URING_SWITCH")
        if [[ -z $(trap -p EXIT) ]]; then
            trap uring_restore EXIT
        fi
    fi
    echo "$1" >"$URING_SWITCH"
    echo "uring: $URING_SWITCH = $(cat "$URING_SWITCH")" >&2
}
