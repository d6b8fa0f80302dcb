"""What the bench sends, decided by the seed alone: same seed, same plan, byte for byte.

A plan is, per client, an endless sequence of steps: a ``Search`` or a ``Buy`` that carries
what happens to the order afterwards (``then``: pay, cancel, pay and refund, or keep the hold)
and whether the buy is sent a second time with the same idempotency key (``again``). Follow-ups
depend on the server's replies (a pay needs the order id), so they are encoded when the reply
comes; everything else is fixed here. Each client draws from its own ``random.Random`` seeded
with ``"seed:client"``, so a client's steps do not depend on how many clients or processes
there are.

Dates are kept as days after today (China time) until ``Plan.dates`` resolves them, so that a
plan compares equal across days, and passenger id numbers are fresh for every order (the
server refuses one id number twice on overlapping legs of a run).
"""

from __future__ import annotations

import datetime as dt
import random
from bisect import bisect
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, islice

import msgspec

from railtix import limits as server_limits
from railtix.bench import limits
from railtix.core.orders import resident_id
from railtix.core.timetable import LETTERS_BY_CLASS, Timetable

SCENARIOS = ("rush", "mixed", "soak")


@dataclass(frozen=True, slots=True)
class TrainRef:
    """What the plan needs to know of a train: its stops and the seats of each class."""

    number: str
    stops: tuple[str, ...]
    seats: tuple[tuple[str, int], ...]  #: (class, seats) for the classes it has

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.seats)

    @property
    def capacity(self) -> int:
        return sum(n for _, n in self.seats)


class Catalog:
    """The trains a plan draws from, in timetable order."""

    def __init__(self, trains: Sequence[TrainRef]) -> None:
        assert trains, "a catalog needs trains"
        self.trains = tuple(trains)
        self.by_number = {t.number: t for t in self.trains}

    @classmethod
    def from_timetable(cls, timetable: Timetable) -> Catalog:
        return cls(
            [
                TrainRef(
                    t.number,
                    tuple(s.station for s in t.stops),
                    tuple((c, len(s)) for c, s in t.seats.items()),
                )
                for t in timetable.trains
            ]
        )

    @classmethod
    def demo(cls) -> Catalog:
        from railtix.demo.timetable import demo_timetable

        return cls.from_timetable(demo_timetable())

    def rush_candidates(self) -> list[TrainRef]:
        """Long, full-size trains: many stops make many overlapping segments, as in a real rush."""
        big = max(t.capacity for t in self.trains)
        found = [t for t in self.trains if t.capacity == big and len(t.stops) >= 5]
        return found or list(self.trains)


@dataclass(frozen=True, slots=True)
class Search:
    seq: int
    origin: str
    destination: str
    day: int  #: days after today


@dataclass(frozen=True, slots=True)
class Buy:
    seq: int
    hot: int  #: index of the rush run it targets, -1 when not a rush buy
    train: str
    day: int
    origin: str
    destination: str
    seat_class: str
    passengers: tuple[tuple[str, str], ...]  #: (name, id number)
    seats: tuple[str, ...]  #: wished seat letters
    key: str
    again: bool  #: sent twice with the same key; exactly one order may come of it
    then: str  #: pay | cancel | refund (pay, then refund) | hold


Step = Search | Buy

THEN = ("pay", "cancel", "refund", "hold")


@dataclass(frozen=True)
class Mix:
    """The shape of a scenario's load."""

    #: fraction of steps that are searches
    search_share: float
    #: what becomes of a held order: weights over THEN
    then: tuple[float, float, float, float]
    #: fraction of buys re-sent with the same idempotency key
    again_share: float = 0.02
    #: buys only on the few rush runs (True) or on any train and date (False)
    hot: bool = False
    classes: tuple[tuple[str, float], ...] = (("second", 0.85), ("first", 0.12), ("business", 0.03))
    party: tuple[float, ...] = (0.6, 0.2, 0.1, 0.05, 0.05)  #: weights of 1..5 passengers
    letters_share: float = 0.3  #: buys that wish for seat letters


def search_share_for(mutations: float, then: tuple[float, float, float, float], again: float) -> float:
    """The share of search steps that makes ``mutations`` the share of mutating requests.

    A buy step sends the buy, its repeat (``again``), a pay when paid or refunded, a cancel, and a
    refund: that many requests per buy step on average.
    """
    pay, cancel, refund, _hold = (w / sum(then) for w in then)
    per_buy = 1 + again + pay + cancel + 2 * refund
    # per_buy * (1 - s) / (s + per_buy * (1 - s)) == mutations, solved for s
    return per_buy * (1 - mutations) / (mutations + per_buy * (1 - mutations))


