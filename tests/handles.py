#!/usr/bin/env python3
"""File handles for tests/linux_parity.rs: name_to_handle_at and open_by_handle_at,
which no Rust crate the project uses wraps, called through ctypes here so that the
tests need no `unsafe`.

  handles.py take [--connectable] PATH...   one line per path: a handle, or "errno N"
  handles.py open MOUNTPOINT < HANDLES      one line per handle read from stdin:
      "ok PATH CONTENT" (the path /proc/self/fd gives the opened file, and its bytes in
      hex, "-" for a directory), or "errno N"

A handle is written as TYPE:HEX (its handle_type, then its bytes).
"""

import ctypes
import os
import sys

MAX_HANDLE_SZ = 128
AT_FDCWD = -100
AT_HANDLE_CONNECTABLE = 0x002


class FileHandle(ctypes.Structure):
    _fields_ = [
        ("handle_bytes", ctypes.c_uint),
        ("handle_type", ctypes.c_int),
        ("f_handle", ctypes.c_ubyte * MAX_HANDLE_SZ),
    ]


libc = ctypes.CDLL(None, use_errno=True)
libc.name_to_handle_at.argtypes = [
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.POINTER(FileHandle),
    ctypes.POINTER(ctypes.c_int),
    ctypes.c_int,
]
libc.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.POINTER(FileHandle), ctypes.c_int]


def take(path: str, flags: int) -> str:
    handle = FileHandle(handle_bytes=MAX_HANDLE_SZ)
    mount_id = ctypes.c_int()
    if libc.name_to_handle_at(AT_FDCWD, os.fsencode(path), handle, mount_id, flags) != 0:
        return f"errno {ctypes.get_errno()}"
    data = bytes(handle.f_handle[: handle.handle_bytes])
    return f"{handle.handle_type}:{data.hex()}"


def open_one(mount_fd: int, spelled: str) -> str:
    kind, data = spelled.split(":")
    raw = bytes.fromhex(data)
    handle = FileHandle(handle_bytes=len(raw), handle_type=int(kind))
    handle.f_handle[: len(raw)] = raw
    fd = libc.open_by_handle_at(mount_fd, handle, os.O_RDONLY | os.O_CLOEXEC)
    if fd < 0:
        return f"errno {ctypes.get_errno()}"
    try:
        path = os.readlink(f"/proc/self/fd/{fd}")
        content = "-" if os.path.isdir(f"/proc/self/fd/{fd}") else os.read(fd, 1 << 16).hex()
        return f"ok {path} {content}"
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "take":
        paths = argv[2:]
        flags = 0
        if paths and paths[0] == "--connectable":
            flags, paths = AT_HANDLE_CONNECTABLE, paths[1:]
        print("\n".join(take(p, flags) for p in paths))
        return 0
    if len(argv) == 3 and argv[1] == "open":
        mount_fd = os.open(argv[2], os.O_RDONLY | os.O_DIRECTORY)
        print("\n".join(open_one(mount_fd, line.strip()) for line in sys.stdin if line.strip()))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
