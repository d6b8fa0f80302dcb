"""The service through its Sessions, on a temporary SQLite file, with a clock the test moves.

Each test speaks protocol v1 as JSON lines, exactly as a client would, and checks what comes
back and what the database holds: idempotent retries, one user never touching another's
orders, holds that lapse, dates and departures, and the passenger rule across orders.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import msgspec
import pytest
from conftest import FakeClock, SessionClient, tiny_timetable, wait_max_s

from railtix import limits
from railtix.core.errors import Refusal
from railtix.core.orders import resident_id
from railtix.core.timetable import round_half_yuan
from railtix.wire.tcp import error_body

HOUR = 3600.0
DAY = 86400.0

#: G1 stops: Beijing South 07:00, Jinan West 08:24, Nanjing South 10:28, Shanghai Hongqiao 11:29.
G1_BUSINESS_SEATS = 24


def buy(token: str, key: str, date: str, *people: str, cls: str = "business", frm: str = "VNP",
        to: str = "AOH", train: str = "G1", **extra: Any) -> dict[str, Any]:
    """A buy request; each person is an id number (the name is derived from it)."""
    return {
        "op": "buy", "token": token, "key": key, "train": train, "date": date, "from": frm, "to": to,
        "class": cls, "passengers": [{"name": f"旅客{p[-3:]}", "id_no": p} for p in people], **extra,
    }


def left(c: SessionClient, date: str, cls: str = "business", frm: str = "VNP", to: str = "AOH") -> int:
    r = c.ok(op="search", **{"from": frm, "to": to, "date": date})
    g1 = next(t for t in r["trains"] if t["train"] == "G1")
    return int(next(x for x in g1["classes"] if x["class"] == cls)["left"])


def no_id(reply: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in reply.items() if k != "id"}


def ids(n: int, base: int = 0) -> list[str]:
    return [resident_id(f"110101199{base + i:08d}") for i in range(n)]


@pytest.fixture(params=["thread", "process", "process-on-a-loop"])
def alice(make_service: Any, request: pytest.FixtureRequest) -> tuple[Any, SessionClient, str]:
    """A service with alice logged in; every test runs with the writer in a thread, in a process
    fed by a thread, and in a process fed by an event loop (as the asyncio model runs it)."""
    svc = make_service(writer_process=request.param != "thread", loop=request.param == "process-on-a-loop")
    c = SessionClient(svc)
    return svc, c, c.login("alice")


@pytest.fixture
def alice_in_one_process(make_service: Any) -> tuple[Any, SessionClient, str]:
    """For tests that reach into the writer's transaction or its states: the writer is a thread."""
    svc = make_service()
    c = SessionClient(svc)
    return svc, c, c.login("alice")


# --- idempotency ---------------------------------------------------------------------------------
def test_same_key_same_request_gives_the_same_reply_and_one_order(alice: Any, clock: FakeClock) -> None:
    svc, c, tok = alice
    req = buy(tok, "k1", clock.date(2), *ids(2))
    first = c.ok(**req)
    again = c.call(**req)
    assert again["id"] != first["id"]
    assert no_id(again) == no_id(first)
    orders = list(svc.store.all_orders())
    assert [o.id for o in orders] == [first["order"]["order"]]
    assert left(c, clock.date(2)) == G1_BUSINESS_SEATS - 2


def test_same_key_pipelined_in_one_batch(alice: Any, clock: FakeClock) -> None:
    svc, c, tok = alice
    req = buy(tok, "k-pipe", clock.date(2), *ids(1))
    c.send(**req)
    c.send(**req)
    a, b = c.replies(2)
    assert a["ok"] and no_id(a) == no_id(b)
    assert len(list(svc.store.all_orders())) == 1


def test_same_key_different_request_is_refused_and_changes_nothing(alice: Any, clock: FakeClock) -> None:
    svc, c, tok = alice
    first = c.ok(**buy(tok, "k1", clock.date(2), *ids(1)))
    c.error("key_reused_with_different_request", **buy(tok, "k1", clock.date(2), *ids(1, base=50)))
    c.error("key_reused_with_different_request", **buy(tok, "k1", clock.date(3), *ids(1)))
    c.error("key_reused_with_different_request", op="pay", token=tok, key="k1", order=first["order"]["order"])
    assert len(list(svc.store.all_orders())) == 1
    assert c.ok(op="order", token=tok, order=first["order"]["order"])["order"]["status"] == "held"
    assert left(c, clock.date(2)) == G1_BUSINESS_SEATS - 1


def test_another_user_with_the_same_key_is_independent(alice: Any, clock: FakeClock) -> None:
    svc, c, tok = alice
    b = SessionClient(svc)
    bob = b.login("bob")
    mine = c.ok(**buy(tok, "shared-key", clock.date(2), *ids(1)))
    his = b.ok(**buy(bob, "shared-key", clock.date(2), *ids(1, base=10)))
    assert mine["order"]["order"] != his["order"]["order"]
    assert len(list(svc.store.all_orders())) == 2


def test_same_key_for_pay_gives_the_same_reply(alice: Any, clock: FakeClock) -> None:
    svc, c, tok = alice
    oid = c.ok(**buy(tok, "b1", clock.date(2), *ids(1)))["order"]["order"]
    paid = c.ok(op="pay", token=tok, key="p1", order=oid)
    assert paid["order"]["status"] == "paid"
    assert no_id(c.call(op="pay", token=tok, key="p1", order=oid)) == no_id(paid)
    c.error("order_not_payable", op="pay", token=tok, key="p2", order=oid)
    # even after the hold would have lapsed, the retry answers what the first attempt did
    clock.advance(HOUR)
    assert no_id(c.call(op="pay", token=tok, key="p1", order=oid)) == no_id(paid)


def test_keys_survive_a_restart(make_service: Any, clock: FakeClock) -> None:
    svc = make_service()
    c = SessionClient(svc)
    tok = c.login("alice")
    req = buy(tok, "durable", clock.date(2), *ids(3))
    first = c.ok(**req)
    svc.stop()
    svc2 = make_service()
    c2 = SessionClient(svc2)
    assert no_id(c2.call(**req)) == no_id(first)
    assert len(list(svc2.store.all_orders())) == 1
    assert left(c2, clock.date(2)) == G1_BUSINESS_SEATS - 3


