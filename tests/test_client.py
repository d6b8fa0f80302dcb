"""The blocking and asyncio clients against a real server (asyncio model, in this process,
bound to port 0 on a temporary database): the user story, refusals as RailtixError, pipelined
replies matched to their requests, and the single safe retry after a dropped connection."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from railtix.client import ConnectionLost, RailtixError, Unreachable
from railtix.client.aio import AsyncClient
from railtix.client.sync import Client
from railtix.core.rides import today
from railtix.serve.asyncio_model import serve
from railtix.serve.options import ServeOptions
from railtix.service.service import Service

#: Any single wait in these tests; past it the test fails rather than hangs.
wait_s = 20.0

PASSWORD = "correct horse"
ZHANG = ("Zhang San", "110101199001011237")
LI = ("Li Si", "110101199001015676")


def sale_date(days: int = 1) -> str:
    """A date on sale by the real clock, judged in China time as the server judges it."""
    return (today(time.time()) + dt.timedelta(days=days)).isoformat()


class ThreadServer:
    """The asyncio serving model on its own loop in a thread, on port 0."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.address: tuple[str, int] | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="test-server", daemon=True)
        self._thread.start()
        assert self._ready.wait(wait_s), "server did not start"
        if self._error is not None:
            raise self._error
        assert self.address is not None

    def _on_ready(self, addresses: dict[str, tuple[str, int]]) -> None:
        self.address = (addresses["tcp"][0], addresses["tcp"][1])
        self._ready.set()

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            opts = ServeOptions(tcp_host="127.0.0.1", tcp_port=0, database=str(self.database),
                                on_ready=self._on_ready)
            await serve(lambda: Service.open(str(self.database)), opts, self._stop)

        try:
            asyncio.run(main())
        except BaseException as e:  # surface startup failures in the test, not a hang
            self._error = e
            self._ready.set()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(wait_s)
        assert not self._thread.is_alive(), "server did not stop"

    @property
    def addr(self) -> tuple[str, int]:
        assert self.address is not None
        return self.address

    def client(self, token: str | None = None) -> Client:
        return Client(*self.addr, timeout=wait_s, token=token)

    def aclient(self, token: str | None = None) -> AsyncClient:
        return AsyncClient(*self.addr, timeout=wait_s, token=token)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    s = ThreadServer(tmp_path_factory.mktemp("client") / "railtix.db")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def token(server: ThreadServer) -> str:
    with server.client() as c:
        c.register("carol", PASSWORD)
        return str(c.login("carol", PASSWORD)["token"])


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the blocking client ---------------------------------------------------------------------
def test_user_story(server: ThreadServer) -> None:
    day = sale_date()
    with server.client() as c:
        assert c.hello()["protocol"] == 1
        assert c.register("alice", PASSWORD)["user"] == "alice"
        assert c.login("alice", PASSWORD)["token"] == c.token
        found = c.search("Beijing South", "Shanghai Hongqiao", day)
        g1 = next(t for t in found["trains"] if t["train"] == "G1")
        second = next(k for k in g1["classes"] if k["class"] == "second")
        assert second["left"] > 2

        held = c.buy("G1", day, "VNP", "AOH", [ZHANG, LI], seat_class="second")["order"]
        assert held["status"] == "held"
        assert [t["passenger"] for t in held["tickets"]] == ["Zhang San", "Li Si"]
        assert held["price"] == 2 * second["price"]
        after = c.search("VNP", "AOH", day)
        g1_after = next(t for t in after["trains"] if t["train"] == "G1")
        assert next(k for k in g1_after["classes"] if k["class"] == "second")["left"] == second["left"] - 2

        paid = c.pay(held["order"])["order"]
        assert paid["status"] == "paid" and "hold_until" not in paid
        mine = c.orders()["orders"]
        assert [(o["order"], o["status"]) for o in mine] == [(held["order"], "paid")]
        assert c.order(held["order"])["order"]["tickets"] == paid["tickets"]

        refunded = c.refund(held["order"])["order"]
        assert refunded["status"] == "refunded"
        assert refunded["refund"] + refunded["fee"] == refunded["price"]
        with pytest.raises(RailtixError) as e:
            c.refund(held["order"])
        assert e.value.code == "order_not_refundable"


