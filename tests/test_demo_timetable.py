"""The demo timetable: sound, deterministic, real-looking, and interesting enough to sell from."""

from __future__ import annotations

import re
import time
from itertools import pairwise

import msgspec
import pytest

from railtix.core.timetable import SEAT_CLASSES, Timetable, Train, validate
from railtix.demo.timetable import demo_stats, demo_timetable


@pytest.fixture(scope="module")
def tt() -> Timetable:
    return demo_timetable()


def _codes(train: Train) -> tuple[str, ...]:
    return tuple(s.station for s in train.stops)


def test_validates(tt: Timetable) -> None:
    assert validate(tt) == []


@pytest.mark.parametrize("letters", ["ABCDEFGHJ", "AAB", "ab", "A1", "ÄB"])
def test_a_coach_with_unusable_seat_letters_is_refused(tt: Timetable, letters: str) -> None:
    # a row is at most eight seats, each with its own capital letter: the writer keeps a row in a byte
    train = tt.trains[0]
    coaches = (msgspec.structs.replace(train.coaches[0], letters=letters), *train.coaches[1:])
    bad = msgspec.structs.replace(tt, trains=(msgspec.structs.replace(train, coaches=coaches), *tt.trains[1:]))
    assert validate(bad) == [f"{train.number}: coach {coaches[0].number}'s seat letters must be 1 to 8 different capital letters"]
    good = (msgspec.structs.replace(train.coaches[0], letters="ABCDEFGH"), *train.coaches[1:])
    assert validate(msgspec.structs.replace(tt, trains=(msgspec.structs.replace(train, coaches=good), *tt.trains[1:]))) == []


def test_deterministic(tt: Timetable) -> None:
    assert msgspec.json.encode(demo_timetable()) == msgspec.json.encode(tt)
    assert msgspec.json.encode(demo_timetable()) == msgspec.json.encode(demo_timetable())


def test_json_round_trip(tt: Timetable) -> None:
    assert msgspec.json.decode(msgspec.json.encode(tt), type=Timetable) == tt


def test_builds_fast() -> None:
    start = time.perf_counter()
    demo_timetable()
    assert time.perf_counter() - start < 1.0


def test_size(tt: Timetable) -> None:
    assert len(tt.trains) >= 100
    lines = {t.line for t in tt.trains}
    assert len(lines) >= 5
    beijing_shanghai = [t for t in tt.trains if t.line == "Beijing–Shanghai HSR"]
    assert len(beijing_shanghai) >= 40


def test_stats(tt: Timetable) -> None:
    stats = demo_stats(tt)
    assert stats["stations"] == len(tt.stations)
    assert stats["trains"] == len(tt.trains)
    assert stats["lines"] >= 5
    assert stats["seats"] == sum(len(s) for t in tt.trains for s in t.seats.values())


def test_station_codes(tt: Timetable) -> None:
    codes = [s.code for s in tt.stations]
    assert len(codes) == len(set(codes))
    assert all(re.fullmatch(r"[A-Z]{3}", c) for c in codes)
    names = [s.name for s in tt.stations] + [s.name_zh for s in tt.stations]
    assert len(names) == len(set(names)), "a name would resolve to two stations"


def test_termini_of_beijing_shanghai(tt: Timetable) -> None:
    vnp = tt.station_by_code["VNP"]
    aoh = tt.station_by_code["AOH"]
    assert (vnp.name, vnp.name_zh) == ("Beijing South", "北京南")
    assert (aoh.name, aoh.name_zh) == ("Shanghai Hongqiao", "上海虹桥")
    assert tt.resolve_station("上海虹桥") == aoh
    assert tt.resolve_station("beijing south") == vnp


def test_a_city_with_one_station_names_it_and_one_with_several_is_asked_about(tt: Timetable) -> None:
    from railtix.core import rides
    from railtix.core.errors import Refusal

    aoh = tt.station_by_code["AOH"]
    assert tt.resolve_station(" Shanghai ") == aoh
    assert tt.resolve_station("上海") == aoh
    assert tt.resolve_station("Beijing") is None  # South, West and Chaoyang
    with pytest.raises(Refusal) as e:
        rides.station(tt, "北京")
    assert e.value.code == "unknown_station"
    assert "has 3 stations: Beijing South (VNP), Beijing West (BXP), Beijing Chaoyang (IFP)" in e.value.message
    assert tt.resolve_station("Shang") is None  # a city is named by whole words


