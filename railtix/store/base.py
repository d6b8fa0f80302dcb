"""What every store offers, and the row encodings they share.

Reads may come from any thread (each gets its own connection). Writes happen only inside a
``Tx`` opened by the one writer of the process: ``begin()`` opens it, ``lock_runs(runs)`` locks
the runs it names in sorted order, until ``commit()`` or ``rollback()``.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterator
from typing import Any, Protocol

import msgspec

from railtix.core.orders import Order
from railtix.core.seats import SeatMap, map_from_bytes, map_to_bytes
from railtix.core.timetable import Timetable, Train


def migrations(package: str) -> list[tuple[int, str]]:
    """(number, sql) of every numbered migration in ``package``, in order."""
    out = []
    for entry in importlib.resources.files(package).iterdir():
        name = entry.name
        if name.endswith(".sql"):
            out.append((int(name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(out)


_order_encoder = msgspec.msgpack.Encoder()
_order_decoder = msgspec.msgpack.Decoder(Order)
_maps_decoder = msgspec.msgpack.Decoder(dict[str, bytes])


def encode_order(order: Order) -> bytes:
    return _order_encoder.encode(order)


def decode_order(blob: bytes) -> Order:
    return _order_decoder.decode(blob)


def encode_maps(maps: dict[str, SeatMap]) -> bytes:
    return _order_encoder.encode({c: map_to_bytes(m) for c, m in maps.items()})


def decode_maps(blob: bytes, train: Train) -> dict[str, SeatMap]:
    raw = _maps_decoder.decode(blob)
    return {c: map_from_bytes(raw[c], len(seats)) for c, seats in train.seats.items()}


class Tx(Protocol):
    def lock_runs(self, runs: list[str]) -> dict[str, int]:
        """Lock the runs (sorted) for this transaction; their stored versions (absent: never sold)."""

    def run_row(self, run: str) -> tuple[int, bytes] | None: ...

    def live_orders(self, run: str) -> list[Order]: ...

    def orders(self, ids: list[str]) -> dict[str, Order]: ...

    def lock_names(self, names: list[str]) -> None:
        """Lock user names about to be registered (sorted), before any other lock."""

    def keys(self, pairs: list[tuple[int, str]]) -> dict[tuple[int, str], tuple[str, bytes]]:
        """Remembered (fingerprint, reply) of each (user, key) that has one."""

    def held_until_before(self, now: float, limit: int) -> list[Order]: ...

    def orders_since(self, run: str, version: int) -> list[Order]:
        """Orders of the run written by transactions that left it past ``version``."""

    def last_order_id(self) -> str | None:
        """The greatest order id of the current format (new ids are made above it)."""

    def put_orders(self, new: list[tuple[Order, int]], changed: list[tuple[Order, int | None]]) -> None:
        """Insert new orders and update changed ones, each with the version its run has after
        this transaction; a changed order with None keeps its stored version (a payment, which
        changes no seat: a process refreshing the run from that version has nothing to learn
        from it). Inserting an id that exists fails: ids are never reused."""

    def put_runs(self, rows: list[tuple[str, int, bytes]]) -> None: ...

    def put_keys(self, rows: list[tuple[int, str, str, bytes]]) -> None: ...

    def add_user(self, name: str, pw_hash: str, now: float) -> int | None:
        """New user's id, or None when the name is taken."""

    def add_token(self, token_hash: bytes, user: int, expires: float) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


class InUse(Exception):
    """This process may not serve the database: another railtix server serves it in a way
    that excludes this one (or the lock that tells cannot be used)."""


class Store(Protocol):
    url: str
    #: True when other processes may write the same database (then cached runs are checked).
    shared: bool

    def claim(self) -> None:
        """Declare this process a server of the database, until ``close``: alone when the store
        is not ``shared``, else beside other shared servers. Raises InUse when that conflicts
        with a server already there: a server that is not shared keeps what it wrote in memory
        (the kept orders, the key filter) and trusts that nobody else changes it."""

    def hold_claim(self) -> int | None:
        """A descriptor that keeps the claim after ``close`` until it is closed (None when
        there is nothing to hold), for a supervisor that serves through its children."""

    @property
    def location(self) -> str:
        """What another process (the writer process) opens to reach the same database."""

    def get_timetable(self) -> Timetable | None: ...

    def put_timetable(self, timetable: Timetable) -> None: ...

    def begin(self) -> Tx: ...

    def run_row(self, run: str) -> tuple[int, bytes] | None: ...

    def run_versions(self, runs: list[str]) -> dict[str, int]: ...

    def live_orders(self, run: str) -> list[Order]: ...

    def user(self, name: str) -> tuple[int, str] | None: ...

    def token_user(self, token_hash: bytes, now: float) -> tuple[int, float] | None:
        """The user of an unexpired token, and when the token expires."""

    def stored_reply(self, user: int, key: str) -> tuple[str, bytes] | None:
        """The remembered (fingerprint, reply) of a user's idempotency key, if any."""

    def all_keys(self) -> Iterator[tuple[int, str]]:
        """Every stored (user, idempotency key)."""

    def order(self, order_id: str) -> Order | None: ...

    def orders_of(self, user: int, limit: int) -> list[Order]: ...

    def counts(self) -> tuple[int, int]:
        """Users and orders in the database (for the server's banner)."""

    def lapsed_holds(self, now: float) -> bool:
        """Whether some held order's hold has run out (the sweeper's cheap check)."""

    def all_orders(self) -> Iterator[Order]: ...

    def all_runs(self) -> Iterator[tuple[str, int, bytes]]: ...

    def close(self) -> None: ...


def last_order_id(execute: Any) -> str | None:
    """The greatest time-ordered order id (SQLite and PostgreSQL alike; one index probe).

    Ids made before they were time-ordered used RFC 4648 base32, which has no '0' or '1'; the
    time-ordered ones start with 'E0' until the 23rd century. Below 'E2' are only those.
    """
    row = execute("SELECT id FROM orders WHERE id < 'E2' ORDER BY id DESC LIMIT 1").fetchone()
    return row[0] if row else None
