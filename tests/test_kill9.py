"""kill -9 in the middle of a rush loses nothing that was confirmed (guarantee 2).

Eight connections, each a different user, pipeline purchases and payments; every ``ok`` reply is
written down. The server is SIGKILLed while they are still at it, restarted on the same
database, and every confirmed order must be there with the same seats and status. Then the
database is audited independently: seat maps recomputed with ``core.inventory.fold`` from the
stored orders must equal the stored maps, with no seat-segment held twice.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from conftest import LineClient, ServerProcess, sale_date, wait_max_s

from railtix.core.inventory import fold
from railtix.core.orders import LIVE, Order
from railtix.core.seats import legs_of
from railtix.demo.timetable import demo_timetable
from railtix.store import open_store
from railtix.store.base import decode_maps

CONNECTIONS = 8
PIPELINE = 10  #: buys sent at once on a connection before reading their replies
CHUNKS_MAX = 200  #: per connection; far more than will run before the kill
KILL_AFTER_CONFIRMED = 500  #: ok replies (buys and pays) seen before the kill
TRAINS = ("G1", "G3", "G5", "G7", "G2", "G4")


@dataclass
class Confirmed:
    """What the client was told, per order."""

    user: int
    key: str
    request: dict[str, Any]
    order: dict[str, Any]
    paid: bool = False  #: a pay for it was answered ok
    pay_sent: bool = False  #: a pay was sent (it may have committed without an answer)


@dataclass
class Ledger:
    lock: threading.Lock = field(default_factory=threading.Lock)
    orders: dict[str, Confirmed] = field(default_factory=dict)
    oks: int = 0
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def _buy_request(rng: random.Random, token: str, key: str, who: int, n: int, timetable: Any) -> dict[str, Any]:
    train = timetable.train_by_number[rng.choice(TRAINS)]
    i = rng.randrange(len(train.stops) - 1)
    j = rng.randrange(i + 1, len(train.stops))
    return {
        "op": "buy", "token": token, "key": key, "train": train.number, "date": sale_date(rng.randrange(2, 6)),
        "from": train.stops[i].station, "to": train.stops[j].station,
        "class": rng.choice(("second", "second", "second", "first")),
        "passengers": [{"name": f"旅客{who}-{n}-{p}", "id_no": f"K9{who:02d}{n:06d}{p}"}
                       for p in range(rng.randrange(1, 4))],
    }


def _worker(who: int, token: str, address: tuple[str, int], ledger: Ledger, timetable: Any,
            stop: threading.Event) -> None:
    rng = random.Random(who)
    try:
        c = LineClient(address, timeout=wait_max_s)
    except OSError:
        return
    try:
        for chunk in range(CHUNKS_MAX):
            if stop.is_set():
                return
            reqs = []
            for b in range(PIPELINE):
                n = chunk * PIPELINE + b
                req = _buy_request(rng, token, f"w{who}-b{n}", who, n, timetable)
                reqs.append({"id": n, **req})
            c.send_many(reqs)
            paying = []
            for req in reqs:
                r = c.recv()
                assert r["id"] == req["id"]
                with ledger.lock:
                    if r["ok"]:
                        ledger.oks += 1
                        ledger.orders[r["order"]["order"]] = Confirmed(who, req["key"], req, r["order"])
                        if rng.random() < 0.5:
                            paying.append(r["order"]["order"])
                    else:
                        ledger.errors[r["error"]["code"]] += 1
            pays = [{"id": f"p{oid}", "op": "pay", "token": token, "key": f"w{who}-p-{oid}", "order": oid}
                    for oid in paying]
            with ledger.lock:
                for oid in paying:
                    ledger.orders[oid].pay_sent = True
            c.send_many(pays)
            for p in pays:
                r = c.recv()
                assert r["id"] == p["id"]
                with ledger.lock:
                    if r["ok"]:
                        assert r["order"]["status"] == "paid"
                        ledger.oks += 1
                        ledger.orders[p["order"]].paid = True
                    else:
                        ledger.errors[r["error"]["code"]] += 1
    except (OSError, AssertionError, msgspec.DecodeError):
        return  # the server was killed under us: what was confirmed is in the ledger
    finally:
        c.close()


def _tickets(order: dict[str, Any]) -> list[tuple[str, int, str]]:
    return sorted((t["passenger"], t["coach"], t["seat"]) for t in order["tickets"])


def test_kill9_in_a_rush_loses_nothing_confirmed(tmp_path: Path, start_server: Any) -> None:
    db = tmp_path / "railtix.db"
    server: ServerProcess = start_server(db)
    with server.client() as c:
        tokens = [c.login(f"rush{k}") for k in range(CONNECTIONS)]
    timetable = demo_timetable()  # what a server loads into a new database

    ledger = Ledger()
    stop = threading.Event()
    workers = [
        threading.Thread(target=_worker, args=(k, tokens[k], server.address, ledger, timetable, stop), daemon=True)
        for k in range(CONNECTIONS)
    ]
    for w in workers:
        w.start()
    deadline = time.monotonic() + 60
    while ledger.oks < KILL_AFTER_CONFIRMED and time.monotonic() < deadline:
        time.sleep(0.005)
    busy = sum(w.is_alive() for w in workers)
    server.kill()
    stop.set()
    for w in workers:
        w.join(wait_max_s)
    assert not any(w.is_alive() for w in workers)
    assert ledger.oks >= KILL_AFTER_CONFIRMED, f"only {ledger.oks} confirmed; errors {dict(ledger.errors)}"
    assert busy == CONNECTIONS, "the kill must land while every connection is still at work"
    assert not set(ledger.errors) - {"sold_out"}, dict(ledger.errors)

    # restart on the same database: everything confirmed is there, as confirmed
    again: ServerProcess = start_server(db)
    by_user: dict[int, list[Confirmed]] = defaultdict(list)
    for rec in ledger.orders.values():
        by_user[rec.user].append(rec)
    with again.client() as c:
        for user, recs in by_user.items():
            c.send_many([{"id": i, "op": "order", "token": tokens[user], "order": r.order["order"]}
                         for i, r in enumerate(recs)])
            for i, rec in enumerate(recs):
                r = c.recv()
                assert r["id"] == i
                assert r["ok"], f"confirmed order {rec.order['order']} is gone: {r}"
                got = r["order"]
                assert _tickets(got) == _tickets(rec.order)
                assert (got["train"], got["date"], got["from"], got["to"], got["class"]) == (
                    rec.order["train"], rec.order["date"], rec.order["from"], rec.order["to"], rec.order["class"])
                if rec.paid:
                    assert got["status"] == "paid", rec.order["order"]
                elif rec.pay_sent:
                    assert got["status"] in ("held", "paid")
                else:
                    assert got["status"] == "held"
        # a retry of a confirmed purchase after the crash answers the same order
        rec = next(iter(ledger.orders.values()))
        retry = c.call(**{**rec.request, "token": tokens[rec.user]})
        assert retry["ok"] and retry["order"]["order"] == rec.order["order"]
    assert again.stop() in (0, -15)

    # the audit: seat maps are the fold of the live orders, and nothing is held twice
    store = open_store(str(db))
    try:
        orders: dict[str, list[Order]] = defaultdict(list)
        for o in store.all_orders():
            orders[o.run].append(o)
        stored = {run: (version, blob) for run, version, blob in store.all_runs()}
        assert len(sum(orders.values(), [])) >= len(ledger.orders)
        for run in set(orders) | set(stored):
            train = timetable.train_by_number[run.split("@")[0]]
            maps, overlaps = fold(train, orders.get(run, []))
            assert overlaps == [], f"{run}: seat-segments sold twice: {overlaps[:5]}"
            if run in stored:
                got = {c: legs_of(m) for c, m in decode_maps(stored[run][1], train).items()}
            else:
                got = {c: [0] * len(s) for c, s in train.seats.items()}
            assert got == maps, f"{run}: stored seat maps differ from the fold of its orders"
            held: dict[str, list[int]] = defaultdict(list)
            for o in orders.get(run, []):
                if o.status in LIVE:
                    for t in o.tickets:
                        for other in held[t.id_no]:
                            assert not other & o.mask, f"{run}: {t.id_no} holds overlapping tickets"
                        held[t.id_no].append(o.mask)
    finally:
        store.close()


def test_a_restart_after_kill9_serves_what_was_confirmed(tmp_path: Path, start_server: Any) -> None:
    """The smallest case: one confirmed purchase, kill -9, restart (WAL recovery), still there."""
    db = tmp_path / "k.db"
    first: ServerProcess = start_server(db)
    with first.client() as c:
        token = c.login("once")
        oid = c.ok(op="buy", token=token, key="k", train="G1", date=sale_date(3),
                   **{"from": "VNP", "to": "AOH", "class": "business"},
                   passengers=[{"name": "张三", "id_no": "110101199001011237"}])["order"]["order"]
    first.kill()
    second: ServerProcess = start_server(db)
    with second.client() as c:
        got = c.ok(op="order", token=token, order=oid)["order"]
        assert got["status"] == "held" and got["tickets"][0]["passenger"] == "张三"
