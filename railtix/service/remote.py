"""The batch transaction in a process of its own: the writer's work off the event loop's GIL.

In one process the event loop and the writer thread take turns holding one interpreter lock:
while the writer allocates seats and builds rows, no connection is read, and every SQLite call
hands the lock back and forth. Here the serving process keeps the writer's queue (bounded,
round-robin, one batch at a time) but sends each batch down a pipe to a child process that owns
``Batch``: it applies the batch in one transaction, commits, and sends back each command's
reply body and the seat maps of the runs it changed. Replies still leave only after the commit:
the child answers only once ``Batch.apply`` has returned.

The pipe carries msgpack (msgspec): a batch is ``now`` and one tuple per command; requests go
as their own Structs, rides as the indexes the serving process already checked. Login's
after-commit step (remembering the new token) runs in the serving process, for a login whose
reply is ``ok`` (only a committed login has one).

If the child dies, the batch it held has an unknown outcome: its commands are answered with
``internal_error`` saying so (a retry with the same key is safe: it returns the first reply if
there was one), the readers' views are dropped, and a new child is started for the next batch.
A child found dead before a batch is sent costs nothing but the restart. The child ignores
SIGINT, which reaches the whole process group: the parent drains its queue through it and then
closes the pipe. A SIGTERM sent to the whole group (a service manager's stop) ends the child at
once: the batch it held is answered as above and a new child drains the rest. Once stopped, no
new child is started.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import signal
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from railtix.core.errors import Refusal
from railtix.core.inventory import RunState
from railtix.core.rides import Ride
from railtix.service.batch import Batch, Command
from railtix.service.runs import RunCache
from railtix.store.base import Store, encode_maps
from railtix.wire import messages as m
from railtix.wire.tcp import error_body

log = logging.getLogger("railtix")

#: Seconds the child gets to finish and exit after the serving process closes the pipe.
stop_timeout_s = 10.0

# (op, user, key, fingerprint, args, req, ride: (train, date, start, end, departs) | None)
_Cmd = tuple[str, int, str | None, str, dict[str, Any], m.Request | None, tuple[str, str, int, int, float] | None]


class _Batch(msgspec.Struct, array_like=True):
    now: float
    cmds: list[_Cmd]


class _Done(msgspec.Struct, array_like=True):
    bodies: list[bytes | None]
    #: runs committed by this batch: (run, version, maps), for the readers' views
    views: list[tuple[str, int, bytes]]
    #: views to drop (a publish that failed in the child) and the first day still on sale
    forget: list[str]
    forget_before: str | None


_encoder = msgspec.msgpack.Encoder()


class _Recorder:
    """Stands in for the readers' RunCache inside the child: remembers what to tell the parent."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget what was reported for the last batch."""
        self.views: list[tuple[str, int, bytes]] = []
        self.forgotten: list[str] = []
        self.before: str | None = None

    def publish(self, states: Sequence[RunState]) -> None:
        self.views.extend((s.run, s.version, encode_maps(s.maps)) for s in states)

    def forget(self, runs: list[str]) -> None:
        self.forgotten.extend(runs)

    def forget_before(self, day: str) -> None:
        self.before = day


def _child(conn: Connection, location: str, shared: bool, hold_s: float) -> None:
    """The writer process: apply each batch that arrives, answer, until the pipe closes."""
    # Ctrl-C reaches the whole group; the parent drains its queue through us and then closes
    # the pipe, which is our signal to finish. SIGTERM keeps its default: it is how Python's
    # multiprocessing ends a child at exit when the parent could not stop it in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from railtix.store import open_store

    store = open_store(location)
    store.shared = shared
    timetable = store.get_timetable()
    assert timetable is not None, "the serving process stores the timetable before starting us"
    recorder = _Recorder()
    batch = Batch(store, recorder, timetable, hold_s)
    decoder = msgspec.msgpack.Decoder(_Batch)
    trains = timetable.train_by_number
    gc.freeze()  # the timetable and modules stay: full collections need not walk them
    try:
        while True:
            try:
                raw = conn.recv_bytes()
            except EOFError:
                return
            got = decoder.decode(raw)
            cmds = []
            for op, user, key, print_, args, req, ride in got.cmds:
                r = None if ride is None else Ride(trains[ride[0]], ride[1], ride[2], ride[3], ride[4])
                cmds.append(Command(op, source=None, user=user, req=req, ride=r, key=key, fingerprint=print_, args=args))
            recorder.reset()
            try:
                batch.apply(cmds, got.now)
            except Exception:
                log.exception("batch failed")
                for c in cmds:
                    c.body = error_body(Refusal("internal_error", "the batch failed; nothing was changed"))
            conn.send_bytes(_encoder.encode(
                _Done([c.body for c in cmds], recorder.views, recorder.forgotten, recorder.before)
            ))
    finally:
        store.close()


