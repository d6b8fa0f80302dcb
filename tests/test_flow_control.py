"""Flow control in the asyncio model, with a fake transport: no sockets, no sleeps.

A client that pipelines far past the in-flight limit and does not read its replies must not
make the server buffer more than about one limit's worth of replies; once it reads, every
request is answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from conftest import FakeClock

from railtix import limits
from railtix.serve.asyncio_model import AsyncioServer, TcpConnection
from railtix.service.service import Service
from railtix.store import open_store


class FakeTransport:
    """Buffers every write (the peer reads nothing) and says pause_writing past the high mark."""

    def __init__(self, proto: TcpConnection) -> None:
        self.proto = proto
        self.size = 0
        self.written: list[bytes] = []
        self.paused_writes = False
        self.reading = True
        self.closed = False
        self.high = 0

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        self.high = high

    def write(self, data: bytes) -> None:
        self.size += len(data)
        self.written.append(data)
        if self.size > self.high and not self.paused_writes:
            self.paused_writes = True
            self.proto.pause_writing()

    def drain(self) -> None:
        """The client reads everything written so far."""
        self.size = 0
        if self.paused_writes:
            self.paused_writes = False
            self.proto.resume_writing()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return self.size


@pytest.fixture
def conn(clock: FakeClock) -> Iterator[tuple[TcpConnection, FakeTransport]]:
    svc = Service(open_store(":memory:"), clock=clock, sweep_interval_s=3600).start()
    loop = asyncio.new_event_loop()
    c = TcpConnection(AsyncioServer(svc, loop, 30.0))
    t = FakeTransport(c)
    c.connection_made(t)  # type: ignore[arg-type]
    yield c, t
    svc.stop()
    loop.close()


def test_a_client_that_does_not_read_is_not_buffered_without_bound(conn: Any, clock: FakeClock) -> None:
    c, t = conn
    line = msgspec.json.encode({"op": "search", "from": "VNP", "to": "AOH", "date": clock.date(1)}) + b"\n"
    n = 256 * 1024 // len(line)  # one large read of pipelined searches, ~6 KB of reply each
    c.data_received(line * n)
    assert t.paused_writes and not t.reading
    # at most about one in-flight limit's worth of replies waits in our buffer
    one_reply = len(t.written[0]) // max(1, t.written[0].count(b"\n"))
    assert t.size <= (limits.in_flight_per_connection_max + 1) * one_reply + limits.write_buffer_high
    # the client reads: everything is answered, in order, nothing is lost
    answered = b"".join(t.written).count(b"\n")
    for _ in range(n):
        if answered >= n:
            break
        t.drain()
        answered = b"".join(t.written).count(b"\n")
    assert answered == n
    assert not c.session.backlog


def test_reading_resumes_when_replies_drain(conn: Any) -> None:
    c, t = conn
    hello = b'{"op": "hello"}\n'
    c.data_received(hello * (limits.in_flight_per_connection_max * 3))
    while t.paused_writes:
        t.drain()
    assert t.reading
    assert b"".join(t.written).count(b"\n") == limits.in_flight_per_connection_max * 3
