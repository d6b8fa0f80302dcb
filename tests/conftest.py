"""Shared test fixtures: a tiny hand-built timetable, a fake clock, a Service driven through
Sessions, a real server subprocess and a small JSON-lines socket client.

Everything here is bounded: every wait has a deadline, every server is bound to 127.0.0.1 on
port 0, and every subprocess is stopped (then killed) when its test ends. Tests move the fake
clock instead of sleeping, so nothing asserts on timing.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from railtix.core.rides import today
from railtix.core.timetable import CST, Coach, Station, Stop, Timetable, Train
from railtix.service.service import Service
from railtix.service.session import Session
from railtix.store import open_store

ROOT = Path(__file__).resolve().parent.parent

#: How long any single wait in a test may take before the test fails instead of hanging.
wait_max_s = 20.0

# --- a tiny timetable ------------------------------------------------------------------------
TINY_STATIONS = (
    Station("AAA", "Alpha", "甲"),
    Station("BBB", "Bravo", "乙"),
    Station("CCC", "Charlie", "丙"),
    Station("DDD", "Delta", "丁"),
    Station("EEE", "Echo", "戊"),
)


def tiny_train(number: str = "T1") -> Train:
    """Five stops (four legs) and a handful of seats per class, so that sell-outs happen.

    Business: 1 coach x 2 rows x ACF = 6 seats; first: 1 coach x 2 rows x ACDF = 8 seats;
    second: 2 coaches x 2 rows x ABCDF = 20 seats.
    """
    return Train(
        number=number,
        line="Test line",
        stops=(
            Stop("AAA", None, 480, 0),
            Stop("BBB", 510, 512, 100),
            Stop("CCC", 540, 542, 200),
            Stop("DDD", 570, 572, 300),
            Stop("EEE", 600, None, 400),
        ),
        coaches=(
            Coach(1, "business", 2),
            Coach(2, "first", 2),
            Coach(3, "second", 2),
            Coach(4, "second", 2),
        ),
    )


def tiny_timetable() -> Timetable:
    """Two tiny trains on the same five stations."""
    return Timetable(stations=TINY_STATIONS, trains=(tiny_train("T1"), tiny_train("T2")))


@pytest.fixture
def tiny() -> Timetable:
    return tiny_timetable()


# --- time ------------------------------------------------------------------------------------
def cst(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    """Epoch seconds of a wall-clock time in China Standard Time."""
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=CST).timestamp()


class FakeClock:
    """A clock the test moves by hand; the Service reads it where it would read time.time()."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    @property
    def today(self) -> dt.date:
        return today(self.now)

    def date(self, days: int = 0) -> str:
        """ISO date ``days`` after today (China time) by this clock."""
        return (self.today + dt.timedelta(days=days)).isoformat()


