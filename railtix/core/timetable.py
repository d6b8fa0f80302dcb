"""Stations, trains, coaches and fares: what a timetable holds, and how a ride is named.

A train has ordered stops S0..Sk; leg i joins Si and Si+1. A ride from stop i to stop j needs
legs i..j-1, which is the bit mask ``((1 << j) - 1) ^ ((1 << i) - 1)``. A *run* is a train on one
date. Times are minutes after midnight (China Standard Time) of the run's date and may pass 1440
for trains that run overnight.

The timetable is a msgspec Struct tree so that ``railtix timetable export/import`` is a plain
JSON round trip with validation for free.
"""

from __future__ import annotations

import datetime as dt
import difflib
from functools import cached_property
from typing import Any

import msgspec

#: China has one time zone and no daylight saving time.
CST = dt.timezone(dt.timedelta(hours=8), "CST")

SEAT_CLASSES = ("business", "first", "second")

#: Seat letters per class, as 12306 prints them: A and F are windows, C and D aisles.
LETTERS_BY_CLASS = {"business": "ACF", "first": "ACDF", "second": "ABCDF"}
WINDOW_LETTERS = frozenset("AF")
AISLE_LETTERS = frozenset("CD")

#: Legs fit in one 64-bit mask.
stops_per_train_max = 64

#: Seats in one row of a coach. 12306's coaches have at most five (A B C D F); the writer keeps a
#: row's free seats in one byte when it chooses seats (``seats.FreeSeats``).
row_seats_max = 8


class Station(msgspec.Struct, frozen=True):
    code: str  #: 12306 telegraph code, three capital letters (VNP is Beijing South).
    name: str  #: English name, e.g. "Beijing South".
    name_zh: str  #: Chinese name, e.g. "北京南".


class Stop(msgspec.Struct, frozen=True):
    station: str  #: telegraph code
    arrive: int | None  #: minutes after midnight of the run's date; None at the origin
    depart: int | None  #: None at the terminus
    km: int  #: distance from the origin


class Coach(msgspec.Struct, frozen=True):
    number: int
    seat_class: str = msgspec.field(name="class")
    rows: int = 0
    letters: str = ""  #: defaults to the class's usual layout


class Train(msgspec.Struct, frozen=True, dict=True):
    number: str  #: e.g. "G1"
    line: str  #: the line it runs on, e.g. "Beijing–Shanghai HSR"
    stops: tuple[Stop, ...]
    coaches: tuple[Coach, ...]

    @cached_property
    def stop_index(self) -> dict[str, int]:
        return {s.station: i for i, s in enumerate(self.stops)}

    @cached_property
    def seats(self) -> dict[str, tuple[SeatLabel, ...]]:
        """Seats of each class in allocation order: coach by coach, row by row, letter by letter."""
        out: dict[str, list[SeatLabel]] = {c: [] for c in SEAT_CLASSES}
        for coach in self.coaches:
            letters = coach.letters or LETTERS_BY_CLASS[coach.seat_class]
            for row in range(1, coach.rows + 1):
                for letter in letters:
                    out[coach.seat_class].append(SeatLabel(coach.number, row, letter))
        return {c: tuple(v) for c, v in out.items() if v}

    def depart_at(self, date: dt.date, stop: int) -> dt.datetime:
        minutes = self.stops[stop].depart
        assert minutes is not None, "no departure from the terminus"
        return dt.datetime.combine(date, dt.time(0, 0), CST) + dt.timedelta(minutes=minutes)



class SeatLabel(msgspec.Struct, frozen=True, array_like=True):
    coach: int
    row: int
    letter: str

    @property
    def seat(self) -> str:
        return f"{self.row:02d}{self.letter}"


