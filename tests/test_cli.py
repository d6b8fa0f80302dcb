"""The command line against a real server (``railtix serve`` in a subprocess on port 0): the whole
user story, helpful errors with the right exit status, the saved login, the lazy subcommand
groups, the serve banner and the timetable's export and import."""

from __future__ import annotations

import datetime as dt
import os
import queue
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import msgspec
import pytest
from click.testing import CliRunner, Result

from railtix.cli import LazyGroup, Refused, banner, main, order_hint, railtix_command, yuan
from railtix.client import Client
from railtix.core.errors import CODES
from railtix.core.rides import today
from railtix.core.timetable import Timetable
from railtix.demo.timetable import demo_timetable
from railtix.store import open_store

ROOT = Path(__file__).resolve().parent.parent
wait_s = 20.0
ZHANG = "Zhang San,110101199001011237"
LI = "Li Si,110101199001015676"

Run = Callable[..., Result]


def sale_date(days: int = 1) -> str:
    return (today(time.time()) + dt.timedelta(days=days)).isoformat()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.delenv("RAILTIX_SERVER", raising=False)
    monkeypatch.delenv("RAILTIX_DATABASE", raising=False)
    monkeypatch.setenv("COLUMNS", "200")  # tables on one line each, whatever the terminal
    return home


@pytest.fixture
def cli(config_home: Path) -> Run:
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Result:
        return runner.invoke(main, list(args), input=input)

    return run


def as_json(result: Result) -> dict[str, Any]:
    assert result.stdout.strip(), result.output
    return msgspec.json.decode(result.stdout.strip().splitlines()[-1])


def test_user_story(start_server: Any, cli: Run, config_home: Path) -> None:
    server = start_server()
    at = ["--server", f"{server.host}:{server.port}"]

    r = cli(*at, "register", "alice", input="password123\n")  # password from stdin (not a TTY)
    assert r.exit_code == 0, r.output
    assert "registered alice" in r.stdout
    # the next step as a command to copy, to this server, not to the default one
    assert f"now: railtix --server {server.host}:{server.port} login alice" in r.stdout

    r = cli(*at, "login", "alice", "--password", "password123")
    assert r.exit_code == 0, r.output
    assert re.search(r"until \d{4}-\d{2}-\d{2} \d{2}:\d{2} China time", r.stdout), r.stdout
    saved = config_home / "railtix" / "config.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    logins = msgspec.json.decode(saved.read_bytes())["servers"]
    assert logins[f"{server.host}:{server.port}"]["user"] == "alice"

    r = cli(*at, "--json", "search", "Beijing South", "Shanghai Hongqiao")
    assert r.exit_code == 0, r.output
    found = as_json(r)
    assert found["ok"] is True and found["date"] == sale_date(1)  # tomorrow, China time
    g1 = next(t for t in found["trains"] if t["train"] == "G1")
    second = next(c for c in g1["classes"] if c["class"] == "second")

    r = cli(*at, "search", "VNP", "AOH")
    assert r.exit_code == 0, r.output
    g1_line = next(line for line in r.stdout.splitlines() if line.split()[:1] == ["G1"])
    assert "07:00" in g1_line and "11:29" in g1_line and "4h29m" in g1_line
    assert f"{second['left']} {yuan(second['price'])}" in g1_line

    r = cli(*at, "buy", "G1", "--from", "VNP", "--to", "AOH", "--passenger", ZHANG, "--passenger", LI,
            "--seat", "A", "--seat", "B")
    assert r.exit_code == 0, r.output
    m = re.search(r"^order (E[A-Z0-9]+) — held until (\d{2}:\d{2}) China time$", r.stdout, re.M)
    assert m, r.stdout  # the status said once, with the hold's end
    order_id = m.group(1)
    assert r.stdout.count("held") == 1
    assert f"railtix --server {server.host}:{server.port} pay {order_id}" in r.stdout  # to copy as it is
    assert "Zhang San" in r.stdout and "Li Si" in r.stdout
    assert f"total {yuan(2 * second['price'])}" in r.stdout

    r = cli(*at, "--json", "orders")
    (held,) = as_json(r)["orders"]
    assert held["order"] == order_id and held["status"] == "held" and held["date"] == sale_date(1)
    assert sorted(t["seat"][-1] for t in held["tickets"]) == ["A", "B"]

    r = cli(*at, "pay", order_id)
    assert r.exit_code == 0, r.output
    assert f"order {order_id} — paid\n" in r.stdout and r.stdout.count("paid") == 1

    r = cli(*at, "cancel", order_id)  # a paid order is refunded, not cancelled: the hint says how
    assert r.exit_code == 1
    assert f"railtix --server {server.host}:{server.port} refund {order_id}" in r.stderr and "ORDER" not in r.stderr

    r = cli(*at, "orders")
    assert r.exit_code == 0, r.output
    row = next(line for line in r.stdout.splitlines() if order_id in line)
    assert "paid" in row and "Beijing South → Shanghai Hongqiao" in row and "G1" in row

    r = cli(*at, "refund", order_id, "--json")  # --json also after the subcommand
    assert r.exit_code == 0, r.output
    done = as_json(r)["order"]
    assert done["status"] == "refunded" and done["refund"] + done["fee"] == done["price"]

    r = cli(*at, "orders")  # refund and fee are shown
    row = next(line for line in r.stdout.splitlines() if order_id in line)
    assert f"{yuan(done['refund'])} back, fee {yuan(done['fee'])}" in row

    r = cli(*at, "--json", "order", order_id)
    assert as_json(r)["order"]["status"] == "refunded"

    r = cli(*at, "refund", order_id)
    assert r.exit_code == 1
    assert "refunded" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1  # nothing is left to do: no hint

    r = cli(*at, "logout")
    assert r.exit_code == 0
    assert msgspec.json.decode(saved.read_bytes())["servers"] == {}
    r = cli(*at, "orders")
    assert r.exit_code == 1 and f"railtix --server {server.host}:{server.port} login" in r.stderr

    # a database that has sold tickets keeps its timetable
    assert server.stop() == 0
    tt = config_home / "tt.json"
    tt.write_bytes(msgspec.json.encode(demo_timetable()))
    r = cli("timetable", "import", str(tt), "--database", str(server.database))
    assert r.exit_code == 1 and "already holds orders" in r.output


