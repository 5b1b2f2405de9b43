#!/usr/bin/env python3
"""warabifs against tmpfs, measured in one interleaved run.

Run as root from anywhere:

    python3 bench/run.py [--quick] [--reps N] [--only NAME[,NAME]] [--json FILE]
                         [--transport dev|uring|both] [--floor]

Each repetition runs every selected workload on tmpfs and then on warabifs (pool on
/dev/shm) over each selected transport, so machine noise hits all of them. The table
(stdout) and the JSON file give the median of the repetitions for each, their spread,
and the ratio, defined so that higher is better: warabifs/tmpfs for speeds,
tmpfs/warabifs for times. Progress goes to stderr. See bench/README.md for what each
row measures.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import fcntl
import hashlib
import json
import mmap
import os
import platform
import random
import re
import shlex
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterator, Protocol

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BINARY = REPO / "target" / "release" / "warabifs"
# The FUSE floor (--floor): a FUSE file system that does no work (examples/fuse_floor.rs).
FLOOR_BINARY = REPO / "target" / "release" / "examples" / "fuse_floor"
DEFAULT_REPS = 3
DEFAULT_JSON = REPO / "bench" / "results.json"
DEFAULT_SCALE_JSON = REPO / "bench" / "scale.json"
MIB = 1 << 20
POOL_SIZE = "2G"  # every warabifs pool: 512 MiB + 2 x 256 MiB + growth copies fit
# The pool of 100,000 empty files (about 33 MiB in use). Kept small because it lives for
# the whole run: a pool is allocated in full when created, and memory this VM has not
# backed yet costs a host page fault on first touch, which slowed every later warabifs
# write several times while a 2 GiB files pool held the warm pages.
FILES_POOL_SIZE = "256M"
TMPFS_SIZE = "4G"
RELEASE_TIMEOUT = 20.0  # seconds a daemon may take to let go of its pool after umount
MOUNT_TIMEOUT = 60.0  # seconds a foreground daemon may take to mount
COMMAND_TIMEOUT = 900.0  # seconds any one command (dd, fio, touch...) may take
# This VM gives memory the guest has freed back to its host (virtio-balloon free page
# reporting), and the first touch of such a page costs a host page fault. A step that
# takes fresh pages from it (a page cache filled by a read, a tmpfs file being written)
# ran up to five times slower than the same step given recently used pages, and which
# target drew the cold pages depended on what ran before (creating a pool takes the
# warm pages first). So before each timed step, for either target, this much memory is
# touched and freed: the step starts from backed memory, as on a machine without lazy
# backing. --no-warm turns it off.
WARM_MIB = 1024
# The reporting itself: this VM's kernel reports a freed block of 2^order pages at once
# (min_free_ms 0), so the pages a warm-up freed went back to the host before the step
# could take them, and a first `ls -l` of a million FUSE files, whose kernel inodes and
# dentries take 1.3 GiB the step allocates, ran 12-13 s instead of 9.5-10.8 s. An order
# above the largest free block (10 on x86-64) reports nothing: the run sets it and puts
# back what it found. --page-reporting leaves it alone.
PAGE_REPORTING_ORDER = Path("/sys/module/page_reporting/parameters/page_reporting_order")
NO_PAGE_REPORTING = "11"
TOOLS = ("mount", "umount", "dd", "fio", "touch", "ls", "rm", "sync", "cp")
# Root switches FUSE-over-io_uring on and off here; the kernel offers the rings at INIT
# only while it reads Y. --transport uring|both sets it for the run and puts back what
# it found.
ENABLE_URING = Path("/sys/module/fuse/parameters/enable_uring")
# Transport name -> what the table calls it.
TRANSPORT_NAMES = {"dev": "/dev/fuse", "uring": "FUSE-over-io_uring"}
TRANSPORTS = {"dev": ("dev",), "uring": ("uring",), "both": ("dev", "uring")}
# The real tree of the tree rows: copied into the mount with `cp -r`, then removed.
TREE_SOURCE = Path("/usr/include")


class BenchError(Exception):
    """A mount or a workload failed: that measurement is recorded as an error."""


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP: unwind (unmounting everything) and exit."""


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- sizes, rows


@dataclasses.dataclass(frozen=True)
class Sizes:
    dd_mib: int  # dd sequential write/read
    fio_mib: int  # fio random file; fio sequential write per job
    fio_runtime: int  # seconds of each fio random test
    files: int  # create / ls -l / delete
    pool_files: int  # files in the pool of the mount test
    pool_dirs: int = 10
    batch: int = 500  # names per touch / rm call
    fsync_writes: int = 2000
    fsync_file_mib: int = 64


FULL = Sizes(dd_mib=512, fio_mib=256, fio_runtime=10, files=5000, pool_files=100_000)
QUICK = Sizes(dd_mib=64, fio_mib=32, fio_runtime=3, files=1000, pool_files=10_000)


@dataclasses.dataclass(frozen=True)
class Tree:
    """The real tree of the tree rows, as found at the start of the run."""

    path: Path
    entries: int  # files, directories and symbolic links, the top directory included
    symlinks: int
    mib: float  # bytes in its regular files

    @staticmethod
    def survey(path: Path) -> Tree:
        entries, symlinks, size = 1, 0, 0
        for top, dirs, files in os.walk(path):
            for name in dirs + files:
                st = os.lstat(os.path.join(top, name))
                entries += 1
                symlinks += stat.S_ISLNK(st.st_mode)
                size += st.st_size if stat.S_ISREG(st.st_mode) else 0
        return Tree(path, entries, symlinks, size / MIB)


@dataclasses.dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool  # a speed; otherwise a time or a size
    digits: int


def metric_list(s: Sizes, tree: Tree | None) -> list[Metric]:
    force = "PMEM_IS_PMEM_FORCE=1"
    copy = f"{tree.path} ({tree.entries} entries, {tree.mib:.0f} MiB)" if tree else str(TREE_SOURCE)
    return [
        Metric("seqwrite", f"dd seq write {s.dd_mib} MiB bs=1M conv=fsync", "MB/s", True, 0),
        Metric("seqread", f"dd seq read {s.dd_mib} MiB after drop_caches", "MB/s", True, 0),
        Metric("randwrite", f"fio 4k randwrite psync {s.fio_mib} MiB {s.fio_runtime} s", "IOPS", True, 0),
        Metric("randread", f"fio 4k randread psync {s.fio_mib} MiB {s.fio_runtime} s", "IOPS", True, 0),
        Metric("create", f"create {s.files} empty files (touch x{s.batch})", "s", False, 3),
        Metric("ls", f"ls -l {s.files} files", "s", False, 3),
        Metric("delete", f"delete {s.files} files (rm x{s.batch})", "s", False, 3),
        Metric("fsync_p50", "fsync after 4 KiB pwrite, p50", "us", False, 1),
        Metric("fsync_p99", "fsync after 4 KiB pwrite, p99", "us", False, 1),
        Metric("fsync_p50_force", f"fsync after 4 KiB pwrite, p50, {force}", "us", False, 1),
        Metric("fsync_p99_force", f"fsync after 4 KiB pwrite, p99, {force}", "us", False, 1),
        Metric("mount_ms", f"mount time, pool of {s.pool_files} files", "ms", False, 1),
        Metric("mount_rss", "daemon RSS after mount + ls -l of one dir", "MiB", False, 1),
        Metric("jobs1", f"fio seq write bs=1M, 1 job x {s.fio_mib} MiB", "MB/s", True, 0),
        Metric("jobs2", f"fio seq write bs=1M, 2 jobs x {s.fio_mib} MiB", "MB/s", True, 0),
        Metric("cp_tree", f"cp -r {copy}", "s", False, 2),
        Metric("rm_tree", "rm -rf of that copy", "s", False, 2),
    ]


# Names accepted by --only, and the rows each selects.
SELECTABLE = {
    "seqwrite": ("seqwrite",),
    "seqread": ("seqread",),
    "randwrite": ("randwrite",),
    "randread": ("randread",),
    "create": ("create",),
    "ls": ("ls",),
    "delete": ("delete",),
    "fsync": ("fsync_p50", "fsync_p99", "fsync_p50_force", "fsync_p99_force"),
    "mount": ("mount_ms", "mount_rss"),
    "jobs": ("jobs1", "jobs2"),
    "tree": ("cp_tree", "rm_tree"),
}


