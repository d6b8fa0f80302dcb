"""``railtix bench serving``: the serving loop's own CPU per request, without sockets.

A rush measures everything at once: the load generator, the kernel's loopback, the writer and
the serving loop share two cores, and a change of a few microseconds in one of them disappears
in the noise of a whole run. This runs the asyncio model's real connections (``TcpConnection``
and ``Session``) on a real ``Service`` with its writer process, on a fresh SQLite file with
``synchronous=FULL``, but with stand-in transports instead of sockets: what the loop's thread
spends per request is then its Python alone, timed by the thread's own CPU clock. Two kinds of
request, the two a rush is made of:

- a purchase that goes through the writer process (one seat, spread over 32 runs so that
  nothing sells out): decoding, the gate's check, the command's bookkeeping, the batch's pipe,
  the commit's wake and the reply;
- a buy refused ``sold_out`` at the gate, on a run whose class is sold out.

Every connection sends one request per round and the round ends when every reply is in, as a
closed-loop client at pipeline 1 would. Every reply is checked: purchases must be held, refusals
``sold_out``.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import msgspec

from railtix.core import rides
from railtix.core.orders import resident_id
from railtix.core.timetable import Train

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()

#: How long a round may take before the run is called stuck (a reply that never comes).
round_timeout_s = 60.0


class _Replies:
    """Reply lines counted across every connection, and a wake-up once ``target`` are in (no
    polling: the waiting must not cost the thread it measures)."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.done = asyncio.Event()

    def expect(self, n: int) -> None:
        self.target = self.count + n
        self.done.clear()

    def add(self, n: int) -> None:
        self.count += n
        if self.count >= self.target:
            self.done.set()


class _Transport:
    """What a TcpConnection writes to, instead of a socket: it counts the reply lines and keeps
    the last write for checking."""

    def __init__(self, replies: _Replies) -> None:
        self.replies = replies
        self.last = b""

    def write(self, data: bytes) -> None:
        self.replies.add(data.count(b"\n"))
        self.last = data

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


def _wide_trains(trains: tuple[Train, ...], n: int) -> list[Train]:
    """The first ``n`` trains with the most second-class seats: room for every purchase."""
    most = max(len(t.seats.get("second", ())) for t in trains)
    return [t for t in trains if len(t.seats.get("second", ())) == most][:n]


def measure(connections: int, purchases: int, refusals: int, echo: Callable[[str], None] = print) -> dict[str, Any]:
    from railtix.bench.load import new_loop

    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(_measure(connections, purchases, refusals, echo))


async def _measure(connections: int, purchases: int, refusals: int, echo: Callable[[str], None]) -> dict[str, Any]:
    from railtix.serve.asyncio_model import AsyncioServer, TcpConnection
    from railtix.service.service import Service

    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="railtix-bench-serving-") as folder:
        svc = Service.open(os.path.join(folder, "railtix.db"), writer_process=True, sweep_interval_s=3600.0)
        svc.start(loop)
        try:
            server = AsyncioServer(svc, loop, read_deadline_s=3600.0)
            replies = _Replies()
            conns: list[tuple[TcpConnection, _Transport]] = []
            for _ in range(connections):
                c, t = TcpConnection(server), _Transport(replies)
                c.connection_made(t)  # type: ignore[arg-type]
                conns.append((c, t))

            async def round_of(lines: list[bytes]) -> list[bytes]:
                """One request per connection; back when every reply is in: the last replies."""
                replies.expect(len(lines))
                for (c, _), line in zip(conns, lines, strict=False):
                    c.data_received(line)
                await asyncio.wait_for(replies.done.wait(), round_timeout_s)
                return [t.last for _, t in conns[: len(lines)]]

            async def ask(line: bytes) -> dict[str, Any]:
                (reply,) = await round_of([line])
                answer: dict[str, Any] = _decoder.decode(reply)
                return answer

            async def timed(make: Callable[[int], bytes], n: int, expect: bytes) -> float:
                """CPU seconds of this thread for ``n`` requests, ``connections`` at a time."""
                cpu = 0.0
                for start in range(0, n, connections):
                    lines = [make(k) for k in range(start, min(n, start + connections))]
                    c0 = time.thread_time()
                    got = await round_of(lines)
                    cpu += time.thread_time() - c0
                    wrong = [r for r in got if expect not in r]
                    assert not wrong, f"unexpected reply: {wrong[0][:200]!r}"
                return cpu

            user = {"user": "bench-serving", "password": "password123"}
            assert (await ask(_encoder.encode({"id": 0, "op": "register", **user}) + b"\n"))["ok"]
            login = await ask(_encoder.encode({"id": 1, "op": "login", **user}) + b"\n")
            assert login["ok"], login
            token = login["token"]
            today = rides.today(time.time())
            dates = [today.fromordinal(today.toordinal() + d).isoformat() for d in range(1, 9)]
            trains = _wide_trains(svc.timetable.trains, 4)

            def buy(k: int, train: Train, date: str, seat_class: str, passengers: int = 1) -> bytes:
                return _encoder.encode({
                    "id": k, "op": "buy", "token": token, "key": f"k{k}", "train": train.number, "date": date,
                    "from": train.stops[0].station, "to": train.stops[-1].station, "class": seat_class,
                    "passengers": [{"name": "王伟", "id_no": resident_id(f"1101{k:010d}{p:03d}")} for p in range(passengers)],
                }) + b"\n"

            runs = [(t, d) for t in trains for d in dates]
            seats = len(trains[0].seats["second"]) * len(runs)
            assert purchases + connections <= seats, f"at most {seats - connections} purchases fit these runs"

            def purchase(k: int) -> bytes:
                train, date = runs[k % len(runs)]
                return buy(k, train, date, "second")

            await timed(purchase, connections, b'"status":"held"')  # warm: every run loaded, the child up
            echo(f"{purchases:,} purchases through the writer process, {connections:,} connections at a time …")
            written = svc.writer.commands
            bought = await timed(lambda k: purchase(connections + k), purchases, b'"status":"held"')
            assert svc.writer.commands == written + purchases, "purchases answered without the writer"
            # the gate: a run whose business class is sold out, then buys of two that it refuses
            full_train, full_date = trains[0], dates[-1]
            base = connections + purchases
            for k in range(len(full_train.seats["business"])):
                assert (await ask(buy(base + k, full_train, full_date, "business")))["ok"]
            base += len(full_train.seats["business"])
            echo(f"{refusals:,} buys refused sold_out at the gate …")
            written = svc.writer.commands
            refused = await timed(lambda k: buy(base + k, full_train, full_date, "business", 2), refusals,
                                  b'"code":"sold_out"')
            assert svc.writer.commands == written, "refusals reached the writer: not the gate's cost"
        finally:
            await loop.run_in_executor(None, svc.stop)
    return {
        "connections": connections,
        "purchases": purchases,
        "refusals": refusals,
        "purchase_cpu_us": round(1e6 * bought / purchases, 2) if purchases else None,
        "refusal_cpu_us": round(1e6 * refused / refusals, 2) if refusals else None,
    }
