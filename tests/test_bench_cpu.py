"""The bench's CPU account: it finds a local server by its port and counts each of its processes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import pytest

from railtix.bench import cpu

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads /proc (Linux)")

#: a "server": listens on port 0, says where, and starts a child that burns CPU in a thread of
#: its own when told to (threads end, as the threads model's connections do: their CPU counts)
SERVER = r"""
import os, socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
r, w = os.pipe()
if os.fork() == 0:
    import threading
    os.read(r, 1)
    def burn():
        end = time.thread_time() + 0.3
        while time.thread_time() < end:
            pass
    t = threading.Thread(target=burn)  # a thread that has ended by the time it is counted
    t.start()
    t.join()
    time.sleep(60)
print(s.getsockname()[1], flush=True)
sys.stdin.read(1)
os.write(w, b"x")
time.sleep(60)
"""


def test_a_server_s_processes_are_found_by_port_and_each_one_s_cpu_counted() -> None:
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        port = int(proc.stdout.readline())
        meter = cpu.Meter.for_port(port)
        assert meter is not None and meter.roots == [proc.pid]
        assert len(cpu.tree(meter.roots)) == 2  # the server and its child
        before = meter.read()
        proc.stdin.write(b"x")
        proc.stdin.flush()  # the child burns 0.3 s of CPU
        deadline = time.monotonic() + 10
        used: dict[int, float] = {}
        while time.monotonic() < deadline:
            used = {r["pid"]: r["cpu_s"] for r in meter.since(before)}
            if sum(used.values()) >= 0.3:
                break
            time.sleep(0.05)
        child = next(p for p in cpu.tree(meter.roots) if p != proc.pid)
        assert used.get(child, 0) >= 0.29, used  # the child's burn, counted whole, its thread gone
        assert used.get(proc.pid, 0) < 0.1, used  # and not the idle parent's
    finally:
        for p in cpu.tree([proc.pid])[::-1]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, 9)
        proc.wait()


def test_no_listener_no_meter() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # bound once, listening never
    assert cpu.Meter.for_port(port) is None
