"""The asyncio client: many tasks share one connection, their requests pipelined.

Each ``call`` writes its line at once and waits on a future; one reader task takes reply lines
as they come and resolves the future with the matching ``id``. So a thousand coroutines can
keep a connection full without a lock around request and reply (the lecture's coroutine
client, made safe for pipelining). In-flight requests are bounded by a semaphore at the
server's own limit. When the connection drops, each request that is safe to repeat is sent once
more on a fresh connection, with the same idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

import msgspec

from railtix import limits
from railtix.client import (
    DEFAULT_SERVER,
    RETRY_SAFE,
    ConnectionLost,
    RailtixError,
    ReplyTimeout,
    Unreachable,
    build,
    buy_fields,
    check,
    format_address,
    parse_address,
    reply_size_max,
    timeout_default_s,
)
from railtix.client import (
    Dropped as _Dropped,
)
from railtix.client import (
    decoder as _decoder,
)
from railtix.client import (
    encoder as _encoder,
)


def _expire(conn: _Connection, rid: int, fut: asyncio.Future[dict[str, Any]]) -> None:
    if conn.pending.pop(rid, None) is not None and not fut.done():
        fut.set_exception(TimeoutError())


class _Connection:
    """One TCP connection and the futures of its unanswered requests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.closed = False
        self.task = asyncio.get_running_loop().create_task(self._read_loop())

    async def _read_loop(self) -> None:
        reason = "the server closed the connection"
        try:
            while True:
                try:
                    line = await self.reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    break
                except asyncio.LimitOverrunError:
                    reason = f"a reply line longer than {reply_size_max} bytes"
                    break
                try:
                    reply = _decoder.decode(line)
                except msgspec.DecodeError:
                    reason = "the server sent a line that is not JSON"
                    break
                if not isinstance(reply, dict):
                    reason = "the server sent a line that is not a JSON object"
                    break
                rid = reply.get("id")
                if rid is None and self.pending:
                    rid = min(self.pending)  # replies come in order: it answers the oldest
                fut = self.pending.pop(rid, None) if isinstance(rid, int) else None
                if fut is not None and not fut.done():
                    fut.set_result(reply)
        except OSError as e:
            reason = str(e) or type(e).__name__
        finally:
            self._fail(reason)

    def _fail(self, reason: str) -> None:
        self.closed = True
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(_Dropped(reason))
        self.writer.close()

    async def close(self) -> None:
        self.closed = True
        self.writer.close()
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