def test_a_seat_letter_that_could_not_be_given_is_said(start_server: Any, cli: Run) -> None:
    server = start_server()
    at = ["--server", f"{server.host}:{server.port}"]
    assert cli(*at, "register", "bo", input="password123\n").exit_code == 0
    assert cli(*at, "login", "bo", "--password", "password123").exit_code == 0
    r = cli(*at, "buy", "G1", "--from", "VNP", "--to", "AOH", "--class", "business", "--passenger", ZHANG,
            "--seat", "B")  # business class has no B: the server assigns a seat anyway
    assert r.exit_code == 0, r.output
    assert "note: business-class seats are lettered A, C, F, not B" in r.stdout
    r = cli(*at, "buy", "G1", "--from", "VNP", "--to", "AOH", "--class", "business", "--passenger", LI,
            "--seat", "F")
    assert r.exit_code == 0, r.output
    assert "note:" not in r.stdout  # a window seat was free and given


def test_the_seat_note_tells_a_letter_the_class_lacks_from_one_that_was_taken() -> None:
    from railtix.cli import seats_missed

    two_windows = [{"seat": "01F"}, {"seat": "01C"}]  # one F of the two wished for
    assert seats_missed("business", ["F", "F"], two_windows) == (
        "note: not enough F seats were free on this ride, so some seats above are not the ones wished for"
    )
    assert seats_missed("business", ["F", "C"], two_windows) is None
    both = seats_missed("business", ["B", "F"], [{"seat": "01A"}, {"seat": "01C"}])
    assert both is not None and "lettered A, C, F, not B" in both and "not enough F seats" in both


