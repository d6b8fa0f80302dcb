"""The blocking client: one socket, one request at a time or a pipelined window of them.

This is the lecture's TCP client grown up: it frames JSON lines, matches replies to requests by
``id``, raises ``RailtixError`` for refusals, and after a dropped connection sends a request that
is safe to repeat once more on a fresh connection (mutations keep their idempotency key, so the
repeat cannot buy twice).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

import msgspec

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
    pipeline_window,
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


class Client:
    """A blocking protocol-v1 client. Use it as a context manager, or call ``close()``.

    ``call(op, **fields)`` sends one request and returns the reply (a dict with ``ok: true``) or
    raises ``RailtixError``. Field names that are Python keywords take a trailing underscore
    (``from_``, ``class_``). The connection opens on first use.
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
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._next_id = 0

    @classmethod
    def at(cls, address: str = DEFAULT_SERVER, **kwargs: Any) -> Client:
        """A client for ``HOST:PORT``."""
        host, port = parse_address(address)
        return cls(host, port, **kwargs)

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)

    # --- connection --------------------------------------------------------------------------
    def connect(self) -> Client:
        if self._sock is None:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            except OSError as e:
                raise Unreachable(self.address, e.strerror or str(e)) from None
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock = sock
            self._buf.clear()
        return self

    def close(self) -> None:
        sock, self._sock = self._sock, None
        self._buf.clear()
        if sock is not None:
            sock.close()

    def __enter__(self) -> Client:
        return self.connect()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- framing -----------------------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        try:
            self._sock.sendall(data)
        except TimeoutError:
            self.close()
            raise ReplyTimeout(f"the server at {self.address} did not take our request in {self.timeout:g} s") from None
        except OSError as e:
            self.close()
            raise _Dropped(str(e)) from None

    def _read_reply(self) -> dict[str, Any]:
        sock = self._sock
        assert sock is not None
        buf = self._buf
        scanned = 0
        while True:
            nl = buf.find(b"\n", scanned)
            if nl >= 0:
                line = bytes(buf[:nl])
                del buf[: nl + 1]
                try:
                    reply = _decoder.decode(line)
                except msgspec.DecodeError as e:
                    self.close()
                    raise RailtixError("malformed_reply", f"the server sent a line that is not JSON: {e}") from None
                if not isinstance(reply, dict):
                    self.close()
                    raise RailtixError("malformed_reply", "the server sent a line that is not a JSON object")
                return reply
            scanned = len(buf)
            if scanned > reply_size_max:
                self.close()
                raise RailtixError("malformed_reply", f"a reply line longer than {reply_size_max} bytes")
            try:
                chunk = sock.recv(256 * 1024)
            except TimeoutError:
                self.close()
                raise ReplyTimeout(f"no reply from {self.address} within {self.timeout:g} s") from None
            except OSError as e:
                self.close()
                raise _Dropped(str(e)) from None
            if not chunk:
                self.close()
                raise _Dropped("the server closed the connection")
            buf += chunk

    def _ids(self, n: int) -> list[int]:
        first = self._next_id + 1
        self._next_id += n
        return list(range(first, first + n))

    # --- requests ----------------------------------------------------------------------------
    def request(self, req: dict[str, Any]) -> dict[str, Any]:
        """Send one request object (with ``op``) and return the raw reply, ``ok`` or not.

        A request that is safe to repeat is sent once more on a fresh connection when the
        connection drops before its reply.
        """
        attempts = 2 if req.get("op") in RETRY_SAFE else 1
        for attempt in range(attempts):
            self.connect()
            (rid,) = self._ids(1)
            line = _encoder.encode({**req, "id": rid}) + b"\n"
            try:
                self._send(line)
                while True:
                    reply = self._read_reply()
                    if reply.get("id") == rid or reply.get("id") is None:
                        return reply
                    # a reply to a request we gave up on earlier: not ours, keep reading
            except _Dropped as e:
                if attempt + 1 == attempts:
                    raise ConnectionLost(f"lost the connection to {self.address}: {e}") from None
        raise AssertionError("unreachable")

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send ``op`` with ``fields``; the reply, or RailtixError when the server refuses."""
        return check(self.request(build(op, fields)))

    def call_many(self, requests: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Pipeline several requests (each a dict with ``op``) on this connection.

        Returns the raw replies in the order of ``requests``, matched by ``id`` (refusals are
        returned, not raised, so one refused request does not hide the others). At most
        ``pipeline_window`` requests are in flight at once. When the connection drops, the
        unanswered requests are sent again once if every one of them is safe to repeat.
        """
        reqs = [build(r["op"], {k: v for k, v in r.items() if k not in ("op", "id")}) for r in requests]
        replies: list[dict[str, Any] | None] = [None] * len(reqs)
        retried = False
        while True:
            todo = [i for i, r in enumerate(replies) if r is None]
            if not todo:
                return [r for r in replies if r is not None]
            try:
                self._pipeline(reqs, todo, replies)
            except _Dropped as e:
                left = [i for i, r in enumerate(replies) if r is None]
                if retried or not all(reqs[i]["op"] in RETRY_SAFE for i in left):
                    raise ConnectionLost(f"lost the connection to {self.address}: {e}") from None
                retried = True

    def _pipeline(self, reqs: list[dict[str, Any]], todo: list[int], replies: list[dict[str, Any] | None]) -> None:
        self.connect()
        for lo in range(0, len(todo), pipeline_window):
            window = todo[lo : lo + pipeline_window]
            ids = self._ids(len(window))
            by_id = dict(zip(ids, window, strict=True))
            self._send(b"".join(_encoder.encode({**reqs[i], "id": rid}) + b"\n" for rid, i in by_id.items()))
            while by_id:
                reply = self._read_reply()
                rid = reply.get("id")
                if rid is None:
                    # a reply the server could not tie to a request answers the oldest (replies
                    # come in request order); it is followed by the connection closing
                    rid = min(by_id)
                index = by_id.pop(rid, None) if isinstance(rid, int) else None
                if index is not None:
                    replies[index] = reply

    def _token(self, token: str | None) -> str:
        token = token or self.token
        if not token:
            raise RailtixError("unauthorized", "log in first; this client has no token")
        return token

    # --- operations --------------------------------------------------------------------------
    def hello(self) -> dict[str, Any]:
        return self.call("hello")

    def register(self, user: str, password: str) -> dict[str, Any]:
        return self.call("register", user=user, password=password)

    def login(self, user: str, password: str) -> dict[str, Any]:
        """Log in; the client keeps the token for the calls that need one."""
        reply = self.call("login", user=user, password=password)
        self.token = reply["token"]
        return reply

    def stations(self) -> dict[str, Any]:
        return self.call("stations")

    def search(self, origin: str, destination: str, date: str) -> dict[str, Any]:
        return self.call("search", from_=origin, to=destination, date=date)

    def train(self, number: str, date: str | None = None) -> dict[str, Any]:
        return self.call("train", train=number, date=date)

    def buy(
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
        """Hold seats for up to five passengers (``(name, id_no)`` pairs or mappings)."""
        fields = buy_fields(train, date, origin, destination, passengers, seat_class, seats, key)
        return self.call("buy", token=self._token(token), **fields)

    def pay(self, order: str, key: str | None = None, token: str | None = None) -> dict[str, Any]:
        return self.call("pay", token=self._token(token), key=key, order=order)

    def cancel(self, order: str, key: str | None = None, token: str | None = None) -> dict[str, Any]:
        return self.call("cancel", token=self._token(token), key=key, order=order)

    def refund(self, order: str, key: str | None = None, token: str | None = None) -> dict[str, Any]:
        return self.call("refund", token=self._token(token), key=key, order=order)

    def orders(self, limit: int | None = None, token: str | None = None) -> dict[str, Any]:
        return self.call("orders", token=self._token(token), limit=limit)

    def order(self, order: str, token: str | None = None) -> dict[str, Any]:
        return self.call("order", token=self._token(token), order=order)