def test_refusals_raise_with_their_codes(server: ThreadServer, token: str) -> None:
    with server.client(token=token) as c:
        with pytest.raises(RailtixError) as e:
            c.search("Bejing South", "AOH", sale_date())
        assert e.value.code == "unknown_station" and e.value.retry is False
        assert "Beijing South (VNP)" in e.value.message
        assert e.value.reply is not None and e.value.reply["ok"] is False
        with pytest.raises(RailtixError) as e:
            c.pay("ENOSUCHORDER")
        assert e.value.code == "not_found"
        with pytest.raises(RailtixError) as e:
            c.login("carol", "wrong password")
        assert e.value.code == "bad_credentials"
        # the connection is still good after refusals
        assert c.train("G1")["train"] == "G1"
    with server.client() as anonymous, pytest.raises(RailtixError) as e:
        anonymous.orders()
    assert e.value.code == "unauthorized"


def test_same_key_same_order(server: ThreadServer, token: str) -> None:
    day = sale_date(2)
    with server.client(token=token) as c:
        first = c.buy("G3", day, "VNP", "AOH", [ZHANG], key="k-same")["order"]
        again = c.buy("G3", day, "VNP", "AOH", [ZHANG], key="k-same")["order"]
        assert again["order"] == first["order"]
        with pytest.raises(RailtixError) as e:
            c.buy("G3", day, "VNP", "AOH", [LI], key="k-same")
        assert e.value.code == "key_reused_with_different_request"
        c.cancel(first["order"])


def test_call_many_matches_replies(server: ThreadServer) -> None:
    numbers = ["G1", "G3", "G5", "NOPE", "G13", "G101"] * 30  # more than one pipeline window
    with server.client() as c:
        replies = c.call_many([{"op": "train", "train": n} for n in numbers])
    assert len(replies) == len(numbers)
    for n, r in zip(numbers, replies, strict=True):
        if n == "NOPE":
            assert r["ok"] is False and r["error"]["code"] == "unknown_train"
        else:
            assert r["ok"] is True and r["train"] == n


def test_unreachable() -> None:
    with pytest.raises(Unreachable) as e, Client("127.0.0.1", free_port(), timeout=wait_s) as c:
        c.hello()
    assert e.value.code == "unreachable"