# --------------------------------------------------------------------------- processes


def run(cmd: list, *, cwd: Path | None = None, env: dict | None = None, capture: bool = False):
    """Runs a command; raises BenchError with its stderr when it fails."""
    argv = [str(c) for c in cmd]
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{argv[0]} did not finish within {COMMAND_TIMEOUT:.0f} s") from e
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(argv[:4])}... exited {proc.returncode}: {proc.stderr.strip()[-600:]}")
    return proc


def run_batched(cmd: list, names: list[str], cwd: Path, batch: int) -> None:
    """`cmd -- NAME...` with `batch` names per call, as `xargs -n batch cmd` does."""
    for i in range(0, len(names), batch):
        run([*cmd, "--", *names[i : i + batch]], cwd=cwd)


def warm_free_memory(mib: int | None = None) -> None:
    """Touches and frees MIB (default WARM_MIB) of memory, so that the host backs it (see
    WARM_MIB). Nothing with --no-warm."""
    if WARM_MIB == 0:
        return
    with mmap.mmap(-1, (mib or WARM_MIB) * MIB) as memory:
        for offset in range(0, len(memory), mmap.PAGESIZE):
            memory[offset] = 1


def listing_warm_mib(entries: int) -> int:
    """Memory to warm before listing a directory of ENTRIES: the first `ls -l` of a FUSE
    directory makes the kernel allocate an inode and a dentry for each entry (about
    1.3 KiB; tmpfs has them already), and ls holds each entry (about 0.5 KiB). At a
    million entries that is more than WARM_MIB, and the rest came from cold pages."""
    return max(WARM_MIB, 512 + entries * 2 // 1024)


def timed(action: Callable[[], object], warm_mib: int | None = None) -> float:
    warm_free_memory(warm_mib)
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def wait_mounted(proc: subprocess.Popen, mnt: Path, what: str, started: float, output: Callable[[], str]) -> None:
    """Polls until MNT shows in mountinfo. Raises if the daemon PROC (called WHAT) exits
    first, with what OUTPUT() says it printed, or if MOUNT_TIMEOUT passes after STARTED
    (a time.perf_counter() value)."""
    while not is_mounted(mnt):
        if proc.poll() is not None:
            raise BenchError(f"{what} exited {proc.returncode} before mounting: {output()}")
        if time.perf_counter() - started > MOUNT_TIMEOUT:
            raise BenchError(f"{what} did not mount within {MOUNT_TIMEOUT:.0f} s")
        time.sleep(0.0005)


def tail(log_file, chars: int = 600) -> str:
    """The last CHARS characters written to LOG_FILE (an open text file)."""
    log_file.seek(0)
    return log_file.read()[-chars:]


def stop_child(proc: subprocess.Popen, timeout: float) -> None:
    """Waits for a child we started; signals it (by its PID only) if it does not exit."""
    try:
        proc.wait(timeout=timeout)
        return
    except subprocess.TimeoutExpired:
        name = Path(proc.args[0]).name
        log(f"warning: {name} (pid {proc.pid}) still running {timeout:.0f} s after umount; SIGTERM")
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Holds SIGINT, SIGTERM and SIGHUP back until the block is done; one that came in
    meanwhile then raises Interrupted. Children started inside inherit the mask."""
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _on_signal(signum: int, _frame) -> None:
    # Ignore further signals so that the unwinding (unmounts) runs to its end.
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(signal.Signals(signum).name)


# --------------------------------------------------------------------------- enable_uring


def read_enable_uring() -> str:
    return ENABLE_URING.read_text().strip()


def write_enable_uring(value: str) -> None:
    ENABLE_URING.write_text(f"{value}\n")


@contextlib.contextmanager
def uring_enabled(needed: bool) -> Iterator[str | None]:
    """When NEEDED, enable_uring reads Y inside the block, and afterwards what it read
    before, on every way out: the end, an error, a failed write, Interrupted. Yields the
    value found (None when not NEEDED: then enable_uring is not touched).

    When it already reads Y, the bench writes nothing, at the start or at the end: the
    switch is global, and whoever set it (a test script in another shell) may change it
    during the run and will put it back itself."""
    if not needed:
        yield None
        return
    try:
        found = read_enable_uring()
    except OSError as e:
        raise SystemExit(f"run.py: this kernel has no FUSE-over-io_uring ({ENABLE_URING}: {e})") from e
    changed = found != "Y"
    try:
        if changed:
            log(f"setting {ENABLE_URING} to Y for the run (it reads {found})")
            write_enable_uring("Y")
        yield found
    finally:
        if changed:
            restore_setting(ENABLE_URING, found)
        elif read_enable_uring() != "Y":
            log(f"warning: {ENABLE_URING} was set to N by someone else during the run; uring rows may show errors")


def restore_setting(path: Path, found: str) -> None:
    """Writes FOUND back to the kernel setting at PATH unless it is there already, so it
    can run twice. SIGINT, SIGTERM and SIGHUP wait until it is done: their Interrupted
    must not cut it short."""
    with signals_deferred():
        try:
            if path.read_text().strip() != found:
                path.write_text(f"{found}\n")
            log(f"{path} restored to {found}")
        except OSError as e:
            message = f"cannot restore {path} to {found} ({e}); write {found} to it by hand"
            raise SystemExit(f"run.py: {message}") from e


# --------------------------------------------------------------------------- page reporting


@contextlib.contextmanager
def page_reporting_off(wanted: bool) -> Iterator[str | None]:
    """When WANTED and the kernel reports free pages to its host, none is reported inside
    the block (PAGE_REPORTING_ORDER), and afterwards the order reads what it read before,
    on every way out. Yields the order found (None when nothing was changed)."""
    try:
        found = PAGE_REPORTING_ORDER.read_text().strip() if wanted else None
    except OSError:
        found = None
    if found is None or found == NO_PAGE_REPORTING:
        yield None
        return
    try:
        log(f"free page reporting off for the run ({PAGE_REPORTING_ORDER}: {found} -> {NO_PAGE_REPORTING})")
        PAGE_REPORTING_ORDER.write_text(f"{NO_PAGE_REPORTING}\n")
        yield found
    finally:
        restore_setting(PAGE_REPORTING_ORDER, found)


# --------------------------------------------------------------------------- mounts


def _mountinfo_escape(path: Path) -> str:
    s = str(path)
    for ch, esc in (("\\", "\\134"), (" ", "\\040"), ("\t", "\\011"), ("\n", "\\012")):
        s = s.replace(ch, esc)
    return s


def mounts_under(root: Path) -> list[str]:
    prefix = _mountinfo_escape(root)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def is_mounted(path: Path) -> bool:
    esc = _mountinfo_escape(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == esc for line in f)


def unmount(mnt: Path) -> None:
    """umount MNT if it is mounted; retries when busy, then detaches it (umount -l)."""
    for _ in range(25):
        if not is_mounted(mnt):
            return
        if subprocess.run(["umount", str(mnt)], stderr=subprocess.PIPE).returncode == 0:
            return
        time.sleep(0.2)
    log(f"warning: {mnt} stays busy; detaching it with umount -l")
    subprocess.run(["umount", "-l", str(mnt)])


def wait_released(pool: Path, timeout: float = RELEASE_TIMEOUT) -> bool:
    """Polls flock(LOCK_EX|LOCK_NB) on the pool until its daemon has let go of it."""
    try:
        fd = os.open(pool, os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    log(f"warning: {pool} still locked {timeout:.0f} s after umount")
                    return False
                time.sleep(0.005)
    finally:
        os.close(fd)


def drop_caches(path: Path) -> None:
    run(["sync", "-f", path])  # syncfs of this file system only
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


class Workspace:
    """Private mount points (under /tmp) and pools (under the pool directory)."""

    def __init__(self, pool_parent: Path):
        self.root = Path(tempfile.mkdtemp(prefix="warabifs-bench-", dir="/tmp"))
        self.pools = Path(tempfile.mkdtemp(prefix="warabifs-bench-", dir=pool_parent))
        self._count = 0

    def _name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}-{self._count}"

    def new_pool(self, stem: str) -> Path:
        return self.pools / f"{self._name(stem)}.pmem"

    def new_file(self, stem: str) -> Path:
        return self.root / self._name(stem)

    @contextlib.contextmanager
    def mountpoint(self, stem: str) -> Iterator[Path]:
        mnt = self.root / self._name(stem)
        mnt.mkdir()
        try:
            yield mnt
        finally:
            with contextlib.suppress(OSError):
                mnt.rmdir()

    def close(self) -> None:
        shutil.rmtree(self.pools, ignore_errors=True)
        left = mounts_under(self.root)
        if left:  # never rmtree through a mount
            log(f"warning: still mounted, {self.root} left in place: {', '.join(left)}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


class Target(Protocol):
    column: str  # "tmpfs", "warabifs_dev", "floor_uring"...: the column its figures go to
    name: str

    def mounted(self) -> contextlib.AbstractContextManager[Path]: ...


class Tmpfs:
    column = name = "tmpfs"

    def __init__(self, ws: Workspace):
        self.ws = ws

    @contextlib.contextmanager
    def mounted(self) -> Iterator[Path]:
        with self.ws.mountpoint("tmpfs") as mnt:
            try:
                run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", mnt])
                yield mnt
            finally:
                unmount(mnt)


def column_of(kind: str, transport: str) -> str:
    """The column of KIND ("warabifs" or "floor") over TRANSPORT ("dev" or "uring")."""
    return f"{kind}_{transport}"


class Warabifs:
    """warabifs over one transport: `-o io_uring=off` (dev) or `-o io_uring=on` (uring),
    which fails the mount unless the rings serve it."""

    def __init__(self, ws: Workspace, binary: Path, options: str, transport: str, force_pmem: bool = False):
        self.ws = ws
        self.binary = binary
        self.options = ",".join(o for o in (f"io_uring={'on' if transport == 'uring' else 'off'}", options) if o)
        self.column = column_of("warabifs", transport)
        self.name = f"warabifs over {TRANSPORT_NAMES[transport]}" + (" (PMEM_IS_PMEM_FORCE=1)" if force_pmem else "")
        self.env = {k: v for k, v in os.environ.items() if k != "PMEM_IS_PMEM_FORCE"}
        if force_pmem:
            self.env["PMEM_IS_PMEM_FORCE"] = "1"

    def _o(self, *options: str) -> list[str]:
        return ["-o", ",".join((*options, self.options))]

    @contextlib.contextmanager
    def mounted(self, pool: Path | None = None, size: str = POOL_SIZE) -> Iterator[Path]:
        """Mounts POOL (default: a fresh pool, deleted afterwards) with the daemonizing
        `warabifs POOL MNT -o create_if_missing_with_size=SIZE`."""
        fresh = pool is None
        pool = pool or self.ws.new_pool("data")
        with self.ws.mountpoint("warabifs") as mnt:
            ok = released = False
            try:
                cmd = [self.binary, pool, mnt, *self._o(f"create_if_missing_with_size={size}")]
                # Interrupted while this waits, it would kill the launcher but not the
                # daemon it started, which could mount after the unwinding unmounted
                # MNT. So a signal waits for the launcher, which returns once the mount
                # is live or has failed, and the finally below unmounts it.
                with signals_deferred():
                    run(cmd, env=self.env)
                yield mnt
                ok = True
            finally:
                unmount(mnt)
                released = wait_released(pool)
                if fresh:
                    pool.unlink(missing_ok=True)
            if ok and not released:
                raise BenchError(f"warabifs did not release {pool} within {RELEASE_TIMEOUT:.0f} s")

    @contextlib.contextmanager
    def foreground(self, pool: Path) -> Iterator[tuple[Path, int, float]]:
        """Starts `warabifs POOL MNT -f` and yields (MNT, daemon PID, seconds from the
        start of the process until the mount shows in /proc/self/mountinfo)."""
        log_path = self.ws.new_file("warabifs-foreground.log")
        with self.ws.mountpoint("warabifs-fg") as mnt, open(log_path, "w+") as errlog:
            proc = None
            ok = released = False
            try:
                start = time.perf_counter()
                proc = subprocess.Popen(
                    [str(self.binary), str(pool), str(mnt), "-f", *self._o()],
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=errlog,
                )
                wait_mounted(proc, mnt, "warabifs -f", start, lambda: tail(errlog))
                elapsed = time.perf_counter() - start
                yield mnt, proc.pid, elapsed
                ok = True
            finally:
                unmount(mnt)
                if proc is not None:
                    stop_child(proc, RELEASE_TIMEOUT)
                released = wait_released(pool)
            if ok and not released:
                raise BenchError(f"warabifs did not release {pool} within {RELEASE_TIMEOUT:.0f} s")


class Floor:
    """The FUSE floor: `fuse_floor MNT`, which talks to the kernel as warabifs does but
    keeps no data, so its figures are what the FUSE round trips alone allow. It runs
    over one transport (`--io-uring off|on`) and says in its log which one serves it."""

    def __init__(self, ws: Workspace, binary: Path, writeback_cache: bool, transport: str):
        self.ws = ws
        self.binary = binary
        self.column = column_of("floor", transport)
        self.name = f"floor over {TRANSPORT_NAMES[transport]}"
        self.transport = transport
        # Like for like: the floor asks for the writeback cache when warabifs does.
        self.flags = ["--io-uring", "on" if transport == "uring" else "off"]
        self.flags += ["--writeback-cache"] if writeback_cache else []
        # Only the line that names the transport (logged by warabifs::mount::start_rings).
        self.env = dict(os.environ, RUST_LOG="warabifs::mount=info", NO_COLOR="1")

    @contextlib.contextmanager
    def mounted(self) -> Iterator[Path]:
        log_path = self.ws.new_file("floor.log")
        with self.ws.mountpoint("floor") as mnt, open(log_path, "w+") as errlog:
            proc = None
            try:
                proc = subprocess.Popen(
                    [str(self.binary), str(mnt), *self.flags],
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=errlog,
                )
                started = time.perf_counter()
                wait_mounted(proc, mnt, "fuse_floor", started, lambda: tail(errlog))
                self._check_transport(proc, errlog, started)
                yield mnt
            finally:
                unmount(mnt)
                if proc is not None:
                    stop_child(proc, RELEASE_TIMEOUT)

    def _check_transport(self, proc: subprocess.Popen, errlog, started: float) -> None:
        """Waits for the floor's `transport: ` line and checks it names the transport
        asked for. The mount shows before the floor has settled its transport, and with
        `--io-uring on` it exits (unmounting) when the rings do not come."""
        while True:
            said = re.search(r"transport: (.*)", tail(errlog))
            if said:
                break
            if proc.poll() is not None:
                raise BenchError(f"fuse_floor exited {proc.returncode} before naming its transport: {tail(errlog)}")
            if time.perf_counter() - started > MOUNT_TIMEOUT:
                raise BenchError(f"fuse_floor did not name its transport within {MOUNT_TIMEOUT:.0f} s")
            time.sleep(0.001)
        if said[1].startswith("FUSE-over-io_uring") != (self.transport == "uring"):
            raise BenchError(f"fuse_floor asked for {TRANSPORT_NAMES[self.transport]} but says: transport: {said[1]}")


# --------------------------------------------------------------------------- workloads


@dataclasses.dataclass
class Bench:
    sizes: Sizes
    want: set[str]  # selected row keys
    ws: Workspace
    tmpfs: Tmpfs
    warabifs: list[Warabifs]  # one per selected transport
    warabifs_force: list[Warabifs]  # the same with PMEM_IS_PMEM_FORCE=1
    floors: list[Floor]  # with --floor, one per selected transport
    tree: Tree | None = None  # with the tree rows
    _files_pool: Path | None = None

    def files_pool(self) -> Path:
        """The pool holding `pool_files` empty files in `pool_dirs` directories, built
        once per run through a warabifs mount."""
        if self._files_pool is None:
            s = self.sizes
            pool = self.ws.new_pool("files")
            log(f"building a pool of {s.pool_files} files for the mount test")
            per_dir = s.pool_files // s.pool_dirs
            names = [f"f{i:06d}" for i in range(per_dir)]
            with self.warabifs[0].mounted(pool, FILES_POOL_SIZE) as mnt:
                seconds = timed(lambda: [make_files(mnt / f"d{d}", names, s.batch) for d in range(s.pool_dirs)])
                st = os.statvfs(mnt)
            used = (st.f_blocks - st.f_bfree) * st.f_frsize // MIB
            log(f"  built in {seconds:.1f} s; {used} of {pool.stat().st_size // MIB} MiB of the pool in use")
            self._files_pool = pool
        return self._files_pool


def make_files(directory: Path, names: list[str], batch: int) -> None:
    directory.mkdir()
    run_batched(["touch"], names, directory, batch)


def dd_mb_per_s(*operands: str) -> float:
    """Runs dd; returns MB/s (10^6 bytes) from the byte count and seconds it reports."""
    warm_free_memory()
    err = run(["dd", *operands], env=dict(os.environ, LC_ALL="C")).stderr
    m = re.search(r"^(\d+) bytes .* copied, ([0-9.e+-]+) s", err, re.M)
    if not m:
        raise BenchError(f"cannot parse dd output: {err.strip()}")
    return int(m[1]) / float(m[2]) / 1e6


def fio_job(*options: str) -> dict:
    """Runs fio with JSON output; returns the first (group-reported) job."""
    warm_free_memory()
    out = run(["fio", "--output-format=json", "--ioengine=psync", *options], capture=True).stdout
    job = json.loads(out[out.index("{") :])["jobs"][0]
    if job.get("error"):
        raise BenchError(f"fio job error {job['error']}")
    return job


def seq_dd(b: Bench, target: Target) -> dict[str, float]:
    out = {}
    with target.mounted() as mnt:
        path = mnt / "seq.dat"
        write = dd_mb_per_s("if=/dev/zero", f"of={path}", "bs=1M", f"count={b.sizes.dd_mib}", "conv=fsync")
        if "seqwrite" in b.want:
            out["seqwrite"] = write
        if "seqread" in b.want:
            drop_caches(mnt)
            out["seqread"] = dd_mb_per_s(f"if={path}", "of=/dev/null", "bs=1M")
    return out


def rand_fio(b: Bench, target: Target) -> dict[str, float]:
    s = b.sizes
    out = {}
    with target.mounted() as mnt:
        common = [f"--filename={mnt / 'rand.dat'}", f"--size={s.fio_mib}M", "--bs=4k"]
        timed_run = ["--name=rand", "--time_based", f"--runtime={s.fio_runtime}"]
        # Lay the file out with data (what fio does before a read job), then run.
        fio_job("--name=layout", *common, "--rw=randread", "--create_only=1")
        if "randwrite" in b.want:
            out["randwrite"] = fio_job(*timed_run, *common, "--rw=randwrite")["write"]["iops"]
        if "randread" in b.want:
            drop_caches(mnt)
            out["randread"] = fio_job(*timed_run, *common, "--rw=randread")["read"]["iops"]
    return out


def many_files(b: Bench, target: Target) -> dict[str, float]:
    s = b.sizes
    names = [f"f{i:06d}" for i in range(s.files)]
    out = {}
    with target.mounted() as mnt:
        directory = mnt / "files"
        directory.mkdir()
        out["create"] = timed(lambda: run_batched(["touch"], names, directory, s.batch))
        if "ls" in b.want:
            out["ls"] = timed(lambda: run(["ls", "-l", directory]))
        if "delete" in b.want:
            out["delete"] = timed(lambda: run_batched(["rm"], names, directory, s.batch))
    return {k: v for k, v in out.items() if k in b.want}


def fsync_latency(b: Bench, target: Target) -> dict[str, float]:
    s = b.sizes
    size = s.fsync_file_mib * MIB
    rng = random.Random(4096)
    data = rng.randbytes(4096)
    latencies = []
    with target.mounted() as mnt:
        fd = os.open(mnt / "fsync.dat", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            chunk = bytes(MIB)
            for offset in range(0, size, MIB):  # lay the file out first
                os.pwrite(fd, chunk, offset)
            os.fsync(fd)
            for _ in range(s.fsync_writes):
                os.pwrite(fd, data, rng.randrange(size // 4096) * 4096)
                start = time.perf_counter_ns()
                os.fsync(fd)
                latencies.append(time.perf_counter_ns() - start)
        finally:
            os.close(fd)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"fsync_p50": cuts[49] / 1000, "fsync_p99": cuts[98] / 1000}


def mount_time(b: Bench, target: Target) -> dict[str, float]:
    assert isinstance(target, Warabifs)
    with target.foreground(b.files_pool()) as (mnt, pid, seconds):
        run(["ls", "-l", mnt / "d0"])
        status = Path(f"/proc/{pid}/status").read_text()
    rss = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    if not rss:
        raise BenchError(f"no VmRSS in /proc/{pid}/status")
    return {"mount_ms": seconds * 1000, "mount_rss": int(rss[1]) / 1024}


def seq_jobs(b: Bench, target: Target) -> dict[str, float]:
    out = {}
    for jobs in (1, 2):
        with target.mounted() as mnt:
            job = fio_job(
                "--name=seq",
                f"--directory={mnt}",
                "--rw=write",
                "--bs=1M",
                f"--size={b.sizes.fio_mib}M",
                f"--numjobs={jobs}",
                "--group_reporting",
                "--end_fsync=1",
            )
            out[f"jobs{jobs}"] = job["write"]["bw_bytes"] / 1e6
    return out


def copy_tree(b: Bench, target: Target) -> dict[str, float]:
    """`cp -r` of the real tree into a fresh mount, then `rm -rf` of the copy. The
    source is read into the page cache first, so every target copies from memory."""
    assert b.tree is not None
    tree = b.tree
    out = {}
    with target.mounted() as mnt:
        copy = mnt / tree.path.name
        drop_caches(mnt)
        read_tree(tree.path)
        out["cp_tree"] = timed(lambda: run(["cp", "-r", tree.path, copy]))
        copied = count_entries(copy)
        if copied != tree.entries:
            raise BenchError(f"cp -r {tree.path} made {copied} entries of {tree.entries}")
        run(["sync", "-f", mnt])  # the removal should not wait for the copy's writeback
        out["rm_tree"] = timed(lambda: run(["rm", "-rf", copy]))
        if os.path.lexists(copy):
            raise BenchError(f"{copy} still exists after rm -rf")
    return {k: v for k, v in out.items() if k in b.want}


def read_tree(path: Path) -> None:
    """Reads every regular file under PATH, so that it is in the page cache."""
    for top, _dirs, files in os.walk(path):
        for name in files:
            file = Path(top, name)
            if file.is_file() and not file.is_symlink():
                with open(file, "rb") as f:
                    while f.read(MIB):
                        pass


def count_entries(path: Path) -> int:
    """Entries under PATH, PATH included, counted as Tree.survey counts them."""
    return 1 + sum(len(dirs) + len(files) for _top, dirs, files in os.walk(path))


@dataclasses.dataclass(frozen=True)
class Group:
    """Workloads that share one fresh mount (or pool) per target and repetition."""

    name: str
    keys: tuple[str, ...]  # the figures `run` returns
    run: Callable[[Bench, Target], dict[str, float]]
    tmpfs: bool = True
    floor: bool = True  # the floor can run it
    force_variant: bool = False  # also on warabifs with PMEM_IS_PMEM_FORCE=1: rows KEY_force

    def rows(self) -> tuple[str, ...]:
        return self.keys + tuple(f"{k}_force" for k in self.keys) if self.force_variant else self.keys


GROUPS = [
    Group("seq", ("seqwrite", "seqread"), seq_dd),
    Group("rand", ("randwrite", "randread"), rand_fio),
    Group("files", ("create", "ls", "delete"), many_files),
    Group("fsync", ("fsync_p50", "fsync_p99"), fsync_latency, force_variant=True),
    # The floor has no pool to mount.
    Group("mount", SELECTABLE["mount"], mount_time, tmpfs=False, floor=False),
    Group("jobs", SELECTABLE["jobs"], seq_jobs),
    Group("tree", SELECTABLE["tree"], copy_tree),
]


def variants(g: Group, b: Bench) -> list[tuple[Target, tuple[str, ...]]]:
    """(target, suffixes): a result KEY of the target is recorded as KEY+suffix. tmpfs'
    and the floor's fsync figures also stand beside the PMEM_IS_PMEM_FORCE=1 rows.
    The order is the order of the runs in a repetition."""
    both = ("", "_force") if g.force_variant else ("",)
    out: list[tuple[Target, tuple[str, ...]]] = []
    if g.tmpfs:
        out.append((b.tmpfs, both))
    out += [(w, ("",)) for w in b.warabifs]
    if g.force_variant:
        out += [(w, ("_force",)) for w in b.warabifs_force]
    if g.floor:
        out += [(f, both) for f in b.floors]
    return out


def planned_columns(b: Bench) -> dict[str, set[str]]:
    """For each selected row, the columns that measure it (the others show `-`)."""
    plan: dict[str, set[str]] = defaultdict(set)
    for g in GROUPS:
        for target, suffixes in variants(g, b):
            for key in g.keys:
                for suffix in suffixes:
                    if key + suffix in b.want:
                        plan[key + suffix].add(target.column)
    return plan


def run_all(b: Bench, reps: int, results: dict, errors: list) -> None:
    groups = [g for g in GROUPS if b.want.intersection(g.rows())]
    for rep in range(1, reps + 1):
        for g in groups:
            for target, suffixes in variants(g, b):
                log(f"rep {rep}/{reps}: {g.name} on {target.name}")
                start = time.monotonic()
                try:
                    values = g.run(b, target)
                except (BenchError, OSError, ValueError, KeyError) as e:
                    log(f"  ERROR: {e}")
                    errors.append({"rep": rep, "group": g.name, "target": target.name, "error": str(e)})
                    continue
                for key, value in values.items():
                    for suffix in suffixes:
                        if key + suffix in b.want:
                            results[key + suffix][target.column].append(value)
                shown = ", ".join(f"{k}={v:.6g}" for k, v in values.items())
                log(f"  {shown} ({time.monotonic() - start:.1f} s)")


# --------------------------------------------------------------------------- scale

# The scale row (--scale): pools of many Warabi-made regions and of many files, each
# figure beside its floor. See bench/README.md.
SCALE_SIZES = (100_000, 1_000_000)
# Five, not three: at a million entries one repetition of a listing or a mount may run
# 40 % over the others on this shared VM, and the growth bound is checked on medians.
DEFAULT_SCALE_REPS = 5
SCALE_REGION_BYTES = 100  # a busy provider's small regions, as in issue 20
EXAMPLES = REPO / "target" / "release" / "examples"
SCALE_EXAMPLES = ("warabi_pool", "files_pool", "pool_scan")
# Bounds of the scale row for its largest pools: figure / floor at most this, RSS under
# this, and growth from 10x fewer regions or files at most SCALE_GROWTH (scaled to the
# sizes run).
SCALE_BOUNDS = {"mount": 3.0, "ls": 2.0, "tool_ls": 3.0}
SCALE_RSS_MIB = 200.0
SCALE_GROWTH = 11.0


def scale_pool_bytes(count: int) -> int:
    """Pool size for COUNT regions or files: 1 KiB each (about five times what their
    objects take), at least 64 MiB."""
    return max(64 * MIB, count * 1024)


def make_scale_pool(ws: Workspace, kind: str, count: int) -> tuple[Path, float]:
    """A pool of COUNT Warabi-made regions (made with libpmemobj, as Warabi's backend
    does) or COUNT empty files (made through warabifs' own core, the records a mount
    writes). Returns the pool and the seconds making it took."""
    pool = ws.new_pool(f"scale-{kind}-{count}")
    size = str(scale_pool_bytes(count))
    if kind == "regions":
        cmd = [EXAMPLES / "warabi_pool", pool, "--size", size, "--regions", count]
        cmd += ["--region-size", SCALE_REGION_BYTES, "--quiet"]
    else:
        cmd = [EXAMPLES / "files_pool", pool, "--size", size, "--files", count]
    # Making the pool is not measured: persist with plain flushes, not msync per object.
    env = dict(os.environ, PMEM_IS_PMEM_FORCE="1")
    start = time.perf_counter()
    run(cmd, env=env)
    return pool, time.perf_counter() - start


def scale_names(b: Bench, pool: Path, kind: str, count: int) -> list[str]:
    """The names the pool's root lists, in the order the files were made: the
    RegionIDs in their sorted order (from `warabifs ls`, which lists them as readdir does), or f0000000, f0000001, ... The order
    matters to the floor: `ls` sorts what it reads, and a directory read back in (or
    against) sorted order sorts several times faster."""
    if kind == "files":
        return [f"f{i:07d}" for i in range(count)]
    out = run([b.warabifs[0].binary, "ls", pool], capture=True).stdout
    names = [line.rsplit("/", 1)[1] for line in out.splitlines() if line.startswith("region ")]
    if len(names) != count:
        raise BenchError(f"warabifs ls listed {len(names)} regions, expected {count}")
    return names


def counted_lines(cmd: str) -> int:
    out = run(["sh", "-c", cmd], capture=True).stdout.strip()
    return int(out)


def timed_listing(directory: Path, long: bool, expected: int) -> float:
    """Seconds of `ls [-l] DIR | wc -l`; checks that it counted EXPECTED entries."""
    flag = "-l " if long else ""
    cmd = f"ls {flag}{shlex.quote(str(directory))} | wc -l"
    lines = 0

    def action() -> None:
        nonlocal lines
        lines = counted_lines(cmd)

    seconds = timed(action, listing_warm_mib(expected))
    want = expected + (1 if long else 0)  # ls -l adds a "total" line
    if lines != want:
        raise BenchError(f"{cmd} counted {lines} lines, expected {want}")
    return seconds


def scan_floor(pool: Path) -> float:
    """libpmemobj's own scan of POOL: open and visit every type-0 object."""
    warm_free_memory()
    out = run([EXAMPLES / "pool_scan", pool, "--type-num", "0"], capture=True).stdout
    m = re.search(r"seconds=([0-9.]+)", out)
    if not m:
        raise BenchError(f"cannot parse pool_scan output: {out.strip()}")
    return float(m[1])


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """FIELD of /proc/PID/status in MiB: VmRSS (all resident pages), RssAnon (the
    daemon's own memory) or RssShmem (pages of the pool mapping, in /dev/shm)."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = re.search(rf"^{field}:\s+(\d+) kB", status, re.M)
    if not rss:
        raise BenchError(f"no {field} in /proc/{pid}/status")
    return int(rss[1]) / 1024


def scale_case(b: Bench, kind: str, count: int, reps: int) -> dict[str, list[float]]:
    """Every figure of one pool (regions or files, COUNT of them), REPS times each, each
    repetition measuring the floors right after warabifs, so that noise of the shared
    machine hits both."""
    runs: dict[str, list[float]] = defaultdict(list)
    pool, made = make_scale_pool(b.ws, kind, count)
    log(f"scale: pool of {count} {kind} made in {made:.1f} s ({pool.stat().st_size // MIB} MiB)")
    with contextlib.ExitStack() as stack:
        stack.callback(pool.unlink, missing_ok=True)
        for rep in range(reps):
            runs["mount_first"].append(first_mount(b, pool))
        log("scale: first mounts of copies: " + ", ".join(f"{v:.3f}" for v in runs["mount_first"]))
        tmpfs = stack.enter_context(b.tmpfs.mounted())
        log(f"scale: {count} files of the same names in tmpfs")
        for name in scale_names(b, pool, kind, count):
            os.close(os.open(tmpfs / name, os.O_CREAT | os.O_WRONLY, 0o644))
        warm_kernel_slabs(b, pool, count)
        for rep in range(reps):
            scale_rep(b, pool, tmpfs, count, runs=runs)
            log(f"  rep {rep + 1}: " + ", ".join(f"{k}={v[-1]:.3f}" for k, v in runs.items() if k != "mount_first"))
    return runs


def first_mount(b: Bench, pool: Path) -> float:
    """Seconds until a copy of POOL, never mounted, is mounted: for a pool only Warabi
    has used, the first mount writes warabifs' metadata. A copy each time, so that the
    first mount has as many repetitions as the others."""
    copy = b.ws.new_pool(f"{pool.stem}-first")
    shutil.copyfile(pool, copy)
    # As the later mounts have it (after a listing's warm-up): the daemon's memory from
    # pages the host backs. Right after a million-object pool and its copy were
    # written, first mounts of 1M files took 1.24-1.59 s against 0.96-1.08 later.
    warm_free_memory()
    try:
        with b.warabifs[0].foreground(copy) as (_mnt, _pid, mounted):
            return mounted
    finally:
        copy.unlink(missing_ok=True)


def warm_kernel_slabs(b: Bench, pool: Path, count: int) -> None:
    """An untimed mount and `ls -l` of POOL before the repetitions (its first mount, as
    first_mount measured on copies). The first `ls -l` of a FUSE directory makes the
    kernel take slab pages for an inode and a dentry per entry, which the anonymous
    warm-up does not reach (the kernel keeps them apart), and on this VM a page never
    touched costs a host fault: the first repetition at a million entries was the
    slowest in every run (14.2 s against 11.3 and 9.0; 8.5 s against 6.3-6.7)."""
    with b.warabifs[0].foreground(pool) as (mnt, _pid, _mounted):
        lines = counted_lines(f"ls -l {shlex.quote(str(mnt))} | wc -l")
    if lines != count + 1:
        raise BenchError(f"ls -l of {pool} counted {lines} lines, expected {count + 1}")
    log(f"scale: kernel slabs warmed by an ls -l of the pool ({count} entries)")


def scale_rep(b: Bench, pool: Path, tmpfs: Path, count: int, runs: dict) -> None:
    runs["scan"].append(scan_floor(pool))
    # To /dev/null, as a file would take it: read through a pipe by Python, 100 MB of
    # listing cost more than making it.
    runs["tool_ls"].append(timed(lambda: run([b.warabifs[0].binary, "ls", pool])))
    with b.warabifs[0].foreground(pool) as (mnt, pid, mounted):
        runs["mount"].append(mounted)
        runs["rss_mount"].append(rss_mib(pid))
        runs["ls"].append(timed_listing(mnt, False, count))
        runs["tmpfs_ls"].append(timed_listing(tmpfs, False, count))
        runs["rss_ls"].append(rss_mib(pid))
        runs["ls_l"].append(timed_listing(mnt, True, count))
        runs["tmpfs_ls_l"].append(timed_listing(tmpfs, True, count))
        runs["rss"].append(rss_mib(pid))
        runs["rss_anon"].append(rss_mib(pid, "RssAnon"))
        runs["rss_pool"].append(rss_mib(pid, "RssShmem") + rss_mib(pid, "RssFile"))


# (figure, floor, label, unit, bound key): floor None for figures without one.
SCALE_ROWS = [
    ("mount_first", "scan", "first mount (until it is live)", "s", "mount"),
    ("mount", "scan", "mount, later mounts", "s", "mount"),
    ("ls", "tmpfs_ls", "first ls | wc -l", "s", "ls"),
    ("ls_l", "tmpfs_ls_l", "first ls -l | wc -l", "s", None),
    ("tool_ls", "scan", "warabifs ls POOL", "s", "tool_ls"),
    ("rss_mount", None, "daemon RSS after mount", "MiB", "rss"),
    ("rss_ls", None, "daemon RSS after ls", "MiB", "rss"),
    ("rss", None, "daemon RSS after ls -l", "MiB", None),
    ("rss_anon", None, "  of which its own (RssAnon)", "MiB", "rss"),
    ("rss_pool", None, "  of which pool pages ls -l read", "MiB", None),
]


def scale_report(results: dict, reps: int) -> tuple[str, list[dict], list[str]]:
    """The table, its rows, and the done-when bounds that are not met."""
    med = {case: {k: statistics.median(v) for k, v in runs.items() if v} for case, runs in results.items()}
    rows, failed = [], []
    header = ("pool", "figure", "unit", "warabifs", "runs", "floor", "floor is", "x floor", "x from smallest")
    lines = [header]
    smallest = {kind: min(c for k, c in results if k == kind) for kind, _ in results}
    largest = {kind: max(c for k, c in results if k == kind) for kind, _ in results}
    for case, runs in results.items():
        kind, count = case
        # The bounds hold for the largest pool, and for its growth from the smallest.
        checked = count == largest[kind]
        for key, floor_key, label, unit, bound in SCALE_ROWS:
            if key not in med[case]:
                continue
            value = med[case][key]
            floor = med[case].get(floor_key) if floor_key else None
            times_floor = value / floor if floor else None
            small = med[(kind, smallest[kind])].get(key)
            growth = value / small if small and count != smallest[kind] else None
            row = {"pool": f"{count} {kind}", "key": key, "label": label, "unit": unit, "median": value,
                   "runs": runs[key], "floor": floor, "floor_key": floor_key, "floor_runs": runs.get(floor_key),
                   "times_floor": times_floor, "growth_from_smallest": growth}
            rows.append(row)
            if not checked:
                pass
            elif bound in SCALE_BOUNDS and times_floor is not None and times_floor > SCALE_BOUNDS[bound]:
                failed.append(f"{count} {kind}: {label} is {times_floor:.2f}x its floor (bound {SCALE_BOUNDS[bound]}x)")
            if checked and bound == "rss" and value >= SCALE_RSS_MIB:
                failed.append(f"{count} {kind}: {label} {value:.0f} MiB (bound {SCALE_RSS_MIB:.0f} MiB)")
            if checked and growth is not None and growth > SCALE_GROWTH * count / smallest[kind] / 10:
                bound_growth = SCALE_GROWTH * count / smallest[kind] / 10
                failed.append(f"{count} {kind}: {label} grew {growth:.1f}x from {smallest[kind]} (bound {bound_growth:.3g}x)")
            spread = ", ".join(f"{v:.3g}" for v in runs[key])
            floor_name = {"scan": "pool_scan", "tmpfs_ls": "tmpfs ls", "tmpfs_ls_l": "tmpfs ls -l"}.get(floor_key, "")
            lines.append((
                f"{count} {kind}", label, unit, f"{value:.3f}" if unit == "s" else f"{value:.1f}", spread,
                f"{floor:.3f}" if floor else "-", floor_name or "-",
                f"{times_floor:.2f}" if times_floor else "-", f"{growth:.1f}" if growth else "-",
            ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def join(cells) -> str:
        return "  ".join(c.ljust(w) if i < 3 or i == 6 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    text = [join(lines[0]), join("-" * w for w in widths), *(join(line) for line in lines[1:]), ""]
    text.append(
        f"medians of {reps}; floors measured in the same run: pool_scan = libpmemobj opening "
        "the pool and visiting every object (examples/pool_scan.rs), tmpfs = the same number of empty files"
    )
    text.append("bounds: " + ("all met" if not failed else "NOT met: " + "; ".join(failed)))
    return "\n".join(text), rows, failed


def run_scale(b: Bench, reps: int, sizes: tuple[int, ...], kinds: tuple[str, ...]) -> tuple[dict, list]:
    results: dict = {}
    errors: list = []
    for kind in kinds:
        for count in sizes:
            try:
                results[(kind, count)] = scale_case(b, kind, count, reps)
            except (BenchError, OSError, ValueError) as e:
                log(f"  ERROR: {e}")
                errors.append({"group": "scale", "target": f"{count} {kind}", "error": str(e)})
    return results, errors


# --------------------------------------------------------------------------- report


def ratio(m: Metric, tmpfs: float | None, other: float | None) -> float | None:
    if tmpfs is None or other is None or 0 in (tmpfs, other):
        return None
    return other / tmpfs if m.higher_is_better else tmpfs / other


def table_columns(transports: tuple[str, ...], floor: bool) -> list[str]:
    """tmpfs, then warabifs over each transport, then (with --floor) the floor."""
    kinds = ("warabifs", "floor") if floor else ("warabifs",)
    return ["tmpfs", *(column_of(kind, t) for kind in kinds for t in transports)]


def figures(runs: list[float]) -> dict:
    """The median and the spread (min, max) of one column's repetitions, and the runs."""
    if not runs:
        return {"median": None, "min": None, "max": None, "runs": runs}
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs), "runs": runs}


