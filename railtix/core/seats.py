"""Seat maps as leg bitmasks, availability, and the choice of seats for an order.

Per run and seat class the seat map holds one 64-bit integer per seat: the legs already sold on
it. A seat is free for a ride when ``occupied & mask == 0``. The maps are numpy ``uint64`` arrays
so that availability runs as a few vectorised passes, not a Python loop per seat: searches are
most of a ticket server's load. Choosing seats, which only the writer does, works on another
shape of the same map (``FreeSeats``): one int per leg, a bit per seat.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from railtix.core.timetable import SeatLabel, row_seats_max

SeatMap = np.ndarray  # dtype uint64, one element per seat

_U64 = np.uint64

#: Rows a group's wished seat letters are weighed in.
rows_weighed_max = 16

#: In-row choices remembered (``_row_pick``, ``_granted``). A choice within one row depends only
#: on the row's letters, which of its seats are free and touch sold legs, the group's size and
#: its wishes: a few thousand combinations in a rush, each a small Python loop when worked out
#: and a dictionary lookup after. The bound only caps memory (an entry is ~200 bytes).
row_choices_max = 1 << 16


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
    """Where each seat of one class sits, derived once per train and class.

    Besides the seats in order, it numbers them for ``FreeSeats``: row ``r``'s ``k``-th seat is
    bit ``8 * r + k`` (``bit_of``), so that a row of a bitset is one byte.
    """

    def __init__(self, labels: Sequence[SeatLabel]) -> None:
        self.labels = tuple(labels)
        n = len(self.labels)
        places = [(s.coach, s.row) for s in self.labels]
        starts: list[int] = []
        for i in range(n):  # a new row where the place changes, and after eight seats in one
            if i == 0 or places[i] != places[i - 1] or i - starts[-1] == row_seats_max:
                starts.append(i)
        #: per row, its first seat and the seat after its last
        self.row_lo = starts
        self.row_hi = starts[1:] + [n]
        self.rows = len(starts)
        rows = zip(self.row_lo, self.row_hi, strict=True)
        self.bit_of = tuple(8 * r + (i - lo) for r, (lo, hi) in enumerate(rows) for i in range(lo, hi))
        self.bit_index = np.array(self.bit_of, dtype=np.intp)
        seat_at = [-1] * (8 * self.rows)
        for i, b in enumerate(self.bit_of):
            seat_at[b] = i
        #: per bit, its seat (-1 for the bits past a row's last seat)
        self.seat_at = seat_at
        #: the bits of every seat
        self.all_bits = sum(1 << b for b in self.bit_of)
        coach_of_row = [self.labels[lo].coach for lo in self.row_lo]
        firsts = [r for r in range(self.rows) if r == 0 or coach_of_row[r] != coach_of_row[r - 1]]
        #: per coach, its first row and the row after its last
        self.coach_rows = list(zip(firsts, firsts[1:] + [self.rows], strict=True))
        #: per seat: coach number and "12F", ready for tickets
        self.coaches = tuple(s.coach for s in self.labels)
        self.names = tuple(f"{s.row:02d}{s.letter}" for s in self.labels)
        self.letter_of = tuple(s.letter for s in self.labels)
        #: per row, the letters of its seats in order
        self.row_letters = tuple(self.letter_of[lo:hi] for lo, hi in zip(self.row_lo, self.row_hi, strict=True))
        #: per letter, the bitset of the seats that have it
        self.letter_bits: dict[str, int] = {}
        for i, letter in enumerate(self.letter_of):
            self.letter_bits[letter] = self.letter_bits.get(letter, 0) | 1 << self.bit_of[i]

    def __len__(self) -> int:
        return len(self.labels)


#: per byte, how many bits it has set
_POPCOUNT = bytes(bin(b).count("1") for b in range(256))
#: per n, per byte: 1 when the byte has at least n bits set (a row with at least n such seats)
_AT_LEAST = tuple(bytes(1 if _POPCOUNT[b] >= n else 0 for b in range(256)) for n in range(row_seats_max + 1))


def _lowest(bits: int) -> int:
    """The lowest bit set (bits > 0)."""
    return (bits & -bits).bit_length() - 1


class FreeSeats:
    """One class's seat map shaped for choosing and counting seats: per leg, one int with the
    bit of every seat free on that leg (``SeatLayout.bit_of``).

    Choosing seats is the writer's busiest step. Over uint64 arrays every pass is a numpy
    call of a few microseconds, and seating a group took a dozen of them. Here a ride's free
    seats are an AND of its legs' ints, and since a row is a byte, the rows with room for a
    group, or with n seats that touch sold legs, come from ``bytes.translate`` with a table:
    a group is seated in about a tenth of the time. It is kept in step with the uint64 map
    by ``take`` and ``give`` (``RunState.occupy`` and ``release``). The writer publishes it
    with each commit's maps, and readers count a ride's free seats with one AND per leg
    (``count``) where ``available`` makes two numpy passes.
    """

    __slots__ = ("layout", "legs")

    def __init__(self, occ: SeatMap, layout: SeatLayout, legs: int) -> None:
        assert len(occ) == len(layout) and 0 < legs <= 64
        self.layout = layout
        # per seat and leg, 1 where sold: the map's bits, little end first, of the bytes that
        # hold the train's legs
        size = (legs + 7) // 8
        sold = np.unpackbits(occ.astype("<u8").view(np.uint8).reshape(-1, 8)[:, :size], axis=1, bitorder="little")
        free = np.zeros((8 * layout.rows, legs), dtype=np.uint8)  # the bits past a row's end stay 0
        free[layout.bit_index] = 1 - sold[:, :legs]
        packed = np.packbits(free, axis=0, bitorder="little")  # a byte per row and leg
        self.legs: list[int] = [int.from_bytes(packed[:, leg].tobytes(), "little") for leg in range(legs)]

    @classmethod
    def _of(cls, layout: SeatLayout, legs: list[int]) -> FreeSeats:
        """One made from its legs, without a numpy pass."""
        made = cls.__new__(cls)
        made.layout, made.legs = layout, legs
        return made

    @classmethod
    def unsold(cls, layout: SeatLayout, legs: int) -> FreeSeats:
        """Every seat free on every leg: a run nobody has bought on yet."""
        return cls._of(layout, [layout.all_bits] * legs)

    @classmethod
    def loads(cls, layout: SeatLayout, blob: bytes) -> FreeSeats:
        """The FreeSeats that ``dumps`` wrote."""
        n = layout.rows
        return cls._of(layout, [int.from_bytes(blob[k : k + n], "little") for k in range(0, len(blob), n)])

    def dumps(self) -> bytes:
        """The legs as bytes, a row's byte each, for a reader in another process."""
        n = self.layout.rows
        return b"".join(leg.to_bytes(n, "little") for leg in self.legs)

    def copy(self) -> FreeSeats:
        return FreeSeats._of(self.layout, list(self.legs))

    def count(self, start: int, end: int) -> int:
        """Seats free on every leg start..end-1 (``available`` for the ride's mask)."""
        legs = self.legs
        free = legs[start]
        for leg in range(start + 1, end):
            free &= legs[leg]
        return free.bit_count()

    def take(self, seat: int, start: int, end: int) -> None:
        """The seat is sold on legs start..end-1."""
        keep = ~(1 << self.layout.bit_of[seat])
        legs = self.legs
        for leg in range(start, end):
            legs[leg] &= keep

    def give(self, seat: int, start: int, end: int) -> None:
        """The seat is free again on legs start..end-1."""
        bit = 1 << self.layout.bit_of[seat]
        legs = self.legs
        for leg in range(start, end):
            legs[leg] |= bit

    def choose(self, start: int, end: int, count: int, letters: Sequence[str] = ()) -> list[int] | None:
        """``allocate``'s choice for the ride over legs start..end-1."""
        assert count >= 1 and 0 <= start < end
        legs = self.legs
        free = legs[start]
        for leg in range(start + 1, end):
            free &= legs[leg]
        if free.bit_count() < count:
            return None
        around = -1  # free on both legs next to the ride (those past the ends count as free)
        if start > 0:
            around &= legs[start - 1]
        if end < len(legs):
            around &= legs[end]
        touching = free & ~around
        layout = self.layout
        wanted = [w for w in letters if w in layout.letter_bits][:count]
        if count == 1:
            candidates = [touching, free]
            if wanted:
                pick = layout.letter_bits[wanted[0]]
                candidates = [touching & pick, free & pick, *candidates]
            seat = next(c for c in candidates if c)
            return [layout.seat_at[_lowest(seat)]]
        return self._group(free, touching, count, wanted)

    def _group(self, free: int, touching: int, count: int, wanted: list[str]) -> list[int]:
        layout = self.layout
        free_rows = free.to_bytes(layout.rows, "little")
        touching_rows = touching.to_bytes(layout.rows, "little")
        # a byte per row, 1 where the row has room for the whole group (none has, for more
        # people than a row has seats)
        room = int.from_bytes(free_rows.translate(_AT_LEAST[count]), "little") if count <= row_seats_max else 0
        if room:
            # Best fit: the rows whose free seats touch sold legs the most (up to the group's
            # size), the first such row on a tie. Level by level: a row's fit is n when it has
            # n touching seats but not n + 1 (capped at the group's size).
            if not wanted:
                for n in range(count, 0, -1):
                    best = room & int.from_bytes(touching_rows.translate(_AT_LEAST[n]), "little")
                    if best:
                        break
                else:
                    best = room
                return self._pick_in_row(_lowest(best) >> 3, free_rows, touching_rows, count, wanted)
            # Wished letters are weighed among the best few rows, fit first: a row grants as
            # many wishes as its free letters have in common with them; the first to grant
            # them all ends the search.
            row_letters, wished = layout.row_letters, tuple(wanted)
            best_row, most, weighed, above = -1, -1, 0, 0
            for n in range(count, -1, -1):
                level = room & int.from_bytes(touching_rows.translate(_AT_LEAST[n]), "little") if n else room
                rows, above = level & ~above, level
                while rows and weighed < rows_weighed_max:
                    low = rows & -rows
                    rows ^= low
                    weighed += 1
                    r = low.bit_length() - 1 >> 3
                    granted = _granted(row_letters[r], free_rows[r], wished)
                    if granted > most:
                        best_row, most = r, granted
                        if granted == len(wanted):
                            return self._pick_in_row(r, free_rows, touching_rows, count, wanted)
            return self._pick_in_row(best_row, free_rows, touching_rows, count, wanted)
        # no row has room: the first coach that has, else the first free seats anywhere
        per_row = free_rows.translate(_POPCOUNT)
        for first, after in layout.coach_rows:
            if sum(per_row[first:after]) >= count:
                free &= -1 << 8 * first
                break
        out = []
        for _ in range(count):
            low = free & -free
            out.append(layout.seat_at[low.bit_length() - 1])
            free ^= low
        return out

    def _pick_in_row(self, r: int, free_rows: bytes, touching_rows: bytes, count: int, wanted: list[str]) -> list[int]:
        """``count`` free seats of row r (``_row_pick``)."""
        layout = self.layout
        lo = layout.row_lo[r]
        return [lo + k for k in _row_pick(layout.row_letters[r], free_rows[r], touching_rows[r], count, tuple(wanted))]


