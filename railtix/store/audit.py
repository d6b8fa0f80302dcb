"""The audit: does a database keep guarantee 1 (no seat-segment sold twice)?

The seat maps the writer stores are derived data; the orders are the record. The audit
recomputes every run's maps from its live orders with ``core.inventory.fold`` (an independent
path: plain Python ints, not the writer's numpy code) and reports

- ``oversold``: two live orders holding the same seat on an overlapping leg;
- ``mismatched``: a stored seat map that differs from the fold (class and seat indices);
- ``capacity``: a leg where live tickets riding it plus seats the stored map leaves open there do
  not add up to the class's seats (two tickets on a seat-leg the map counts once make the sum too
  large, a leg sold in the map to no ticket too small). This catches a double sale even when the
  stored maps agree with the orders, as they would if the writer itself had sold a seat twice;
- ``orphans``: live orders whose run has no stored row (or whose train left the timetable);
- ``unreadable``: stored rows that cannot be decoded against the timetable;
- ``unsettled``: runs that changed under every attempt to read them consistently (not verified).

The audit reads a live database too. Runs and orders are read by separate queries, so a commit
between them could look like a mismatch; every suspect run is therefore read again with its
version read before and after its orders (every transaction that changes a run's seat maps bumps
its version) and reported only if the disagreement holds on a consistent read.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable

import msgspec
import numpy as np

from railtix.core.inventory import fold
from railtix.core.orders import LIVE, Order
from railtix.core.timetable import Timetable, Train
from railtix.store.base import Store, decode_maps

#: Re-reads tried per suspect run to get a consistent one, with a pause between them that
#: doubles from ``recheck_pause_min_s`` up to ``recheck_pause_max_s`` (a run sold on without a
#: pause can move under every read; about two seconds in all, then the run is reported as
#: ``unsettled``: not verified, audit again when sales pause).
recheck_attempts_max = 50
recheck_pause_min_s = 0.001
recheck_pause_max_s = 0.05

#: Seat indices listed per mismatched run and class; the count is always exact.
seats_listed_max = 50


class Overlap(msgspec.Struct):
    run: str
    seat_class: str
    seat: int  #: index in the class's seat map
    label: str  #: coach and seat, e.g. "05-12F"
    orders: tuple[str, str]


class Mismatch(msgspec.Struct):
    run: str
    seat_class: str
    count: int  #: seats whose stored legs differ from the fold
    seats: list[int]  #: the first ``seats_listed_max`` of them


class CapacityError(msgspec.Struct):
    run: str
    seat_class: str
    leg: int  #: leg i joins stop i and stop i+1
    sold: int  #: live tickets riding this leg
    free: int  #: seats the stored map leaves open on this leg
    capacity: int


class Orphan(msgspec.Struct):
    order: str
    run: str
    reason: str


class Unreadable(msgspec.Struct):
    run: str
    reason: str


class AuditReport(msgspec.Struct):
    runs_checked: int = 0
    orders_checked: int = 0
    live_orders: int = 0
    tickets_checked: int = 0
    oversold: list[Overlap] = []
    mismatched: list[Mismatch] = []
    capacity: list[CapacityError] = []
    orphans: list[Orphan] = []
    unreadable: list[Unreadable] = []
    unsettled: list[str] = []

    @property
    def clean(self) -> bool:
        """Nothing found and everything verified."""
        return not (
            self.oversold or self.mismatched or self.capacity or self.orphans or self.unreadable or self.unsettled
        )

    def to_dict(self) -> dict[str, object]:
        return {"clean": self.clean, **msgspec.to_builtins(self)}


class _RunFindings(msgspec.Struct):
    oversold: list[Overlap] = []
    mismatched: list[Mismatch] = []
    capacity: list[CapacityError] = []
    orphans: list[Orphan] = []
    unreadable: list[Unreadable] = []
    settled: bool = True

    @property
    def clean(self) -> bool:
        return not (self.oversold or self.mismatched or self.capacity or self.orphans or self.unreadable)


def audit_database(store: Store, timetable: Timetable | None = None) -> AuditReport:
    """Check every run and every order of ``store``; see the module docstring for what is found."""
    timetable = timetable or store.get_timetable()
    report = AuditReport()
    rows: dict[str, bytes] = {}
    for run, _version, blob in store.all_runs():
        rows[run] = bytes(blob)
    live: dict[str, list[Order]] = defaultdict(list)
    for o in store.all_orders():
        report.orders_checked += 1
        if o.status in LIVE:
            report.live_orders += 1
            report.tickets_checked += len(o.tickets)
            live[o.run].append(o)
    report.runs_checked = len(set(rows) | set(live))
    if timetable is None:
        if rows or live:
            report.unreadable.append(Unreadable("*", "the database has runs but no timetable"))
        return report
    for run in sorted(set(rows) | set(live)):
        found = check_run(timetable, run, rows.get(run), live.get(run, []))
        if not found.clean:
            found = _recheck(store, timetable, run)
            if not found.settled:
                report.unsettled.append(run)
                continue
        report.oversold += found.oversold
        report.mismatched += found.mismatched
        report.capacity += found.capacity
        report.orphans += found.orphans
        report.unreadable += found.unreadable
    return report


def _recheck(store: Store, timetable: Timetable, run: str) -> _RunFindings:
    """The run's findings on a consistent read: its version unchanged across reading its orders."""
    pause = recheck_pause_min_s
    for _ in range(recheck_attempts_max):
        before = store.run_row(run)
        orders = store.live_orders(run)
        after = store.run_row(run)
        if before == after:
            return check_run(timetable, run, None if before is None else bytes(before[1]), orders)
        time.sleep(pause)  # let the writer's burst pass
        pause = min(2 * pause, recheck_pause_max_s)
    return _RunFindings(settled=False)


