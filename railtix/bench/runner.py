"""One bench run from start to verdict: find or start the server, set up users, run the load
(against the null server first when the ceiling is asked for), audit, and write the reports.

Kept apart from the command line so that ``compare`` and the tests drive the same code.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from railtix.bench import limits, report
from railtix.bench.audit import Evidence, audit
from railtix.bench.cpu import Meter, listeners
from railtix.bench.load import LoadSpec, ahead_per_client, run_load
from railtix.bench.null_server import LABEL as NULL_LABEL
from railtix.bench.null_server import NAME as NULL_SERVER
from railtix.bench.plan import Plan
from railtix.bench.servers import (
    ServerFailed,
    Spawned,
    is_local,
    listening,
    parse_target,
    remove_database,
    served_database,
    slow_client,
    start_null,
    start_railtix,
)
from railtix.bench.setup import SetupFailed, password_for, prepare, user_names
from railtix.core.rides import today
from railtix.serve import DEFAULT_MODEL

DEFAULT_TARGET = "tcp://127.0.0.1:5002"
DEFAULT_DATABASE = "railtix.db"

#: Default pace of the soak scenario (requests per second in all, open loop).
soak_rate_default = 2000.0


class BenchFailed(RuntimeError):
    """The bench could not run (no server, setup refused…): exit status 2."""


@dataclass
class Options:
    scenario: str = "rush"
    target: str = DEFAULT_TARGET
    clients: int = 100
    duration_s: float = 10.0
    seed: int | None = None
    pipeline: int = 1
    processes: int = 1
    rate: float | None = None  #: None: the scenario's default (closed loop, soak paced)
    runs: int = 8
    database: str | None = None
    serve: bool = False
    model: str | None = None
    server_args: tuple[str, ...] = ()
    ceiling: bool = False
    null_workers: int = 1
    slow_client: bool = False
    drain_s: float = limits.drain_timeout_s
    json_path: str | None = None
    plot_path: str | None = None
    quiet: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


Say = Callable[[str], None]


def new_seed() -> int:
    return random.SystemRandom().randint(1, 2**31 - 1)


def resolve_rate(o: Options) -> float:
    if o.rate is not None:
        return o.rate
    return soak_rate_default if o.scenario == "soak" else 0.0


def _progress_printer(o: Options, say_live: Any) -> Callable[[dict[str, float]], None]:
    last = {"t": 0.0, "done": 0.0, "confirmed": 0.0}

    def show(c: dict[str, float]) -> None:
        dt_ = max(c["elapsed"] - last["t"], 1e-6)
        rps = (c["done"] - last["done"]) / dt_
        cps = (c["confirmed"] - last["confirmed"]) / dt_
        last.update(t=c["elapsed"], done=c["done"], confirmed=c["confirmed"])
        say_live(
            f"{o.scenario}  {c['elapsed']:5.1f}/{o.duration_s:g} s  {rps:9,.0f} replies/s  "
            f"confirmed {int(c['confirmed']):,} ({cps:,.0f}/s)  searches {int(c['searches']):,}  "
            f"errors {int(c['errors']):,}  in flight {int(c['sent'] - c['done']):,}  clients {int(c['clients']):,}"
        )

    return show


def run_once(
    o: Options, host: str, port: int, seed: int, server_name: str = "", live: Any = None,
    say: Say = print,
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Set up and run the load once against host:port: (merged result, meta, users)."""
    plan = Plan(o.scenario, seed, None, o.runs)
    users = user_names(seed, max(1, min(o.clients, limits.users_max)))
    t = time.monotonic()
    try:
        info = prepare(host, port, users, password_for(seed), [tr for tr, _ in plan.runs])
    except SetupFailed as e:
        raise BenchFailed(str(e)) from e
    if not o.quiet:
        say(f"setup: {len(users)} users logged in on {info['server']} in {time.monotonic() - t:.1f} s")
    slow = slow_client(host, port) if o.slow_client else None
    spec = LoadSpec(
        scenario=o.scenario, seed=seed, host=host, port=port, clients=o.clients, tokens=info["tokens"],
        dates=Plan.dates(today(time.time())), pipeline=o.pipeline, duration_s=o.duration_s,
        rate=resolve_rate(o), processes=o.processes, runs=o.runs, drain_s=o.drain_s,
        sells_out=info["server"] != NULL_SERVER,
    )
    # the server's CPU from here on: after setup (password hashing is not the rush's), and
    # while the generator prepares its requests the server does nothing
    meter = Meter.for_port(port) if is_local(host) else None
    before = meter.read() if meter is not None else {}
    if live is not None:  # connecting and encoding ahead take a few seconds before the clock starts
        ahead = ahead_per_client(spec, plan, max(1, o.clients // o.processes)) * o.clients
        live(f"{o.scenario}  connecting {o.clients:,} clients and encoding their first {ahead:,} requests "
             "(ahead, so that the measured loop only sends) …")
    try:
        results = run_load(spec, _progress_printer(o, live) if live is not None else None)
    finally:
        if slow is not None:
            slow.close()
    server_cpu = meter.since(before) if meter is not None else []
    merged = report.merge(results)
    if not merged["clients"]:
        why = ", ".join(f"{k} x{v}" for k, v in merged["connect_failed"].items()) or "no connection"
        raise BenchFailed(f"no client could connect to {host}:{port} ({why})")
    meta = {
        "scenario": o.scenario,
        "seed": seed,
        "target": f"tcp://{host}:{port}",
        "server": server_name or info["server"],
        "model": o.model,
        "clients": o.clients,
        "pipeline": o.pipeline,
        "processes": o.processes,
        "duration_s": o.duration_s,
        "rate": spec.rate,
        "slow_client": o.slow_client,
        "runs": [f"{tr.number}@{spec.dates[day]}" for tr, day in plan.runs],
        "server_cpu": server_cpu,
    }
    return merged, meta, users


class _Live:
    """The live progress line (rich), on stderr, gone when the run ends."""

    def __init__(self, quiet: bool) -> None:
        self.live = None
        if not quiet:
            from rich.console import Console
            from rich.live import Live

            self.live = Live("", console=Console(stderr=True), auto_refresh=False, transient=True)

    def __enter__(self) -> _Live:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Take the line away (before the report is printed); later updates show nothing."""
        if self.live is not None:
            self.live.__exit__(None, None, None)
            self.live = None

    def __call__(self, text: str) -> None:
        if self.live is not None:
            self.live.update(text, refresh=True)


def execute(o: Options, say: Say = print) -> tuple[dict[str, Any], int]:
    """The whole run: the report document and the exit status (0 clean, 1 audit failed)."""
    seed = o.seed if o.seed is not None else new_seed()
    say(f"railtix bench {o.scenario}: seed {seed} (repeat with --seed {seed})")
    spawned: Spawned | None = None
    database = o.database
    ceiling_doc: dict[str, Any] | None = None
    try:
        if o.ceiling:
            ceiling_doc = _run_null(o, seed, say)
        if o.target == "null":
            doc = ceiling_doc if ceiling_doc is not None else _run_null(o, seed, say)
            doc["audit"] = {"skipped": "the null server keeps no data", "oversold": None, "lost": None, "duplicates": None}
            ceiling_doc = None
            return _finish(o, doc, say), 0
        host, port = parse_target(o.target)
        must_serve = o.serve or (
            o.target == DEFAULT_TARGET and database is None and not listening(host, port)
        )
        if must_serve:
            if not o.serve:
                say(f"nothing listens at {o.target}: starting a server on a temporary database")
            spawned = start_railtix(None, o.model, o.server_args)
            host, port, database = spawned.host, spawned.port, spawned.database
            say(f"started {' '.join(spawned.argv[2:])} at {spawned.target}")
        elif database is None and is_local(host):
            server = listeners(port)
            database = served_database(server)  # the file the server here holds, wherever it is
            # ./railtix.db only for a server this user cannot look into: one seen holding no
            # serving lock is not on SQLite (PostgreSQL, the null server), whatever lies here
            if database is None and not server and port == 5002 and os.path.exists(DEFAULT_DATABASE):
                database = DEFAULT_DATABASE
        with _Live(o.quiet) as live:
            merged, meta, users = run_once(o, host, port, seed, live=live, say=say)
            if spawned is not None:  # the model is known only of a server the bench started
                meta["model"] = o.model or DEFAULT_MODEL
            doc = report.document(meta, merged)
            if spawned is not None:
                live("stopping the server the bench started …")
                spawned.stop()  # every confirmed reply is committed; the audit reads a quiet file
            if database is not None:
                live(f"auditing {database} …")
            doc["audit"] = _audit(database, merged, users)
            if spawned is not None and spawned.owns_database and spawned.database:
                remove_database(spawned.database)  # audited: the temporary database is done with
                doc["audit"]["removed"] = not os.path.exists(spawned.database)
            if ceiling_doc is not None:
                rps = ceiling_doc["requests_per_s"]
                doc["ceiling"] = {
                    "requests_per_s": rps,
                    "confirmed_per_s": ceiling_doc["confirmed_per_s"],
                    "fraction": round(doc["requests_per_s"] / rps, 4) if rps else None,
                    "latency_ms": ceiling_doc["latency_ms"],
                    "timeline": ceiling_doc["timeline"]["requests"],
                    "elapsed_s": ceiling_doc["elapsed_s"],
                    "clients_connected": ceiling_doc["clients_connected"],
                    "server_cpu": ceiling_doc["server_cpu"],
                    "generator_cpu_us_per_reply": ceiling_doc["generator"]["cpu_us_per_reply"],
                    "generator_busy": ceiling_doc["generator"]["cpu_busy"],
                }
            doc = _finish(o, doc, say, live)
        a = doc["audit"]
        return doc, 0 if a.get("skipped") or a.get("clean") else 1
    except (ServerFailed, OSError) as e:
        raise BenchFailed(str(e)) from e
    finally:
        if spawned is not None:
            spawned.cleanup()
            if spawned.owns_database and spawned.database:
                remove_database(spawned.database)


def _run_null(o: Options, seed: int, say: Say) -> dict[str, Any]:
    """The load against the null server: the ceiling of a run that follows (``--ceiling``), or
    the whole run (``--target null``)."""
    null = start_null(o.null_workers)
    ceiling_of_another = o.target != "null"
    try:
        if ceiling_of_another:
            say(f"ceiling: first the same load against the null server, at {null.target}")
        else:
            say(f"the null server, at {null.target}: what this machine and this load generator can do at all")
        with _Live(o.quiet) as live:
            merged, meta, _ = run_once(replace(o, slow_client=False), null.host, null.port, seed, NULL_LABEL, live, say)
        doc = report.document(meta, merged)
        if ceiling_of_another:
            say(f"ceiling: {doc['requests_per_s']:,.0f} requests/s from {doc['clients_connected']:,} connections")
        return doc
    finally:
        null.cleanup()


def _audit(database: str | None, merged: dict[str, Any], users: list[str]) -> dict[str, Any]:
    if database is None:
        return {
            "skipped": "no database to read: pass --database with the server's SQLite file or postgresql:// URL",
            "oversold": None, "lost": None, "duplicates": len(merged["key_mismatches"]) or None,
        }
    ev = Evidence(users, merged["wall_start"], merged["acks"], merged["pending"], merged["key_mismatches"])
    t = time.monotonic()
    out = audit(database, ev)
    out["seconds"] = round(time.monotonic() - t, 2)
    return out


def _finish(o: Options, doc: dict[str, Any], say: Say, live: Any = None) -> dict[str, Any]:
    doc["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if o.json_path:
        report.write_json(doc, o.json_path)
    if o.plot_path:
        if live is not None:
            live(f"drawing {o.plot_path} …")
        report.plot(doc, o.plot_path)
    if live is not None:
        live.close()  # the line goes before the table is printed
    if not o.quiet:
        report.console().print(report.table(doc))
    for line in report.headline(doc):
        say(line)
    if o.json_path:
        say(f"wrote {o.json_path}")
    if o.plot_path:
        say(f"wrote {o.plot_path}")
    return doc
