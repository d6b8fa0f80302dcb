"""Sending the plan and timing the replies: asyncio Protocols on uvloop, one or several processes.

Each client is one TCP connection (an ``asyncio.Protocol``, not a stream: no task, no reader
object, no future per request) that keeps up to ``pipeline`` requests in flight. Request bytes
are encoded before the clock starts; while it runs a client only writes bytes, splits reply
lines, checks that each reply echoes the id it expects (replies come in request order) and
reads ``ok``, the order id or the error code by byte search, not by decoding the JSON.

Latency and coordinated omission. In the closed loop (``rate == 0``, the default: every client
sends its next request as soon as a slot is free) a stalled server also stalls the clients, so
the requests that would have arrived during the stall are never sent and never timed. Each
reply is therefore recorded with ``record_corrected_value(latency, interval)``, HdrHistogram's
correction, where ``interval`` is the mean time between requests of one pipeline slot over the
run (slots x elapsed / replies): the samples a steady stream of arrivals would have seen during
a stall are added back. The uncorrected figures are kept beside them. In the open loop
(``rate > 0``) requests are due at fixed intended times (request n of the whole load at
n / rate, dealt round-robin to the clients); latency runs from the intended time, not from the
moment the request could be written, so a client held back by a full pipeline or a slow server
counts that wait too. No correction is needed or applied there.

Several processes (``--processes``) each run their share of the clients (client c goes to process
c mod P), meet at a barrier once connected, and return their histograms (HdrHistogram's encoded
form), counters and counts per tick (``limits.tick_s``) for ``report`` to merge.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import multiprocessing as mp
import multiprocessing.synchronize
import resource
import socket
import time
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from railtix.bench import limits
from railtix.bench.plan import (
    ROLE_AGAIN,
    ROLE_PAY,
    ROLE_REFUND,
    Buy,
    Catalog,
    Plan,
    Search,
    TrainRef,
    encode_buy,
    encode_followup,
    encode_search,
)

#: Operations as the reports name them; the kinds below index them.
OPS = ("search", "buy", "buy_again", "pay", "cancel", "refund")
K_SEARCH, K_BUY, K_AGAIN, K_PAY, K_CANCEL, K_REFUND = range(6)
STATUS_AFTER = {K_BUY: "held", K_AGAIN: "held", K_PAY: "paid", K_CANCEL: "cancelled", K_REFUND: "refunded"}

#: HdrHistogram range in microseconds: 1 µs to one hour, three significant digits.
HIST_LOW_US, HIST_HIGH_US, HIST_DIGITS = 1, 3_600_000_000, 3

_OK = b'"ok":true'
_ORDER = b'"order":"'
_CODE = b'"code":"'

Progress = Callable[[dict[str, float]], None]


def _prefix(rid: int) -> bytes:
    """How the reply to request ``rid`` starts (replies echo the id first): made when the
    request is encoded, mostly before the clock starts, rather than for every reply."""
    return b'{"id":%d,' % rid


@dataclass
class LoadSpec:
    """Everything a load process needs; pickled to each worker."""

    scenario: str
    seed: int
    host: str
    port: int
    clients: int
    tokens: list[str]
    dates: list[str]
    pipeline: int = 1
    duration_s: float = 10.0
    rate: float = 0.0  #: requests per second in all, open loop; 0 is the closed loop
    processes: int = 1
    runs: int = 8
    trains: tuple[TrainRef, ...] = ()  #: the catalog; empty means the demo timetable's
    drain_s: float = limits.drain_timeout_s
    #: the target sells what it is asked for, so a rush ends when its runs are sold; False for
    #: the null server, which answers every buy ok: a rush against it runs its whole duration
    sells_out: bool = True
    progress_s: float = 0.5
    extra: dict[str, Any] = field(default_factory=dict)

    def plan(self) -> Plan:
        return Plan(self.scenario, self.seed, Catalog(self.trains) if self.trains else None, self.runs)


def ahead_per_client(spec: LoadSpec, plan: Plan, clients: int) -> int:
    """Steps each of a load process's ``clients`` encodes before the clock starts: what the run
    will send, as well as it can be told beforehand, so that the measured loop mostly writes."""
    if spec.rate > 0:
        total = spec.rate / spec.processes * spec.duration_s * 1.1
    else:
        total = limits.requests_per_s_guess / spec.processes * spec.duration_s
    if plan.runs and spec.sells_out:  # a rush: about as many buys as its runs have seat-legs
        legs = sum(t.capacity * (len(t.stops) - 1) for t, _ in plan.runs)
        total = min(total, limits.rush_steps_per_seat_leg * legs / spec.processes)
    return max(4, min(int(total / clients) + 4, limits.prepared_per_worker_max // clients))


class Board:
    """The rush's view, per process, of which (run, class) a buyer would call sold out.

    Random segments keep finding an odd free leg long after a run is sold out for any real
    buyer, so a (run, class) is given up when nearly all of its recent buys were refused
    ``sold_out`` (``sold_out_share_min`` of the last ``sold_out_window`` answers), and the
    rush is over when every one is given up.
    """

    def __init__(self, plan: Plan) -> None:
        self.recent: dict[tuple[int, str], deque[bool]] = {}
        self.refused: dict[tuple[int, str], int] = {}
        self.exhausted: set[tuple[int, str]] = set()
        self.pairs = {(i, c) for i, (t, _) in enumerate(plan.runs) for c, _ in t.seats}
        self.all_exhausted = not self.pairs
        self.at_ns = 0  #: when the last pair was given up
        self.need = int(limits.sold_out_window * limits.sold_out_share_min)

    def answer(self, hot: int, seat_class: str, sold_out: bool) -> None:
        key = (hot, seat_class)
        if key in self.exhausted:
            return
        q = self.recent.get(key)
        if q is None:
            q = self.recent[key] = deque()
            self.refused[key] = 0
        q.append(sold_out)
        refused = self.refused[key] + sold_out
        if len(q) > limits.sold_out_window:
            refused -= q.popleft()
        self.refused[key] = refused
        if refused >= self.need:
            self.exhausted.add(key)
            if self.exhausted >= self.pairs:
                self.all_exhausted = True
                self.at_ns = time.perf_counter_ns()


class Recorder:
    """Counters, latencies (µs, per kind) and counts per tick (``limits.tick_s``) of one process."""

    def __init__(self, ticks: int) -> None:
        self.lat = [array("q") for _ in OPS]
        self.ok = [0] * len(OPS)
        self.err = [0] * len(OPS)
        self.errors: dict[str, int] = {}
        self.errors_by_op: dict[str, dict[str, int]] = {}
        self.ticks = ticks
        self.ok_by_tick = [array("l", bytes(8 * ticks)) for _ in OPS]
        self.err_by_tick = array("l", bytes(8 * ticks))
        self.last_buy_ns = 0
        #: per kind, how many latencies were recorded by the end of each tick: replies come in
        #: time order, so tick t's latencies are ``lat[k][start:cuts[k][t]]``, from 0 for the
        #: first tick and from ``cuts[k][t - 1]`` for the others
        self.cuts = [array("q") for _ in OPS]
        self.closed = 0  #: ticks whose cuts are made

    def close_ticks(self, tick: int) -> None:
        """Make the cuts of every tick before ``tick`` (called when a reply of a later tick
        comes: once per tick, not per reply)."""
        upto = min(tick, self.ticks)
        while self.closed < upto:
            for k, lat in enumerate(self.lat):
                self.cuts[k].append(len(lat))
            self.closed += 1

    def latency_by_tick(self, ticks_per_point: int) -> dict[str, list[str | None]]:
        """Per kind with replies, per point of ``ticks_per_point`` ticks: an HdrHistogram of its
        latencies (encoded, None for a point without replies), which the load processes' results
        add up as the whole run's are."""
        self.close_ticks(self.ticks)
        out: dict[str, list[str | None]] = {}
        for k, lat in enumerate(self.lat):
            if not len(lat):
                continue
            cuts = self.cuts[k]
            points: list[str | None] = []
            start = 0
            for first in range(0, len(cuts), ticks_per_point):
                end = cuts[min(first + ticks_per_point, len(cuts)) - 1]  # where the point's last tick ends
                values, counts = _bucketed(lat[start:end])
                points.append(_encoded(values, counts) if len(values) else None)
                start = end
            out[OPS[k]] = points
        return out

    def error(self, kind: int, code: str, tick: int, replied: bool = True) -> None:
        """An error by code; ``replied`` is False for requests that never got a reply
        (``unanswered``, ``connection_lost``): counted by code, but not as replies."""
        self.errors[code] = self.errors.get(code, 0) + 1
        per = self.errors_by_op.setdefault(OPS[kind], {})
        per[code] = per.get(code, 0) + 1
        if replied:
            self.err[kind] += 1
            self.err_by_tick[min(max(tick, 0), self.ticks - 1)] += 1


