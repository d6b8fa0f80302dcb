"""The PostgreSQL store: two services (as two worker processes would) share one database.

Skipped when no PostgreSQL answers at 127.0.0.1:5432. Each test uses its own schema and drops it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import SessionClient, tiny_timetable

from railtix.core.inventory import fold
from railtix.store import open_store

PG = "postgresql://postgres@127.0.0.1:5432/test"


def _pg_up() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG, connect_timeout=2):
            return True
    except Exception:
        return False


pytestmark = pytest.mark.skipif(not _pg_up(), reason="no PostgreSQL at 127.0.0.1:5432")


@pytest.fixture
def pg_url() -> Iterator[str]:
    url = f"{PG}?schema=railtix_test_{uuid.uuid4().hex[:12]}"
    yield url
    store = open_store(url)
    store.drop_schema()  # type: ignore[attr-defined]


def _buy(c: SessionClient, token: str, key: str, date: str, id_no: str, start: str = "AAA", end: str = "EEE") -> dict[str, Any]:
    return c.call(
        op="buy", token=token, key=key, train="T1", date=date, **{"from": start, "to": end, "class": "business"},
        passengers=[{"name": "P", "id_no": id_no}],
    )


def test_story_and_restart(make_service: Any, pg_url: str, clock: Any) -> None:
    svc = make_service(pg_url, timetable=tiny_timetable())
    c = SessionClient(svc)
    token = c.login("alice")
    order = _buy(c, token, "k1", clock.date(1), "110101199001011237")["order"]
    paid = c.ok(op="pay", token=token, key="k2", order=order["order"])["order"]
    assert paid["status"] == "paid"
    svc.stop()
    # a second service on the same database sees the order and the seat as sold
    again = make_service(pg_url)
    c2 = SessionClient(again)
    token2 = c2.ok(op="login", user="alice", password="password123")["token"]
    (mine,) = c2.ok(op="orders", token=token2)["orders"]
    assert mine["order"] == order["order"] and mine["status"] == "paid"
    assert mine["tickets"][0]["seat"] == order["tickets"][0]["seat"]
    found = c2.ok(op="search", **{"from": "AAA", "to": "EEE"}, date=clock.date(1))["trains"]
    left = {row["train"]: {k["class"]: k["left"] for k in row["classes"]} for row in found}
    assert left["T1"]["business"] == 5 and left["T2"]["business"] == 6


def test_two_writers_never_oversell(make_service: Any, pg_url: str, clock: Any) -> None:
    """Two services race for 6 business seats on overlapping segments: the fold has no overlap."""
    a = make_service(pg_url, timetable=tiny_timetable())
    b = make_service(pg_url)
    ca, cb = SessionClient(a), SessionClient(b)
    ta, tb = ca.login("alice"), cb.login("bob")
    date = clock.date(2)
    segments = [("AAA", "CCC"), ("BBB", "DDD"), ("CCC", "EEE"), ("AAA", "EEE")]
    results: list[dict[str, Any]] = []

    def burst(c: SessionClient, token: str, who: str) -> None:
        for n in range(24):
            start, end = segments[n % len(segments)]
            c.send(op="buy", token=token, key=f"{who}{n}", train="T1", date=date,
                   **{"from": start, "to": end, "class": "business"},
                   passengers=[{"name": "P", "id_no": f"{who}{n:06d}X"}])
        results.extend(c.replies(24))

    threads = [threading.Thread(target=burst, args=(ca, ta, "A")), threading.Thread(target=burst, args=(cb, tb, "B"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 48
    codes = {r["error"]["code"] for r in results if not r["ok"]}
    assert codes <= {"sold_out"}, codes
    store = open_store(pg_url)
    try:
        orders = [o for o in store.all_orders() if o.run == f"T1@{date}"]
        maps, overlaps = fold(tiny_timetable().trains[0], orders)
        assert overlaps == []
        ok_ids = {r["order"]["order"] for r in results if r["ok"]}
        assert ok_ids == {o.id for o in orders}
        # every seat is sold on some leg, so the race really contended
        assert all(m for m in maps["business"])
    finally:
        store.close()


def test_same_key_on_two_writers_gives_one_order(make_service: Any, pg_url: str, clock: Any) -> None:
    a = make_service(pg_url, timetable=tiny_timetable())
    b = make_service(pg_url)
    ca, cb = SessionClient(a), SessionClient(b)
    token = ca.login("carol")
    token_b = cb.ok(op="login", user="carol", password="password123")["token"]
    date = clock.date(3)
    first = _buy(ca, token, "same-key", date, "220101199001011232")
    second = _buy(cb, token_b, "same-key", date, "220101199001011232")
    assert first["ok"] and second["ok"]
    assert first["order"] == second["order"]
    store = open_store(pg_url)
    try:
        assert sum(1 for o in store.all_orders() if o.user == a.user_of(token)) == 1
    finally:
        store.close()
