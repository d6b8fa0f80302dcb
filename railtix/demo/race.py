"""The lecture's lock lesson on the real inventory: K threads buy the last N seats of one run.

The lecture lets 100 threads do ``cnt += 1`` on a shared counter without a lock and the total
comes out short: ``cnt += 1`` is read, add, write, and another thread can run between the read
and the write. Selling a seat has the same shape: read the seat map, check that a seat is free,
mark it sold. With the lock off, two threads read the map before either marks it, both find the
same seat free, and both sell it: the train is oversold. With the lock on (the lecture's
``Lock`` around the critical section), exactly N tickets are sold, each seat once.

The inventory here is the real one, in memory (a core ``RunState`` and ``place_order``, no
store). The unsafe path is written here, on purpose, and nowhere else: it exists to be shown.
The server needs no lock of its own because one writer thread per process applies every
purchase, and across processes the database's write lock and run versions play the Lock's part.

Under CPython's GIL a thread is rarely interrupted in the few microseconds between the check and
the act, so the race would hide; ``time.sleep(pause_s)`` between them (``sleep(0)`` by default)
gives the other threads their turn exactly where a real server would be interrupted by I/O, as
the lecture's ``time.sleep(1)`` inside the locked section does.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Sequence

import msgspec
import numpy as np

from railtix.core.errors import Refusal
from railtix.core.inventory import Layouts, RunState, fold, place_order
from railtix.core.orders import Order, Passenger
from railtix.core.seats import available
from railtix.core.timetable import Timetable, Train, ride_mask
from railtix.demo.timetable import demo_timetable

#: Buyer threads at most: enough to show any race; more only slows the demo down.
threads_max = 64

#: The run the demo sells from: G1 Beijing South → Shanghai Hongqiao, second class. The date
#: only names the run (the core never reads the clock).
TRAIN = "G1"
DATE = "2026-12-01"
SEAT_CLASS = "second"


class SoldTwice(msgspec.Struct):
    coach: int
    seat: str
    times: int
    buyers: list[int]  #: buyer thread numbers, one per sale


class RaceResult(msgspec.Struct):
    lock: bool
    threads: int
    seats: int  #: seats on sale when the race began
    sold: int  #: tickets sold
    oversold: int  #: tickets sold beyond the seats there were
    free_after: int  #: seats the seat map shows free at the end
    sold_twice: list[SoldTwice]  #: seats sold more than once
    overlaps: int  #: pairs of live orders on one seat, found by the core's audit (``fold``)
    per_thread: list[int]  #: tickets sold by each buyer
    tries: int = 1  #: races run to get this one (the unlocked race is repeated until it oversells)
    seconds: float = 0.0


class Inventory:
    """One run with only its last ``seats`` seats of the class left, and what buying needs."""

    def __init__(self, seats: int, timetable: Timetable | None = None) -> None:
        self.timetable = timetable or demo_timetable()
        self.train: Train = self.timetable.train_by_number[TRAIN]
        self.layouts = Layouts()
        self.state = RunState.empty(self.train, DATE)
        self.end = len(self.train.stops) - 1
        self.mask = ride_mask(0, self.end)
        occ = self.state.maps[SEAT_CLASS]
        if not 1 <= seats <= len(occ):
            raise ValueError(f"{TRAIN} has {len(occ)} {SEAT_CLASS} seats; race for 1 to {len(occ)}")
        # everything but the last ``seats`` seats went earlier, for the whole ride
        occ[: len(occ) - seats] |= np.uint64(self.mask)
        self.seats = seats

    def check(self, seen: RunState, buyer: int, n: int) -> Order:
        """The check: choose a free seat in the map as ``seen`` (raises ``sold_out``)."""
        return place_order(
            seen, self.layouts, self.timetable,
            order_id=f"R{buyer:02d}-{n:04d}", user=buyer, start=0, end=self.end, seat_class=SEAT_CLASS,
            passengers=[Passenger(f"乘客{buyer}-{n}", f"{buyer:02d}{n:08d}")], letters=(),
            now=0.0, departs=0.0, hold_s=1800.0,
        )

    def free(self) -> int:
        return available(self.state.maps[SEAT_CLASS], self.mask)


def buy_one(inv: Inventory, lock: threading.Lock | None, buyer: int, n: int, pause_s: float) -> Order:
    """Read the seat map, check a seat is free, pause, mark it sold: the lecture's ``cnt += 1``.

    With ``lock`` the three steps are one critical section; without it another buyer may run
    between the check and the act, and sell the same seat.
    """
    with lock if lock is not None else contextlib.nullcontext():
        seen = inv.state.copy()  # read
        order = inv.check(seen, buyer, n)  # check: a seat free in what we read
        time.sleep(pause_s)  # the other threads' turn
        occ = inv.state.maps[SEAT_CLASS]  # act: mark it sold in the live map
        for t in order.tickets:
            occ[t.seat_index] |= np.uint64(order.mask)
            inv.state.passengers.setdefault(t.id_no, {})[order.id] = order.mask
        return order


def race(threads: int = 8, seats: int = 20, *, lock: bool, pause_s: float = 0.0) -> RaceResult:
    """``threads`` buyers, one ticket at a time, until each sees the run sold out."""
    if not 1 <= threads <= threads_max:
        raise ValueError(f"threads must be 1 to {threads_max}")
    inv = Inventory(seats)
    guard = threading.Lock() if lock else None
    sales: list[tuple[int, Order]] = []
    start = threading.Barrier(threads)

    def buyer(k: int) -> None:
        start.wait()
        # each sale marks a seat that was free when this buyer last read the map, so a buyer
        # sells at most ``seats`` tickets before it sees the run sold out
        for n in range(seats + 1):
            try:
                order = buy_one(inv, guard, k, n, pause_s)
            except Refusal as r:
                assert r.code == "sold_out", r
                return
            sales.append((k, order))  # list.append is atomic: the tally itself is safe

    began = time.perf_counter()
    workers = [threading.Thread(target=buyer, args=(k,), name=f"buyer-{k}") for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    seconds = time.perf_counter() - began
    return tally(inv, sales, threads, lock, seconds)


def tally(inv: Inventory, sales: Sequence[tuple[int, Order]], threads: int, lock: bool, seconds: float) -> RaceResult:
    by_seat: dict[int, list[int]] = defaultdict(list)
    for k, order in sales:
        for t in order.tickets:
            by_seat[t.seat_index].append(k)
    labels = inv.layouts(inv.train, SEAT_CLASS).labels
    twice = [
        SoldTwice(labels[i].coach, labels[i].seat, len(ks), sorted(ks))
        for i, ks in sorted(by_seat.items())
        if len(ks) > 1
    ]
    _, overlaps = fold(inv.train, [o for _, o in sales])
    per_thread = [0] * threads
    for k, _ in sales:
        per_thread[k] += 1
    return RaceResult(
        lock=lock, threads=threads, seats=inv.seats, sold=len(sales), oversold=max(0, len(sales) - inv.seats),
        free_after=inv.free(), sold_twice=twice, overlaps=len(overlaps), per_thread=per_thread,
        seconds=round(seconds, 4),
    )


def race_until_oversold(threads: int = 8, seats: int = 20, *, tries: int = 10, pause_s: float = 0.0) -> RaceResult:
    """The unlocked race, repeated (at most ``tries`` times) until it oversells."""
    result = race(threads, seats, lock=False, pause_s=pause_s)
    for n in range(2, tries + 1):
        if result.oversold:
            break
        result = race(threads, seats, lock=False, pause_s=pause_s)
        result.tries = n
    return result