class Client(asyncio.Protocol):
    """One connection: its plan, its pipeline, its replies."""

    def __init__(self, engine: Engine, index: int, token: str) -> None:
        self.e = engine
        self.index = index
        self.token = token
        self.tokenb = token.encode()
        # steps drawn during the run skip the (run, class) pairs the rush has given up
        self.steps = engine.plan.steps(index, engine.board.exhausted if engine.board is not None else ())
        self.prepared: deque[tuple[int, bytes, Any, bytes]] = deque()
        self.follow: deque[tuple[int, bytes, Any, bytes]] = deque()
        self.inflight: deque[tuple[int, int, Any, bytes]] = deque()
        self.tickets: deque[int] = deque()
        self.rest = b""
        self.transport: asyncio.Transport | None = None
        self.done = False  #: its plan is over (the rush sold out)
        self.finished = False  #: done and nothing in flight: counted by the engine
        self.first: dict[int, bytes | str] = {}  #: buy seq -> its order id or error code

    # --- the plan ---------------------------------------------------------------------------
    def encode(self, step: Search | Buy) -> tuple[int, bytes, Any, bytes]:
        if type(step) is Search:
            return K_SEARCH, encode_search(step, self.e.dates), step, _prefix(step.seq * 4)
        assert isinstance(step, Buy)
        return K_BUY, encode_buy(step, self.token, self.e.dates), step, _prefix(step.seq * 4)

    def prepare(self, n: int) -> None:
        steps, prepared = self.steps, self.prepared
        for _ in range(n):
            step = next(steps)
            assert step is not None, "nothing is given up before the clock starts"
            prepared.append(self.encode(step))

    def next_request(self) -> tuple[int, bytes, Any, bytes] | None:
        e = self.e
        if e.stopping:
            return None
        if self.follow:
            return self.follow.popleft()
        if self.done:
            return None
        board = e.board
        while True:
            if self.prepared:
                r = self.prepared.popleft()
                step = r[2]
                skip = (
                    r[0] == K_BUY and board is not None and bool(board.exhausted)
                    and (step.hot, step.seat_class) in board.exhausted
                )
            else:
                drawn = next(self.steps)  # None: a step on a pair given up, not even drawn whole
                skip = drawn is None
                if drawn is not None:
                    r = self.encode(drawn)
                    step = drawn
            if skip:
                assert board is not None
                e.skipped += 1
                if board.all_exhausted:
                    self.done = True
                    return None
                continue
            if r[0] == K_BUY and step.again:
                self.follow.appendleft(
                    (K_AGAIN, encode_buy(step, self.token, e.dates, ROLE_AGAIN), step, _prefix(step.seq * 4 + ROLE_AGAIN))
                )
            return r

    # --- sending ------------------------------------------------------------------------------
    def pump(self, now: int) -> None:
        t = self.transport
        inflight = self.inflight
        room = self.e.pipeline - len(inflight)
        if t is None or room <= 0 or self.finished:
            return
        out = []
        pending = self.e.pending
        if self.e.open_loop:
            tickets = self.tickets
            while tickets and room > 0:
                r = self.next_request()
                if r is None:
                    tickets.clear()
                    break
                kind, data, ctx, prefix = r
                inflight.append((tickets.popleft(), kind, ctx, prefix))
                if kind >= K_PAY:
                    pending[ctx[1]] = kind
                out.append(data)
                room -= 1
        else:
            while room > 0:
                r = self.next_request()
                if r is None:
                    break
                kind, data, ctx, prefix = r
                inflight.append((now, kind, ctx, prefix))
                if kind >= K_PAY:
                    pending[ctx[1]] = kind
                out.append(data)
                room -= 1
        if out:
            t.write(out[0] if len(out) == 1 else b"".join(out))
            self.e.sent += len(out)
        elif not inflight and (self.e.stopping or (self.done and not self.follow)):
            self.finish()

    def finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.e.client_finished()

    # --- protocol events ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.rest:
            data = self.rest + data
        lines = data.split(b"\n")
        self.rest = lines.pop()
        now = time.perf_counter_ns()
        if lines:
            self.e.last_reply_ns = now
        for line in lines:
            if line:
                self.reply(line, now)
        self.pump(now)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        e = self.e
        if self.inflight and not e.closing:
            tick = e.tick(time.perf_counter_ns())
            for _, kind, _, _ in self.inflight:
                e.rec.error(kind, "connection_lost", tick, replied=False)
            e.lost_in_flight += len(self.inflight)
            self.inflight.clear()
        self.finish()

    # --- replies --------------------------------------------------------------------------------
    def reply(self, line: bytes, now: int) -> None:
        e = self.e
        rec = e.rec
        try:
            t0, kind, ctx, prefix = self.inflight.popleft()
        except IndexError:
            e.protocol_errors += 1
            return
        tick = (now - e.t0) // e.tick_ns  # e.tick(now), without the call: once per reply
        if tick > rec.closed:
            rec.close_ticks(tick)
        if not line.startswith(prefix):
            # A refusal of the whole connection (busy, timeout, shutting_down) carries no id of
            # ours: count it by its code. Anything else is a reply out of order.
            i = line.find(_CODE)
            if line.startswith(b'{"id":null,') and i >= 0:
                rec.error(kind, line[i + 8 : line.index(b'"', i + 8)].decode(), tick)
            else:
                e.protocol_errors += 1
                rec.error(kind, "reply_id_mismatch", tick)
            return
        rec.lat[kind].append((now - t0) // 1000)
        if line.startswith(_OK, len(prefix)):
            rec.ok[kind] += 1
            if tick < rec.ticks:
                rec.ok_by_tick[kind][tick] += 1
            if kind == K_SEARCH:
                return
            self.ok_reply(kind, ctx, line, now)
            return
        i = line.find(_CODE)
        code = line[i + 8 : line.index(b'"', i + 8)].decode() if i >= 0 else "unreadable_error"
        rec.error(kind, code, tick)
        if kind == K_BUY:
            step = ctx
            if step.hot >= 0 and e.board is not None:
                e.board.answer(step.hot, step.seat_class, code == "sold_out")
            if step.again:
                self.first[step.seq] = code
        elif kind == K_AGAIN:
            self.first.pop(ctx.seq, None)
        elif kind >= K_PAY:
            e.pending.pop(ctx[1], None)

    def ok_reply(self, kind: int, ctx: Any, line: bytes, now: int) -> None:
        e = self.e
        i = line.find(_ORDER)
        if i < 0:
            e.protocol_errors += 1
            return
        oid = line[i + 9 : line.index(b'"', i + 9)]
        if kind == K_BUY:
            step = ctx
            e.rec.last_buy_ns = now
            e.acks[oid] = "held"
            if e.board is not None and step.hot >= 0:
                e.board.answer(step.hot, step.seat_class, False)
            if step.again:
                self.first[step.seq] = oid
            then = step.then
            if then == "pay" or then == "refund":
                self.follow.append(
                    (K_PAY, encode_followup(b"pay", step.seq * 4 + ROLE_PAY, self.tokenb, step.key.encode(), oid),
                     (step, oid), _prefix(step.seq * 4 + ROLE_PAY))
                )
            elif then == "cancel":
                self.follow.append(
                    (K_CANCEL, encode_followup(b"cancel", step.seq * 4 + ROLE_PAY, self.tokenb, step.key.encode(), oid),
                     (step, oid), _prefix(step.seq * 4 + ROLE_PAY))
                )
        elif kind == K_AGAIN:
            first = self.first.pop(ctx.seq, None)
            if isinstance(first, bytes) and first != oid:
                e.key_mismatches.append((ctx.key, first.decode(), oid.decode()))
            elif first is None or isinstance(first, str):
                # the first try was refused (or never answered) yet the repeat made an order
                e.key_inconsistent.append((ctx.key, first or "", oid.decode()))
                e.acks.setdefault(oid, "held")
        else:
            step = ctx[0]
            e.pending.pop(oid, None)
            e.acks[oid] = STATUS_AFTER[kind]
            if kind == K_PAY and step.then == "refund":
                self.follow.append(
                    (K_REFUND, encode_followup(b"refund", step.seq * 4 + ROLE_REFUND, self.tokenb, step.key.encode(), oid),
                     (step, oid), _prefix(step.seq * 4 + ROLE_REFUND))
                )


class Engine:
    """One process's share of the load."""

    def __init__(
        self,
        spec: LoadSpec,
        worker: int = 0,
        barrier: multiprocessing.synchronize.Barrier | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.spec = spec
        self.worker = worker
        self.barrier = barrier
        self.progress = progress
        self.plan = spec.plan()
        self.dates = spec.dates
        self.pipeline = spec.pipeline
        self.open_loop = spec.rate > 0
        self.rate = spec.rate / spec.processes
        self.board = Board(self.plan) if self.plan.mix.hot else None
        seconds = min(limits.timeline_seconds_max, spec.duration_s + spec.drain_s + 2)
        self.rec = Recorder(int(seconds / limits.tick_s) + 1)
        #: timeline buckets per point of the latency curves: at most ``latency_points_max``
        #: points over all the ticks the recorder keeps
        self.ticks_per_point = max(1, math.ceil(self.rec.ticks / limits.latency_points_max))
        self.indices = list(range(worker, spec.clients, spec.processes))
        self.clients: list[Client] = []
        self.acks: dict[bytes, str] = {}
        self.pending: dict[bytes, int] = {}
        self.key_mismatches: list[tuple[str, str, str]] = []
        self.key_inconsistent: list[tuple[str, str, str]] = []
        self.sent = 0
        self.skipped = 0
        self.protocol_errors = 0
        self.lost_in_flight = 0
        self.connect_failed: dict[str, int] = {}
        self.stopping = False
        self.closing = False
        self.t0 = 0
        self.tick_ns = int(limits.tick_s * 1e9)
        self.last_reply_ns = 0
        self.cpu_s = 0.0
        self.finished = 0
        self.all_finished: asyncio.Event | None = None

    def tick(self, now: int) -> int:
        """The timeline bucket of a moment (``limits.tick_s`` wide). ``Client.reply`` computes
        the same inline, once per reply: change both together."""
        return (now - self.t0) // self.tick_ns

    def client_finished(self) -> None:
        self.finished += 1
        if self.finished >= len(self.clients) and self.all_finished is not None:
            self.all_finished.set()

    # --- phases -------------------------------------------------------------------------------
    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(limits.connects_at_once_max)
        spec = self.spec
        tokens = spec.tokens

        async def one(i: int) -> Client | None:
            c = Client(self, i, tokens[i % len(tokens)])
            async with gate:
                try:
                    await asyncio.wait_for(
                        loop.create_connection(lambda: c, spec.host, spec.port), limits.connect_timeout_s
                    )
                except (TimeoutError, OSError) as exc:
                    why = type(exc).__name__
                    self.connect_failed[why] = self.connect_failed.get(why, 0) + 1
                    return None
            return c

        got = await asyncio.gather(*(one(i) for i in self.indices))
        self.clients = [c for c in got if c is not None]
        for c in self.clients:
            sock = c.transport.get_extra_info("socket") if c.transport else None
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def prepare(self) -> None:
        """Encode the first requests of every client before the clock starts."""
        n = len(self.clients)
        if not n:
            return
        per = ahead_per_client(self.spec, self.plan, n)
        for c in self.clients:
            c.prepare(per)

    async def run(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        self.all_finished = asyncio.Event()
        await self.connect()
        self.prepare()
        if self.barrier is not None:
            await loop.run_in_executor(None, self.barrier.wait, limits.setup_timeout_s)
        wall0 = time.time()
        cpu0 = _cpu_s()
        self.t0 = t0 = time.perf_counter_ns()
        if not self.clients:
            self.all_finished.set()
        end_ns = t0 + int(self.spec.duration_s * 1e9)
        ticker = loop.create_task(self._ticker(end_ns)) if self.open_loop else None
        reporter = loop.create_task(self._report_progress())
        if not self.open_loop:
            for c in self.clients:
                c.pump(t0)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.all_finished.wait(), self.spec.duration_s)
        stopped_ns = time.perf_counter_ns()
        self.stopping = True
        for c in self.clients:
            if not c.inflight:
                c.finish()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.all_finished.wait(), self.spec.drain_s)
        end = time.perf_counter_ns()
        self.cpu_s = _cpu_s() - cpu0
        if ticker is not None:
            ticker.cancel()
        reporter.cancel()
        self.closing = True
        unanswered = 0
        for c in self.clients:
            unanswered += len(c.inflight)
            tick = self.tick(end)
            for _, kind, _ctx, _ in c.inflight:
                self.rec.error(kind, "unanswered", tick, replied=False)
            if c.transport is not None:
                c.transport.abort()
        await asyncio.sleep(0)
        return self.result(wall0, stopped_ns, end, unanswered)

    async def _ticker(self, end_ns: int) -> None:
        """Open loop: deal requests that are due to the clients, every millisecond."""
        clients = self.clients
        n = len(clients)
        if not n:
            return
        rate = self.rate
        t0 = self.t0
        issued = 0
        step_ns = 1e9 / rate
        while not self.stopping:
            now = time.perf_counter_ns()
            due = int((min(now, end_ns) - t0) / step_ns) + 1
            touched = set()
            while issued < due:
                c = clients[issued % n]
                if not c.done and not c.finished:
                    c.tickets.append(t0 + int(issued * step_ns))
                    touched.add(c)
                issued += 1
            for c in touched:
                c.pump(now)
            await asyncio.sleep(0.001)

    async def _report_progress(self) -> None:
        if self.progress is None:
            return
        while True:
            await asyncio.sleep(self.spec.progress_s)
            self.progress(self.counters())

    def counters(self) -> dict[str, float]:
        rec = self.rec
        return {
            "elapsed": (time.perf_counter_ns() - self.t0) / 1e9,
            "sent": self.sent,
            "done": sum(rec.ok) + sum(rec.err),
            "confirmed": rec.ok[K_BUY],
            "searches": rec.ok[K_SEARCH],
            "errors": sum(rec.err),
            "clients": len(self.clients),
        }

    # --- the result -------------------------------------------------------------------------------
    def result(self, wall0: float, stopped_ns: int, end_ns: int, unanswered: int) -> dict[str, Any]:
        rec = self.rec
        # the run lasted until its last reply, or the duration if the server went quiet sooner:
        # waiting out the drain for replies that never came is not time the server served
        elapsed_s = (max(stopped_ns, min(self.last_reply_ns, end_ns)) - self.t0) / 1e9
        replies = sum(len(a) for a in rec.lat)
        slots = max(1, len(self.clients) * self.pipeline)
        interval_us = int(slots * elapsed_s * 1e6 / replies) if replies else 0
        raw: dict[str, str] = {}
        corrected: dict[str, str] = {}
        for kind, op in enumerate(OPS):
            values, counts = _bucketed(rec.lat[kind])
            if not len(values):
                continue
            raw[op] = _encoded(values, counts)
            if not self.open_loop and interval_us > 0:
                hc = HdrHistogram(HIST_LOW_US, HIST_HIGH_US, HIST_DIGITS)
                for v, n in zip(values.tolist(), counts.tolist(), strict=True):
                    hc.record_corrected_value(v, interval_us, n)
                corrected[op] = hc.encode().decode()
        board = self.board
        return {
            "worker": self.worker,
            "clients": len(self.clients),
            "connect_failed": self.connect_failed,
            "wall_start": wall0,
            "elapsed_s": elapsed_s,
            "stopped_s": (stopped_ns - self.t0) / 1e9,
            "selling_s": (rec.last_buy_ns - self.t0) / 1e9 if rec.last_buy_ns else 0.0,
            "sold_out_s": (board.at_ns - self.t0) / 1e9 if board is not None and board.at_ns else None,
            "interval_us": interval_us,
            "cpu_s": self.cpu_s,
            "sent": self.sent,
            "skipped": self.skipped,
            "unanswered": unanswered,
            "lost_in_flight": self.lost_in_flight,
            "protocol_errors": self.protocol_errors,
            "ok": dict(zip(OPS, rec.ok, strict=True)),
            "err": dict(zip(OPS, rec.err, strict=True)),
            "errors": rec.errors,
            "errors_by_op": rec.errors_by_op,
            "hist": raw,
            "hist_corrected": corrected,
            "ok_by_tick": {op: list(rec.ok_by_tick[k]) for k, op in enumerate(OPS)},
            "latency_by_tick": rec.latency_by_tick(self.ticks_per_point),
            "latency_ticks_per_point": self.ticks_per_point,
            "err_by_tick": list(rec.err_by_tick),
            "acks": {k.decode(): v for k, v in self.acks.items()},
            "pending": {k.decode(): OPS[v] for k, v in self.pending.items()},
            "key_mismatches": self.key_mismatches,
            "key_inconsistent": self.key_inconsistent,
        }


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _encoded(values: np.ndarray, counts: np.ndarray) -> str:
    """Bucketed latencies (``_bucketed``) as an encoded HdrHistogram."""
    h = HdrHistogram(HIST_LOW_US, HIST_HIGH_US, HIST_DIGITS)
    for v, n in zip(values.tolist(), counts.tolist(), strict=True):
        h.record_value(v, n)
    return str(h.encode().decode())


def _bucketed(lat: array) -> tuple[np.ndarray, np.ndarray]:
    """Latencies rounded down to three significant digits (HdrHistogram's own precision),
    as (values, counts): recording 300,000 samples then costs a few thousand calls."""
    if not len(lat):
        return np.array([], dtype=np.int64), np.array([], dtype=np.int64)
    v = np.maximum(np.frombuffer(lat, dtype=np.int64), HIST_LOW_US)
    v = np.minimum(v, HIST_HIGH_US)
    unit = 10 ** np.maximum(np.floor(np.log10(v)).astype(np.int64) - 2, 0)
    return np.unique((v // unit) * unit, return_counts=True)


# --- running it ---------------------------------------------------------------------------------
def raise_file_limit() -> int:
    """Raise this process's open-file limit to its hard limit: 10,000 clients need 10,000 fds."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (as `railtix serve` runs), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_engine(spec: LoadSpec, worker: int = 0, barrier: Any = None, progress: Progress | None = None) -> dict[str, Any]:
    raise_file_limit()
    # The prepared requests are hundreds of thousands of live objects: a generational collection
    # would walk them all, again and again, in the middle of the measurement. Nothing the load
    # allocates forms cycles that matter for a run bounded in time, so collect once afterwards.
    gc.disable()
    try:
        with asyncio.Runner(loop_factory=new_loop) as runner:
            return runner.run(Engine(spec, worker, barrier, progress).run())
    finally:
        gc.enable()
        gc.collect()


_worker_barrier: Any = None
_worker_counters: Any = None

_COUNTER_NAMES = ("sent", "done", "confirmed", "searches", "errors", "clients")


def _init_worker(barrier: Any, counters: Any) -> None:
    global _worker_barrier, _worker_counters
    _worker_barrier, _worker_counters = barrier, counters


def _worker(args: tuple[LoadSpec, int]) -> dict[str, Any]:
    spec, w = args
    counters = _worker_counters
    width = len(_COUNTER_NAMES)

    def progress(c: dict[str, float]) -> None:
        for k, name in enumerate(_COUNTER_NAMES):
            counters[w * width + k] = int(c[name])

    return run_engine(spec, w, _worker_barrier, progress)


def run_load(spec: LoadSpec, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Run the load in ``spec.processes`` processes; each one's result (see ``Engine.result``)."""
    if spec.processes <= 1:
        return [run_engine(spec, 0, None, progress)]
    ctx = mp.get_context("spawn")
    p = spec.processes
    barrier = ctx.Barrier(p)
    counters = ctx.Array("q", p * len(_COUNTER_NAMES), lock=False)
    started = time.monotonic()
    with ctx.Pool(p, initializer=_init_worker, initargs=(barrier, counters)) as pool:
        pending = pool.map_async(_worker, [(spec, w) for w in range(p)])
        seen_start: float | None = None
        while not pending.ready():
            pending.wait(spec.progress_s)
            if progress is None:
                continue
            width = len(_COUNTER_NAMES)
            totals = {name: float(sum(counters[w * width + k] for w in range(p))) for k, name in enumerate(_COUNTER_NAMES)}
            if totals["sent"] and seen_start is None:
                seen_start = time.monotonic() - spec.progress_s
            totals["elapsed"] = time.monotonic() - (seen_start or started)
            if seen_start is not None:
                progress(totals)
        return pending.get()
