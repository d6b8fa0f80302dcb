"""The bench's plan, the null server and the compare command's parsing: fast, no real server."""

from __future__ import annotations

import datetime as dt
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click
import msgspec
import pytest
from click.testing import CliRunner

from railtix import limits as server_limits
from railtix.bench import limits
from railtix.bench.cli import bench
from railtix.bench.compare import grid, parse_config
from railtix.bench.plan import MIXES, Buy, Plan, Search, encode_buy, encode_search, id_number
from railtix.bench.servers import Spawned, parse_target, start_null

DATES = Plan.dates(dt.date(2026, 6, 1))


def _bytes(plan: Plan, client: int, n: int) -> list[bytes]:
    out = []
    for step in plan.first(client, n):
        out.append(encode_search(step, DATES) if isinstance(step, Search) else encode_buy(step, "token", DATES))
    return out


@pytest.mark.parametrize("scenario", ["rush", "mixed", "soak"])
def test_same_seed_gives_the_same_requests(scenario: str) -> None:
    a, b = Plan(scenario, 4242), Plan(scenario, 4242)
    assert a.runs == b.runs
    for client in (0, 1, 77, limits.clients_max - 1):
        assert _bytes(a, client, 300) == _bytes(b, client, 300)
    # another seed is another plan; another client is another sequence
    assert _bytes(Plan(scenario, 4243), 0, 50) != _bytes(a, 0, 50)
    assert _bytes(a, 1, 50) != _bytes(a, 2, 50)


def test_a_client_s_steps_do_not_depend_on_how_far_others_went() -> None:
    plan = Plan("mixed", 9)
    alone = plan.first(5, 100)
    for c in range(5):
        plan.first(c, 1000)
    assert plan.first(5, 100) == alone


def test_rush_buys_only_its_runs_on_sale_dates() -> None:
    plan = Plan("rush", 11, runs=3)
    assert len(plan.runs) == 3
    numbers = {t.number for t, _ in plan.runs}
    for train, day in plan.runs:
        assert 1 <= day < server_limits.presale_days
        assert len(train.stops) >= 5
    steps = plan.first(3, 2000)
    assert all(isinstance(s, Buy) for s in steps)
    for s in steps:
        assert isinstance(s, Buy)
        assert s.train in numbers and 0 <= s.hot < 3
        train = plan.runs[s.hot][0]
        assert train.stops.index(s.origin) < train.stops.index(s.destination)
        assert 1 <= len(s.passengers) <= server_limits.passengers_per_order_max
    share_paid = sum(s.then == "pay" for s in steps if isinstance(s, Buy)) / len(steps)
    assert 0.8 < share_paid < 0.9  # "pays most of what they hold"


def test_mixed_is_mostly_searches() -> None:
    plan = Plan("mixed", 3)
    steps = [s for c in range(10) for s in plan.first(c, 2000)]
    buys = [s for s in steps if isinstance(s, Buy)]
    # requests a buy step sends: the buy, its repeat, and its pay/cancel/refund
    mutations = sum(1 + s.again + (s.then in ("pay", "cancel")) + 2 * (s.then == "refund") for s in buys)
    searches = len(steps) - len(buys)
    assert 0.08 < mutations / (mutations + searches) < 0.12
    assert {s.then for s in buys} == {"pay", "cancel", "refund", "hold"}
    assert MIXES["mixed"].search_share > 0.9


def test_passenger_id_numbers_are_fresh_and_well_formed() -> None:
    plan = Plan("rush", 123456)
    seen: set[str] = set()
    for client in (0, 1, 2, 999, 9999):
        for s in plan.first(client, 400):
            assert isinstance(s, Buy)
            for _, id_no in s.passengers:
                assert len(id_no) == 18 and id_no[:17].isdigit()
                assert id_no not in seen
                seen.add(id_no)
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    for id_no in list(seen)[:500] + [id_number(7, 3, 9_999_999)]:
        total = sum(int(d) * w for d, w in zip(id_no[:17], weights, strict=True))
        assert id_no[17] == "10X98765432"[total % 11]


def test_requests_start_with_their_id_and_decode() -> None:
    plan = Plan("mixed", 5)
    for line in _bytes(plan, 0, 200):
        assert line.startswith(b'{"id":') and line.endswith(b"\n")
        req = msgspec.json.decode(line)
        assert req["op"] in ("search", "buy")
        assert req["id"] % 4 == 0


