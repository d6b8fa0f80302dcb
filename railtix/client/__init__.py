"""Clients for protocol v1 over TCP: a blocking ``Client`` and an asyncio ``AsyncClient``.

Both speak the same JSON lines (docs/protocol.md) and share what is here: the errors, the way a
request is built from keyword arguments, and which operations are safe to send twice. Buy, pay,
cancel and refund carry an idempotency key (a fresh uuid4 unless the caller gives one), so when
a connection drops before the reply arrives the client reconnects and sends the same request
with the same key once more: the server answers the first result, never a second order
(guarantee 3 of docs/design).

``Client`` and ``AsyncClient`` are imported on first use so that the command line, which only
needs the blocking client, never pays for importing asyncio.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from railtix.client.aio import AsyncClient, connect
    from railtix.client.sync import Client

#: Where a client looks when told nothing else: the lecture's port on this machine.
DEFAULT_SERVER = "127.0.0.1:5002"

#: Seconds a client waits to connect and for each reply before it gives up on the connection.
#: A purchase is answered after its group commit, normally within tens of milliseconds; ten
#: seconds covers a server whose disk is briefly far behind without hanging a user forever.
timeout_default_s = 10.0

#: Largest reply line a client accepts. Requests are bounded by the server's ``line_size_max``;
#: replies are not (a page of 200 orders or the list of stations is larger), but a line beyond
#: this is not an honest reply, and without a bound a broken server could fill our memory.
reply_size_max = 16 * 1024 * 1024

#: Requests a blocking client keeps in flight in ``call_many``. Well under the server's
#: ``in_flight_per_connection_max`` (256), and small enough that a window of requests fits in
#: the socket buffers, so that we never block sending while the server waits for us to read.
pipeline_window = 64

#: Operations that carry an idempotency key and change state.
MUTATIONS = frozenset({"buy", "pay", "cancel", "refund"})

#: Operations that change nothing: sending one twice is harmless.
READS = frozenset({"hello", "stations", "search", "train", "orders", "order"})

#: What a client may send again after a dropped connection: reads, and mutations (by their key).
#: Not register (a second attempt would answer ``user_exists``) nor login (a second token).
RETRY_SAFE = READS | MUTATIONS

#: Keyword arguments that are Python keywords or clash with the protocol's field names.
_FIELD_NAMES = {"from_": "from", "origin": "from", "destination": "to", "class_": "class", "seat_class": "class"}


#: One JSON codec for both clients (msgspec encoders and decoders are thread-safe to share).
encoder = msgspec.json.Encoder()
decoder = msgspec.json.Decoder()


class Dropped(Exception):
    """The connection broke under a client (internal: it decides whether to retry)."""


class RailtixError(Exception):
    """A request the server refused (``ok: false``), with its stable code.

    ``retry`` says whether the same request may succeed later (``busy``, ``shutting_down``).
    ``reply`` is the server's whole reply, when there was one.
    """

    def __init__(self, code: str, message: str, retry: bool = False, reply: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry = retry
        self.reply = reply

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r}, retry={self.retry})"


class Unreachable(RailtixError):
    """Nothing accepted our connection: the server is not running there, or is unreachable."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__("unreachable", f"cannot reach the server at {address}: {reason}", retry=True)
        self.address = address
        self.reason = reason


class ConnectionLost(RailtixError):
    """The connection closed or broke before the reply arrived (after any retry we were allowed)."""

    def __init__(self, message: str) -> None:
        super().__init__("connection_lost", message, retry=True)


class ReplyTimeout(RailtixError):
    """No reply within the client's timeout. A mutation may still have happened: send it again
    with the same key to learn its outcome without repeating it."""

    def __init__(self, message: str) -> None:
        super().__init__("timeout", message, retry=True)


def parse_address(text: str, default_port: int = 5002) -> tuple[str, int]:
    """``HOST:PORT`` (or ``[v6]:PORT``, just ``HOST``, or just ``PORT`` on 127.0.0.1) as a
    (host, port) pair."""
    given = text = text.strip()
    if text.isascii() and text.isdigit():  # a bare number is a port: no one names a host 5002
        text = ":" + text
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host:
        host = "127.0.0.1"
    try:
        number = int(port) if port else default_port
    except ValueError:
        raise ValueError(f"{given!r} is not HOST:PORT") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} is out of range")
    return host, number


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def new_key() -> str:
    return uuid.uuid4().hex


def build(op: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The request object for ``op``: protocol field names, no ``None`` values, and a fresh
    idempotency key for a mutation that has none."""
    req: dict[str, Any] = {"op": op}
    for name, value in fields.items():
        if value is None:
            continue
        req[_FIELD_NAMES.get(name, name)] = value
    if op in MUTATIONS and not req.get("key"):
        req["key"] = new_key()
    return req


def passengers_of(passengers: Iterable[Any]) -> list[dict[str, str]]:
    """Passengers as the protocol wants them, from (name, id_no) pairs or mappings."""
    out = []
    for p in passengers:
        if isinstance(p, Mapping):
            out.append({"name": str(p["name"]), "id_no": str(p["id_no"])})
        else:
            name, id_no = p
            out.append({"name": str(name), "id_no": str(id_no)})
    return out


def buy_fields(
    train: str,
    date: str,
    origin: str,
    destination: str,
    passengers: Iterable[Any],
    seat_class: str = "second",
    seats: Sequence[str] = (),
    key: str | None = None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "train": train, "date": date, "from": origin, "to": destination, "class": seat_class,
        "passengers": passengers_of(passengers), "key": key,
    }
    if seats:
        fields["seats"] = list(seats)
    return fields


def check(reply: Any) -> dict[str, Any]:
    """The reply when it says ``ok``; otherwise the RailtixError it carries."""
    if not isinstance(reply, dict):
        raise RailtixError("malformed_reply", f"the server sent {type(reply).__name__}, not an object")
    if reply.get("ok") is True:
        return reply
    err = reply.get("error")
    if not isinstance(err, dict):
        raise RailtixError("malformed_reply", "the server replied without ok or error", reply=reply)
    raise RailtixError(
        str(err.get("code", "unknown")), str(err.get("message", "")), bool(err.get("retry", False)), reply
    )


def __getattr__(name: str) -> Any:
    if name == "Client":
        from railtix.client.sync import Client

        return Client
    if name in ("AsyncClient", "connect"):
        from railtix.client import aio

        return getattr(aio, name)
    raise AttributeError(f"module 'railtix.client' has no attribute {name!r}")


__all__ = [
    "DEFAULT_SERVER", "AsyncClient", "Client", "ConnectionLost", "RailtixError", "ReplyTimeout",
    "Unreachable", "build", "check", "connect", "parse_address",
]
