"""``railtix bench compare``: the same load against several configurations, one table, one chart.

Each configuration gets its own ``railtix serve --model M`` on port 0 with a fresh temporary
database, the load, the audit, and a stop. Configurations come either as a grid
(``--models serial,threads,processes,asyncio --clients 1,100,1000``, each with and without one
slow client unless ``--no-slow-client``) or one by one::

    --config "name=async-1k,model=asyncio,clients=1000,pipeline=1,processes=2,slow=1,workers=2"

Keys: name, model, clients, pipeline, processes, rate, slow (0/1), workers (passed to
``railtix serve --workers``), writer (``process`` or ``thread``, passed to ``railtix serve
--writer``), scenario, duration. Model names are passed through to the server
unchecked, so the comparison covers whatever models the server has; one that does not start is
reported as failed and the rest still run.

The slow client connects after setup and before the load and sends half a request line, then
nothing: a serving model that gives each connection its turn in order (serial) stops for it,
the others must not.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any

import click

from railtix import limits as server_limits
from railtix.bench import limits, report
from railtix.bench.plan import SCENARIOS
from railtix.bench.runner import BenchFailed, Options, execute, new_seed

_INT_KEYS = {"clients", "pipeline", "processes", "slow", "workers"}
_FLOAT_KEYS = {"rate", "duration"}
_KEYS = _INT_KEYS | _FLOAT_KEYS | {"name", "model", "scenario", "writer"}


def parse_config(text: str) -> dict[str, Any]:
    """``key=value,key=value`` as a dict with numbers converted; unknown keys are refused."""
    out: dict[str, Any] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in _KEYS:
            raise click.BadParameter(f"{part!r}: expected key=value with key one of {', '.join(sorted(_KEYS))}")
        try:
            out[key] = int(value) if key in _INT_KEYS else float(value) if key in _FLOAT_KEYS else value
        except ValueError:
            raise click.BadParameter(f"{part!r}: {key} needs a number") from None
    if out.get("writer", "process") not in ("process", "thread"):
        raise click.BadParameter(f"writer={out['writer']}: expected process or thread")
    bounds: dict[str, tuple[float, float]] = {
        "clients": (1, limits.clients_max), "pipeline": (1, limits.pipeline_max),
        "processes": (1, limits.processes_max), "duration": (0.1, limits.timeline_seconds_max),
        "rate": (0, limits.rate_max), "workers": (0, server_limits.workers_max), "slow": (0, 1),
    }
    for name, (low, high) in bounds.items():
        number = out.get(name)
        if number is not None and not low <= number <= high:  # nan fails both comparisons
            raise click.BadParameter(f"{name}={number}: expected {low:g} to {high:g}")
    if out.get("scenario", "rush") not in SCENARIOS:
        raise click.BadParameter(f"scenario={out['scenario']}: expected one of {', '.join(SCENARIOS)}")
    out.setdefault("model", "asyncio")
    return out


def grid(models: list[str], clients: list[int], slow: bool) -> list[dict[str, Any]]:
    out = []
    for m in models:
        for c in clients:
            for s in (False, True) if slow else (False,):
                out.append({"model": m, "clients": c, "slow": int(s)})
    return out


def _server_args(cfg: dict[str, Any]) -> tuple[str, ...]:
    args: tuple[str, ...] = ()
    if cfg.get("workers"):
        args += ("--workers", str(cfg["workers"]))
    if cfg.get("writer"):
        args += ("--writer", str(cfg["writer"]))
    return args


def _name(cfg: dict[str, Any]) -> str:
    if cfg.get("name"):
        return str(cfg["name"])
    name = f"{cfg['model']}-{cfg.get('clients', 0)}"
    if cfg.get("workers"):
        name += f"-w{cfg['workers']}"
    if cfg.get("writer"):
        name += f"-{cfg['writer']}-writer"
    if cfg.get("pipeline", 1) != 1:
        name += f"-k{cfg['pipeline']}"
    return name + ("+slow" if cfg.get("slow") else "")


def _row(cfg: dict[str, Any], doc: dict[str, Any] | None, failed: str | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": _name(cfg), "model": cfg["model"], "clients": cfg.get("clients"), "slow": bool(cfg.get("slow")),
        "workers": cfg.get("workers"), "pipeline": cfg.get("pipeline", 1), "writer": cfg.get("writer"),
    }
    if doc is None:
        row["failed"] = failed or "unknown"
        return row
    lat = doc["latency_ms"]
    a = doc["audit"]
    row.update(
        requests_per_s=doc["requests_per_s"],
        confirmed_per_s=doc["confirmed_per_s"],
        searches_per_s=doc["searches_per_s"],
        buy_p99_ms=lat.get("buy", {}).get("p99"),
        search_p99_ms=lat.get("search", {}).get("p99"),
        latency_ms=lat,
        errors=sum(doc["errors"].values()),
        errors_by_code=doc["errors"],
        audit="clean" if a.get("clean") else ("skipped" if a.get("skipped") else "FAILED"),
        audit_detail={k: a.get(k) for k in ("oversold", "lost", "duplicates", "capacity", "mismatched")},
        unanswered=doc["generator"]["unanswered"],
        seed=doc["seed"],
    )
    return row


@click.command(name="compare")
@click.option("--scenario", type=click.Choice(SCENARIOS), default="rush", show_default=True,
              help="The load every configuration runs (a --config may name its own).")
@click.option("--models", default=None,
              help="Comma-separated serving models, e.g. serial,threads,processes,asyncio; each runs at "
                   "every --clients count [default: asyncio, unless --config is given].")
@click.option("--clients", "clients_list", default="1,100,1000", show_default=True,
              help="Comma-separated client counts, for --models.")
@click.option("--slow-client/--no-slow-client", default=True, show_default=True,
              help="Also run every configuration with one slow client.")
@click.option("--config", "configs", multiple=True,
              help="One configuration as key=value,… (repeatable). Keys: " + ", ".join(sorted(_KEYS))
                   + "; e.g. model=asyncio,clients=1000,writer=thread.")
@click.option("--duration", "duration_s", type=click.FloatRange(0.1, limits.timeline_seconds_max), default=10.0,
              show_default=True, help="Seconds of load per configuration (a rush ends sooner when it sells out).")
@click.option("--seed", type=click.IntRange(0, None), default=None,
              help="Seed of the request plan, the same for every configuration; random and printed when absent.")
@click.option("--pipeline", type=click.IntRange(1, limits.pipeline_max), default=1, show_default=True,
              help="Requests in flight per connection.")
@click.option("--processes", type=click.IntRange(1, limits.processes_max), default=1, show_default=True,
              help="Load processes (when one core cannot drive the load).")
@click.option("--rate", type=click.FloatRange(0, limits.rate_max), default=None,
              help="Requests per second in all, paced open-loop; 0 is the closed loop (default; soak: 2000).")
@click.option("--runs", type=click.IntRange(1, 100), default=8, show_default=True,
              help="Runs (train and date) a rush sells.")
@click.option("--drain", "drain_s", type=click.FloatRange(0, limits.timeline_seconds_max),
              default=limits.drain_timeout_s, show_default=True, help="Seconds to wait for replies after the duration.")
@click.option("--json", "json_path", default="bench-compare.json", show_default=True,
              help="Every configuration's figures as JSON; '-' for none.")
@click.option("--plot", "plot_path", default="bench-compare.png", show_default=True,
              help="One chart of confirmed purchases/s and buy p99 per configuration (PNG); '-' for none.")
@click.option("--quiet", is_flag=True, help="No progress lines from each run.")
def compare_command(
    scenario: str, models: str | None, clients_list: str, slow_client: bool, configs: tuple[str, ...],
    duration_s: float, seed: int | None, pipeline: int, processes: int, rate: float | None, runs: int,
    drain_s: float, json_path: str, plot_path: str, quiet: bool,
) -> None:
    """Run several configurations one after another; one table and one chart.

    Each configuration gets a server of its own (`railtix serve --model M` on port 0 and a
    temporary database) and an audit; the exit status is the worst of theirs (0 clean, 1 an
    audit failed, 2 a configuration could not run).
    """
    from railtix.bench.cli import check_writable, exit_on_sigterm

    exit_on_sigterm()
    check_writable(json_path if json_path != "-" else None, "--json")
    check_writable(plot_path if plot_path != "-" else None, "--plot")
    cfgs = [parse_config(c) for c in configs]
    if models or not cfgs:
        try:
            counts = [int(x) for x in clients_list.split(",") if x.strip()]
        except ValueError:
            raise click.BadParameter("--clients takes numbers like 1,100,1000") from None
        if not counts or any(not 1 <= c <= limits.clients_max for c in counts):
            raise click.BadParameter(f"--clients takes client counts from 1 to {limits.clients_max}")
        cfgs += grid([m.strip() for m in (models or "asyncio").split(",") if m.strip()], counts, slow_client)
    seed = seed if seed is not None else new_seed()
    base = Options(
        scenario=scenario, duration_s=duration_s, seed=seed, pipeline=pipeline, processes=processes, rate=rate,
        runs=runs, drain_s=drain_s, serve=True, quiet=quiet,
    )
    click.echo(f"railtix bench compare: {len(cfgs)} configurations, {scenario}, seed {seed}")
    rows = []
    worst = 0
    for i, cfg in enumerate(cfgs, 1):
        o = replace(
            base,
            scenario=str(cfg.get("scenario", scenario)),
            clients=int(cfg.get("clients", 100)),
            pipeline=int(cfg.get("pipeline", pipeline)),
            processes=int(cfg.get("processes", processes)),
            rate=cfg.get("rate", rate),
            duration_s=float(cfg.get("duration", duration_s)),
            model=str(cfg["model"]),
            slow_client=bool(cfg.get("slow", 0)),
            server_args=_server_args(cfg),
        )
        click.echo(f"\n[{i}/{len(cfgs)}] {_name(cfg)}")
        try:
            doc, status = execute(o, click.echo)
            worst = max(worst, status)
            rows.append(_row(cfg, doc, None))
        except BenchFailed as e:
            click.echo(f"  failed: {e}", err=True)
            worst = 2
            rows.append(_row(cfg, None, str(e).splitlines()[0] if str(e) else "failed"))
    out = {"scenario": scenario, "seed": seed, "duration_s": duration_s, "configs": rows, "machine": report.machine()}
    if json_path and json_path != "-":
        report.write_json(out, json_path)
    if plot_path and plot_path != "-":
        report.compare_plot(rows, plot_path, f"railtix bench compare: {scenario}, {duration_s:g} s, seed {seed}")
    report.console().print(report.compare_table(rows))
    if json_path and json_path != "-":
        click.echo(f"wrote {json_path}")
    if plot_path and plot_path != "-":
        click.echo(f"wrote {plot_path}")
    # 2 when a configuration could not run, else 1 when an audit failed, else 0
    sys.exit(2 if any(r.get("failed") for r in rows) else worst)
