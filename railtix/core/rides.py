"""Naming a ride: station, train and date checks, and the search that lists rides with seats.

Everything a buy or a search must check before it can touch an inventory is here, against the
timetable and the ``now`` passed in, so the same checks answer the same way in every transport.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from railtix.core.errors import Refusal
from railtix.core.inventory import RunState, run_id
from railtix.core.seats import available
from railtix.core.timetable import CST, SEAT_CLASSES, Station, Timetable, Train, ride_mask


def today(now: float) -> dt.date:
    return dt.datetime.fromtimestamp(now, CST).date()


def parse_date(text: str, now: float, presale_days: int) -> dt.date:
    """A sale date: today (China Standard Time) up to ``presale_days`` - 1 days ahead."""
    try:
        if len(text) != 10 or text[4] != "-" or text[7] != "-":
            raise ValueError(text)
        day = dt.date.fromisoformat(text)
    except (ValueError, TypeError):
        raise Refusal("invalid_date", f"{text!r} is not a date like 2026-12-01") from None
    first = today(now)
    if day < first:
        raise Refusal("date_in_past", f"{day} is in the past; today is {first}")
    last = first + dt.timedelta(days=presale_days - 1)
    if day > last:
        raise Refusal("date_not_on_sale", f"{day} is not on sale yet; sales run to {last}")
    return day


def station(timetable: Timetable, text: str) -> Station:
    found = timetable.resolve_station(text)
    if found is None:
        city = timetable.city_stations(text)
        if len(city) > 1:
            named = ", ".join(f"{s.name} ({s.code})" for s in city)
            raise Refusal("unknown_station", f"{text.strip()!r} has {len(city)} stations: {named}; name one")
        hints = timetable.suggest_stations(text)
        hint = f"; did you mean {', '.join(hints)}?" if hints else ""
        raise Refusal("unknown_station", f"no station called {text!r}{hint}")
    return found


def train(timetable: Timetable, number: str) -> Train:
    found = timetable.train_by_number.get(number.strip().upper())
    if found is None:
        raise Refusal("unknown_train", f"no train numbered {number!r}")
    return found


@dataclass(frozen=True, slots=True)
class Ride:
    train: Train
    date: str  #: ISO
    start: int
    end: int
    departs: float  #: epoch seconds of departure from the boarding station
    #: the legs it rides, as a seat map's bits; made once (a rush's gate asks for it per buy)
    mask: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mask", ride_mask(self.start, self.end))

    @property
    def run(self) -> str:
        return run_id(self.train.number, self.date)


def ride(
    timetable: Timetable, number: str, date: str, origin: str, destination: str, now: float, presale_days: int
) -> Ride:
    """A ride that can be sold now, or the Refusal that says why not."""
    t = train(timetable, number)
    a, b = station(timetable, origin), station(timetable, destination)
    day = parse_date(date, now, presale_days)
    i, j = t.stop_index.get(a.code), t.stop_index.get(b.code)
    if i is None or j is None or i >= j:
        raise Refusal(
            "train_does_not_stop_there", f"{t.number} does not run from {a.name} to {b.name}"
        )
    departs = t.depart_at(day, i).timestamp()
    if departs <= now:
        raise Refusal("train_departed", f"{t.number} left {a.name} at {t.depart_at(day, i):%H:%M}")
    return Ride(t, day.isoformat(), i, j, departs)


class RideMemo:
    """``ride`` with memory: a ride checked once stays sellable until its train leaves or the day
    turns (the sale window moves at midnight), so a rush's thousands of buys of one ride are
    checked once. Refusals are not remembered: they are rare and must say why each time.
    """

    def __init__(self, timetable: Timetable, presale_days: int, size_max: int) -> None:
        self.timetable = timetable
        self.presale_days = presale_days
        self.size_max = size_max
        self._found: dict[tuple[str, str, str, str], tuple[Ride, float]] = {}

    def __call__(self, number: str, date: str, origin: str, destination: str, now: float) -> Ride:
        key = (number, date, origin, destination)
        hit = self._found.get(key)
        if hit is not None and now < hit[1]:
            return hit[0]
        r = ride(self.timetable, number, date, origin, destination, now, self.presale_days)
        if len(self._found) >= self.size_max:
            self._found.clear()
        self._found[key] = (r, min(r.departs, day_ends(now)))
        return r


def day_ends(now: float) -> float:
    """The epoch second at which today (China Standard Time) ends."""
    tomorrow = today(now) + dt.timedelta(days=1)
    return dt.datetime.combine(tomorrow, dt.time(0, 0), CST).timestamp()


def hhmm(minutes: int) -> str:
    """Clock time of a stop; '+1' marks the next day."""
    days, m = divmod(minutes, 1440)
    return f"{m // 60:02d}:{m % 60:02d}" + (f"+{days}" if days else "")


@dataclass(frozen=True, slots=True)
class Route:
    """A train's ride between two stations: what a search shows that never changes."""

    train: Train
    start: int
    end: int
    mask: int
    depart: int  #: minutes after midnight of the run's date
    prices: tuple[tuple[str, int], ...]  #: (class, fen) for each class the train has
    row: dict[str, object]  #: train, from, to, depart, arrive, minutes


