"""The ``railtix`` command: run a server, buy tickets from one, audit a database.

Client commands talk to a server over TCP with ``railtix.client`` (``--server HOST:PORT``, or
``RAILTIX_SERVER``) and print readable tables, or with ``--json`` the server's reply exactly.
Exit status: 0 when done, 1 when the server refused or could not be reached (the server's own
message is printed: it already names close stations for a misspelt one), or when the command
line refuses before asking (not logged in, not a date), 2 for usage errors. Every message is
``railtix: ...`` on stderr with at most one hint; under ``--json`` a refusal made here has the
shape of the server's (``{"id": null, "ok": false, "error": {...}}``, a code from ``CODES``).

Heavy imports (numpy, the service, rich) happen inside the commands that need them, and the
``bench`` and ``demo`` groups are imported only when invoked (click's lazy group pattern), so
``railtix --help`` and client commands start fast and never import matplotlib.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import ipaddress
import os
import re
import shlex
import shutil
import sys
import sysconfig
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import msgspec

import railtix
from railtix.client import DEFAULT_SERVER, RailtixError, Unreachable, format_address, parse_address
from railtix.core.errors import CODES
from railtix.serve import MODELS

#: One line per serving model, for ``serve --help`` (older registries may not describe them).
DESCRIPTIONS: dict[str, str] = getattr(importlib.import_module("railtix.serve"), "DESCRIPTIONS", {})

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from railtix.client.sync import Client
    from railtix.core.timetable import Timetable

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_DATABASE = "railtix.db"
DEFAULT_TCP = "127.0.0.1:5002"

#: Subcommand groups written elsewhere, imported only when invoked: name -> (target, short help).
LAZY_SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("railtix.bench.cli:bench", "Load generator, correctness audit, reports and plots."),
    "demo": ("railtix.demo.cli:demo", "The lecture's lock lesson on the real inventory (a seat race)."),
}

#: How hints name this command: with ``--server`` when the server was named on the command line
#: (a hint copied without it would go to the default server); set for each client command by
#: ``client_command``.
_invocation = "railtix"


def rx(rest: str) -> str:
    """A client command as a hint spells it, ready to copy."""
    return f"{_invocation} {rest}"


#: What to do next, for refusals where the message alone does not say. Refusals about an order
#: get a hint from the order's actual state instead (``order_hint``), when it can be read.
HINTS: dict[str, str] = {  # a command in one is spelt {railtix}: ``rx`` fills it in
    "bad_credentials": "check the name and password, or create an account: {railtix} register USER",
    "not_found": "your orders are listed by: {railtix} orders",
    "unknown_station": "the stations and their codes are listed by: {railtix} stations",
    "busy": "the server is at capacity; try again in a moment",
    "shutting_down": "the server is stopping; try again once it is back",
}

#: Refusals of pay, cancel and refund whose hint depends on the state the order is in.
ORDER_STATE_CODES = frozenset({"hold_expired", "order_not_payable", "order_not_cancellable", "order_not_refundable"})

#: Below this many columns the orders table shows station codes, not names: "Beijing South →
#: Shanghai Hongqiao" alone takes a third of an 80-column terminal and wraps the table.
orders_names_width_min = 120


class CliError(click.ClickException):
    """A failure of a server-side command (serve, audit, timetable), printed as every other
    message of the command line is: ``railtix: ...`` on stderr, exit status 1."""

    def show(self, file: Any = None) -> None:
        click.secho(f"railtix: {self.format_message()}", fg="red", err=True)


class Unreadable(CliError):
    """The database a reading command was given cannot be read: exit status 2, like a usage
    error, so that 1 keeps meaning what the command found."""

    exit_code = 2


class Refused(RailtixError):
    """A refusal with a hint of its own: either made by the command line before asking the
    server (``reply`` is None; its code must be one of the server's ``CODES``, so that scripts
    reading ``--json`` see one vocabulary), or a server refusal with a hint from the order's state.
    """

    def __init__(self, code: str, message: str, hint: str | None = None,
                 reply: dict[str, Any] | None = None, retry: bool | None = None) -> None:
        if reply is None:
            assert code in CODES, f"the command line may only use registered codes, not {code!r}"
        super().__init__(code, message, CODES.get(code, (False, ""))[0] if retry is None else retry, reply)
        self.hint = hint


# --- the group -----------------------------------------------------------------------------------
#: Characters of a command's first sentence shown in its group's listing, wrapped to the screen
_FIRST_SENTENCE_MAX = 160


class LazyGroup(click.Group):
    """A group whose some subcommands are imported only when invoked.

    This is the pattern of click's documentation ("Lazily Loading Subcommands"), with two
    additions: the help listing shows the lazy commands without importing them, and a group that
    cannot be imported (not installed, not written yet, a missing dependency) becomes a command
    that says so and exits 1, rather than a traceback for every use of the CLI.
    """

    def __init__(self, *args: Any, lazy_subcommands: dict[str, tuple[str, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = lazy_subcommands or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy_subcommands])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_subcommands:
            return self._load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def _load(self, name: str) -> click.Command:
        target, _ = self.lazy_subcommands[name]
        module_name, _, attr = target.partition(":")
        try:
            cmd = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            return _unavailable(name, target, e)
        if not isinstance(cmd, click.Command):
            return _unavailable(name, target, TypeError(f"{target} is not a click command"))
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command with the first sentence of its help, whole and wrapped (click cuts it at
        the line's end with '...', which left half of most of ours)."""
        rows: list[tuple[str, str]] = []
        names = self.list_commands(ctx)
        for name in names:
            if name in self.lazy_subcommands:
                rows.append((name, self.lazy_subcommands[name][1]))
                continue
            cmd = super().get_command(ctx, name)
            if cmd is None or cmd.hidden:
                continue
            rows.append((name, cmd.get_short_help_str(limit=_FIRST_SENTENCE_MAX)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _unavailable(name: str, target: str, error: Exception) -> click.Command:
    @click.command(
        name,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
        help=f"(not available: {error})",
    )
    def stub() -> None:
        raise CliError(
            f"`railtix {name}` is not available in this installation: importing {target} failed ({error})"
        )

    return stub


class Ctx:
    """What the group's options decided, for every subcommand."""
    def __init__(self, server: str, as_json: bool) -> None:
        self.server = server
        self.as_json = as_json


@click.group(
    cls=LazyGroup,
    lazy_subcommands=LAZY_SUBCOMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(railtix.__version__, "--version", "-V", prog_name="railtix")
@click.option(
    "--server", envvar="RAILTIX_SERVER", default=DEFAULT_SERVER, show_default=True, metavar="HOST:PORT",
    help="Server for client commands (env RAILTIX_SERVER).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the server's replies as JSON, exactly.")
@click.pass_context
def main(ctx: click.Context, server: str, as_json: bool) -> None:
    """railtix sells train seats, as China Railway's 12306 does.

    \b
    Start a server:      railtix serve
    Then, in another terminal:
      railtix register alice
      railtix login alice
      railtix search "Beijing South" "Shanghai Hongqiao"
      railtix buy G1 --from VNP --to AOH --passenger "Zhang San,110101199001011237"
    """
    ctx.obj = Ctx(server, as_json)


def _client_options(f: F) -> F:
    """``--server`` and ``--json`` also after the subcommand, where people tend to type them."""
    f = click.option("--json", "as_json", is_flag=True, default=False, help="Print the server's reply as JSON.")(f)
    f = click.option("--server", default=None, metavar="HOST:PORT", help="Server (overrides the global option).")(f)
    return f


def client_command(name: str | None = None, **attrs: Any) -> Callable[[Callable[..., Any]], click.Command]:
    """A subcommand that talks to a server: its options merged with the group's, and every
    RailtixError turned into a printed message and exit status 1."""

    def wrap(fn: Callable[..., Any]) -> click.Command:
        @functools.wraps(fn)
        def run(*args: Any, server: str | None, as_json: bool, **kwargs: Any) -> None:
            ctx = click.get_current_context()
            obj: Ctx = ctx.find_object(Ctx) or Ctx(DEFAULT_SERVER, False)
            obj = Ctx(server or obj.server, as_json or obj.as_json)
            try:
                parse_address(obj.server)
            except ValueError as e:
                raise click.BadParameter(str(e), param_hint="--server") from None
            global _invocation
            typed = obj.server != (os.environ.get("RAILTIX_SERVER") or DEFAULT_SERVER)  # hints repeat it
            _invocation = f"railtix --server {shlex.quote(obj.server)}" if typed else "railtix"
            try:
                fn(obj, *args, **kwargs)
            except RailtixError as e:
                fail(obj, e)
            finally:
                _invocation = "railtix"

        return main.command(name, **attrs)(_client_options(run))

    return wrap


def unreachable_message(e: Unreachable) -> str:
    """Nothing answered: on this machine, say how to start a server; elsewhere, that the
    address may be wrong (a mistyped host is likelier there than a stopped server)."""
    host, port = parse_address(e.address)
    try:
        ip = None if host == "localhost" else ipaddress.ip_address(host)
        local = ip is None or ip.is_loopback or ip.is_unspecified  # 0.0.0.0 reaches this machine
    except ValueError:
        local = False
    if local and port == parse_address(DEFAULT_SERVER)[1]:
        advice = "start it with `make run` or `railtix serve`"
    elif local:  # on this machine's loopback, whichever local address was typed
        advice = f"start it with `make run TCP=127.0.0.1:{port}` or `railtix serve --tcp 127.0.0.1:{port}`"
    else:
        advice = "check the address given with --server or RAILTIX_SERVER (HOST:PORT)"
    return f"cannot reach the server at {e.address} ({e.reason}) — {advice}"


def fail(obj: Ctx, e: RailtixError) -> None:
    """Print a refusal and exit 1: the message and one hint, or under --json the server's reply
    itself (a refusal made here has the same shape, with ``id`` null)."""
    if obj.as_json:
        reply = e.reply or {"id": None, "ok": False,
                            "error": {"code": e.code, "message": e.message, "retry": e.retry}}
        click.echo(msgspec.json.encode(reply))
    msg = unreachable_message(e) if isinstance(e, Unreachable) else e.message
    if not obj.as_json or isinstance(e, Unreachable):
        click.secho(f"railtix: {msg}", fg="red", err=True)
        hint = e.hint if isinstance(e, Refused) else default_hint(obj, e.code)
        if hint and not obj.as_json:
            click.echo(f"  {hint}", err=True)
    sys.exit(1)


def default_hint(obj: Ctx, code: str) -> str | None:
    """The hint for a server refusal that brought no hint of its own."""
    if code == "unauthorized":  # the saved token was refused: expired, or the database is new
        from railtix.client import config

        saved = config.login_for(server_key(obj.server))
        return f"log in again: {rx('login')} {saved.user if saved else 'USER'}"
    hint = HINTS.get(code)
    return None if hint is None else hint.format(railtix=_invocation)


# --- shared helpers ------------------------------------------------------------------------------
def server_key(server: str) -> str:
    return format_address(*parse_address(server))


@contextmanager
def connected(obj: Ctx) -> Iterator[Client]:
    from railtix.client.sync import Client

    host, port = parse_address(obj.server)
    with Client(host, port) as client:
        yield client


def token_for(obj: Ctx) -> str:
    from railtix.client import config

    login = config.login_for(server_key(obj.server))
    if login is None:
        raise Refused("unauthorized", f"not logged in to {server_key(obj.server)}",
                      hint=f"log in first: {rx('login USER')} (no account yet? {rx('register USER')})")
    return login.token


def emit(obj: Ctx, reply: dict[str, Any]) -> bool:
    """Print the reply as JSON when asked to; True when that is all there is to print."""
    if obj.as_json:
        click.echo(msgspec.json.encode(reply))
        return True
    return False


def console() -> Console:
    """Plain text (no markup: names come from the server), lines never broken by rich."""
    from rich.console import Console

    return Console(highlight=False, markup=False, emoji=False, soft_wrap=True)


def new_table(title: str | None = None) -> Table:
    """A compact table, so that orders and timetables fit an 80-column terminal."""
    from rich import box
    from rich.table import Table

    return Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True
    )


def yuan(fen: int) -> str:
    """Integer fen as 12306 shows yuan: ¥553, ¥553.5, ¥553.25."""
    whole, cents = divmod(int(fen), 100)
    if cents == 0:
        return f"¥{whole}"
    if cents % 10 == 0:
        return f"¥{whole}.{cents // 10}"
    return f"¥{whole}.{cents:02d}"


def duration(minutes: int) -> str:
    return f"{minutes // 60}h{minutes % 60:02d}m"


def clock(iso: str | None) -> str:
    """'2026-12-01T10:31:05+08:00' as '2026-12-01 10:31'."""
    return iso[:16].replace("T", " ") if iso else ""


def hold_clock(iso: str) -> str:
    """When a hold ends: the time alone when that is today in its zone (a hold lasts minutes),
    else with the date."""
    try:
        at = dt.datetime.fromisoformat(iso)
    except ValueError:
        return clock(iso)
    if at.tzinfo is not None and at.date() == dt.datetime.now(at.tzinfo).date():
        return at.strftime("%H:%M")
    return clock(iso)


def seat_label(ticket: dict[str, Any]) -> str:
    return f"{int(ticket['coach']):02d}-{ticket['seat']}"


def sale_day(text: str | None) -> str:
    """A date option: YYYY-MM-DD, 'today', 'tomorrow' or '+N' days, judged in China time.

    Without one, tomorrow: today's trains may have left, and 12306's users mostly book ahead.
    """
    from railtix.core.rides import today

    first = today(time.time())
    if text is None or text == "tomorrow":
        return (first + dt.timedelta(days=1)).isoformat()
    if text == "today":
        return first.isoformat()
    if text.startswith("+") and text[1:].isdigit():
        return (first + dt.timedelta(days=int(text[1:]))).isoformat()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            return dt.date.fromisoformat(text).isoformat()  # whether it is on sale, the server says
        except ValueError:
            pass
    raise Refused("invalid_date", f"{text!r} is not a date: give YYYY-MM-DD, today, tomorrow or +N "
                                  "(N days from today, China time)")


def station_names(reply: dict[str, Any] | None) -> dict[str, str]:
    if not reply or not reply.get("ok"):
        return {}
    return {s["code"]: s["name"] for s in reply.get("stations", [])}


def with_stations(client: Client, req: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Send ``req`` and a stations request in one round trip: the first's reply (raised when
    refused), and station names by code for printing it."""
    from railtix.client import check

    reply, stations = client.call_many([req, {"op": "stations"}])
    return check(reply), station_names(stations)


def place(code: str, names: dict[str, str]) -> str:
    return names.get(code, code)


def read_password(given: str | None, confirm: bool) -> str:
    """The password: the option, else a hidden prompt on a terminal, else one line of stdin."""
    if given is not None:
        return given
    if sys.stdin is not None and sys.stdin.isatty():
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=confirm))
    line = sys.stdin.readline() if sys.stdin is not None else ""
    password = line.rstrip("\r\n")
    if not password:
        raise click.UsageError("no password given: use --password, a terminal, or one line on stdin")
    return password


# --- account -------------------------------------------------------------------------------------
@client_command()
@click.argument("user")
@click.option("--password", default=None, help="Prompted for (hidden) when not given.")
def register(obj: Ctx, user: str, password: str | None) -> None:
    """Create an account on the server."""
    pw = read_password(password, confirm=True)
    with connected(obj) as client:
        reply = client.register(user, pw)
    if emit(obj, reply):
        return
    click.echo(f"registered {reply.get('user', user)} on {server_key(obj.server)}; now: {rx('login')} {user}")


@client_command()
@click.argument("user")
@click.option("--password", default=None, help="Prompted for (hidden) when not given.")
def login(obj: Ctx, user: str, password: str | None) -> None:
    """Log in and keep the token for this server (in a file only you can read)."""
    from railtix.client import config

    pw = read_password(password, confirm=False)
    with connected(obj) as client:
        reply = client.login(user, pw)
    path = config.remember(server_key(obj.server), reply)
    if emit(obj, reply):
        return
    until = clock(reply.get("expires"))
    click.echo(f"logged in as {reply.get('user', user)} on {server_key(obj.server)} until {until} China time "
               f"(token in {path})")


@client_command()
def logout(obj: Ctx) -> None:
    """Forget the token kept for this server.

    Protocol version 1 has no logout: the server keeps honouring the token until it expires
    (30 days after login), so a token copied elsewhere stays usable until then.
    """
    from railtix.client import config

    gone = config.forget(server_key(obj.server))
    if obj.as_json:
        click.echo(msgspec.json.encode({"ok": True, "user": gone.user if gone else None}))
    elif gone is None:
        click.echo(f"not logged in to {server_key(obj.server)}")
    else:
        click.echo(f"logged out {gone.user} from {server_key(obj.server)} (the token is forgotten here; "
                   "the server honours it until it expires)")


# --- timetable reads -----------------------------------------------------------------------------
@client_command()
@click.argument("origin", metavar="FROM")
@click.argument("destination", metavar="TO")
@click.option("--date", "date", default=None, help="YYYY-MM-DD, today, tomorrow or +N (default: tomorrow, China time).")
def search(obj: Ctx, origin: str, destination: str, date: str | None) -> None:
    """Trains from FROM to TO with seats left and prices (stations by name or code)."""
    from rich.text import Text

    day = sale_day(date)
    with connected(obj) as client:
        reply, names = with_stations(client, {"op": "search", "from": origin, "to": destination, "date": day})
    if emit(obj, reply):
        return
    trains = reply.get("trains", [])
    out = console()
    a, b = reply.get("from", origin), reply.get("to", destination)
    title = f"{place(a, names)} ({a}) → {place(b, names)} ({b}), {reply.get('date', day)}"
    if not trains:
        out.print(f"{title}: no train runs this way")
        return
    table = new_table(title)
    for col in ("Train", "Depart", "Arrive", "Time"):
        table.add_column(col, no_wrap=True)
    for cls in ("business", "first", "second"):
        table.add_column(cls.capitalize(), justify="right", no_wrap=True)
    for t in trains:
        by_class = {c["class"]: c for c in t.get("classes", [])}
        cells: list[Text | str] = []
        for cls in ("business", "first", "second"):
            c = by_class.get(cls)
            if c is None:
                cells.append(Text("—", style="dim"))
            elif c["left"] == 0:
                cells.append(Text(f"none {yuan(c['price'])}", style="dim"))
            else:
                cells.append(f"{c['left']} {yuan(c['price'])}")
        style = "dim" if t.get("departed") else ""
        number = t["train"] + (" (departed)" if t.get("departed") else "")
        table.add_row(number, t["depart"], t["arrive"], duration(t["minutes"]), *cells, style=style)
    out.print(table)
    out.print("seats left and price per ticket; buy with: "
              f"{rx('buy')} TRAIN --date {reply.get('date', day)} --from {trains[0]['from']} --to {trains[0]['to']} "
              '--passenger "Name,ID"')


@client_command()
@click.argument("filter_text", metavar="[FILTER]", required=False)
def stations(obj: Ctx, filter_text: str | None) -> None:
    """Stations with their telegraph codes; FILTER matches code or name."""
    with connected(obj) as client:
        reply = client.stations()
    rows = reply.get("stations", [])
    if filter_text:
        f = filter_text.casefold()
        rows = [s for s in rows if any(f in str(s.get(k, "")).casefold() for k in ("code", "name", "name_zh"))]
    if obj.as_json:
        click.echo(msgspec.json.encode({**reply, "stations": rows} if filter_text else reply))
        return
    if not rows:
        click.echo(f"no station matches {filter_text!r}")
        return
    table = new_table()
    table.add_column("Code", no_wrap=True)
    table.add_column("Station")
    table.add_column("中文")
    for s in rows:
        table.add_row(s["code"], s["name"], s.get("name_zh", ""))
    console().print(table)


@client_command()
@click.argument("number")
@click.option("--date", "date", default=None, help="Also show seats left for the whole way on this date.")
def train(obj: Ctx, number: str, date: str | None) -> None:
    """A train's stops and times (经停站), and seats left when --date is given."""
    day = sale_day(date) if date else None
    with connected(obj) as client:
        reply = client.train(number, day)
    if emit(obj, reply):
        return
    seats = ", ".join(f"{c} {n}" for c, n in reply.get("seats", {}).items())
    table = new_table(f"{reply['train']}, {reply.get('line', '')}")
    for col, just in (("#", "right"), ("Code", "left"), ("Station", "left"), ("Arrive", "left"),
                      ("Depart", "left"), ("km", "right")):
        table.add_column(col, justify=just, no_wrap=col != "Station")  # type: ignore[arg-type]
    for i, s in enumerate(reply.get("stops", [])):
        table.add_row(str(i), s["station"], f"{s['name']} {s.get('name_zh', '')}", s.get("arrive") or "",
                      s.get("depart") or "", str(s["km"]))
    out = console()
    out.print(table)
    out.print(f"seats on the train: {seats}")
    if "left_whole_way" in reply:
        left = ", ".join(f"{c} {n}" for c, n in reply["left_whole_way"].items())
        out.print(f"seats free for the whole way on {reply.get('date')}: {left}")


# --- orders --------------------------------------------------------------------------------------
def order_state(order: dict[str, Any]) -> str:
    """The order's status said once, with what goes with it: until when it is held, or what a
    refund gave back."""
    status = str(order["status"])
    if status == "held" and order.get("hold_until"):
        return f"held until {hold_clock(order['hold_until'])} China time"
    if status == "refunded" and order.get("refund") is not None:
        return f"refunded {yuan(order['refund'])} (fee {yuan(order.get('fee') or 0)})"
    return status


def buy_again(order: dict[str, Any] | None) -> str:
    """The command that buys the same ride again (passengers' id numbers are masked in replies,
    so they are left for the user to type)."""
    if order is None:
        return rx("buy TRAIN --from FROM --to TO --passenger \"NAME,ID\"")
    return (f"{rx('buy')} {order['train']} --date {order['date']} --from {order['from']} --to {order['to']} "
            f"--class {order['class']} --passenger \"NAME,ID\"")


def order_hint(op: str, order_id: str, order: dict[str, Any] | None) -> str | None:
    """What to do after ``op`` on an order was refused, from the state the order is in now
    (``order`` None when it could not be read: then a hint that holds whatever the state)."""
    status = None if order is None else order.get("status")
    if status == "held":
        return f"it is {order_state(order or {})}: pay with `{rx('pay')} {order_id}` or release it with " \
               f"`{rx('cancel')} {order_id}`"
    if status == "paid":
        if op == "cancel":
            return f"it is paid: a paid order is refunded instead: {rx('refund')} {order_id}"
        return None  # paying a paid order: the message says it all
    if status in ("expired", "cancelled"):
        if op == "pay":
            return f"buy again: {buy_again(order)}"
        return None  # its seats are already released; nothing is left to do
    if status is not None:
        return None  # refunded or changed: nothing is left to do
    if op == "pay":
        return f"see it with `{rx('order')} {order_id}`; to buy again: {buy_again(None)}"
    if op == "cancel":
        return f"only held orders are cancelled; a paid one is refunded: {rx('refund')} {order_id}"
    return f"see it with: {rx('order')} {order_id}"


def show_order(order: dict[str, Any], names: dict[str, str]) -> None:
    out = console()
    departs = clock(order.get("departs"))
    out.print(f"order {order['order']} — {order_state(order)}")
    out.print(
        f"{order['train']} {order['date']}: {place(order['from'], names)} ({order['from']}) → "
        f"{place(order['to'], names)} ({order['to']}), {order['class']} class, departs {departs[11:] or departs}"
    )
    table = new_table()
    for col in ("Passenger", "ID", "Coach", "Seat", "Price"):
        table.add_column(col, no_wrap=col != "Passenger", justify="right" if col == "Price" else "left")
    for t in order.get("tickets", []):
        table.add_row(t["passenger"], t.get("id_no", ""), f"{int(t['coach']):02d}", t["seat"], yuan(t["price"]))
    out.print(table)
    out.print(f"total {yuan(order['price'])}")
    if order["status"] == "held":
        out.print(f"pay with `{rx('pay')} {order['order']}` or release the seats with `{rx('cancel')} {order['order']}`")


def parse_passenger(text: str) -> dict[str, str]:
    from railtix import limits

    name, sep, id_no = text.partition(",")
    name, id_no = name.strip(), id_no.strip()
    if not sep or not name or not id_no or "," in id_no:
        raise click.BadParameter(f"{text!r} is not \"Name,ID number\" (one comma)", param_hint="--passenger")
    if not id_no.isascii() or not id_no.isalnum() or not 4 <= len(id_no) <= limits.id_no_length_max:
        raise click.BadParameter(
            f"{id_no!r} is not an id number (4 to {limits.id_no_length_max} letters and digits)",
            param_hint="--passenger",
        )
    # as printed on the document: a resident id card's X, and a passport's letters, are upper case
    return {"name": name, "id_no": id_no.upper()}


@client_command()
@click.argument("train_no", metavar="TRAIN")
@click.option("--date", "date", default=None, help="YYYY-MM-DD, today, tomorrow or +N (default: tomorrow, China time).")
@click.option("--from", "origin", required=True, help="Boarding station (code or name).")
@click.option("--to", "destination", required=True, help="Alighting station (code or name).")
@click.option("--class", "seat_class", type=click.Choice(["business", "first", "second"]), default="second",
              show_default=True)
@click.option("--passenger", "passengers", multiple=True, required=True, metavar='"NAME,ID"',
              help="A passenger; repeat for up to five.")
@click.option("--seat", "seats", multiple=True, type=click.Choice(list("ABCDF")),
              help="A wished seat letter, at most one per passenger: the letters are wishes for the "
                   "order as a whole, honoured where free, not tied to a passenger (A/F windows, C/D "
                   "aisles; first class has no B, business only A, C and F).")
@click.option("--key", default=None, help="Idempotency key, to repeat a purchase safely (default: a new one).")
def buy(obj: Ctx, train_no: str, date: str | None, origin: str, destination: str, seat_class: str,
        passengers: Sequence[str], seats: Sequence[str], key: str | None) -> None:
    """Hold seats on TRAIN for one to five passengers; pay within the hold to keep them."""
    from railtix import limits

    people = [parse_passenger(p) for p in passengers]
    if len(people) > limits.passengers_per_order_max:
        raise click.BadParameter(f"at most {limits.passengers_per_order_max} passengers per order",
                                 param_hint="--passenger")
    if len(seats) > len(people):
        raise click.BadParameter("more seat letters than passengers", param_hint="--seat")
    token = token_for(obj)
    req: dict[str, Any] = {
        "op": "buy", "token": token, "key": key, "train": train_no, "date": sale_day(date),
        "from": origin, "to": destination, "class": seat_class, "passengers": people,
    }
    if seats:
        req["seats"] = list(seats)
    with connected(obj) as client:
        reply, names = with_stations(client, req)
    if emit(obj, reply):
        return
    show_order(reply["order"], names)
    missed = seats_missed(seat_class, seats, reply["order"].get("tickets", []))
    if missed:
        console().print(missed)


def seats_missed(seat_class: str, wished: Sequence[str], tickets: Sequence[dict[str, Any]]) -> str | None:
    """A note when seat letters were wished for and not given: the server assigns seats anyway
    (as 12306 does), and ignores a letter the class does not have, so the buyer should be told."""
    from collections import Counter

    from railtix.core.timetable import LETTERS_BY_CLASS

    got = Counter(t["seat"][-1:] for t in tickets)
    short = [w for w, n in Counter(wished).items() if got[w] < n]
    if not short:
        return None
    has = LETTERS_BY_CLASS.get(seat_class, "")
    absent = [w for w in short if has and w not in has]
    taken = [w for w in short if w not in absent]
    why = []
    if absent:
        why.append(f"{seat_class}-class seats are lettered {', '.join(has)}, not {' or '.join(absent)}")
    if taken:
        why.append(f"not enough {' or '.join(taken)} seats were free on this ride")
    return f"note: {'; '.join(why)}, so some seats above are not the ones wished for"


def change_order(obj: Ctx, op: str, order_id: str, key: str | None) -> None:
    """Pay, cancel or refund; when refused for the order's state, the hint is read from it."""
    from railtix.client import check

    token = token_for(obj)
    with connected(obj) as client:
        try:
            reply, names = with_stations(client, {"op": op, "token": token, "order": order_id, "key": key})
        except RailtixError as e:
            if e.code not in ORDER_STATE_CODES or obj.as_json:
                raise
            try:
                current = check(client.call("order", token=token, order=order_id)).get("order")
            except RailtixError:
                current = None
            raise Refused(e.code, e.message, order_hint(op, order_id, current), e.reply, e.retry) from None
    if emit(obj, reply):
        return
    show_order(reply["order"], names)


_key_option = click.option("--key", default=None, help="Idempotency key, to repeat the request safely.")


def _order_id(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """An order id as typed, in the server's spelling: ids are upper-case letters and digits,
    so `eykc4svxtyi6jnvze` finds the order `EYKC4SVXTYI6JNVZE` (the server matches exactly)."""
    return value.strip().upper()


@client_command()
@click.argument("order_id", metavar="ORDER", callback=_order_id)
@_key_option
def pay(obj: Ctx, order_id: str, key: str | None) -> None:
    """Pay a held order; the seats are yours."""
    change_order(obj, "pay", order_id, key)


@client_command()
@click.argument("order_id", metavar="ORDER", callback=_order_id)
@_key_option
def cancel(obj: Ctx, order_id: str, key: str | None) -> None:
    """Cancel a held (unpaid) order and release its seats."""
    change_order(obj, "cancel", order_id, key)


@client_command()
@click.argument("order_id", metavar="ORDER", callback=_order_id)
@_key_option
def refund(obj: Ctx, order_id: str, key: str | None) -> None:
    """Refund a paid order (12306's fee tiers apply: free 8 days ahead, 20 % in the last 24 hours)."""
    change_order(obj, "refund", order_id, key)


@client_command()
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
def orders(obj: Ctx, limit: int) -> None:
    """Your orders, newest first."""
    token = token_for(obj)
    with connected(obj) as client:
        reply, names = with_stations(client, {"op": "orders", "token": token, "limit": limit})
    if emit(obj, reply):
        return
    rows = reply.get("orders", [])
    if not rows:
        click.echo(f"no orders yet; find a train with: {rx('search FROM TO')}")
        return
    out = console()
    print_orders(out, rows, names if out.width >= orders_names_width_min else None)


def order_note(o: dict[str, Any]) -> str:
    """Until when a held order is held, or what a refund gave back; else nothing."""
    if o["status"] == "held" and o.get("hold_until"):
        return f"until {hold_clock(o['hold_until'])}"
    if o.get("refund") is not None:
        return f"{yuan(o['refund'])} back, fee {yuan(o.get('fee') or 0)}"
    return ""


def print_orders(out: Console, rows: list[dict[str, Any]], names: dict[str, str] | None) -> None:
    """The orders table. With ``names`` (a wide terminal) stations are named and never broken;
    without, for 80 columns, the ride is train, day and station codes in one column. The hold
    or the refund and its fee share one note column, so the table is no wider for them."""
    table = new_table()
    table.add_column("Order", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    if names is not None:
        for col in ("Train", "Date", "From → To"):
            table.add_column(col, no_wrap=True)
    else:
        table.add_column("Ride", no_wrap=True)
    table.add_column("Seats", min_width=6)
    table.add_column("Price", justify="right", no_wrap=True)
    table.add_column("Note", min_width=11)
    for o in rows:
        if names is not None:
            ride = [o["train"], o["date"], f"{place(o['from'], names)} → {place(o['to'], names)}"]
        else:
            ride = [f"{o['train']} {o['date'][5:]} {o['from']}→{o['to']}"]
        seats = " ".join(seat_label(t) for t in o.get("tickets", []))
        table.add_row(o["order"], o["status"], *ride, seats, yuan(o["price"]), order_note(o))
    out.print(table)


@client_command()
@click.argument("order_id", metavar="ORDER", callback=_order_id)
def order(obj: Ctx, order_id: str) -> None:
    """One of your orders in full."""
    token = token_for(obj)
    with connected(obj) as client:
        reply, names = with_stations(client, {"op": "order", "token": token, "order": order_id})
    if emit(obj, reply):
        return
    show_order(reply["order"], names)


# --- server side ---------------------------------------------------------------------------------
def _database_option(f: F) -> F:
    return click.option(
        "--database", envvar="RAILTIX_DATABASE", default=DEFAULT_DATABASE, show_default=True,
        metavar="PATH|URL", help="SQLite file or postgresql:// URL (env RAILTIX_DATABASE).",
    )(f)


def _json_flag(ctx: click.Context, local: bool) -> bool:
    obj = ctx.find_object(Ctx)
    return local or bool(obj and obj.as_json)


def _is_file_database(database: str) -> bool:
    return not database.startswith(("postgresql://", "postgres://")) and database != ":memory:"


def _existing_store(database: str) -> Any:
    """The store of an existing railtix database (never creates one by accident)."""
    from railtix.store import NotRailtix, open_existing_store

    try:
        return open_existing_store(database)
    except NotRailtix as e:
        raise CliError(str(e)) from None
    except Exception as e:
        raise CliError(f"cannot open the database {database}: {e}") from None


def _read_timetable(data: bytes, source: str) -> Timetable:
    from railtix.core.timetable import Timetable, validate

    try:
        timetable = msgspec.json.decode(data, type=Timetable)
    except msgspec.DecodeError as e:
        raise CliError(f"{source} is not a railtix timetable: {e}") from None
    problems = validate(timetable)
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise CliError(f"{source} is not usable: " + "; ".join(problems[:10]) + more)
    return timetable


@main.command()
@click.option("--model", "model_name", default=None, type=click.Choice(sorted(MODELS)),
              help="Serving model (default asyncio; each is described above).")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Worker processes for the processes model; 0 means one per core.")
@click.option("--tcp", default=DEFAULT_TCP, show_default=True, metavar="HOST:PORT",
              help="Where to listen (a bare PORT means 127.0.0.1:PORT); port 0 picks a free port.")
@_database_option
@click.option("--hold-minutes", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Minutes a held order keeps its seats unpaid.")
@click.option("--timetable", "timetable_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Timetable JSON to load on first start instead of the demo.")
@click.option("--writer", type=click.Choice(["process", "thread"]), default="process", show_default=True,
              help="Where each serving process writes purchases, in every model: a child process "
                   "(the connections keep their interpreter lock to themselves), or a thread beside them.")
def serve(model_name: str | None, workers: int, tcp: str, database: str, hold_minutes: float,
          timetable_file: str | None, writer: str) -> None:
    """Run a server. It prints `railtix listening tcp://HOST:PORT` once it accepts connections."""
    import logging

    from railtix.serve import DEFAULT_MODEL, model
    from railtix.serve.options import ServeOptions, listen
    from railtix.service.service import Service, load_timetable
    from railtix.store import InUse, open_store

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    name = model_name or DEFAULT_MODEL
    try:
        host, port = parse_address(tcp)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--tcp") from None
    given = _read_timetable(Path(timetable_file).read_bytes(), timetable_file) if timetable_file else None
    if port:  # a port already taken is refused before the database is created or migrated
        try:
            listen(host, port).close()
        except OSError as e:
            raise CliError(f"cannot serve on {tcp}: {e.strerror or e}") from None

    # Load (and on first start store) the timetable here, once, before any worker starts: the
    # banner can then tell what is being sold, and workers of the processes model never race to
    # store it. An in-memory database lives only as long as its store, so it is left to the server.
    ignored = False
    counts: tuple[int, int] | None = (0, 0)
    if database == ":memory:":
        if given is None:
            from railtix.demo.timetable import demo_timetable

            given = demo_timetable()
        timetable = given
    else:
        # a server already on this SQLite file refuses us before we migrate or change it; the
        # serving model claims it again for good once it starts
        guard = None
        if _is_file_database(database):
            from railtix.store.sqlite import serving_lock

            try:
                guard = serving_lock(database.removeprefix("sqlite://"), shared=name == "processes")
            except InUse as e:
                raise CliError(str(e)) from None
        try:
            try:
                store = open_store(database)
            except Exception as e:
                raise CliError(f"cannot open the database {database}: {e}") from None
            try:
                had = store.get_timetable()
                ignored = had is not None and given is not None
                timetable = load_timetable(store, given)
                counts = _counts(store)
            except ValueError as e:
                raise CliError(str(e)) from None
            finally:
                store.close()
        finally:
            if guard is not None:
                os.close(guard)

    def ready(addresses: dict[str, tuple[str, int]]) -> None:
        h, p = addresses["tcp"][:2]
        print(f"railtix listening tcp://{h}:{p}", flush=True)
        print(banner(format_address(h, p), database, name, timetable, hold_minutes, ignored, counts,
                     railtix_command()), flush=True)

    opts = ServeOptions(tcp_host=host, tcp_port=port, database=database, workers=workers,
                        hold_minutes=hold_minutes, on_ready=ready)
    factory = functools.partial(Service.open, database, hold_minutes=hold_minutes, timetable=timetable,
                                writer_process=writer == "process")
    try:
        model(name)(factory, opts)
    except InUse as e:
        raise CliError(str(e)) from None
    except OSError as e:
        raise CliError(f"cannot serve on {tcp}: {e.strerror or e}") from None
    except KeyboardInterrupt:
        pass
    click.echo("railtix stopped", err=True)


serve.help = (serve.help or "") + "\n\n\b\nServing models (--model):\n" + "\n".join(
    textwrap.fill(text, 76, initial_indent=f"  {name:<10} ", subsequent_indent=" " * 13)
    for name, text in sorted(DESCRIPTIONS.items())
)


def _counts(store: Any) -> tuple[int, int] | None:
    """Users and orders in the database, for the banner; None when the store cannot say."""
    try:
        return store.counts()  # type: ignore[no-any-return]
    except Exception:
        return None


def railtix_command(argv0: str | None = None, scripts: str | None = None, python: str | None = None,
                    found: str | None = None, cwd: str | None = None) -> str:
    """How to type the running railtix in another terminal of this directory.

    ``railtix`` when that name finds this very program on PATH; else the program's path
    (relative when under the current directory, as ``.venv/bin/railtix`` after `make run`,
    whose venv is not activated), or ``PYTHON -m railtix`` when no ``railtix`` script is
    installed. The arguments default to this process's; tests give their own.
    """
    argv0 = sys.argv[0] if argv0 is None else argv0
    scripts = sysconfig.get_path("scripts") if scripts is None else scripts
    python = sys.executable if python is None else python
    found = shutil.which("railtix") if found is None else found
    cwd = os.getcwd() if cwd is None else cwd
    running = os.path.abspath(os.path.join(cwd, argv0)) if os.path.basename(argv0) == "railtix" else ""
    if not (running and os.path.isfile(running)):
        running = os.path.join(scripts, "railtix")
    if found and os.path.isfile(running) and os.path.realpath(found) == os.path.realpath(running):
        return "railtix"

    def shown(path: str) -> str:
        path = os.path.abspath(os.path.join(cwd, path))
        inside = os.path.relpath(path, cwd)
        return inside if not inside.startswith("..") else path

    if os.path.isfile(running):
        return shown(running)
    return f"{shown(python) if python else 'python3'} -m railtix"


def banner(address: str, database: str, model_name: str, timetable: Timetable, hold_minutes: float,
           ignored: bool, counts: tuple[int, int] | None = (0, 0), command: str = "railtix") -> str:
    """What a person starting the server wants to know next: what is served, and commands to
    try that work as typed (the venv of `make run` is not on PATH; a database with users
    needs no new one)."""
    kind = "PostgreSQL" if database.startswith(("postgresql://", "postgres://")) else "SQLite"
    where = database if not _is_file_database(database) else os.path.abspath(database)
    if kind == "PostgreSQL":
        where = database.split("@")[-1]  # never print a password
    a, b, number = _example_ride(timetable)
    names = timetable.station_by_code
    cmd = command + ("" if address == DEFAULT_SERVER else f" --server {address}")
    users, sold = counts if counts is not None else (None, None)
    held = "" if counts is None else f", {users} user{'s' * (users != 1)} and {sold} order{'s' * (sold != 1)}"
    lines = [
        f"  database   {where} ({kind}){held}",
        f"  model      {model_name}",
        f"  timetable  {len(timetable.stations)} stations, {len(timetable.trains)} trains",
        f"  holds      {hold_minutes:g} minutes",
    ]
    if ignored:
        lines.append("  note       the database already has a timetable; --timetable was ignored "
                     "(replace it with `railtix timetable import`)")
    lines.append("try, in another terminal:")
    if users == 0:
        lines += [f"  {cmd} register alice", f"  {cmd} login alice"]
    else:  # users already (or unknown): log in as one of them, or register another
        lines += [f"  {cmd} login USER    (a user of this database; a new account: register USER)"]
    lines += [
        f'  {cmd} search "{names[a].name}" "{names[b].name}"',
        f'  {cmd} buy {number} --from {a} --to {b} --passenger "Zhang San,110101199001011237"',
        "stop with Ctrl-C",
    ]
    return "\n".join(lines)


def _example_ride(timetable: Timetable) -> tuple[str, str, str]:
    g1 = timetable.train_by_number.get("G1")
    if g1 is not None and "VNP" in g1.stop_index and "AOH" in g1.stop_index:
        return "VNP", "AOH", "G1"
    t = timetable.trains[0]
    return t.stops[0].station, t.stops[-1].station, t.number


@main.command()
@_database_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def audit(ctx: click.Context, database: str, as_json: bool) -> None:
    """Check a database: no seat sold twice, and every seat map equals its orders.

    Exit status 0 when clean, 1 when anything is found, 2 when the database cannot be read (or
    holds no railtix data: the audit never creates one). Safe on a running server's database.
    """
    from railtix.store.audit import audit_database, summary

    try:
        store = _existing_store(database)
    except CliError as e:
        raise Unreadable(e.message) from None  # could not check is not "found a problem"
    try:
        report = audit_database(store)
    finally:
        store.close()
    if _json_flag(ctx, as_json):
        click.echo(msgspec.json.encode(report.to_dict()))
    else:
        for line in summary(report):
            click.echo(line)
    sys.exit(0 if report.clean else 1)


@main.group()
def timetable() -> None:
    """Export or import the timetable a database sells (JSON)."""


@timetable.command("export")
@click.argument("file", type=click.File("wb"), default="-")
@_database_option
def timetable_export(file: Any, database: str) -> None:
    """Write the database's timetable as JSON to FILE (- for stdout).

    A database that has none yet (or does not exist) exports the demo timetable that its first
    start would load, which makes a good template.
    """
    from railtix.demo.timetable import demo_timetable
    from railtix.store import open_store

    found = None
    if not _is_file_database(database) or os.path.exists(database.removeprefix("sqlite://")):
        store = open_store(database)
        try:
            found = store.get_timetable()
        finally:
            store.close()
    if found is None:
        click.echo(f"{database} has no timetable yet; exporting the demo timetable", err=True)
        found = demo_timetable()
    file.write(msgspec.json.format(msgspec.json.encode(found), indent=2) + b"\n")
    name = getattr(file, "name", "-")
    if name not in ("-", "<stdout>"):
        click.echo(f"exported {len(found.stations)} stations, {len(found.trains)} trains to {name}", err=True)


@timetable.command("import")
@click.argument("file", type=click.File("rb"))
@_database_option
def timetable_import(file: Any, database: str) -> None:
    """Replace the database's timetable with FILE (JSON), after validating it.

    Refused when the database holds orders or sold seats: they name trains, stops and seats of
    the timetable they were sold from. Restart a running server to sell from the new timetable.
    """
    from railtix.store import open_store

    timetable = _read_timetable(file.read(), getattr(file, "name", "-"))
    try:
        store = open_store(database)
    except Exception as e:
        raise CliError(f"cannot open the database {database}: {e}") from None
    try:
        has_orders = next(iter(store.all_orders()), None) is not None
        has_runs = next(iter(store.all_runs()), None) is not None
        if has_orders or has_runs:
            raise CliError(
                f"{database} already holds orders; a timetable can only be imported into a database "
                "that has sold nothing (use a new --database)"
            )
        store.put_timetable(timetable)
    finally:
        store.close()
    click.echo(f"imported {len(timetable.stations)} stations, {len(timetable.trains)} trains into {database}; "
               "restart the server to sell from it")


if __name__ == "__main__":  # pragma: no cover
    main()