class WriterProcess:
    """The serving process's end of the pipe: ``apply`` has the same contract as ``Batch.apply``."""

    def __init__(self, store: Store, hold_s: float, cache: RunCache) -> None:
        self._store = store
        self._hold_s = hold_s
        self._cache = cache
        self._decoder = msgspec.msgpack.Decoder(_Done)
        self._ctx = multiprocessing.get_context("spawn")  # not fork: the parent has threads
        self._conn: Connection | None = None
        self._proc: Any = None
        self._stopped = False

    def start(self) -> None:
        ours, theirs = self._ctx.Pipe()
        args = (theirs, self._store.location, self._store.shared, self._hold_s)
        proc = self._ctx.Process(target=_child, args=args, name="railtix-writer", daemon=True)
        proc.start()
        theirs.close()
        self._conn, self._proc = ours, proc

    def apply(self, cmds: list[Command], now: float) -> None:
        """Fill every command's ``body`` from the child's transaction (and publish its maps)."""
        if self._stopped:  # the writer thread outlived its grace: answer, start nothing
            stopping = error_body(Refusal("shutting_down", "the server is stopping"))
            for c in cmds:
                c.body = stopping
            return
        wire: list[_Cmd] = []
        for c in cmds:
            args = c.args
            if "cache" in args:  # a callable: it stays here and runs after an ok reply
                args = {k: v for k, v in args.items() if k != "cache"}
            ride = c.ride
            wire.append((
                c.op, c.user, c.key, c.fingerprint, args,
                c.req if c.op in ("buy", "pay", "cancel", "refund") else None,
                None if ride is None else (ride.train.number, ride.date, ride.start, ride.end, ride.departs),
            ))
        if self._proc is None or not self._proc.is_alive():  # died while idle: nothing was sent
            if self._proc is not None:
                log.error("the writer process had stopped (exit code %s); starting another", self._proc.exitcode)
                self._lost()
            self.start()
        try:
            assert self._conn is not None
            self._conn.send_bytes(_encoder.encode(_Batch(now, wire)))
            done = self._decoder.decode(self._conn.recv_bytes())
        except (EOFError, OSError, msgspec.DecodeError):
            log.exception("the writer process stopped or answered nonsense; starting another")
            self._lost()
            unknown = error_body(Refusal(
                "internal_error",
                "the writer stopped while this request was being written: it may or may not have "
                "been applied; send it again with the same key to find out",
            ))
            for c in cmds:
                c.body = unknown
            return
        for c, body in zip(cmds, done.bodies, strict=True):
            c.body = body
        # committed: nothing below may turn the replies into errors
        try:
            self._after_commit(cmds, done)
        except Exception:
            log.exception("publishing a committed batch failed; readers will reload")
            self._cache.clear()

    def _after_commit(self, cmds: list[Command], done: _Done) -> None:
        cache = self._cache
        if done.forget_before is not None:
            cache.forget_before(done.forget_before)
        if done.forget:
            cache.forget(done.forget)
        if done.views:
            cache.publish_maps(done.views)
        for c in cmds:
            remember = c.args.get("cache") if c.op == "login" else None
            if remember is not None and c.body is not None and c.body.startswith(b'{"ok":true'):
                try:
                    remember()
                except Exception:
                    log.exception("an after-commit action failed")

    def _lost(self) -> None:
        """The child is gone or useless: make sure it is gone, forget what readers were shown,
        and start afresh with the next batch."""
        self._cache.clear()
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None:
            if self._proc.is_alive():  # it must not write on behind our back
                self._proc.kill()
            self._proc.join(stop_timeout_s)
        self._conn = self._proc = None

    def stop(self) -> None:
        self._stopped = True
        if self._conn is not None:
            self._conn.close()  # EOF: the child closes its store and exits
        if self._proc is not None:
            self._proc.join(stop_timeout_s)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(1)
        self._conn = self._proc = None
