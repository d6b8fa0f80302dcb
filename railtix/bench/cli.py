"""``railtix bench``: the command line of the load generator.

    railtix bench rush  --target tcp://127.0.0.1:5002 --clients 1000 --duration 10 --seed 7 \\
                        --json bench.json --plot bench.png [--pipeline K] [--processes P]
    railtix bench mixed …     railtix bench soak --rate 2000 --duration 300 …
    railtix bench rush --serve            # start a server on a temporary database, bench it, audit it
    railtix bench rush --ceiling          # also measure the null server: railtix as a fraction of it
    railtix bench rush --target null      # only the generator's ceiling
    railtix bench compare --models asyncio,threads --clients 1,100,1000 --slow-client
    railtix bench audit --database railtix.db
    railtix bench writer --buys 20000 --batch 400   # the batch transaction alone, no network
    railtix bench serving                           # the serving loop's CPU per request, no sockets

Exit status: 0 when the audit is clean (or could not run for want of a database: it says so),
1 when it found a problem, 2 when the bench could not run.
"""

from __future__ import annotations

import math
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from railtix.bench import limits
from railtix.bench.plan import SCENARIOS
from railtix.bench.runner import DEFAULT_TARGET, BenchFailed, Options, execute
from railtix.cli import LazyGroup
from railtix.serve import DEFAULT_MODEL, MODELS


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--target", default=DEFAULT_TARGET, show_default=True,
                     help="tcp://HOST:PORT of the server, or 'null' for the null server alone."),
        click.option("--clients", type=click.IntRange(1, limits.clients_max), default=100, show_default=True,
                     help="Connections, each one client."),
        click.option("--duration", "duration_s", type=click.FloatRange(0.1, limits.timeline_seconds_max),
                     default=10.0, show_default=True,
                     help="Seconds of load (a rush ends sooner when it sells out)."),
        click.option("--seed", type=click.IntRange(0, None), default=None,
                     help="Seed of the request plan; random and printed when absent."),
        click.option("--pipeline", type=click.IntRange(1, limits.pipeline_max), default=1, show_default=True,
                     help="Requests in flight per connection."),
        click.option("--processes", type=click.IntRange(1, limits.processes_max), default=1, show_default=True,
                     help="Load processes (when one core cannot drive the load)."),
        click.option("--rate", type=click.FloatRange(0, limits.rate_max), default=None,
                     help="Requests per second in all, paced open-loop; 0 is the closed loop "
                          "(default; soak: 2000)."),
        click.option("--runs", type=click.IntRange(1, 100), default=8, show_default=True,
                     help="Runs (train and date) the rush sells."),
        click.option("--database", default=None,
                     help="The server's SQLite file or postgresql:// URL, for the audit (default "
                          "the file a server on this machine serves, found by its serving lock; for one on "
                          "127.0.0.1:5002 this user cannot look into, ./railtix.db if it exists)."),
        click.option("--serve/--no-serve", default=False,
                     help="Start `railtix serve` on port 0 with a temporary database and bench that."),
        click.option("--model", default=None, type=click.Choice(sorted(MODELS)),
                     help=f"Serving model of the server --serve starts [default: {DEFAULT_MODEL}]."),
        click.option("--ceiling", is_flag=True, help="Also run the same load against the null server first."),
        click.option("--null-workers", type=click.IntRange(1, 16), default=1, show_default=True,
                     help="Processes of the null server."),
        click.option("--slow-client", is_flag=True,
                     help="Keep one extra connection that sends half a request line and then nothing."),
        click.option("--drain", "drain_s", type=click.FloatRange(0, limits.timeline_seconds_max),
                     default=limits.drain_timeout_s,
                     show_default=True, help="Seconds to wait for replies after the duration."),
        click.option("--json", "json_path", default=None, help="JSON report [default: bench-SCENARIO.json]; '-' for none."),
        click.option("--plot", "plot_path", default=None, help="PNG plot [default: bench-SCENARIO.png]; '-' for none."),
        click.option("--quiet", is_flag=True, help="No progress line and no table."),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def exit_on_sigterm() -> None:
    """SIGTERM (``kill``, ``timeout``) unwinds like an error, so the servers the bench started
    are stopped and their temporary databases removed instead of being left running."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def _check(kw: dict[str, Any]) -> None:
    """Refuse, before any load, what would only fail (or be ignored) after it."""
    from railtix.bench.servers import parse_target

    for name in ("duration_s", "rate", "drain_s"):  # click's ranges let nan through
        if kw.get(name) is not None and not math.isfinite(kw[name]):
            raise click.BadParameter("must be a finite number", param_hint="--" + name.removesuffix("_s"))
    if kw["serve"]:
        given = click.get_current_context().get_parameter_source("target") is not ParameterSource.DEFAULT
        if given or kw["database"]:
            raise click.UsageError("--serve benches a server of its own on a temporary database; "
                                   "--target and --database do not go with it")
    elif kw["model"]:
        raise click.UsageError("--model is the serving model of the server --serve starts; add --serve")
    if kw["processes"] > kw["clients"]:
        raise click.BadParameter(f"{kw['processes']} load processes for {kw['clients']} clients: "
                                 "at most one process per client", param_hint="--processes")
    if kw["target"] != "null":
        try:
            parse_target(kw["target"])
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--target") from None
    for option in ("json_path", "plot_path"):
        check_writable(kw[option], "--" + option.removesuffix("_path"))
    if kw["database"]:
        from railtix.store import open_existing_store

        try:
            open_existing_store(kw["database"]).close()
        except Exception as e:
            raise click.BadParameter(f"cannot read it for the audit: {e}", param_hint="--database") from None


def check_writable(path: str | None, hint: str) -> None:
    """A report path the bench can write once the load is over."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise click.BadParameter(f"cannot write {path} (a file in an existing, writable folder)", param_hint=hint)


