"""The four serving models, one behaviour suite: same protocol, same outcomes, different waiting.

Each server runs as a subprocess on 127.0.0.1, port 0, with its own database file and a short
read deadline, started through a tiny launcher that calls ``railtix.serve.model(name)`` (the
``serve`` command does not take the read deadline). The suite checks outcomes of the protocol
(accounts, purchases, refunds, pipelining, bad input, no seat sold twice across connections)
and the one place where the models differ on purpose: a slow client stalls everyone under
``serial`` and nobody under the others.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest

from railtix.core.inventory import fold
from railtix.core.timetable import CST
from railtix.demo.timetable import demo_timetable
from railtix.store import open_store

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("asyncio", "serial", "threads", "processes")

#: the read deadline every test server runs with (seconds)
DEADLINE = 2.0

#: any single wait in these tests, at most (a bound, not an expectation)
WAIT_MAX = 20.0

LAUNCHER = """
import sys, msgspec
from railtix.serve import model
from railtix.serve.options import ServeOptions
from railtix.service.service import Service
cfg = msgspec.json.decode(sys.argv[1])
db = cfg["database"]
opts = ServeOptions(
    tcp_host="127.0.0.1", tcp_port=0, database=db, workers=cfg["workers"], extra=cfg["extra"],
    on_ready=lambda a: print(f"railtix listening tcp://{a['tcp'][0]}:{a['tcp'][1]}", flush=True),
)
model(cfg["model"])(lambda: Service.open(db), opts)
"""


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def day(offset: int = 1) -> str:
    """A sale date ``offset`` days from today, China time."""
    return (dt.datetime.now(CST).date() + dt.timedelta(days=offset)).isoformat()


_ids = itertools.count(1)


def id_no() -> str:
    """A fresh passenger id number (a passenger may hold one ticket per run)."""
    return f"1101{os.getpid() % 10000:04d}{next(_ids):08d}"


def new_key() -> str:
    return uuid.uuid4().hex


# --- a line client ---------------------------------------------------------------------------
class Client:
    """A blocking protocol v1 client for tests: JSON lines out, replies read with a bound."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_MAX)
        self.buf = b""
        self._id = itertools.count(1)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, req: dict[str, Any]) -> int:
        if "id" not in req:
            req = {"id": next(self._id), **req}
        self.sock.sendall(msgspec.json.encode(req) + b"\n")
        return req["id"]

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def readable(self, timeout: float) -> bool:
        """Whether a reply (or the end of the stream) arrives within ``timeout``."""
        return b"\n" in self.buf or bool(select.select([self.sock], [], [], timeout)[0])

    def reply(self, timeout: float = WAIT_MAX) -> dict[str, Any]:
        """The next reply line; AssertionError on end of stream or when none comes in time."""
        end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            assert left > 0, "no reply in time"
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed before the reply"
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return msgspec.json.decode(line)

    def call(self, req: dict[str, Any]) -> dict[str, Any]:
        rid = self.send(req)
        rep = self.reply()
        assert rep["id"] == rid
        return rep

    def closed(self, timeout: float = WAIT_MAX) -> bool:
        """True when the server closes the connection within ``timeout`` (replies left unread)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return False
            except ConnectionResetError:
                return True
            if not chunk:
                return True
            self.buf += chunk
        return False


# --- servers ---------------------------------------------------------------------------------
@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    database: str
    log: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def client(self) -> Client:
        return Client(self.port)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(WAIT_MAX)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(WAIT_MAX)
            raise AssertionError(f"server did not stop on signal {sig}") from None


def wait_listening(proc: subprocess.Popen[bytes], log: Path) -> int:
    """The port from the server's ``railtix listening tcp://HOST:PORT`` line."""
    assert proc.stdout is not None
    end = time.monotonic() + WAIT_MAX
    while time.monotonic() < end:
        if select.select([proc.stdout], [], [], 0.1)[0]:
            line = proc.stdout.readline().decode()
            if line.startswith("railtix listening tcp://"):
                return int(line.rsplit(":", 1)[1])
            if not line:
                break
    proc.kill()
    proc.wait(WAIT_MAX)
    raise AssertionError(f"server did not start:\n{log.read_text(errors='replace')}")


