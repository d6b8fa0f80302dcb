"""The service: every request of every transport goes through ``dispatch``.

Reads (hello, stations, search, train, orders, order) are answered at once from committed
state and never wait for the writer. Mutations are validated here against the timetable and
the clock, then queued for the writer, and answered after their batch commits. Password hashing
runs in a small bounded pool so that it stalls no connection.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec

import railtix
from railtix import limits
from railtix.core import rides
from railtix.core.errors import Refusal
from railtix.core.inventory import no_seats
from railtix.core.orders import id_problem, masked
from railtix.core.seats import available
from railtix.core.timetable import Timetable, ride_mask, validate
from railtix.service import auth, keyfilter
from railtix.service.batch import MUTATIONS, Batch, Command, key_reused
from railtix.service.keyfilter import KeyFilter
from railtix.service.remote import WriterProcess
from railtix.service.runs import RunCache
from railtix.service.session import Session, Waker
from railtix.service.writer import Writer
from railtix.store import open_store
from railtix.store.base import Store
from railtix.wire import messages as m
from railtix.wire import render
from railtix.wire.tcp import encode_error, encode_ok, error_body, with_id

log = logging.getLogger("railtix")

Clock = Callable[[], float]

#: Tokens remembered in memory per process (beyond this the cache starts afresh; the store
#: still knows every token).
token_cache_max = 100_000

_fingerprint_encoder = msgspec.json.Encoder()


def fingerprint(req: Any) -> str:
    """What the request asks for, without its id or token: equal requests, equal prints."""
    same = msgspec.structs.replace(req, id=None, token="")
    return hashlib.blake2b(_fingerprint_encoder.encode(same), digest_size=12).hexdigest()


def load_timetable(store: Store, timetable: Timetable | None = None) -> Timetable:
    """The store's timetable; on first start, the given one or the demo timetable."""
    found = store.get_timetable()
    if found is not None:
        return found
    if timetable is None:
        from railtix.demo.timetable import demo_timetable

        timetable = demo_timetable()
    problems = validate(timetable)
    if problems:
        raise ValueError("timetable is not usable: " + "; ".join(problems[:5]))
    store.put_timetable(timetable)
    return timetable


