"""The serial model: one connection at a time, the lecture's first server, kept to show why it fails.

The server accepts a client, serves it until it closes (or its read deadline passes), and only
then accepts the next. While one client sits idle, or trickles a request byte by byte, every
other client waits in the kernel's accept queue: one slow client stalls everyone, for up to the
read deadline. Compare ``threads`` (a thread per connection) and ``asyncio`` (one event loop).

The blocking way of serving one connection lives here too (``BlockingConnection``), because the
``threads`` model runs exactly this handler, once per thread. A blocking handler cannot wait on
its socket and on the writer at once, so it alternates: read, hand the lines to the session,
wait for the commits its requests need (the writer's waker sets an ``Event``), write the
replies, read again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any, Protocol

from railtix import limits
from railtix.core.errors import Refusal
from railtix.serve.options import ServeOptions, listen
from railtix.service.service import Service
from railtix.service.session import Session
from railtix.wire.tcp import encode_error

log = logging.getLogger("railtix")

#: Reads at most one maximal request line at a time: a larger read only buffers more for a
#: client whose earlier requests are not answered yet.
recv_size_max = limits.line_size_max

#: On a stop, reads of what a client already sent (see ``limits.shutdown_read_s``), at most.
shutdown_reads_max = 16

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Signals:
    """Signal handlers that only record, as gunicorn's arbiter has them.

    A handler appends the signal number to ``received``; Python's wakeup fd writes a byte into a
    self-pipe, so that a main loop sleeping in ``select`` on ``fileno()`` wakes at once and acts
    on the signal itself, outside the handler.
    """

    def __init__(self, signums: Iterable[int] = STOP_SIGNALS) -> None:
        self.signums = tuple(signums)
        self.received: deque[int] = deque(maxlen=64)  # signals are coalesced; 64 is plenty
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._old: dict[int, Any] = {}
        self._old_wakeup = -1
        self.installed = False

    def fileno(self) -> int:
        return self._r

    def install(self) -> Signals:
        """Install the handlers (main thread only; elsewhere the caller stops us some other way)."""
        try:
            self._old_wakeup = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        except ValueError:  # not the main thread
            return self
        for s in self.signums:
            self._old[s] = signal.signal(s, self._record)
        self.installed = True
        return self

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)

    def take(self) -> list[int]:
        """The signals received since the last call, oldest first."""
        with contextlib.suppress(OSError):
            while os.read(self._r, 512):
                pass
        out: list[int] = []
        while self.received:
            out.append(self.received.popleft())
        return out

    def restore(self) -> None:
        if self.installed:
            for s, old in self._old.items():
                signal.signal(s, old)
            signal.set_wakeup_fd(self._old_wakeup)
            self.installed = False

    def forget_in_child(self) -> None:
        """In a forked child: default handlers, no wakeup fd, the parent's pipe closed.

        The child must not record its signals into a deque nobody reads; it installs its own.
        """
        if self.installed:
            for s in self.signums:
                signal.signal(s, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            self.installed = False
        self.received.clear()
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        self.restore()
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)


class Host(Protocol):
    """What a ``BlockingConnection`` asks of the server that runs it."""

    #: told to stop: finish what was asked, then close
    closing: bool
    #: told twice: close now
    forced: bool

    def poll(self) -> None:
        """Look at signals (the serial model serves in its main thread); may set the flags."""


def wake(sessions: list[Session]) -> None:
    """The waker of blocking connections, called by the writer thread after a commit."""
    for s in sessions:
        s.owner.ready.set()


class BlockingConnection:
    """One client served with blocking calls by one thread, until it closes or goes quiet."""

    __slots__ = ("host", "sock", "session", "ready", "read_deadline_s", "last_line", "wake_fds")

    def __init__(
        self,
        host: Host,
        service: Service,
        sock: socket.socket,
        read_deadline_s: float,
        wake_fds: tuple[int, ...] = (),
    ) -> None:
        self.host = host
        self.sock = sock
        self.session = service.session(wake)
        self.session.owner = self
        self.ready = threading.Event()
        self.read_deadline_s = read_deadline_s
        self.last_line = time.monotonic()
        #: more descriptors that should interrupt a wait for the socket (the signal pipe)
        self.wake_fds = wake_fds

    def serve(self) -> None:
        """Serve until the client closes, times out or the server stops; then close the socket."""
        # no call on this socket blocks for longer than the read deadline (sends wait in select)
        self.sock.settimeout(self.read_deadline_s)
        try:
            self._serve()
        except OSError:  # reset by the client, or it stopped reading: it is gone
            pass
        except Exception:  # a bug costs this connection, never the server (serial runs them inline)
            log.exception("serving a connection failed; closing it")
        finally:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_WR)
            self.sock.close()

    def _serve(self) -> None:
        s = self.session
        while True:
            self.host.poll()
            if self.host.closing:
                self._finish()
                return
            idle = time.monotonic() - self.last_line
            if idle >= self.read_deadline_s:
                # no complete line since the last one: silent, or trickling bytes
                s.fail(Refusal("timeout", f"no complete request in {self.read_deadline_s:g} s"))
                self._write()
                return
            wait = min(self.read_deadline_s - idle, limits.serve_tick_s)
            fd = self.sock.fileno()
            readable, _, _ = select.select([fd, *self.wake_fds], [], [], wait)
            if fd not in readable:
                continue
            data = self.sock.recv(recv_size_max)
            if not data:  # the client has finished sending: answer what it asked, then close
                self._answer()
                return
            if s.receive(data):
                self.last_line = time.monotonic()
            self._answer()
            # lines held back by flow control; once forced, _answer no longer waits for a commit
            # and a full session would take nothing: stop rather than spin
            while s.backlog and not self.host.forced:
                if s.receive(b""):
                    self.last_line = time.monotonic()
                self._answer()
            if s.close_after_output and not s.slots:
                return

    def _answer(self, until: float | None = None) -> None:
        """Write replies as they become ready until none waits for a commit (or ``until``).

        Output is taken only when there is news: right after the client's lines were handed to
        the session (replies to reads) and after the writer's waker said a commit answered some
        of them. Never on a mere tick: a reply is released only once its commit is done.
        """
        s = self.session
        self._write()
        while s.waiting and not self.host.forced:
            if until is not None and time.monotonic() >= until:
                return
            # bounded, so that a stop is noticed even while a commit is slow
            if self.ready.wait(limits.serve_tick_s):
                self.ready.clear()  # a wake after this clear sets it again; none is lost
                self._write()
            self.host.poll()

    def _write(self) -> None:
        out = self.session.output()
        if out:
            self._send_all(out)

    def _send_all(self, data: bytes) -> None:
        """``sendall`` that a second stop signal interrupts, bounded by the read deadline.

        A client that does not read its replies fills the socket buffer; it is let go after the
        read deadline rather than holding this thread (or, under ``serial``, the server).
        """
        view = memoryview(data)
        fd = self.sock.fileno()
        end = time.monotonic() + self.read_deadline_s
        while view:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("the client does not read its replies")
            _, writable, _ = select.select(list(self.wake_fds), [fd], [], min(left, limits.serve_tick_s))
            self.host.poll()
            if self.host.forced:
                raise ConnectionAbortedError("stopping now")
            if writable:
                view = view[self.sock.send(view) :]

    def _finish(self) -> None:
        """The server is stopping: answer what this client sent before the stop, then close."""
        deadline = time.monotonic() + limits.shutdown_read_s
        self.sock.setblocking(False)
        try:
            for _ in range(shutdown_reads_max):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([self.sock], [], [], remaining)[0]:
                    break
                data = self.sock.recv(recv_size_max)
                if not data:
                    break
                self.session.receive(data)
        except OSError:
            pass
        self.sock.settimeout(self.read_deadline_s)
        until = time.monotonic() + limits.shutdown_grace_s
        self._answer(until=until)
        while self.session.backlog and time.monotonic() < until and not self.host.forced:
            self.session.receive(b"")
            self._answer(until=until)


def refuse(sock: socket.socket, refusal: Refusal) -> None:
    """One error line to a client we will not serve (``busy``, ``shutting_down``), then close."""
    try:
        sock.settimeout(limits.serve_tick_s)
        sock.sendall(encode_error(None, refusal))
        sock.shutdown(socket.SHUT_WR)
        # drop what it already sent: closing with unread bytes would reset the connection and
        # could destroy our line before the client reads it
        sock.setblocking(False)
        for _ in range(shutdown_reads_max):
            if not sock.recv(recv_size_max):
                break
    except OSError:
        pass
    finally:
        sock.close()


def read_deadline_s(opts: ServeOptions) -> float:
    """The read deadline in force: ``limits.read_deadline_s`` unless the options override it."""
    value = opts.extra.get("read_deadline_s", limits.read_deadline_s)
    assert isinstance(value, int | float), "read_deadline_s must be a number of seconds"
    return float(value)


class AcceptLoop:
    """The main thread of the blocking models: wait for a client or a signal, and act on both.

    Signal handlers only record; ``take_signals`` (main thread only) turns them into the
    ``closing`` flag, and a second one into ``forced``. Subclasses say what accepting means.
    """

    def __init__(self, service: Service, listener: socket.socket, signals: Signals, read_deadline_s: float) -> None:
        self.service = service
        self.listener = listener
        self.signals = signals
        self.read_deadline_s = read_deadline_s
        self.closing = False
        self.forced = False

    def take_signals(self) -> None:
        for _ in self.signals.take():
            if self.closing:
                self.forced = True
            self.closing = True
            self.service.stopping = True  # new purchases are refused; accepted ones finish

    def main_loop(self) -> None:
        while not self.closing:
            fd = self.listener.fileno()
            readable, _, _ = select.select([fd, self.signals.fileno()], [], [], limits.serve_tick_s)
            self.take_signals()
            if not self.closing and fd in readable:
                self.accept_ready()

    def accept_ready(self) -> None:
        raise NotImplementedError

    def accept(self) -> socket.socket | None:
        """One waiting client, or None (none after all, or out of descriptors: wait a tick)."""
        try:
            sock, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:  # e.g. out of descriptors: let the backlog wait a tick
            time.sleep(limits.serve_tick_s)
            return None
        return sock


class SerialServer(AcceptLoop):
    """Accepts one client, serves it to the end, accepts the next."""

    def poll(self) -> None:
        """Asked by the one connection while it is served: signals are noticed meanwhile."""
        self.take_signals()

    def accept_ready(self) -> None:
        sock = self.accept()
        if sock is not None:
            # the whole point of this model: nobody else is served until this client is done
            BlockingConnection(self, self.service, sock, self.read_deadline_s, (self.signals.fileno(),)).serve()


def start_blocking(service_factory: Callable[[], Service], opts: ServeOptions) -> tuple[Service, socket.socket, Signals]:
    """The startup of the blocking models: the service, a listening socket, signals recorded."""
    service = service_factory().start()
    listener = listen(opts.tcp_host, opts.tcp_port)
    listener.setblocking(False)
    return service, listener, Signals().install()


def run(service_factory: Callable[[], Service], opts: ServeOptions) -> None:
    """Serve one client at a time until SIGINT or SIGTERM."""
    service, listener, signals = start_blocking(service_factory, opts)
    server = SerialServer(service, listener, signals, read_deadline_s(opts))
    try:
        if opts.on_ready:
            opts.on_ready({"tcp": listener.getsockname()[:2]})
        server.main_loop()
    finally:
        # shutdown: clients still in the accept queue were never served; the one being served
        # was answered in BlockingConnection._finish
        listener.close()
        service.stopping = True
        if not server.forced:
            service.stop()
        signals.close()
