"""Where a run's CPU went: each process of a server on this machine, by the scheduler's count.

A rush on two cores is a contest for CPU between the serving loop, the writer process and the
load generator. The report says how much each of them used per request, so that "where does
the time go" is answered by every run and not only by a profiler. The server's processes are
found by the port they listen on (every process holding a listening socket on it, and their
descendants: the writer process, the workers of the processes model), so it works for a server
the bench started and for ``make run``'s alike, as long as it runs here, under this user.

CPU time is the kernel's CPU clock of each process (``cpu_seconds``): what the scheduler ran,
threads that ended meanwhile included (the threads model's connections). ``/proc/PID/stat``'s
user and system times are sampled at the timer tick, and on a virtual machine they can miss a
process that runs in short bursts entirely (the null server showed 0 % there while it used 69 %
of a core). A process that ends during the run takes its count with it, and the window is the
whole load (connecting and closing the clients' connections included). Where ``/proc`` is
missing (not Linux), there is nothing to report and the report says nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from railtix.bench.null_server import LABEL as NULL_LABEL

_PROC = Path("/proc")

#: /proc/net/tcp's state of a listening socket
_LISTEN = "0A"

#: the kind of process CPU clock that counts what the scheduler ran (linux/posix-timers.h)
_CPUCLOCK_SCHED = 2


def listeners(port: int) -> list[int]:
    """The processes that hold a listening TCP socket on ``port`` (IPv4 or IPv6), readable here."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (_PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == _LISTEN and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f[9])
    if not inodes:
        return []
    wanted = {f"socket:[{i}]" for i in inodes}
    return [p for p in _pids() if any(target in wanted for target in open_files(p))]


def open_files(pid: int) -> Iterator[str]:
    """What each of a process's file descriptors points at (a path, ``socket:[inode]``, …);
    nothing for a process that is gone or another user's."""
    try:
        fds = os.scandir(_PROC / str(pid) / "fd")
    except OSError:
        return
    with fds:
        for fd in fds:
            try:
                yield os.readlink(fd.path)
            except OSError:
                continue


def tree(roots: list[int]) -> list[int]:
    """The roots and all their descendants (threads' children included), each once."""
    seen: list[int] = []
    todo = list(roots)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        try:
            tasks = os.listdir(_PROC / str(p) / "task")
        except OSError:
            continue
        for t in tasks:
            try:
                todo += [int(c) for c in (_PROC / str(p) / "task" / t / "children").read_text().split()]
            except OSError:
                continue
    return seen


def cpu_seconds(pid: int) -> float | None:
    """CPU time the process has used, threads that have ended included (None when it is gone).

    Read from the kernel's CPU clock of the process, the clock ``clock_getcpuclockid(3)`` names
    (on Linux its id is made from the pid: ``~pid << 3 | CPUCLOCK_SCHED``): the scheduler's own
    count, the one ``/proc/PID/task/*/schedstat`` shows per live thread."""
    try:
        return time.clock_gettime((~pid << 3) | _CPUCLOCK_SCHED)
    except (OSError, OverflowError):
        return None


def name_of(pid: int) -> str:
    """What the process is, in the report's words: its own name when it set one
    (``railtix-writer``), else what its command line runs."""
    try:
        comm = (_PROC / str(pid) / "comm").read_text().strip()
        argv = (_PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [a.decode(errors="replace") for a in argv]
    if comm != "railtix" and not comm.startswith("python"):
        return comm  # a name of its own: railtix-writer
    if "railtix.bench.null_server" in words:
        return NULL_LABEL
    if "serve" in words:  # python -m railtix serve, or the railtix script (make run)
        return "railtix serve"
    if any("resource_tracker" in w for w in words):
        return "resource tracker"
    if any("multiprocessing" in w for w in words):
        return "worker"
    return comm


class Meter:
    """The CPU of one server's processes between two readings."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots

    @classmethod
    def for_port(cls, port: int) -> Meter | None:
        """The server listening on ``port`` here, or None when none can be seen."""
        found = listeners(port)
        # a worker that inherited the socket is measured as part of its parent's tree
        parents = {p: _parent(p) for p in found}
        roots = [p for p in found if parents[p] not in found]
        return cls(roots) if roots else None

    def read(self) -> dict[int, tuple[str, float]]:
        out = {}
        for p in tree(self.roots):
            cpu = cpu_seconds(p)
            if cpu is not None:
                out[p] = (name_of(p), cpu)
        return out

    def since(self, before: dict[int, tuple[str, float]]) -> list[dict[str, Any]]:
        """Each process's CPU seconds since ``before`` (a process started meanwhile counts from
        zero), busiest first; processes that used none are left out."""
        rows = []
        for p, (name, cpu) in self.read().items():
            used = cpu - before.get(p, (name, 0.0))[1]
            if used >= 0.0005:
                rows.append({"pid": p, "name": name, "cpu_s": round(used, 4)})
        return sorted(rows, key=lambda r: -r["cpu_s"])


def _parent(pid: int) -> int:
    try:
        return int((_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _pids() -> list[int]:
    try:
        return [int(n) for n in os.listdir(_PROC) if n.isdigit()]
    except OSError:
        return []