def routes(timetable: Timetable, a: str, b: str) -> tuple[Route, ...]:
    """Every train from station ``a`` to station ``b``, by departure; memoised per timetable."""
    memo = timetable.route_memo
    found = memo.get((a, b))
    if found is None:
        out = []
        for t in timetable.trains_at.get(a, ()):
            i, j = t.stop_index[a], t.stop_index.get(b)
            if j is None or j <= i:
                continue
            depart, arrive = t.stops[i].depart, t.stops[j].arrive
            assert depart is not None and arrive is not None
            prices = tuple((c, timetable.fare(t, c, i, j)) for c in SEAT_CLASSES if c in t.seats)
            row = {
                "train": t.number, "from": a, "to": b, "depart": hhmm(depart), "arrive": hhmm(arrive),
                "minutes": arrive - depart,
            }
            out.append(Route(t, i, j, ride_mask(i, j), depart, prices, row))
        out.sort(key=lambda r: (r.depart, r.train.number))
        found = memo[(a, b)] = tuple(out)
    return found


def seats_left(state: RunState, seat_class: str, mask: int) -> int:
    """Free seats of a class for a ride, remembered on read-only views of a run. Counted on
    the class's FreeSeats where the writer published one with the view, else on the map."""
    memo = state.memo
    key = (seat_class, mask)
    left = None if memo is None else memo.get(key)
    if left is None:
        free = state.free.get(seat_class)
        if free is not None:
            left = free.count((mask & -mask).bit_length() - 1, mask.bit_length())
        else:
            left = available(state.maps[seat_class], mask)
        if memo is not None:
            memo[key] = left
    return left


def listing(state: RunState, route: Route, departed: bool) -> dict[str, object]:
    """A search's row for one train: the route, whether it has left, and per class the seats
    left (remembered on read-only views) and the price."""
    row = dict(route.row)
    row["departed"] = departed
    row["classes"] = [
        {"class": c, "left": seats_left(state, c, route.mask), "price": price} for c, price in route.prices
    ]
    return row


@dataclass(frozen=True, slots=True)
class Found:
    """What a search shows, before it is turned into rows: the sale date, the stations as
    resolved from what was asked, and per train from one to the other by departure its run's
    committed state, its route, and whether it has left (12306 lists departed trains too,
    greyed out)."""

    date: str
    origin: Station
    destination: Station
    trains: list[tuple[RunState, Route, bool]]


def search_runs(
    timetable: Timetable,
    origin: str,
    destination: str,
    date: str,
    now: float,
    presale_days: int,
    run_states: Callable[[list[tuple[Train, str]]], list[RunState]],
) -> Found:
    """The trains from ``origin`` to ``destination`` on ``date``; ``run_states`` gives the
    committed inventory of the runs it is asked for, in that order."""
    a, b = station(timetable, origin), station(timetable, destination)
    if a.code == b.code:
        raise Refusal("invalid_field", f"from and to are both {a.name}")
    day = parse_date(date, now, presale_days)
    iso = day.isoformat()
    midnight = dt.datetime.combine(day, dt.time(0, 0), CST).timestamp()
    found = routes(timetable, a.code, b.code)
    states = run_states([(r.train, iso) for r in found])
    trains = [(state, r, midnight + r.depart * 60 <= now) for r, state in zip(found, states, strict=True)]
    return Found(iso, a, b, trains)
