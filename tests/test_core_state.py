"""The inventory as a state machine: random orders, payments, cancellations, expiries and refunds
on two runs of a tiny train, with the invariants checked after every step.

Each step's outcome is predicted from an independent model (the list of orders and their
statuses, with seats counted one by one) and compared with what ``core`` did; refused steps
must leave the run state exactly as it was. The pool of passengers is small so that the
passenger-overlap rule fires, and the train is small so that classes sell out.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import itertools

import msgspec
import pytest
from conftest import CLOCK_START, tiny_timetable
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule

from railtix.core.errors import Refusal
from railtix.core.inventory import Layouts, RunState, change_status, fold, hold_lapsed, place_order
from railtix.core.orders import LIVE, REFUSED, TRANSITIONS, Order, Passenger, Status, refund_fee
from railtix.core.seats import FreeSeats, available, legs_of
from railtix.core.timetable import Coach, Stop, Train, ride_mask

TT = tiny_timetable()
TRAIN = TT.train_by_number["T1"]
LAYOUTS = Layouts()
LEGS = len(TRAIN.stops) - 1
DATES = ("2026-06-02", "2026-06-03")
CLASSES = tuple(TRAIN.seats)
#: Twenty people: few enough that one of them often books twice, enough to sell a class out.
POOL = tuple(f"1101{n:06d}" for n in range(20))
HOLD_S = 1800.0
EVENTS = ("pay", "cancel", "expire", "refund", "change")
ENCODE = msgspec.msgpack.Encoder()
note_event = event  # the rule below has a parameter named event


def departs(date: str, stop: int) -> float:
    return TRAIN.depart_at(dt.date.fromisoformat(date), stop).timestamp()


def snapshot(state: RunState) -> tuple[object, ...]:
    """Everything a refused command must leave alone, deep-copied."""
    return (
        state.run,
        state.date,
        {c: legs_of(m) for c, m in state.maps.items()},
        copy.deepcopy(state.passengers),
        state.version,
    )


def free_seats(orders: list[Order], seat_class: str, mask: int) -> list[int]:
    """Seats of the class free for the ride, counted one by one from live orders."""
    taken: dict[int, int] = {}
    for o in orders:
        if o.live and o.seat_class == seat_class:
            for t in o.tickets:
                taken[t.seat_index] = taken.get(t.seat_index, 0) | o.mask
    return [i for i in range(len(TRAIN.seats[seat_class])) if taken.get(i, 0) & mask == 0]


@st.composite
def party(draw: st.DrawFn) -> list[str]:
    """1-5 id numbers, now and then with one listed twice."""
    ids = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=5, unique=True))
    if draw(st.integers(0, 9)) == 0:
        ids.insert(draw(st.integers(0, len(ids))), draw(st.sampled_from(ids)))
    return ids


class RunMachine(RuleBasedStateMachine):
    order_ids = Bundle("order_ids")

    def __init__(self) -> None:
        super().__init__()
        self.now = CLOCK_START
        self.states = {f"T1@{d}": RunState.empty(TRAIN, d) for d in DATES}
        self.orders: dict[str, Order] = {}
        self.ids = itertools.count(1)

    def run_orders(self, run: str) -> list[Order]:
        return [o for o in self.orders.values() if o.run == run]

    # --- commands ----------------------------------------------------------------------------
    @rule(
        target=order_ids,
        date=st.sampled_from(DATES),
        a=st.integers(0, LEGS),
        b=st.integers(0, LEGS),
        seat_class=st.sampled_from(("business", "business", "first", "second")),  # 6, 8, 20 seats
        ids=party(),
        letters=st.lists(st.sampled_from("ABCDF"), max_size=5),
    )
    def place(self, date: str, a: int, b: int, seat_class: str, ids: list[str], letters: list[str]) -> object:
        if a == b:
            b = a + 1 if a < LEGS else a - 1
        start, end = min(a, b), max(a, b)
        run = f"T1@{date}"
        state = self.states[run]
        mask = ride_mask(start, end)
        mine = self.run_orders(run)
        free = free_seats(mine, seat_class, mask)
        assert available(state.maps[seat_class], mask) == len(free)
        # which refusals would be right, whatever order the code checks them in
        allowed = set()
        if len(set(ids)) != len(ids):
            allowed.add("duplicate_passenger")
        if any(o.live and o.mask & mask and t.id_no in ids for o in mine for t in o.tickets):
            allowed.add("passenger_already_booked_on_this_run")
        if len(free) < len(ids):
            allowed.add("sold_out")
        before = snapshot(state)
        oid = f"E{next(self.ids):04d}"
        try:
            order = place_order(
                state, LAYOUTS, TT, order_id=oid, user=1 + len(ids) % 3, start=start, end=end,
                seat_class=seat_class, passengers=[Passenger(f"旅客{p[-2:]}", p) for p in ids],
                letters=letters, now=self.now, departs=departs(date, start), hold_s=HOLD_S,
            )
        except Refusal as r:
            event(f"place refused: {r.code}")
            assert r.code in allowed, f"refused {r.code} but only {allowed or 'nothing'} applies"
            assert snapshot(state) == before, "a refused order changed the run"
            return multiple()
        event("placed")
        assert not allowed, f"placed an order that should have been refused ({allowed})"
        assert order.id == oid and order.run == run and order.status is Status.HELD
        assert (order.start, order.end, order.seat_class) == (start, end, seat_class)
        assert order.origin == TRAIN.stops[start].station and order.destination == TRAIN.stops[end].station
        assert order.hold_until == min(self.now + HOLD_S, order.departs) and order.created == self.now
        assert [t.id_no for t in order.tickets] == ids
        seats = [t.seat_index for t in order.tickets]
        assert len(set(seats)) == len(seats) and set(seats) <= set(free)
        price = TT.fare(TRAIN, seat_class, start, end)
        for t in order.tickets:
            label = TRAIN.seats[seat_class][t.seat_index]
            assert (t.coach, t.seat, t.price) == (label.coach, label.seat, price)
        self.orders[oid] = order
        return oid

    @rule(oid=order_ids, event=st.sampled_from(EVENTS))
    def change(self, oid: str, event: str) -> None:
        o = self.orders[oid]
        state = self.states[o.run]
        before, order_before = snapshot(state), ENCODE.encode(o)
        fields: dict[str, object] = {}
        if event == "refund" and o.status is Status.PAID:
            try:
                fee = sum(refund_fee(t.price, o.departs, self.now) for t in o.tickets)
            except Refusal as r:
                assert r.code == "order_not_refundable_after_departure"
                assert self.now >= o.departs
                return
            fields = {"refund": o.price - fee, "fee": fee}
        try:
            new = change_status(state, o, event, self.now, **fields)
        except Refusal as r:
            note_event(f"{event} refused")
            assert (o.status, event) not in TRANSITIONS
            assert r.code == REFUSED[event]
            assert snapshot(state) == before, "a refused transition changed the run"
            assert ENCODE.encode(o) == order_before
            return
        note_event(f"{event} accepted")
        assert (o.status, event) in TRANSITIONS, f"{o.status} accepted {event}"
        assert new.status is TRANSITIONS[(o.status, event)]
        assert ENCODE.encode(o) == order_before, "change_status mutated the order it was given"
        assert new.hold_until is None
        assert new.tickets == o.tickets and new.id == o.id
        if event == "refund":
            assert new.refund == fields["refund"] and new.fee == fields["fee"]
        if new.status in LIVE:
            assert snapshot(state) == before, "a live-to-live transition moved seats"
        self.orders[oid] = new

    @rule()
    def sweep(self) -> None:
        """Expire every lapsed hold, as the service's sweeper does."""
        for oid, o in list(self.orders.items()):
            if hold_lapsed(o, self.now):
                assert o.hold_until is not None and self.now >= o.hold_until
                self.orders[oid] = change_status(self.states[o.run], o, "expire", self.now)

    @rule(seconds=st.one_of(st.integers(0, 3600), st.integers(3600, 36 * 3600)))
    def tick(self, seconds: int) -> None:
        self.now += seconds

    @rule(
        date=st.sampled_from(DATES),
        ids=st.lists(st.sampled_from(POOL), min_size=1, max_size=5, unique=True),
        seat_class=st.sampled_from(CLASSES),
    )
    def place_on_a_discarded_copy(self, date: str, ids: list[str], seat_class: str) -> None:
        """copy() is deep: selling on or releasing from a copy must not leak into the original."""
        state = self.states[f"T1@{date}"]
        before = snapshot(state)
        scratch = state.copy()
        assert snapshot(scratch) == before
        with contextlib.suppress(Refusal):
            place_order(
                scratch, LAYOUTS, TT, order_id="SCRATCH", user=9, start=0, end=LEGS, seat_class=seat_class,
                passengers=[Passenger("x", p) for p in ids], letters=[], now=self.now,
                departs=departs(date, 0), hold_s=HOLD_S,
            )
        for o in self.run_orders(state.run):
            if o.live:
                change_status(scratch, o, "cancel" if o.status is Status.HELD else "refund", self.now)
        assert snapshot(state) == before, "changing a copy changed the original"

    # --- invariants --------------------------------------------------------------------------
    @invariant()
    def maps_are_the_fold_of_live_orders(self) -> None:
        for run, state in self.states.items():
            maps, overlaps = fold(TRAIN, self.run_orders(run))
            assert overlaps == [], f"seat-segments held twice: {overlaps}"
            assert {c: legs_of(m) for c, m in state.maps.items()} == maps

    @invariant()
    def seats_to_choose_from_follow_the_maps(self) -> None:
        # the writer's other shape of each map, kept in step by occupy and release
        for state in self.states.values():
            for c, kept in state.free.items():
                assert kept.legs == FreeSeats(state.maps[c], LAYOUTS(TRAIN, c), LEGS).legs, c

    @invariant()
    def sold_plus_free_is_capacity(self) -> None:
        for run, state in self.states.items():
            live = [o for o in self.run_orders(run) if o.live]
            for c, seats in TRAIN.seats.items():
                for leg in range(LEGS):
                    sold = sum(len(o.tickets) for o in live if o.seat_class == c and o.mask >> leg & 1)
                    assert sold + available(state.maps[c], 1 << leg) == len(seats), (run, c, leg)

    @invariant()
    def passenger_index_is_derived_from_live_orders(self) -> None:
        for run, state in self.states.items():
            expected: dict[str, dict[str, int]] = {}
            for o in self.run_orders(run):
                if o.live:
                    for t in o.tickets:
                        expected.setdefault(t.id_no, {})[o.id] = o.mask
            assert state.passengers == expected
            for held in expected.values():
                masks = list(held.values())
                for x, y in itertools.combinations(masks, 2):
                    assert not x & y, "one passenger holds overlapping legs on one run"


RunMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRunMachine = RunMachine.TestCase


# --- every (status, event) pair on a real run state --------------------------------------------
PATH_TO = {
    Status.HELD: [],
    Status.PAID: ["pay"],
    Status.CANCELLED: ["cancel"],
    Status.EXPIRED: ["expire"],
    Status.REFUNDED: ["pay", "refund"],
    Status.CHANGED: ["pay", "change"],
}


def order_in(status: Status) -> tuple[RunState, Order]:
    state = RunState.empty(TRAIN, DATES[0])
    o = place_order(
        state, LAYOUTS, TT, order_id="E1", user=1, start=1, end=3, seat_class="first",
        passengers=[Passenger("张三", POOL[0]), Passenger("李四", POOL[1])], letters=["A"],
        now=CLOCK_START, departs=departs(DATES[0], 1), hold_s=HOLD_S,
    )
    for step in PATH_TO[status]:
        o = change_status(state, o, step, CLOCK_START)
    assert o.status is status
    return state, o


@pytest.mark.parametrize(("status", "event"), list(itertools.product(Status, EVENTS)))
def test_every_status_and_event(status: Status, event: str) -> None:
    state, o = order_in(status)
    before, order_before = snapshot(state), ENCODE.encode(o)
    if (status, event) not in TRANSITIONS:
        with pytest.raises(Refusal) as e:
            change_status(state, o, event, CLOCK_START)
        assert e.value.code == REFUSED[event]
        assert snapshot(state) == before
        assert ENCODE.encode(o) == order_before
        return
    new = change_status(state, o, event, CLOCK_START)
    assert new.status is TRANSITIONS[(status, event)]
    assert ENCODE.encode(o) == order_before
    if new.status in LIVE:
        assert snapshot(state) == before
    else:
        assert state.passengers == {}
        assert all(x == 0 for m in state.maps.values() for x in legs_of(m))


