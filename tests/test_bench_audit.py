"""The bench against a real server subprocess, and its audit catching what was planted.

One short rush (a few clients, one run, about a second) fills a database; the tests then work on
copies of it: an order rewritten to sit on another order's seat must be found ``oversold``, a
confirmed reply whose order is missing must be found ``lost``, two orders for one passenger of
one key must be found ``duplicates``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

from railtix.bench.audit import Evidence, audit
from railtix.bench.cli import bench
from railtix.bench.servers import start_railtix
from railtix.bench.setup import user_names
from railtix.core.orders import LIVE, Order
from railtix.store.base import decode_order, encode_order

SEED = 20261
CLIENTS = 4


@pytest.fixture(scope="module")
def rush(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real rush through the command line against a real server; the server is then stopped.
    No --database: the bench finds the file the server holds (its serving lock), as it would for
    `make run TCP=…`'s server."""
    folder = tmp_path_factory.mktemp("rush")
    database = folder / "railtix.db"
    server = start_railtix(str(database))
    try:
        result = CliRunner().invoke(
            bench,
            ["rush", "--target", server.target, "--clients", str(CLIENTS),
             "--duration", "1", "--seed", str(SEED), "--runs", "1", "--pipeline", "2",
             "--json", str(folder / "rush.json"), "--plot", str(folder / "rush.png"), "--quiet"],
        )
    finally:
        server.cleanup()
    yield {"result": result, "folder": folder, "database": database}


def _copy(database: Path, to: Path) -> Path:
    to.mkdir(exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(database) + suffix)
        if src.exists():
            shutil.copy(src, to / (database.name + suffix))
    return to / database.name


def _orders(db: Path) -> list[Order]:
    with sqlite3.connect(db) as conn:
        return [decode_order(row[0]) for row in conn.execute("SELECT body FROM orders")]


def _put(db: Path, order: Order, *, new: bool = False) -> None:
    with sqlite3.connect(db) as conn:
        if new:
            conn.execute(
                "INSERT INTO orders(id, user_id, run, status, created, hold_until, body) VALUES(?,?,?,?,?,?,?)",
                (order.id, order.user, order.run, order.status.value, order.created, order.hold_until,
                 encode_order(order)),
            )
        else:
            conn.execute("UPDATE orders SET body=? WHERE id=?", (encode_order(order), order.id))