def build_rows(metrics: list[Metric], results: dict, columns: list[str], plan: dict[str, set[str]]) -> list[dict]:
    """One row per metric: for each column that measures it, its figures and (but for
    tmpfs) the ratio of its median to tmpfs'; None for the columns that do not."""
    rows = []
    for m in metrics:
        better = "higher" if m.higher_is_better else "lower"
        row: dict = {"key": m.key, "label": m.label, "unit": m.unit, "better": better}
        for column in columns:
            row[column] = figures(results[m.key][column]) if column in plan[m.key] else None
        tmpfs = row["tmpfs"]["median"] if row["tmpfs"] else None
        for column in columns[1:]:
            if row[column] is not None:
                row[column]["ratio"] = ratio(m, tmpfs, row[column]["median"])
        rows.append(row)
    return rows


def format_ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"


def format_spread(median: float, low: float, high: float) -> str:
    """` (-3/+5%)`: how far below and above the median the slowest and fastest runs lie."""
    if median == 0:
        return ""
    return f" (-{(median - low) / median * 100:.0f}/+{(high - median) / median * 100:.0f}%)"


def render_table(rows: list[dict], metrics: list[Metric], reps: int, columns: list[str]) -> str:
    digits = {m.key: m.digits for m in metrics}

    def cell(row: dict, column: str) -> str:
        figs = row[column]
        if figs is None:
            return "-"
        if figs["median"] is None:
            return "error"
        spread = format_spread(figs["median"], figs["min"], figs["max"]) if len(figs["runs"]) > 1 else ""
        partial = "" if len(figs["runs"]) == reps else f" ({len(figs['runs'])}/{reps})"
        return f"{figs['median']:.{digits[row['key']]}f}{spread}{partial}"

    def ratio_cell(row: dict, column: str) -> str:
        return format_ratio(row[column]["ratio"]) if row[column] else "-"

    def line(r: dict) -> tuple[str, ...]:
        cells = [r["label"], r["unit"], cell(r, "tmpfs")]
        for column in columns[1:]:
            cells += [cell(r, column), ratio_cell(r, column)]
        return tuple(cells)

    header = ["workload", "unit", "tmpfs"]
    for column in columns[1:]:
        header += [column.replace("_", " "), "ratio"]
    lines = [tuple(header), *(line(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]

    def join(cells) -> str:  # text columns left-aligned, figures right-aligned
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    text = [join(lines[0]), join("-" * w for w in widths), *(join(line) for line in lines[1:]), ""]
    spread = "; (-a/+b%): the lowest and highest repetition lie a% below and b% above it" if reps > 1 else ""
    text.append(f"medians of {reps}{spread}; (k/N): only k of N repetitions succeeded")
    text.append("ratio: to tmpfs, X/tmpfs for speeds, tmpfs/X for times (higher is better)")
    text.append("dev: over /dev/fuse; uring: over FUSE-over-io_uring (warabifs -o io_uring=off|on)")
    if any(c.startswith("floor") for c in columns):
        text.append("floor: fuse_floor, a FUSE file system that does no work (examples/fuse_floor.rs)")
    return "\n".join(text)


def command_output(cmd: list[str]) -> str | None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def busy_processes() -> list[str]:
    """Other benchmark-like or build processes running now (not ours): noise to report."""
    names = {"fio", "dd", "warabifs", "cargo", "rustc", "pjdfstest", "fsx"}
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                comm = (entry / "comm").read_text().strip()
                if comm in names:
                    found.append(f"{comm}[{entry.name}]")
    return sorted(found)


def environment(binary: Path, snapshot: Path) -> dict:
    git = ["git", "-c", f"safe.directory={REPO}", "-C", str(REPO)]
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    meminfo = Path("/proc/meminfo").read_text()
    fio_version = command_output(["fio", "--version"])
    dd_version = command_output(["dd", "--version"])
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "uname": " ".join(os.uname()),
        "cpu_count": os.cpu_count(),
        "cpu_model": model[1] if model else None,
        "mem_total_kib": int(re.search(r"^MemTotal:\s+(\d+)", meminfo, re.M)[1]),
        "warabifs_commit": command_output([*git, "rev-parse", "HEAD"]),
        "warabifs_tree_dirty": bool(command_output([*git, "status", "--porcelain", "--untracked-files=no"])),
        "warabifs_binary": str(binary),
        "warabifs_binary_mtime": datetime.datetime.fromtimestamp(
            binary.stat().st_mtime, datetime.timezone.utc
        ).isoformat(timespec="seconds"),
        "warabifs_binary_sha256": hashlib.sha256(snapshot.read_bytes()).hexdigest(),
        "fio": fio_version,
        "dd": dd_version.splitlines()[0] if dd_version else None,
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg(),
        "busy_processes_start": busy_processes(),
    }


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=None,
                   help=f"repetitions (default {DEFAULT_REPS}, {DEFAULT_SCALE_REPS} with --scale); medians are reported")
    p.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(SELECTABLE)}")
    quick = "smoke-test sizes: 64 MiB dd, 32 MiB fio, 3 s runtime, 1000 files, 10k-file pool"
    p.add_argument("--quick", action="store_true", help=quick)
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"JSON output (default {DEFAULT_JSON})")
    p.add_argument("--build", action="store_true", help="run cargo build --release even if the binary exists")
    p.add_argument("--binary", type=Path, default=DEFAULT_BINARY, help=f"warabifs binary (default {DEFAULT_BINARY})")
    p.add_argument("--warabifs-options", default="", help="extra -o options for every warabifs mount")
    p.add_argument("--pool-dir", type=Path, default=Path("/dev/shm"), help="where pools go (default /dev/shm)")
    p.add_argument("--no-warm", action="store_true", help="do not warm free memory before each timed step")
    p.add_argument("--page-reporting", action="store_true",
                   help="leave the VM's free page reporting on (the run turns it off and restores it)")
    p.add_argument("--floor", action="store_true", help="also measure fuse_floor, a FUSE file system that does no work")
    transport = "dev: /dev/fuse (default); uring: FUSE-over-io_uring, setting enable_uring for the run; both: each"
    p.add_argument("--transport", choices=TRANSPORTS, default="dev", help=transport)
    p.add_argument("--scale", action="store_true", help="run the scale row instead: pools of 100k and 1M regions and files")
    p.add_argument("--scale-sizes", default=",".join(map(str, SCALE_SIZES)), help="with --scale: pool sizes (default %(default)s)")
    p.add_argument("--scale-kinds", default="regions,files", help="with --scale: regions, files or both (default %(default)s)")
    args = p.parse_args(argv)
    if args.reps is None:
        args.reps = DEFAULT_SCALE_REPS if args.scale else DEFAULT_REPS
    if args.reps < 1:
        p.error("--reps must be at least 1")
    if any(o.split("=")[0] == "io_uring" for o in args.warabifs_options.split(",")):
        p.error("--warabifs-options must not set io_uring; --transport chooses it")
    unknown = [n for n in args.only.split(",") if n and n not in SELECTABLE]
    if unknown:
        p.error(f"unknown --only name(s) {', '.join(unknown)}; choose from {', '.join(SELECTABLE)}")
    return args