def test_a_retry_after_departure_returns_the_first_reply(alice: Any, clock: FakeClock) -> None:
    svc, c, tok = alice
    req = buy(tok, "late-retry", clock.date(1), *ids(1))
    first = c.ok(**req)
    clock.advance(DAY)  # G1 left Beijing South at 07:00 tomorrow; it is now 09:00
    assert no_id(c.call(**req)) == no_id(first)


def hold_commits(svc: Any) -> tuple[threading.Event, threading.Event]:
    """Make every commit of the (in-thread) writer wait until the test sets ``release``;
    ``entered`` is set when one is waiting."""
    entered, release = threading.Event(), threading.Event()
    begin = svc.store.begin

    class HeldCommit:
        def __init__(self, tx: Any) -> None:
            self._tx = tx

        def __getattr__(self, name: str) -> Any:
            return getattr(self._tx, name)

        def commit(self) -> None:
            entered.set()
            release.wait(wait_max_s)
            self._tx.commit()

    svc.store.begin = lambda: HeldCommit(begin())
    return entered, release


def test_no_reply_leaves_before_its_commit(alice_in_one_process: Any, clock: FakeClock) -> None:
    """Guarantee 2 at its source: while the commit is held, the buy's reply must not be out."""
    svc, c, tok = alice_in_one_process
    entered, release = hold_commits(svc)
    try:
        c.send(**buy(tok, "k", clock.date(2), *ids(1)))
        assert entered.wait(wait_max_s)
        early = c.session.output()
    finally:
        release.set()
    assert svc.writer.drain(wait_max_s)
    assert early == b"", f"replied before the commit: {early[:80]!r}"


# --- users see only their own orders -------------------------------------------------------------
def test_someone_elses_order_is_not_found(alice: Any, clock: FakeClock) -> None:
    svc, c, tok = alice
    b = SessionClient(svc)
    bob = b.login("bob")
    held = c.ok(**buy(tok, "a1", clock.date(2), *ids(1)))["order"]["order"]
    clock.advance(1)
    paid = c.ok(**buy(tok, "a2", clock.date(2), *ids(1, base=5)))["order"]["order"]
    c.ok(op="pay", token=tok, key="a3", order=paid)
    for oid in (held, paid, "ENOSUCHORDER0000"):
        b.error("not_found", op="order", token=bob, order=oid)
        b.error("not_found", op="pay", token=bob, key=f"p-{oid}", order=oid)
        b.error("not_found", op="cancel", token=bob, key=f"c-{oid}", order=oid)
        b.error("not_found", op="refund", token=bob, key=f"r-{oid}", order=oid)
    assert b.ok(op="orders", token=bob)["orders"] == []
    assert c.ok(op="order", token=tok, order=held)["order"]["status"] == "held"
    assert c.ok(op="order", token=tok, order=paid)["order"]["status"] == "paid"
    assert [o["order"] for o in c.ok(op="orders", token=tok)["orders"]] == [paid, held]
    assert left(c, clock.date(2)) == G1_BUSINESS_SEATS - 2


def test_no_token_no_orders(alice: Any, clock: FakeClock) -> None:
    svc, c, tok = alice
    c.error("unauthorized", op="orders", token="not-a-token")
    c.error("unauthorized", **buy("not-a-token", "k", clock.date(2), *ids(1)))
    assert list(svc.store.all_orders()) == []


# --- holds -----------------------------------------------------------------------------------------
def test_an_unpaid_hold_expires_and_frees_its_seats(alice: Any, clock: FakeClock) -> None:
    svc, c, tok = alice
    date = clock.date(2)
    order = c.ok(**buy(tok, "h1", date, *ids(3)))["order"]
    assert order["status"] == "held" and "hold_until" in order
    assert left(c, date) == G1_BUSINESS_SEATS - 3
    clock.advance(30 * 60 - 1)
    svc.sweep()
    assert svc.writer.drain(10)
    assert c.ok(op="order", token=tok, order=order["order"])["order"]["status"] == "held"
    assert left(c, date) == G1_BUSINESS_SEATS - 3
    clock.advance(2)
    svc.sweep()
    assert svc.writer.drain(10)
    expired = c.ok(op="order", token=tok, order=order["order"])["order"]
    assert expired["status"] == "expired" and "hold_until" not in expired
    assert left(c, date) == G1_BUSINESS_SEATS
    # the freed seats sell again, to the same passengers too
    c.ok(**buy(tok, "h2", date, *ids(3)))


def test_pay_after_the_hold_lapsed(alice: Any, clock: FakeClock) -> None:
    svc, c, tok = alice
    date = clock.date(2)
    oid = c.ok(**buy(tok, "h1", date, *ids(2)))["order"]["order"]
    clock.advance(30 * 60)
    c.error("hold_expired", op="pay", token=tok, key="late-pay", order=oid)
    assert c.ok(op="order", token=tok, order=oid)["order"]["status"] == "expired"
    assert left(c, date) == G1_BUSINESS_SEATS
    # asked again (a new key), the answer is the same, and it stays expired
    c.error("hold_expired", op="pay", token=tok, key="later-pay", order=oid)
    c.error("order_not_cancellable", op="cancel", token=tok, key="later-cancel", order=oid)
    assert c.ok(op="order", token=tok, order=oid)["order"]["status"] == "expired"


def test_pay_after_the_sweeper_expired_the_hold(alice: Any, clock: FakeClock) -> None:
    svc, c, tok = alice
    oid = c.ok(**buy(tok, "h1", clock.date(2), *ids(2)))["order"]["order"]
    clock.advance(30 * 60 + 1)
    svc.sweep()
    assert svc.writer.drain(10)
    c.error("hold_expired", op="pay", token=tok, key="late-pay", order=oid)


def test_cancel_frees_seats_and_cannot_be_undone(alice: Any, clock: FakeClock) -> None:
    svc, c, tok = alice
    date = clock.date(2)
    oid = c.ok(**buy(tok, "b", date, *ids(4)))["order"]["order"]
    assert c.ok(op="cancel", token=tok, key="c", order=oid)["order"]["status"] == "cancelled"
    assert left(c, date) == G1_BUSINESS_SEATS
    c.error("order_not_payable", op="pay", token=tok, key="p", order=oid)
    c.error("order_not_cancellable", op="cancel", token=tok, key="c2", order=oid)
    c.error("order_not_refundable", op="refund", token=tok, key="r", order=oid)


