"""From the load processes' results to one document: merged histograms, rates, the timeline,
then a table for people, JSON for scripts and a PNG for the eye.

The JSON's top level has what outside scripts read: ``confirmed_per_s``, ``latency_ms`` (per
operation: p50, p90, p99, p999, in milliseconds), ``errors`` (count per error code) and
``audit`` (``oversold``, ``lost``, ``duplicates`` and the store's other checks). Every other
figure is there too, with the timeline as rates per second over buckets of ``timeline_tick_s``
(the last bucket's rate over the part of it the run lasted) and ``latency_over_time``, each
operation's p50 and p99 per bucket as measured.

Rates: ``requests_per_s`` is every reply over the whole run (until the last reply);
``confirmed_per_s`` is confirmed purchases (``ok`` replies to first-time buys) over the selling
window, from the start until the last confirmed purchase: a rush that sells out in 3 s of a
10 s run sold for 3 s, not 10.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import sys
from collections.abc import Sequence
from typing import Any

import msgspec
from hdrh.histogram import HdrHistogram

from railtix.bench import limits
from railtix.bench.load import HIST_DIGITS, HIST_HIGH_US, HIST_LOW_US, OPS
from railtix.bench.null_server import LABEL as NULL_LABEL

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))


def _add_counts(into: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


def _histograms(encoded: Sequence[dict[str, str]]) -> dict[str, HdrHistogram]:
    out: dict[str, HdrHistogram] = {}
    for per_op in encoded:
        for op, text in per_op.items():
            h = HdrHistogram.decode(text.encode())
            if op in out:
                out[op].add(h)
            else:
                merged = HdrHistogram(HIST_LOW_US, HIST_HIGH_US, HIST_DIGITS)
                merged.add(h)
                out[op] = merged
    return out


def _sum_series(series: Sequence[Sequence[int]]) -> list[int]:
    n = max((len(s) for s in series), default=0)
    out = [0] * n
    for s in series:
        for i, v in enumerate(s):
            out[i] += v
    return out


def merge(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The load processes' results as one."""
    m: dict[str, Any] = {
        "clients": sum(r["clients"] for r in results),
        "connect_failed": {},
        "wall_start": min(r["wall_start"] for r in results),
        "elapsed_s": max(r["elapsed_s"] for r in results),
        "stopped_s": max(r["stopped_s"] for r in results),
        "selling_s": max(r["selling_s"] for r in results),
        "interval_us": max(r["interval_us"] for r in results),
        "cpu_s": [round(r["cpu_s"], 3) for r in results],
        "ok": {op: sum(r["ok"][op] for r in results) for op in OPS},
        "err": {op: sum(r["err"][op] for r in results) for op in OPS},
        "errors": {},
        "errors_by_op": {},
        "acks": {},
        "pending": {},
        "key_mismatches": [],
        "key_inconsistent": [],
    }
    sold_out = [r["sold_out_s"] for r in results]
    m["sold_out_s"] = max(sold_out) if sold_out and all(s is not None for s in sold_out) else None
    for k in ("sent", "skipped", "unanswered", "lost_in_flight", "protocol_errors"):
        m[k] = sum(r[k] for r in results)
    for r in results:
        _add_counts(m["connect_failed"], r["connect_failed"])
        _add_counts(m["errors"], r["errors"])
        for op, codes in r["errors_by_op"].items():
            _add_counts(m["errors_by_op"].setdefault(op, {}), codes)
        m["acks"].update(r["acks"])
        m["pending"].update(r["pending"])
        m["key_mismatches"] += [tuple(x) for x in r["key_mismatches"]]
        m["key_inconsistent"] += [tuple(x) for x in r["key_inconsistent"]]
    m["hist"] = _histograms([r["hist"] for r in results])
    m["hist_corrected"] = _histograms([r["hist_corrected"] for r in results])
    m["latency_ticks_per_point"] = results[0]["latency_ticks_per_point"] if results else 1
    m["latency_by_tick"] = _merge_points([r["latency_by_tick"] for r in results])
    m["ok_by_tick"] = {op: _sum_series([r["ok_by_tick"][op] for r in results]) for op in OPS}
    m["err_by_tick"] = _sum_series([r["err_by_tick"] for r in results])
    return m


