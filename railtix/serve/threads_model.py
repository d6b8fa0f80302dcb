"""The threads model: a thread per connection, bounded — the lecture's second server.

The main thread accepts; each client gets its own thread running the serial model's blocking
handler (``BlockingConnection``), so a slow or silent client blocks only its own thread. The cost
is a thread per client: a stack each, and all of them taking turns at the GIL. Hence the bound
``limits.threads_max``: over it a new client gets one ``busy`` line and is closed, rather than
every client slowing down together.

Threads share the one ``Service`` (one writer, one store), exactly as the asyncio model's
connections do; the writer wakes a waiting thread through a ``threading.Event``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from railtix import limits
from railtix.core.errors import Refusal
from railtix.serve.options import ServeOptions
from railtix.serve.serial_model import (
    AcceptLoop,
    BlockingConnection,
    Signals,
    read_deadline_s,
    refuse,
    start_blocking,
)
from railtix.service.service import Service

#: Connections accepted per wake-up of the accept loop before it looks at signals again.
accepts_per_tick_max = 64


class ThreadsServer(AcceptLoop):
    def __init__(
        self, service: Service, listener: socket.socket, signals: Signals, read_deadline_s: float, threads_max: int
    ) -> None:
        super().__init__(service, listener, signals, read_deadline_s)
        self.threads_max = threads_max
        self._lock = threading.Lock()
        self.threads: set[threading.Thread] = set()

    def poll(self) -> None:
        """Connection threads only read the flags; the main thread sets them."""

    def accept_ready(self) -> None:
        for _ in range(accepts_per_tick_max):
            sock = self.accept()
            if sock is None:
                return
            with self._lock:
                full = len(self.threads) >= self.threads_max
            if full:
                refuse(sock, Refusal("busy", f"all {self.threads_max} connection threads are taken; try again shortly"))
                continue
            conn = BlockingConnection(self, self.service, sock, self.read_deadline_s)
            t = threading.Thread(target=self._run, args=(conn,), name="railtix-conn", daemon=True)
            with self._lock:
                self.threads.add(t)
            t.start()

    def _run(self, conn: BlockingConnection) -> None:
        try:
            conn.serve()
        finally:
            with self._lock:
                self.threads.discard(threading.current_thread())

    def wait_threads(self) -> None:
        """Let every connection thread finish its in-flight requests (bounded; a second signal cuts it)."""
        deadline = time.monotonic() + limits.shutdown_grace_s + limits.serve_tick_s
        while time.monotonic() < deadline and not self.forced:
            with self._lock:
                left = list(self.threads)
            if not left:
                return
            left[0].join(limits.serve_tick_s)
            self.take_signals()


def run(service_factory: Callable[[], Service], opts: ServeOptions) -> None:
    """Serve a thread per connection, at most ``threads_max``, until SIGINT or SIGTERM."""
    threads_max = opts.extra.get("threads_max", limits.threads_max)
    assert isinstance(threads_max, int) and threads_max >= 1, "threads_max must be a positive int"
    service, listener, signals = start_blocking(service_factory, opts)
    server = ThreadsServer(service, listener, signals, read_deadline_s(opts), threads_max)
    try:
        if opts.on_ready:
            opts.on_ready({"tcp": listener.getsockname()[:2]})
        server.main_loop()
    finally:
        # shutdown: stop accepting, let each thread answer what its client sent, stop the writer
        listener.close()
        server.closing = True
        service.stopping = True
        server.wait_threads()
        if not server.forced:
            service.stop()
        signals.close()