def test_unknown_station_suggests_and_exits_1(start_server: Any, cli: Run) -> None:
    server = start_server()
    at = ["--server", f"{server.host}:{server.port}"]
    r = cli(*at, "search", "Bejing South", "AOH")
    assert r.exit_code == 1
    assert "did you mean Beijing South (VNP)" in r.stderr
    assert r.stdout == ""
    r = cli(*at, "search", "XYZ", "AOH")  # nothing like it: where the names are
    assert r.exit_code == 1
    assert f"listed by: railtix {' '.join(at)} stations" in r.stderr

    r = cli(*at, "--json", "search", "Bejing South", "AOH")
    assert r.exit_code == 1
    reply = as_json(r)
    assert reply["ok"] is False and reply["error"]["code"] == "unknown_station"


def test_a_search_with_no_train_names_the_stations_it_understood(start_server: Any, cli: Run) -> None:
    server = start_server()
    at = ["--server", f"{server.host}:{server.port}"]
    r = cli(*at, "search", "上海", "Hong Kong")
    assert r.exit_code == 0, r.stderr
    assert "Shanghai Hongqiao (AOH)" in r.stdout and "(XJA)" in r.stdout, r.stdout
    assert "no train runs this way" in r.stdout


def test_group_help_shows_each_command_s_first_sentence_whole(cli: Run) -> None:
    """click cuts a listing's help at the line's end with '...'; ours wrap it instead."""
    for args, sentence in (
        (("--help",), "Refund a paid order (12306's fee tiers apply: free 8 days ahead, 20 % in the last 24 hours)"),
        (("bench", "--help"), "The write path alone: rush buys straight into the batch transaction, no network"),
    ):
        r = cli(*args)
        assert r.exit_code == 0, r.output
        listing = " ".join(r.stdout.partition("Commands:")[2].split())
        assert sentence in listing and "..." not in listing, listing


