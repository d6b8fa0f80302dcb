"""The processes model's supervisor: workers die and are replaced, stops drain, nothing is lost.

Linux only: workers are found through /proc (children of the supervisor), and the worker that
holds a given connection through /proc/net/tcp and the workers' descriptors.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_models import WAIT_MAX, Client, Server, account, buy, day, error_code, start_server

from railtix.store import open_store

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


# --- /proc -------------------------------------------------------------------------------------
def stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None when it no longer exists."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def gone(pid: int) -> bool:
    """Exited and reaped (a zombie is not gone: its parent has not reaped it)."""
    return stat(pid) is None


def exited(pid: int) -> bool:
    s = stat(pid)
    return s is None or s[0] == "Z"


def children(pid: int) -> set[int]:
    out = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            s = stat(int(name))
            if s is not None and s[1] == pid and s[0] != "Z":
                out.add(int(name))
    return out


def wait_until(check: Any, timeout: float = WAIT_MAX) -> Any:
    """Poll ``check`` until it returns something truthy (bounded); that value, or the last."""
    end = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < end:
        time.sleep(0.05)
        value = check()
    return value


def owner_of(c: Client, server_port: int, pids: set[int]) -> int | None:
    """Which worker process holds the server side of connection ``c``."""
    client_port = c.sock.getsockname()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        local, remote = int(f[1].split(":")[1], 16), int(f[2].split(":")[1], 16)
        if local == server_port and remote == client_port:
            inode = f[9]
    if inode is None:
        return None
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None


class Shopper(threading.Thread):
    """Buys one order at a time on its own connection until told to stop or cut off."""

    def __init__(self, server: Server, token: str, date: str) -> None:
        super().__init__(daemon=True)
        self.client = server.client()
        assert self.client.call({"op": "hello"})["ok"]  # accepted by some worker
        self.token, self.date = token, date
        self.confirmed: list[str] = []
        self.stop = threading.Event()
        self.cut_off = False

    def run(self) -> None:
        try:
            for _ in range(10_000):
                if self.stop.is_set():
                    return
                rep = self.client.call(buy(self.token, date=self.date))
                if rep["ok"]:
                    self.confirmed.append(rep["order"]["order"])
        except (OSError, AssertionError):
            self.cut_off = True
        finally:
            self.client.close()


def test_killed_worker_is_replaced_and_nothing_confirmed_is_lost(tmp_path: Path) -> None:
    srv = start_server("processes", tmp_path, workers=2, read_deadline_s=30.0)
    try:
        workers = wait_until(lambda: len(children(srv.proc.pid)) == 2 and children(srv.proc.pid))
        assert len(workers) == 2
        with srv.client() as c:
            token = account(c)
        shoppers = [Shopper(srv, token, day(2)) for _ in range(6)]
        owners = {s: owner_of(s.client, srv.port, workers) for s in shoppers}
        assert set(owners.values()) <= workers
        victim = owners[shoppers[0]]
        assert victim is not None
        for s in shoppers:
            s.start()
        assert wait_until(lambda: all(len(s.confirmed) >= 3 for s in shoppers))

        os.kill(victim, signal.SIGKILL)
        replaced = wait_until(lambda: len(children(srv.proc.pid) - workers) == 1 and children(srv.proc.pid))
        assert replaced and victim not in replaced and len(replaced) == 2
        assert wait_until(lambda: gone(victim))  # reaped by the supervisor, not left a zombie

        # the victim's clients were cut off; the others, and new clients, are still served
        assert all(s.cut_off for s in shoppers if owners[s] == victim)
        assert not any(s.cut_off for s in shoppers if owners[s] != victim)
        with srv.client() as c:
            assert c.call(buy(token, date=day(2)))["ok"]
        for s in shoppers:
            s.stop.set()
        for s in shoppers:
            s.join(WAIT_MAX)
        assert srv.stop() == 0
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
    confirmed = [o for s in shoppers for o in s.confirmed]
    assert any(s.confirmed for s in shoppers if owners[s] == victim)
    store = open_store(srv.database)
    try:
        missing = [o for o in confirmed if store.order(o) is None]
    finally:
        store.close()
    assert missing == []


def test_sigterm_under_load_answers_every_request_and_exits_zero(tmp_path: Path) -> None:
    srv = start_server("processes", tmp_path, workers=2, read_deadline_s=30.0)
    workers = wait_until(lambda: len(children(srv.proc.pid)) == 2 and children(srv.proc.pid))
    with srv.client() as c:
        token = account(c)
    gate = threading.Lock()
    signalled = threading.Event()
    outcomes: list[str | None] = []  # per request sent before the signal: its error code, or "none"
    counts: list[int] = []

    def client_loop(c: Client) -> None:
        sent = 0
        try:
            for i in range(10_000):
                req: dict[str, Any] = (
                    buy(token, date=day(4)) if i % 2 else {"op": "search", "from": "VNP", "to": "AOH", "date": day(4)}
                )
                with gate:  # a request is either wholly sent before the signal, or not at all
                    if signalled.is_set():
                        break
                    c.send(req)
                    sent += 1
                try:
                    rep = c.reply()
                except (OSError, AssertionError):
                    outcomes.append("none")
                    return
                outcomes.append(error_code(rep))
        finally:
            counts.append(sent)
            c.close()

    clients = [srv.client() for _ in range(6)]
    for c in clients:
        assert c.call({"op": "hello"})["ok"]  # every connection accepted before the load starts
    threads = [threading.Thread(target=client_loop, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    wait_until(lambda: len(outcomes) >= 200)
    with gate:
        srv.proc.send_signal(signal.SIGTERM)
        signalled.set()
    for t in threads:
        t.join(WAIT_MAX)
    code = srv.proc.wait(WAIT_MAX)

    assert code == 0
    assert sum(counts) == len(outcomes) >= 200
    codes = set(outcomes)
    assert "none" not in codes  # every request sent before the SIGTERM was answered
    assert codes <= {None, "shutting_down", "sold_out"}
    assert all(gone(pid) or exited(pid) for pid in workers)
    assert all(gone(pid) for pid in workers)  # reaped: no zombies, no orphans


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    srv = start_server("processes", tmp_path, workers=2)
    workers = wait_until(lambda: len(children(srv.proc.pid)) == 2 and children(srv.proc.pid))
    assert len(workers) == 2
    srv.proc.kill()
    srv.proc.wait(WAIT_MAX)
    assert wait_until(lambda: all(exited(pid) for pid in workers))


def test_second_sigint_forces_and_leaves_no_workers(tmp_path: Path) -> None:
    """A client that never reads its replies keeps a worker draining; a second SIGINT cuts it short."""
    srv = start_server("processes", tmp_path, workers=2, read_deadline_s=30.0)
    workers = wait_until(lambda: len(children(srv.proc.pid)) == 2 and children(srv.proc.pid))
    stuck = srv.client()
    try:
        search = b'{"op": "search", "from": "VNP", "to": "AOH", "date": "%s"}\n' % day(1).encode()
        # more replies than the kernel's buffers hold, never read: the worker cannot finish
        data, sent = memoryview(search * 40_000), 0
        stuck.sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while sent < len(data):
                sent += stuck.sock.send(data[sent:])
        # give the worker time to read what it will and fill its send buffers, then fill ours
        # again: once that blocks too, the worker has stopped reading (flow control)
        time.sleep(0.5)
        with contextlib.suppress(BlockingIOError):
            while sent < len(data):
                sent += stuck.sock.send(data[sent:])
        assert sent > 10_000 * len(search)
        srv.proc.send_signal(signal.SIGINT)

        def refused() -> bool:  # the stop has begun: nobody accepts any more
            try:
                Client(srv.port).close()
            except ConnectionRefusedError:
                return True
            return False

        assert wait_until(refused)
        assert srv.proc.poll() is None  # still draining the stuck client
        srv.proc.send_signal(signal.SIGINT)
        assert srv.proc.wait(WAIT_MAX) == 1  # forced
    finally:
        stuck.close()
        if srv.proc.poll() is None:
            srv.proc.kill()
    assert all(gone(pid) for pid in workers)
