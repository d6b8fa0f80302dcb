"""One run's inventory and the commands that change it: place an order, pay, cancel, refund, expire.

A ``RunState`` holds a run's seat maps (one per class) and, per passenger id number, the legs
that passenger holds on the run. Both are derived data: they must equal the fold of the run's
live orders (``fold``; ``railtix audit`` checks it on a database). Only the writer changes a
RunState; readers get copies of its maps published after each commit, so they never see a
state that is not durable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import msgspec
import numpy as np

from railtix.core.errors import Refusal
from railtix.core.orders import LIVE, Order, Status, Ticket, masked, next_status
from railtix.core.seats import FreeSeats, SeatLayout, SeatMap, empty_map
from railtix.core.timetable import Timetable, Train, ride_mask


class RunState:
    __slots__ = ("run", "train", "date", "maps", "passengers", "version", "memo", "free")

    def __init__(
        self,
        run: str,
        train: Train,
        date: str,
        maps: dict[str, SeatMap],
        passengers: dict[str, dict[str, int]],
        version: int = 0,
    ) -> None:
        self.run = run
        self.train = train
        self.date = date
        self.maps = maps
        #: id number -> {order id: legs mask} for live orders on this run
        self.passengers = passengers
        self.version = version
        #: on read-only views only: what readers derived from these maps, filled as they ask
        #: (seats left per (class, mask), a search's row per (start, end, departed)) and
        #: dropped with the view when the next commit replaces it
        self.memo: dict[tuple[Any, ...], Any] | None = None
        #: each class's map shaped for choosing seats (on the writer's states: made at the
        #: first purchase, kept in step by occupy and release; whoever replaces ``maps``
        #: otherwise must clear it), and for counting (on views, as the writer published them)
        self.free: dict[str, FreeSeats] = {}

    @classmethod
    def empty(cls, train: Train, date: str) -> RunState:
        maps = {c: empty_map(len(seats)) for c, seats in train.seats.items()}
        return cls(run_id(train.number, date), train, date, maps, {}, 0)

    def copy(self) -> RunState:
        return RunState(
            self.run,
            self.train,
            self.date,
            {c: m.copy() for c, m in self.maps.items()},
            {k: dict(v) for k, v in self.passengers.items()},
            self.version,
        )

    def free_seats(self, seat_class: str, layout: SeatLayout) -> FreeSeats:
        found = self.free.get(seat_class)
        if found is None:
            found = self.free[seat_class] = FreeSeats(self.maps[seat_class], layout, len(self.train.stops) - 1)
        return found

    def occupy(self, order: Order) -> None:
        occ = self.maps[order.seat_class]
        legs = order.mask
        mask = np.uint64(legs)
        free = self.free.get(order.seat_class)
        passengers = self.passengers
        for t in order.tickets:
            assert not occ[t.seat_index] & mask, "seat-segment sold twice"
            occ[t.seat_index] |= mask
            if free is not None:
                free.take(t.seat_index, order.start, order.end)
            held = passengers.get(t.id_no)
            if held is None:
                passengers[t.id_no] = {order.id: legs}
            else:
                held[order.id] = legs

    def release(self, order: Order) -> None:
        occ = self.maps[order.seat_class]
        mask = np.uint64(order.mask)
        free = self.free.get(order.seat_class)
        for t in order.tickets:
            assert occ[t.seat_index] & mask == mask, "releasing legs that were not held"
            occ[t.seat_index] &= ~mask
            if free is not None:
                free.give(t.seat_index, order.start, order.end)
            held = self.passengers.get(t.id_no)
            if held is not None:
                held.pop(order.id, None)
                if not held:
                    del self.passengers[t.id_no]


def no_seats(train_no: str, date: str, seat_class: str) -> Refusal:
    """The refusal of a ride that has too few seats of the class left (also given by the
    serving side when the committed maps already say so)."""
    return Refusal("sold_out", f"not enough {seat_class}-class seats on {train_no} {date} for this ride")


def run_id(train: str, date: str) -> str:
    return f"{train}@{date}"


class Layouts:
    """Seat layouts per (train, class), built once: they are derived from the timetable."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], SeatLayout] = {}

    def __call__(self, train: Train, seat_class: str) -> SeatLayout:
        key = (train.number, seat_class)
        layout = self._cache.get(key)
        if layout is None:
            layout = self._cache[key] = SeatLayout(train.seats[seat_class])
        return layout