def _output(path: str | None, default: str) -> str | None:
    if path is None:
        return default
    return None if path in ("-", "") else path


@click.group(cls=LazyGroup)
def bench() -> None:
    """Load generator with a correctness audit, reports and plots."""


def _scenario_command(name: str, doc: str) -> None:
    @bench.command(name=name, help=doc)
    @_common
    def command(**kw: Any) -> None:
        kw["json_path"] = _output(kw["json_path"], f"bench-{name}.json")
        kw["plot_path"] = _output(kw["plot_path"], f"bench-{name}.png")
        _check(kw)
        o = Options(scenario=name, **kw)
        exit_on_sigterm()
        try:
            _, status = execute(o, click.echo)
        except BenchFailed as e:
            click.echo(f"railtix bench: {e}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:  # the servers it started are stopped on the way out
            click.echo("railtix bench: interrupted", err=True)
            sys.exit(130)
        sys.exit(status)


_DOCS = {
    "rush": "The 抢票 moment: every client buys on a few runs until they sell out, and pays most of what it holds.",
    "mixed": "12306's shape: about 90 % searches, 10 % buys, pays, cancels and refunds.",
    "soak": "The mixed load held steady at --rate requests per second for --duration seconds.",
}
#: what every scenario's help says after its own sentence: where the load goes, and what it leaves
_WHERE = (
    "\n\nThe load goes to --target, 127.0.0.1:5002 (`make run`'s server) by default; when nothing "
    "listens at that default, or with --serve, the bench starts a server of its own on a "
    "temporary database "
    "that is removed afterwards. Against a real server the load really buys: the runs a rush "
    "picks are sold out afterwards and its users (bench-SEED-...) stay registered, so try it on a "
    "copy of a database you care about. After the load the bench audits the server's database "
    "(--database) and exits 1 when it finds a problem: a seat sold twice, a confirmed order lost, "
    "a key that made two orders, a seat map that disagrees with its orders."
)
for _name in SCENARIOS:
    _scenario_command(_name, _DOCS[_name] + _WHERE)


@bench.command(name="audit")
@click.option("--database", required=True, help="The server's SQLite file (or a store URL).")
@click.option("--json", "json_path", default=None, help="Write the findings as JSON.")
def audit_command(database: str, json_path: str | None) -> None:
    """Check a database: no seat-segment sold twice, seat maps equal to their orders."""
    from railtix.bench.audit import audit
    from railtix.bench.report import write_json
    from railtix.store.audit import checked

    try:
        found = audit(database)
    except Exception as e:  # missing, not railtix's, unreachable: the audit could not run
        click.echo(f"railtix bench audit: cannot read {database}: {e}", err=True)
        sys.exit(2)
    c = found["checked"]
    click.echo(checked(c["runs"], c["orders"], c["live_orders"], c["tickets"]))
    for k in ("oversold", "capacity", "mismatched", "orphans", "unreadable"):
        click.echo(f"  {k}: {found[k]}")
    for line in found["details"]:
        click.echo("  " + line)
    click.echo("clean" if found["clean"] else "FAILED")
    if json_path:
        write_json(found, json_path)
    sys.exit(0 if found["clean"] else 1)


@bench.command(name="writer")
@click.option("--buys", type=click.IntRange(100, 1_000_000), default=20_000, show_default=True,
              help="Rush buys to apply (then one pay per order made).")
@click.option("--batch", type=click.IntRange(1, 2048), default=400, show_default=True,
              help="Commands per transaction (the writer's batch).")
@click.option("--seed", type=click.IntRange(0, None), default=101, show_default=True, help="Seed of the rush plan.")
@click.option("--json", "json_path", default=None, help="Write the figures as JSON.")
def writer_command(buys: int, batch: int, seed: int, json_path: str | None) -> None:
    """The write path alone: rush buys straight into the batch transaction, no network.

    Reports µs per buy and per pay (wall time, and of it CPU time: the steadier figure, since
    the wall time includes each commit's fsync) and the WAL pages each commit wrote, on a
    temporary SQLite file with synchronous=FULL.
    """
    from railtix.bench.report import write_json
    from railtix.bench.writer import measure

    found = measure(buys, batch, seed, click.echo)
    click.echo(
        f"buy {found['buy_us']} µs, pay {found['pay_us']} µs per command "
        f"(on the CPU {found['buy_cpu_us']} and {found['pay_cpu_us']} µs; "
        f"{found['orders']:,} orders made); WAL pages per commit: "
        f"{found['wal_pages_per_buy_batch']} (buys), {found['wal_pages_per_pay_batch']} (pays)"
    )
    if json_path:
        write_json(found, json_path)


@bench.command(name="serving")
@click.option("--connections", type=click.IntRange(1, limits.clients_max), default=1000, show_default=True,
              help="Connections, each sending one request per round (a closed loop at pipeline 1).")
@click.option("--purchases", type=click.IntRange(0, 30_000), default=6000, show_default=True,
              help="Purchases through the writer process to time.")
@click.option("--refusals", type=click.IntRange(0, 1_000_000), default=6000, show_default=True,
              help="Buys refused sold_out at the gate to time.")
@click.option("--json", "json_path", default=None, help="Write the figures as JSON.")
def serving_command(connections: int, purchases: int, refusals: int, json_path: str | None) -> None:
    """The serving loop alone: its CPU per request, with stand-in transports instead of sockets.

    Runs the asyncio model's connections on a real service with its writer process (a temporary
    SQLite file, synchronous=FULL) and reports the CPU of the loop's thread per purchase that
    goes through the writer and per buy refused at the gate: the numbers to read before and after
    changing the serving path, free of the kernel's loopback and of the load generator.
    """
    from railtix.bench.report import write_json
    from railtix.bench.serving import measure

    if purchases + connections > 30_000:
        raise click.BadParameter("purchases and connections together must fit 30,000 seats", param_hint="--purchases")
    check_writable(json_path, "--json")
    found = measure(connections, purchases, refusals, click.echo)
    parts = []
    if found["purchase_cpu_us"] is not None:
        parts.append(f"a purchase through the writer {found['purchase_cpu_us']} µs")
    if found["refusal_cpu_us"] is not None:
        parts.append(f"a refusal at the gate {found['refusal_cpu_us']} µs")
    click.echo("serving loop's CPU per request: " + ("; ".join(parts) or "nothing timed"))
    if json_path:
        write_json(found, json_path)


from railtix.bench.compare import compare_command  # noqa: E402  (registers `compare`)

bench.add_command(compare_command)