def _merge_points(per_worker: Sequence[dict[str, list[str | None]]]) -> dict[str, list[HdrHistogram | None]]:
    """The load processes' latencies per point of time, added up as the whole run's are
    (``_histograms``, point by point): per operation, per point, one histogram (None where no
    process had a reply)."""
    points = max((len(p) for w in per_worker for p in w.values()), default=0)
    merged = [
        _histograms([{op: t for op, p in w.items() if i < len(p) and (t := p[i]) is not None} for w in per_worker])
        for i in range(points)
    ]
    return {op: [m.get(op) for m in merged] for w in per_worker for op in w}


def latency_over_time(m: dict[str, Any], elapsed: float) -> dict[str, Any]:
    """p50 and p99 of each operation's replies per point of time, the last point partial, by
    the moment each reply came back. Computed as the table's are, but in a closed loop without
    the correction for coordinated omission: they say when the slow replies came, the table how
    slow (an open loop's are from the intended send time, like its table). Points that had no
    reply of an operation are null."""
    bucket_s = limits.tick_s * m["latency_ticks_per_point"]
    keep = max(1, math.ceil(elapsed / bucket_s))
    ops: dict[str, dict[str, list[Any]]] = {}
    for op in OPS:
        points = m["latency_by_tick"].get(op)
        if not points:
            continue
        points = points[:keep]
        row: dict[str, list[Any]] = {"p50_ms": [], "p99_ms": [], "replies": []}
        for h in points:
            n = h.get_total_count() if h is not None else 0
            row["replies"].append(n)
            for name, p in (("p50_ms", 50.0), ("p99_ms", 99.0)):
                row[name].append(round(h.get_value_at_percentile(p) / 1000, 3) if h is not None and n else None)
        ops[op] = row
    return {"bucket_s": bucket_s, "ops": ops}


def latency(hists: dict[str, HdrHistogram]) -> dict[str, dict[str, float]]:
    out = {}
    for op in OPS:
        h = hists.get(op)
        if h is None or not h.get_total_count():
            continue
        row: dict[str, float] = {"count": h.get_total_count()}
        for name, p in PERCENTILES:
            row[name] = round(h.get_value_at_percentile(p) / 1000, 3)
        row["max"] = round(h.get_max_value() / 1000, 3)
        row["mean"] = round(h.get_mean_value() / 1000, 3)
        out[op] = row
    return out


def machine() -> dict[str, Any]:
    model = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import uvloop

        uv = uvloop.__version__
    except ImportError:
        uv = None
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "system": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "uvloop": uv,
    }


