#!/usr/bin/env bash
# Fresh machine to a live warabifs mount: installs what is missing, builds, makes a
# demo pool the way Warabi's pmem backend does (only if there is none yet), mounts it
# and shows it. Safe to re-run: an existing pool is reused, an existing mount is kept.
#
#   WARABIFS_DEMO_POOL   pool file  (default /tmp/warabifs-demo/demo.pmem)
#   WARABIFS_DEMO_MNT    mount point (default /tmp/warabifs-demo/mnt)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

POOL=${WARABIFS_DEMO_POOL:-/tmp/warabifs-demo/demo.pmem}
MNT=${WARABIFS_DEMO_MNT:-/tmp/warabifs-demo/mnt}

step() { printf '\n==> %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

# The source (file-system name) of what is mounted on $1, empty when nothing is.
# warabifs names its mounts after the pool file.
mounted_source() {
    local target
    target=$(realpath -m "$1")
    awk -v m="$target" '$2 == m { src = $1 } END { print src }' /proc/self/mounts
}

step "checking and installing system packages"
run bash scripts/setup.sh

step "building warabifs (release)"
run cargo build --release --bin warabifs --example warabi_pool

mkdir -p "$(dirname "$POOL")"

step "demo pool $POOL"
if [[ -e $POOL ]]; then
    echo "$POOL exists; using it as it is"
else
    echo "creating it as Warabi's pmem backend would (NULL layout, type-0 regions):"
    echo "RegionID                         bytes asked for"
    run target/release/examples/warabi_pool "$POOL"
    echo "(Warabi records no region size, so warabifs shows each such file with the size"
    echo " libpmemobj gave the region, pmemobj_alloc_usable_size: a little more than asked.)"
fi

step "mounting on $MNT"
mounted=$(mounted_source "$MNT")
if [[ -n $mounted ]] && ! stat "$MNT" >/dev/null 2>&1; then
    # Its daemon is gone ("Transport endpoint is not connected"): clear it, mount anew.
    echo "$MNT is a dead mount of $mounted; unmounting it first"
    run umount "$MNT"
    mounted=""
fi
if [[ -z $mounted ]]; then
    mkdir -p "$MNT"
    # Returns once the mount is live; the daemon stays in the background.
    run target/release/warabifs "$POOL" "$MNT"
elif [[ $mounted == "$(realpath -m "$POOL")" || $mounted == "$POOL" ]]; then
    echo "$MNT is already mounted (warabifs on $mounted); leaving it as it is"
else
    echo "demo: $MNT already has something else mounted on it ($mounted);" \
        "unmount it or set WARABIFS_DEMO_MNT" >&2
    exit 1
fi

step "what is in it"
run ls -l "$MNT"
run df -h "$MNT"
first=$(find "$MNT" -mindepth 1 -maxdepth 1 -type f -size +0 -print -quit)
if [[ -n $first ]]; then
    run getfattr --absolute-names -n user.warabi.region_id "$first"
else
    echo "(no non-empty file at the top of $MNT to show a RegionID for)"
fi

step "done"
echo "The pool stays mounted on $MNT. To unmount it:"
echo "    umount $MNT"
echo "The pool file $POOL is kept; delete it yourself when you no longer need it."
