"""The bench's audit, from the server's own data rather than from the bench's counts.

- ``oversold``, ``capacity``, ``mismatched``, ``orphans``, ``unreadable``: the store's audit
  (``railtix.store.audit.audit_database``) over every run and order in the database: no two
  live orders share a seat on overlapping legs, live tickets plus free seats equal the seats of
  every leg, and the stored seat maps equal the fold of the orders.
- ``lost``: an ``ok`` reply the bench received whose order is not in the database, or is not in
  the status that reply confirmed (a paid order must be paid, a cancelled one cancelled…). A
  request still unanswered when the bench stopped may or may not have happened, so its outcome
  is allowed too; a held order may have expired (its hold ran out: the reply promised no more).
- ``duplicates``: one idempotency key that made two orders. The bench re-sends some buys with
  the same key and compares the two replies' order ids; and since every buy carries fresh
  passenger id numbers, two orders of this bench run naming the same id number can only come
  from one key, so the database is searched for them too.

Reading a live SQLite database from a second connection is safe (WAL); the store's audit
re-reads suspect runs consistently.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from railtix.bench import limits
from railtix.store import open_existing_store
from railtix.store.audit import audit_database, summary

#: Seconds of clock difference tolerated between the bench's start and the server's order times.
clock_slack_s = 5.0

#: Statuses an order may have when the last confirmed reply said ``acked`` and a request of
#: ``pending`` kind may or may not have been applied.
_AFTER_PENDING = {"pay": "paid", "cancel": "cancelled", "refund": "refunded"}


@dataclass
class Evidence:
    """What the load saw: its users, its start, and what the server confirmed."""

    users: list[str]
    since: float  #: wall-clock time the load started
    acks: dict[str, str] = field(default_factory=dict)  #: order id -> last confirmed status
    pending: dict[str, str] = field(default_factory=dict)  #: order id -> op sent, unanswered
    key_mismatches: list[tuple[str, str, str]] = field(default_factory=list)  #: (key, first, second)


def allowed(acked: str, pending: str | None) -> set[str]:
    ok = {acked}
    if acked == "held":
        ok.add("expired")
    if pending is not None:
        ok.add(_AFTER_PENDING[pending])
    return ok


def audit(database: str, evidence: Evidence | None = None) -> dict[str, Any]:
    """Every check on ``database`` (an SQLite file or a store URL); see the module docstring."""
    store = open_existing_store(database)
    try:
        report = audit_database(store)
        out: dict[str, Any] = {
            "database": database,
            "oversold": len(report.oversold),
            "lost": None,
            "duplicates": None,
            "capacity": len(report.capacity),
            "mismatched": len(report.mismatched),
            "orphans": len(report.orphans),
            "unreadable": len(report.unreadable),
            "checked": {
                "runs": report.runs_checked,
                "orders": report.orders_checked,
                "live_orders": report.live_orders,
                "tickets": report.tickets_checked,
            },
        }
        details = [] if report.clean else summary(report)[1:]
        if evidence is not None:
            lost, duplicates, more = _bench_checks(store, evidence, out["checked"])
            out["lost"] = lost
            out["duplicates"] = duplicates
            details += more
    finally:
        store.close()
    out["details"] = details[: limits.audit_details_max]
    out["clean"] = not any(out[k] for k in ("oversold", "lost", "duplicates", "capacity", "mismatched", "orphans", "unreadable"))
    return out


def _bench_checks(store: Any, ev: Evidence, checked: dict[str, int]) -> tuple[int, int, list[str]]:
    details: list[str] = []
    uids = set()
    for name in ev.users:
        row = store.user(name)
        if row is not None:
            uids.add(row[0])
    mine = {}
    since = ev.since - clock_slack_s
    for o in store.all_orders():
        if o.user in uids and o.created >= since:
            mine[o.id] = o
    checked["bench_orders"] = len(mine)
    checked["confirmed_replies"] = len(ev.acks)
    lost = 0
    for oid, acked in ev.acks.items():
        o = mine.get(oid)
        if o is None:
            lost += 1
            details.append(f"LOST order {oid}: the server confirmed it ({acked}) but the database has no such order")
            continue
        ok = allowed(acked, ev.pending.get(oid))
        if o.status.value not in ok:
            lost += 1
            details.append(f"LOST order {oid}: confirmed {acked} but the database says {o.status.value}")
    duplicates = 0
    for key, first, second in ev.key_mismatches:
        duplicates += 1
        details.append(f"DUPLICATE key {key}: first reply order {first}, repeat reply order {second}")
    # the first order that named a passenger is the key's order; any later one is a duplicate
    by_passenger: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for o in mine.values():
        for t in o.tickets:
            by_passenger[t.id_no].append((o.created, o.id))
    extra: dict[str, str] = {}
    for id_no, orders in by_passenger.items():
        if len(orders) > 1:
            orders.sort()
            for _, oid in orders[1:]:
                extra.setdefault(oid, f"{id_no[:4]}…{id_no[-4:]} (first in {orders[0][1]})")
    duplicates += len(extra)
    for oid, why in sorted(extra.items()):
        details.append(f"DUPLICATE order {oid}: passenger {why}; one key, several orders")
    return lost, duplicates, details