def ensure_binary(binary: Path, build: bool) -> None:
    if binary.exists() and not build:
        return
    if binary != DEFAULT_BINARY:
        raise SystemExit(f"run.py: {binary} does not exist (--build builds only {DEFAULT_BINARY})")
    cargo_build_release("--bin", "warabifs")


def cargo_build_release(*target: str) -> None:
    """`cargo build --release TARGET` in the repository; exits the run if it fails."""
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    command = " ".join(["cargo", "build", "--release", *target])
    log(f"building: {command}")
    if subprocess.run([cargo, "build", "--release", *target], cwd=REPO).returncode != 0:
        raise SystemExit(f"run.py: {command} failed")


def preflight() -> None:
    if os.geteuid() != 0:
        raise SystemExit("run.py: run as root (mount, umount, drop_caches)")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise SystemExit(f"run.py: missing tools: {', '.join(missing)}")
    if not Path("/dev/fuse").exists():
        raise SystemExit("run.py: /dev/fuse is missing")


def make_bench(
    args: argparse.Namespace,
    sizes: Sizes,
    want: set[str],
    tree: Tree | None,
    ws: Workspace,
    binary: Path,
    transports: tuple[str, ...],
) -> Bench:
    """The targets of the run, over each of TRANSPORTS, from private copies of the
    binaries (a rebuild during the run cannot mix two builds)."""
    snapshot = ws.root / "warabifs"
    shutil.copy2(binary, snapshot)
    options = args.warabifs_options
    floors = []
    if args.floor:
        floor_binary = ws.root / "fuse_floor"
        shutil.copy2(FLOOR_BINARY, floor_binary)
        writeback_cache = "writeback_cache" in options.split(",")
        floors = [Floor(ws, floor_binary, writeback_cache, t) for t in transports]
    return Bench(
        sizes=sizes,
        want=want,
        ws=ws,
        tmpfs=Tmpfs(ws),
        warabifs=[Warabifs(ws, snapshot, options, t) for t in transports],
        warabifs_force=[Warabifs(ws, snapshot, options, t, force_pmem=True) for t in transports],
        floors=floors,
        tree=tree,
    )