# --- the null server -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def null_server() -> Iterator[Spawned]:
    s = start_null()
    yield s
    s.cleanup()


def _read_lines(sock: socket.socket, n: int) -> list[bytes]:
    buf = b""
    while buf.count(b"\n") < n:
        chunk = sock.recv(1 << 16)
        assert chunk, "the null server closed the connection"
        buf += chunk
    return buf.split(b"\n")[:n]


def test_null_server_answers_pipelined_lines_in_order(null_server: Spawned) -> None:
    lines = []
    expect = []
    for i in range(200):
        if i % 3 == 0:
            lines.append(b'{"id":%d,"op":"search","from":"VNP","to":"AOH","date":"2026-06-02"}' % i)
            expect.append((i, "search"))
        elif i % 3 == 1:
            lines.append(b'{"op":"buy","id":"k-%d","token":"t"}' % i)  # id not first: decoded
            expect.append((f"k-{i}", "buy"))
        else:
            lines.append(b'{"id":%d,"op":"pay","token":"t","key":"k","order":"E1"}' % i)
            expect.append((i, "pay"))
    with socket.create_connection((null_server.host, null_server.port), timeout=10) as sock:
        sock.sendall(b"\n".join(lines) + b"\n")
        replies = [msgspec.json.decode(x) for x in _read_lines(sock, len(lines))]
    assert [r["id"] for r in replies] == [rid for rid, _ in expect]
    assert all(r["ok"] is True for r in replies)
    for r, (_, op) in zip(replies, expect, strict=True):
        if op == "search":
            assert len(r["trains"]) > 5  # a realistic search reply, not a stub
        else:
            assert r["order"]["order"].startswith("E")


def test_a_server_holding_no_serving_lock_has_no_database_to_audit(null_server: Spawned) -> None:
    """The null server (as a server on PostgreSQL) holds no SQLite serving lock: the bench finds
    no file for it, rather than guess one (see test_bench_audit for a railtix server's)."""
    from railtix.bench.cpu import listeners
    from railtix.bench.servers import served_database

    server = listeners(null_server.port)
    assert server  # seen, and looked into
    assert served_database(server) is None


def test_null_server_line_split_across_writes(null_server: Spawned) -> None:
    with socket.create_connection((null_server.host, null_server.port), timeout=10) as sock:
        sock.sendall(b'{"id":1,"op":"he')
        sock.sendall(b'llo"}\n{"id":2,"op":"login","user":"u","password":"p"}\n')
        a, b = (msgspec.json.decode(x) for x in _read_lines(sock, 2))
    assert (a["id"], b["id"]) == (1, 2)
    assert b["token"]


def test_generator_against_null_server_in_two_processes(null_server: Spawned, tmp_path: object) -> None:
    out = f"{tmp_path}/null.json"
    result = CliRunner().invoke(
        bench,
        ["mixed", "--target", null_server.target, "--clients", "6", "--duration", "0.5", "--seed", "3",
         "--processes", "2", "--pipeline", "4", "--json", out, "--plot", "-", "--quiet"],
    )
    assert result.exit_code == 0, result.output
    doc = msgspec.json.decode(Path(out).read_bytes())
    assert doc["clients_connected"] == 6
    assert doc["requests"] > 0 and doc["generator"]["protocol_errors"] == 0
    assert doc["audit"]["skipped"]  # no --database and not the default target
    assert "2 load processes" in result.output
    # both processes' latencies over time, added up: every reply of the run is in some point
    over = doc["latency_over_time"]
    assert over["bucket_s"] == limits.tick_s
    for op, row in over["ops"].items():
        assert len(row["p50_ms"]) == len(row["p99_ms"]) == len(row["replies"]) >= len(doc["timeline"]["requests"])
        assert all(a is None or a <= b for a, b in zip(row["p50_ms"], row["p99_ms"], strict=True))
        # the last point is partial, not left out: every reply of the run is in some point
        assert sum(row["replies"]) == doc["ops"][op]["ok"] + doc["ops"][op]["errors"]
    busiest = max(over["ops"].values(), key=lambda r: sum(r["replies"]))
    assert all(n > 0 for n in busiest["replies"])  # spread over the run, not piled in one point
    # the timeline too, its last, partial bucket as a rate over the part of it the run lasted
    from railtix.bench.report import timeline_lengths

    lengths = timeline_lengths(doc["elapsed_s"])
    assert len(doc["timeline"]["requests"]) == len(lengths) and sum(lengths) == pytest.approx(doc["elapsed_s"])
    counted = sum(r * d for r, d in zip(doc["timeline"]["requests"], lengths, strict=True))
    assert counted == pytest.approx(doc["requests"], rel=0.01)


