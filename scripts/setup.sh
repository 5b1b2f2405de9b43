#!/usr/bin/env bash
# Installs what warabifs needs to build and test, and only what is missing:
# the PMDK and FUSE development packages and the tools the tests use. Safe to re-run.
set -euo pipefail

PACKAGES=(
    libpmemobj-dev libpmem-dev libpmempool-dev libndctl-dev libdaxctl-dev
    fuse3 libfuse3-dev pmdk-tools fio attr pkg-config mount systemd util-linux-extra
    sqlite3 git man-db xfsprogs python3
)

say() { echo "setup: $*"; }
die() { echo "setup: error: $*" >&2; exit 1; }

if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    die "dpkg and apt-get not found: scripts/setup.sh supports Debian and Ubuntu only; install by hand: ${PACKAGES[*]}"
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    # dpkg -s exits 0 for a package that was removed but left its config files behind;
    # only "install ok installed" counts.
    status=$(dpkg -s "$pkg" 2>/dev/null || true)
    if [[ $status != *"Status: install ok installed"* ]]; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} > 0)); then
    if [[ $(id -u) -eq 0 ]]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        die "missing packages (${missing[*]}) and not root, and no sudo to install them; run scripts/setup.sh as root"
    fi
    say "installing ${missing[*]}"
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    say "all ${#PACKAGES[@]} Debian packages present"
fi

if ! command -v cargo >/dev/null 2>&1; then
    die "cargo not found on PATH; install a Rust toolchain (1.85 or newer, e.g. with rustup) and run this again"
fi
say "cargo: $(cargo --version)"
# scripts/test.sh also needs rustfmt and clippy (rustup components of the toolchain).
for tool in fmt clippy; do
    if ! cargo "$tool" --version >/dev/null 2>&1; then
        echo "setup: WARNING: 'cargo $tool' is not available; scripts/test.sh needs it" \
            "(with rustup: rustup component add ${tool/fmt/rustfmt})" >&2
    fi
done

# The conformance tools of scripts/pjdfstest.sh and scripts/fsx.sh, from crates.io, built
# only when missing (or of another minor version). pjdfstest's README lists libacl1-dev
# and acl for Linux builds, but they are not needed: its only use of ACLs (the exacl
# crate, for the NFSv4 ACL tests) is compiled for FreeBSD and macOS only, so a Linux
# build neither links libacl nor runs setfacl. Checked with a clean
# `cargo install --locked pjdfstest@0.2.2` on Debian 12 without libacl1-dev.
CONFORMANCE_TOOLS=("pjdfstest 0.2.2" "fsx 0.3.2")
# PATH first, then where cargo install puts binaries (the scripts look there too).
find_cargo_tool() {
    local dir
    if command -v "$1" 2>/dev/null; then
        return 0
    fi
    for dir in "${CARGO_HOME:-$HOME/.cargo}/bin" "$HOME/.cargo/bin"; do
        if [[ -x $dir/$1 ]]; then
            echo "$dir/$1"
            return 0
        fi
    done
    return 0
}
for entry in "${CONFORMANCE_TOOLS[@]}"; do
    tool=${entry% *} version=${entry#* }
    path=$(find_cargo_tool "$tool")
    have=""
    if [[ -n $path ]]; then
        have=$("$path" --version 2>/dev/null || true) # "pjdfstest 0.2.2"
    fi
    if [[ $have == "$tool ${version%.*}."* ]]; then
        say "$have ($path)"
        continue
    fi
    if [[ -n $path ]]; then
        say "$path is '${have:-of unknown version}'; installing $tool $version"
    else
        say "installing $tool $version (cargo install --locked; takes a minute)"
    fi
    cargo install --locked "$tool@$version"
    path=$(find_cargo_tool "$tool")
    [[ -n $path ]] || die "cargo installed $tool but it is neither on PATH nor in ${CARGO_HOME:-$HOME/.cargo}/bin"
    say "$("$path" --version) ($path)"
done

if [[ -e /dev/fuse ]]; then
    say "/dev/fuse present"
else
    echo "setup: WARNING: /dev/fuse does not exist: warabifs cannot mount here and the FUSE tests will fail" >&2
    echo "setup: WARNING: (load the fuse module with 'modprobe fuse', or give the container --device /dev/fuse)" >&2
fi