#: 09:00 China time on an ordinary day: G1 (07:00 from Beijing South) has left, later trains not.
CLOCK_START = cst(2026, 6, 1, 9, 0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(CLOCK_START)


def sale_date(days: int = 1) -> str:
    """ISO date ``days`` after today in China time by the real clock (for real servers)."""
    return (today(time.time()) + dt.timedelta(days=days)).isoformat()


# --- a Service driven through Sessions -------------------------------------------------------
class SessionClient:
    """One connection's Session, fed JSON lines; waits (bounded) for replies via its waker."""

    _ids = itertools.count(1)

    def __init__(self, service: Service) -> None:
        self.service = service
        self.woken = threading.Event()
        self.wakes = 0
        self.session: Session = service.session(self._wake)
        self._pending: list[dict[str, Any]] = []

    def _wake(self, sessions: list[Session]) -> None:
        # called from the writer or the auth pool: only thread-safe things here
        self.wakes += 1
        self.woken.set()

    def _on_loop(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` where a serving model would call it: on the service's event loop when
        it was started on one (``make_service(loop=True)``), else here."""
        loop = getattr(self.service, "test_loop", None)
        return fn(*args) if loop is None else loop.call(fn, *args)

    def send_line(self, line: bytes) -> int:
        return int(self._on_loop(self.session.receive, line))

    def send(self, **req: Any) -> Any:
        """Send one request (an ``id`` is added when absent); returns the id."""
        req.setdefault("id", next(self._ids))
        self.send_line(msgspec.json.encode(req) + b"\n")
        return req["id"]

    def replies(self, n: int, timeout: float = wait_max_s) -> list[dict[str, Any]]:
        """The next ``n`` replies in order, or AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while len(self._pending) < n:
            if self.session.waiting:
                # a reply that waits for a commit is read after the writer's wake, as a
                # serving model reads it
                left = deadline - time.monotonic()
                assert left > 0, f"no reply within {timeout} s (have {len(self._pending)} of {n})"
                if not self.woken.wait(min(left, 0.5)):
                    continue
                self.woken.clear()
            out = self._on_loop(self.session.output)
            self._pending.extend(msgspec.json.decode(x) for x in out.splitlines())
            assert out or self.session.waiting, f"{n} replies expected, the session has no more"
        got, self._pending = self._pending[:n], self._pending[n:]
        return got

    def call(self, **req: Any) -> dict[str, Any]:
        rid = self.send(**req)
        (reply,) = self.replies(1)
        assert reply["id"] == rid
        return reply

    def ok(self, **req: Any) -> dict[str, Any]:
        reply = self.call(**req)
        assert reply["ok"] is True, reply
        return reply

    def error(self, code: str, **req: Any) -> dict[str, Any]:
        reply = self.call(**req)
        assert reply["ok"] is False, reply
        assert reply["error"]["code"] == code, reply
        return reply

    def login(self, user: str, password: str = "password123") -> str:
        """Register (if new) and log in; the token."""
        self.call(op="register", user=user, password=password)
        return str(self.ok(op="login", user=user, password=password)["token"])


class LoopThread:
    """An event loop running on a thread of its own, as a serving model's loop runs: a Service
    started on it (``start(loop)``) carries its writer process's batches and replies there."""

    def __init__(self) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        #: what the loop's callbacks raised (asyncio would only log it): the test fails on it
        self.errors: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda loop, context: self.errors.append(context))
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self.thread.start()

    def call(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` on the loop's thread; its result (bounded wait)."""
        import concurrent.futures

        if threading.current_thread() is self.thread:
            return fn(*args)

        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn(*args))
            except BaseException as e:
                done.set_exception(e)

        self.loop.call_soon_threadsafe(run)
        return done.result(wait_max_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(wait_max_s)
        self.loop.close()
        assert not self.errors, f"the event loop's callbacks raised: {self.errors}"


@pytest.fixture
def make_service(tmp_path: Path, clock: FakeClock) -> Iterator[Any]:
    """Factory of started Services on one temporary SQLite file, stopped after the test.

    The background sweeper is slowed to once an hour so that only the test's own ``sweep()``
    expires holds. ``loop=True`` starts the service on an event loop of its own thread (see
    ``LoopThread``), as the asyncio and processes models do; its loop is ``svc.test_loop``.
    """
    started: list[Service] = []
    loops: list[LoopThread] = []

    def make(database: str | None = None, shared: bool = False, loop: bool = False, **kwargs: Any) -> Service:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("sweep_interval_s", 3600.0)
        store = open_store(database or str(tmp_path / "railtix.db"))
        store.shared = shared or store.shared  # as the processes model marks its workers' stores
        svc = Service(store, **kwargs)
        if loop:
            lt = LoopThread()
            loops.append(lt)
            lt.call(svc.start, lt.loop)
            svc.test_loop = lt  # type: ignore[attr-defined]
        else:
            svc.start()
        started.append(svc)
        return svc

    yield make
    try:
        for svc in started:
            if not svc.stopping:  # a test may have stopped it already (restarts)
                svc.stop()
    finally:
        for lt in loops:
            lt.close()


# --- a real server in a subprocess -----------------------------------------------------------
LISTENING = re.compile(rb"railtix listening tcp://(\S+):(\d+)")


class ServerProcess:
    """``python -m railtix serve`` on port 0; knows its address once it printed it."""

    def __init__(self, database: Path, *extra: str) -> None:
        self.database = database
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTHONUNBUFFERED"] = "1"
        self.log_path = database.with_suffix(".log")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "railtix", "serve", "--tcp", "127.0.0.1:0",
             "--database", str(database), *extra],
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=database.parent,
            env=env,
        )
        self._lines: queue.Queue[bytes] = queue.Queue()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        self.host, self.port = self._wait_listening()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(b"")

    def _wait_listening(self) -> tuple[str, int]:
        deadline = time.monotonic() + wait_max_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise AssertionError(f"server did not report its address in {wait_max_s} s")
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if not line:
                self.kill()
                raise AssertionError("server exited before listening:\n" + self.log())
            m = LISTENING.search(line)
            if m:
                return m.group(1).decode(), int(m.group(2))

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def client(self, timeout: float = wait_max_s) -> LineClient:
        return LineClient(self.address, timeout)

    def kill(self) -> None:
        """SIGKILL: no chance to flush or finish anything."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(wait_max_s)
        self._log.close()

    def stop(self) -> int:
        """SIGTERM, a bounded wait, then SIGKILL; the exit status. Harmless when already dead."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(wait_max_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(wait_max_s)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Any]:
    """Factory: start a server on a database file (default: one per test); stopped afterwards."""
    procs: list[ServerProcess] = []

    def start(database: Path | None = None, *extra: str) -> ServerProcess:
        p = ServerProcess(database or tmp_path / "railtix.db", *extra)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()  # SIGTERM if still running; always closes the log


# --- a JSON-lines socket client --------------------------------------------------------------
class LineClient:
    """Raw JSON lines over one TCP socket; every read has a deadline."""

    def __init__(self, address: tuple[str, int], timeout: float = wait_max_s) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.sock.settimeout(timeout)
        self._buf = b""
        self._ids = itertools.count(1)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> LineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, **req: Any) -> Any:
        req.setdefault("id", next(self._ids))
        self.sock.sendall(msgspec.json.encode(req) + b"\n")
        return req["id"]

    def send_many(self, reqs: list[dict[str, Any]]) -> None:
        """Pipeline: every request in one write."""
        self.sock.sendall(b"".join(msgspec.json.encode(r) + b"\n" for r in reqs))

    def read_line(self) -> bytes:
        """One line without its newline; b"" when the server closed the connection."""
        while b"\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                rest, self._buf = self._buf, b""
                return rest
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def recv(self) -> dict[str, Any]:
        line = self.read_line()
        assert line, "the server closed the connection"
        return msgspec.json.decode(line)

    def call(self, **req: Any) -> dict[str, Any]:
        rid = self.send(**req)
        reply = self.recv()
        assert reply.get("id") == rid, reply
        return reply

    def ok(self, **req: Any) -> dict[str, Any]:
        reply = self.call(**req)
        assert reply["ok"] is True, reply
        return reply

    def closed_by_server(self) -> bool:
        """True when the server closes the connection (after any remaining lines)."""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return True
            if not chunk:
                return True
            self._buf += chunk

    def login(self, user: str, password: str = "password123") -> str:
        self.call(op="register", user=user, password=password)
        return str(self.ok(op="login", user=user, password=password)["token"])