@pytest.mark.parametrize(("elapsed", "lengths", "rates"), [
    # quarter-second ticks that sold 100, 200, 300, … replies (as the load processes count them)
    (1.3, [0.25, 0.25, 0.25, 0.25, 0.3], [400, 800, 1200, 1600, (500 + 600) / 0.3]),  # a sliver joins the tick before
    (1.2, [0.25, 0.25, 0.25, 0.25, 0.2], [400, 800, 1200, 1600, 500 / 0.2]),  # a part stands alone, over its length
    (0.5, [0.25, 0.25], [400, (200 + 300) / 0.25]),  # a reply at the very end is in the last bucket
    (0.1, [0.1], [100 / 0.1]),  # shorter than a tick: one bucket, over the run
])
def test_the_timeline_s_last_bucket_is_the_part_of_a_tick_the_run_lasted(
    elapsed: float, lengths: list[float], rates: list[float]
) -> None:
    from railtix.bench.report import _rates, timeline_lengths

    assert timeline_lengths(elapsed) == pytest.approx(lengths)
    counted = [100 * (i + 1) for i in range(int(elapsed / limits.tick_s) + 1)]
    got = _rates(counted + [0] * 3, elapsed)  # and ticks of nothing after
    assert got == pytest.approx(rates, abs=0.1)
    assert sum(r * d for r, d in zip(got, lengths, strict=True)) == pytest.approx(sum(counted), abs=0.1)


def test_the_cpu_line_names_a_process_that_used_a_whole_core() -> None:
    from railtix.bench.report import _busy

    assert _busy(0.99) == "99% busy, the limit"
    assert _busy(0.6) == "60% busy"
    # two load processes at 80 % each: 160 % in all, but neither used a whole core
    assert _busy(1.6, 0.8) == "160% busy"
    assert _busy(1.9, 0.96) == "190% busy, the limit"


def test_soak_is_paced_open_loop(null_server: Spawned, tmp_path: object) -> None:
    out = f"{tmp_path}/soak.json"
    result = CliRunner().invoke(
        bench,
        ["soak", "--target", null_server.target, "--clients", "3", "--duration", "0.5", "--rate", "200",
         "--seed", "8", "--json", out, "--plot", f"{tmp_path}/soak.png", "--quiet"],
    )
    assert result.exit_code == 0, result.output
    doc = msgspec.json.decode(Path(out).read_bytes())
    assert doc["loop"] == "open" and doc["rate"] == 200
    # requests were dealt at intended times: never more than the schedule allows
    assert 0 < doc["generator"]["sent"] <= 200 * 0.5 + 1  # follow-ups and repeats take their turn too
    assert "latency_ms_corrected" not in doc  # nothing omitted, nothing corrected
    assert Path(f"{tmp_path}/soak.png").read_bytes()[:4] == b"\x89PNG"


# --- command line ------------------------------------------------------------------------------
def test_parse_target() -> None:
    assert parse_target("tcp://127.0.0.1:5002") == ("127.0.0.1", 5002)
    assert parse_target("localhost:7") == ("localhost", 7)
    with pytest.raises(ValueError):
        parse_target("tcp://nohost")
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        parse_target("http://127.0.0.1:5002")  # not taken as the host "http"