class AsyncClient:
    """An asyncio protocol-v1 client. ``await client.connect()`` or ``async with``.

    ``await call(op, **fields)`` returns the reply or raises ``RailtixError``; calls from many
    tasks at once are pipelined on the one connection and matched by ``id``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5002,
        timeout: float = timeout_default_s,
        token: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.token = token
        self._conn: _Connection | None = None
        self._connecting: asyncio.Lock | None = None
        self._slots: asyncio.Semaphore | None = None
        self._next_id = 0

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)

    async def connect(self) -> AsyncClient:
        if self._conn is not None and not self._conn.closed:
            return self
        if self._connecting is None:
            self._connecting = asyncio.Lock()
            self._slots = asyncio.Semaphore(limits.in_flight_per_connection_max)
        async with self._connecting:
            if self._conn is None or self._conn.closed:
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(self.host, self.port, limit=reply_size_max), self.timeout
                    )
                except (OSError, TimeoutError) as e:
                    reason = getattr(e, "strerror", None) or str(e) or "timed out"
                    raise Unreachable(self.address, reason) from None
                self._conn = _Connection(reader, writer)
        return self

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def __aenter__(self) -> AsyncClient:
        return await self.connect()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- requests ----------------------------------------------------------------------------
    async def _once(self, req: dict[str, Any]) -> dict[str, Any]:
        await self.connect()
        conn = self._conn
        assert conn is not None
        self._next_id += 1
        rid = self._next_id
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if conn.closed:
            raise _Dropped("the connection is closed")
        conn.pending[rid] = fut
        try:
            conn.writer.write(_encoder.encode({**req, "id": rid}) + b"\n")
            await conn.writer.drain()
        except OSError as e:
            conn.pending.pop(rid, None)
            raise _Dropped(str(e)) from None
        # a timer rather than asyncio.wait_for, which costs a task per request
        timer = asyncio.get_running_loop().call_later(self.timeout, _expire, conn, rid, fut)
        try:
            return await fut
        except TimeoutError:
            raise ReplyTimeout(f"no reply from {self.address} within {self.timeout:g} s") from None
        finally:
            timer.cancel()

    async def request(self, req: dict[str, Any]) -> dict[str, Any]:
        """Send one request object (with ``op``); the raw reply, ``ok`` or not."""
        await self.connect()
        assert self._slots is not None
        attempts = 2 if req.get("op") in RETRY_SAFE else 1
        async with self._slots:
            for attempt in range(attempts):
                try:
                    return await self._once(req)
                except _Dropped as e:
                    if attempt + 1 == attempts:
                        raise ConnectionLost(f"lost the connection to {self.address}: {e}") from None
        raise AssertionError("unreachable")

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send ``op`` with ``fields``; the reply, or RailtixError when the server refuses."""
        return check(await self.request(build(op, fields)))

    async def call_many(self, requests: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Pipeline several requests; raw replies in the order given (refusals not raised)."""
        reqs = [build(r["op"], {k: v for k, v in r.items() if k not in ("op", "id")}) for r in requests]
        return list(await asyncio.gather(*(self.request(r) for r in reqs)))

    def _token(self, token: str | None) -> str:
        token = token or self.token
        if not token:
            raise RailtixError("unauthorized", "log in first; this client has no token")
        return token

    # --- operations --------------------------------------------------------------------------
    async def hello(self) -> dict[str, Any]:
        return await self.call("hello")

    async def register(self, user: str, password: str) -> dict[str, Any]:
        return await self.call("register", user=user, password=password)

    async def login(self, user: str, password: str) -> dict[str, Any]:
        reply = await self.call("login", user=user, password=password)
        self.token = reply["token"]
        return reply

    async def stations(self) -> dict[str, Any]:
        return await self.call("stations")

    async def search(self, origin: str, destination: str, date: str) -> dict[str, Any]:
        return await self.call("search", from_=origin, to=destination, date=date)

    async def train(self, number: str, date: str | None = None) -> dict[str, Any]:
        return await self.call("train", train=number, date=date)

    async def buy(
        self,
        train: str,
        date: str,
        origin: str,
        destination: str,
        passengers: Iterable[Any],
        seat_class: str = "second",
        seats: Sequence[str] = (),
        key: str | None = None,
        token: str | None = None,
    ) -> dict[str, Any]:
        fields = buy_fields(train, date, origin, destination, passengers, seat_class, seats, key)
        return await self.call("buy", token=self._token(token), **fields)

    async def pay(self, order: str, key: str | None = None, token: str | None = None) -> dict[str, Any]:
        return await self.call("pay", token=self._token(token), key=key, order=order)

    async def cancel(self, order: str, key: str | None = None, token: str | None = None) -> dict[str, Any]:
        return await self.call("cancel", token=self._token(token), key=key, order=order)

    async def refund(self, order: str, key: str | None = None, token: str | None = None) -> dict[str, Any]:
        return await self.call("refund", token=self._token(token), key=key, order=order)

    async def orders(self, limit: int | None = None, token: str | None = None) -> dict[str, Any]:
        return await self.call("orders", token=self._token(token), limit=limit)

    async def order(self, order: str, token: str | None = None) -> dict[str, Any]:
        return await self.call("order", token=self._token(token), order=order)


async def connect(
    address: str = DEFAULT_SERVER, *, timeout: float = timeout_default_s, token: str | None = None
) -> AsyncClient:
    """A connected AsyncClient for ``HOST:PORT``."""
    host, port = parse_address(address)
    return await AsyncClient(host, port, timeout=timeout, token=token).connect()