# --- refunds ---------------------------------------------------------------------------------------
def test_refund_keeps_the_tier_fee_and_frees_seats(alice: Any, clock: FakeClock) -> None:
    svc, c, tok = alice
    date = clock.date(3)  # departs 07:00 in three days: 70 hours ahead, the 5 % tier
    order = c.ok(**buy(tok, "b", date, *ids(2)))["order"]
    assert order["price"] == 2 * 174_900  # 1318 km x 132.7 fen, to half a yuan
    c.error("order_not_refundable", op="refund", token=tok, key="r0", order=order["order"])
    c.ok(op="pay", token=tok, key="p", order=order["order"])
    done = c.ok(op="refund", token=tok, key="r", order=order["order"])["order"]
    fee = 2 * round_half_yuan(174_900 * 5 / 100)
    assert fee == 2 * 8750
    assert done["status"] == "refunded" and done["fee"] == fee and done["refund"] == 2 * 174_900 - fee
    assert left(c, date) == G1_BUSINESS_SEATS


def test_no_refund_after_departure(alice: Any, clock: FakeClock) -> None:
    svc, c, tok = alice
    oid = c.ok(**buy(tok, "b", clock.date(1), *ids(1)))["order"]["order"]
    c.ok(op="pay", token=tok, key="p", order=oid)
    clock.advance(DAY)
    c.error("order_not_refundable_after_departure", op="refund", token=tok, key="r", order=oid)
    assert c.ok(op="order", token=tok, order=oid)["order"]["status"] == "paid"


# --- dates, departures, stations -----------------------------------------------------------------------
def test_dates(alice: Any, clock: FakeClock) -> None:
    svc, c, tok = alice
    c.error("date_in_past", **buy(tok, "d1", clock.date(-1), *ids(1)))
    c.error("date_not_on_sale", **buy(tok, "d2", clock.date(15), *ids(1)))
    c.error("invalid_date", **buy(tok, "d3", "2026-13-01", *ids(1)))
    c.error("invalid_date", **buy(tok, "d4", "tomorrow", *ids(1)))
    c.error("date_in_past", op="search", **{"from": "VNP", "to": "AOH", "date": clock.date(-1)})
    c.error("date_not_on_sale", op="search", **{"from": "VNP", "to": "AOH", "date": clock.date(15)})
    last = c.ok(**buy(tok, "d5", clock.date(14), *ids(1)))
    assert last["order"]["date"] == clock.date(14)
    assert len(list(svc.store.all_orders())) == 1


def test_a_departed_train(alice: Any, clock: FakeClock) -> None:
    svc, c, tok = alice
    today = clock.date(0)  # 09:00: G1 left Beijing South at 07:00 and Jinan West at 08:24
    c.error("train_departed", **buy(tok, "t1", today, *ids(1)))
    c.error("train_departed", **buy(tok, "t2", today, *ids(1), frm="JGK"))
    # but it has not reached Nanjing South (10:28) yet
    ok = c.ok(**buy(tok, "t3", today, *ids(1), frm="NKH"))
    assert ok["order"]["from"] == "NKH"
    r = c.ok(op="search", **{"from": "VNP", "to": "AOH", "date": today})
    assert next(t for t in r["trains"] if t["train"] == "G1")["departed"] is True


def test_search_rows_are_remembered_only_until_a_commit_or_a_departure(alice: Any, clock: FakeClock) -> None:
    """A search's rows are kept per run between commits (render.search_rows): a purchase, a
    cancellation and the train's departure must each show in the very next search."""
    svc, c, tok = alice
    today = clock.date(0)  # 09:00: G1 leaves Nanjing South at 10:28

    def g1() -> dict[str, Any]:
        r = c.ok(op="search", **{"from": "NKH", "to": "AOH", "date": today})
        return next(t for t in r["trains"] if t["train"] == "G1")

    def second(row: dict[str, Any]) -> int:
        return int(next(k for k in row["classes"] if k["class"] == "second")["left"])

    first = g1()
    assert first["departed"] is False and g1() == first
    order = c.ok(**buy(tok, "r1", today, *ids(2), cls="second", frm="NKH"))["order"]["order"]
    assert second(g1()) == second(first) - 2
    c.ok(op="cancel", token=tok, key="r2", order=order)
    assert second(g1()) == second(first)
    clock.advance(90 * 60)  # 10:30, with no commit since the last search
    assert g1()["departed"] is True


def test_a_search_reply_names_the_stations_as_codes(alice: Any, clock: FakeClock) -> None:
    _, c, _ = alice
    r = c.ok(op="search", **{"from": "Beijing South", "to": "上海虹桥", "date": clock.date(1)})
    assert (r["from"], r["to"]) == ("VNP", "AOH") and r["trains"]


def test_unknown_station_suggests_names(alice: Any, clock: FakeClock) -> None:
    svc, c, tok = alice
    e = c.error("unknown_station", op="search", **{"from": "Beijng South", "to": "AOH", "date": clock.date(1)})
    assert "Beijing South (VNP)" in e["error"]["message"]
    e = c.error("unknown_station", **buy(tok, "s", clock.date(1), *ids(1), to="Shanghai Hongqaio"))
    assert "Shanghai Hongqiao (AOH)" in e["error"]["message"]
    c.error("unknown_train", **buy(tok, "s2", clock.date(1), *ids(1), train="G99999"))
    c.error("train_does_not_stop_there", **buy(tok, "s3", clock.date(1), *ids(1), frm="AOH", to="VNP"))
    # stations by Chinese and English name resolve
    r = c.ok(op="search", **{"from": "北京南", "to": "shanghai hongqiao", "date": clock.date(1)})
    assert "G1" in [t["train"] for t in r["trains"]]


# --- the passenger rule and sell-outs ------------------------------------------------------------
def test_passenger_already_booked_across_orders(alice: Any, clock: FakeClock) -> None:
    svc, c, tok = alice
    b = SessionClient(svc)
    bob = b.login("bob")
    date = clock.date(2)
    (p,) = ids(1)
    first = c.ok(**buy(tok, "o1", date, p, frm="VNP", to="NKH"))["order"]["order"]
    c.error("passenger_already_booked_on_this_run", **buy(tok, "o2", date, p, frm="JGK", to="AOH"))
    c.error("passenger_already_booked_on_this_run", **buy(tok, "o3", date, *ids(2, base=7), p, cls="second"))
    # someone else booking the same person is refused too
    b.error("passenger_already_booked_on_this_run", **buy(bob, "o4", date, p, frm="VNP", to="JGK"))
    # disjoint legs, another date: fine
    c.ok(**buy(tok, "o5", date, p, frm="NKH", to="AOH"))
    c.ok(**buy(tok, "o6", clock.date(3), p))
    # once the first order is cancelled, the overlapping ride is allowed
    c.ok(op="cancel", token=tok, key="o7", order=first)
    b.ok(**buy(bob, "o8", date, p, frm="VNP", to="JGK"))
    c.error("duplicate_passenger", **buy(tok, "o9", date, *ids(1, base=3), *ids(1, base=3)))