class Timetable(msgspec.Struct, dict=True):
    """Everything a railtix server sells. ``fare_per_km`` is in fen per kilometre per class."""

    stations: tuple[Station, ...]
    trains: tuple[Train, ...]
    fare_per_km: dict[str, float] = msgspec.field(
        default_factory=lambda: {"business": 132.7, "first": 70.8, "second": 42.0}
    )

    @cached_property
    def station_by_code(self) -> dict[str, Station]:
        return {s.code: s for s in self.stations}

    @cached_property
    def train_by_number(self) -> dict[str, Train]:
        return {t.number: t for t in self.trains}

    @cached_property
    def trains_at(self) -> dict[str, tuple[Train, ...]]:
        """Trains that stop at each station, for search."""
        out: dict[str, list[Train]] = {}
        for t in self.trains:
            for s in t.stops:
                out.setdefault(s.station, []).append(t)
        return {k: tuple(v) for k, v in out.items()}

    @cached_property
    def route_memo(self) -> dict[tuple[str, str], tuple[Any, ...]]:
        """Rides between two stations, filled by ``rides.routes`` (derived, never stored)."""
        return {}

    @cached_property
    def _names(self) -> dict[str, str]:
        names: dict[str, str] = {}
        for s in self.stations:
            for alias in (s.code, s.name, s.name_zh):
                names[alias.casefold()] = s.code
        return names

    @cached_property
    def _cities(self) -> dict[str, tuple[str, ...]]:
        """Stations by the leading words of their English name (``shanghai`` for Shanghai
        Hongqiao) and the leading characters of their Chinese name (``上海``), as people name
        a city: a name that leads to one station names it."""
        out: dict[str, list[str]] = {}
        for s in self.stations:
            words = s.name.casefold().split()
            leads = {" ".join(words[:k]) for k in range(1, len(words))}
            leads |= {s.name_zh[:k] for k in range(2, len(s.name_zh))}
            for lead in leads:
                out.setdefault(lead, []).append(s.code)
        return {k: tuple(v) for k, v in out.items()}

    def resolve_station(self, text: str) -> Station | None:
        """A station by telegraph code, English name or Chinese name, ignoring case; or by a
        city's name when only one station of the timetable is in that city."""
        key = text.strip().casefold()
        code = self._names.get(key)
        if code is None:
            in_city = self._cities.get(key, ())
            code = in_city[0] if len(in_city) == 1 else None
        return self.station_by_code[code] if code else None

    def city_stations(self, text: str) -> list[Station]:
        """The stations whose names begin with the name of this city (``Beijing``)."""
        return [self.station_by_code[c] for c in self._cities.get(text.strip().casefold(), ())]

    def suggest_stations(self, text: str, n: int = 3) -> list[str]:
        """Closest station names for a misspelt one, as ``"Beijing South (VNP)"``."""
        found = difflib.get_close_matches(text.strip().casefold(), list(self._names), n=n * 3, cutoff=0.5)
        out: list[str] = []
        for alias in found:
            s = self.station_by_code[self._names[alias]]
            label = f"{s.name} ({s.code})"
            if label not in out:
                out.append(label)
        return out[:n]

    def fare(self, train: Train, seat_class: str, start: int, end: int) -> int:
        """Price of one ticket in fen, rounded to half a yuan as 12306 rounds (2.5 jiao up)."""
        km = train.stops[end].km - train.stops[start].km
        return round_half_yuan(km * self.fare_per_km[seat_class])


def round_half_yuan(fen: float) -> int:
    """Round an amount in fen to the nearest 50 fen; 25 and above rounds up."""
    whole = int(fen)
    units, rest = divmod(whole, 50)
    return (units + (1 if rest >= 25 else 0)) * 50


def ride_mask(start: int, end: int) -> int:
    """Legs start..end-1 as bits."""
    assert 0 <= start < end <= stops_per_train_max
    return ((1 << end) - 1) ^ ((1 << start) - 1)


def validate(timetable: Timetable) -> list[str]:
    """Problems that make a timetable unusable, as sentences; empty when it is sound."""
    problems: list[str] = []
    codes = timetable.station_by_code
    if not timetable.trains:
        problems.append("it has no trains: a server would have nothing to sell")
    if len(codes) != len(timetable.stations):
        problems.append("two stations share a telegraph code")
    if len(timetable.train_by_number) != len(timetable.trains):
        problems.append("two trains share a number")
    for t in timetable.trains:
        if not 2 <= len(t.stops) <= stops_per_train_max:
            problems.append(f"{t.number}: needs 2..{stops_per_train_max} stops")
            continue
        if len(t.stop_index) != len(t.stops):
            problems.append(f"{t.number}: stops at one station twice")
        for s in t.stops:
            if s.station not in codes:
                problems.append(f"{t.number}: unknown station {s.station}")
        times = []
        for i, s in enumerate(t.stops):
            if i > 0:
                if s.arrive is None:
                    problems.append(f"{t.number}: stop {i} has no arrival")
                else:
                    times.append(s.arrive)
            if i < len(t.stops) - 1:
                if s.depart is None:
                    problems.append(f"{t.number}: stop {i} has no departure")
                else:
                    times.append(s.depart)
        if times != sorted(times):
            problems.append(f"{t.number}: times go backwards")
        kms = [s.km for s in t.stops]
        if kms != sorted(kms) or len(set(kms)) != len(kms):
            problems.append(f"{t.number}: distances must increase")
        numbers = [c.number for c in t.coaches]
        if len(set(numbers)) != len(numbers):
            problems.append(f"{t.number}: two coaches share a number")
        for c in t.coaches:
            if c.seat_class not in SEAT_CLASSES:
                problems.append(f"{t.number}: coach {c.number} has unknown class {c.seat_class}")
            if c.rows < 1:
                problems.append(f"{t.number}: coach {c.number} has no rows")
            if c.letters and not (
                len(c.letters) <= row_seats_max and len(set(c.letters)) == len(c.letters)
                and c.letters.isascii() and c.letters.isalpha() and c.letters.isupper()
            ):
                problems.append(
                    f"{t.number}: coach {c.number}'s seat letters must be 1 to {row_seats_max} different capital letters"
                )
        if not t.coaches:
            problems.append(f"{t.number}: has no coaches")
    for cls in SEAT_CLASSES:
        if cls not in timetable.fare_per_km:
            problems.append(f"no fare for class {cls}")
    return problems