def document(meta: dict[str, Any], m: dict[str, Any]) -> dict[str, Any]:
    """The report of one run. ``meta``: scenario, seed, target and the options it ran with."""
    elapsed = m["elapsed_s"] or 1e-9
    shown = round(elapsed, 3)  # as the JSON states it: the timeline's buckets, for every reader
    replies = sum(m["ok"].values()) + sum(m["err"].values())
    closed = not meta.get("rate")
    confirmed = m["ok"]["buy"]
    selling = m["selling_s"] if m["selling_s"] > 0 else elapsed
    doc: dict[str, Any] = {
        **meta,
        "loop": "closed" if closed else "open",
        "started": dt.datetime.fromtimestamp(m["wall_start"], dt.UTC).isoformat(timespec="seconds"),
        "clients_connected": m["clients"],
        "elapsed_s": shown,
        "selling_s": round(selling, 3),
        "sold_out_s": None if m["sold_out_s"] is None else round(m["sold_out_s"], 3),
        "requests": replies,
        "requests_per_s": round(replies / elapsed, 1),
        "confirmed": confirmed,
        "confirmed_per_s": round(confirmed / selling, 1) if confirmed else 0.0,
        "paid": m["ok"]["pay"],
        "cancelled": m["ok"]["cancel"],
        "refunded": m["ok"]["refund"],
        "searches": m["ok"]["search"],
        "searches_per_s": round(m["ok"]["search"] / elapsed, 1),
        "ops": {
            op: {"ok": m["ok"][op], "errors": m["err"][op], "per_s": round((m["ok"][op] + m["err"][op]) / elapsed, 1)}
            for op in OPS
            if m["ok"][op] or m["err"][op]
        },
        "latency_ms": latency(m["hist"]),
        "latency_method": (
            "closed loop: at each percentile the larger of the uncorrected value and the value "
            "corrected with HdrHistogram's record_corrected_value (expected interval "
            f"{m['interval_us'] / 1000:.3f} ms, the mean time between requests of one pipeline slot)"
            if closed
            else "open loop: latency from each request's intended send time (rate / clients, round-robin)"
        ),
        "errors": dict(sorted(m["errors"].items(), key=lambda kv: -kv[1])),
        "errors_by_op": m["errors_by_op"],
        "latency_over_time": latency_over_time(m, elapsed),
        "timeline_tick_s": limits.tick_s,
        "timeline": {
            "requests": _rates(
                [sum(v) for v in zip(*(m["ok_by_tick"][op] for op in OPS), m["err_by_tick"], strict=True)], shown
            ),
            "confirmed": _rates(m["ok_by_tick"]["buy"], shown),
            "searches": _rates(m["ok_by_tick"]["search"], shown),
            "paid": _rates(m["ok_by_tick"]["pay"], shown),
            "errors": _rates(m["err_by_tick"], shown),
        },
        "generator": {
            "sent": m["sent"],
            "skipped_sold_out": m["skipped"],
            "unanswered": m["unanswered"],
            "lost_in_flight": m["lost_in_flight"],
            "protocol_errors": m["protocol_errors"],
            "connect_failed": m["connect_failed"],
            "key_inconsistent": len(m["key_inconsistent"]),
            #: CPU seconds each load process used while the clock ran, over the elapsed time: near
            #: 1.0 means that process was the limit, not the server
            "cpu_busy": [round(c / elapsed, 3) for c in m["cpu_s"]],
            "cpu_us_per_reply": round(sum(m["cpu_s"]) * 1e6 / replies, 1) if replies else None,
        },
        #: the server's processes, when it runs on this machine (bench/cpu.py): CPU seconds
        #: over the run, per request, and as a share of one core over the elapsed time
        "server_cpu": [
            {**r, "us_per_request": round(r["cpu_s"] * 1e6 / replies, 1) if replies else None,
             "busy": round(r["cpu_s"] / elapsed, 3)}
            for r in meta.get("server_cpu", ())
        ],
        "machine": machine(),
    }
    if closed and m["hist_corrected"]:
        corrected = latency(m["hist_corrected"])
        doc["latency_ms_uncorrected"] = doc["latency_ms"]
        doc["latency_ms_corrected"] = corrected
        doc["latency_ms"] = _conservative(doc["latency_ms"], corrected)
    doc["peak_confirmed_per_s"] = _peak([n / limits.tick_s for n in m["ok_by_tick"]["buy"][: int(shown / limits.tick_s)]])
    return doc


def _peak(rates: Sequence[float], window_s: float = 1.0) -> float:
    """The best whole second (a sliding window of ticks) of a per-tick rate series.

    ``confirmed_per_s`` averages over the selling window, which ends in a long tail once most
    rides are sold out; the peak says what the server sustains while there is still much to sell.
    """
    n = max(1, round(window_s / limits.tick_s))
    if len(rates) < n:
        return round(sum(rates) / n, 1)
    return round(max(sum(rates[i : i + n]) for i in range(len(rates) - n + 1)) / n, 1)


