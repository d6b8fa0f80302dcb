"""The PostgreSQL store, for several server processes or hosts sharing one database.

The batch transaction locks what it touches in one global order — new user names and
idempotency keys (advisory locks), then orders, then runs, each sorted — with a bounded ``lock_timeout``, so two writers
never deadlock and a stuck lock surfaces as a retryable error instead of a hang (pretix's
``services/locking.py`` takes its locks the same way). Commits use ``synchronous_commit=on``.

A ``schema=NAME`` parameter in the URL keeps railtix in its own schema (created if missing),
which lets tests and several deployments share one database.
"""

from __future__ import annotations

import threading
import urllib.parse
import weakref
import zlib
from collections.abc import Iterator
from typing import Any

import msgspec
import psycopg

from railtix.core.orders import Order
from railtix.core.timetable import Timetable
from railtix.store.base import decode_order, encode_order, last_order_id, migrations

#: How long one batch waits for a lock another writer holds before giving up (retryable).
lock_timeout_ms = 5_000


def split_url(url: str) -> tuple[str, str | None]:
    """The connection string without railtix's own ``schema`` parameter, and that schema."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urllib.parse.urlencode([(k, v) for k, v in query if k != "schema"])
    if schema is not None and not schema.replace("_", "").isalnum():
        raise ValueError(f"schema name {schema!r} must be letters, digits and underscores")
    return urllib.parse.urlunsplit(parts._replace(query=rest)), schema


class _PerThread:
    """A thread's own connection; closed when the thread ends (its thread-local goes away)."""

    __slots__ = ("conn", "__weakref__")

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn


def _release(every: dict[int, Any], lock: threading.Lock, conn: psycopg.Connection[Any]) -> None:
    """Close a connection whose thread has ended (a finalizer: it must not keep the store alive)."""
    with lock:
        every.pop(id(conn), None)
    conn.close()


class PostgresStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.shared = True  # other processes or hosts may write the same database
        self._conninfo, self._schema = split_url(url)
        self._local = threading.local()
        #: every open connection by id, so that close() can close them; a thread's connection
        #: is closed and leaves when the thread ends (one server backend per live thread only)
        self._all: dict[int, psycopg.Connection[Any]] = {}
        self._all_lock = threading.Lock()
        self._migrate()

    @property
    def location(self) -> str:
        """What another process opens to reach this database."""
        return self.url

    # --- connections -----------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self._conninfo, autocommit=True)
        conn.execute("SET synchronous_commit = on")
        conn.execute(f"SET lock_timeout = {lock_timeout_ms}")
        if self._schema:
            conn.execute(f'SET search_path TO "{self._schema}"')
        with self._all_lock:
            self._all[id(conn)] = conn
        return conn

    @property
    def _conn(self) -> psycopg.Connection[Any]:
        held = getattr(self._local, "held", None)
        if held is None or held.conn.closed:
            conn = self._connect()
            held = self._local.held = _PerThread(conn)
            weakref.finalize(held, _release, self._all, self._all_lock, conn)
        return held.conn  # type: ignore[no-any-return]

    def _migrate(self) -> None:
        conn = psycopg.connect(self._conninfo, autocommit=True)
        try:
            with conn.transaction():
                # one migrator at a time, across processes
                conn.execute("SELECT pg_advisory_xact_lock(7305001)")
                if self._schema:
                    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self._schema}"')
                    conn.execute(f'SET LOCAL search_path TO "{self._schema}"')
                conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
                have = row[0] if row and row[0] is not None else 0
                for number, sql in migrations("railtix.store.pg_migrations"):
                    if number > have:
                        conn.execute(sql)
                        conn.execute("INSERT INTO schema_version(version) VALUES (%s)", (number,))
        finally:
            conn.close()

    def claim(self) -> None:
        """Nothing to claim: a PostgreSQL store is always shared, and every server of it checks
        what it cached against the database."""

    def hold_claim(self) -> int | None:
        return None

    def close(self) -> None:
        with self._all_lock:
            for conn in list(self._all.values()):
                conn.close()
            self._all.clear()

    def drop_schema(self) -> None:
        """Remove railtix's schema and everything in it (tests use this to clean up)."""
        assert self._schema, "refusing to drop the public schema"
        self.close()
        with psycopg.connect(self._conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self._schema}" CASCADE')

    # --- timetable -------------------------------------------------------------------------
    def get_timetable(self) -> Timetable | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key='timetable'").fetchone()
        return msgspec.json.decode(row[0], type=Timetable) if row else None

    def put_timetable(self, timetable: Timetable) -> None:
        self._conn.execute(
            "INSERT INTO meta(key, value) VALUES('timetable', %s) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (msgspec.json.encode(timetable),),
        )

    # --- reads -----------------------------------------------------------------------------
    def run_row(self, run: str) -> tuple[int, bytes] | None:
        return _run_row(self._conn, run)

    def run_versions(self, runs: list[str]) -> dict[str, int]:
        rows = self._conn.execute("SELECT run, version FROM runs WHERE run = ANY(%s)", (runs,))
        return {r: v for r, v in rows}

    def live_orders(self, run: str) -> list[Order]:
        return _live_orders(self._conn, run)

    def user(self, name: str) -> tuple[int, str] | None:
        return self._conn.execute("SELECT id, pw_hash FROM users WHERE name=%s", (name,)).fetchone()

    def token_user(self, token_hash: bytes, now: float) -> tuple[int, float] | None:
        row = self._conn.execute(
            "SELECT user_id, expires FROM tokens WHERE hash=%s AND expires>%s", (token_hash, now)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def stored_reply(self, user: int, key: str) -> tuple[str, bytes] | None:
        row = self._conn.execute(
            "SELECT fingerprint, reply FROM keys WHERE user_id=%s AND key=%s", (user, key)
        ).fetchone()
        return (row[0], bytes(row[1])) if row else None

    def all_keys(self) -> Iterator[tuple[int, str]]:
        """Every (user, idempotency key) stored (unused while the store counts as shared)."""
        rows = self._conn.execute("SELECT user_id, key FROM keys")
        return ((int(user), str(key)) for user, key in rows)

    def order(self, order_id: str) -> Order | None:
        row = self._conn.execute("SELECT body FROM orders WHERE id=%s", (order_id,)).fetchone()
        return decode_order(row[0]) if row else None

    def orders_of(self, user: int, limit: int) -> list[Order]:
        rows = self._conn.execute(
            "SELECT body FROM orders WHERE user_id=%s ORDER BY created DESC, id LIMIT %s", (user, limit)
        )
        return [decode_order(r[0]) for r in rows]

    def counts(self) -> tuple[int, int]:
        """Users and orders in the database (for the server's banner)."""
        row = self._conn.execute("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM orders)").fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def lapsed_holds(self, now: float) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM orders WHERE status='held' AND hold_until<=%s LIMIT 1", (now,)
        ).fetchone()
        return row is not None

    def all_orders(self) -> Iterator[Order]:
        conn = self._connect()  # its own: a server-side cursor needs a transaction
        try:
            conn.autocommit = False
            with conn.cursor(name="railtix_orders") as cur:
                cur.execute("SELECT body FROM orders ORDER BY run")
                for (body,) in cur:
                    yield decode_order(body)
        finally:
            _release(self._all, self._all_lock, conn)

    def all_runs(self) -> Iterator[tuple[str, int, bytes]]:
        rows = self._conn.execute("SELECT run, version, maps FROM runs WHERE version > 0 ORDER BY run")
        for run, version, maps in rows:
            yield run, version, bytes(maps)

    # --- the writer's transaction ------------------------------------------------------------
    def begin(self) -> PostgresTx:
        conn = self._conn
        conn.execute("BEGIN")
        return PostgresTx(conn)


def _run_row(conn: psycopg.Connection[Any], run: str) -> tuple[int, bytes] | None:
    row = conn.execute("SELECT version, maps FROM runs WHERE run=%s", (run,)).fetchone()
    # a row of version 0 is a placeholder taken only to lock a run that was never sold
    if row is None or row[0] == 0:
        return None
    return row[0], bytes(row[1])


def _live_orders(conn: psycopg.Connection[Any], run: str) -> list[Order]:
    rows = conn.execute("SELECT body FROM orders WHERE run=%s AND status IN ('held','paid')", (run,))
    return [decode_order(r[0]) for r in rows]