class Named(Protocol):
    """A passenger as an order needs one: the request's own objects will do, unconverted."""

    @property
    def name(self) -> str: ...

    @property
    def id_no(self) -> str: ...


def place_order(
    run: RunState,
    layouts: Layouts,
    timetable: Timetable,
    *,
    order_id: str,
    user: int,
    start: int,
    end: int,
    seat_class: str,
    passengers: Sequence[Named],
    letters: Sequence[str],
    now: float,
    departs: float,
    hold_s: float,
) -> Order:
    """Hold seats for every passenger at once, or refuse and change nothing."""
    train = run.train
    if seat_class not in run.maps:
        raise Refusal("sold_out", f"{train.number} has no {seat_class} seats")
    ids = [p.id_no for p in passengers]
    if len(set(ids)) != len(ids):
        raise Refusal("duplicate_passenger", "the same id number appears twice in one order")
    mask = ride_mask(start, end)
    for p in passengers:
        for legs in run.passengers.get(p.id_no, {}).values():
            if legs & mask:
                raise Refusal(
                    "passenger_already_booked_on_this_run",
                    f"the passenger with id number {masked(p.id_no)} already has a ticket on "
                    f"{train.number} {run.date} for part of this ride",
                )
    layout = layouts(train, seat_class)
    seats = run.free_seats(seat_class, layout).choose(start, end, len(passengers), letters)
    if seats is None:
        raise no_seats(train.number, run.date, seat_class)
    price = timetable.fare(train, seat_class, start, end)
    tickets = tuple(
        Ticket(p.name, p.id_no, s, layout.coaches[s], layout.names[s], price)
        for p, s in zip(passengers, seats, strict=True)
    )
    order = Order(
        id=order_id,
        user=user,
        run=run.run,
        train=train.number,
        date=run.date,
        start=start,
        end=end,
        origin=train.stops[start].station,
        destination=train.stops[end].station,
        seat_class=seat_class,
        tickets=tickets,
        status=Status.HELD,
        created=now,
        hold_until=min(now + hold_s, departs),  # a hold cannot outlast the train
        departs=departs,
    )
    run.occupy(order)
    return order


def change_status(run: RunState, order: Order, event: str, now: float, **fields: object) -> Order:
    """The order after ``event`` with seats released when it stops being live.

    Raises Refusal (changing nothing) when the transition table has no such edge.
    """
    status = next_status(order.status, event, order.id)
    changed = msgspec.structs.replace(order, status=status, **fields)
    if status is not Status.HELD:
        changed.hold_until = None
    if order.live and status not in LIVE:
        run.release(order)
    return changed


def hold_lapsed(order: Order, now: float) -> bool:
    return order.status is Status.HELD and order.hold_until is not None and now >= order.hold_until


def fold(train: Train, orders: Iterable[Order]) -> tuple[dict[str, list[int]], list[tuple[str, str, int]]]:
    """Seat maps recomputed from live orders, and every overlap found on the way.

    Overlaps are (order id, other order id or "", seat index): two live orders sharing a seat on
    an overlapping leg. This is the independent check behind ``railtix audit``.
    """
    maps = {c: [0] * len(seats) for c, seats in train.seats.items()}
    owner: dict[tuple[str, int], list[tuple[int, str]]] = {}
    overlaps: list[tuple[str, str, int]] = []
    for o in orders:
        if o.status not in LIVE:
            continue
        mask = o.mask
        for t in o.tickets:
            key = (o.seat_class, t.seat_index)
            for legs, other in owner.get(key, []):
                if legs & mask:
                    overlaps.append((o.id, other, t.seat_index))
            owner.setdefault(key, []).append((mask, o.id))
            maps[o.seat_class][t.seat_index] |= mask
    return maps, overlaps
