"""The processes model: a supervisor and pre-forked workers on one listening socket.

The lecture's third server, done the way gunicorn does it: the supervisor binds the socket,
forks ``--workers`` processes (one per core by default) and keeps that many alive
(``supervisor.Supervisor``). Every worker runs the asyncio model's serving loop on the inherited
socket; the kernel hands each new connection to one of them. Workers share nothing in memory:
each has its own ``Service`` (writer, store connections, run cache) and they meet only in the
database, whose write lock and run versions keep them from selling a seat twice (the store is
marked ``shared`` so that cached runs are checked against it). This is the lecture's
``Lock`` + ``Value`` lesson again, with the database as the lock.

So the database must be one that several processes can open: ``:memory:`` lives inside one
process and is refused. It is created (migrations, timetable) once, in the supervisor, before
the fork, so that workers never race to create it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable

from railtix import limits
from railtix.serve.asyncio_model import AsyncioServer, TcpConnection, install_uvloop
from railtix.serve.options import ServeOptions, listen
from railtix.serve.serial_model import STOP_SIGNALS, read_deadline_s
from railtix.serve.supervisor import Supervisor
from railtix.service.service import Service

#: How often the draining worker looks whether its connections are done.
drain_poll_s = 0.01

MEMORY_REFUSED = (
    "railtix: the processes model needs a database its worker processes can share; "
    "':memory:' lives inside one process. Give --database a file path (or a postgresql:// URL)."
)


def worker_count(opts: ServeOptions) -> int:
    wanted = opts.workers or os.cpu_count() or 1
    if not 1 <= wanted <= limits.workers_max:
        raise SystemExit(f"railtix: --workers must be between 1 and {limits.workers_max} (0: one per core)")
    return wanted


def run(service_factory: Callable[[], Service], opts: ServeOptions) -> None:
    """Serve with a supervisor and ``opts.workers`` processes until SIGINT or SIGTERM."""
    if opts.database == ":memory:":
        raise SystemExit(MEMORY_REFUSED)
    workers = worker_count(opts)
    # create the database once, before any worker exists; leave no thread or connection behind
    prepared = service_factory()
    try:
        if getattr(prepared.store, "url", None) == ":memory:":
            raise SystemExit(MEMORY_REFUSED)
        # Claimed as shared for as long as the supervisor runs, so that no server of another
        # model takes the database while no worker is up (at the start, or after a crash);
        # refused before any worker when one already has it.
        prepared.store.shared = True
        prepared.store.claim()
        held = prepared.store.hold_claim()
    finally:
        prepared.stop()
    try:
        _supervise(service_factory, opts, workers)
    finally:
        if held is not None:
            os.close(held)


def _supervise(service_factory: Callable[[], Service], opts: ServeOptions, workers: int) -> None:
    """Bind, fork the workers and keep them running until told to stop (``run``'s main part,
    while it holds the claim on the database)."""
    listener = listen(opts.tcp_host, opts.tcp_port)
    address = listener.getsockname()[:2]
    supervisor_pid = os.getpid()

    def worker_main() -> int:
        install_uvloop()
        asyncio.run(serve_worker(service_factory, opts, listener, supervisor_pid))
        return 0

    def ready() -> None:
        if opts.on_ready:
            opts.on_ready({"tcp": address})

    supervisor = Supervisor(worker_main, workers, on_stopping=listener.close)
    try:
        code = supervisor.run(on_ready=ready)
    finally:
        listener.close()
    if code:
        raise SystemExit(code)


async def serve_worker(
    service_factory: Callable[[], Service],
    opts: ServeOptions,
    listener: socket.socket,
    supervisor_pid: int,
) -> None:
    """One worker: the asyncio model's connections on the inherited socket, until told to stop.

    This is ``asyncio_model.serve`` with three differences: the socket is given rather than
    bound, the worker stops by itself when its supervisor is gone, and the shutdown reads what
    clients sent before the signal and waits until the replies have left, so that a SIGTERM
    under load answers every accepted request instead of resetting connections.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in STOP_SIGNALS:  # first, so that a stop during startup is not lost
        loop.add_signal_handler(sig, stop.set)
    # startup
    service = service_factory()
    service.store.shared = True  # other workers write the same database
    service.start(loop)
    server = AsyncioServer(service, loop, read_deadline_s(opts))
    tcp = await loop.create_server(lambda: TcpConnection(server), sock=listener, backlog=limits.listen_backlog)
    # main loop
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), limits.orphan_check_s)
        if os.getppid() != supervisor_pid:
            stop.set()  # nobody would stop or replace us: stop now
    # shutdown
    await drain(server, tcp, service)


async def drain(server: AsyncioServer, tcp: asyncio.AbstractServer, service: Service) -> None:
    """Stop accepting, answer what was accepted, let the replies leave, stop the writer."""
    loop = server.loop
    server.closing = True
    tcp.close()
    service.stopping = True  # purchases from now on are refused with shutting_down
    # requests sent before the signal may still be in the kernel's buffers: read them
    await asyncio.sleep(limits.shutdown_read_s)
    deadline = loop.time() + limits.shutdown_grace_s
    while any(c.session.waiting for c in server.connections) and loop.time() < deadline:
        await asyncio.sleep(drain_poll_s)
    for c in list(server.connections):
        c.flush()
        if c.transport is not None:
            c.transport.close()  # sends what is buffered, then closes
    while server.connections and loop.time() < deadline:
        await asyncio.sleep(drain_poll_s)
    await loop.run_in_executor(None, service.stop)

