"""The batch transaction: many commands, one store transaction, one commit.

The writer hands a batch here. Inside one transaction we check idempotency keys, load the
orders and runs the batch touches (a run's seat maps are re-read only if its stored version
moved since this process last saw it), apply each command with ``core`` to the writer's own run
states, write the changed orders, maps and keys, and commit. Only then are copies of the states
published to readers and the replies released; a transaction that fails drops the states it
touched, and they are built again from the store. A refused command changes nothing; a command
that fails unexpectedly aborts the transaction and the batch is retried without it.
"""

from __future__ import annotations

import logging
import secrets
import struct
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from railtix import limits
from railtix.core.errors import Refusal
from railtix.core.inventory import Layouts, RunState, change_status, hold_lapsed, place_order
from railtix.core.orders import Order, Status, refund_fee
from railtix.core.rides import Ride, today
from railtix.core.timetable import Timetable
from railtix.service.runs import build_state, refresh
from railtix.store.base import Store, Tx, encode_maps
from railtix.wire import render
from railtix.wire.tcp import error_body, ok_body

log = logging.getLogger("railtix")

MUTATIONS = frozenset({"buy", "pay", "cancel", "refund"})

#: Refusals not remembered under their key. ``sold_out`` says what was free at one moment, not
#: what the request was: a retry asks again (and may find a seat someone released). The service
#: also answers it before the writer when the last commit already shows too few seats.
NOT_REMEMBERED = frozenset({"sold_out"})


@dataclass(slots=True)
class Command:
    """One request for the writer. ``body`` is filled with the reply's JSON (without ``id``)."""

    op: str  #: buy | pay | cancel | refund | register | login | sweep
    source: Hashable  #: the connection, for round-robin fairness
    user: int = 0
    req: Any = None
    ride: Ride | None = None
    key: str | None = None
    fingerprint: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    body: bytes | None = None
    #: set only once ``body`` may leave: after the commit (or when nothing was changed). The
    #: body is written during the transaction, so it must not be read before this is True.
    ready: bool = False
    #: the Session waiting for the reply (None for the sweeper's commands)
    session: Any = None
    #: False when the serving process knows the key has no stored reply, so the writer need
    #: not look it up (``Service._mark_new_keys``); True when it may have one or nobody knows
    stored: bool = True


class CommandFailed(Exception):
    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


def key_reused(key: str) -> Refusal:
    return Refusal(
        "key_reused_with_different_request", f"key {key!r} was used for a different request; use a new key"
    )


#: Crockford's base32: no I, L, O or U to misread, and its characters sort as the numbers do
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALUE = {ch: i for i, ch in enumerate(_CROCKFORD)}
#: every 10-bit value as its two characters: an id is eight lookups
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]


def new_order_ids(n: int, now: float, after: str | None) -> list[str]:
    """``n`` order ids, each greater than ``after`` and the one before it.

    An id is 'E' and 16 Crockford base32 characters of an 80-bit number: the milliseconds
    since 1970 (48 bits), then 32 random bits. The random half keeps ids unguessable; the time
    half makes new orders land at the end of the orders index instead of on random pages (each
    of which a commit writes whole). Ids made in one millisecond step up from the first by
    random 24-bit strides.

    With SQLite ids are unique by construction: the writer holds the store's one write lock and
    starts above the greatest id stored (``after``). PostgreSQL writers of different runs work
    at once and may start from the same ``after``: two batches of 2,048 buys in the same
    millisecond share an id about once in 4,000 such pairs. The primary key refuses the second,
    and ``Batch.apply`` tries the batch once more, with new ids.
    """
    prev = _value(after)
    base = int(now * 1000) << 32
    out = []
    for r in struct.unpack(f">{n}I", secrets.token_bytes(4 * n)):
        v = base | r
        if v <= prev:  # same millisecond, or a clock behind the stored ids
            v = prev + 1 + (r >> 8)
        prev = v
        out.append("E" + "".join([_PAIRS[(v >> s) & 1023] for s in (70, 60, 50, 40, 30, 20, 10, 0)]))
    return out