def start_server(
    model: str, tmp: Path, *, workers: int = 2, read_deadline_s: float = DEADLINE, **extra: Any
) -> Server:
    database = str(tmp / f"{model}-{uuid.uuid4().hex[:8]}.db")
    log = tmp / f"{model}-{uuid.uuid4().hex[:8]}.log"
    cfg = {"model": model, "database": database, "workers": workers, "extra": {"read_deadline_s": read_deadline_s, **extra}}
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, msgspec.json.encode(cfg).decode()],
            stdout=subprocess.PIPE, stderr=err, env=env(), cwd=tmp,
        )
    return Server(proc, wait_listening(proc, log), database, log, extra)


@pytest.fixture(scope="module", params=MODELS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(request.param, tmp_path_factory.mktemp(request.param))
    srv.extra["model"] = request.param
    yield srv
    srv.stop()


def model_of(server: Server) -> str:
    return str(server.extra["model"])


def account(c: Client) -> str:
    """Register and log in a fresh user on ``c``; its token."""
    user = "u" + uuid.uuid4().hex[:12]
    assert c.call({"op": "register", "user": user, "password": "correct horse"})["ok"]
    rep = c.call({"op": "login", "user": user, "password": "correct horse"})
    assert rep["ok"], rep
    return str(rep["token"])


def buy(token: str, *, train: str = "G1", date: str | None = None, seat_class: str = "second",
        key: str | None = None, passenger: str | None = None) -> dict[str, Any]:
    return {
        "op": "buy", "token": token, "key": key or new_key(), "train": train, "date": date or day(1),
        "from": "VNP", "to": "AOH", "class": seat_class,
        "passengers": [{"name": "张三", "id_no": passenger or id_no()}],
    }


def error_code(rep: dict[str, Any]) -> str | None:
    return None if rep["ok"] else rep["error"]["code"]


# --- outcomes ----------------------------------------------------------------------------------
def test_account_purchase_and_refund(server: Server) -> None:
    with server.client() as c:
        user = "u" + uuid.uuid4().hex[:12]
        assert c.call({"op": "register", "user": user, "password": "correct horse"})["ok"]
        assert error_code(c.call({"op": "register", "user": user, "password": "another one"})) == "user_exists"
        assert error_code(c.call({"op": "register", "user": "x" + user, "password": "short"})) == "weak_password"
        assert error_code(c.call({"op": "login", "user": user, "password": "wrong horse"})) == "bad_credentials"
        token = c.call({"op": "login", "user": user, "password": "correct horse"})["token"]

        found = c.call({"op": "search", "from": "VNP", "to": "AOH", "date": day(1)})
        assert found["ok"] and found["date"] == day(1)
        assert "G1" in [t["train"] for t in found["trains"]]

        req = buy(token)
        held = c.call(req)
        assert held["ok"], held
        order = held["order"]
        assert order["status"] == "held" and order["train"] == "G1" and len(order["tickets"]) == 1
        again = c.call(req)  # the same key: the first answer, not a second order
        assert again["order"]["order"] == order["order"]

        paid = c.call({"op": "pay", "token": token, "key": new_key(), "order": order["order"]})
        assert paid["ok"] and paid["order"]["status"] == "paid"
        mine = c.call({"op": "orders", "token": token})
        assert [o["order"] for o in mine["orders"]] == [order["order"]]
        assert mine["orders"][0]["status"] == "paid"
        refunded = c.call({"op": "refund", "token": token, "key": new_key(), "order": order["order"]})
        assert refunded["ok"] and refunded["order"]["status"] == "refunded"
        assert error_code(c.call({"op": "refund", "token": token, "key": new_key(), "order": order["order"]})) == "order_not_refundable"

    with server.client() as other:  # another connection, another user: not their order
        stranger = account(other)
        assert error_code(other.call({"op": "order", "token": stranger, "order": order["order"]})) == "not_found"
        assert error_code(other.call({"op": "orders", "token": "nonsense"})) == "unauthorized"


def test_pipelined_replies_keep_request_order(server: Server) -> None:
    with server.client() as c:
        token = account(c)
        lines = [
            {"id": 1, "op": "hello"},
            buy(token) | {"id": 2},  # waits for a commit
            {"id": 3, "op": "stations"},
            {"id": 4, "op": "buy", "token": token},  # missing fields
            {"id": 5, "op": "search", "from": "VNP", "to": "AOH", "date": day(1)},
            buy(token, seat_class="first") | {"id": 6},
            {"id": 7, "op": "orders", "token": token},
            {"id": 8, "op": "pay", "token": token, "key": new_key(), "order": "Enosuchorder"},
        ]
        c.send_raw(b"".join(msgspec.json.encode(x) + b"\n" for x in lines) + b"{not json\n")
        replies = [c.reply() for _ in range(len(lines) + 1)]
    assert [r["id"] for r in replies] == [1, 2, 3, 4, 5, 6, 7, 8, None]
    assert [error_code(r) for r in replies] == [
        None, None, None, "missing_field", None, None, None, "not_found", "malformed_json",
    ]
    assert replies[1]["order"]["class"] == "second" and replies[5]["order"]["class"] == "first"


def test_bad_input_gets_errors_and_changes_nothing(server: Server) -> None:
    with server.client() as c:
        token = account(c)
        cases: list[tuple[bytes, str]] = [
            (b"[1, 2]", "malformed_json"),
            (b'{"op": "hello", "id": "\xff"}', "malformed_json"),  # not UTF-8
            (b'{"op": "hello", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}", "malformed_json"),  # too deep
            (b'{"id": 1, "op": "fly"}', "unknown_op"),
            (b'{"id": 2, "op": "login", "user": "a"}', "missing_field"),
            (b'{"id": 3, "op": "orders", "token": "t", "limit": "many"}', "invalid_field"),
            (msgspec.json.encode(buy(token, date="2001-01-01") | {"id": 4}), "date_in_past"),
            (msgspec.json.encode(buy(token, train="Z999") | {"id": 5}), "unknown_train"),
            (msgspec.json.encode({**buy(token), "class": "sleeper", "id": 6}), "invalid_field"),
        ]
        for line, code in cases:
            c.send_raw(line + b"\n")
            assert error_code(c.reply()) == code, line
        assert c.call({"op": "orders", "token": token})["orders"] == []  # nothing was bought
        assert c.call({"op": "hello"})["ok"]  # the connection is still good
        c.send_raw(b"x" * (70 * 1024))  # longer than a line may be: answered once, then closed
        assert error_code(c.reply()) == "too_large"
        assert c.closed()


def test_no_seat_sold_twice_across_connections(server: Server) -> None:
    """Four connections race for G1's 24 business seats: 24 sales, each seat once."""
    date = day(3)
    with server.client() as c:
        token = account(c)
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def shopper() -> None:
        with server.client() as c:
            reqs = [buy(token, date=date, seat_class="business") for _ in range(10)]
            c.send_raw(b"".join(msgspec.json.encode(r) + b"\n" for r in reqs))
            got = [c.reply() for _ in reqs]
        with lock:
            results.extend(got)

    threads = [threading.Thread(target=shopper) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_MAX * 2)
    assert len(results) == 40
    sold = [r["order"] for r in results if r["ok"]]
    assert {error_code(r) for r in results if not r["ok"]} == {"sold_out"}
    assert len(sold) == 24
    seats = {(t["coach"], t["seat"]) for o in sold for t in o["tickets"]}
    assert len(seats) == 24
    store = open_store(server.database)  # the database agrees: no overlap among live orders
    try:
        run = f"G1@{date}"
        orders = [o for o in store.all_orders() if o.run == run]
        _, overlaps = fold(demo_timetable().train_by_number["G1"], orders)
        assert len(orders) == 24 and overlaps == []
    finally:
        store.close()


# --- deadlines and slow clients ----------------------------------------------------------------
def test_silent_client_is_closed_after_the_read_deadline(server: Server) -> None:
    with server.client() as c:
        assert c.readable(DEADLINE / 2) is False  # nothing is said to a silent client early
        rep = c.reply(DEADLINE * 5)
        assert error_code(rep) == "timeout" and rep["id"] is None
        assert c.closed()


def test_trickling_client_is_closed_although_bytes_keep_coming(server: Server) -> None:
    """The deadline counts from the last complete line, not from the last byte."""
    with server.client() as c:
        # complete lines more often than the deadline keep the connection
        for _ in range(3):
            assert c.call({"op": "hello"})["ok"]
            time.sleep(DEADLINE * 0.4)
        # a byte at a time, never a newline: closed although bytes keep arriving
        closed = answered = False
        for ch in itertools.islice(itertools.cycle(b'{"op": "hello"'), int(DEADLINE * 3 / 0.2)):
            try:
                c.send_raw(bytes([ch]))
            except OSError:
                closed = True
                break
            if c.readable(0.2):
                answered = True
                break
        assert closed or answered, "still open after three deadlines of trickling"
        if answered:
            assert error_code(c.reply(0.5)) == "timeout"
            assert c.closed()


def test_slow_client_stalls_only_the_serial_model(server: Server) -> None:
    """A client holds a connection with half a line; a second client asks for ``hello``."""
    slow = server.client()
    try:
        slow.send_raw(b'{"id": 1, "op": "hel')
        time.sleep(0.1)  # let the server take the slow client first
        with server.client() as second:
            second.send({"op": "hello"})
            if model_of(server) == "serial":
                # the lecture's failure: nobody else is served while the slow client holds on
                assert second.readable(DEADLINE / 2) is False
                assert error_code(slow.reply(DEADLINE * 5)) == "timeout"
                assert slow.closed()
                assert second.reply(DEADLINE * 5)["ok"]  # and served once it is gone
            else:
                assert second.reply(DEADLINE * 5)["ok"]
                assert slow.readable(0) is False  # answered while the slow one still waits
    finally:
        slow.close()


# --- model-specific ------------------------------------------------------------------------------
@pytest.mark.skipif(not shutil.which("ss"), reason="needs iproute2's ss to read a listening socket")
def test_a_rush_of_connections_finds_room_to_wait(server: Server) -> None:
    """The listening socket keeps ``listen_backlog`` handshakes waiting, not asyncio's default of
    100: a thousand clients connecting at once must not have theirs dropped and retried."""
    from railtix import limits

    out = subprocess.run(["ss", "-ltnH", f"sport = :{server.port}"], capture_output=True, text=True, check=True)
    backlogs = {int(line.split()[2]) for line in out.stdout.splitlines() if line.startswith("LISTEN")}
    assert backlogs == {min(limits.listen_backlog, _somaxconn())}


def _somaxconn() -> int:
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except OSError:
        return 4096


def test_threads_over_the_limit_get_busy(tmp_path: Path) -> None:
    srv = start_server("threads", tmp_path, threads_max=2)
    try:
        first, second = srv.client(), srv.client()
        assert first.call({"op": "hello"})["ok"] and second.call({"op": "hello"})["ok"]
        with srv.client() as third:
            rep = third.reply()
            assert error_code(rep) == "busy" and rep["error"]["retry"] is True
            assert third.closed()
        first.close()
        for _ in range(100):  # the slot comes free once the first thread has ended (bounded)
            with srv.client() as fourth:
                rep = fourth.call({"op": "hello"}) if not fourth.readable(0.05) else fourth.reply()
            if rep["ok"]:
                break
        assert rep["ok"]
        second.close()
    finally:
        assert srv.stop() == 0


def test_processes_refuse_a_memory_database(tmp_path: Path) -> None:
    cfg = {"model": "processes", "database": ":memory:", "workers": 2, "extra": {}}
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, msgspec.json.encode(cfg).decode()],
        capture_output=True, env=env(), cwd=tmp_path, timeout=WAIT_MAX,
    )
    assert done.returncode != 0
    assert b":memory:" in done.stderr and b"Traceback" not in done.stderr
    assert b"listening" not in done.stdout


@pytest.mark.parametrize("model", MODELS)
def test_cli_serves_each_model_and_stops_on_sigterm(model: str, tmp_path: Path) -> None:
    """``railtix serve --model M`` serves, and SIGTERM answers the in-flight request and exits 0."""
    log = tmp_path / "serve.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "railtix", "serve", "--model", model, "--tcp", "127.0.0.1:0",
             "--database", str(tmp_path / "cli.db")],
            stdout=subprocess.PIPE, stderr=err, env=env(), cwd=tmp_path,
        )
    srv = Server(proc, wait_listening(proc, log), str(tmp_path / "cli.db"), log)
    with srv.client() as c:
        token = account(c)
        c.send(buy(token))
        proc.send_signal(signal.SIGTERM)
        rep = c.reply()
        assert rep["ok"] or error_code(rep) == "shutting_down"
        assert c.closed()
    assert srv.stop() == 0, log.read_text(errors="replace")
