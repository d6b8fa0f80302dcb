"""``railtix bench writer``: the write path alone, without sockets or a second process.

The rush's buys (same plan, same seed) go straight into ``Batch.apply`` in batches of a chosen
size, on a fresh SQLite file with ``synchronous=FULL``; then one pay for every order made. What
it reports is the cost of the batch transaction itself (allocation, rows, keys, commit) per
command, and the WAL pages each commit wrote: the numbers to read before and after changing the
writer, free of the network and of the load generator's share of the machine.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import msgspec

from railtix import limits as server_limits
from railtix.bench.plan import Buy, Plan, encode_buy
from railtix.core import rides
from railtix.service.batch import Batch, Command
from railtix.wire import messages as m

_decoder = msgspec.json.Decoder(m.Request)
_replies = msgspec.json.Decoder()


def _frames(store: Any) -> int:
    """WAL frames written since the last call (a passive checkpoint resets the count)."""
    row = store._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(row[1])


def measure(buys: int, batch: int, seed: int, echo: Callable[[str], None] = print) -> dict[str, Any]:
    from railtix.service.service import Service, fingerprint

    with tempfile.TemporaryDirectory(prefix="railtix-bench-writer-") as folder:
        svc = Service.open(os.path.join(folder, "railtix.db"))
        store = svc.store
        now = time.time()
        tx = store.begin()
        users = [int(tx.add_user(f"bench-writer-{i}", "-", now) or 0) for i in range(20)]
        tx.commit()
        plan = Plan("rush", seed)
        dates = Plan.dates(rides.today(now))
        steps = [plan.steps(c) for c in range(1000)]
        cmds: list[Command] = []
        while len(cmds) < buys:
            for n, it in enumerate(steps):
                step = next(it)
                assert isinstance(step, Buy)
                req = _decoder.decode(encode_buy(step, "-", dates))
                assert isinstance(req, m.Buy)
                ride = rides.ride(svc.timetable, req.train, req.date, req.from_, req.to, now, server_limits.presale_days)
                user = users[n % len(users)]
                cmds.append(Command("buy", source=n, user=user, req=req, ride=ride, key=req.key, fingerprint=fingerprint(req)))
                if len(cmds) == buys:
                    break
        echo(f"{buys:,} rush buys (seed {seed}) in batches of {batch}, then a pay for each order")
        assert isinstance(svc.batch, Batch)  # the transaction in this process, not a child's
        apply = svc.batch.apply

        def run(todo: list[Command]) -> tuple[float, float, int]:
            """Seconds spent in the batches (not in the counting), of them on the CPU (the
            steadier figure: the wall time includes each commit's fsync), and WAL pages written."""
            _frames(store)
            spent, cpu, frames = 0.0, 0.0, 0
            for k in range(0, len(todo), batch):
                t, c = time.perf_counter(), time.process_time()
                apply(todo[k : k + batch], now)
                spent += time.perf_counter() - t
                cpu += time.process_time() - c
                frames += _frames(store)
            return spent, cpu, frames

        buy_s, buy_cpu, frames = run(cmds)
        pays: list[Command] = []
        for c in cmds:
            assert c.body is not None
            reply = _replies.decode(c.body)
            if reply["ok"]:
                order = reply["order"]["order"]
                req = m.Pay(token="-", key=f"{c.key}p", order=order)
                pays.append(Command("pay", source=c.source, user=c.user, req=req, key=req.key, fingerprint=fingerprint(req)))
        pay_s, pay_cpu, pay_frames = run(pays)
        svc.stop()
    batches = -(-buys // batch)
    pay_batches = max(1, -(-len(pays) // batch))
    return {
        "buys": buys,
        "orders": len(pays),
        "batch": batch,
        "seed": seed,
        "buy_us": round(1e6 * buy_s / buys, 1),
        "pay_us": round(1e6 * pay_s / max(1, len(pays)), 1),
        "buy_cpu_us": round(1e6 * buy_cpu / buys, 1),
        "pay_cpu_us": round(1e6 * pay_cpu / max(1, len(pays)), 1),
        "wal_pages_per_buy_batch": round(frames / batches, 1),
        "wal_pages_per_pay_batch": round(pay_frames / pay_batches, 1),
    }
