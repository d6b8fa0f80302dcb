"""The default model: one event loop (uvloop when installed), protocols rather than streams.

Lifecycle in named phases, as uvicorn has them: ``startup`` (open the service, bind), the main
loop (until SIGINT/SIGTERM), ``shutdown`` (stop accepting, let every accepted request be
answered, close connections, stop the writer). The loop also carries the batches to the writer
process and reads its replies (``Service.start(loop)``), so a commit wakes the connections it
answered directly, once per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import cast

from railtix import limits
from railtix.core.errors import Refusal
from railtix.serve.options import ServeOptions, listen
from railtix.service.service import Service
from railtix.service.session import Session

log = logging.getLogger("railtix")


class TcpConnection(asyncio.Protocol):
    __slots__ = ("server", "session", "transport", "last_line", "timer", "writes_paused", "reading_paused", "eof")

    def __init__(self, server: AsyncioServer) -> None:
        self.server = server
        self.session: Session = server.service.session(server.waker)
        self.session.owner = self
        self.transport: asyncio.Transport | None = None
        self.last_line = time.monotonic()
        self.timer: asyncio.TimerHandle | None = None
        self.writes_paused = False  # the client does not read its replies
        self.reading_paused = False
        self.eof = False

    # --- transport events ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports quack like asyncio.Transport without subclassing it
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        transport.set_write_buffer_limits(limits.write_buffer_high, limits.write_buffer_low)
        srv = self.server
        srv.connections.add(self)
        if len(srv.connections) > limits.connections_max:
            self.session.fail(Refusal("busy", "too many connections; try again shortly"))
            self.flush()
            return
        if srv.closing:
            self.session.fail(Refusal("shutting_down", "the server is stopping"))
            self.flush()
            return
        self.timer = srv.loop.call_later(srv.read_deadline_s, self.check_deadline)

    def data_received(self, data: bytes) -> None:
        if self.session.receive(data):
            self.last_line = time.monotonic()
        self.flush()

    def eof_received(self) -> bool:
        # the client has finished sending; answer what it asked, then close
        self.eof = True
        return self.session.waiting or self.session.backlog  # True keeps our half open

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None

    def pause_writing(self) -> None:
        self.writes_paused = True
        self._reading()

    def resume_writing(self) -> None:
        self.writes_paused = False
        self.flush()  # answers lines held back while the client was not reading

    # --- our own -----------------------------------------------------------------------------
    def _reading(self) -> None:
        """Read while the client reads its replies and the session has room (flow control)."""
        t = self.transport
        if t is None or self.eof:
            return
        pause = self.writes_paused or self.session.full
        if pause and not self.reading_paused:
            t.pause_reading()
        elif not pause and self.reading_paused:
            t.resume_reading()
        self.reading_paused = pause

    def flush(self) -> None:
        t = self.transport
        if t is None:
            return
        s = self.session
        out = s.output()
        if out:
            t.write(out)
        # lines held back by the in-flight limit, while the client reads what we write (an
        # empty buffer, the usual case, holds none)
        while s.codec.buffered and s.backlog and not s.full and not self.writes_paused:
            if s.receive(b""):
                self.last_line = time.monotonic()
            out = s.output()
            if out:
                t.write(out)
        if (s.close_after_output or self.eof) and not s.slots and not s.backlog:
            self.close(t)
            return
        if self.reading_paused or self.writes_paused or s.full:  # else reading goes on as it is
            self._reading()

    def close(self, t: asyncio.Transport) -> None:
        """Close after the replies have left; a client that never reads them is cut off."""
        t.close()
        if t.get_write_buffer_size():
            self.server.loop.call_later(limits.close_grace_s, t.abort)

    def check_deadline(self) -> None:
        if self.transport is None:
            return
        srv = self.server
        idle = time.monotonic() - self.last_line
        if idle >= srv.read_deadline_s and not self.session.waiting:
            self.session.fail(Refusal("timeout", f"no complete request in {srv.read_deadline_s:g} s"))
            self.flush()  # closes, and cuts the client off if it reads nothing either
            return
        wait = srv.read_deadline_s - idle if idle < srv.read_deadline_s else 1.0
        self.timer = srv.loop.call_later(wait, self.check_deadline)


class AsyncioServer:
    def __init__(self, service: Service, loop: asyncio.AbstractEventLoop, read_deadline_s: float) -> None:
        self.service = service
        self.loop = loop
        self.read_deadline_s = read_deadline_s
        self.connections: set[TcpConnection] = set()
        self.closing = False
        self.loop_thread = threading.get_ident()  # made on the loop
        #: ``wake``, bound once: every session holds this same object, which the service
        #: recognises by identity when it groups a batch's sessions by their waker
        self.waker = self.wake

    def wake(self, sessions: list[Session]) -> None:
        """These sessions have replies ready (one call per batch): from the loop itself when it
        reads the writer process's replies, else from the writer thread."""
        if threading.get_ident() == self.loop_thread:
            self._flush_sessions(sessions)
        else:
            self.loop.call_soon_threadsafe(self._flush_sessions, sessions)

    def _flush_sessions(self, sessions: list[Session]) -> None:
        for s in sessions:
            s.owner.flush()


def install_uvloop() -> bool:
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


async def serve(
    service_factory: Callable[[], Service],
    opts: ServeOptions,
    stop: asyncio.Event | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    # startup
    service = service_factory().start(loop)
    deadline = opts.extra.get("read_deadline_s", limits.read_deadline_s)
    assert isinstance(deadline, int | float)
    server = AsyncioServer(service, loop, float(deadline))
    sock = listen(opts.tcp_host, opts.tcp_port)
    tcp = await loop.create_server(lambda: TcpConnection(server), sock=sock, backlog=limits.listen_backlog)
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    if opts.on_ready:
        opts.on_ready({"tcp": sock.getsockname()[:2]})
    # main loop
    await stop.wait()
    # shutdown: stop accepting, answer what was accepted, close
    server.closing = True
    tcp.close()
    service.stopping = True
    deadline = loop.time() + limits.shutdown_grace_s
    while any(c.session.waiting for c in server.connections) and loop.time() < deadline:
        await asyncio.sleep(0.02)
    for c in list(server.connections):
        c.flush()
        if c.transport is not None:
            c.transport.close()
    await loop.run_in_executor(None, service.stop)


def run(service_factory: Callable[[], Service], opts: ServeOptions) -> None:
    install_uvloop()
    asyncio.run(serve(service_factory, opts))
