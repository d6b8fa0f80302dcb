"""One writer per process: a bounded queue, round-robin batches, group commit.

Connections put commands in; one thread takes what is waiting, one command per connection in
turn (the lecture's round-robin scheduler: a client pipelining thousands of requests cannot
starve the rest), up to ``writer_batch_max``, applies the batch in one store transaction and only
after the commit hands each command its reply. One fsync serves the whole batch; under load
batches grow by themselves, which is what group commit means.

``apply(batch, done)`` may return before the batch is written (a writer process answers later)
and calls ``done()`` once the batch is answered; up to ``depth`` batches are on their way at once.

With a writer process and an event loop (``start(loop)``), no thread takes the batches: the loop
does, once per pass, after it has read every connection that had data, so a batch holds what
arrived since the last one. A thread would have to be woken for each batch and then wait for
the loop to hand over the interpreter lock; in a rush the writer thread and the writer process's
receiver thread used about a quarter of the serving process's CPU.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

from railtix import limits

log = logging.getLogger("railtix")


class Writer:
    def __init__(
        self,
        apply: Callable[[list[Any], Callable[[], None]], None],
        queue_max: int = limits.writer_queue_max,
        batch_max: int = limits.writer_batch_max,
        depth: int = 1,
        name: str = "railtix-writer",
    ) -> None:
        self._apply = apply
        self._queue_max = queue_max
        self._batch_max = batch_max
        self._depth = depth
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._queues: dict[Hashable, deque[Any]] = {}
        self._ring: deque[Hashable] = deque()
        self._size = 0
        self._stopping = False
        #: batches handed to ``apply`` and not yet answered
        self._busy = 0
        self._idle = threading.Condition(self._lock)
        self.batches = 0
        self.commands = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        #: the event loop that takes the batches instead of the thread, and its thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        #: a pass of ``_pump`` is scheduled on the loop and has not begun yet
        self._scheduled = False

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start taking batches: on a thread of its own, or on ``loop`` when called from the
        loop's thread (then ``apply`` must return at once, as a writer process's does)."""
        if loop is None:
            self._thread.start()
        else:
            self._loop = loop
            self._loop_thread = threading.get_ident()

    def _schedule(self) -> bool:
        """Have the loop run ``_pump`` once soon (called with the lock held); False when the
        loop is closed and nothing will be written any more."""
        if self._scheduled or self._loop is None:
            return True
        try:
            if threading.get_ident() == self._loop_thread:
                self._loop.call_soon(self._pump)
            else:  # a login from the password pool, the sweeper
                self._loop.call_soon_threadsafe(self._pump)
        except RuntimeError:
            return False
        self._scheduled = True
        return True

    def _pump(self) -> None:
        """On the loop: hand over batches while fewer than ``depth`` are on their way."""
        while True:
            with self._lock:
                self._scheduled = False
                if not (self._size and self._busy < self._depth):
                    return
                batch = self._take()
                self._busy += 1
            self._hand(batch)

    def submit(self, source: Hashable, command: Any) -> bool:
        """Queue a command from ``source`` (a connection); False when the queue is full."""
        with self._lock:
            if self._size >= self._queue_max or self._stopping:
                return False
            if self._loop is not None and not self._scheduled and not self._schedule():
                return False  # its loop is closed: taken, it would never be written
            q = self._queues.get(source)
            if q is None:
                q = self._queues[source] = deque()
                self._ring.append(source)
            q.append(command)
            self._size += 1
            if self._loop is None and self._size == 1:
                self._work.notify()
            return True


    def _take(self) -> list[Any]:
        batch: list[Any] = []
        ring, queues = self._ring, self._queues
        while ring and len(batch) < self._batch_max:
            source = ring.popleft()
            q = queues[source]
            batch.append(q.popleft())
            if q:
                ring.append(source)
            else:
                del queues[source]
        self._size -= len(batch)
        return batch

    def _run(self) -> None:
        while True:
            with self._lock:
                while not (self._size and self._busy < self._depth):
                    if self._stopping and not self._size and not self._busy:
                        return
                    self._work.wait()
                batch = self._take()
                self._busy += 1
            self._hand(batch)

    def _hand(self, batch: list[Any]) -> None:
        done = _Answer(self, len(batch))
        try:
            self._apply(batch, done)  # answers every command itself
        except Exception:  # never let the one writer die: every later client would hang
            log.exception("the writer's batch failed")
            done()

    def _answered(self, answer: _Answer) -> None:
        with self._lock:
            if answer.called:  # once, whichever thread calls it first
                return
            answer.called = True
            size = answer.size
            self._busy -= 1
            self.batches += 1
            self.commands += size
            if self._loop is not None:
                if self._size:
                    self._schedule()
            else:
                self._work.notify()
            if not self._size and not self._busy:
                self._idle.notify_all()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is committed and answered."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._size and not self._busy, timeout)

    def stop(self, timeout: float = limits.shutdown_grace_s) -> None:
        """Finish what is queued, refuse new work, and end the thread. On a loop, this waits
        for the loop to write what is queued: call it from another thread, as the serving
        models' shutdowns do (``run_in_executor``). On the loop itself nothing can be waited
        for (only a start that failed, with nothing queued, stops there)."""
        with self._lock:
            self._stopping = True
            self._work.notify()
            pending = self._size + self._busy
        if self._loop is None:
            if self._thread.is_alive():
                self._thread.join(timeout)
        elif threading.get_ident() != self._loop_thread:
            self.drain(timeout)
        elif pending:
            log.error("the writer was stopped on its own event loop with %d batches and commands unanswered", pending)


class _Answer:
    """A batch's ``done``: counts it answered once, however often and from whichever thread it
    is called."""

    __slots__ = ("_writer", "size", "called")

    def __init__(self, writer: Writer, size: int) -> None:
        self._writer = writer
        self.size = size
        self.called = False

    def __call__(self) -> None:
        self._writer._answered(self)
