"""The real server, started as ``python -m railtix serve``, spoken to in raw JSON lines.

One server serves the whole module (start-up costs a second); each test uses its own users,
keys and passengers so that tests do not see each other's orders.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import LineClient, ServerProcess, sale_date, wait_max_s

from railtix import limits

_people = itertools.count(1)


def people(n: int) -> list[dict[str, str]]:
    return [{"name": f"乘客{k}", "id_no": f"E2E{k:010d}"} for k in (next(_people) for _ in range(n))]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    p = ServerProcess(Path(tmp_path_factory.mktemp("e2e")) / "railtix.db")
    yield p
    status = p.stop()
    assert status == 0 or status == -15, f"server exited with {status}:\n{p.log()}"


@pytest.fixture
def client(server: ServerProcess) -> Iterator[LineClient]:
    with server.client() as c:
        yield c


def _user(c: LineClient) -> str:
    return c.login(f"u{os.getpid()}x{next(_people)}")


def test_the_whole_story(server: ServerProcess, client: LineClient) -> None:
    c = client
    hello = c.ok(op="hello")
    assert hello["protocol"] == 1 and "buy" in hello["ops"]
    assert hello["limits"]["line_size_max"] == limits.line_size_max
    stations = c.ok(op="stations")["stations"]
    assert {"code": "AOH", "name": "Shanghai Hongqiao", "name_zh": "上海虹桥"} in stations
    e = c.call(op="register", user="story", password="short")
    assert e["error"]["code"] == "weak_password"
    assert c.ok(op="register", user="story", password="correct horse")["user"] == "story"
    assert c.call(op="register", user="story", password="correct horse")["error"]["code"] == "user_exists"
    assert c.call(op="login", user="story", password="wrong password")["error"]["code"] == "bad_credentials"
    token = c.ok(op="login", user="story", password="correct horse")["token"]
    date = sale_date(5)

    found = c.ok(op="search", **{"from": "VNP", "to": "AOH", "date": date})
    g1 = next(t for t in found["trains"] if t["train"] == "G1")
    assert (g1["depart"], g1["arrive"]) == ("07:00", "11:29")
    second = next(x for x in g1["classes"] if x["class"] == "second")
    stops = c.ok(op="train", train="G1", date=date)
    assert [s["station"] for s in stops["stops"]][0] == "VNP"

    pax = people(2)
    bought = c.ok(op="buy", token=token, key="story-1", train="G1", date=date, **{"from": "VNP", "to": "AOH",
                  "class": "second"}, passengers=pax, seats=["A", "F"])
    order = bought["order"]
    assert order["status"] == "held" and order["train"] == "G1" and order["date"] == date
    assert [t["passenger"] for t in order["tickets"]] == [p["name"] for p in pax]
    assert sorted(t["seat"][-1] for t in order["tickets"]) == ["A", "F"]
    assert order["price"] == 2 * second["price"]
    assert order["tickets"][0]["id_no"] != pax[0]["id_no"], "id numbers are shown masked"
    found = c.ok(op="search", **{"from": "VNP", "to": "AOH", "date": date})
    g1 = next(t for t in found["trains"] if t["train"] == "G1")
    assert next(x for x in g1["classes"] if x["class"] == "second")["left"] == second["left"] - 2

    paid = c.ok(op="pay", token=token, key="story-2", order=order["order"])["order"]
    assert paid["status"] == "paid" and "hold_until" not in paid
    assert c.ok(op="order", token=token, order=order["order"])["order"]["status"] == "paid"
    refunded = c.ok(op="refund", token=token, key="story-3", order=order["order"])["order"]
    assert refunded["status"] == "refunded" and refunded["refund"] + refunded["fee"] == order["price"]

    other = c.ok(op="buy", token=token, key="story-4", train="G1", date=date,
                 **{"from": "JGK", "to": "NKH", "class": "first"}, passengers=people(1))["order"]
    assert c.ok(op="cancel", token=token, key="story-5", order=other["order"])["order"]["status"] == "cancelled"
    mine = c.ok(op="orders", token=token)["orders"]
    assert {o["order"]: o["status"] for o in mine} == {order["order"]: "refunded", other["order"]: "cancelled"}
    # a retry of the first buy is answered as the first time
    again = c.call(op="buy", token=token, key="story-1", train="G1", date=date, **{"from": "VNP", "to": "AOH",
                   "class": "second"}, passengers=pax, seats=["A", "F"])
    assert again["order"]["order"] == order["order"] and again["order"]["status"] == "held"


def test_pipelining_100_requests(server: ServerProcess, client: LineClient) -> None:
    c = client
    token = _user(c)
    date = sale_date(6)
    reqs: list[dict[str, Any]] = []
    for i in range(100):
        kind = i % 4
        if kind == 0:
            reqs.append({"id": i, "op": "buy", "token": token, "key": f"pipe-{i}", "train": "G1", "date": date,
                         "from": "VNP", "to": "NKH", "class": "second", "passengers": people(1)})
        elif kind == 1:
            reqs.append({"id": f"s{i}", "op": "search", "from": "VNP", "to": "AOH", "date": date})
        elif kind == 2:
            reqs.append({"id": i, "op": "hello"})
        else:
            reqs.append({"id": i, "op": "orders", "token": token})
    c.send_many(reqs)
    got = [c.recv() for _ in reqs]
    assert [r["id"] for r in got] == [r["id"] for r in reqs]
    assert all(r["ok"] for r in got), [r for r in got if not r["ok"]][:3]
    bought = [r["order"]["order"] for r in got[::4]]
    assert len(set(bought)) == 25
    # an ok reply means committed: the very next read lists every order
    final = {o["order"] for o in c.ok(op="orders", token=token)["orders"]}
    assert final == set(bought)


def test_an_ok_buy_is_visible_at_once(server: ServerProcess) -> None:
    """An ok reply means committed: a read sent after it, on another connection, finds the order.

    Connection 1 buys and keeps the server busy flushing it (a stream of hellos), so that its
    reply leaves as early as the server lets it; the moment it arrives, connection 2 asks for the
    order. (Before replies waited for their commit, this failed within the first rounds.)
    """
    with server.client() as c1, server.client() as c2:
        token = _user(c1)
        date = sale_date(9)
        for round_ in range(30):
            stop = threading.Event()

            def filler(sock: socket.socket = c1.sock, stop: threading.Event = stop) -> None:
                for _ in range(20_000):
                    if stop.is_set():
                        return
                    sock.sendall(b'{"op": "hello"}\n')
                    time.sleep(0.0002)

            c1.send(id=f"buy{round_}", op="buy", token=token, key=f"visible-{round_}", train="G1", date=date,
                    **{"from": "VNP", "to": "NKH", "class": "second"}, passengers=people(1))
            t = threading.Thread(target=filler, daemon=True)
            t.start()
            try:
                for _ in range(100_000):
                    r = c1.recv()
                    if r.get("id") == f"buy{round_}":
                        break
                found = c2.call(op="order", token=token, order=r["order"]["order"])
            finally:
                stop.set()
                t.join(wait_max_s)
            assert found["ok"], f"round {round_}: an ok buy was not in the database: {found}"


def test_garbage_gets_an_error_and_others_are_still_served(server: ServerProcess) -> None:
    rng = random.Random(1234)
    with server.client() as bad:
        junk = bytes(rng.randrange(256) for _ in range(2000)).replace(b"\n", b"")
        bad.send_raw(junk + b"\n")
        r = msgspec.json.decode(bad.read_line())
        assert r["ok"] is False and r["error"]["code"] == "malformed_json" and r["id"] is None
        # the connection goes on after a bad line
        assert bad.ok(op="hello")["ok"]
        bad.send_raw(b"\x00" * 10 + b"\n" + b'{"id": 9, "op": "nope"}\n')
        assert msgspec.json.decode(bad.read_line())["error"]["code"] == "malformed_json"
        r = msgspec.json.decode(bad.read_line())
        assert r["id"] == 9 and r["error"]["code"] == "unknown_op"
    with server.client() as big:
        # the server may close before it has read everything
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            big.send_raw(b"a" * (100 * 1024))
        r = msgspec.json.decode(big.read_line())
        assert r["ok"] is False and r["error"]["code"] == "too_large"
        assert big.closed_by_server()
    with server.client() as fine:
        assert fine.ok(op="hello")["ok"]
        assert fine.ok(op="search", **{"from": "VNP", "to": "AOH", "date": sale_date(1)})["trains"]


def test_binary_noise_without_newlines_does_not_hurt_others(server: ServerProcess) -> None:
    rng = random.Random(99)
    with server.client() as noisy, server.client() as fine:
        for _ in range(8):
            noisy.send_raw(bytes(rng.randrange(256) for _ in range(4096)).replace(b"\n", b"\r"))
            assert fine.ok(op="hello")["ok"]
        # 32 KiB so far, no newline: still under the line limit, so no answer yet
        noisy.send_raw(b"\n")
        assert msgspec.json.decode(noisy.read_line())["error"]["code"] == "malformed_json"


def test_a_flood_of_blank_lines(server: ServerProcess) -> None:
    with server.client(timeout=5) as c:
        c.send_raw(b"\n" * 20_000 + b'{"id": 1, "op": "hello"}\n')
        assert c.recv()["id"] == 1


def test_a_silent_client_does_not_block_others(server: ServerProcess) -> None:
    silent = socket.create_connection(server.address, timeout=5)
    trickle = socket.create_connection(server.address, timeout=5)
    try:
        trickle.sendall(b'{"id": 1, "op": "hel')  # half a request, never finished
        with server.client() as c:
            token = _user(c)
            r = c.ok(op="buy", token=token, key="silent-1", train="G1", date=sale_date(7),
                     **{"from": "VNP", "to": "AOH", "class": "first"}, passengers=people(1))
            assert r["order"]["status"] == "held"
            assert c.ok(op="pay", token=token, key="silent-2", order=r["order"]["order"])["order"]["status"] == "paid"
    finally:
        silent.close()
        trickle.close()


def test_a_client_that_never_reads_does_not_block_others(server: ServerProcess) -> None:
    hog = socket.create_connection(server.address, timeout=5)
    try:
        hog.setblocking(False)
        line = b'{"op": "stations"}\n'
        sent = 0
        for _ in range(2000):  # stop when the server stops reading (flow control) or at 2000 x
            try:
                sent += hog.send(line * 50)
            except BlockingIOError:
                break
        with server.client() as c:
            assert c.ok(op="hello")["ok"]
            assert c.ok(op="search", **{"from": "VNP", "to": "AOH", "date": sale_date(2)})["trains"]
    finally:
        hog.close()


def test_many_clients_at_once(server: ServerProcess) -> None:
    clients = [server.client() for _ in range(50)]
    try:
        for i, c in enumerate(clients):
            c.send(op="hello", id=i)
        for i, c in enumerate(clients):
            assert c.recv()["id"] == i
    finally:
        for c in clients:
            c.close()


def test_half_closed_client_still_gets_its_replies(server: ServerProcess) -> None:
    with server.client() as c:
        token = _user(c)
        c.send_many([
            {"id": 1, "op": "buy", "token": token, "key": "half-1", "train": "G1", "date": sale_date(8),
             "from": "VNP", "to": "AOH", "class": "second", "passengers": people(1)},
            {"id": 2, "op": "hello"},
        ])
        c.sock.shutdown(socket.SHUT_WR)
        assert [c.recv()["id"] for _ in range(2)] == [1, 2]
        assert c.closed_by_server()


def test_server_survived(server: ServerProcess) -> None:
    """After everything above, the process is alive and answering."""
    assert server.proc.poll() is None, server.log()
    with server.client() as c:
        assert c.ok(op="hello")["ok"]
