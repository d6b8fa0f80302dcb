"""A server that speaks protocol v1 and does no work: the ceiling of this machine and this bench.

Every request line gets a canned ``ok`` reply of realistic size (a search answers with the train
list a real search from Beijing South to Nanjing South returns; a buy, pay, cancel or refund with a
real-looking order), echoing the request's ``id``. No validation, no store, no writer: what the
bench reaches against it is what this machine and this generator can do, and railtix's figures
are stated as a fraction of it.

It is as cheap as we can make it in Python: uvloop, a Protocol, replies in request order, one
write per read, and the id and op read from the line's first bytes when the line starts
``{"id":N,"op":"…"`` (the bench's requests do); other lines are decoded with msgspec.

    python -m railtix.bench.null_server --tcp 127.0.0.1:0 [--workers N]

prints ``null listening tcp://HOST:PORT`` once bound, like ``railtix serve``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import signal
import socket
import sys
import time
from typing import Any

import msgspec

from railtix import limits
from railtix.serve.options import listen

#: what its hello says it is (the bench knows it by this), and what reports call it
NAME = "railtix-null"
LABEL = "null server"

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def canned_bodies() -> dict[bytes, bytes]:
    """op -> reply body without its id (``{"ok":true,…}``), built once from the demo timetable."""
    from railtix.core import rides
    from railtix.core.inventory import RunState
    from railtix.core.orders import Order, Status, Ticket
    from railtix.demo.timetable import demo_timetable
    from railtix.wire import render
    from railtix.wire.tcp import ok_body

    tt = demo_timetable()
    now = time.time()
    day = (rides.today(now) + dt.timedelta(days=3)).isoformat()
    found = rides.search_runs(
        tt, "VNP", "NKH", day, now, limits.presale_days,
        lambda runs: [RunState.empty(t, d) for t, d in runs],
    )
    trains = render.search_rows(found.trains)
    g1 = tt.train_by_number["G1"]
    departs = g1.depart_at(dt.date.fromisoformat(day), 0).timestamp()
    order = Order(
        id="ENULLNULLNULLNULL", user=1, run=f"G1@{day}", train="G1", date=day, start=0,
        end=len(g1.stops) - 1, origin=g1.stops[0].station, destination=g1.stops[-1].station,
        seat_class="second", tickets=(Ticket("张三", "110101199003074514", 0, 5, "12F", 55300),),
        status=Status.HELD, created=now, hold_until=now + 1800, departs=departs,
    )
    order_body = render.order_body(order)
    return {
        b"search": ok_body({"date": day, "from": "VNP", "to": "NKH", "trains": trains}),
        b"buy": order_body,
        b"pay": order_body,
        b"cancel": order_body,
        b"refund": order_body,
        b"order": order_body,
        b"orders": ok_body({"orders": [render.order(order)]}),
        b"login": ok_body({"token": "n" * 43, "user": "null", "expires": render.when(now + 86400 * 30)}),
        b"register": ok_body({"user": "null"}),
        b"hello": ok_body({"server": NAME, "protocol": 1}),
        b"stations": ok_body({"stations": [render.station(s) for s in tt.stations]}),
        b"train": ok_body({"train": "G1"}),
    }


class NullConnection(asyncio.Protocol):
    __slots__ = ("tails", "default", "transport", "rest")

    def __init__(self, tails: dict[bytes, bytes], default: bytes) -> None:
        self.tails = tails
        self.default = default
        self.transport: asyncio.Transport | None = None
        self.rest = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.rest:
            data = self.rest + data
        lines = data.split(b"\n")
        self.rest = lines.pop()
        if len(self.rest) > limits.line_size_max:
            self.rest = b""
        out = []
        tails = self.tails
        for line in lines:
            if not line.strip():
                continue
            rid = b"null"
            op = b""
            if line.startswith(b'{"id":'):
                j = line.find(b",", 6)
                if j > 0:
                    rid = line[6:j]
                    if line.startswith(b'"op":"', j + 1):
                        op = line[j + 7 : line.find(b'"', j + 7)]
            else:
                try:
                    req = _decoder.decode(line)
                    rid = _encoder.encode(req.get("id"))
                    op = str(req.get("op", "")).encode()
                except (msgspec.DecodeError, AttributeError):
                    pass
            out.append(b'{"id":' + rid + b"," + tails.get(op, self.default))
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(sock: socket.socket, ready: Any = None) -> None:
    """Serve on a bound, listening socket until SIGTERM/SIGINT."""
    bodies = canned_bodies()
    tails = {op: body[1:] + b"\n" for op, body in bodies.items()}
    default = tails[b"buy"]
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: NullConnection(tails, default), sock=sock, backlog=limits.listen_backlog
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready(sock.getsockname()[:2])
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m railtix.bench.null_server", description=__doc__.split("\n")[0])
    p.add_argument("--tcp", default="127.0.0.1:0", help="HOST:PORT to listen on; port 0 picks one")
    p.add_argument("--workers", type=int, default=1, help="processes sharing the socket")
    args = p.parse_args(argv)
    host, _, port = args.tcp.rpartition(":")
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass

    def ready(addr: tuple[str, int]) -> None:
        print(f"null listening tcp://{addr[0]}:{addr[1]}", flush=True)

    sock = listen(host, int(port))
    # pre-fork: every process accepts on the one socket (forked before any event loop exists)
    children: list[int] = []
    announce: Any = ready
    for _ in range(max(1, args.workers) - 1):
        pid = os.fork()
        if pid == 0:
            children, announce = [], None
            break
        children.append(pid)
    asyncio.run(serve(sock, announce))
    for pid in children:
        try:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    sys.exit(0)


if __name__ == "__main__":
    main()
