"""The batch transaction in a process of its own: the writer's work off the event loop's GIL.

In one process the event loop and the writer thread take turns holding one interpreter lock:
while the writer allocates seats and builds rows, no connection is read, and every SQLite call
hands the lock back and forth. Here the serving process keeps the writer's queue (bounded,
round-robin) but sends each batch down a pipe to a child process that owns ``Batch``: it
applies the batch in one transaction, commits, and sends back each command's reply body and
the seat maps of the runs it changed. Replies still leave only after the commit: the child
answers only once ``Batch.apply`` has returned.

Up to ``limits.writer_batches_in_flight`` batches are on their way at once, so that the child
finds the next batch waiting when a commit ends instead of waiting for the serving process to
read the reply and send more; batches that queued up in the pipe are written in one
transaction and answered one reply per batch, in order. A thread of the serving process reads
the replies and wakes the sessions.

The pipes carry msgpack (msgspec): a batch is ``now`` and one tuple per command; requests go
as their own Structs, rides as the indexes the serving process already checked. Login's
after-commit step (remembering the new token) runs in the serving process, for a login whose
reply is ``ok`` (only a committed login has one).

If the child dies, the batches it held have an unknown outcome: their commands are answered
with ``internal_error`` saying so (a retry with the same key is safe: it returns the first
reply if there was one), the readers' views are dropped, and a new child is started for the
next batch. A child found dead before a batch is sent costs nothing but the restart. The child
ignores SIGINT, which reaches the whole process group: the parent drains its queue through it
and then closes the pipe. A SIGTERM sent to the whole group (a service manager's stop) ends the
child at once: what it held is answered as above and a new child drains the rest. Once
stopped, no new child is started.
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import logging
import multiprocessing
import os
import select
import signal
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from railtix import limits
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

# (op, user, key, fingerprint, args, req, ride: (train, date, start, end, departs) | None, stored)
_Cmd = tuple[
    str, int, str | None, str, dict[str, Any], m.Request | None, tuple[str, str, int, int, float] | None, bool
]


class _Batch(msgspec.Struct, array_like=True):
    now: float
    cmds: list[_Cmd]


class _Done(msgspec.Struct, array_like=True):
    bodies: list[bytes | None]
    #: runs committed by this batch: (run, version, maps, FreeSeats by class), for the
    #: readers' views
    views: list[tuple[str, int, bytes, dict[str, bytes]]]
    #: views to drop (a publish that failed in the child) and the first day still on sale
    forget: list[str]
    forget_before: str | None


_encoder = msgspec.msgpack.Encoder()

#: How ``Connection.send_bytes`` frames a message under 2 GiB (a batch is about 1 MB at most):
#: its length, big-endian. The loop writes and reads frames the child's Connection understands.
_HEADER = struct.Struct("!i")


class _Recorder:
    """Stands in for the readers' RunCache inside the child: remembers what to tell the parent."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget what was reported for the last batch."""
        self.views: list[tuple[str, int, bytes, dict[str, bytes]]] = []
        self.forgotten: list[str] = []
        self.before: str | None = None

    def publish(self, states: Sequence[RunState]) -> None:
        self.views.extend(
            (s.run, s.version, encode_maps(s.maps), {c: f.dumps() for c, f in s.free.items()}) for s in states
        )

    def forget(self, runs: list[str]) -> None:
        self.forgotten.extend(runs)

    def forget_before(self, day: str) -> None:
        self.before = day