class Service:
    def __init__(
        self,
        store: Store,
        timetable: Timetable | None = None,
        *,
        hold_minutes: float = limits.hold_minutes_default,
        clock: Clock = time.time,
        sweep_interval_s: float = limits.sweep_interval_s,
        writer_process: bool = False,
    ) -> None:
        self.store = store
        self.timetable = load_timetable(store, timetable)
        self.clock = clock
        self.hold_s = hold_minutes * 60
        self.cache = RunCache(store, self.timetable.train_by_number)
        self._ride = rides.RideMemo(self.timetable, limits.presale_days, limits.ride_memo_max)
        self._sold_out_bodies: dict[tuple[str, str, str], bytes] = {}
        #: where batches are applied: a thread of this process, or a process of its own
        #: (``remote``), whose work then no longer competes with the event loop for the GIL
        self.batch: Batch | WriterProcess
        if writer_process:
            self.batch = WriterProcess(store, self.hold_s, self.cache)
            self.writer = Writer(self._send, depth=limits.writer_batches_in_flight)
        else:
            self.batch = Batch(store, self.cache, self.timetable, self.hold_s)
            self.writer = Writer(self._apply)
        self._auth = ThreadPoolExecutor(limits.auth_workers, thread_name_prefix="railtix-auth")
        self._auth_waiting = 0
        self._auth_lock = threading.Lock()
        self._tokens: dict[str, tuple[int, float]] = {}
        #: (user, key) of the mutations queued or in a batch, with how many: a buy answered
        #: ``sold_out`` before the writer must not be one whose key is still being written
        self._pending: dict[tuple[int, str], int] = {}
        self._pending_lock = threading.Lock()
        #: keys that may have a stored reply (None: ask the store every time); made at start,
        #: once the serving model has said whether other processes share the store
        self._keys: KeyFilter | None = None
        self._stop = threading.Event()
        self._sweep_interval_s = sweep_interval_s
        self._sweeper = threading.Thread(target=self._sweep_loop, name="railtix-sweeper", daemon=True)
        self.stopping = False
        self._handlers: dict[type, Callable[[Session, Any], None]] = {
            m.Hello: self._hello,
            m.Register: self._register,
            m.Login: self._login,
            m.Stations: self._stations,
            m.Search: self._search,
            m.TrainInfo: self._train,
            m.Buy: self._mutate,
            m.Pay: self._mutate,
            m.Cancel: self._mutate,
            m.Refund: self._mutate,
            m.Orders: self._orders,
            m.OrderGet: self._order,
        }

    @classmethod
    def open(cls, database: str, **kwargs: Any) -> Service:
        return cls(open_store(database), **kwargs)

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> Service:
        """Claim the store and start writing. Given the event loop it is called on, a writer
        process's batches and replies go through that loop rather than two threads of their
        own (see writer.py); ``stop`` must then be called from another thread."""
        loop = loop if isinstance(self.batch, WriterProcess) else None  # a Batch needs its thread
        try:
            self.store.claim()  # InUse when another server would break what this one trusts
            if not self.store.shared:
                self._keys = keyfilter.load(self.store.all_keys())
            if isinstance(self.batch, WriterProcess):
                self.batch.start(loop)
        except Exception:
            if isinstance(self.batch, WriterProcess):
                self.batch.stop()
            self.store.close()  # and with it the claim: a retry is not told the database is in use
            raise
        self.writer.start(loop)
        # What exists now (timetable, routes, the key filter, imported modules) lives as long as
        # the server: move it out of the collector's way, so that a full collection under load
        # walks only what the load made.
        gc.freeze()
        self._sweeper.start()
        return self

    def stop(self) -> None:
        """Refuse new work, finish what was accepted, then close the store."""
        self.stopping = True
        self._stop.set()
        self._auth.shutdown(wait=True)
        self.writer.stop()
        if isinstance(self.batch, WriterProcess):
            self.batch.stop()
        self.store.close()

    def session(self, waker: Waker) -> Session:
        return Session(self, waker)

    # --- dispatch -----------------------------------------------------------------------------
    def dispatch(self, session: Session, req: Any) -> None:
        try:
            self._handlers[type(req)](session, req)
        except Refusal as r:
            session.reply(encode_error(req.id, r))
        except Exception:
            log.exception("request failed: %s", type(req).__name__)
            session.reply(encode_error(req.id, Refusal("internal_error", "the request failed; nothing was changed")))

    def _submit(self, session: Session, command: Command) -> None:
        command.session = session
        session.wait_for(command)  # the slot first: the writer may answer before submit returns
        pair = (command.user, command.key) if command.key is not None else None
        if pair is not None:
            with self._pending_lock:
                self._pending[pair] = self._pending.get(pair, 0) + 1
        try:
            self._queue(command)
        except Refusal:
            session.slots.pop()
            if pair is not None:
                self._done_with(pair)
            raise

    def _done_with(self, *pairs: tuple[int, str]) -> None:
        with self._pending_lock:
            pending = self._pending
            for pair in pairs:
                n = pending.pop(pair, 0) - 1
                if n > 0:
                    pending[pair] = n

    def _queue(self, command: Command) -> None:
        """Hand a command to the writer, or refuse: stopping, or the queue is full."""
        if self.stopping:
            raise Refusal("shutting_down", "the server is stopping")
        if not self.writer.submit(command.source, command):
            raise Refusal("busy", "too many requests are waiting for the writer; try again in a moment")

    def _mark_new_keys(self, commands: list[Command]) -> None:
        """Tell the writer which keys cannot have a stored reply, so that it looks up only the
        others: a key the filter has never seen, with no other request under it queued or being
        written. Pending is read before the filter: ``_wake`` adds a key to the filter before it
        stops being pending, so a request that has just been answered is seen in one or the
        other. Without a filter (a store other processes write) every key is looked up."""
        keys = self._keys
        if keys is None:
            return
        with self._pending_lock:  # one pass, each key's pending count read before the filter
            pending = self._pending
            for c in commands:
                if c.key is not None and c.session is not None:
                    c.stored = pending.get((c.user, c.key), 0) > 1 or keys.may_exist(c.user, c.key)

    def _apply(self, commands: list[Command], done: Callable[[], None]) -> None:
        """The writer's step: one transaction for the batch, then wake the waiting sessions."""
        assert isinstance(self.batch, Batch)
        try:
            self._mark_new_keys(commands)
            self.batch.apply(commands, self.clock())
        except BaseException:  # never leave a client waiting, whatever happened
            log.exception("batch failed")
            for c in commands:  # whatever bodies were written, nothing of them was committed
                c.body = error_body(Refusal("internal_error", "the batch failed; nothing was changed"))
        self._wake(commands)
        done()

    def _send(self, commands: list[Command], done: Callable[[], None]) -> None:
        """The writer's step with a writer process: send the batch on; its replies wake the
        sessions from the process's receiver thread once it is committed."""
        assert isinstance(self.batch, WriterProcess)
        claimed = threading.Lock()  # the batch is answered once, by whoever comes first

        def answer(body: bytes | None = None) -> None:
            if not claimed.acquire(blocking=False):
                return  # the receiver, or a send that refused it, answered it already
            if body is not None:
                for c in commands:
                    c.body = body
            try:
                self._wake(commands)
            finally:
                done()  # or the batch's slot in flight is never given back

        try:
            self._mark_new_keys(commands)
            self.batch.send(commands, self.clock(), answer)
        except BaseException:  # not sent: nothing was changed
            log.exception("sending a batch failed")
            answer(error_body(Refusal("internal_error", "the batch failed; nothing was changed")))

    def _wake(self, commands: list[Command]) -> None:
        """Release the replies (they are committed, or nothing was changed) and wake sessions."""
        mine: list[tuple[int, str]] = []
        # grouped by the waker itself: the bound methods of one server compare equal, so a
        # batch wakes each serving loop once, however many of its connections it answered
        by_waker: dict[Waker, dict[int, Session]] = {}
        waker: Waker | None = None
        group: dict[int, Session] = {}
        for c in commands:
            s = c.session
            if s is None:
                continue
            if c.key is not None:
                mine.append((c.user, c.key))
            if s.waker is not waker:  # a batch's sessions mostly share one waker object
                waker = s.waker
                group = by_waker.setdefault(waker, {})
            group[id(s)] = s
        if self._keys is not None:  # into the filter before they stop being pending
            self._keys.add_many(mine)
        for c in commands:
            c.ready = True
        self._done_with(*mine)
        for waker, sessions in by_waker.items():
            try:
                waker(list(sessions.values()))
            except Exception:  # a closed loop, say: the writer must live on for the others
                log.exception("waking a serving loop failed")

    # --- users --------------------------------------------------------------------------------
    def user_of(self, token: str) -> int:
        # remembered by the token itself, which every request carries anyway: the store keeps
        # only its hash, and hashing every request to look it up cost more than the lookup
        now = self.clock()
        hit = self._tokens.get(token)
        if hit is None:
            found = self.store.token_user(auth.token_hash(token), now)
            if found is None:
                raise Refusal("unauthorized", "log in first; the token is missing, unknown or expired")
            # the store is asked again after an hour at most (a token revoked elsewhere)
            uid, expires = found
            hit = (uid, min(expires, now + 3600))
            if len(self._tokens) >= token_cache_max:
                self._tokens.clear()
            self._tokens[token] = hit
        if hit[1] <= now:
            self._tokens.pop(token, None)  # another thread may have dropped it first
            return self.user_of(token)
        return hit[0]

    def _in_auth_pool(self, session: Session, command: Command, work: Callable[[], None]) -> None:
        if self.stopping:
            raise Refusal("shutting_down", "the server is stopping")
        with self._auth_lock:
            if self._auth_waiting >= limits.auth_queue_max:
                raise Refusal("busy", "too many logins at once; try again in a moment")
            self._auth_waiting += 1
        command.session = session
        session.wait_for(command)

        def run() -> None:
            try:
                work()
            except Refusal as r:
                command.body = error_body(r)
                self._wake([command])
            except Exception:
                log.exception("auth failed")
                command.body = error_body(Refusal("internal_error", "login failed; try again"))
                self._wake([command])
            finally:
                with self._auth_lock:
                    self._auth_waiting -= 1

        try:
            self._auth.submit(run)
        except RuntimeError:  # the pool has been shut down: the server is stopping
            session.slots.pop()
            with self._auth_lock:
                self._auth_waiting -= 1
            raise Refusal("shutting_down", "the server is stopping") from None

    def _register(self, session: Session, req: m.Register) -> None:
        if len(req.password) < limits.password_length_min:
            raise Refusal("weak_password", f"a password needs at least {limits.password_length_min} characters")
        command = Command("register", source=id(session), req=req)

        def work() -> None:
            command.args = {"name": req.user, "pw_hash": auth.hash_password(req.password)}
            self._queue(command)

        self._in_auth_pool(session, command, work)

    def _login(self, session: Session, req: m.Login) -> None:
        command = Command("login", source=id(session), req=req)

        def work() -> None:
            row = self.store.user(req.user)
            ok = auth.check_password(req.password, row[1] if row else auth.DUMMY_HASH)
            if row is None or not ok:
                raise Refusal("bad_credentials", "user name or password is wrong")
            token = auth.new_token()
            h = auth.token_hash(token)
            expires = self.clock() + limits.token_days * 86400
            uid = row[0]
            command.user = uid

            def remember() -> None:
                self._tokens[token] = (uid, min(expires, self.clock() + 3600))

            command.args = {"token": token, "token_hash": h, "expires": expires, "name": req.user, "cache": remember}
            self._queue(command)

        self._in_auth_pool(session, command, work)

    # --- mutations ----------------------------------------------------------------------------
    def _mutate(self, session: Session, req: m.Buy | m.Pay | m.Cancel | m.Refund) -> None:
        now = self.clock()
        hit = self._tokens.get(req.token)  # ``user_of``'s usual case, without its call
        user = hit[0] if hit is not None and now < hit[1] else self.user_of(req.token)
        ride = None
        if type(req) is m.Buy:
            try:
                ride = self._ride(req.train, req.date, req.from_, req.to, now)
            except Refusal:
                # a retry of a buy that succeeded gets its first reply, even once the train
                # has left or the date has passed
                if not self._answered_before(session, req, user):
                    raise
                return
            if self._keys is not None and self._hopeless(ride, req) and (user, req.key) not in self._pending:
                # sold out as of the last commit: answered here, without the writer (see
                # docs/decisions.md). A key that already has a reply gets that reply instead.
                # Only with the key filter: without it every refusal would read the store on
                # this loop (a round trip to PostgreSQL), and the writer's batch reads keys
                # far more cheaply.
                if not self._answered_before(session, req, user):
                    session.reply(with_id(req.id, self._sold_out(ride.train.number, ride.date, req.seat_class)))
                return
            for i, p in enumerate(req.passengers):  # after the gate: a refusal there needs no arithmetic
                problem = id_problem(p.id_no)
                if problem is not None:
                    # a buy remembered before numbers were checked still answers as it did
                    if not self._answered_before(session, req, user):
                        raise Refusal("invalid_field", f"passengers[{i}].id_no: {p.name}'s number {masked(p.id_no)} {problem}")
                    return
        op = req.__struct_config__.tag
        assert op in MUTATIONS
        command = Command(op, source=id(session), user=user, req=req, ride=ride, key=req.key, fingerprint=fingerprint(req))
        self._submit(session, command)

    def _sold_out(self, train: str, date: str, seat_class: str) -> bytes:
        """The gate's refusal body, the same for every ride of a run and class: made once.
        (At the end of a rush most requests are refused here.)"""
        key = (train, date, seat_class)
        body = self._sold_out_bodies.get(key)
        if body is None:
            if len(self._sold_out_bodies) >= limits.ride_memo_max:  # one per run and class: at
                self._sold_out_bodies.clear()  # most as many as rides remembered, and as cheap
            body = self._sold_out_bodies[key] = error_body(no_seats(train, date, seat_class))
        return body

    def _answered_before(self, session: Session, req: m.Buy, user: int) -> bool:
        """Answer a buy refused before the writer with the reply remembered under its key, if
        it has one (a retry answers as its first try did); False when it has none. The key
        filter, where there is one, spares the store's read for a key never used."""
        keys = self._keys
        if keys is not None and not keys.may_exist(user, req.key):
            return False
        stored = self.store.stored_reply(user, req.key)
        if stored is None:
            return False
        self._replay(session, req, stored)
        return True

    @staticmethod
    def _replay(session: Session, req: m.Buy, stored: tuple[str, bytes]) -> None:
        """Answer with the reply remembered under the request's key (if it was this request).
        The request's fingerprint is made only here and for the writer: a refusal needs none."""
        fingerprint_then, body = stored
        same = fingerprint_then == fingerprint(req)
        session.reply(with_id(req.id, body if same else error_body(key_reused(req.key))))

    def _hopeless(self, ride: rides.Ride, req: m.Buy) -> bool:
        """True when the committed seat maps leave fewer seats than the party for this ride.

        Decided on the readers' view, as a search would be: the writer can only find fewer
        seats than a commit ago, except for seats released by a cancel, refund or expiry in
        the batch being written, which the next commit shows. An unknown class or an id number
        twice go to the writer, whose refusal says so. A passenger already booked on the run is
        not checked here (readers' views have no passenger index): such a buy on a sold-out
        ride is told ``sold_out`` where the writer would have named the passenger.
        """
        state = self.cache.get(ride.train, ride.date)  # the gate runs only where no other process writes
        if req.seat_class not in state.maps:
            return False
        party = len(req.passengers)
        if party > 1 and len({p.id_no for p in req.passengers}) != party:
            return False
        return rides.seats_left(state, req.seat_class, ride.mask) < party

    # --- reads --------------------------------------------------------------------------------
    def _hello(self, session: Session, req: m.Hello) -> None:
        session.reply(
            encode_ok(
                req.id,
                {
                    "server": "railtix",
                    "version": railtix.__version__,
                    "protocol": railtix.PROTOCOL_VERSION,
                    "ops": list(m.OPS),
                    "limits": {
                        "line_size_max": limits.line_size_max,
                        "in_flight_per_connection_max": limits.in_flight_per_connection_max,
                        "read_deadline_s": limits.read_deadline_s,
                        "passengers_per_order_max": limits.passengers_per_order_max,
                        "presale_days": limits.presale_days,
                        "hold_minutes": self.hold_s / 60,
                    },
                },
            )
        )

    def _stations(self, session: Session, req: m.Stations) -> None:
        session.reply(encode_ok(req.id, {"stations": [render.station(s) for s in self.timetable.stations]}))

    def _search(self, session: Session, req: m.Search) -> None:
        found = rides.search_runs(
            self.timetable, req.from_, req.to, req.date, self.clock(), limits.presale_days, self.cache.many
        )
        session.reply(encode_ok(req.id, {
            "date": found.date, "from": found.origin.code, "to": found.destination.code,
            "trains": render.search_rows(found.trains),
        }))

    def _train(self, session: Session, req: m.TrainInfo) -> None:
        t = rides.train(self.timetable, req.train)
        body: dict[str, Any] = {
            "train": t.number,
            "line": t.line,
            "stops": render.train_stops(self.timetable, t.number, rides.hhmm),
            "seats": {c: len(s) for c, s in t.seats.items()},
        }
        if req.date is not None:
            day = rides.parse_date(req.date, self.clock(), limits.presale_days).isoformat()
            body["date"] = day
            state = self.cache.many([(t, day)])[0]
            full = ride_mask(0, len(t.stops) - 1)
            body["left_whole_way"] = {c: available(occ, full) for c, occ in state.maps.items()}
        session.reply(encode_ok(req.id, body))

    def _orders(self, session: Session, req: m.Orders) -> None:
        user = self.user_of(req.token)
        orders = self.store.orders_of(user, req.limit)
        session.reply(encode_ok(req.id, {"orders": [render.order(o) for o in orders]}))

    def _order(self, session: Session, req: m.OrderGet) -> None:
        user = self.user_of(req.token)
        o = self.store.order(req.order)
        if o is None or o.user != user:
            raise Refusal("not_found", f"you have no order {req.order}")
        session.reply(with_id(req.id, render.order_body(o)))

    # --- hold expiry --------------------------------------------------------------------------
    def _sweep_loop(self) -> None:
        while not self._stop.wait(self._sweep_interval_s):
            try:
                self.sweep()
            except Exception:  # a store hiccup must not end hold expiry for good
                log.exception("sweep failed; trying again in %s s", self._sweep_interval_s)

    def sweep(self) -> None:
        """Queue one expiry pass through the writer (the same path as every other change)."""
        if not self.stopping and self.store.lapsed_holds(self.clock()):
            self.writer.submit("sweeper", Command("sweep", source="sweeper"))