def test_hints_name_no_server_when_it_came_from_the_environment(
    start_server: Any, cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_server()
    monkeypatch.setenv("RAILTIX_SERVER", f"{server.host}:{server.port}")
    r = cli("register", "cy", input="password123\n")
    assert r.exit_code == 0, r.output
    assert "now: railtix login cy" in r.stdout  # RAILTIX_SERVER still points there


def test_unreachable_server(cli: Run) -> None:
    port = free_port()
    r = cli("--server", f"127.0.0.1:{port}", "search", "VNP", "AOH")
    assert r.exit_code == 1
    assert f"cannot reach the server at 127.0.0.1:{port}" in r.stderr
    # started as this address needs: `make run` alone would listen on 5002
    assert f"make run TCP=127.0.0.1:{port}" in r.stderr and f"railtix serve --tcp 127.0.0.1:{port}" in r.stderr
    r = cli("--server", f"0.0.0.0:{port}", "search", "VNP", "AOH")  # not told to listen on every interface
    assert f"make run TCP=127.0.0.1:{port}" in r.stderr and "--tcp 0.0.0.0" not in r.stderr


def test_an_unreachable_server_elsewhere_is_not_told_to_start_here() -> None:
    from railtix.cli import unreachable_message
    from railtix.client import Unreachable

    for here in ("127.0.0.1:5002", "localhost:5002", "[::1]:5002", "127.0.0.2:5002", "0.0.0.0:5002"):
        assert "make run" in unreachable_message(Unreachable(here, "connection refused")), here
    away = unreachable_message(Unreachable("nonsense:5002", "Name or service not known"))
    assert "make run" not in away and "--server" in away and "RAILTIX_SERVER" in away


def test_server_from_environment(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("RAILTIX_SERVER", f"127.0.0.1:{port}")
    r = cli("stations")
    assert r.exit_code == 1 and f"127.0.0.1:{port}" in r.stderr


@pytest.mark.parametrize(
    "args",
    [["orders"], ["pay", "EAAAAAAAAAAAAAAAA"], ["buy", "G1", "--from", "VNP", "--to", "AOH", "--passenger", ZHANG]],
)
def test_not_logged_in(start_server: Any, cli: Run, args: list[str]) -> None:
    server = start_server()
    at = ["--server", f"{server.host}:{server.port}"]
    r = cli(*at, *args)
    assert r.exit_code == 1
    assert "not logged in" in r.stderr
    assert r.stderr.count(f"railtix --server {server.host}:{server.port} login") == 1  # one hint, not two
    assert "again" not in r.stderr

    r = cli(*at, "--json", *args)
    assert r.exit_code == 1
    local = as_json(r)
    assert local["id"] is None and local["ok"] is False
    assert local["error"]["code"] == "unauthorized" and local["error"]["retry"] is False
    assert "not logged in" in local["error"]["message"]
    # the same shape as the server's own refusals
    server_reply = as_json(cli(*at, "--json", "search", "Nowhere", "AOH"))
    assert set(local) == set(server_reply) and set(local["error"]) == set(server_reply["error"])


def test_cli_refusals_use_registered_codes() -> None:
    """The command line's own refusals speak the server's vocabulary (``CODES``), never their own."""
    source = (ROOT / "railtix" / "cli.py").read_text()
    codes = re.findall(r"Refused\(\s*\"([a-z_]+)\"", source)
    assert codes and set(codes) <= set(CODES), codes
    with pytest.raises(AssertionError):
        Refused("not_a_registered_code", "no")


@pytest.mark.parametrize("command", [["search", "VNP", "AOH"], ["train", "G1"]])
def test_bad_date_names_the_accepted_forms(cli: Run, command: list[str]) -> None:
    at = ["--server", f"127.0.0.1:{free_port()}"]  # judged before any connection
    r = cli(*at, *command, "--date", "yesterday")
    assert r.exit_code == 1
    assert "'yesterday'" in r.stderr
    for form in ("YYYY-MM-DD", "today", "tomorrow", "+N"):
        assert form in r.stderr
    r = cli(*at, "--json", *command, "--date", "2026-02-30")
    assert r.exit_code == 1
    reply = as_json(r)
    assert reply["error"]["code"] == "invalid_date" and "YYYY-MM-DD" in reply["error"]["message"]


def test_order_hints_follow_the_order_state(start_server: Any, cli: Run) -> None:
    server = start_server(None, "--hold-minutes", "0.01")  # holds lapse after 0.6 s
    at = ["--server", f"{server.host}:{server.port}"]
    assert cli(*at, "register", "carol", "--password", "password123").exit_code == 0
    assert cli(*at, "login", "carol", "--password", "password123").exit_code == 0

    def buy() -> dict[str, Any]:
        r = cli(*at, "--json", "buy", "G1", "--from", "VNP", "--to", "AOH", "--passenger", ZHANG)
        assert r.exit_code == 0, r.output
        order: dict[str, Any] = as_json(r)["order"]
        return order

    # an expired hold: the release said once, and how to buy the same ride again
    lapsed = buy()
    ends = dt.datetime.fromisoformat(lapsed["hold_until"]).timestamp() + 1  # shown to the second
    for _ in range(100):  # bounded: the hold is 0.6 s
        if time.time() > ends:
            break
        time.sleep(0.05)
    r = cli(*at, "pay", lapsed["order"])
    assert r.exit_code == 1
    assert r.stderr.count("released") == 1, r.stderr
    assert f"railtix {' '.join(at)} buy G1 --date {lapsed['date']} --from VNP --to AOH" in r.stderr

    # an id typed in lower case (or with a stray space) finds the order
    r = cli(*at, "--json", "order", f" {lapsed['order'].lower()}")
    assert r.exit_code == 0 and as_json(r)["order"]["order"] == lapsed["order"], r.output

    # cancelling a cancelled order: nothing to do, and never the literal ORDER
    r = cli(*at, "cancel", lapsed["order"])
    assert r.exit_code == 1
    assert "ORDER" not in r.stderr and "refund" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_order_hint_names_the_order_and_fits_its_state() -> None:
    ride = {"train": "G1", "date": "2026-12-01", "from": "VNP", "to": "AOH", "class": "second"}
    oid = "EABCDEFGHJKLMNPQR"
    held = {**ride, "order": oid, "status": "held", "hold_until": "2026-12-01T05:47:00+08:00"}
    hint = order_hint("refund", oid, held) or ""
    assert f"railtix pay {oid}" in hint and f"railtix cancel {oid}" in hint and "China time" in hint
    assert f"railtix refund {oid}" in (order_hint("cancel", oid, {**ride, "status": "paid"}) or "")
    assert "railtix buy G1 --date 2026-12-01 --from VNP --to AOH" in (
        order_hint("pay", oid, {**ride, "status": "cancelled"}) or "")
    for status in ("cancelled", "expired", "refunded"):
        assert order_hint("cancel", oid, {**ride, "status": status}) is None
        assert order_hint("refund", oid, {**ride, "status": status}) is None
    for op in ("pay", "cancel", "refund"):  # the state unknown: still the real id, never ORDER
        hint = order_hint(op, oid, None) or ""
        assert oid in hint and "ORDER" not in hint


def test_orders_table_fits_80_columns(start_server: Any, cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    server = start_server()
    at = ["--server", f"{server.host}:{server.port}"]
    assert cli(*at, "register", "dave", "--password", "password123").exit_code == 0
    assert cli(*at, "login", "dave", "--password", "password123").exit_code == 0
    r = cli(*at, "--json", "buy", "G1", "--from", "VNP", "--to", "AOH", "--passenger", ZHANG, "--passenger", LI)
    order_id = as_json(r)["order"]["order"]
    assert cli(*at, "pay", order_id).exit_code == 0
    refunded = as_json(cli(*at, "--json", "refund", order_id))["order"]
    assert cli(*at, "buy", "G3", "--from", "VNP", "--to", "AOH", "--passenger", ZHANG).exit_code == 0

    monkeypatch.setenv("COLUMNS", "80")
    r = cli(*at, "orders")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80, r.stdout
    row = next(line for line in lines if order_id in line)
    assert "VNP→AOH" in row and "Beijing" not in r.stdout  # codes, not names
    assert yuan(refunded["refund"]) in r.stdout and yuan(refunded["fee"]) in r.stdout
    assert any("until" in line for line in lines)  # the held one


def test_audit_never_creates_what_it_audits(cli: Run, tmp_path: Path) -> None:
    """An audit only reads: an empty file or another program's database is refused and left
    exactly as it was, not turned into an empty railtix database that audits clean."""
    import sqlite3

    empty = tmp_path / "empty.db"
    empty.touch()
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    before = other.read_bytes()
    for db in (empty, other):
        r = cli("audit", "--database", str(db))
        assert r.exit_code == 2 and "no railtix tables" in r.stderr, r.output
        r = cli("bench", "audit", "--database", str(db))
        assert r.exit_code == 2 and "no railtix tables" in r.stderr, r.output
    assert empty.stat().st_size == 0 and other.read_bytes() == before


def test_a_passenger_s_id_number_is_sent_as_printed_on_the_document() -> None:
    from railtix.cli import parse_passenger

    # the resident id card's check character X (the server refuses an x), a passport's letters
    assert parse_passenger(" 张三 , 11010519491231002x ") == {"name": "张三", "id_no": "11010519491231002X"}
    assert parse_passenger("Li Na,e12345678") == {"name": "Li Na", "id_no": "E12345678"}


@pytest.mark.parametrize(
    "args",
    [
        ["buy", "G1", "--from", "VNP", "--to", "AOH", "--passenger", "no comma here"],
        ["buy", "G1", "--from", "VNP", "--to", "AOH", "--passenger", "Zhang San,110101199001011237,extra"],
        ["buy", "G1", "--from", "VNP", "--to", "AOH", "--passenger", "Zhang San,1101-0119"],
        ["bench", "rush", "--model", "threads"],  # --model is for the server --serve starts
        ["bench", "rush", "--serve", "--target", "tcp://127.0.0.1:5003"],
        ["bench", "rush", "--target", "tcp://"],
        ["bench", "rush", "--target", "tcp://127.0.0.1:99999"],
        ["bench", "soak", "--serve", "--rate", "nan"],
        ["bench", "soak", "--serve", "--rate", "1e12"],
        ["bench", "rush", "--serve", "--plot", "/no/such/folder/x.png"],
        ["bench", "rush", "--target", "tcp://127.0.0.1:1", "--database", "/no/such/railtix.db"],
        ["bench", "compare", "--config", "model=asyncio,pipeline=0"],
        ["bench", "compare", "--clients", ""],
        ["bench", "rush", "--serve", "--clients", "2", "--processes", "3"],
        ["buy", "G1", "--to", "AOH", "--passenger", ZHANG],
        ["buy", "G1", "--from", "VNP", "--to", "AOH", *["--passenger", ZHANG] * 6],
        ["buy", "G1", "--from", "VNP", "--to", "AOH", "--passenger", ZHANG, "--seat", "E"],
        ["search", "VNP"],
        ["--server", "host:notaport", "stations"],
        ["no-such-command"],
    ],
)
def test_usage_errors_exit_2(cli: Run, args: list[str]) -> None:
    r = cli(*args)
    assert r.exit_code == 2, r.output


def test_stations_filter_and_train(start_server: Any, cli: Run) -> None:
    server = start_server()
    at = ["--server", f"{server.host}:{server.port}"]
    r = cli(*at, "stations", "hongqiao")
    assert r.exit_code == 0
    assert "AOH" in r.stdout and "上海虹桥" in r.stdout and "VNP" not in r.stdout
    r = cli(*at, "--json", "train", "G1", "--date", "tomorrow")
    info = as_json(r)
    assert info["date"] == sale_date(1) and info["stops"][0]["station"] == "VNP"
    r = cli(*at, "train", "G1")
    assert r.exit_code == 0 and "Nanjing South" in r.stdout


def test_password_is_read_from_stdin_and_blank_is_refused(start_server: Any, cli: Run) -> None:
    server = start_server()
    at = ["--server", f"{server.host}:{server.port}"]
    assert cli(*at, "register", "bob", input="\n").exit_code == 2
    assert cli(*at, "register", "bob", input="s3cret-words\n").exit_code == 0
    r = cli(*at, "login", "bob", input="wrong-words\n")
    assert r.exit_code == 1 and "wrong" in r.stderr
    assert cli(*at, "login", "bob", input="s3cret-words\n").exit_code == 0


def test_lazy_group_reports_a_missing_module(cli: Run) -> None:
    @click.group(cls=LazyGroup, lazy_subcommands={"ghost": ("railtix.no_such_module:cmd", "Not here.")})
    def group() -> None:
        pass

    runner = CliRunner()
    r = runner.invoke(group, ["--help"])
    assert r.exit_code == 0 and "ghost" in r.output and "Not here." in r.output
    r = runner.invoke(group, ["ghost", "--some-flag", "x"])
    assert r.exit_code == 1
    assert "not available" in r.output and "railtix.no_such_module" in r.output


def test_help_and_client_commands_do_not_import_heavy_modules() -> None:
    code = (
        "import sys\n"
        "from railtix.cli import main\n"
        "try:\n"
        "    main(['--help'], standalone_mode=False)\n"
        "finally:\n"
        "    heavy = [m for m in ('matplotlib', 'railtix.bench.cli', 'railtix.demo.cli', 'numpy',\n"
        "             'railtix.service.service') if m in sys.modules]\n"
        "    print('HEAVY', heavy)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=wait_s)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
    assert "bench" in out.stdout and "demo" in out.stdout


def test_serve_banner_timetable_and_hold_minutes(tmp_path: Path) -> None:
    full = demo_timetable()
    small = Timetable(stations=full.stations, trains=full.trains[:3], fare_per_km=full.fare_per_km)
    tt = tmp_path / "small.json"
    tt.write_bytes(msgspec.json.encode(small))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "railtix", "serve", "--tcp", "127.0.0.1:0", "--database",
         str(tmp_path / "small.db"), "--timetable", str(tt), "--hold-minutes", "7"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    try:
        seen: list[str] = []
        deadline = time.monotonic() + wait_s
        while not seen or not seen[-1].startswith("stop with"):
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line, "server exited early:\n" + "".join(seen)
            seen.append(line)
        m = re.fullmatch(r"railtix listening tcp://127\.0\.0\.1:(\d+)\n", seen[0])
        assert m, seen[0]
        banner = "".join(seen[1:])
        assert f"{len(full.stations)} stations, 3 trains" in banner
        assert "7 minutes" in banner and "small.db" in banner and "asyncio" in banner
        assert f"--server 127.0.0.1:{m.group(1)}" in banner  # not the default port: say so
        assert "0 users and 0 orders" in banner and "register alice" in banner
        # the suggested command runs as typed in a terminal of the same directory and PATH
        register = next(line for line in seen if "register alice" in line).strip()
        command = register.split(" --server")[0].split(" -m ")[0]
        assert shutil.which(command) if command == "railtix" else (tmp_path / command).is_file(), register
        first = small.trains[0]
        assert f"buy {first.number} --from {first.stops[0].station}" in banner
        with Client("127.0.0.1", int(m.group(1)), timeout=wait_s) as c:
            assert c.hello()["limits"]["hold_minutes"] == 7
            assert len(c.stations()["stations"]) == len(full.stations)
            assert c.train(first.number)["train"] == first.number
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(wait_s)
    assert proc.returncode == 0
    store = open_store(str(tmp_path / "small.db"))
    try:
        assert store.get_timetable() == small
    finally:
        store.close()


def test_timetable_export_import_round_trip(cli: Run, tmp_path: Path) -> None:
    out = tmp_path / "tt.json"
    r = cli("timetable", "export", str(out), "--database", str(tmp_path / "absent.db"))
    assert r.exit_code == 0, r.output
    assert "demo" in r.stderr
    assert not (tmp_path / "absent.db").exists()
    exported = msgspec.json.decode(out.read_bytes(), type=Timetable)
    assert exported == demo_timetable()

    db = tmp_path / "new.db"
    r = cli("timetable", "import", str(out), "--database", str(db))
    assert r.exit_code == 0, r.output
    r = cli("timetable", "export", "-", "--database", str(db))
    assert r.exit_code == 0
    assert msgspec.json.decode(r.stdout, type=Timetable) == exported


def test_timetable_import_validates(cli: Run, tmp_path: Path) -> None:
    full = demo_timetable()
    broken = Timetable(stations=full.stations, trains=(full.trains[0], full.trains[0]))
    bad = tmp_path / "bad.json"
    bad.write_bytes(msgspec.json.encode(broken))
    r = cli("timetable", "import", str(bad), "--database", str(tmp_path / "x.db"))
    assert r.exit_code == 1 and "two trains share a number" in r.output
    empty = tmp_path / "empty.json"
    empty.write_bytes(msgspec.json.encode(Timetable(stations=full.stations, trains=())))
    r = cli("timetable", "import", str(empty), "--database", str(tmp_path / "x.db"))
    assert r.exit_code == 1 and "no trains" in r.output
    junk = tmp_path / "junk.json"
    junk.write_text('{"stations": 3}')
    r = cli("timetable", "import", str(junk), "--database", str(tmp_path / "x.db"))
    assert r.exit_code == 1 and "not a railtix timetable" in r.output
    assert r.stderr.startswith("railtix: ") and "Error:" not in r.output  # one style of message


def test_serve_errors_say_railtix(cli: Run, tmp_path: Path) -> None:
    r = cli("serve", "--tcp", "127.0.0.1:0", "--database", str(tmp_path))  # a directory
    assert r.exit_code == 1
    assert r.stderr.startswith("railtix: cannot open the database") and "Error:" not in r.output


def test_serve_on_a_taken_port_creates_no_database(cli: Run, tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        db = tmp_path / "new.db"
        r = cli("serve", "--tcp", f"127.0.0.1:{port}", "--database", str(db))
        assert r.exit_code == 1 and r.stderr.startswith(f"railtix: cannot serve on 127.0.0.1:{port}")
        assert not db.exists()  # refused before the database was created or migrated
    finally:
        taken.close()


@pytest.mark.parametrize("model", ["asyncio", "processes"])
def test_a_second_server_on_one_database_is_refused(start_server: Any, cli: Run, tmp_path: Path, model: str) -> None:
    db = tmp_path / "served.db"
    first = start_server(db)
    assert first.port
    r = cli("serve", "--model", model, "--tcp", "127.0.0.1:0", "--database", str(db))
    assert r.exit_code == 1
    who = "a railtix server of another model than processes" if model == "processes" else "another railtix server"
    assert r.stderr.startswith(f"railtix: {who} is serving {db}: stop it first"), r.output
    assert first.proc.poll() is None  # the first one serves on


def test_a_processes_server_keeps_its_database_from_servers_of_other_models(
    start_server: Any, cli: Run, tmp_path: Path
) -> None:
    db = tmp_path / "shared.db"
    first = start_server(db, "--model", "processes", "--workers", "1")
    assert first.port
    r = cli("serve", "--tcp", "127.0.0.1:0", "--database", str(db))
    assert r.exit_code == 1 and r.stderr.startswith(f"railtix: another railtix server is serving {db}"), r.output


def test_help_describes_demo_and_seat_wishes(cli: Run) -> None:
    r = cli("--help")
    assert "lock lesson" in r.stdout and "serving models" not in r.stdout
    r = cli("buy", "--help")
    assert "per passenger;" not in r.stdout and "repeat per passenger" not in r.stdout
    assert "honoured where free" in r.stdout and "windows" in r.stdout


def test_banner_of_a_database_with_users() -> None:
    timetable = demo_timetable()
    fresh = banner("127.0.0.1:5002", "r.db", "asyncio", timetable, 30, False, (0, 0), "railtix")
    assert "register alice" in fresh and "0 users and 0 orders" in fresh
    used = banner("127.0.0.1:5002", "r.db", "asyncio", timetable, 30, False, (2, 5), ".venv/bin/railtix")
    assert "register alice" not in used and "2 users and 5 orders" in used
    assert "  .venv/bin/railtix login USER" in used
    assert "  .venv/bin/railtix search" in used


def test_railtix_command_works_as_typed(tmp_path: Path) -> None:
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    script = bin_dir / "railtix"
    script.write_text("#!/bin/sh\n")
    python = str(bin_dir / "python")
    cwd = str(tmp_path)
    # the venv of `make run`, not activated: the path from here
    assert railtix_command(str(script), str(bin_dir), python, "", cwd) == ".venv/bin/railtix"
    assert railtix_command("-m", str(bin_dir), python, "", cwd) == ".venv/bin/railtix"
    # on PATH (the venv activated): the bare name
    assert railtix_command(str(script), str(bin_dir), python, str(script), cwd) == "railtix"
    # another directory: the absolute path
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert railtix_command(str(script), str(bin_dir), python, "", str(elsewhere)) == str(script)
    # no script installed (run from a checkout): python -m railtix
    script.unlink()
    assert railtix_command("-m", str(bin_dir), python, "", cwd) == ".venv/bin/python -m railtix"


def test_audit_of_a_missing_postgres_schema_creates_nothing(cli: Run) -> None:
    import uuid

    import psycopg
    from test_postgres import PG, _pg_up

    if not _pg_up():
        pytest.skip("no PostgreSQL at 127.0.0.1:5432")
    schema = f"railtix_absent_{uuid.uuid4().hex[:10]}"
    r = cli("audit", "--database", f"{PG}?schema={schema}")
    assert r.exit_code == 2 and "no railtix tables" in r.stderr, r.output
    with psycopg.connect(PG) as conn:
        found = conn.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (schema,))
        assert found.fetchone() is None