def _conservative(raw: dict[str, dict[str, float]], corrected: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per percentile the worse of the two: the correction may only make a figure worse.

    In a saturated closed loop the expected interval is about the latency itself, and the
    samples the correction adds (latency - k x interval) fall below the real ones; taken alone
    they would make the median look better than what was measured.
    """
    out = {}
    for op, row in raw.items():
        c = corrected.get(op, row)
        out[op] = {k: (v if k == "count" else max(v, c.get(k, v))) for k, v in row.items()}
    return out


def _rates(counts: Sequence[int], elapsed: float) -> list[float]:
    """Counts per tick as rates per second over the timeline's buckets (``timeline_lengths``),
    every reply in one: the last bucket is partial, and its rate is over the part of it the run
    lasted (over a whole tick it would read as a fall in throughput; in a rush that sells out in
    1.3 s that part is the sell-out). Ticks past it (a sliver, a reply at the very end) join it."""
    lengths = timeline_lengths(elapsed)
    last = len(lengths) - 1
    padded = list(counts) + [0] * (last + 1 - len(counts))
    kept = padded[:last] + [sum(padded[last:])]
    return [round(n / d, 1) for n, d in zip(kept, lengths, strict=True)]


def timeline_lengths(elapsed: float) -> list[float]:
    """Seconds each bucket of the timeline covers: whole ticks, the last one partial; a part
    shorter than a quarter of a tick joins the tick before it, rather than stand as a rate of a
    few replies."""
    tick = limits.tick_s
    whole = int(elapsed / tick)
    part = elapsed - whole * tick
    if whole == 0:
        return [max(elapsed, 1e-9)]
    if part >= tick / 4:
        return [tick] * whole + [part]
    return [tick] * (whole - 1) + [tick + part]


def _middles(elapsed: float, n: int) -> list[float]:
    """Where to draw the first ``n`` buckets of a timeline: each at its middle, the last one
    partial (``timeline_lengths``)."""
    xs, start = [], 0.0
    for length in timeline_lengths(elapsed)[:n]:
        xs.append(start + length / 2)
        start += length
    return xs


def write_json(doc: dict[str, Any], path: str) -> None:
    with open(path, "wb") as f:
        f.write(msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n")


# --- for people ------------------------------------------------------------------------------------
def _n(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def console() -> Any:
    """rich's Console; 150 columns when writing to a file or a pipe, where it cannot ask."""
    from rich.console import Console

    c = Console()
    return c if c.is_terminal else Console(width=150)


def table(doc: dict[str, Any]) -> Any:
    from rich.table import Table

    t = Table(title=f"railtix bench {doc['scenario']} — {doc['clients']:,} clients, seed {doc['seed']}, {_server(doc)}")
    for col in ("op", "ok", "errors", "replies/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"):
        t.add_column(col, justify="left" if col == "op" else "right", no_wrap=True)
    lat = doc["latency_ms"]
    for op, row in doc["ops"].items():
        lt = lat.get(op, {})
        t.add_row(
            op, f"{row['ok']:,}", f"{row['errors']:,}", _n(row["per_s"]),
            *(f"{lt[k]:.2f}" if k in lt else "-" for k in ("p50", "p90", "p99", "p999", "max")),
        )
    return t


def _server(doc: dict[str, Any]) -> str:
    """Where the load went: the address, and the serving model when the bench started the server
    (or that it was the null server)."""
    model = doc.get("model")
    if doc.get("server") == NULL_LABEL:
        return f"the null server ({doc['target']})"
    return doc["target"] + (f" ({model} model)" if model else "")


def _processes(n: int) -> str:
    return "1 load process" if n == 1 else f"{n} load processes"


#: at or above this share of a core, a process is named as the limit of its run
limit_busy = 0.95


def headline(doc: dict[str, Any]) -> list[str]:
    lines = [
        f"confirmed purchases: {doc['confirmed']:,} (orders holding seats, {doc['paid']:,} of them paid) "
        f"in {doc['selling_s']:.2f} s = {_n(doc['confirmed_per_s'])}/s"
        + (f", the rush given up as sold out after {doc['sold_out_s']:.2f} s" if doc.get("sold_out_s") else "")
        # a run shorter than a second has no best second to speak of: only what it sold
        + (f"; best second {_n(doc['peak_confirmed_per_s'])}/s"
           if doc.get("peak_confirmed_per_s") and doc["selling_s"] >= 1.0 else ""),
        f"requests: {doc['requests']:,} in {doc['elapsed_s']:.2f} s = {_n(doc['requests_per_s'])}/s; "
        + (f"searches {_n(doc['searches_per_s'])}/s; " if doc["searches"] else "")
        + f"{doc['loop']} loop, pipeline {doc['pipeline']}, {_processes(doc['processes'])}",
    ]
    if "buy_again" in doc["ops"]:
        lines.append("buy_again: a buy sent once more with its key, as a client that lost the reply "
                     "would; it must get the first reply, never a second order")
    if doc["errors"]:
        lines.append(
            "errors by code: " + ", ".join(f"{k} {v:,}" for k, v in doc["errors"].items())
            + (" (sold_out is how a rush ends: no seats left for the ride asked for)"
               if doc["scenario"] == "rush" and "sold_out" in doc["errors"] else "")
        )
    g = doc["generator"]
    if g["unanswered"] or g["protocol_errors"] or g["connect_failed"] or g["lost_in_flight"]:
        lines.append(
            f"generator: {g['unanswered']} unanswered, {g['lost_in_flight']} lost with their connection, "
            f"{g['protocol_errors']} protocol errors, connect failures {g['connect_failed'] or 0}"
        )
    measured = [r for r in doc.get("server_cpu", ()) if r["us_per_request"] is not None]
    if measured and g.get("cpu_us_per_reply") is not None:
        # processes that stayed idle (the processes model's supervisor) are in the JSON, not here
        shown = [r for r in measured if r["busy"] >= 0.005]
        gen_busy = max(g["cpu_busy"], default=0.0)
        lines.append(
            "CPU per request: "
            + "".join(f"{r['name']} {r['us_per_request']:.0f} µs ({_busy(r['busy'])}), " for r in shown)
            + f"load generator {g['cpu_us_per_reply']:.0f} µs ({_busy(sum(g['cpu_busy']), gen_busy)})"
        )
    c = doc.get("ceiling")
    if c:
        null_us = sum(r["us_per_request"] or 0 for r in c.get("server_cpu", ()))
        lines.append(
            f"ceiling (null server, same load): {_n(c['requests_per_s'])} requests/s; "
            f"railtix reached {c['fraction']:.1%} of it"
            + (f" (there the null server used {null_us:.0f} µs of CPU per request, the load generator "
               f"{c['generator_cpu_us_per_reply']:.0f} µs)" if null_us and c.get("generator_cpu_us_per_reply") else "")
            + ("; the load generator was that run's limit, a core of its own at full use"
               if max(c.get("generator_busy", ()), default=0.0) >= limit_busy else "")
        )
    a = doc.get("audit") or {}
    if a.get("skipped"):
        lines.append(f"audit: skipped ({a['skipped']})")
    elif a:
        verdict = "clean" if a["clean"] else "FAILED"
        took = f" in {a['seconds']:.1f} s" if a.get("seconds") is not None else ""
        lines.append(
            f"audit {verdict}: oversold {a['oversold']}, lost {a['lost']}, duplicates {a['duplicates']}, "
            f"capacity {a['capacity']}, mismatched maps {a['mismatched']}, orphans {a['orphans']} "
            f"({a['checked'].get('orders', 0):,} orders, {a['checked'].get('confirmed_replies', 0):,} confirmed replies checked{took})"
        )
        lines += ["  " + d for d in a.get("details", [])]
    return lines


def _busy(share: float, most: float | None = None) -> str:
    """A share of a core as "68% busy", with ", the limit" where one process used a whole core
    (``most``: the busiest of several load processes, whose shares add up)."""
    full = (share if most is None else most) >= limit_busy
    return f"{share:.0%} busy" + (", the limit" if full else "")


# --- plots -----------------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(doc: dict[str, Any], path: str) -> None:
    """Throughput over time, latency over time, and latency percentiles per operation, one PNG."""
    plt = _pyplot()
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(11, 12.5))
    tl = doc["timeline"]
    tick = doc.get("timeline_tick_s", 1.0)
    xs = _middles(doc["elapsed_s"], len(tl["requests"]))
    top.plot(xs, tl["requests"], label="replies/s (ok and errors)", color="tab:blue")
    top.plot(xs, tl["confirmed"], label="confirmed purchases/s", color="tab:green")
    if any(tl["searches"]):
        top.plot(xs, tl["searches"], label="searches/s", color="tab:purple")
    if any(tl["paid"]):
        top.plot(xs, tl["paid"], label="paid/s", color="tab:olive")
    if any(tl["errors"]):
        errors = "errors/s (sold_out: how a rush ends)" if doc["scenario"] == "rush" else "errors/s"
        top.plot(xs, tl["errors"], label=errors, color="tab:red")
    c = doc.get("ceiling")
    if c and c.get("timeline"):
        top.plot(_middles(c.get("elapsed_s") or len(c["timeline"]) * tick, len(c["timeline"])), c["timeline"],
                 "--", color="grey", label="null server replies/s (ceiling; its own run, as long as it lasted)")
    top.set_xlabel(f"seconds into the run ({tick:g} s buckets)")
    top.set_ylabel("per second")
    top.set_ylim(bottom=0)  # from zero: a steady rate must not look like a swing
    top.set_title(
        f"railtix bench {doc['scenario']} on {doc.get('server') or 'the server'}"
        + (f" ({doc['model']} model)" if doc.get("model") else "") + f": {doc['clients']:,} clients, "
        f"pipeline {doc['pipeline']}, {_processes(doc['processes'])}, seed {doc['seed']}"
    )
    top.grid(alpha=0.3)
    top.legend(loc="best", fontsize=8)
    _latency_over_time(middle, doc)
    if doc.get("elapsed_s"):  # one time axis for both panels, over the run (a ceiling's line
        for ax in (top, middle):  # that ran longer is cut there)
            ax.set_xlim(0, doc["elapsed_s"])
    lat = doc["latency_ms"]
    ops = list(lat)
    width = 0.2
    for k, (name, _) in enumerate(PERCENTILES):
        vals = [max(lat[op][name], 0.001) for op in ops]
        pos = [i + (k - 1.5) * width for i in range(len(ops))]
        bars = bottom.bar(pos, vals, width, label=name.replace("p999", "p99.9"))
        for b, v in zip(bars, vals, strict=True):
            bottom.annotate(f"{v:.3g}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=6)
    bottom.set_xticks(range(len(ops)), ops)
    every = [lat[op][name] for op in ops for name, _ in PERCENTILES]
    wide = bool(every) and max(every) > 20 * max(min(every), 0.001)
    if wide:
        bottom.set_yscale("log")
    bottom.set_ylabel("latency, ms" + (" (log)" if wide else ""))
    bottom.set_title(
        f"latency per operation ({doc['loop']} loop" + (
            "; at each percentile the worse of as measured and corrected for coordinated omission)"
            if doc["loop"] == "closed" else ", from intended send time)"
        )
    )
    bottom.grid(alpha=0.3, axis="y")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


#: one colour per operation in the latency curves
_OP_COLOURS = {"search": "tab:purple", "buy": "tab:blue", "buy_again": "tab:gray", "pay": "tab:olive",
               "cancel": "tab:brown", "refund": "tab:pink"}


def _latency_over_time(ax: Any, doc: dict[str, Any]) -> None:
    """p99 (solid) and p50 (dashed) of each operation per point of time: where in the run the
    slow replies were (the start's burst, the sell-out), which the table's percentiles cannot
    say. Always on a linear scale, so that two runs' panels compare at a glance."""
    lot = doc.get("latency_over_time") or {}
    width = lot.get("bucket_s", 1.0)
    drawn = False
    elapsed = doc.get("elapsed_s") or 0.0
    for op, row in lot.get("ops", {}).items():
        xs = [(i + 0.5) * width for i in range(len(row["p99_ms"]))]
        last = (len(xs) - 1) * width
        if xs and last < elapsed < last + width:  # the last point is partial: at its own middle
            xs[-1] = (last + elapsed) / 2
        colour = _OP_COLOURS.get(op)
        for name, style in (("p99_ms", "-"), ("p50_ms", "--")):
            if any(v is not None for v in row[name]):  # a point without replies breaks the line
                ys = [float("nan") if v is None else v for v in row[name]]
                ax.plot(xs, ys, style, marker=".", markersize=4, color=colour, label=f"{op} {name[:3]}")
                drawn = True
    ax.set_ylim(bottom=0)
    ax.set_xlabel(f"seconds into the run ({width:g} s buckets)")
    ax.set_ylabel("latency, ms")
    title = "latency over time, as measured (p99 solid, p50 dashed; by when each reply came back)"
    if doc.get("scenario") == "rush":  # why the buys' median falls at the end
        title += "\nbuys count their sold_out refusals too, which the gate answers at once"
    ax.set_title(title, fontsize=10 if "\n" in title else None)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(loc="best", fontsize=8, ncol=2)


def compare_table(rows: Sequence[dict[str, Any]]) -> Any:
    from rich.table import Table

    t = Table(title="railtix bench compare")
    cols = ("config", "model", "clients", "slow", "replies/s", "confirmed/s", "searches/s",
            "buy p99 ms", "search p99 ms", "errors", "audit")
    for col in cols:
        t.add_column(col, justify="left" if col in ("config", "model", "audit") else "right", no_wrap=True)
    for r in rows:
        if r.get("failed"):
            t.add_row(r["name"], r["model"], str(r["clients"]), "yes" if r["slow"] else "no",
                      "-", "-", "-", "-", "-", "-", "failed: " + r["failed"][:60])
            continue
        t.add_row(
            r["name"], r["model"], f"{r['clients']:,}", "yes" if r["slow"] else "no",
            _n(r["requests_per_s"]), _n(r["confirmed_per_s"]), _n(r["searches_per_s"]),
            "-" if r["buy_p99_ms"] is None else f"{r['buy_p99_ms']:.1f}",
            "-" if r["search_p99_ms"] is None else f"{r['search_p99_ms']:.1f}",
            f"{r['errors']:,}", r["audit"],
        )
    return t


def compare_plot(rows: Sequence[dict[str, Any]], path: str, title: str) -> None:
    """Throughput and p99 per configuration; a configuration that answered nothing is marked."""
    plt = _pyplot()
    ok = [r for r in rows if not r.get("failed")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(min(20.0, max(12.0, 0.45 * len(ok) + 6)), 6))
    names = [r["name"] for r in ok]
    colors = ["tab:orange" if r["slow"] else "tab:blue" for r in ok]
    metric = "confirmed_per_s" if any(r["confirmed_per_s"] for r in ok) else "requests_per_s"
    values = [r[metric] for r in ok]
    left.bar(range(len(ok)), values, color=colors)
    top = max(values, default=0) or 1
    for i, v in enumerate(values):
        if not v:
            left.annotate("stalled", (i, top * 0.01), ha="center", va="bottom", rotation=90, fontsize=7, color="tab:red")
    left.set_xticks(range(len(ok)), names, rotation=60, ha="right", fontsize=7)
    left.set_ylabel(metric.replace("_per_s", " per second").replace("_", " "))
    left.set_title("throughput (orange: with one slow client)")
    left.grid(alpha=0.3, axis="y")
    op = "buy" if any(r["buy_p99_ms"] for r in ok) else "search"
    lat = [r[f"{op}_p99_ms"] for r in ok]
    shown = [v for v in lat if v]
    right.bar(range(len(ok)), [v or 0 for v in lat], color=colors)
    if shown:
        right.set_yscale("log")
        low = min(shown) / 2
        right.set_ylim(bottom=low)
        for i, v in enumerate(lat):
            if not v:
                right.annotate("no reply", (i, low * 1.1), ha="center", va="bottom", rotation=90, fontsize=7,
                               color="tab:red")
    right.set_xticks(range(len(ok)), names, rotation=60, ha="right", fontsize=7)
    right.set_ylabel(f"{op} p99 latency, ms (log)")
    right.set_title(f"{op} p99 latency")
    right.grid(alpha=0.3, axis="y")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