def allocate(
    occ: SeatMap, layout: SeatLayout, mask: int, count: int, letters: Sequence[str] = ()
) -> list[int] | None:
    """Seats for ``count`` passengers on the ride ``mask``, or None when too few are free.

    Best fit first: among free seats, prefer those whose sold legs touch the ride, so that long
    free stretches stay whole for long rides. A group sits in one row when some row has room,
    else in one coach, else wherever seats are free. ``letters`` are wished-for seat letters
    (12306's choice of A/B/C/D/F), honoured where free seats allow; otherwise seats are assigned
    anyway, as 12306 does.

    This builds a ``FreeSeats`` for one choice; the writer keeps one per run and class instead.
    """
    assert count >= 1 and mask > 0
    start, end = _lowest(mask), mask.bit_length()
    legs = min(64, max(end + 1, int(occ.max()).bit_length() if len(occ) else 0))
    return FreeSeats(occ, layout, legs).choose(start, end, count, letters)


@lru_cache(maxsize=row_choices_max)
def _row_pick(letters: tuple[str, ...], free: int, touch: int, count: int, wanted: tuple[str, ...]) -> tuple[int, ...]:
    """``count`` of a row's free seats, as places in the row (bit k of ``free`` and ``touch``
    is its k-th seat): wished letters first, then best fit, then neighbours."""
    open_seats = [k for k in range(len(letters)) if free >> k & 1]
    chosen: list[int] = []
    for w in wanted:
        for k in open_seats:
            if letters[k] == w and k not in chosen:
                chosen.append(k)
                break
    if len(chosen) < count:
        rest = [k for k in open_seats if k not in chosen]
        # seats whose sold legs touch the ride first (best fit), then the seats nearest to
        # those already chosen, which keeps the group together
        anchor = chosen[0] if chosen else next((k for k in rest if touch >> k & 1), rest[0])
        rest.sort(key=lambda k: (not touch >> k & 1, abs(k - anchor), k))
        chosen.extend(rest[: count - len(chosen)])
    return tuple(sorted(chosen))


@lru_cache(maxsize=row_choices_max)
def _granted(letters: tuple[str, ...], free: int, wanted: tuple[str, ...]) -> int:
    """How many wishes a row grants with its free seats (bit k of ``free``: its k-th seat)."""
    return _common(list(wanted), [letters[k] for k in range(len(letters)) if free >> k & 1])


def _common(wanted: list[str], letters: list[str]) -> int:
    """How many of the wished letters ``letters`` grant (each letter grants one wish)."""
    have = list(letters)
    granted = 0
    for w in wanted:  # a multiset intersection; both lists hold a handful of letters
        if w in have:
            have.remove(w)
            granted += 1
    return granted


def legs_of(occ: SeatMap) -> list[int]:
    """The seat map as plain Python ints (for audits and tests)."""
    return [int(x) for x in occ.tolist()]