def test_shared_stations_appear_once(tt: Timetable) -> None:
    lines_at: dict[str, set[str]] = {}
    for t in tt.trains:
        for s in t.stops:
            lines_at.setdefault(s.station, set()).add(t.line)
    assert len(lines_at["AOH"]) >= 2
    assert len(lines_at["IZQ"]) >= 2
    assert [s.code for s in tt.stations].count("AOH") == 1
    assert [s.code for s in tt.stations].count("IZQ") == 1


def test_every_station_is_served(tt: Timetable) -> None:
    assert set(tt.trains_at) == set(tt.station_by_code)


def test_g1(tt: Timetable) -> None:
    g1 = tt.train_by_number["G1"]
    assert _codes(g1) == ("VNP", "JGK", "NKH", "AOH")
    assert g1.stops[0].depart == 420
    assert g1.stops[-1].arrive == 689
    assert g1.stops[-1].km == 1318
    assert len(g1.coaches) == 16


def test_both_directions(tt: Timetable) -> None:
    numbers = set(tt.train_by_number)
    for t in tt.trains:
        n = int(t.number[1:])
        if n % 2:
            back = tt.train_by_number[f"{t.number[0]}{n + 1}"]
            assert _codes(back) == _codes(t)[::-1]
    assert "G2" in numbers
    assert any(n.startswith("D") for n in numbers)


def test_overlapping_patterns_between_beijing_and_shanghai(tt: Timetable) -> None:
    through = [t for t in tt.trains if {"VNP", "AOH"} <= set(t.stop_index)]
    assert len({_codes(t) for t in through}) >= 4
    assert any("NKH" in t.stop_index for t in through)
    assert any("NKH" not in t.stop_index for t in through)
    # Short workings overlap each other and the through trains: Beijing South-Nanjing South and
    # Jinan West-Shanghai Hongqiao both cover Jinan West-Nanjing South.
    to_nanjing = [t for t in tt.trains if _codes(t)[:1] == ("VNP",) and _codes(t)[-1:] == ("NKH",)]
    from_jinan = [t for t in tt.trains if _codes(t)[:1] == ("JGK",) and _codes(t)[-1:] == ("AOH",)]
    assert to_nanjing and from_jinan
    shared = set(_codes(to_nanjing[0])) & set(_codes(from_jinan[0]))
    assert {"JGK", "NKH"} <= shared


def test_times_and_speeds(tt: Timetable) -> None:
    departures = []
    for t in tt.trains:
        first, last = t.stops[0], t.stops[-1]
        assert first.arrive is None and first.km == 0
        assert last.depart is None
        assert first.depart is not None and last.arrive is not None
        departures.append(first.depart)
        for s in t.stops[1:-1]:
            assert s.arrive is not None and s.depart is not None
            assert 2 <= s.depart - s.arrive <= 3
        for a, b in pairwise(t.stops):
            assert a.depart is not None and b.arrive is not None
            assert b.arrive > a.depart
            kmh = (b.km - a.km) / (b.arrive - a.depart) * 60
            top = 350 if t.number.startswith("G") else 250
            assert 60 <= kmh <= top, (t.number, a.station, b.station, kmh)
    assert min(departures) <= 6 * 60 + 30
    assert max(departures) >= 19 * 60


def test_coaches(tt: Timetable) -> None:
    for t in tt.trains:
        assert set(t.seats) == set(SEAT_CLASSES), t.number
        assert [c.number for c in t.coaches] == list(range(1, len(t.coaches) + 1))
        assert all(c.letters == "" for c in t.coaches)
        total = sum(len(s) for s in t.seats.values())
        if len(t.coaches) == 8:
            assert 550 <= total <= 600
        else:
            assert len(t.coaches) == 16
            assert 1100 <= total <= 1200