_MIXED_THEN = (0.70, 0.15, 0.10, 0.05)
MIXES: dict[str, Mix] = {
    # the 抢票 moment: everyone buys on a few runs; most pay what they hold
    "rush": Mix(search_share=0.0, then=(0.85, 0.0, 0.0, 0.15), hot=True),
    # 12306's shape: about 90 % searches, 10 % buys, pays, cancels and refunds
    "mixed": Mix(search_share=search_share_for(0.10, _MIXED_THEN, 0.02), then=_MIXED_THEN),
    # the same mix held steady (the CLI paces it open-loop at --rate)
    "soak": Mix(search_share=search_share_for(0.10, _MIXED_THEN, 0.02), then=_MIXED_THEN),
}

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰"
#: passenger names: every surname with every one- and two-character given name of the lists
_NAMES = tuple(s + g for s in _SURNAMES for g in (*_GIVEN, *(a + b for a in _GIVEN[:8] for b in _GIVEN[8:16])))


def id_number(seed: int, client: int, k: int) -> str:
    """A fresh 18-character id number: 17 digits unique to (seed, client, k) and the check digit.

    The digits are the seed (six), the passenger's ordinal within its client (seven) and the
    client (four); the check digit follows GB 11643 (ISO 7064 MOD 11-2), as real Chinese id
    numbers have it.
    """
    return _IdNumbers(seed, client)(k)


class _IdNumbers:
    """``id_number`` for one (seed, client), its fixed digits formatted once."""

    __slots__ = ("prefix", "suffix")

    def __init__(self, seed: int, client: int) -> None:
        assert 0 <= client < limits.clients_max <= 10**4
        self.prefix = f"{seed % 10**6:06d}"
        self.suffix = f"{client:04d}"

    def __call__(self, k: int) -> str:
        assert 0 <= k < 10**7, "too many passengers for one client"
        return resident_id(f"{self.prefix}{k:07d}{self.suffix}")


def _segment(pick: Callable[[int], int], stops: int) -> tuple[int, int]:
    """A random ride: boarding stop before alighting stop, every pair equally likely."""
    i = pick(stops)
    j = pick(stops - 1)
    if j >= i:
        j += 1
    return (i, j) if i < j else (j, i)