def test_bench_options_that_cannot_work_are_refused_plainly(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from railtix.bench.cli import bench

    quiet = ["--json", "-", "--plot", "-", "--quiet", "--clients", "2", "--duration", "1"]
    # --serve starts a server of its own: a --target beside it is refused, even the default one
    r = CliRunner().invoke(bench, ["rush", "--serve", "--target", "tcp://127.0.0.1:5002", *quiet])
    assert r.exit_code == 2 and "--target and --database do not go with it" in r.output, r.output
    # nothing listening: said as such, with what to do, not as a Python error
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = CliRunner().invoke(bench, ["rush", "--target", f"tcp://127.0.0.1:{port}", *quiet])
    assert r.exit_code == 2, r.output
    assert f"nothing listens at 127.0.0.1:{port}" in r.output and "--serve" in r.output, r.output


def test_a_served_rush_names_its_model_and_times_its_audit(tmp_path: Path) -> None:
    """--serve knows the model it started, so the table, the plot and the JSON name it; the
    audit's time is said on the audit's own line, after the table, not before it."""
    out = tmp_path / "r.json"
    r = CliRunner().invoke(bench, ["rush", "--serve", "--model", "threads", "--clients", "4", "--duration", "0.5",
                                   "--seed", "3", "--json", str(out), "--plot", "-"])
    assert r.exit_code == 0, r.output
    doc = msgspec.json.decode(out.read_bytes())
    assert doc["model"] == "threads"
    assert "(threads model)" in r.output  # the table's title
    assert doc["audit"]["clean"] is True and doc["audit"]["seconds"] >= 0
    # the temporary database it audited is gone, and the JSON says so beside its path
    assert doc["audit"]["removed"] is True and not os.path.exists(doc["audit"]["database"])
    lines = r.output.splitlines()
    confirmed = next(x for x in lines if x.startswith("confirmed purchases: "))
    assert f"{doc['confirmed']:,} (orders holding seats, {doc['paid']:,} of them paid)" in confirmed
    verdict = next(i for i, x in enumerate(lines) if x.startswith("audit clean: "))
    assert "checked in " in lines[verdict]
    assert not any(x.startswith("audit of ") for x in lines)
    assert verdict > next(i for i, x in enumerate(lines) if "p99 ms" in x)  # after the table


def test_compare_configurations() -> None:
    assert parse_config("name=a,model=threads,clients=100,slow=1,rate=2.5") == {
        "name": "a", "model": "threads", "clients": 100, "slow": 1, "rate": 2.5,
    }
    assert parse_config("clients=3")["model"] == "asyncio"
    assert parse_config("writer=thread,clients=3")["writer"] == "thread"
    with pytest.raises(click.BadParameter):
        parse_config("writer=fibre")
    with pytest.raises(Exception, match="key one of"):
        parse_config("colour=blue")
    cfgs = grid(["serial", "asyncio"], [1, 10], slow=True)
    assert len(cfgs) == 8 and sum(c["slow"] for c in cfgs) == 4
    assert len(grid(["asyncio"], [1], slow=False)) == 1


def test_compare_reports_a_model_that_does_not_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the bench makes its folders
    out = f"{tmp_path}/compare.json"
    result = CliRunner().invoke(
        bench,
        ["compare", "--config", "model=no-such-model,clients=1", "--duration", "0.5", "--seed", "1",
         "--json", out, "--plot", f"{tmp_path}/compare.png", "--quiet"],
    )
    assert result.exit_code == 2, result.output
    doc = msgspec.json.decode(Path(out).read_bytes())
    (row,) = doc["configs"]
    assert row["model"] == "no-such-model" and row["failed"]
    assert list(scratch.iterdir()) == [], "the failed start left its folders behind"


def test_rush_steps_draw_only_among_the_pairs_not_given_up_in_their_old_proportions() -> None:
    plan = Plan("rush", 11)
    given_up: set[tuple[int, str]] = set()
    steps = plan.steps(4, given_up)
    before = [next(steps) for _ in range(200)]
    assert all(isinstance(s, Buy) for s in before)  # nothing given up yet
    assert plan.runs[2][0].classes == ("business", "first", "second")
    given_up.update((i, c) for i in range(len(plan.runs)) for c in ("second", "first") if i != 2)
    after = [next(steps) for _ in range(3000)]
    assert all(isinstance(s, Buy) and (s.hot, s.seat_class) not in given_up for s in after)  # none wasted
    # left: run 2's second (0.85) and first (0.12) class, and every run's business (0.03 each)
    share = sum(1 for s in after if isinstance(s, Buy) and (s.hot, s.seat_class) == (2, "second")) / len(after)
    assert abs(share - 0.85 / (0.85 + 0.12 + 8 * 0.03)) < 0.04
    assert len({s.hot for s in after if isinstance(s, Buy) and s.seat_class == "business"}) == len(plan.runs)
    ids = [p[1] for s in before + after if isinstance(s, Buy) for p in s.passengers]
    assert len(ids) == len(set(ids))  # passengers stay fresh
    given_up.update((i, c) for i in range(len(plan.runs)) for c in ("business", "first", "second"))
    assert [next(steps) for _ in range(3)] == [None, None, None]  # all given up: the caller stops


def test_bench_writer_measures_the_batch_transaction_alone(tmp_path: Path) -> None:
    out = tmp_path / "w.json"
    r = CliRunner().invoke(bench, ["writer", "--buys", "300", "--batch", "100", "--seed", "3", "--json", str(out)])
    assert r.exit_code == 0, r.output
    found = msgspec.json.decode(out.read_bytes())
    assert found["buys"] == 300 and found["batch"] == 100
    # a rush's first 300 buys on fresh runs mostly succeed, and each made order was paid
    assert 150 <= found["orders"] <= 300
    assert found["buy_us"] > 0 and found["pay_us"] > 0
    assert found["buy_cpu_us"] > 0 and found["pay_cpu_us"] > 0
    assert found["wal_pages_per_buy_batch"] >= 1  # every commit wrote something
    assert "µs per command" in r.output


def test_bench_serving_times_the_loop_alone(tmp_path: Path) -> None:
    """Purchases go through the writer process and refusals stop at the gate (the command
    checks both, and every reply); the figures are the loop thread's CPU per request."""
    out = tmp_path / "s.json"
    r = CliRunner().invoke(bench, ["serving", "--connections", "20", "--purchases", "100", "--refusals", "100",
                                   "--json", str(out)])
    assert r.exit_code == 0, r.output
    found = msgspec.json.decode(out.read_bytes())
    assert found["connections"] == 20 and found["purchases"] == 100 and found["refusals"] == 100
    assert found["purchase_cpu_us"] > 0 and found["refusal_cpu_us"] > 0
    assert "a purchase through the writer" in r.output and "a refusal at the gate" in r.output
    r = CliRunner().invoke(bench, ["serving", "--connections", "1000", "--purchases", "29500"])
    assert r.exit_code == 2 and "must fit 30,000 seats" in r.output


def test_latency_over_time_puts_each_reply_in_the_tick_it_came_back_in() -> None:
    from railtix.bench.load import OPS, Recorder
    from railtix.bench.report import _merge_points, latency_over_time

    buy = OPS.index("buy")

    def worker(ticks: list[list[int]]) -> Recorder:
        rec = Recorder(6)
        for t, latencies in enumerate(ticks):
            rec.close_ticks(t)  # as Client.reply does when the first reply of tick t comes
            rec.lat[buy].extend(latencies)
        return rec

    # tick 0: three replies; tick 1: none; tick 2: ten at 5 ms and one at 90 ms
    one = worker([[1000, 2000, 3000], [], [5000] * 10 + [90_000]])
    two = worker([[4000], [], [], [7000]])
    m = {"latency_ticks_per_point": 1,
         "latency_by_tick": _merge_points([one.latency_by_tick(1), two.latency_by_tick(1)])}
    row = latency_over_time(m, elapsed=0.9)["ops"]["buy"]  # three whole ticks and a partial one
    assert row["replies"] == [4, 0, 11, 1]
    # HdrHistogram's three significant digits, as in the table
    assert row["p50_ms"] == [pytest.approx(2.0, rel=1e-3), None, pytest.approx(5.0, rel=1e-3), pytest.approx(7.0, rel=1e-3)]
    assert row["p99_ms"] == [pytest.approx(4.0, rel=1e-3), None, pytest.approx(90.0, rel=1e-3), pytest.approx(7.0, rel=1e-3)]
    # two ticks a point, as a long run has: the points add their ticks up
    m = {"latency_ticks_per_point": 2,
         "latency_by_tick": _merge_points([one.latency_by_tick(2), two.latency_by_tick(2)])}
    over = latency_over_time(m, elapsed=1.0)
    assert over["bucket_s"] == 2 * limits.tick_s
    assert over["ops"]["buy"]["replies"] == [4, 12]
    assert over["ops"]["buy"]["p50_ms"] == [pytest.approx(2.0, rel=1e-3), pytest.approx(5.0, rel=1e-3)]


def test_the_best_second_is_a_sliding_whole_second_of_ticks() -> None:
    from railtix.bench.report import _peak

    # quarter-second ticks: the best four in a row average 7,000/s, though no single tick says so
    rates = [4000.0, 6000.0, 8000.0, 7000.0, 7000.0, 6000.0, 1000.0]
    assert _peak(rates) == 7000.0
    assert _peak([8000.0, 4000.0]) == 3000.0  # under a second: what was sold, over a whole second


@pytest.mark.parametrize(
    ("scenario", "clients", "processes", "sells_out"),
    [("rush", 1000, 1, True), ("rush", 1000, 2, True), ("rush", 10, 1, True), ("mixed", 1000, 1, True),
     ("rush", 1000, 1, False)],
)
def test_a_rush_encodes_ahead_what_its_runs_can_sell(scenario: str, clients: int, processes: int, sells_out: bool) -> None:
    """A rush sends about as many buys as its runs have seat-legs, however long --duration is:
    it encodes about that many ahead (a client that runs out draws more as it goes). Sized by
    the duration, a 1,000-client rush encoded 200,000 buys to send 35,000-50,000. Against the
    null server, which sells out nothing, the duration decides: there the generator must not
    draw steps while it is measured (its ceiling fell from 31,500 to 25,900 requests/s)."""
    from railtix.bench.load import Client, Engine, LoadSpec

    spec = LoadSpec(scenario, 7, "127.0.0.1", 1, clients, ["tok"], Plan.dates(dt.date(2026, 12, 1)),
                    duration_s=10.0, processes=processes, sells_out=sells_out)
    engine = Engine(spec, worker=0)
    engine.clients = [Client(engine, i, "tok") for i in engine.indices]
    engine.prepare()
    encoded = sum(len(c.prepared) for c in engine.clients)
    n = len(engine.clients)
    by_duration = min(limits.requests_per_s_guess / processes * 10.0 / n + 4, limits.prepared_per_worker_max // n)
    if scenario == "rush" and sells_out:
        legs = sum(t.capacity * (len(t.stops) - 1) for t, _ in engine.plan.runs)
        share = limits.rush_steps_per_seat_leg * legs / processes
        assert encoded <= share + 4 * n  # not the duration's 200,000
        assert encoded >= min(share, by_duration * n) - n  # enough for what the runs can sell
    else:
        assert encoded == int(by_duration) * n  # the duration decides, as before


def test_the_null_server_alone_and_as_the_ceiling_of_a_run(tmp_path: Path) -> None:
    """--target null measures the generator against the null server and says so, without
    speaking of a ceiling of some other run; --ceiling runs that first and reports the run
    after it as a fraction of it."""
    alone = tmp_path / "null.json"
    r = CliRunner().invoke(bench, ["rush", "--target", "null", "--clients", "20", "--duration", "0.5", "--seed", "1",
                                   "--json", str(alone), "--plot", "-", "--quiet"])
    assert r.exit_code == 0, r.output
    doc = msgspec.json.decode(alone.read_bytes())
    assert doc["server"] == "null server" and doc["requests"] > 0 and "ceiling" not in doc
    assert "the null server, at tcp://127.0.0.1:" in r.output and "ceiling" not in r.output
    # the null server sells nothing out: no pair is ever given up (its sizing: the encodes_ahead and tells_the_null tests)
    assert doc["generator"]["skipped_sold_out"] == 0
    both = tmp_path / "both.json"
    r = CliRunner().invoke(bench, ["rush", "--serve", "--ceiling", "--clients", "20", "--duration", "0.5", "--seed", "2",
                                   "--json", str(both), "--plot", str(tmp_path / "both.png"), "--quiet"])
    assert r.exit_code == 0, r.output
    doc = msgspec.json.decode(both.read_bytes())
    c = doc["ceiling"]
    assert c["requests_per_s"] > 0 and c["fraction"] == round(doc["requests_per_s"] / c["requests_per_s"], 4)
    assert "ceiling: first the same load against the null server" in r.output
    line = next(x for x in r.output.splitlines() if x.startswith("ceiling (null server, same load): "))
    assert f"railtix reached {c['fraction']:.1%} of it" in line
    assert doc["audit"]["clean"] is True
    # and the plot, drawn with its line beside the run
    assert c["elapsed_s"] > 0 and (tmp_path / "both.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_bench_tells_the_null_server_from_a_server_that_sells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sizing above depends on ``sells_out``, which the runner takes from the setup's hello:
    false for the null server, true for railtix."""
    from railtix.bench import runner

    seen: list[bool] = []
    real = runner.run_load

    def spy(spec: object, *args: object) -> object:
        seen.append(spec.sells_out)  # type: ignore[attr-defined]
        return real(spec, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "run_load", spy)
    quiet = ["--clients", "4", "--duration", "0.3", "--seed", "5", "--json", "-", "--plot", "-", "--quiet"]
    r = CliRunner().invoke(bench, ["rush", "--target", "null", *quiet])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(bench, ["rush", "--serve", *quiet])
    assert r.exit_code == 0, r.output
    assert seen == [False, True]