class DropFirstReply:
    """A proxy that forwards the first request of the first connection to the server, reads
    the server's reply and then drops the client's connection without passing the reply on:
    the request happened, the client never learned its outcome. Later connections are relayed
    faithfully. ``first_reply`` keeps what the client missed."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.first_reply = b""
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(wait_s)
        host, port = self.listener.getsockname()[:2]
        self.address: tuple[str, int] = (host, port)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        for _ in range(2):  # the dropped connection and the retry: bounded
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._relay, args=(conn, self.connections == 1), daemon=True).start()

    def _relay(self, conn: socket.socket, drop: bool) -> None:
        conn.settimeout(wait_s)
        with conn, socket.create_connection(self.target, timeout=wait_s) as up:
            buf = b""
            up_buf = b""
            while True:
                while b"\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                line, _, buf = buf.partition(b"\n")
                up.sendall(line + b"\n")
                while b"\n" not in up_buf:
                    chunk = up.recv(65536)
                    if not chunk:
                        return
                    up_buf += chunk
                reply, _, up_buf = up_buf.partition(b"\n")
                if drop:
                    self.first_reply = reply
                    return  # closes the client's connection without a reply
                conn.sendall(reply + b"\n")

    def close(self) -> None:
        self.listener.close()
        self._thread.join(wait_s)


def test_dropped_connection_retries_a_purchase_once_with_its_key(server: ThreadServer, token: str) -> None:
    import msgspec

    proxy = DropFirstReply(server.addr)
    try:
        with Client(*proxy.address, timeout=wait_s, token=token) as c:
            order = c.buy("G5", sale_date(3), "VNP", "AOH", [ZHANG])["order"]
    finally:
        proxy.close()
    missed = msgspec.json.decode(proxy.first_reply)
    assert missed["ok"] is True
    assert order["order"] == missed["order"]["order"]  # the retry got the first result
    assert proxy.connections == 2
    with server.client(token=token) as c:
        on_run = [o for o in c.orders()["orders"] if o["train"] == "G5" and o["date"] == sale_date(3)]
        assert [o["order"] for o in on_run] == [order["order"]]  # not a second order
        c.cancel(order["order"])


def test_dropped_connection_is_not_retried_for_register(server: ThreadServer) -> None:
    proxy = DropFirstReply(server.addr)
    try:
        with Client(*proxy.address, timeout=wait_s) as c, pytest.raises(ConnectionLost):
            c.register("dave", PASSWORD)
    finally:
        proxy.close()
    assert proxy.connections == 1


# --- the asyncio client ----------------------------------------------------------------------
def test_async_user_story(server: ThreadServer) -> None:
    async def story() -> None:
        day = sale_date()
        async with server.aclient() as c:
            await c.register("erin", PASSWORD)
            await c.login("erin", PASSWORD)
            found = await c.search("VNP", "AOH", day)
            assert any(t["train"] == "G1" for t in found["trains"])
            held = (await c.buy("G1", day, "VNP", "Nanjing South", [ZHANG, LI], seat_class="first"))["order"]
            assert held["status"] == "held" and len(held["tickets"]) == 2
            assert (await c.pay(held["order"]))["order"]["status"] == "paid"
            assert [o["order"] for o in (await c.orders())["orders"]] == [held["order"]]
            refunded = (await c.refund(held["order"]))["order"]
            assert refunded["status"] == "refunded"
            with pytest.raises(RailtixError) as e:
                await c.cancel(held["order"])
            assert e.value.code == "order_not_cancellable"

    asyncio.run(asyncio.wait_for(story(), wait_s))


def test_async_pipelined_calls_are_matched(server: ThreadServer) -> None:
    numbers = ["G1", "G3", "G5", "NOPE", "G13", "G101"] * 50

    async def many() -> None:
        async with server.aclient() as c:
            # one connection, many tasks at once
            results = await asyncio.gather(
                *(c.call("train", train=n) for n in numbers), return_exceptions=True
            )
            for n, r in zip(numbers, results, strict=True):
                if n == "NOPE":
                    assert isinstance(r, RailtixError) and r.code == "unknown_train"
                else:
                    assert isinstance(r, dict) and r["train"] == n
            replies = await c.call_many([{"op": "train", "train": n} for n in numbers[:12]])
            assert [r.get("train") for r in replies] == [None if n == "NOPE" else n for n in numbers[:12]]

    asyncio.run(asyncio.wait_for(many(), wait_s))


def test_async_retry_after_drop(server: ThreadServer, token: str) -> None:
    import msgspec

    proxy = DropFirstReply(server.addr)

    async def buy() -> dict[str, Any]:
        async with AsyncClient(*proxy.address, timeout=wait_s, token=token) as c:
            return (await c.buy("G13", sale_date(4), "VNP", "AOH", [LI]))["order"]

    try:
        order = asyncio.run(asyncio.wait_for(buy(), wait_s))
    finally:
        proxy.close()
    assert order["order"] == msgspec.json.decode(proxy.first_reply)["order"]["order"]
    with server.client(token=token) as c:
        c.cancel(order["order"])


def test_async_unreachable() -> None:
    async def go() -> None:
        await AsyncClient("127.0.0.1", free_port(), timeout=wait_s).connect()

    with pytest.raises(Unreachable):
        asyncio.run(go())


def test_addresses_as_people_type_them() -> None:
    from railtix.client import parse_address

    assert parse_address("127.0.0.1:5003") == ("127.0.0.1", 5003)
    assert parse_address("5003") == ("127.0.0.1", 5003)  # a bare number is a port
    assert parse_address(":5003") == ("127.0.0.1", 5003)
    assert parse_address("example.org") == ("example.org", 5002)
    assert parse_address("[::1]:5003") == ("::1", 5003)
    with pytest.raises(ValueError, match="out of range"):
        parse_address("70000")
    with pytest.raises(ValueError, match="not HOST:PORT"):
        parse_address("host:port")
