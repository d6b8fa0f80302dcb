"""Seat maps as leg bitmasks, availability, and the choice of seats for an order.

Per run and seat class the seat map holds one 64-bit integer per seat: the legs already sold on
it. A seat is free for a ride when ``occupied & mask == 0``. The maps are numpy ``uint64`` arrays
so that availability and the search for free seats run as a few vectorised passes, not a Python
loop per seat: searches are most of a ticket server's load.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import numpy as np

from railtix.core.timetable import WINDOW_LETTERS, SeatLabel

SeatMap = np.ndarray  # dtype uint64, one element per seat

_U64 = np.uint64

#: Rows a group's wished seat letters are weighed in (each costs a small Python loop).
rows_weighed_max = 16


def empty_map(seats: int) -> SeatMap:
    return np.zeros(seats, dtype=_U64)


def map_from_bytes(blob: bytes, seats: int) -> SeatMap:
    occ = np.frombuffer(blob, dtype="<u8").astype(_U64, copy=True)
    assert occ.shape == (seats,), "stored seat map does not fit the timetable"
    return occ


def map_to_bytes(occ: SeatMap) -> bytes:
    return occ.astype("<u8", copy=False).tobytes()


def available(occ: SeatMap, mask: int) -> int:
    """Seats free on every leg of the ride: all but those with a leg of it sold (two passes
    over the map, not three: searches count thousands of rides a second)."""
    return len(occ) - int(np.count_nonzero(occ & _U64(mask)))


class SeatLayout:
    """Where each seat of one class sits, derived once per train and class."""

    def __init__(self, labels: Sequence[SeatLabel]) -> None:
        self.labels = tuple(labels)
        n = len(self.labels)
        rows = [(s.coach, s.row) for s in self.labels]
        starts = [i for i in range(n) if i == 0 or rows[i] != rows[i - 1]]
        self.row_starts = np.array(starts, dtype=np.intp)
        self.row_ends = np.array(starts[1:] + [n], dtype=np.intp)
        coaches = [s.coach for s in self.labels]
        cstarts = [i for i in range(n) if i == 0 or coaches[i] != coaches[i - 1]]
        self.coach_starts = np.array(cstarts, dtype=np.intp)
        #: per seat: coach number and "12F", ready for tickets
        self.coaches = tuple(s.coach for s in self.labels)
        self.names = tuple(f"{s.row:02d}{s.letter}" for s in self.labels)
        #: per seat, its letter: a tuple for Python loops, an array for vector passes
        self.letter_of = tuple(s.letter for s in self.labels)
        self.letters = np.array(self.letter_of)
        self.window = np.array([s.letter in WINDOW_LETTERS for s in self.labels], dtype=bool)

    def __len__(self) -> int:
        return len(self.labels)

    @cached_property
    def letter_sets(self) -> dict[str, np.ndarray]:
        return {letter: self.letters == letter for letter in set(self.letters.tolist())}


def allocate(
    occ: SeatMap, layout: SeatLayout, mask: int, count: int, letters: Sequence[str] = ()
) -> list[int] | None:
    """Seats for ``count`` passengers on the ride ``mask``, or None when too few are free.

    Best fit first: among free seats, prefer those whose sold legs touch the ride, so that long
    free stretches stay whole for long rides. A group sits in one row when some row has room,
    else in one coach, else wherever seats are free. ``letters`` are wished-for seat letters
    (12306's choice of A/B/C/D/F), honoured where free seats allow; otherwise seats are assigned
    anyway, as 12306 does.
    """
    assert count >= 1
    free = (occ & _U64(mask)) == 0
    edge = _U64(((mask << 1) | (mask >> 1)) & ~mask & 0xFFFF_FFFF_FFFF_FFFF)
    touching = free & ((occ & edge) != 0)
    wanted = [w for w in letters if w in layout.letter_sets][:count]
    if count == 1:
        seat = _first_seat(free, touching, layout, wanted[0] if wanted else None)
        return None if seat is None else [seat]
    if int(np.count_nonzero(free)) < count:
        return None
    return _group(free, touching, layout, count, wanted)


def _first_seat(free: np.ndarray, touching: np.ndarray, layout: SeatLayout, letter: str | None) -> int | None:
    """The first free seat by preference: touching and wished, wished, touching, any."""
    candidates = [touching, free]
    if letter is not None:
        pick = layout.letter_sets[letter]
        candidates = [touching & pick, free & pick, *candidates]
    for c in candidates:
        i = int(c.argmax())
        if c[i]:
            return i
    return None


def _group(
    free: np.ndarray, touching: np.ndarray, layout: SeatLayout, count: int, wanted: list[str]
) -> list[int]:
    starts = layout.row_starts
    # Per row: how well its free seats fit (those touching sold legs, up to the group's size),
    # or -1 when it has too few free seats. Two reductions and no stacked copy: a group's
    # allocation is a handful of numpy calls, and each costs about a microsecond.
    fit = np.minimum(np.add.reduceat(touching, starts, dtype=np.int32), count)
    score = np.where(np.add.reduceat(free, starts, dtype=np.int32) >= count, fit, -1)
    if not wanted:
        r = int(score.argmax())  # argmax: the first of the best
        if score[r] >= 0:
            return _pick_in_row(free, touching, layout, int(starts[r]), int(layout.row_ends[r]), count, wanted)
    else:
        rows = np.flatnonzero(score >= 0)
        if rows.size:
            # Best fit first, the first such row on a tie. Wished letters are weighed only
            # among a few of the best rows (a Python loop). A row grants as many wishes as
            # its free letters have in common with them (a multiset intersection), so rows
            # are scored without picking their seats.
            order = rows[np.argsort(-fit[rows], kind="stable")]
            letter_of = layout.letter_of
            best_row, best = -1, -1
            for r in order[:rows_weighed_max].tolist():
                lo, hi = int(starts[r]), int(layout.row_ends[r])
                have = [letter_of[lo + k] for k, f in enumerate(free[lo:hi].tolist()) if f]
                granted = _common(wanted, have)
                if granted > best:
                    best_row, best = r, granted
                    if granted == len(wanted):
                        break
            lo, hi = int(starts[best_row]), int(layout.row_ends[best_row])
            return _pick_in_row(free, touching, layout, lo, hi, count, wanted)
    per_coach = np.add.reduceat(free, layout.coach_starts, dtype=np.int32)
    coaches = np.flatnonzero(per_coach >= count)
    if coaches.size:
        c = int(coaches[0])
        lo = int(layout.coach_starts[c])
        idx = np.flatnonzero(free[lo:]) + lo
        return idx[:count].tolist()
    return np.flatnonzero(free)[:count].tolist()


def _common(wanted: list[str], letters: list[str]) -> int:
    """How many of the wished letters ``letters`` grant (each letter grants one wish)."""
    have = list(letters)
    granted = 0
    for w in wanted:  # a multiset intersection; both lists hold a handful of letters
        if w in have:
            have.remove(w)
            granted += 1
    return granted


def _pick_in_row(
    free: np.ndarray, touching: np.ndarray, layout: SeatLayout, lo: int, hi: int, count: int, wanted: list[str]
) -> list[int]:
    """``count`` free seats of one row: wished letters first, then best fit, then neighbours."""
    # one row is a handful of seats: plain lists beat numpy's per-element indexing here
    row_free = free[lo:hi].tolist()
    row_touch = touching[lo:hi].tolist()
    letter_of = layout.letter_of
    open_seats = [lo + k for k, f in enumerate(row_free) if f]
    chosen: list[int] = []
    for w in wanted:
        for i in open_seats:
            if letter_of[i] == w and i not in chosen:
                chosen.append(i)
                break
    if len(chosen) < count:
        rest = [i for i in open_seats if i not in chosen]
        # seats whose sold legs touch the ride first (best fit), then the seats nearest to
        # those already chosen, which keeps the group together
        anchor = chosen[0] if chosen else next((i for i in rest if row_touch[i - lo]), rest[0])
        rest.sort(key=lambda i: (not row_touch[i - lo], abs(i - anchor), i))
        chosen.extend(rest[: count - len(chosen)])
    return sorted(chosen)


def legs_of(occ: SeatMap) -> list[int]:
    """The seat map as plain Python ints (for audits and tests)."""
    return [int(x) for x in occ.tolist()]
