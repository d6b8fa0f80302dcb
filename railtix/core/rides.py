"""Naming a ride: station, train and date checks, and the search that lists rides with seats.

Everything a buy or a search must check before it can touch an inventory is here, against the
timetable and the ``now`` passed in, so the same checks answer the same way in every transport.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

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

    @property
    def run(self) -> str:
        return run_id(self.train.number, self.date)

    @property
    def mask(self) -> int:
        return ride_mask(self.start, self.end)


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


def hhmm(minutes: int) -> str:
    """Clock time of a stop; '+1' marks the next day."""
    days, m = divmod(minutes, 1440)
    return f"{m // 60:02d}:{m % 60:02d}" + (f"+{days}" if days else "")


def search(
    timetable: Timetable,
    origin: str,
    destination: str,
    date: str,
    now: float,
    presale_days: int,
    run_state: Callable[[Train, str], RunState],
) -> list[dict[str, object]]:
    """Trains from origin to destination on date with seats left and price per class.

    ``run_state`` gives the committed inventory of a run. Trains that have already left the
    boarding station are listed too (12306 lists them greyed out) with ``departed: true``.
    """
    a, b = station(timetable, origin), station(timetable, destination)
    day = parse_date(date, now, presale_days)
    iso = day.isoformat()
    rows: list[tuple[int, dict[str, object]]] = []
    for t in timetable.trains_at.get(a.code, ()):
        i, j = t.stop_index[a.code], t.stop_index.get(b.code)
        if j is None or j <= i:
            continue
        state = run_state(t, iso)
        mask = ride_mask(i, j)
        depart_min = t.stops[i].depart
        arrive_min = t.stops[j].arrive
        assert depart_min is not None and arrive_min is not None
        classes = [
            {
                "class": c,
                "left": available(state.maps[c], mask),
                "price": timetable.fare(t, c, i, j),
            }
            for c in SEAT_CLASSES
            if c in state.maps
        ]
        rows.append(
            (
                depart_min,
                {
                    "train": t.number,
                    "from": a.code,
                    "to": b.code,
                    "depart": hhmm(depart_min),
                    "arrive": hhmm(arrive_min),
                    "minutes": arrive_min - depart_min,
                    "departed": t.depart_at(day, i).timestamp() <= now,
                    "classes": classes,
                },
            )
        )
    rows.sort(key=lambda r: (r[0], r[1]["train"]))
    return [r for _, r in rows]