def test_sold_out_exactly_when_no_seat_is_left(alice: Any, clock: FakeClock) -> None:
    svc, c, tok = alice
    date = clock.date(2)
    for n in range(4):
        c.ok(**buy(tok, f"s{n}", date, *ids(5, base=10 * n)))
    assert left(c, date) == 4
    c.error("sold_out", **buy(tok, "s-five", date, *ids(5, base=100)))
    c.ok(**buy(tok, "s-four", date, *ids(4, base=200)))
    assert left(c, date) == 0
    c.error("sold_out", **buy(tok, "s-one", date, *ids(1, base=300)))
    # a ride on other legs would still be sold out: every seat is sold the whole way
    c.error("sold_out", **buy(tok, "s-short", date, *ids(1, base=400), frm="NKH"))
    seats = [(t["coach"], t["seat"]) for o in c.ok(op="orders", token=tok)["orders"] for t in o["tickets"]]
    assert len(seats) == len(set(seats)) == G1_BUSINESS_SEATS


# --- memory over days ----------------------------------------------------------------------------
def test_runs_of_past_days_are_forgotten(alice_in_one_process: Any, clock: FakeClock) -> None:
    """The writer's states and the readers' views hold runs on sale, not every run ever sold."""
    svc, c, tok = alice_in_one_process
    first_day = clock.date(1)
    c.ok(**buy(tok, "k1", first_day, *ids(1)))
    assert left(c, first_day) == G1_BUSINESS_SEATS - 1
    assert f"G1@{first_day}" in svc.batch.states and svc.cache._runs.get(f"G1@{first_day}")
    clock.advance(2 * 86_400)
    c.ok(**buy(tok, "k2", clock.date(1), *ids(1, base=10)))
    assert f"G1@{first_day}" not in svc.batch.states
    assert f"G1@{first_day}" not in svc.cache._runs
    # and the order of that day is still there
    assert any(o.date == first_day for o in svc.store.all_orders())


def test_search_from_a_station_to_itself(alice: Any, clock: FakeClock) -> None:
    _, c, _ = alice
    reply = c.error("invalid_field", op="search", **{"from": "VNP", "to": "Beijing South"}, date=clock.date(1))
    assert "Beijing South" in reply["error"]["message"]


def test_the_passenger_clash_names_the_id_number_not_the_new_name(alice: Any, clock: FakeClock) -> None:
    _, c, tok = alice
    (p,) = ids(1)
    c.ok(**buy(tok, "k1", clock.date(1), p))
    clash = c.call(**{**buy(tok, "k2", clock.date(1), p, frm="JGK", to="NKH"),
                      "passengers": [{"name": "Someone Else", "id_no": p}]})
    assert clash["error"]["code"] == "passenger_already_booked_on_this_run"
    assert p[:4] in clash["error"]["message"] and p[-4:] in clash["error"]["message"]
    assert "Someone Else" not in clash["error"]["message"]


# --- the writer and the sweeper outlive failures -------------------------------------------------
def test_a_failing_waker_does_not_stop_the_writer(alice: Any, clock: FakeClock) -> None:
    svc, good, tok = alice
    bad = SessionClient(svc)

    def broken(sessions: Any) -> None:
        raise RuntimeError("Event loop is closed")

    bad.session.waker = broken
    bad.send(**buy(tok, "k-bad", clock.date(1), *ids(1)))
    assert good.ok(**buy(tok, "k-good", clock.date(1), *ids(1, base=5)))["order"]["status"] == "held"


def test_the_sweeper_outlives_a_store_error(make_service: Any, clock: FakeClock) -> None:
    svc = make_service(sweep_interval_s=0.01)
    c = SessionClient(svc)
    tok = c.login("alice")
    order = c.ok(**buy(tok, "k1", clock.date(1), *ids(1)))["order"]
    real = svc.store.lapsed_holds
    calls = {"n": 0}

    def flaky(now: float) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("the database went away for a moment")
        return real(now)

    svc.store.lapsed_holds = flaky  # type: ignore[method-assign]
    clock.advance(31 * 60)
    for _ in range(2000):  # bounded: about 20 s at most
        status = c.ok(op="order", token=tok, order=order["order"])["order"]["status"]
        if status == "expired":
            break
        svc._stop.wait(0.01)
    assert calls["n"] >= 2 and status == "expired"


# --- order ids -----------------------------------------------------------------------------------
def test_order_ids_increase_stay_unique_and_start_above_the_stored_ones() -> None:
    from railtix.service.batch import new_order_ids

    now = 1_800_000_000.0
    made = new_order_ids(500, now, None)
    assert made == sorted(made) and len(set(made)) == 500
    assert all(len(i) == 17 and i[0] == "E" and set(i[1:]) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for i in made)
    # a clock that went back, or the same millisecond: still above the greatest stored id
    later = new_order_ids(500, now - 60, made[-1])
    assert later[0] > made[-1] and later == sorted(later) and len(set(made + later)) == 1000
    # ids of the older random format (RFC 4648 base32) are not read as a starting point
    assert new_order_ids(1, now, "EAAAAAAAAAAAAAAAA")[0] < "E2"


def test_orders_of_one_batch_are_stored_in_id_order_and_ids_are_not_guessable(alice: Any, clock: FakeClock) -> None:
    svc, c, tok = alice
    got = [c.ok(**buy(tok, f"k{i}", clock.date(2), *ids(1, base=i)))["order"]["order"] for i in range(6)]
    assert got == sorted(got)
    # the last 32 bits are random: ids made in one millisecond differ beyond the time half
    assert len({g[-7:] for g in got}) == 6
    tx = svc.store.begin()
    try:
        assert tx.last_order_id() == got[-1]
    finally:
        tx.rollback()


# --- the writer in a process of its own ----------------------------------------------------------
@pytest.fixture(params=["thread", "loop"])
def alice_beside_a_writer_process(make_service: Any, request: pytest.FixtureRequest) -> tuple[Any, SessionClient, str]:
    """Alice beside a writer process fed by a thread, and by an event loop."""
    svc = make_service(writer_process=True, loop=request.param == "loop")
    c = SessionClient(svc)
    return svc, c, c.login("alice")


