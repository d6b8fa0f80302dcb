"""The audit finds what guarantee 1 forbids: a database made by a real server audits clean; the
same database with a seat sold twice, a flipped bit in a stored seat map, or a missing run row
does not, and ``railtix audit`` says so with exit status 1."""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from click.testing import CliRunner

from railtix.cli import main
from railtix.client.sync import Client
from railtix.core.inventory import fold
from railtix.core.orders import Order, Status, resident_id
from railtix.core.rides import today
from railtix.store import open_store
from railtix.store.audit import AuditReport, audit_database, check_run
from railtix.store.base import decode_maps, decode_order, encode_maps, encode_order

PASSWORD = "correct horse"


def sale_date(days: int = 1) -> str:
    return (today(time.time()) + dt.timedelta(days=days)).isoformat()


def audit(path: Path) -> AuditReport:
    store = open_store(str(path))
    try:
        return audit_database(store)
    finally:
        store.close()


def cli_audit(path: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["audit", "--database", str(path), *args])


@pytest.fixture(scope="module")
def sold(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A database after a morning of sales through a real server, then stopped.

    On G1 tomorrow: two passengers Beijing South → Nanjing South, two Nanjing South → Shanghai
    Hongqiao (legs that touch but do not overlap: best fit puts them on the same seats), one the
    whole way, one cancelled and one refunded; all paid but one left held.
    """
    from conftest import ServerProcess

    base = tmp_path_factory.mktemp("audit")
    db = base / "railtix.db"
    server = ServerProcess(db)
    day = sale_date()
    people = [(f"P{i}", resident_id(f"1101011990010{i:04d}")) for i in range(8)]
    try:
        with Client(server.host, server.port, timeout=20.0) as c:
            c.register("auditor", PASSWORD)
            c.login("auditor", PASSWORD)
            north = c.buy("G1", day, "VNP", "NKH", people[0:2])["order"]
            south = c.buy("G1", day, "NKH", "AOH", people[2:4])["order"]
            whole = c.buy("G1", day, "VNP", "AOH", people[4:5])["order"]
            gone = c.buy("G1", day, "VNP", "AOH", people[5:6])["order"]
            back = c.buy("G1", day, "JGK", "AOH", people[6:7])["order"]
            other = c.buy("G3", day, "VNP", "AOH", people[7:8], seat_class="first")["order"]
            for o in (north, south, back, other):
                c.pay(o["order"])
            c.cancel(gone["order"])
            c.refund(back["order"])
    finally:
        assert server.stop() == 0
    return {"db": db, "north": north, "south": south, "whole": whole, "day": day}


def planted(sold: dict[str, Any], tmp_path: Path) -> Path:
    copy = tmp_path / "planted.db"
    shutil.copy(sold["db"], copy)
    for suffix in ("-wal", "-shm"):
        side = Path(str(sold["db"]) + suffix)
        if side.exists():
            shutil.copy(side, Path(str(copy) + suffix))
    return copy


def rewrite_order(db: Path, order_id: str, change: Any) -> Order:
    conn = sqlite3.connect(db)
    try:
        (body,) = conn.execute("SELECT body FROM orders WHERE id=?", (order_id,)).fetchone()
        order = change(decode_order(body))
        conn.execute("UPDATE orders SET body=? WHERE id=?", (encode_order(order), order_id))
        conn.commit()
    finally:
        conn.close()
    return order


def test_a_real_database_audits_clean(sold: dict[str, Any]) -> None:
    report = audit(sold["db"])
    assert report.clean, report
    assert report.orders_checked == 6
    assert report.live_orders == 4  # north, south, whole (held), other
    assert report.tickets_checked == 2 + 2 + 1 + 1
    assert report.runs_checked == 2
    result = cli_audit(sold["db"])
    assert result.exit_code == 0, result.output
    assert "clean" in result.output


def test_touching_rides_share_seats_and_that_is_fine(sold: dict[str, Any]) -> None:
    # the check would be toothless if the fixture never put two orders on one seat
    north = {(t["coach"], t["seat"]) for t in sold["north"]["tickets"]}
    south = {(t["coach"], t["seat"]) for t in sold["south"]["tickets"]}
    assert north & south


def test_a_seat_sold_twice_is_caught(sold: dict[str, Any], tmp_path: Path) -> None:
    db = planted(sold, tmp_path)
    store = open_store(str(db))
    try:
        north, south, whole = (store.order(sold[k]["order"]) for k in ("north", "south", "whole"))
    finally:
        store.close()
    assert north is not None and south is not None and whole is not None
    taken = north.tickets[0].seat_index
    assert whole.tickets[0].seat_index != taken
    # the whole-way passenger now claims a seat the Nanjing-bound passenger holds (and, since
    # touching rides share seats, perhaps the Shanghai-bound one too)
    rewrite_order(db, whole.id, lambda o: msgspec.structs.replace(
        o, tickets=(msgspec.structs.replace(o.tickets[0], seat_index=taken),)))
    holders = [o for o in (north, south) if any(t.seat_index == taken for t in o.tickets)]

    report = audit(db)
    assert not report.clean
    assert {frozenset(x.orders) for x in report.oversold} == {frozenset({h.id, whole.id}) for h in holders}
    assert {(x.run, x.seat_class, x.seat) for x in report.oversold} == {(f"G1@{sold['day']}", "second", taken)}
    # the stored map still has the whole-way passenger on the old seat (and on the taken seat
    # only the legs its holders cover)
    stored_taken = 0
    for h in holders:
        stored_taken |= h.mask
    differ = {whole.tickets[0].seat_index} | ({taken} if stored_taken | whole.mask != stored_taken else set())
    (mismatch,) = report.mismatched
    assert mismatch.seat_class == "second" and set(mismatch.seats) == differ
    # tickets per leg still match the (stale) stored map: the count alone cannot see this one
    assert report.capacity == []

    # as if the writer itself had sold the seat twice and stored maps to match its orders: no
    # mismatch left, but on the doubled legs tickets plus open seats now exceed the seats
    run = f"G1@{sold['day']}"
    store = open_store(str(db))
    try:
        timetable = store.get_timetable()
        assert timetable is not None
        train = timetable.train_by_number["G1"]
        folded, _ = fold(train, store.live_orders(run))
    finally:
        store.close()
    maps = {c: np.array(v, dtype=np.uint64) for c, v in folded.items()}
    conn = sqlite3.connect(db)
    conn.execute("UPDATE runs SET maps=? WHERE run=?", (encode_maps(maps), run))
    conn.commit()
    conn.close()
    report = audit(db)
    assert report.mismatched == []
    assert {frozenset(x.orders) for x in report.oversold} == {frozenset({h.id, whole.id}) for h in holders}
    legs_doubled = {c.leg for c in report.capacity if c.sold + c.free > c.capacity}
    assert legs_doubled == {leg for h in holders for leg in range(h.start, h.end)}
    assert all(c.sold + c.free == c.capacity + 1 for c in report.capacity)

    result = cli_audit(db)
    assert result.exit_code == 1
    assert "OVERSOLD" in result.output and north.id in result.output and whole.id in result.output


def test_a_flipped_bit_in_a_stored_map_is_caught(sold: dict[str, Any], tmp_path: Path) -> None:
    db = planted(sold, tmp_path)
    run = f"G1@{sold['day']}"
    store = open_store(str(db))
    try:
        timetable = store.get_timetable()
        assert timetable is not None
        train = timetable.train_by_number["G1"]
        row = store.run_row(run)
    finally:
        store.close()
    assert row is not None
    maps = decode_maps(row[1], train)
    free_seat = int((maps["business"] == 0).nonzero()[0][0])
    maps["business"][free_seat] |= 1 << 2  # leg 2 sold to nobody
    conn = sqlite3.connect(db)
    conn.execute("UPDATE runs SET maps=? WHERE run=?", (encode_maps(maps), run))
    conn.commit()
    conn.close()

    report = audit(db)
    assert report.oversold == []
    assert [(m.run, m.seat_class, m.seats) for m in report.mismatched] == [(run, "business", [free_seat])]
    assert [(c.seat_class, c.leg, c.capacity - c.sold - c.free) for c in report.capacity] == [("business", 2, 1)]

    result = cli_audit(db, "--json")
    assert result.exit_code == 1
    out = msgspec.json.decode(result.stdout)
    assert out["clean"] is False and out["mismatched"][0]["seats"] == [free_seat]


def test_a_missing_run_row_makes_orphans(sold: dict[str, Any], tmp_path: Path) -> None:
    db = planted(sold, tmp_path)
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM runs WHERE run LIKE 'G3@%'")
    conn.commit()
    conn.close()
    report = audit(db)
    assert len(report.orphans) == 1 and report.orphans[0].run.startswith("G3@")
    assert cli_audit(db).exit_code == 1


def test_an_order_turned_live_again_is_caught(sold: dict[str, Any], tmp_path: Path) -> None:
    # a cancelled order whose seat was given back, marked held again: its seat is not in the map
    db = planted(sold, tmp_path)
    conn = sqlite3.connect(db)
    (oid,) = conn.execute("SELECT id FROM orders WHERE status='cancelled'").fetchone()
    conn.close()
    rewrite_order(db, oid, lambda o: msgspec.structs.replace(o, status=Status.HELD))
    conn = sqlite3.connect(db)
    conn.execute("UPDATE orders SET status='held' WHERE id=?", (oid,))
    conn.commit()
    conn.close()
    report = audit(db)
    assert report.mismatched and not report.clean


def test_check_run_needs_no_database(sold: dict[str, Any]) -> None:
    store = open_store(str(sold["db"]))
    try:
        timetable = store.get_timetable()
        run = f"G1@{sold['day']}"
        row = store.run_row(run)
        live = store.live_orders(run)
    finally:
        store.close()
    assert timetable is not None and row is not None
    assert check_run(timetable, run, row[1], live).clean
    # without its orders, the stored map has seats sold to nobody
    found = check_run(timetable, run, row[1], [])
    assert found.mismatched and found.capacity and not found.oversold


def test_audit_refuses_a_missing_database(tmp_path: Path) -> None:
    result = cli_audit(tmp_path / "nothing.db")
    assert result.exit_code == 2  # could not check: not the 1 of a finding
    assert "no database" in result.output
    assert not (tmp_path / "nothing.db").exists()


def test_auditing_a_live_database_raises_no_false_alarm(start_server: Any) -> None:
    """Sales go on while the audit reads: runs and orders are read by separate queries, and a
    commit in between must not be reported as a problem (suspect runs are read again)."""
    import threading

    server = start_server()
    day = sale_date(2)
    stop = threading.Event()
    errors: list[BaseException] = []

    def sell() -> None:
        try:
            with Client(server.host, server.port, timeout=20.0) as c:
                c.register("busy", PASSWORD)
                c.login("busy", PASSWORD)
                for i in range(300):  # bounded
                    if stop.is_set():
                        return
                    o = c.buy("G1", day, "VNP", "NKH" if i % 2 else "AOH", [(f"Q{i}", resident_id(f"2201011990{i:07d}"))])
                    if i % 3 == 0:
                        c.cancel(o["order"]["order"])
        except BaseException as e:  # reported by the test below
            errors.append(e)

    seller = threading.Thread(target=sell, daemon=True)
    seller.start()
    reports: list[AuditReport] = []
    deadline = time.monotonic() + 60
    try:
        while seller.is_alive() and time.monotonic() < deadline and len(reports) < 500:
            reports.append(audit(server.database))
    finally:
        stop.set()
        seller.join(30)
    assert not errors, errors
    assert len(reports) >= 2
    for report in reports:
        assert report.clean, report
    final = audit(server.database)
    assert final.clean and final.orders_checked == 300