def _value(order_id: str | None) -> int:
    """The number in an id of this format; 0 for None and for ids of another format (the older
    random ids have no '0' or '1': they sort above 'E2', where time-ordered ids will not be
    for two centuries)."""
    if order_id is None or len(order_id) != 17 or not "E0" <= order_id < "E2":
        return 0
    v = 0
    for ch in order_id[1:]:
        d = _VALUE.get(ch)
        if d is None:
            return 0
        v = v * 32 + d
    return v


class Views(Protocol):
    """Where committed seat maps go for readers: the RunCache, or the writer process's report."""

    def publish(self, states: Sequence[RunState]) -> None: ...

    def forget(self, runs: list[str]) -> None: ...

    def forget_before(self, day: str) -> None: ...


class Batch:
    """Applies batches for one process. Lives in the writer thread or the writer process."""

    def __init__(
        self, store: Store, cache: Views, timetable: Timetable, hold_s: float,
    ) -> None:
        self.store = store
        self.cache = cache
        self.timetable = timetable
        self.layouts = Layouts()
        self.hold_s = hold_s
        self.after_commit: list[Callable[[], None]] = []
        #: the writer's own working state of each run, with its passenger index; valid while
        #: its version equals the stored one. Readers never see these objects. At most the runs
        #: on sale (trains x presale days): past dates are dropped when the day changes.
        self.states: dict[str, RunState] = {}
        #: the orders this writer made last, as last committed (``limits.writer_orders_kept``),
        #: read instead of the store while no other process writes it (``store.shared``)
        self.kept: OrderedDict[str, Order] = OrderedDict()
        self._day = ""

    def apply(self, cmds: list[Command], now: float) -> None:
        """Fill every command's ``body``; retry without commands that fail unexpectedly, and once
        more when the commit itself fails."""
        day = today(now).isoformat()
        if day != self._day:  # runs of past dates are sold no more: forget them, once a day
            self._day = day
            self.states = {r: s for r, s in self.states.items() if s.date >= day}
            self.cache.forget_before(day)
        todo = list(cmds)
        retried = False
        while todo:
            try:
                self._once(todo, now)
                return
            except CommandFailed as f:
                bad = todo.pop(f.index)
                bad.body = error_body(Refusal("internal_error", "the request failed; nothing was changed"))
                for c in todo:
                    c.body = None
            except Exception:
                if not retried:  # a lost race for an order id, a lock timeout: once more
                    retried = True
                    log.warning("a batch of %d failed to commit; trying it once more", len(todo), exc_info=True)
                    for c in todo:
                        c.body = None
                    continue
                for c in todo:
                    c.body = error_body(
                        Refusal("internal_error", "the database could not commit; nothing was changed")
                    )
                return

    def _once(self, cmds: list[Command], now: float) -> None:
        self.after_commit = []
        tx = self.store.begin()
        run: _Run | None = None
        try:
            run = _Run(self, tx, cmds, now)
            for i, c in enumerate(cmds):
                try:
                    run.one(c)
                except Exception as e:
                    raise CommandFailed(i) from e
            run.write()
            tx.commit()
        except BaseException:
            tx.rollback()
            for r in run.states if run is not None else ():
                self.states.pop(r, None)  # mutated in memory but never committed
            raise
        # committed: nothing below may turn the replies into errors
        try:
            self._keep(run.changed.values())
            self.cache.publish([run.states[r] for r in run.dirty])
        except Exception:
            log.exception("publishing committed runs failed; readers will reload them")
            self.kept.clear()
            self.cache.forget(list(run.dirty))
        for action in self.after_commit:
            try:
                action()
            except Exception:
                log.exception("an after-commit action failed")

    def _keep(self, orders: Iterable[Order]) -> None:
        kept = self.kept
        if self.store.shared:  # another process may change them: each is read from the store
            kept.clear()
            return
        for o in orders:
            kept[o.id] = o  # a changed order keeps its place: the oldest orders go first
        while len(kept) > limits.writer_orders_kept:
            kept.popitem(last=False)

    def orders(self, tx: Tx, ids: list[str]) -> dict[str, Order]:
        """The orders of these ids that exist: those kept from this writer's commits (none
        while the store is shared), the rest from the store."""
        kept = self.kept
        found = {i: o for i in ids if (o := kept.get(i)) is not None}
        rest = [i for i in ids if i not in found]
        if rest:
            found.update(tx.orders(rest))
        return found