def test_refused_order_for_a_class_the_train_lacks_changes_nothing() -> None:
    only_second = Train("S1", "x", TRAIN.stops, (Coach(1, "second", 1),))
    state = RunState.empty(only_second, DATES[0])
    before = snapshot(state)
    with pytest.raises(Refusal) as e:
        place_order(
            state, Layouts(), TT, order_id="E1", user=1, start=0, end=2, seat_class="business",
            passengers=[Passenger("a", POOL[0])], letters=[], now=CLOCK_START, departs=CLOCK_START + 1,
            hold_s=HOLD_S,
        )
    assert e.value.code == "sold_out"
    assert snapshot(state) == before


def test_same_passenger_may_ride_disjoint_legs_and_other_runs() -> None:
    a, b = RunState.empty(TRAIN, DATES[0]), RunState.empty(TRAIN, DATES[1])
    p = [Passenger("张三", POOL[0])]
    kw = {"seat_class": "second", "letters": (), "now": CLOCK_START, "departs": CLOCK_START + 86400, "hold_s": HOLD_S}
    place_order(a, LAYOUTS, TT, order_id="E1", user=1, start=0, end=2, passengers=p, **kw)  # type: ignore[arg-type]
    place_order(a, LAYOUTS, TT, order_id="E2", user=1, start=2, end=4, passengers=p, **kw)  # type: ignore[arg-type]
    place_order(b, LAYOUTS, TT, order_id="E3", user=1, start=0, end=4, passengers=p, **kw)  # type: ignore[arg-type]
    with pytest.raises(Refusal) as e:
        place_order(a, LAYOUTS, TT, order_id="E4", user=1, start=1, end=3, passengers=p, **kw)  # type: ignore[arg-type]
    assert e.value.code == "passenger_already_booked_on_this_run"
    assert a.passengers == {POOL[0]: {"E1": 0b0011, "E2": 0b1100}}