@pytest.mark.skipif(not os.path.exists("/proc/self/comm"), reason="process names are Linux's")
def test_the_writer_process_goes_by_its_name(alice_beside_a_writer_process: Any) -> None:
    svc, c, tok = alice_beside_a_writer_process
    with open(f"/proc/{svc.batch._proc.pid}/comm") as f:
        assert f.read().strip() == "railtix-writer"


def test_a_writer_process_found_dead_is_replaced_before_the_batch(
    alice_beside_a_writer_process: Any, clock: FakeClock
) -> None:
    svc, c, tok = alice_beside_a_writer_process
    date = clock.date(2)
    c.ok(**buy(tok, "k1", date, *ids(1)))
    svc.batch._proc.kill()
    svc.batch._proc.join(wait_max_s)
    assert c.ok(**buy(tok, "k2", date, *ids(1, base=1)))["order"]["status"] == "held"
    assert left(c, date) == G1_BUSINESS_SEATS - 2


def test_a_writer_process_that_dies_in_a_batch_costs_that_batch_and_is_replaced(
    alice_beside_a_writer_process: Any, clock: FakeClock
) -> None:
    svc, c, tok = alice_beside_a_writer_process
    date = clock.date(2)
    first = c.ok(**buy(tok, "k1", date, *ids(1)))
    proc = svc.batch._proc
    os.kill(proc.pid, signal.SIGSTOP)  # it takes no more batches: the next one stays on its way
    c.send(**buy(tok, "k2", date, *ids(1, base=1)))
    deadline = time.monotonic() + wait_max_s
    while not svc.batch._child.sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert svc.batch._child.sent
    proc.kill()
    proc.join(wait_max_s)
    lost = c.replies(1)[0]
    assert lost["error"]["code"] == "internal_error"
    assert "may or may not" in lost["error"]["message"]
    # a new writer answers the retry, and the first buy's key still gives its first reply
    again = c.ok(**buy(tok, "k2", date, *ids(1, base=1)))
    assert no_id(c.call(**buy(tok, "k1", date, *ids(1)))) == no_id(first)
    assert left(c, date) == G1_BUSINESS_SEATS - 2
    assert again["order"]["order"] != first["order"]["order"]


def test_batches_queued_behind_a_busy_writer_process_are_written_together_and_each_answered(
    alice_beside_a_writer_process: Any, clock: FakeClock
) -> None:
    """While the writer process is busy, up to ``writer_batches_in_flight`` batches wait in its
    pipe and no more are sent; it then writes them in one transaction and answers each batch,
    every reply to its own request."""
    from railtix import limits

    svc, c, tok = alice_beside_a_writer_process
    date = clock.date(2)
    c.ok(**buy(tok, "warm", date, *ids(1)))
    proc = svc.batch._proc
    os.kill(proc.pid, signal.SIGSTOP)
    clients = []
    try:
        for n in range(limits.writer_batches_in_flight + 2):
            other = SessionClient(svc)
            other.send(**buy(tok, f"q{n}", date, *ids(n % 3 + 1, base=100 * (n + 1))))
            clients.append((other, n % 3 + 1))
            deadline = time.monotonic() + wait_max_s
            while svc.writer._size and svc.writer._busy < limits.writer_batches_in_flight:
                assert time.monotonic() < deadline
                time.sleep(0.005)
        assert svc.writer._busy == limits.writer_batches_in_flight  # the rest waits its turn
        assert len(svc.batch._child.sent) == limits.writer_batches_in_flight
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    for other, party in clients:
        order = other.replies(1)[0]["order"]
        assert len(order["tickets"]) == party
    assert left(c, date) == G1_BUSINESS_SEATS - 1 - sum(p for _, p in clients)


