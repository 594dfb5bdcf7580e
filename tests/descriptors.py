"""What this test process holds open, read from Linux's /proc: how a test sees a leak from the
outside (a file or a storage connection that was never let go), without counters in the code
under test."""

from __future__ import annotations

import os
from pathlib import Path

_FDS = "/proc/self/fd"
_TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


def open_fds() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir(_FDS))


def _targets() -> list[str]:
    """What each open descriptor points at (a path, or `socket:[inode]`, ...)."""
    targets = []
    for fd in os.listdir(_FDS):
        try:
            targets.append(os.readlink(f"{_FDS}/{fd}"))
        except OSError:  # closed meanwhile (or the listing's own descriptor)
            continue
    return targets


def open_files_under(root: Path) -> int:
    """How many descriptors this process has open on files below `root`."""
    inside = os.path.realpath(root) + os.sep
    return sum(target.startswith(inside) for target in _targets())


def connections_to(port: int) -> int:
    """How many TCP connections this process holds open towards `port` (in any state, so one
    the peer already closed counts until this side closes it too): what the server on `port`
    would count as held by us. A socket is counted once however many descriptors share it
    (the zero-copy relay works on a duplicate)."""
    inodes = set()
    for table in _TCP_TABLES:
        with open(table) as rows:
            next(rows)  # the header
            for row in rows:
                fields = row.split()
                remote_port = int(fields[2].rpartition(":")[2], 16)
                if remote_port == port:
                    inodes.add(f"socket:[{fields[9]}]")
    return len(inodes.intersection(_targets()))