def check_run(timetable: Timetable, run: str, blob: bytes | None, orders: Iterable[Order]) -> _RunFindings:
    """Findings for one run from its stored maps (None: no row) and its live orders."""
    out = _RunFindings()
    orders = [o for o in orders if o.status in LIVE]
    number = run.partition("@")[0]
    train = timetable.train_by_number.get(number)
    if train is None:
        out.orphans += [Orphan(o.id, run, f"train {number} is not in the timetable") for o in orders]
        if blob is not None:
            out.unreadable.append(Unreadable(run, f"train {number} is not in the timetable"))
        return out
    if blob is None:
        out.orphans += [Orphan(o.id, run, "the run has no stored seat maps") for o in orders]
    usable = []
    for o in orders:
        if o.seat_class in train.seats and _fits(train, o):
            usable.append(o)
        else:
            out.orphans.append(Orphan(o.id, run, "the order names seats or stops the train does not have"))
    folded, overlaps = fold(train, usable)
    by_id = {o.id: o for o in usable}
    for oid, other, seat in overlaps:
        cls = by_id[oid].seat_class
        label = train.seats[cls][seat]
        out.oversold.append(Overlap(run, cls, seat, f"{label.coach:02d}-{label.seat}", (other, oid)))
    if blob is None:
        return out
    try:
        stored = decode_maps(blob, train)
    except (AssertionError, KeyError, ValueError, msgspec.DecodeError) as e:
        out.unreadable.append(Unreadable(run, f"stored seat maps do not fit the timetable: {e or type(e).__name__}"))
        return out
    legs = len(train.stops) - 1
    for cls, seats in train.seats.items():
        have = stored[cls]
        want = np.array(folded[cls], dtype=np.uint64)
        differ = np.flatnonzero(have != want)
        if differ.size:
            out.mismatched.append(Mismatch(run, cls, int(differ.size), differ[:seats_listed_max].tolist()))
        sold = [0] * legs
        for o in usable:
            if o.seat_class == cls:
                for leg in range(o.start, o.end):
                    sold[leg] += len(o.tickets)
        for leg in range(legs):
            free = int(np.count_nonzero((have >> np.uint64(leg)) & np.uint64(1) == 0))
            if sold[leg] + free != len(seats):
                out.capacity.append(CapacityError(run, cls, leg, sold[leg], free, len(seats)))
    return out


def _fits(train: Train, o: Order) -> bool:
    n = len(train.seats[o.seat_class])
    return 0 <= o.start < o.end < len(train.stops) and all(0 <= t.seat_index < n for t in o.tickets)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def checked(runs: int, orders: int, live: int, tickets: int) -> str:
    """What an audit read, as its reports say it."""
    return f"checked {_count(runs, 'run')}, {_count(orders, 'order')} ({live:,} live, {_count(tickets, 'ticket')})"


def summary(report: AuditReport) -> list[str]:
    """The report as lines a person reads."""
    lines = [checked(report.runs_checked, report.orders_checked, report.live_orders, report.tickets_checked)]
    if report.clean:
        lines.append("clean: no seat-segment sold twice; every stored seat map equals its orders")
        return lines
    for o in report.oversold:
        lines.append(f"OVERSOLD {o.run} {o.seat_class} seat {o.label} (#{o.seat}): orders {o.orders[0]} and {o.orders[1]}")
    for m in report.mismatched:
        more = f" and {m.count - len(m.seats)} more" if m.count > len(m.seats) else ""
        lines.append(f"MISMATCH {m.run} {m.seat_class}: {m.count} seats differ from the orders: {m.seats}{more}")
    for c in report.capacity:
        lines.append(
            f"CAPACITY {c.run} {c.seat_class} leg {c.leg}: sold {c.sold} + free {c.free} != {c.capacity} seats"
        )
    for r in report.orphans:
        lines.append(f"ORPHAN order {r.order} on {r.run}: {r.reason}")
    for u in report.unreadable:
        lines.append(f"UNREADABLE {u.run}: {u.reason}")
    for run in report.unsettled:
        lines.append(f"UNSETTLED {run}: it changed under every read; audit again when sales pause")
    found = (
        len(report.oversold), len(report.mismatched), len(report.capacity), len(report.orphans),
        len(report.unreadable), len(report.unsettled),
    )
    lines.append(
        "problems: {} oversold, {} mismatched maps, {} capacity, {} orphans, {} unreadable, "
        "{} not verified".format(*found)
    )
    return lines
