"""A ride checked once is remembered only while the same check would pass again."""

from __future__ import annotations

import datetime as dt

import pytest

from railtix.core.errors import Refusal
from railtix.core.rides import RideMemo, day_ends, ride
from railtix.core.timetable import CST
from railtix.demo.timetable import demo_timetable

TT = demo_timetable()


def at(day: dt.date, hh: int, mm: int = 0) -> float:
    return dt.datetime.combine(day, dt.time(hh, mm), CST).timestamp()


def test_the_memo_answers_as_ride_does_until_the_train_leaves() -> None:
    today = dt.date(2026, 12, 1)
    memo = RideMemo(TT, presale_days=15, size_max=100)
    now = at(today, 6, 0)  # G1 leaves Beijing South at 07:00
    first = memo("G1", today.isoformat(), "VNP", "AOH", now)
    assert first == ride(TT, "G1", today.isoformat(), "VNP", "AOH", now, 15)
    assert memo("G1", today.isoformat(), "VNP", "AOH", now + 3000) is first
    with pytest.raises(Refusal) as e:
        memo("G1", today.isoformat(), "VNP", "AOH", at(today, 7, 0))
    assert e.value.code == "train_departed"


def test_the_memo_forgets_at_midnight_when_the_sale_window_moves() -> None:
    today = dt.date(2026, 12, 1)
    memo = RideMemo(TT, presale_days=15, size_max=100)
    tomorrow = (today + dt.timedelta(days=1)).isoformat()
    memo("G1", tomorrow, "VNP", "AOH", at(today, 23, 0))
    assert day_ends(at(today, 23, 0)) == at(today + dt.timedelta(days=1), 0, 0)
    # two days later the date is in the past, whatever was remembered the evening before
    with pytest.raises(Refusal) as e:
        memo("G1", tomorrow, "VNP", "AOH", at(today + dt.timedelta(days=2), 6, 0))
    assert e.value.code == "date_in_past"


def test_refusals_are_not_remembered_and_the_memo_stays_bounded() -> None:
    today = dt.date(2026, 12, 1)
    memo = RideMemo(TT, presale_days=15, size_max=3)
    now = at(today, 5, 0)
    with pytest.raises(Refusal):
        memo("G1", today.isoformat(), "AOH", "VNP", now)  # the wrong way
    assert len(memo._found) == 0
    for k in range(1, 6):
        memo("G1", (today + dt.timedelta(days=k)).isoformat(), "VNP", "AOH", now)
        assert len(memo._found) <= 3
