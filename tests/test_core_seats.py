"""Seat allocation as tables of scenarios, plus properties checked against brute force.

Scenario rows name seats the way a passenger reads them (coach, row, letter) so that a failing
row says which seat went wrong. The properties run allocate on random seat maps and compare
with counts taken one seat at a time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pytest
from conftest import tiny_train
from hypothesis import given, settings
from hypothesis import strategies as st

from railtix.core.seats import (
    SeatLayout,
    allocate,
    available,
    empty_map,
    legs_of,
    map_from_bytes,
    map_to_bytes,
)
from railtix.core.timetable import Coach, Stop, Train, ride_mask

TRAIN = tiny_train()
#: second class of the tiny train: coaches 3 and 4, rows 1-2, letters ABCDF -> 20 seats
SECOND = SeatLayout(TRAIN.seats["second"])
FIRST = SeatLayout(TRAIN.seats["first"])
BUSINESS = SeatLayout(TRAIN.seats["business"])
FULL = ride_mask(0, 4)


def seat(layout: SeatLayout, coach: int, row: int, letter: str) -> int:
    for i, s in enumerate(layout.labels):
        if (s.coach, s.row, s.letter) == (coach, row, letter):
            return i
    raise KeyError((coach, row, letter))


def name(layout: SeatLayout, i: int) -> str:
    s = layout.labels[i]
    return f"{s.coach}-{s.row:02d}{s.letter}"


def seats_of(layout: SeatLayout, spec: str) -> list[int]:
    """'3-1AB 4-2F' -> the indices of coach 3 row 1 A and B, coach 4 row 2 F."""
    out = []
    for part in spec.split():
        coach_row, letters = part[:3], part[3:]
        coach, row = int(coach_row[0]), int(coach_row[2])
        out += [seat(layout, coach, row, letter) for letter in letters]
    return out


def make_map(layout: SeatLayout, sold: dict[str, int]) -> np.ndarray:
    """A seat map where each spec in ``sold`` has those legs sold."""
    occ = empty_map(len(layout))
    for spec, legs in sold.items():
        for i in seats_of(layout, spec):
            occ[i] |= np.uint64(legs)
    return occ


def test_layout_of_the_tiny_train() -> None:
    assert len(SECOND) == 20 and len(FIRST) == 8 and len(BUSINESS) == 6
    assert [name(SECOND, i) for i in range(6)] == ["3-01A", "3-01B", "3-01C", "3-01D", "3-01F", "3-02A"]
    assert sum(letter in "AF" for letter in SECOND.letter_of) == 8
    assert "".join(s.letter for s in BUSINESS.labels[:3]) == "ACF"


# --- scenarios ---------------------------------------------------------------------------------
@dataclass
class Case:
    why: str
    layout: SeatLayout
    sold: dict[str, int]
    start: int
    end: int
    count: int
    letters: list[str] = field(default_factory=list)
    #: exact seats expected (as "coach-rowLetter" names), or None when refused
    expect: list[str] | None = None
    #: or: the chosen seats must all be in one of these rows ("3-1") / coaches ("3")
    same_row: bool = False
    same_coach: bool = False


CASES = [
    Case("a row with exactly enough free seats takes the group", SECOND,
         {"3-1AB": FULL}, 0, 4, 3, expect=["3-01C", "3-01D", "3-01F"]),
    Case("a group of 4 skips a row with only 3 free", SECOND,
         {"3-1AB": FULL}, 0, 4, 4, expect=["3-02A", "3-02B", "3-02C", "3-02D"]),
    Case("a group of 5 takes a whole free row", SECOND,
         {"3-1A": FULL, "3-2F": FULL}, 0, 4, 5, expect=["4-01A", "4-01B", "4-01C", "4-01D", "4-01F"]),
    Case("a group of 2 sits in one row", SECOND, {"3-1ACF 3-2BD": FULL}, 0, 4, 2, same_row=True),
    Case("a group of 2 goes to the only row with two free", SECOND,
         {"3-1ABCD 3-2ABCD 4-1ABCD": FULL}, 0, 4, 2, expect=["4-02A", "4-02B"]),
    Case("no row has room for 5: one coach", SECOND,
         {"3-1A 3-2A 4-1A 4-2A": FULL, "3-1B 3-2B": FULL}, 0, 4, 5, same_coach=True),
    Case("no row and no coach has room for 4: seats anywhere", SECOND,
         {"3-1ABCD 3-2ABCD 4-1ABCD 4-2ABC": FULL}, 0, 4, 4,
         expect=["3-01F", "3-02F", "4-01F", "4-02D"]),
    Case("seats sold on other legs are free for this ride", SECOND,
         {"3-1ABCDF 3-2ABCDF 4-1ABCDF 4-2ABCD": 0b0011}, 2, 4, 5, same_row=True),
    Case("exactly as many free as asked", BUSINESS,
         {"1-1ACF 1-2A": FULL}, 0, 4, 2, expect=["1-02C", "1-02F"]),
    Case("one fewer free than asked: refused", BUSINESS, {"1-1ACF 1-2AC": FULL}, 0, 4, 2, expect=None),
    Case("all sold: refused", FIRST, {"2-1ACDF 2-2ACDF": 0b0100}, 1, 3, 1, expect=None),
    Case("sold on one leg of the ride is not free", FIRST, {"2-1ACDF 2-2ACD": 0b1000}, 0, 4, 1,
         expect=["2-02F"]),
    # window and aisle wishes
    Case("a wished window seat A is given when free", SECOND, {}, 0, 4, 1, ["A"], expect=["3-01A"]),
    Case("a wished F is found further down", SECOND, {"3-1F 3-2F 4-1F": FULL}, 0, 4, 1, ["F"],
         expect=["4-02F"]),
    Case("a wished letter that is sold everywhere: still a seat", SECOND,
         {"3-1A 3-2A 4-1A 4-2A": FULL}, 0, 4, 1, ["A"], expect=["3-01B"]),
    Case("a letter the class has not: ignored", BUSINESS, {}, 0, 4, 1, ["B"], expect=["1-01A"]),
    Case("a pair wishing A and F gets both windows of one row", SECOND, {"3-1A": FULL}, 0, 4, 2,
         ["A", "F"], expect=["3-02A", "3-02F"]),
    Case("a group of 3 wishing C D gets the aisle pair plus a neighbour", SECOND, {}, 0, 4, 3,
         ["C", "D"], same_row=True),
    # best fit: seats whose sold legs touch the ride come first
    Case("best fit: a seat sold just before the ride", SECOND, {"4-2C": 0b0001}, 1, 3, 1,
         expect=["4-02C"]),
    Case("best fit: a seat sold just after the ride", SECOND, {"3-2D": 0b1000}, 0, 3, 1,
         expect=["3-02D"]),
    Case("sold legs that do not touch the ride are no better than free", SECOND, {"3-2A": 0b0001}, 2, 4, 1,
         expect=["3-01A"]),
    Case("a wished letter comes before best fit", SECOND, {"4-2C": 0b0001}, 1, 3, 1, ["A"],
         expect=["3-01A"]),
    Case("best fit and wish together", SECOND, {"4-2C 4-2A": 0b0001}, 1, 3, 1, ["A"],
         expect=["4-02A"]),
    Case("a group goes to the row whose seats touch sold legs", SECOND, {"4-1AB": 0b0011}, 2, 4, 2,
         expect=["4-01A", "4-01B"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.why for c in CASES])
def test_allocation_scenario(case: Case) -> None:
    occ = make_map(case.layout, case.sold)
    before = occ.copy()
    mask = ride_mask(case.start, case.end)
    got = allocate(occ, case.layout, mask, case.count, case.letters)
    assert np.array_equal(occ, before), "allocate must not change the map"
    if case.expect is None and not (case.same_row or case.same_coach):
        assert got is None
        assert available(occ, mask) < case.count
        return
    assert got is not None
    names = sorted(name(case.layout, i) for i in got)
    assert len(set(got)) == case.count
    for i in got:
        assert int(occ[i]) & mask == 0, f"{name(case.layout, i)} is not free for the ride"
    if case.expect is not None:
        assert names == sorted(case.expect)
    if case.same_row:
        assert len({(case.layout.labels[i].coach, case.layout.labels[i].row) for i in got}) == 1, names
    if case.same_coach:
        assert len({case.layout.labels[i].coach for i in got}) == 1, names
    if case.letters and case.count >= len(case.letters) and case.expect is None:
        assert not Counter(case.letters) - Counter(case.layout.labels[i].letter for i in got), names


def test_group_best_fit_within_a_row() -> None:
    # row 3-1: C and D sold on leg 1, which touches the ride over legs 2-3; every other seat free
    occ = make_map(SECOND, {"3-1CD": 0b0010})
    got = allocate(occ, SECOND, ride_mask(2, 4), 2)
    assert got is not None
    assert sorted(name(SECOND, i) for i in got) == ["3-01C", "3-01D"]


def test_map_bytes_round_trip() -> None:
    occ = np.array([0, 1, 2**63, 2**64 - 1, 12345], dtype=np.uint64)
    again = map_from_bytes(map_to_bytes(occ), 5)
    assert np.array_equal(again, occ)
    assert legs_of(again) == [0, 1, 2**63, 2**64 - 1, 12345]


# --- properties against brute force ------------------------------------------------------------
def _big_train() -> Train:
    """Three second-class coaches of four rows and a first-class coach: rows of 5 and of 4."""
    stops = tuple(Stop(f"S{i:02d}", None if i == 0 else 10 * i, None if i == 6 else 10 * i + 1, 100 * i)
                  for i in range(7))
    return Train("B1", "big", stops, (Coach(1, "first", 3), Coach(2, "second", 4), Coach(3, "second", 4),
                                      Coach(4, "second", 4)))


BIG = _big_train()
#: rows of eight seats: the most a row may have (the writer keeps a row in a byte)
WIDE = Train("W1", "wide", BIG.stops, (Coach(1, "second", 3, "ABCDEFGH"), Coach(2, "second", 2, "ABCDEFGH")))
LAYOUTS = {
    "tiny-second": SECOND,
    "tiny-business": BUSINESS,
    "big-first": SeatLayout(BIG.seats["first"]),
    "big-second": SeatLayout(BIG.seats["second"]),
    "wide-second": SeatLayout(WIDE.seats["second"]),
}
LEGS = 6


@st.composite
def situations(draw: st.DrawFn) -> tuple[SeatLayout, np.ndarray, int, int, list[str]]:
    layout = LAYOUTS[draw(st.sampled_from(sorted(LAYOUTS)))]
    # mostly sparse maps with runs of sold legs, as real ones are
    legs = st.one_of(st.just(0), st.integers(0, 2**LEGS - 1), st.tuples(st.integers(0, LEGS - 1), st.integers(1, LEGS)).map(
        lambda t: ride_mask(min(t[0], t[1] - 1), t[1]) if min(t[0], t[1] - 1) < t[1] else 0))
    occ = np.array(draw(st.lists(legs, min_size=len(layout), max_size=len(layout))), dtype=np.uint64)
    start = draw(st.integers(0, LEGS - 1))
    end = draw(st.integers(start + 1, LEGS))
    count = draw(st.integers(1, 5))
    letters = draw(st.lists(st.sampled_from("ABCDFH"), max_size=count))
    return layout, occ, ride_mask(start, end), count, letters


def _free(occ: np.ndarray, mask: int) -> list[int]:
    return [i for i, legs in enumerate(legs_of(occ)) if legs & mask == 0]


@settings(max_examples=300, deadline=None)
@given(situations())
def test_allocate_against_brute_force(s: tuple[SeatLayout, np.ndarray, int, int, list[str]]) -> None:
    layout, occ, mask, count, letters = s
    before = occ.copy()
    got = allocate(occ, layout, mask, count, letters)
    assert np.array_equal(occ, before)
    free = _free(occ, mask)
    if len(free) < count:
        assert got is None
        return
    assert got is not None, "refused although enough seats were free"
    assert len(got) == count and len(set(got)) == count
    assert set(got) <= set(free)
    row_of = [(s.coach, s.row) for s in layout.labels]
    coach_of = [s.coach for s in layout.labels]
    free_per_row: dict[tuple[int, int], int] = {}
    free_per_coach: dict[int, int] = {}
    for i in free:
        free_per_row[row_of[i]] = free_per_row.get(row_of[i], 0) + 1
        free_per_coach[coach_of[i]] = free_per_coach.get(coach_of[i], 0) + 1
    edge = ((mask << 1) | (mask >> 1)) & ~mask
    touching = [i for i in free if legs_of(occ)[i] & edge]
    if max(free_per_row.values()) >= count:
        assert len({row_of[i] for i in got}) == 1, "a row had room but the group was split"
        if count > 1 and not [w for w in letters if w in set(layout.letter_of)]:
            # best fit: the first of the rows with room whose free seats touch sold legs most
            fit = {r: min(count, sum(row_of[i] == r for i in touching)) for r in free_per_row
                   if free_per_row[r] >= count}
            best = max(fit.values())
            first = min((r for r in fit if fit[r] == best), key=lambda r: row_of.index(r))
            assert row_of[got[0]] == first, "not the first best-fitting row"
    elif max(free_per_coach.values()) >= count:
        assert len({coach_of[i] for i in got}) == 1, "a coach had room but the group was split"
    wished = [w for w in letters if w in set(layout.letter_of)]
    if count == 1:
        (i,) = got
        if wished and any(layout.labels[j].letter == wished[0] for j in free):
            assert layout.labels[i].letter == wished[0], "a free seat had the wished letter"
            if any(layout.labels[j].letter == wished[0] for j in touching):
                assert i in touching
        elif touching:
            assert i == touching[0], "best fit: not the first free seat touching sold legs"
        else:
            assert i == free[0], "not the first free seat"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=80),
    st.integers(0, 62),
    st.integers(1, 64),
)
def test_available_against_brute_force(legs: list[int], start: int, end: int) -> None:
    start = min(start, end - 1)
    mask = ride_mask(start, end)
    occ = np.array(legs, dtype=np.uint64)
    assert available(occ, mask) == sum(1 for x in legs if x & mask == 0)
