#!/usr/bin/env bash
# Installs warabifs: the binary, the mount(8) helper /sbin/mount.warabifs, the systemd
# template service, the manual pages warabifs(8) and mount.warabifs(8), and the
# documentation (with an example .mount unit). Idempotent.
#
# usage: install.sh [--uninstall] [--binary PATH] [--prefix DIR] [--destdir DIR]
#   --binary   the warabifs executable to install (default: target/release/warabifs)
#   --prefix   where bin/ and share/ go (default: /usr/local)
#   --destdir  staging root prepended to every path (packaging, tests)
#   --uninstall  remove exactly the files an install puts in place
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
mode=install
binary="$root/target/release/warabifs"
prefix=/usr/local
destdir=""

while [ $# -gt 0 ]; do
    case "$1" in
        --uninstall) mode=uninstall; shift ;;
        --binary) binary=$2; shift 2 ;;
        --prefix) prefix=$2; shift 2 ;;
        --destdir) destdir=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument \"$1\"" >&2; exit 2 ;;
    esac
done

bin_dir="$destdir$prefix/bin"
helper="$destdir/sbin/mount.warabifs"
unit_dir="$destdir/etc/systemd/system"
doc_dir="$destdir$prefix/share/doc/warabifs"
man_dir="$destdir$prefix/share/man/man8"
# Generated from the command-line definition (cargo run --example man_pages).
man_pages=(warabifs.8 mount.warabifs.8)
config_dir="$destdir/etc/warabifs"

# Units name the installed binary; rewrite its path when the prefix is not the default.
install_unit() {
    local src=$1 dst=$2
    mkdir -p "$(dirname "$dst")"
    sed "s|/usr/local/|$prefix/|g" "$src" > "$dst.tmp"
    chmod 0644 "$dst.tmp"
    mv "$dst.tmp" "$dst"
}

reload_systemd() {
    if [ -z "$destdir" ] && [ -d /run/systemd/system ] && command -v systemctl > /dev/null; then
        systemctl daemon-reload
    fi
}

do_install() {
    if [ ! -x "$binary" ]; then
        echo "install.sh: no executable at $binary (build it with: cargo build --release)" >&2
        exit 1
    fi
    install -D -m 0755 "$binary" "$bin_dir/warabifs"
    install -D -m 0755 "$here/mount.warabifs" "$helper"
    install_unit "$root/systemd/warabifs@.service" "$unit_dir/warabifs@.service"
    install_unit "$root/systemd/mnt-regions.mount" "$doc_dir/examples/mnt-regions.mount"
    install -D -m 0644 "$root/README.md" "$doc_dir/README.md"
    install -D -m 0644 "$root/docs/SEMANTICS.md" "$doc_dir/SEMANTICS.md"
    install -D -m 0644 "$root/docs/FORMAT.md" "$doc_dir/FORMAT.md"
    for page in "${man_pages[@]}"; do
        install -D -m 0644 "$root/man/$page" "$man_dir/$page"
    done
    mkdir -p "$config_dir"
    reload_systemd
    echo "installed warabifs in $bin_dir, the mount helper as $helper, units in $unit_dir, manual pages in $man_dir"
}

do_uninstall() {
    rm -f "$bin_dir/warabifs" "$helper" "$unit_dir/warabifs@.service"
    rm -f "$doc_dir/examples/mnt-regions.mount" "$doc_dir/README.md" "$doc_dir/SEMANTICS.md" "$doc_dir/FORMAT.md"
    rmdir "$doc_dir/examples" "$doc_dir" 2> /dev/null || true
    for page in "${man_pages[@]}"; do
        rm -f "$man_dir/$page"
    done
    # Settings written by the administrator stay; only an empty directory goes.
    rmdir "$config_dir" 2> /dev/null || true
    reload_systemd
    echo "removed warabifs from $bin_dir, $helper and $unit_dir"
}

"do_$mode"