def test_hold_lapses_exactly_at_hold_until() -> None:
    _, o = order_in(Status.HELD)
    assert o.hold_until == CLOCK_START + HOLD_S
    assert not hold_lapsed(o, CLOCK_START + HOLD_S - 0.001)
    assert hold_lapsed(o, CLOCK_START + HOLD_S)
    _, paid = order_in(Status.PAID)
    assert not hold_lapsed(paid, CLOCK_START + 10 * HOLD_S)


def test_the_tiny_train_is_as_assumed() -> None:
    assert len(TRAIN.stops) == 5 and isinstance(TRAIN.stops[0], Stop)
    assert {c: len(s) for c, s in TRAIN.seats.items()} == {"business": 6, "first": 8, "second": 20}


def test_a_hold_never_outlasts_the_train() -> None:
    """Ten minutes before departure a hold lasts ten minutes, not thirty: no paying after it left."""
    state = RunState.empty(TRAIN, DATES[0])
    leaves = departs(DATES[0], 0)
    order = place_order(
        state, LAYOUTS, TT, order_id="E1", user=1, start=0, end=1, seat_class="second",
        passengers=[Passenger("a", POOL[0])], letters=[], now=leaves - 600, departs=leaves, hold_s=HOLD_S,
    )
    assert order.hold_until == leaves
