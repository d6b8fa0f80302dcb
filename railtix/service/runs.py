"""What readers see: the committed seat maps of every run this process has looked at.

Readers (search, availability) take views from here and never wait for the writer. A view is a
run's seat maps as of a commit (no passenger index: readers do not need it). The writer keeps
its own working states and publishes copies of the maps it changed only after the commit, so a
reader never sees seats that are not durable. When the store is shared with other processes,
the cached runs are checked against the stored versions at most every
``limits.shared_views_max_age_s`` (one query for all of them), and those that changed are
reloaded when next asked for: what a search shows may be that much older, plus the time of one
such query, than a purchase made through another process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from railtix import limits
from railtix.core.inventory import Layouts, RunState, run_id
from railtix.core.orders import Order
from railtix.core.seats import FreeSeats
from railtix.core.timetable import Train
from railtix.store.base import Store, decode_maps


def build_state(train: Train, date: str, row: tuple[int, bytes] | None, live: list[Order]) -> RunState:
    """A run's state from its stored row and its live orders (for the passenger index)."""
    if row is None:
        state = RunState.empty(train, date)
    else:
        version, blob = row
        state = RunState(run_id(train.number, date), train, date, decode_maps(blob, train), {}, version)
    for o in live:
        for t in o.tickets:
            state.passengers.setdefault(t.id_no, {})[o.id] = o.mask
    return state


def refresh(state: RunState, row: tuple[int, bytes] | None, changed: list[Order]) -> None:
    """Bring a run's state up to its stored row, given the orders written since its version."""
    assert row is not None, "a run whose version moved has a row"
    version, blob = row
    state.maps = decode_maps(blob, state.train)
    state.free.clear()  # shaped from the maps just replaced
    state.version = version
    for o in changed:
        for t in o.tickets:
            held = state.passengers.get(t.id_no)
            if o.live:
                state.passengers.setdefault(t.id_no, {})[o.id] = o.mask
            elif held is not None:
                held.pop(o.id, None)
                if not held:
                    del state.passengers[t.id_no]


class RunCache:
    def __init__(
        self,
        store: Store,
        trains: dict[str, Train],
        max_age_s: float = limits.shared_views_max_age_s,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._trains = trains  #: by number, to rebuild views from the writer process's maps
        self._layouts = Layouts()
        self._runs: dict[str, RunState] = {}
        self._load_lock = threading.Lock()
        self._max_age_s = max_age_s
        self._clock = clock
        #: when the cached runs were last checked against a shared store (clock's time)
        self._checked = float("-inf")
        self._check_lock = threading.Lock()

    def forget(self, runs: list[str]) -> None:
        """Drop these views: the next reader loads them from the store."""
        with self._load_lock:
            for r in runs:
                self._runs.pop(r, None)

    def forget_before(self, day: str) -> None:
        """Drop the views of runs before ``day`` (ISO): they are sold no more."""
        with self._load_lock:
            self._runs = {r: s for r, s in self._runs.items() if s.date >= day}

    def get(self, train: Train, date: str) -> RunState:
        state = self._runs.get(run_id(train.number, date))
        if state is None:
            state = self._load(train, date)
        return state

    def many(self, rides: Sequence[tuple[Train, str]]) -> list[RunState]:
        """Committed states of several runs, in the order asked; when the store is shared, no
        older than ``max_age_s`` plus one check."""
        if self._store.shared:
            self.check()
        return [self.get(t, d) for t, d in rides]

    def check(self) -> None:
        """Drop the views that other processes' commits have overtaken, unless the last check
        is recent (or another thread is checking right now)."""
        now = self._clock()
        if now - self._checked < self._max_age_s or not self._check_lock.acquire(blocking=False):
            return
        try:
            self._checked = now  # before the query: a view is never older than max age + one query
            views = dict(self._runs)
            stored = self._store.run_versions(list(views)) if views else {}
            # only views behind the store: one our own writer published meanwhile is newer
            stale = [r for r, v in views.items() if stored.get(r, 0) > v.version]
            if stale:
                with self._load_lock:
                    for r in stale:
                        if self._runs.get(r) is views[r]:
                            del self._runs[r]
        finally:
            self._check_lock.release()

    def _load(self, train: Train, date: str) -> RunState:
        run = run_id(train.number, date)
        with self._load_lock:
            row = self._store.run_row(run)
            state = build_state(train, date, row, [])
            if row is None:  # never sold: most runs a search shows, counted without numpy
                legs = len(train.stops) - 1
                state.free = {c: FreeSeats.unsold(self._layouts(train, c), legs) for c in state.maps}
            state.memo = {}  # a read-only view: what readers derive may be remembered
            current = self._runs.get(run)
            if current is None or current.version <= state.version:
                self._runs[run] = state
            return self._runs[run]

    def clear(self) -> None:
        """Drop every view (the writer process was lost: what it last committed is unknown)."""
        with self._load_lock:
            self._runs = {}

    def publish_maps(self, rows: Sequence[tuple[str, int, bytes, dict[str, bytes]]]) -> None:
        """Committed maps from the writer process: (run, version, encoded maps, and the
        FreeSeats it had of some classes, dumped)."""
        trains, layouts = self._trains, self._layouts
        states = []
        for run, version, blob, free in rows:
            number, date = run.split("@")
            train = trains[number]
            view = RunState(run, train, date, decode_maps(blob, train), {}, version)
            view.free = {c: FreeSeats.loads(layouts(train, c), legs) for c, legs in free.items()}
            states.append(view)
        self._install(states)

    def publish(self, states: Sequence[RunState]) -> None:
        """Committed states from the writer: readers get copies of their maps (and of the
        FreeSeats the writer had)."""
        views = []
        for s in states:
            view = RunState(s.run, s.train, s.date, {c: m.copy() for c, m in s.maps.items()}, {}, s.version)
            view.free = {c: f.copy() for c, f in s.free.items()}
            views.append(view)
        self._install(views)

    def _install(self, views: list[RunState]) -> None:
        for v in views:
            v.memo = {}  # read-only: what readers derive may be remembered
        with self._load_lock:  # a reader's load of an older version must not land after this
            for v in views:
                # nor may this land on a newer one: with a shared store a reader may already
                # have loaded a later commit of another process
                current = self._runs.get(v.run)
                if current is None or current.version <= v.version:
                    self._runs[v.run] = v