def test_on_a_loop_batches_and_replies_larger_than_the_pipe_pass_in_pieces(
    make_service: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an event loop the pipes are non-blocking: a batch the pipe cannot hold at once is
    written on as the child reads, and replies that arrive in pieces are joined before they are
    decoded. With 4 KiB pipes, one batch of 20 buys and its replies each span several writes and
    reads; every buyer gets its own order."""
    monkeypatch.setattr(limits, "writer_pipe_bytes", 4096)
    svc = make_service(writer_process=True, loop=True)
    c = SessionClient(svc)
    tok = c.login("alice")
    date = clock.date(2)
    before, batches = left(c, date), svc.writer.batches
    buyers = [SessionClient(svc) for _ in range(20)]
    lines = [
        msgspec.json.encode({**buy(tok, f"p{n}", date, *ids(1, base=10 * n)), "id": n}) + b"\n" for n in range(20)
    ]
    assert sum(map(len, lines)) > 4096
    # read in one pass of the loop, as from twenty connections at once: one batch
    svc.test_loop.call(lambda: [b.send_line(line) for b, line in zip(buyers, lines, strict=True)])
    seats = set()
    for n, b in enumerate(buyers):
        (reply,) = b.replies(1)
        assert reply["id"] == n and reply["ok"], reply
        (ticket,) = reply["order"]["tickets"]
        seats.add((ticket["coach"], ticket["seat"]))
    assert len(seats) == 20
    assert svc.writer.batches - batches == 1
    assert left(c, date) == before - 20
    assert svc.batch._child.receiver is None and not svc.writer._thread.is_alive()  # the loop did it all


def test_a_writer_whose_loop_is_closed_refuses_a_command_rather_than_queue_it_for_ever() -> None:
    import asyncio

    from railtix.service.writer import Writer

    loop = asyncio.new_event_loop()
    writer = Writer(lambda batch, done: done())
    writer.start(loop)
    loop.close()
    assert writer.submit("a connection", object()) is False
    assert writer.drain(0)  # nothing was taken in


def test_a_service_on_a_loop_stopped_with_buys_on_their_way_answers_and_keeps_them(
    make_service: Any, clock: FakeClock, tmp_path: Any
) -> None:
    """``stop`` from another thread waits for the loop to write what is queued and in flight."""
    from railtix.store import open_store

    svc = make_service(writer_process=True, loop=True)
    c = SessionClient(svc)
    tok = c.login("alice")
    date = clock.date(2)
    buyers = [SessionClient(svc) for _ in range(8)]
    for n, b in enumerate(buyers):
        b.send(**buy(tok, f"s{n}", date, *ids(1, base=10 * n)))
    svc.stop()
    made = {b.replies(1)[0]["order"]["order"] for b in buyers}
    store = open_store(str(tmp_path / "railtix.db"))
    try:
        assert {o.id for o in store.all_orders()} == made
    finally:
        store.close()


def test_the_writer_process_publishes_what_it_committed_and_forgets_past_days(
    alice_beside_a_writer_process: Any, clock: FakeClock
) -> None:
    svc, c, tok = alice_beside_a_writer_process
    first_day = clock.date(1)
    c.ok(**buy(tok, "k1", first_day, *ids(3)))
    view = svc.cache._runs.get(f"G1@{first_day}")
    assert view is not None and view.version == 1  # published by the commit, not loaded by a read
    assert left(c, first_day) == G1_BUSINESS_SEATS - 3
    clock.advance(2 * 86_400)
    c.ok(**buy(tok, "k2", clock.date(1), *ids(1, base=10)))
    assert f"G1@{first_day}" not in svc.cache._runs


def test_a_mistyped_resident_id_number_is_refused_and_changes_nothing(alice: Any, clock: FakeClock) -> None:
    svc, c, tok = alice
    date = clock.date(1)
    good = ids(2, base=77)
    typo = good[1][:16] + str((int(good[1][16]) + 1) % 10) + good[1][17]  # one digit off
    before = left(c, date)
    refused = c.error("invalid_field", **buy(tok, "typo", date, good[0], typo))
    assert "fails its check character" in refused["error"]["message"]
    assert typo not in refused["error"]["message"]  # named masked, as everywhere else
    assert left(c, date) == before
    # not remembered under the key: corrected, the same key buys
    assert c.ok(**buy(tok, "typo", date, *good))["order"]["status"] == "held"
    # the check character X is upper case, as on the card (an x would be another person to the
    # passenger rules), and the refusal says so; other documents are not checked
    x = next(p for p in ids(40, base=300) if p.endswith("X"))
    refused = c.error("invalid_field", **buy(tok, "x", date, x.lower()))
    assert refused["error"]["message"].startswith("passengers[0].id_no: ")
    assert refused["error"]["message"].endswith("fails its check character (GB 11643): write the X in upper case")
    # each thing that is wrong is said at once: a mistyped digit beside a lower-case x, a last
    # character no card has
    wrong = c.error("invalid_field", **buy(tok, "x", date, x[:3] + str((int(x[3]) + 1) % 10) + x[4:17] + "x"))
    assert wrong["error"]["message"].endswith("a digit may be mistyped, and write the X in upper case")
    short = c.error("invalid_field", **buy(tok, "x", date, x[:16] + x[17:].replace("X", "0")))
    assert short["error"]["message"].endswith("has 17 digits: a resident id card's number has 18 characters")
    letter = c.error("invalid_field", **buy(tok, "x", date, x[:17] + "a"))
    assert letter["error"]["message"].endswith("ends in 'a': a resident id card's number ends in a digit or X (GB 11643)")
    c.ok(**buy(tok, "x", date, x, "E12345678"))


def test_a_buy_remembered_before_id_numbers_were_checked_still_gets_its_first_reply(
    alice: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key is kept for ever: a retry of a buy made before this check existed answers as the
    first try did, though its number would now be refused."""
    import railtix.service.service as service_module

    svc, c, tok = alice
    date = clock.date(1)
    old = "110101199001011234"  # a number with a wrong check character, as once accepted
    monkeypatch.setattr(service_module, "id_problem", lambda id_no: None)
    first = c.ok(**buy(tok, "before", date, old))
    lower = c.ok(**buy(tok, "lower", date, "e12345678"))  # before letters had to be upper case
    monkeypatch.undo()
    assert no_id(c.ok(**buy(tok, "before", date, old))) == no_id(first)
    assert no_id(c.ok(**buy(tok, "lower", date, "e12345678"))) == no_id(lower)
    assert c.error("invalid_field", **buy(tok, "after", date, old))  # a new key is checked
    assert c.error("invalid_field", **buy(tok, "after", date, "e12345678"))


def test_a_number_with_lower_case_letters_is_refused_so_one_person_is_one_number(
    alice: Any, clock: FakeClock
) -> None:
    """``e12345678`` and ``E12345678`` would be two people to the passenger rules (one seat per
    person and ride): a lower-case letter is refused, and nothing is held or remembered."""
    svc, c, tok = alice
    date = clock.date(1)
    before = left(c, date)
    refused = c.error("invalid_field", **buy(tok, "passport", date, ids(1, base=5)[0], "e12345678"))
    assert refused["error"]["message"].startswith("passengers[1].id_no: ")
    assert refused["error"]["message"].endswith(
        "number e123*5678 has letters in lower case: write them in upper case, as the document prints them"
    )
    assert left(c, date) == before
    held = c.ok(**buy(tok, "passport", date, ids(1, base=5)[0], "E12345678"))  # the key is free
    assert [t["id_no"] for t in held["order"]["tickets"]][1] == "E123*5678"
    # the same document once more on an overlapping ride: the rules see one person
    c.error("passenger_already_booked_on_this_run", **buy(tok, "again", date, "E12345678"))


# --- sold out before the writer --------------------------------------------------------------------
def sell_out_business(c: SessionClient, tok: str, date: str, keep: int = 0, keys: str = "fill") -> list[str]:
    """Hold every business seat of G1 but ``keep``, in orders of four; returns the order ids."""
    made, sold, n = [], 0, 0
    while sold < G1_BUSINESS_SEATS - keep:
        party = min(4, G1_BUSINESS_SEATS - keep - sold)
        made.append(c.ok(**buy(tok, f"{keys}-{n}", date, *ids(party, base=1000 + 10 * n)))["order"]["order"])
        sold += party
        n += 1
    return made


def test_a_sold_out_ride_is_answered_without_the_writer_and_not_remembered(alice: Any, clock: FakeClock) -> None:
    svc, c, tok = alice
    date = clock.date(2)
    made = sell_out_business(c, tok, date)
    assert svc.writer.drain(wait_max_s)
    written = svc.writer.commands
    refused = c.error("sold_out", **buy(tok, "late", date, *ids(1, base=1)))
    assert "not enough business-class seats on G1" in refused["error"]["message"]
    assert svc.writer.commands == written  # the writer never saw it
    # not remembered: once seats are released, the same key asks again and gets one
    c.ok(op="cancel", token=tok, key="free-4", order=made[0])
    again = c.ok(**buy(tok, "late", date, *ids(1, base=1)))
    assert again["order"]["status"] == "held"
    # and that success is remembered: asked again while sold out, the first reply comes back
    c.ok(**buy(tok, "refill", date, *ids(3, base=2000)))
    assert left(c, date) == 0
    assert no_id(c.call(**buy(tok, "late", date, *ids(1, base=1)))) == no_id(again)


def test_each_run_and_class_is_refused_in_its_own_words(alice: Any, clock: FakeClock) -> None:
    """The gate's refusal is made once per (train, date, class) and then reused: a run refused
    after another must not be told the other's date, nor a class the other's class."""
    svc, c, tok = alice
    first, second = clock.date(2), clock.date(3)
    sell_out_business(c, tok, first)
    sell_out_business(c, tok, second, keys="fill-again")
    assert svc.writer.drain(wait_max_s)
    written = svc.writer.commands
    for date in (first, second, first):
        refused = c.error("sold_out", **buy(tok, f"late-{date}", date, *ids(1, base=1)))
        assert refused["error"]["message"] == f"not enough business-class seats on G1 {date} for this ride"
    assert svc.writer.commands == written  # all three answered before the writer
    assert c.ok(**{**buy(tok, "first-class", first, *ids(1, base=5)), "class": "first"})["order"]["status"] == "held"


def test_without_the_key_filter_a_sold_out_ride_is_answered_by_the_writer(alice: Any, clock: FakeClock) -> None:
    """A store other processes write has no key filter: telling a new key from a used one would
    take a read of the store on the serving loop for every refusal, so the writer answers."""
    svc, c, tok = alice
    date = clock.date(2)
    sell_out_business(c, tok, date)
    svc._keys = None  # as with the processes model or PostgreSQL
    assert svc.writer.drain(wait_max_s)
    written = svc.writer.commands
    refused = c.error("sold_out", **buy(tok, "late", date, *ids(1, base=1)))
    assert "not enough business-class seats on G1" in refused["error"]["message"]
    assert svc.writer.drain(wait_max_s)
    assert svc.writer.commands == written + 1  # the writer saw it


def test_sold_out_in_the_writer_is_not_remembered_either(alice: Any, clock: FakeClock) -> None:
    """Two buys race for the last seat in one batch: the loser's key stays free."""
    svc, c, tok = alice
    date = clock.date(2)
    sell_out_business(c, tok, date, keep=1)
    c.send(**buy(tok, "a", date, *ids(1, base=1)))
    c.send(**buy(tok, "b", date, *ids(1, base=2)))
    replies = c.replies(2)
    assert sorted(r["ok"] for r in replies) == [False, True]
    loser = next(r for r in replies if not r["ok"])
    assert loser["error"]["code"] == "sold_out"
    key = "b" if replies[0]["ok"] else "a"
    # the same key for another request is not "reused": nothing was remembered under it
    assert c.error("sold_out", **buy(tok, key, date, *ids(2, base=50)))["error"]["code"] == "sold_out"


def test_a_key_still_being_written_is_not_answered_before_the_writer(alice_in_one_process: Any, clock: FakeClock) -> None:
    """While a buy's commit is held, a different request under its key must wait for it, even
    when the seat maps already say sold out: the answer is then key_reused, not sold_out."""
    svc, c, tok = alice_in_one_process
    date = clock.date(2)
    sell_out_business(c, tok, date, keep=1)
    entered, release = hold_commits(svc)
    try:
        c.send(**buy(tok, "k", date, *ids(1, base=1)))  # one seat is left: goes to the writer
        assert entered.wait(wait_max_s)
        other = SessionClient(svc)
        other.send(**buy(tok, "k", date, *ids(2, base=7)))  # two seats: hopeless on the maps
        assert other.session.output() == b""  # not answered before the first is written
    finally:
        release.set()
    assert c.replies(1)[0]["ok"]
    assert other.replies(1)[0]["error"]["code"] == "key_reused_with_different_request"


def test_the_writer_is_told_which_keys_cannot_have_a_reply(alice: Any, clock: FakeClock) -> None:
    """Only a key the filter has never seen, with no other request under it pending, is marked
    new (not looked up by the writer); one seen, or pending twice, is looked up."""
    from railtix.service.batch import Command

    svc, c, tok = alice
    date = clock.date(2)
    c.ok(**buy(tok, "seen", date, *ids(1)))
    assert svc.writer.drain(wait_max_s)
    user = svc.user_of(tok)

    def marked(key: str, pending: int) -> bool:
        cmd = Command("buy", source="test", user=user, key=key, session=object())
        svc._pending[(user, key)] = pending
        try:
            svc._mark_new_keys([cmd])
        finally:
            svc._pending.pop((user, key))
        return cmd.stored

    assert marked("fresh", 1) is False  # only itself pending, never seen: no lookup
    assert marked("fresh", 2) is True  # another request with it queued or being written
    assert marked("seen", 1) is True  # a reply may be stored
    svc._keys = None  # as with a store that other processes write
    assert marked("fresh", 1) is True


def test_a_shared_store_has_no_key_filter(make_service: Any, clock: FakeClock) -> None:
    """The processes model marks its store shared before it starts the service: the filter,
    which only knows this process's keys, must not be used then."""
    from railtix.service.service import Service
    from railtix.store import open_store

    alone = make_service()
    assert alone._keys is not None
    alone.stop()  # one server alone, or shared ones only
    store = open_store(alone.store.location)
    shared = Service(store, clock=clock, sweep_interval_s=3600.0)
    store.shared = True
    shared.start()
    try:
        assert shared._keys is None
    finally:
        shared.stop()


def test_ids_made_in_one_millisecond_keep_close_to_their_millisecond() -> None:
    """Many ids in one millisecond step up by random strides under 2^24: they stay unique and
    ordered without running far ahead of the clock part of the id."""
    from railtix.service.batch import _value, new_order_ids

    now = 1_800_000_000.0
    made = new_order_ids(1000, now, None)
    values = [_value(i) for i in made]
    assert values == sorted(set(values))
    base = int(now * 1000) << 32
    assert base <= values[0] and values[-1] < base + (1 << 32) + 1000 * (1 << 24)


@pytest.mark.parametrize("on_a_loop", [False, True])
def test_the_writer_process_ends_on_sigterm_and_none_starts_after_stop(
    make_service: Any, clock: FakeClock, on_a_loop: bool
) -> None:
    """Python's multiprocessing ends leftover children with SIGTERM at exit and then waits for
    them: a child that ignored it would hang the exit of a server stopped out of order."""
    from railtix.service.batch import Command

    svc = make_service(writer_process=True, loop=on_a_loop)
    c = SessionClient(svc)
    c.login("alice")
    writer = svc.batch
    proc = writer._proc
    proc.terminate()
    proc.join(wait_max_s)
    assert not proc.is_alive()
    writer.stop()
    late = Command("sweep", source="test")
    answered: list[int] = []
    send = writer.send if not on_a_loop else lambda *a: svc.test_loop.call(writer.send, *a)
    send([late], clock(), lambda: answered.append(1))
    assert answered == [1]
    assert late.body is not None and b"shutting_down" in late.body
    assert writer._proc is None  # nothing was started


def test_a_writer_process_stopped_while_a_batch_is_being_sent_starts_no_other(
    make_service: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer thread that outlived the stop's grace may be between its check and the start of
    a new child when ``stop`` runs: it must answer ``shutting_down`` and start nothing."""
    from railtix.service import remote
    from railtix.service.batch import Command

    svc = make_service(writer_process=True)
    c = SessionClient(svc)
    c.login("alice")
    writer = svc.batch
    proc = writer._proc
    proc.kill()  # the next batch would start another child
    proc.join(wait_max_s)

    class StopsMidway:
        def encode(self, obj: Any) -> bytes:
            writer.stop()
            return remote.msgspec.msgpack.encode(obj)

    monkeypatch.setattr(remote, "_encoder", StopsMidway())
    late = Command("sweep", source="test")
    answered: list[int] = []
    writer.send([late], clock(), lambda: answered.append(1))
    assert answered == [1]
    assert late.body is not None and b"shutting_down" in late.body
    assert writer._proc is None


def test_a_batch_whose_send_answers_and_then_fails_is_answered_once(make_service: Any, clock: FakeClock) -> None:
    """A send that refuses a batch (answering it) and then raises must not answer it again: a
    second wake would count its keys as no longer pending twice, and overwrite replies that
    may already have left."""
    svc = make_service(writer_process=True)
    c = SessionClient(svc)
    tok = c.login("alice")
    wakes: list[int] = []
    wake = svc._wake

    def counting_wake(commands: list[Any]) -> None:
        wakes.append(len(commands))
        wake(commands)

    def refuse_then_fail(cmds: list[Any], now: float, then: Any) -> None:
        for cmd in cmds:
            cmd.body = error_body(Refusal("shutting_down", "the server is stopping"))
        then()
        raise RuntimeError("the pipe broke after the refusal")

    svc._wake = counting_wake
    svc.batch.send = refuse_then_fail
    reply = c.error("shutting_down", **buy(tok, "once", clock.date(1), *ids(1)))
    assert reply["error"]["message"] == "the server is stopping"
    assert wakes == [1] and svc._pending == {}


def test_a_pay_after_its_buy_needs_no_read_of_the_order(
    make_service: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from railtix.store.sqlite import SqliteTx

    svc = make_service(timetable=tiny_timetable(), writer_process=False)
    c = SessionClient(svc)
    token = c.login("alice")
    read: list[list[str]] = []
    real = SqliteTx.orders
    monkeypatch.setattr(SqliteTx, "orders", lambda tx, ids: read.append(ids) or real(tx, ids))
    bought = []
    for n in range(3):
        bought.append(c.ok(op="buy", token=token, key=f"b{n}", train="T1", date=clock.date(1),
                           **{"from": "AAA", "to": "CCC", "class": "business"},
                           passengers=[{"name": "P", "id_no": resident_id(f"33010119900101{n:03d}")}])["order"]["order"])
    assert c.ok(op="pay", token=token, key="p0", order=bought[0])["order"]["status"] == "paid"
    assert c.ok(op="cancel", token=token, key="c1", order=bought[1])["order"]["status"] == "cancelled"
    assert read == []  # the writer's own commits, kept
    # past the bound the oldest are read from the store again, and still found as committed
    monkeypatch.setattr(limits, "writer_orders_kept", 1)
    c.ok(op="pay", token=token, key="p2", order=bought[2])  # keeps only this one
    assert c.ok(op="refund", token=token, key="r0", order=bought[0])["order"]["status"] == "refunded"
    assert read == [[bought[0]]]
    # an order that is not there is still refused as not found
    assert c.call(op="pay", token=token, key="p9", order="E0000000000000000")["error"]["code"] == "not_found"


@pytest.mark.parametrize("writer_process", [False, True])
def test_views_count_seats_as_their_maps_do(make_service: Any, clock: FakeClock, writer_process: bool) -> None:
    # the writer publishes its FreeSeats with the maps; readers count on them
    from railtix.core.rides import seats_left
    from railtix.core.seats import available
    from railtix.core.timetable import ride_mask

    svc = make_service(timetable=tiny_timetable(), writer_process=writer_process)
    c = SessionClient(svc)
    token = c.login("alice")
    stops = ["AAA", "BBB", "CCC", "DDD", "EEE"]
    made = []
    for n, (a, b) in enumerate([(0, 2), (1, 4), (2, 3), (0, 4), (3, 4), (1, 2)]):
        reply = c.call(op="buy", token=token, key=f"b{n}", train="T1", date=clock.date(1),
                       **{"from": stops[a], "to": stops[b], "class": "second" if n % 2 else "business"},
                       passengers=[{"name": "P", "id_no": resident_id(f"33010119900101{n:03d}")},
                                   {"name": "Q", "id_no": resident_id(f"33010119900102{n:03d}")}])
        assert reply["ok"], reply
        made.append(reply["order"]["order"])
    c.ok(op="cancel", token=token, key="c0", order=made[1])
    train = svc.timetable.train_by_number["T1"]
    view = svc.cache.get(train, clock.date(1))
    assert set(view.free) == {"business", "second"}  # what the writer chose seats in
    for cls, occ in view.maps.items():
        for i in range(4):
            for j in range(i + 1, 5):
                assert seats_left(view, cls, ride_mask(i, j)) == available(occ, ride_mask(i, j)), (cls, i, j)


def test_a_run_nobody_bought_on_counts_every_seat_free(make_service: Any, clock: FakeClock) -> None:
    from railtix.core.rides import seats_left
    from railtix.core.timetable import ride_mask

    svc = make_service(timetable=tiny_timetable())
    train = svc.timetable.train_by_number["T1"]
    view = svc.cache.get(train, clock.date(2))
    assert view.version == 0 and set(view.free) == set(train.seats)  # counted without the maps
    for cls, seats in train.seats.items():
        for i in range(4):
            for j in range(i + 1, 5):
                assert seats_left(view, cls, ride_mask(i, j)) == len(seats)