def measure_scale(args: argparse.Namespace, binary: Path, sizes: tuple[int, ...],
                  kinds: tuple[str, ...]) -> tuple[dict, list, dict]:
    """Runs the scale row; returns its results, errors and environment."""
    ws = Workspace(args.pool_dir)
    try:
        snapshot = ws.root / "warabifs"
        shutil.copy2(binary, snapshot)
        env = environment(binary, snapshot)
        if env["busy_processes_start"]:
            log(f"note: other processes may add noise: {' '.join(env['busy_processes_start'])}")
        b = Bench(
            sizes=FULL,
            want=set(),
            ws=ws,
            tmpfs=Tmpfs(ws),
            warabifs=[Warabifs(ws, snapshot, args.warabifs_options, "dev")],
            warabifs_force=[],
            floors=[],
        )
        results, errors = run_scale(b, args.reps, sizes, kinds)
        return results, errors, env
    finally:
        ws.close()


def main_scale(args: argparse.Namespace, binary: Path) -> int:
    """--scale: the scale row alone."""
    sizes = tuple(int(n) for n in args.scale_sizes.split(",") if n)
    kinds = tuple(k for k in args.scale_kinds.split(",") if k)
    if not sizes or any(k not in ("regions", "files") for k in kinds):
        raise SystemExit("run.py: --scale-sizes takes counts, --scale-kinds regions and/or files")
    cargo_build_release(*(a for name in SCALE_EXAMPLES for a in ("--example", name)))
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)
    started = time.monotonic()
    try:
        with page_reporting_off(not args.page_reporting) as reporting_found:
            results, errors, env = measure_scale(args, binary, sizes, kinds)
            env["page_reporting_order_found"] = reporting_found
    except Interrupted as e:
        log(f"interrupted ({e}); everything is unmounted")
        return 130
    wall = time.monotonic() - started
    env["loadavg_end"] = os.getloadavg()
    env["busy_processes_end"] = busy_processes()
    table, rows, failed = scale_report(results, args.reps)
    print(table)
    report = {
        "environment": env,
        "settings": {"reps": args.reps, "scale_sizes": sizes, "scale_kinds": kinds,
                     "region_bytes": SCALE_REGION_BYTES, "warabifs_options": args.warabifs_options,
                     "pool_dir": str(args.pool_dir), "warm_mib": WARM_MIB, "bounds": SCALE_BOUNDS,
                     "rss_bound_mib": SCALE_RSS_MIB, "growth_bound": SCALE_GROWTH},
        "rows": rows,
        "bounds_not_met": failed,
        "errors": errors,
        "wall_seconds": round(wall, 1),
    }
    json_path = DEFAULT_SCALE_JSON if args.json == DEFAULT_JSON else args.json
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wall time {wall:.0f} s; JSON written to {json_path}")
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    global WARM_MIB
    args = parse_args(argv)
    if args.no_warm:
        WARM_MIB = 0
    preflight()
    binary = args.binary.resolve()
    ensure_binary(binary, args.build)
    if args.floor:
        cargo_build_release("--example", "fuse_floor")
    if args.scale:
        return main_scale(args, binary)
    sizes = QUICK if args.quick else FULL
    want = {k for n in (args.only.split(",") if args.only else SELECTABLE) if n for k in SELECTABLE[n]}
    tree = Tree.survey(TREE_SOURCE) if want.intersection(SELECTABLE["tree"]) else None
    metrics = [m for m in metric_list(sizes, tree) if m.key in want]
    transports = TRANSPORTS[args.transport]
    columns = table_columns(transports, args.floor)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)

    started = time.monotonic()
    results: dict = defaultdict(lambda: defaultdict(list))
    errors: list = []
    try:
        with uring_enabled("uring" in transports) as enable_uring_found, \
                page_reporting_off(not args.page_reporting) as reporting_found:
            ws = Workspace(args.pool_dir)
            log(f"mount points under {ws.root}, pools under {ws.pools}")
            try:
                b = make_bench(args, sizes, want, tree, ws, binary, transports)
                env = environment(binary, ws.root / "warabifs")
                env["enable_uring_found"] = enable_uring_found
                env["page_reporting_order_found"] = reporting_found
                env["enable_uring_during_run"] = read_enable_uring() if ENABLE_URING.exists() else None
                sha = env["warabifs_binary_sha256"][:12]
                log(f"warabifs {env['warabifs_commit']} (binary sha256 {sha}), {env['cpu_count']} CPUs")
                if env["busy_processes_start"]:
                    log(f"note: other processes may add noise: {' '.join(env['busy_processes_start'])}")
                run_all(b, args.reps, results, errors)
                plan = planned_columns(b)
            finally:
                ws.close()
    except Interrupted as e:
        log(f"interrupted ({e}); everything is unmounted")
        return 130

    wall = time.monotonic() - started
    env["enable_uring_end"] = read_enable_uring() if ENABLE_URING.exists() else None
    env["loadavg_end"] = os.getloadavg()
    env["busy_processes_end"] = busy_processes()
    rows = build_rows(metrics, results, columns, plan)
    print(render_table(rows, metrics, args.reps, columns))
    report = {
        "environment": env,
        "settings": {
            "reps": args.reps,
            "quick": args.quick,
            "only": sorted(n for n in SELECTABLE if set(SELECTABLE[n]) <= want),
            "warabifs_options": args.warabifs_options,
            "floor": args.floor,
            "transport": args.transport,
            "columns": columns,
            "tree": None if tree is None else {**dataclasses.asdict(tree), "path": str(tree.path)},
            "pool_dir": str(args.pool_dir),
            "pool_size": POOL_SIZE,
            "warm_mib": WARM_MIB,
            "files_pool_size": FILES_POOL_SIZE,
            "tmpfs_size": TMPFS_SIZE,
            "sizes": dataclasses.asdict(sizes),
        },
        "ratio_definition": "X/tmpfs for speeds, tmpfs/X for times, of the medians; higher is better",
        "rows": rows,
        "errors": errors,
        "wall_seconds": round(wall, 1),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wall time {wall:.0f} s; JSON written to {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
