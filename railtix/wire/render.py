"""Domain objects as the JSON objects of protocol v1 (for any transport: TCP now, HTTP as planned)."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any

import msgspec

from railtix.core.inventory import RunState
from railtix.core.orders import Order, masked
from railtix.core.rides import Route, listing
from railtix.core.timetable import CST, Station, Timetable

_encoder = msgspec.json.Encoder()


def when(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 in China Standard Time, to the second."""
    return None if ts is None else _when(ts)


@functools.lru_cache(maxsize=4096)
def _when(ts: float) -> str:
    # every order of a batch shares its created and hold_until times, and departures repeat
    return dt.datetime.fromtimestamp(ts, CST).isoformat(timespec="seconds")


class _Ticket(msgspec.Struct):
    passenger: str
    id_no: str
    coach: int
    seat: str
    price: int


class _Order(msgspec.Struct, omit_defaults=True, rename={"from_": "from", "class_": "class"}):
    """An order as protocol v1 shows it. A Struct rather than a dict: the writer renders one
    for every purchase and payment, and a dict cost three times as much to build and encode.
    The fields are in the protocol's order; ``hold_until`` only while held, ``refund`` and
    ``fee`` only once refunded."""

    order: str
    status: str
    train: str
    date: str
    from_: str
    to: str
    class_: str
    departs: str | None
    tickets: list[_Ticket]
    price: int
    created: str | None
    hold_until: str | None = None
    refund: int | None = None
    fee: int | None = None


class _OkOrder(msgspec.Struct):
    ok: bool
    order: _Order


def order(o: Order) -> _Order:
    # the writer renders every order it makes or changes: one pass over the tickets for them
    # and their price, and the status as it is (a StrEnum is encoded as its value)
    tickets, price = [], 0
    for t in o.tickets:
        tickets.append(_Ticket(t.name, masked(t.id_no), t.coach, t.seat, t.price))
        price += t.price
    hold = o.hold_until
    return _Order(
        o.id, o.status, o.train, o.date, o.origin, o.destination, o.seat_class, _when(o.departs),
        tickets, price, _when(o.created), None if hold is None else _when(hold),
        o.refund, o.fee if o.refund is not None else None,
    )


def order_body(o: Order) -> bytes:
    """The ok reply of one order, without its id (what ``ok_body({"order": order(o)})`` gives)."""
    return _encoder.encode(_OkOrder(True, order(o)))


def station(s: Station) -> dict[str, str]:
    return {"code": s.code, "name": s.name, "name_zh": s.name_zh}


def train_stops(timetable: Timetable, number: str, hhmm: Any) -> list[dict[str, Any]]:
    t = timetable.train_by_number[number]
    rows = []
    for s in t.stops:
        st = timetable.station_by_code[s.station]
        rows.append(
            {
                "station": s.station,
                "name": st.name,
                "name_zh": st.name_zh,
                "arrive": hhmm(s.arrive) if s.arrive is not None else None,
                "depart": hhmm(s.depart) if s.depart is not None else None,
                "km": s.km,
            }
        )
    return rows


def search_rows(found: Sequence[tuple[RunState, Route, bool]]) -> list[msgspec.Raw]:
    """A search's rows as JSON, each encoded once per commit of its run.

    A row is remembered on the run's read-only view (which the next commit to that run
    replaces), so the many searches that show one train between two commits share its bytes:
    in 12306's mix of nine searches to one purchase, encoding the same rows again was a sixth
    of the event loop's time.
    """
    out = []
    for state, route, departed in found:
        memo = state.memo
        key = ("row", route.start, route.end, departed)
        raw = None if memo is None else memo.get(key)
        if raw is None:
            raw = msgspec.Raw(_encoder.encode(listing(state, route, departed)))
            if memo is not None:
                memo[key] = raw
        out.append(raw)
    return out