def _name_this_process(name: bytes) -> None:
    """Show the child by name in top, ``ps -e`` and ``pgrep railtix-writer`` (its command line
    is multiprocessing's); Linux only, and nothing depends on it."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, name[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def _child(incoming: Connection, outgoing: Connection, location: str, shared: bool, hold_s: float) -> None:
    """The writer process: apply what arrives, answer each batch, until the pipe closes.

    Batches that queued up in the pipe while one was being written are applied together, in one
    transaction with one commit, and then answered one reply per batch: the serving process
    matches replies to batches by their order.
    """
    # Ctrl-C reaches the whole group; the parent drains its queue through us and then closes
    # the pipe, which is our signal to finish. SIGTERM keeps its default: it is how Python's
    # multiprocessing ends a child at exit when the parent could not stop it in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _name_this_process(b"railtix-writer")
    from railtix.store import open_store

    store = open_store(location)
    store.shared = shared
    timetable = store.get_timetable()
    assert timetable is not None, "the serving process stores the timetable before starting us"
    recorder = _Recorder()
    batch = Batch(store, recorder, timetable, hold_s)
    decoder = msgspec.msgpack.Decoder(_Batch)
    trains = timetable.train_by_number
    #: the rides of recent batches by their wire form: a rush sends the same few hundred
    #: segments over and over, and a Ride costs more to make than to look up
    rides: dict[tuple[str, str, int, int, float], Ride] = {}
    gc.freeze()  # the timetable and modules stay: full collections need not walk them
    closed = False
    try:
        while not closed:
            try:
                got = [decoder.decode(incoming.recv_bytes())]
            except (EOFError, OSError):  # closed, or closed in the middle of a batch (whose
                return  # sender answers it, not knowing whether it arrived)
            while len(got) < limits.writer_batches_in_flight and incoming.poll(0):
                try:
                    got.append(decoder.decode(incoming.recv_bytes()))
                except (EOFError, OSError):  # write what arrived whole, then stop
                    closed = True
                    break
            parts: list[list[Command]] = []
            for b in got:
                cmds = []
                for op, user, key, print_, args, req, ride, stored in b.cmds:
                    r = None
                    if ride is not None:
                        r = rides.get(ride)
                        if r is None:
                            if len(rides) >= limits.ride_memo_max:
                                rides.clear()
                            r = rides[ride] = Ride(trains[ride[0]], ride[1], ride[2], ride[3], ride[4])
                    cmds.append(Command(
                        op, source=None, user=user, req=req, ride=r, key=key, fingerprint=print_, args=args,
                        stored=stored,
                    ))
                parts.append(cmds)
            everything = [c for cmds in parts for c in cmds]
            recorder.reset()
            try:
                batch.apply(everything, max(b.now for b in got))
            except Exception:
                log.exception("batch failed")
                for c in everything:
                    c.body = error_body(Refusal("internal_error", "the batch failed; nothing was changed"))
            # the first reply carries the published maps: every batch here is committed by then
            views, forgotten, before = recorder.views, recorder.forgotten, recorder.before
            for cmds in parts:
                outgoing.send_bytes(_encoder.encode(_Done([c.body for c in cmds], views, forgotten, before)))
                views, forgotten, before = [], [], None
    finally:
        store.close()


_UNKNOWN = Refusal(
    "internal_error",
    "the writer stopped while this request was being written: it may or may not have been "
    "applied; send it again with the same key to find out",
)


def _widen(end: Connection) -> None:
    """Make a pipe hold a whole batch or reply, so that neither side waits for the other to
    read one in pieces (each piece a handoff of the reader's interpreter lock)."""
    size = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
    if size is None:
        return
    try:
        fcntl.fcntl(end.fileno(), size, limits.writer_pipe_bytes)
    except OSError:  # over /proc/sys/fs/pipe-max-size: the pipe keeps its size and still works
        log.warning("could not widen the writer's pipe to %d bytes", limits.writer_pipe_bytes)


class _Sent:
    """A batch on its way through the child: its commands and what to do once they have bodies."""

    __slots__ = ("cmds", "then")

    def __init__(self, cmds: list[Command], then: Callable[[], None]) -> None:
        self.cmds = cmds
        self.then = then


class _Child:
    """One writer process, the two ends of its pipes, and the batches it holds, oldest first."""

    def __init__(self, ctx: Any, location: str, shared: bool, hold_s: float) -> None:
        down_r, self.down = ctx.Pipe(duplex=False)
        self.up, up_w = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(
            target=_child, args=(down_r, up_w, location, shared, hold_s), name="railtix-writer", daemon=True
        )
        self.proc.start()
        for end in (down_r, up_w):
            _widen(end)
        down_r.close()
        up_w.close()
        self.lock = threading.Lock()
        self.sent: deque[_Sent] = deque()
        #: set by the receiver once the child's end of the pipe is gone: nothing more is sent
        self.dead = False
        self.receiver: threading.Thread | None = None
        #: on an event loop: bytes of batches the pipe had no room for yet, and bytes of
        #: replies read that do not make a whole reply yet
        self.unsent = bytearray()
        self.unread = bytearray()
        #: set once the end of its replies has been handled (what a loop's stop waits for)
        self.ended = threading.Event()


class WriterProcess:
    """The serving process's end of the pipes.

    ``send`` puts a batch on its way and returns; a receiver thread reads the replies, fills
    the commands' bodies, publishes the committed maps and calls the batch's ``then``. Up to
    ``limits.writer_batches_in_flight`` batches are on their way at once (the ``Writer`` counts
    them), so the child finds the next batch waiting when it finishes one and never waits for
    this process to read a reply. One thread sends (the ``Writer``'s): replies are matched to
    batches by their order.
    """

    def __init__(self, store: Store, hold_s: float, cache: RunCache) -> None:
        #: the event loop that reads the replies and writes the batches, when there is one,
        #: and its thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._store = store
        self._hold_s = hold_s
        self._cache = cache
        self._decoder = msgspec.msgpack.Decoder(_Done)
        self._ctx = multiprocessing.get_context("spawn")  # not fork: the parent has threads
        self._child: _Child | None = None
        self._stopped = False
        #: held while deciding to start a child or to stop: none starts once stopped
        self._life = threading.Lock()

    @property
    def _proc(self) -> Any:
        """The current child process, if any (for tests and operators' tools)."""
        return None if self._child is None else self._child.proc

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start a child; its replies are read by a thread, or by ``loop`` (given from the
        loop's thread, whose ``send`` calls must then come from that thread too)."""
        if loop is not None:
            self._loop = loop
            self._loop_thread = threading.get_ident()
        child = _Child(self._ctx, self._store.location, self._store.shared, self._hold_s)
        self._child = child
        if self._loop is None:
            child.receiver = threading.Thread(
                target=self._receive, args=(child,), name="railtix-writer-replies", daemon=True
            )
            child.receiver.start()
        else:
            os.set_blocking(child.down.fileno(), False)  # our ends only: the child's block
            os.set_blocking(child.up.fileno(), False)
            self._loop.add_reader(child.up.fileno(), self._readable, child)

    def send(self, cmds: list[Command], now: float, then: Callable[[], None]) -> None:
        """Send a batch to the child; ``then()`` runs once every command has its body."""
        if self._stopped:  # the writer thread outlived its grace: answer, start nothing
            self._refuse(cmds, then)
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
                c.stored,
            ))
        data = _encoder.encode(_Batch(now, wire))
        while True:
            child = self._child
            if child is not None and not child.dead and child.proc.is_alive():
                with child.lock:
                    if not child.dead:
                        child.sent.append(_Sent(cmds, then))
                        break
            with self._life:
                if self._stopped:  # stopped meanwhile: nothing of ours was sent
                    self._refuse(cmds, then)
                    return
                if child is not None and self._child is child:  # it died; what it held is answered
                    log.error(
                        "the writer process had stopped (exit code %s); starting another", child.proc.exitcode
                    )
                    self._retire(child)
                if self._child is None:
                    self.start()
        try:
            if self._loop is None:
                child.down.send_bytes(data)
            else:
                self._write(child, _HEADER.pack(len(data)) + data)
        except Exception:  # closed under us, the child gone, or anything else mid-write: the
            # batch is already among those on their way, so the receiver answers it with the
            # others ("may or may not have been applied") once the child is ended
            if not self._stopped:  # when stopping, the child still answers what it received
                log.exception("sending a batch to the writer process failed")
                child.proc.kill()

    # --- on an event loop: the pipes as non-blocking file descriptors ------------------------
    def _write(self, child: _Child, frame: bytes) -> None:
        """Write a batch as ``Connection.send_bytes`` frames it, or as much as the pipe takes;
        the loop writes the rest when the child has read some. Blocking here could stall the
        loop while the child waits for the loop to read its replies."""
        if child.unsent:
            child.unsent += frame
            return
        try:
            n = os.write(child.down.fileno(), frame)
        except BlockingIOError:
            n = 0
        if n < len(frame):
            child.unsent += frame[n:]
            assert self._loop is not None
            self._loop.add_writer(child.down.fileno(), self._writable, child)

    def _writable(self, child: _Child) -> None:
        fd = child.down.fileno()
        try:
            n = os.write(fd, child.unsent)
        except BlockingIOError:
            return
        except OSError:  # the child is gone: its end of replies tells the rest
            n = len(child.unsent)
            if not self._stopped:
                log.exception("sending a batch to the writer process failed")
                child.proc.kill()
        del child.unsent[:n]
        if not child.unsent:
            assert self._loop is not None
            self._loop.remove_writer(fd)

    def _readable(self, child: _Child) -> None:
        """Read what the child has written and handle each whole reply; at the end of its
        pipe, answer what it held."""
        try:
            chunk = os.read(child.up.fileno(), limits.writer_pipe_bytes)
        except BlockingIOError:
            return
        except OSError:
            log.exception("reading the writer process failed")
            self._ended(child, broken=True)
            return
        if not chunk:
            self._ended(child, broken=False)
            return
        buf = child.unread
        buf += chunk
        start = 0
        while len(buf) - start >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buf, start)
            if size < 0:  # Connection's header of a message over 2 GiB: never ours
                self._ended(child, broken=True)
                return
            end = start + _HEADER.size + size
            if len(buf) < end:
                break
            with memoryview(buf) as view:
                body = bytes(view[start + _HEADER.size : end])
            start = end
            if not self._received(child, body):
                self._ended(child, broken=True)
                return
        del buf[:start]

    @staticmethod
    def _refuse(cmds: list[Command], then: Callable[[], None]) -> None:
        stopping = error_body(Refusal("shutting_down", "the server is stopping"))
        for c in cmds:
            c.body = stopping
        then()

    def _receive(self, child: _Child) -> None:
        """Read the child's replies in order until its pipe closes; then answer what it held."""
        broken = False
        while True:
            try:
                data = child.up.recv_bytes()
            except (EOFError, OSError):
                break
            except Exception:  # a pipe closed under us, say: end this child, answer what it held
                log.exception("reading the writer process failed")
                broken = True
                break
            if not self._received(child, data):
                broken = True
                break
        self._ended(child, broken)

    def _received(self, child: _Child, data: bytes) -> bool:
        """Handle one reply of the child: bodies, published maps, then the batch's ``then``.
        False when it cannot be the reply of the oldest batch on its way."""
        try:
            done = self._decoder.decode(data)
        except msgspec.DecodeError:
            log.exception("the writer process sent what is not a reply")
            return False
        with child.lock:
            sent = child.sent.popleft() if child.sent else None
            if sent is not None and len(sent.cmds) != len(done.bodies):
                child.sent.appendleft(sent)
                sent = None
        if sent is None:
            log.error("the writer process answered out of step; ending it")
            return False
        for c, body in zip(sent.cmds, done.bodies, strict=True):
            c.body = body
        # committed: nothing below may turn the replies into errors
        try:
            self._after_commit(sent.cmds, done)
        except Exception:
            log.exception("publishing a committed batch failed; readers will reload")
            self._cache.clear()
        self._finish(sent)
        return True

    def _ended(self, child: _Child, broken: bool) -> None:
        """The child's replies have ended: answer the batches it still held, as unknown."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.remove_reader(child.up.fileno())
        self._drop_unsent(child)  # batches that never reached it: among the lost, answered below
        with child.lock:
            child.dead = True
            lost = list(child.sent)
            child.sent.clear()
        if lost or broken:
            log.error("the writer process stopped with %d batches on their way; answering them", len(lost))
            self._cache.clear()  # what it published may not match what it committed
            child.proc.kill()  # it must not write on behind our back
            unknown = error_body(_UNKNOWN)
            for sent in lost:
                for c in sent.cmds:
                    c.body = unknown
                self._finish(sent)
        child.ended.set()

    @staticmethod
    def _finish(sent: _Sent) -> None:
        try:
            sent.then()
        except Exception:  # the receiver must live on: other batches wait on it
            log.exception("answering a written batch failed")

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

    def _retire(self, child: _Child) -> None:
        """Make sure a child is gone and its pipes and receiver are closed."""
        if child.proc.is_alive():
            child.proc.kill()
        child.proc.join(stop_timeout_s)
        if self._loop is not None:  # called on the loop (by send): read its last replies here
            self._drain(child)
        child.down.close()
        if child.receiver is not None:
            child.receiver.join(stop_timeout_s)
        child.up.close()
        if self._child is child:
            self._child = None

    def stop(self) -> None:
        """Close the pipe (the child finishes what it holds, answers, and exits) and wait."""
        with self._life:
            self._stopped = True
            child = self._child
        if child is None:
            return
        if self._loop is None:
            child.down.close()  # EOF: the child writes what it holds, closes its store and exits
        else:
            self._on_loop(lambda: self._close_down(child))
        child.proc.join(stop_timeout_s)
        if child.proc.is_alive():
            child.proc.kill()
            child.proc.join(1)
        if child.receiver is not None:
            child.receiver.join(stop_timeout_s)
        if self._loop is None:
            child.up.close()
        else:
            if not child.ended.wait(stop_timeout_s if self._loop_runs_elsewhere() else 0):
                self._on_loop(lambda: self._drain(child))
            # closed on the loop once it watches it no more; a loop stuck past the timeout
            # keeps the descriptor rather than have it closed under it
            self._on_loop(lambda: child.ended.is_set() and child.up.close())
        self._child = None

    # --- on an event loop: stopping ----------------------------------------------------------
    def _drop_unsent(self, child: _Child) -> None:
        """Forget the bytes the pipe had no room for, and stop watching it for room (the loop
        watches it exactly while there are such bytes)."""
        loop = self._loop
        if child.unsent and loop is not None and not loop.is_closed():
            loop.remove_writer(child.down.fileno())
        child.unsent.clear()

    def _close_down(self, child: _Child) -> None:
        """Close the pipe to the child, on the loop; what never reached the child is answered
        as lost at the end of its replies."""
        self._drop_unsent(child)
        child.down.close()

    def _drain(self, child: _Child) -> None:
        """Read a child that has exited (or been killed) to the end of its replies. Bounded: a
        child that somehow outlived its kill must not freeze the loop; what it held then counts
        as lost."""
        deadline = time.monotonic() + stop_timeout_s
        fd = child.up.fileno()
        while not child.ended.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                log.error("the writer process did not finish its replies; giving them up")
                self._ended(child, broken=True)
                return
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                self._readable(child)

    def _loop_runs_elsewhere(self) -> bool:
        """True when the loop runs on another thread: then only it may touch what it watches."""
        loop = self._loop
        return (
            loop is not None and loop.is_running() and not loop.is_closed()
            and threading.get_ident() != self._loop_thread
        )

    def _on_loop(self, work: Callable[[], object]) -> None:
        """Run ``work`` on the loop's thread and wait for it (at most ``stop_timeout_s``): what
        the loop watches is changed only there. At once when called there, or when the loop no
        longer runs."""
        loop = self._loop
        if loop is None or not self._loop_runs_elsewhere():
            work()
            return
        finished = threading.Event()

        def run() -> None:
            try:
                work()
            finally:
                finished.set()

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:  # closed meanwhile
            work()
            return
        if not finished.wait(stop_timeout_s):
            log.error("the event loop did not run the writer's shutdown step in %g s", stop_timeout_s)
