"""Two services on one database, as the workers of the processes model are.

Each keeps its own copy of a run's seat maps and passenger index; when the other sells on the
run, the copy is brought up to date from the orders written since (``orders_since``). These
tests alternate the two services on one run so that every step goes through that refresh.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SessionClient, tiny_timetable
from test_postgres import PG, _pg_up

from railtix import limits
from railtix.core.inventory import fold
from railtix.core.orders import resident_id
from railtix.store import InUse, open_store


@pytest.fixture(params=["sqlite", "postgres"])
def shared_url(request: Any, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "shared.db")
        return
    if not _pg_up():
        pytest.skip("no PostgreSQL at 127.0.0.1:5432")
    url = f"{PG}?schema=railtix_test_{uuid.uuid4().hex[:12]}"
    yield url
    open_store(url).drop_schema()  # type: ignore[attr-defined]


def _pair(make_service: Any, url: str) -> tuple[SessionClient, SessionClient, str, str]:
    a = make_service(url, shared=True, timetable=tiny_timetable())
    b = make_service(url, shared=True)
    for svc in (a, b):
        assert svc.store.shared and svc.cache._store.shared
    ca, cb = SessionClient(a), SessionClient(b)
    ta = ca.login("alice")
    tb = cb.ok(op="login", user="alice", password="password123")["token"]
    return ca, cb, ta, tb


def _buy(c: SessionClient, token: str, key: str, date: str, id_no: str, start: str, end: str) -> dict[str, Any]:
    return c.call(op="buy", token=token, key=key, train="T1", date=date,
                  **{"from": start, "to": end, "class": "business"},
                  passengers=[{"name": "P", "id_no": id_no}])


def test_passenger_rule_holds_across_processes(make_service: Any, shared_url: str, clock: Any) -> None:
    ca, cb, ta, tb = _pair(make_service, shared_url)
    date = clock.date(1)
    first = _buy(ca, ta, "a1", date, "330101199001011238", "AAA", "CCC")
    assert first["ok"], first
    # the other process must know this passenger holds AAA-CCC
    clash = _buy(cb, tb, "b1", date, "330101199001011238", "BBB", "DDD")
    assert clash["error"]["code"] == "passenger_already_booked_on_this_run"
    assert _buy(cb, tb, "b2", date, "330101199001011238", "CCC", "EEE")["ok"]
    # cancel through A; B must see the passenger free again on AAA-CCC
    assert ca.ok(op="cancel", token=ta, key="a2", order=first["order"]["order"])["order"]["status"] == "cancelled"
    again = _buy(cb, tb, "b3", date, "330101199001011238", "AAA", "BBB")
    assert again["ok"], again


def test_alternating_sales_fill_the_train_exactly(make_service: Any, shared_url: str, clock: Any) -> None:
    ca, cb, ta, tb = _pair(make_service, shared_url)
    date = clock.date(2)
    sold = 0
    for n in range(10):  # 6 business seats on the whole ride
        c, t = (ca, ta) if n % 2 == 0 else (cb, tb)
        reply = _buy(c, t, f"k{n}", date, resident_id(f"44010119900101{n:03d}"), "AAA", "EEE")
        if reply["ok"]:
            sold += 1
        else:
            assert reply["error"]["code"] == "sold_out"
    assert sold == 6
    store = open_store(shared_url)
    try:
        orders = [o for o in store.all_orders() if o.run == f"T1@{date}"]
        maps, overlaps = fold(tiny_timetable().trains[0], orders)
        assert overlaps == [] and len(orders) == 6
        assert all(m == 0b1111 for m in maps["business"])
    finally:
        store.close()


def test_a_search_sees_other_processes_sales_within_the_max_age(make_service: Any, shared_url: str, clock: Any) -> None:
    """Searches in a shared store check the cached runs against the store once per
    ``shared_views_max_age_s``, with one query, not once per search; a sale through the other
    process shows in the first search after that."""
    ca, cb, ta, tb = _pair(make_service, shared_url)
    b = cb.service
    now = [0.0]
    b.cache._clock = lambda: now[0]
    queries = []
    versions = b.store.run_versions
    b.store.run_versions = lambda runs: queries.append(len(runs)) or versions(runs)  # type: ignore[method-assign]
    date = clock.date(1)

    def left() -> int:
        r = cb.ok(op="search", **{"from": "AAA", "to": "EEE", "date": date})
        t1 = next(t for t in r["trains"] if t["train"] == "T1")
        return int(next(k for k in t1["classes"] if k["class"] == "business")["left"])

    assert left() == 6
    assert _buy(ca, ta, "a1", date, "330101199001011238", "AAA", "EEE")["ok"]
    for _ in range(5):
        left()  # within the max age: answered from the cache, whatever it shows
    assert queries == []  # the first search found nothing cached to check
    now[0] += limits.shared_views_max_age_s
    assert left() == 5
    assert len(queries) == 1
    # a sale through this process shows at once: its own writer publishes the maps
    assert _buy(cb, tb, "b1", date, "330101199001011297", "AAA", "EEE")["ok"]
    assert left() == 4


def test_an_order_paid_through_the_other_process_is_read_as_paid(
    make_service: Any, shared_url: str, clock: Any
) -> None:
    # each writer keeps the orders it committed only while no other process writes the store:
    # here A's copy of the order would still say "held" after B took the payment
    ca, cb, ta, tb = _pair(make_service, shared_url)
    order = _buy(ca, ta, "a1", clock.date(1), "330101199001011238", "AAA", "CCC")["order"]["order"]
    assert cb.ok(op="pay", token=tb, key="b1", order=order)["order"]["status"] == "paid"
    refused = ca.call(op="cancel", token=ta, key="a2", order=order)
    assert refused["error"]["code"] == "order_not_cancellable", refused
    assert ca.ok(op="refund", token=ta, key="a3", order=order)["order"]["status"] == "refunded"


def test_a_payment_keeps_its_orders_run_version(make_service: Any, shared_url: str, clock: Any) -> None:
    """A payment changes no seat, so a process refreshing a run need not read it again: the
    paid order keeps the run version it was written at, and the other process still refuses
    what the payment forbids (it reads the order itself, not its copy of the run)."""
    ca, cb, ta, tb = _pair(make_service, shared_url)
    date = clock.date(1)
    run = f"T1@{date}"
    store = open_store(shared_url)
    try:
        first = _buy(ca, ta, "a1", date, "330101199001011238", "AAA", "CCC")["order"]["order"]
        at_first = store.run_versions([run])[run]
        second = _buy(ca, ta, "a2", date, "330101199001011297", "CCC", "EEE")["order"]["order"]
        assert store.run_versions([run])[run] == at_first + 1
        assert cb.ok(op="pay", token=tb, key="b1", order=first)["order"]["status"] == "paid"
        assert store.run_versions([run])[run] == at_first + 1  # no seat changed
        tx = store.begin()
        try:
            since = {o.id: o.status.value for o in tx.orders_since(run, at_first)}
        finally:
            tx.rollback()
        assert since == {second: "held"}  # the payment did not move the first order forward
        refused = ca.call(op="cancel", token=ta, key="a3", order=first)
        assert refused["error"]["code"] == "order_not_cancellable", refused
        # a cancellation frees seats: that order moves to the run's new version
        assert cb.ok(op="cancel", token=tb, key="b2", order=second)["order"]["status"] == "cancelled"
        now = store.run_versions([run])[run]
        assert now == at_first + 2
        tx = store.begin()
        try:
            assert {o.id for o in tx.orders_since(run, at_first + 1)} == {second}
        finally:
            tx.rollback()
    finally:
        store.close()


def test_a_database_is_served_alone_or_by_shared_servers_only(make_service: Any, tmp_path: Path) -> None:
    # a server that is not shared trusts what it keeps in memory (the orders it wrote, the key
    # filter): no other server may write its database while it runs
    url = str(tmp_path / "one.db")
    alone = make_service(url, timetable=tiny_timetable())
    with pytest.raises(InUse, match="another railtix server is serving"):
        make_service(url)
    with pytest.raises(InUse):
        make_service(url, shared=True)
    alone.stop()
    first, second = make_service(url, shared=True), make_service(url, shared=True)
    with pytest.raises(InUse):
        make_service(url)
    first.stop()
    second.stop()
    make_service(url)  # the last shared server gone, one alone may serve again


def test_the_serving_lock_is_the_files_however_it_is_named(tmp_path: Path) -> None:
    from railtix.store.sqlite import serving_lock

    real = tmp_path / "real.db"
    link = tmp_path / "link.db"
    link.symlink_to(real)
    held = serving_lock(str(real), shared=False)
    try:
        with pytest.raises(InUse, match="another railtix server is serving"):
            serving_lock(str(link), shared=False)
        with pytest.raises(InUse, match="another model than processes"):
            serving_lock(str(link), shared=True)
    finally:
        os.close(held)
    os.close(serving_lock(str(link), shared=False))  # free again once closed
    with pytest.raises(InUse, match="cannot open"):
        serving_lock(str(tmp_path / "no-such-folder" / "x.db"), shared=False)