class _Run:
    """The working set of one attempt at a batch."""

    def __init__(self, batch: Batch, tx: Tx, cmds: list[Command], now: float) -> None:
        self.b = batch
        self.tx = tx
        self.now = now
        # the lock order of every batch: new user names, keys, orders, runs (each sorted)
        names = sorted({c.args["name"] for c in cmds if c.op == "register"})
        if names:
            tx.lock_names(names)
        pairs = list({(c.user, c.key) for c in cmds if c.key is not None and c.stored})
        #: remembered replies: those stored before this batch and those made in it
        self.keys = tx.keys(pairs) if pairs else {}
        self.new_keys: list[tuple[int, str, str, bytes]] = []
        self.changed: dict[str, Order] = {}
        self.dirty: set[str] = set()
        ids = [c.req.order for c in cmds if c.op in ("pay", "cancel", "refund")]
        self.orders: dict[str, Order] = batch.orders(tx, ids) if ids else {}
        for c in cmds:
            if c.op == "sweep":
                lapsed = tx.held_until_before(now, limits.sweep_batch_max)
                c.args["orders"] = [o.id for o in lapsed]
                self.orders.update((o.id, o) for o in lapsed)
        runs = {c.ride.run for c in cmds if c.ride is not None} | {o.run for o in self.orders.values()}
        self.versions = tx.lock_runs(sorted(runs)) if runs else {}
        self.states: dict[str, RunState] = {}
        buys = sum(1 for c in cmds if c.op == "buy")
        #: taken from the front: ids increase in the order the orders are placed
        self.ids = deque(new_order_ids(buys, now, tx.last_order_id()) if buys else ())
        self.created: set[str] = set()

    def state(self, train_no: str, date: str) -> RunState:
        run = f"{train_no}@{date}"
        s = self.states.get(run)
        if s is None:
            s = self.b.states.get(run)
            stored = self.versions.get(run, 0)
            if s is None:
                train = self.b.timetable.train_by_number[train_no]
                s = build_state(train, date, self.tx.run_row(run), self.tx.live_orders(run))
                self.b.states[run] = s
            elif s.version != stored:
                # another process sold on this run: fresh maps, and the passengers of the
                # orders written since our version
                refresh(s, self.tx.run_row(run), self.tx.orders_since(run, s.version))
            self.states[run] = s
        return s

    def save(self, order: Order, *, maps_changed: bool = True) -> None:
        self.orders[order.id] = order
        self.changed[order.id] = order
        if maps_changed:
            self.dirty.add(order.run)

    def remember(self, c: Command) -> None:
        if c.key is not None and c.body is not None:
            self.keys[(c.user, c.key)] = (c.fingerprint, c.body)
            self.new_keys.append((c.user, c.key, c.fingerprint, c.body))

    def mine(self, c: Command) -> Order:
        o = self.orders.get(c.req.order)
        if o is None or o.user != c.user:
            raise Refusal("not_found", f"you have no order {c.req.order}")
        return o

    def one(self, c: Command) -> None:
        if c.key is not None:
            hit = self.keys.get((c.user, c.key))
            if hit is not None:
                fingerprint, body = hit
                c.body = body if fingerprint == c.fingerprint else error_body(key_reused(c.key))
                return
        try:
            getattr(self, "_" + c.op)(c)
        except Refusal as r:
            c.body = error_body(r)
            if r.code in NOT_REMEMBERED:
                return
        self.remember(c)

    # --- the commands -------------------------------------------------------------------
    def _buy(self, c: Command) -> None:
        ride, req = c.ride, c.req
        assert ride is not None
        s = self.state(ride.train.number, ride.date)
        order = place_order(
            s, self.b.layouts, self.b.timetable,
            order_id=self.ids.popleft(), user=c.user, start=ride.start, end=ride.end,
            seat_class=req.seat_class,
            passengers=req.passengers,
            letters=req.seats, now=self.now, departs=ride.departs, hold_s=self.b.hold_s,
        )
        self.save(order)
        self.created.add(order.id)
        c.body = render.order_body(order)

    def _pay(self, c: Command) -> None:
        o = self.mine(c)
        if o.status is Status.EXPIRED:  # the sweeper got there first: same answer as before it
            raise Refusal("hold_expired", f"order {o.id} was not paid in time; its seats are released")
        s = self.state(o.train, o.date)
        if hold_lapsed(o, self.now):
            self.save(change_status(s, o, "expire", self.now))
            c.body = error_body(Refusal("hold_expired", f"order {o.id} was not paid in time; its seats are released"))
            return
        paid = change_status(s, o, "pay", self.now)
        self.save(paid, maps_changed=False)
        c.body = render.order_body(paid)

    def _cancel(self, c: Command) -> None:
        o = self.mine(c)
        s = self.state(o.train, o.date)
        event = "expire" if hold_lapsed(o, self.now) else "cancel"
        done = change_status(s, o, event, self.now)
        self.save(done)
        c.body = render.order_body(done)

    def _refund(self, c: Command) -> None:
        o = self.mine(c)
        if o.status is not Status.PAID:
            raise Refusal("order_not_refundable", f"order {o.id} is {o.status.value}; only paid orders are refunded")
        fee = sum(refund_fee(t.price, o.departs, self.now) for t in o.tickets)
        s = self.state(o.train, o.date)
        done = change_status(s, o, "refund", self.now, refund=o.price - fee, fee=fee)
        self.save(done)
        c.body = render.order_body(done)

    def _sweep(self, c: Command) -> None:
        expired = 0
        for oid in c.args.get("orders", []):
            o = self.orders[oid]
            if hold_lapsed(o, self.now):
                self.save(change_status(self.state(o.train, o.date), o, "expire", self.now))
                expired += 1
        c.body = ok_body({"expired": expired})

    def _register(self, c: Command) -> None:
        name = c.args["name"]
        uid = self.tx.add_user(name, c.args["pw_hash"], self.now)
        if uid is None:
            raise Refusal("user_exists", f"the user name {name!r} is taken")
        c.body = ok_body({"user": name})

    def _login(self, c: Command) -> None:
        self.tx.add_token(c.args["token_hash"], c.user, c.args["expires"])
        c.body = ok_body(
            {"token": c.args["token"], "user": c.args["name"], "expires": render.when(c.args["expires"])}
        )
        cache_token = c.args.get("cache")
        if cache_token is not None:
            self.b.after_commit.append(cache_token)

    def write(self) -> None:
        rows = []
        for run in sorted(self.dirty):
            s = self.states[run]
            s.version = self.versions.get(run, 0) + 1
            rows.append((run, s.version, encode_maps(s.maps)))
        if rows:
            self.tx.put_runs(rows)
        if self.changed:
            new: list[tuple[Order, int]] = []
            changed: list[tuple[Order, int | None]] = []
            for o in self.changed.values():
                if o.id in self.created:
                    new.append((o, self.states[o.run].version))
                else:  # the run's new version where its seats changed, else the order keeps its own
                    changed.append((o, self.states[o.run].version if o.run in self.dirty else None))
            self.tx.put_orders(new, changed)
        if self.new_keys:
            self.tx.put_keys(self.new_keys)

