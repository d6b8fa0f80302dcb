"""Before the clock starts: who the server is, the bench's users and their tokens, and whether the
server's trains are the ones the plan was drawn from.

Users are named ``bench-<seed>-<n>``. Password hashing is deliberately slow on the server (about
50 ms, two at a time), so the bench registers a small pool and its connections share the
tokens. A name that already exists means this seed ran against this database before; its
passengers and idempotency keys would collide with the earlier run's, so the bench stops and
says so rather than report refusals it caused itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import Sequence
from typing import Any

import msgspec

from railtix.bench import limits
from railtix.bench.plan import TrainRef

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()

#: Connections used for setup: enough to keep the server's two hashing threads busy.
setup_connections = 4


class SetupFailed(RuntimeError):
    pass


class _Line:
    """A small request/reply client for setup (not timed, so streams are fine here)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.ids = itertools.count(1)

    @classmethod
    async def open(cls, host: str, port: int) -> _Line:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port, limit=1 << 22), limits.connect_timeout_s)
        return cls(r, w)

    async def call(self, **req: Any) -> dict[str, Any]:
        rid = next(self.ids)
        self.writer.write(_encoder.encode({"id": rid, **req}) + b"\n")
        await self.writer.drain()
        line = await self.reader.readline()
        if not line:
            raise SetupFailed(f"the server closed the connection during setup ({req.get('op')})")
        reply = _decoder.decode(line)
        if reply.get("id") != rid:
            raise SetupFailed(f"reply to {req.get('op')} carries id {reply.get('id')!r}, expected {rid}")
        return reply

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def user_names(seed: int, count: int) -> list[str]:
    return [f"bench-{seed}-{n}" for n in range(count)]


def password_for(seed: int) -> str:
    return f"bench-password-{seed}"


async def _setup(host: str, port: int, users: Sequence[str], password: str, trains: Sequence[TrainRef]) -> dict[str, Any]:
    # One connection at a time is all a serial server serves, so every connection here is
    # closed as soon as its work is done: the next one is then served, never left waiting.
    first = await _Line.open(host, port)
    try:
        hello = await first.call(op="hello")
        server = str(hello.get("server", "?")) if hello.get("ok") else "?"
        mismatched = []
        for t in trains:
            reply = await first.call(op="train", train=t.number)
            stops = reply.get("stops")
            if not reply.get("ok"):
                mismatched.append(f"{t.number}: {reply.get('error', {}).get('code')}")
            elif isinstance(stops, list) and tuple(s.get("station") for s in stops) != t.stops:
                mismatched.append(f"{t.number}: its stops differ")
    finally:
        await first.close()
    if mismatched:
        raise SetupFailed(
            "the server's timetable is not the one the plan was drawn from (the demo timetable): "
            + "; ".join(mismatched[:5])
        )
    tokens: list[str | None] = [None] * len(users)

    async def worker(mine: list[int]) -> None:
        conn = await _Line.open(host, port)
        try:
            for i in mine:
                name = users[i]
                reply = await conn.call(op="register", user=name, password=password)
                if not reply.get("ok"):
                    code = reply.get("error", {}).get("code")
                    if code == "user_exists":
                        raise SetupFailed(
                            f"user {name} already exists: this seed already ran against this database; "
                            "use another --seed or a fresh database"
                        )
                    raise SetupFailed(f"register {name}: {reply.get('error')}")
                reply = await conn.call(op="login", user=name, password=password)
                if not reply.get("ok"):
                    raise SetupFailed(f"login {name}: {reply.get('error')}")
                tokens[i] = str(reply["token"])
        finally:
            await conn.close()

    n = max(1, min(setup_connections, len(users)))
    await asyncio.gather(*(worker(list(range(k, len(users), n))) for k in range(n)))
    return {"server": server, "hello": hello, "tokens": [t for t in tokens if t is not None]}


def prepare(host: str, port: int, users: Sequence[str], password: str, trains: Sequence[TrainRef]) -> dict[str, Any]:
    """Register and log in ``users``; check ``trains`` against the server. Blocks; bounded."""

    async def bounded() -> dict[str, Any]:
        return await asyncio.wait_for(_setup(host, port, users, password, trains), limits.setup_timeout_s)

    try:
        return asyncio.run(bounded())
    except ConnectionRefusedError as e:
        raise SetupFailed(
            f"nothing listens at {host}:{port}: start a server there (make run) or let the bench start "
            "its own (--serve)"
        ) from e
    except socket.gaierror as e:
        raise SetupFailed(f"no host {host!r} is known here ({e.strerror}); check --target") from e
    except (TimeoutError, OSError) as e:
        raise SetupFailed(f"setup against {host}:{port} failed: {type(e).__name__}: {e}") from e