def test_rush_report_has_the_keys_scripts_read(rush: dict[str, Any]) -> None:
    result = rush["result"]
    assert result.exit_code == 0, result.output
    doc = msgspec.json.decode((rush["folder"] / "rush.json").read_bytes())
    assert doc["seed"] == SEED and doc["scenario"] == "rush"
    assert doc["confirmed"] > 0 and doc["confirmed_per_s"] > 0
    for op in ("buy", "pay"):
        assert set(doc["latency_ms"][op]) >= {"p50", "p90", "p99", "p999"}
        assert doc["latency_ms"][op]["p50"] <= doc["latency_ms"][op]["p999"]
    assert isinstance(doc["errors"], dict)
    assert doc["audit"]["oversold"] == 0 and doc["audit"]["lost"] == 0 and doc["audit"]["duplicates"] == 0
    assert doc["audit"]["clean"] is True
    assert doc["audit"]["database"] == os.path.realpath(rush["database"])  # found, not given
    assert "removed" not in doc["audit"]  # the user's database stays, of course
    # every confirmed purchase was checked against the database
    assert doc["audit"]["checked"]["confirmed_replies"] == doc["confirmed"] + doc["generator"]["key_inconsistent"]
    assert len(doc["timeline"]["requests"]) >= 1
    # the server runs here: the report counts its serving process and its writer process
    cpu = {r["name"]: r for r in doc["server_cpu"]}
    assert {"railtix serve", "railtix-writer"} <= set(cpu), doc["server_cpu"]
    assert all(r["cpu_s"] > 0 and r["us_per_request"] > 0 for r in cpu.values())
    line = next(x for x in result.output.splitlines() if x.startswith("CPU per request: "))
    assert "railtix serve" in line and "railtix-writer" in line and "load generator" in line
    assert (rush["folder"] / "rush.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the row of repeated buys is explained where it is printed
    said = any(x.startswith("buy_again: a buy sent once more with its key") for x in result.output.splitlines())
    assert said == ("buy_again" in doc["ops"])
    assert doc["model"] is None  # a server the bench did not start: its model is not known


def test_audit_finds_a_planted_oversold_seat(rush: dict[str, Any], tmp_path: Path) -> None:
    db = _copy(rush["database"], tmp_path / "oversold")
    assert audit(str(db))["clean"], "the real rush must start clean"
    live = [o for o in _orders(db) if o.status in LIVE]
    pair = next(
        ((a, b) for a in live for b in live
         if a.id != b.id and a.run == b.run and a.seat_class == b.seat_class and a.mask & b.mask
         and a.tickets[0].seat_index != b.tickets[0].seat_index),
        None,
    )
    assert pair is not None, "the rush made no two orders on overlapping legs of one class"
    a, b = pair
    moved = msgspec.structs.replace(a.tickets[0], seat_index=b.tickets[0].seat_index)
    _put(db, msgspec.structs.replace(a, tickets=(moved, *a.tickets[1:])))

    found = audit(str(db))
    assert found["oversold"] >= 1 and not found["clean"]
    result = CliRunner().invoke(bench, ["audit", "--database", str(db)])
    assert result.exit_code == 1, result.output
    assert "OVERSOLD" in result.output


def test_audit_finds_a_lost_confirmation(rush: dict[str, Any], tmp_path: Path) -> None:
    db = _copy(rush["database"], tmp_path / "lost")
    orders = {o.id: o for o in _orders(db)}
    acks = {oid: o.status.value for oid, o in orders.items()}
    users = user_names(SEED, CLIENTS)
    since = min(o.created for o in orders.values())
    assert audit(str(db), Evidence(users, since, dict(acks)))["lost"] == 0

    acks["E" + "Z" * 16] = "held"  # an ok reply whose order the database does not have
    found = audit(str(db), Evidence(users, since, dict(acks)))
    assert found["lost"] == 1 and not found["clean"]
    assert any("no such order" in d for d in found["details"])

    held = next(oid for oid, o in orders.items() if o.status.value == "held")
    acks[held] = "paid"  # a pay confirmed, yet the order is still held
    assert audit(str(db), Evidence(users, since, dict(acks)))["lost"] == 2
    acks[held] = "held"
    paid = next(oid for oid, o in orders.items() if o.status.value == "paid")
    acks[paid] = "held"  # paid in the database, though no pay was confirmed...
    assert audit(str(db), Evidence(users, since, dict(acks)))["lost"] == 2
    # ...which is fine when a pay was sent and still unanswered when the bench stopped
    assert audit(str(db), Evidence(users, since, dict(acks), {paid: "pay"}))["lost"] == 1


def test_audit_finds_two_orders_for_one_key(rush: dict[str, Any], tmp_path: Path) -> None:
    db = _copy(rush["database"], tmp_path / "duplicates")
    users = user_names(SEED, CLIENTS)
    first = _orders(db)[0]
    since = first.created - 1
    assert audit(str(db), Evidence(users, since))["duplicates"] == 0
    # the same passengers again in a second (no longer live) order: one key made two orders
    twin = msgspec.structs.replace(first, id="E" + "Y" * 16, status=first.status.__class__("cancelled"), hold_until=None)
    _put(db, twin, new=True)
    found = audit(str(db), Evidence(users, since))
    assert found["duplicates"] == 1 and not found["clean"]
    # and a repeat of a key answered with another order id is one too
    ev = Evidence(users, since, key_mismatches=[("k", first.id, twin.id)])
    assert audit(str(db), ev)["duplicates"] == 2