class Plan:
    """Every client's steps for one scenario and seed."""

    def __init__(self, scenario: str, seed: int, catalog: Catalog | None = None, runs: int = 8) -> None:
        assert scenario in MIXES, f"unknown scenario {scenario!r}"
        self.scenario = scenario
        self.seed = seed
        self.catalog = catalog or Catalog.demo()
        self.mix = MIXES[scenario]
        rng = random.Random(f"{seed}:runs")
        candidates = self.catalog.rush_candidates()
        picked = rng.sample(candidates, min(runs, len(candidates))) if self.mix.hot else []
        last_day = server_limits.presale_days - 1
        #: the rush's runs: (train, day); day 0 is avoided so no train has left yet
        self.runs: tuple[tuple[TrainRef, int], ...] = tuple((t, rng.randint(1, last_day)) for t in picked)
        self._class_names = [c for c, _ in self.mix.classes]
        self._class_cum = list(accumulate(w for _, w in self.mix.classes))
        self._classes_of = {t.number: frozenset(t.classes) for t in self.catalog.trains}
        #: how likely a buy lands on each rush (run index, class): a class the train lacks
        #: falls back to its first, as ``steps`` draws it
        self._pair_weights: dict[tuple[int, str], float] = {}
        for i, (t, _) in enumerate(self.runs):
            for c, w in self.mix.classes:
                pair = (i, c if c in self._classes_of[t.number] else t.seats[0][0])
                self._pair_weights[pair] = self._pair_weights.get(pair, 0.0) + w

    def _open_pairs(self, exhausted: Collection[tuple[int, str]]) -> tuple[list[tuple[int, str]], list[float]]:
        """The pairs not given up, and their cumulative weights."""
        pairs = [p for p, w in self._pair_weights.items() if w > 0 and p not in exhausted]
        return pairs, list(accumulate(self._pair_weights[p] for p in pairs))

    # --- steps -------------------------------------------------------------------------------
    def steps(self, client: int, exhausted: Collection[tuple[int, str]] = ()) -> Iterator[Step | None]:
        """Client ``client``'s steps, without end.

        ``exhausted`` is the rush's live set of (run index, class) given up as sold out; it
        only grows. Once it holds any, a buy's run and class are drawn in one go among the
        pairs left, each as likely relative to the others as before: the same buys a draw
        that threw away the steps on given-up pairs would send, without those draws (at the
        end of a rush, about a dozen for every buy sent: the generator's own time in the
        seconds the rush is measured by). Once every pair is given up the steps are None, so
        that the caller notices.

        Draws use ``random()`` and bisection on cumulative weights rather than ``choices`` and
        ``randrange``: a rush encodes a few hundred thousand steps before the clock starts,
        and this is several times quicker for the same determinism.
        """
        rand = random.Random(f"{self.seed}:{client}").random

        def pick(n: int) -> int:
            return int(rand() * n)

        mix = self.mix
        trains = self.catalog.trains
        n_trains = len(trains)
        days = server_limits.presale_days
        class_names, class_cum = self._class_names, self._class_cum
        party_cum = list(accumulate(mix.party))
        then_cum = list(accumulate(mix.then))
        letters_of = LETTERS_BY_CLASS
        runs = self.runs
        n_runs = len(runs)
        names = _NAMES
        n_names = len(names)
        has = self._classes_of
        id_no = _IdNumbers(self.seed, client)
        key_prefix = f"{self.seed}-{client}-"
        search_share, letters_share, again_share = mix.search_share, mix.letters_share, mix.again_share
        passengers = 0
        seq = 0
        given_up = 0  #: how many pairs were given up when ``open_pairs`` was made
        open_pairs: list[tuple[int, str]] = []
        open_cum: list[float] = []
        while True:
            seq += 1
            if rand() < search_share:
                t = trains[pick(n_trains)]
                i, j = _segment(pick, len(t.stops))
                yield Search(seq, t.stops[i], t.stops[j], pick(days))
                continue
            if n_runs and exhausted:
                if len(exhausted) != given_up:
                    given_up = len(exhausted)
                    open_pairs, open_cum = self._open_pairs(exhausted)
                if not open_pairs:
                    yield None
                    continue
                hot, seat_class = open_pairs[bisect(open_cum, rand() * open_cum[-1])]
                t, day = runs[hot]
                i, j = _segment(pick, len(t.stops))
            else:
                if n_runs:
                    hot = pick(n_runs)
                    t, day = runs[hot]
                else:
                    hot = -1
                    t, day = trains[pick(n_trains)], 1 + pick(days - 1)
                i, j = _segment(pick, len(t.stops))
                seat_class = class_names[bisect(class_cum, rand() * class_cum[-1])]
                if seat_class not in has[t.number]:
                    seat_class = t.seats[0][0]
            party = 1 + bisect(party_cum, rand() * party_cum[-1])
            people = []
            for _ in range(party):
                people.append((names[pick(n_names)], id_no(passengers)))
                passengers += 1
            letters: tuple[str, ...] = ()
            if rand() < letters_share:
                choice = letters_of[seat_class]
                letters = tuple(choice[pick(len(choice))] for _ in range(party))
            yield Buy(
                seq, hot, t.number, day, t.stops[i], t.stops[j], seat_class, tuple(people), letters,
                key_prefix + str(seq), rand() < again_share, THEN[bisect(then_cum, rand() * then_cum[-1])],
            )

    def first(self, client: int, n: int) -> list[Step]:
        return [s for s in islice(self.steps(client), n) if s is not None]  # none skipped here

    @staticmethod
    def dates(today: dt.date) -> list[str]:
        """ISO dates for day offsets 0 .. presale_days - 1."""
        return [(today + dt.timedelta(days=k)).isoformat() for k in range(server_limits.presale_days)]


# --- encoding ----------------------------------------------------------------------------------
# Every request starts with its id ({"id":N,...): the null server and the reply check rely on it.
_encoder = msgspec.json.Encoder()

#: request ids: step seq * 4 + one of these, so a reply's id names its step and its role
ROLE_STEP, ROLE_AGAIN, ROLE_PAY, ROLE_REFUND = 0, 1, 2, 3


def encode_search(step: Search, dates: Sequence[str]) -> bytes:
    return b'{"id":%d,"op":"search","from":"%s","to":"%s","date":"%s"}\n' % (
        step.seq * 4, step.origin.encode(), step.destination.encode(), dates[step.day].encode()
    )


def encode_buy(step: Buy, token: str, dates: Sequence[str], role: int = ROLE_STEP) -> bytes:
    req: dict[str, object] = {
        "id": step.seq * 4 + role,
        "op": "buy",
        "token": token,
        "key": step.key,
        "train": step.train,
        "date": dates[step.day],
        "from": step.origin,
        "to": step.destination,
        "class": step.seat_class,
        "passengers": [{"name": n, "id_no": i} for n, i in step.passengers],
    }
    if step.seats:
        req["seats"] = list(step.seats)
    return _encoder.encode(req) + b"\n"


def encode_followup(op: bytes, rid: int, token: bytes, key: bytes, order: bytes) -> bytes:
    """A pay, cancel or refund of ``order``; the key is the buy's key with the op's letter."""
    return b'{"id":%d,"op":"%s","token":"%s","key":"%s%s","order":"%s"}\n' % (
        rid, op, token, key, op[:1], order
    )