class PostgresTx:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def lock_names(self, names: list[str]) -> None:
        # Two writers registering the same names in opposite orders would deadlock on the
        # unique index; advisory locks on the names, sorted, taken first, order them.
        locks = sorted({zlib.crc32(n.encode()) for n in names})
        self._conn.execute("SELECT pg_advisory_xact_lock(2, x) FROM unnest(%s::int[]) AS x", ([_i32(x) for x in locks],))

    def keys(self, pairs: list[tuple[int, str]]) -> dict[tuple[int, str], tuple[str, bytes]]:
        # Absent keys cannot be locked by row, so take an advisory lock per key, sorted: two
        # writers with the same key wait for each other, and the second sees the first's reply.
        locks = sorted({zlib.crc32(f"{u}\x00{k}".encode()) for u, k in pairs})
        self._conn.execute("SELECT pg_advisory_xact_lock(1, x) FROM unnest(%s::int[]) AS x", ([_i32(x) for x in locks],))
        users = [u for u, _ in pairs]
        keys = [k for _, k in pairs]
        rows = self._conn.execute(
            "SELECT k.user_id, k.key, k.fingerprint, k.reply FROM keys k "
            "JOIN unnest(%s::bigint[], %s::text[]) AS want(user_id, key) USING (user_id, key)",
            (users, keys),
        )
        return {(u, k): (fp, bytes(reply)) for u, k, fp, reply in rows}

    def orders(self, ids: list[str]) -> dict[str, Order]:
        rows = self._conn.execute(
            "SELECT body FROM orders WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (sorted(set(ids)),)
        )
        out = {}
        for (body,) in rows:
            o = decode_order(body)
            out[o.id] = o
        return out

    def held_until_before(self, now: float, limit: int) -> list[Order]:
        rows = self._conn.execute(
            "SELECT body FROM orders WHERE status='held' AND hold_until<=%s "
            "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            (now, limit),
        )
        return [decode_order(r[0]) for r in rows]

    def lock_runs(self, runs: list[str]) -> dict[str, int]:
        runs = sorted(set(runs))
        # a placeholder row (version 0) for runs never sold, so that they can be locked too
        self._conn.execute(
            "INSERT INTO runs(run, version, maps) SELECT r, 0, ''::bytea FROM unnest(%s::text[]) AS r "
            "ORDER BY r ON CONFLICT (run) DO NOTHING",
            (runs,),
        )
        rows = self._conn.execute(
            "SELECT run, version FROM runs WHERE run = ANY(%s) ORDER BY run FOR UPDATE", (runs,)
        )
        return {r: v for r, v in rows if v > 0}

    def run_row(self, run: str) -> tuple[int, bytes] | None:
        return _run_row(self._conn, run)

    def live_orders(self, run: str) -> list[Order]:
        return _live_orders(self._conn, run)

    def last_order_id(self) -> str | None:
        return last_order_id(self._conn.execute)

    def put_orders(self, new: list[tuple[Order, int]], changed: list[tuple[Order, int | None]]) -> None:
        with self._conn.cursor() as cur:
            if new:
                cur.executemany(
                    "INSERT INTO orders(id, user_id, run, status, created, hold_until, body, run_version) "
                    "VALUES(%s,%s,%s,%s,%s,%s,%s,%s)",
                    [(o.id, o.user, o.run, o.status.value, o.created, o.hold_until, encode_order(o), v) for o, v in new],
                )
            moved = [(o.status.value, o.hold_until, encode_order(o), v, o.id) for o, v in changed if v is not None]
            if moved:
                cur.executemany(
                    "UPDATE orders SET status=%s, hold_until=%s, body=%s, run_version=%s WHERE id=%s", moved
                )
            kept = [(o.status.value, o.hold_until, encode_order(o), o.id) for o, v in changed if v is None]
            if kept:
                cur.executemany("UPDATE orders SET status=%s, hold_until=%s, body=%s WHERE id=%s", kept)

    def orders_since(self, run: str, version: int) -> list[Order]:
        rows = self._conn.execute(
            "SELECT body FROM orders WHERE run=%s AND run_version>%s", (run, version)
        )
        return [decode_order(r[0]) for r in rows]

    def put_runs(self, rows: list[tuple[str, int, bytes]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO runs(run, version, maps) VALUES(%s,%s,%s) "
                "ON CONFLICT(run) DO UPDATE SET version=excluded.version, maps=excluded.maps",
                rows,
            )

    def put_keys(self, rows: list[tuple[int, str, str, bytes]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany("INSERT INTO keys(user_id, key, fingerprint, reply) VALUES(%s,%s,%s,%s)", rows)

    def add_user(self, name: str, pw_hash: str, now: float) -> int | None:
        row = self._conn.execute(
            "INSERT INTO users(name, pw_hash, created) VALUES(%s,%s,%s) "
            "ON CONFLICT (name) DO NOTHING RETURNING id",
            (name, pw_hash, now),
        ).fetchone()
        return row[0] if row else None

    def add_token(self, token_hash: bytes, user: int, expires: float) -> None:
        self._conn.execute(
            "INSERT INTO tokens(hash, user_id, expires) VALUES(%s,%s,%s)", (token_hash, user, expires)
        )

    def commit(self) -> None:
        self._conn.execute("COMMIT")

    def rollback(self) -> None:
        if self._conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self._conn.execute("ROLLBACK")


def _i32(x: int) -> int:
    """An unsigned 32-bit hash as the signed int PostgreSQL's advisory locks take."""
    return x - (1 << 32) if x >= 1 << 31 else x
