"""The SQLite store: WAL, ``synchronous=FULL``, numbered migrations, one writer transaction.

SQLite has one writer at a time; ``BEGIN IMMEDIATE`` takes that lock for the whole batch, so the
runs a batch names are locked together (and therefore in a fixed order). Readers use their own
connection per thread and never wait for the writer (WAL). ``:memory:`` gives a private file in
a temporary folder, removed on close, for tests and teaching only: it is not durable.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
import tempfile
import threading
import weakref
from collections.abc import Iterator

import msgspec

from railtix.core.orders import Order
from railtix.core.timetable import Timetable
from railtix.store.base import InUse, decode_order, encode_order, last_order_id, migrations

#: How long a connection waits for another process's write lock before failing (ms). Long
#: enough for a big batch of a sibling worker, short enough that a stuck lock surfaces.
busy_timeout_ms = 10_000


def _release(every: dict[int, sqlite3.Connection], lock: threading.Lock, conn: sqlite3.Connection) -> None:
    """Close a connection whose thread has ended (a finalizer: it must not keep the store alive)."""
    with lock:
        every.pop(id(conn), None)
    conn.close()


class _PerThread:
    """A thread's own connection; closed when the thread ends (its thread-local goes away)."""

    __slots__ = ("conn", "__weakref__")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn


class SqliteStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.shared = False
        self._scratch: str | None = None
        if url == ":memory:":
            # Not durable, for tests and teaching: a private file in a temporary folder, removed
            # on close. (A shared-cache in-memory database would lock readers out while a batch
            # is open; a file in WAL mode lets them read the last commit, as they should.)
            self._scratch = tempfile.mkdtemp(prefix="railtix-memory-")
            self._target = os.path.join(self._scratch, "railtix.db")
        else:
            self._target = url.removeprefix("sqlite://")
        self._local = threading.local()
        self._lock_fd: int | None = None
        self._claim_fd: int | None = None
        #: every open connection by id, so that close() can close them; a thread's connection
        #: is closed and leaves when the thread ends
        self._all: dict[int, sqlite3.Connection] = {}
        self._all_lock = threading.Lock()
        self._migrate(self._conn)

    @property
    def location(self) -> str:
        """What another process opens to reach this database (the file, even for ``:memory:``)."""
        return self._target

    # --- connections -----------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._target, isolation_level=None, check_same_thread=False,
            timeout=busy_timeout_ms / 1000,
        )
        conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        with self._all_lock:
            self._all[id(conn)] = conn
        return conn

    @property
    def _conn(self) -> sqlite3.Connection:
        held = getattr(self._local, "held", None)
        if held is None:
            conn = self._connect()
            held = self._local.held = _PerThread(conn)
            weakref.finalize(held, _release, self._all, self._all_lock, conn)
        return held.conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            have = conn.execute("PRAGMA user_version").fetchone()[0]
            for number, sql in migrations("railtix.store.migrations"):
                if number > have:
                    for statement in sql.split(";\n"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version={number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._all_lock:
            for conn in list(self._all.values()):
                conn.close()
            self._all.clear()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
        for fd in (self._lock_fd, self._claim_fd):
            if fd is not None:
                os.close(fd)
        self._lock_fd = self._claim_fd = None

    def claim(self) -> None:
        """Hold ``serving_lock`` until close (nothing for ``:memory:``: nobody else sees it)."""
        if self._scratch is None and self._claim_fd is None:
            self._claim_fd = serving_lock(self._target, self.shared)

    def hold_claim(self) -> int | None:
        """A second descriptor of the claim, which keeps it after ``close``; the caller closes it."""
        return None if self._claim_fd is None else os.dup(self._claim_fd)

    # --- timetable -------------------------------------------------------------------------
    def get_timetable(self) -> Timetable | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key='timetable'").fetchone()
        return msgspec.json.decode(row[0], type=Timetable) if row else None

    def put_timetable(self, timetable: Timetable) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO meta(key, value) VALUES('timetable', ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (msgspec.json.encode(timetable),),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # --- reads -----------------------------------------------------------------------------
    def run_row(self, run: str) -> tuple[int, bytes] | None:
        return _run_row(self._conn, run)

    def run_versions(self, runs: list[str]) -> dict[str, int]:
        return _versions(self._conn, runs)

    def live_orders(self, run: str) -> list[Order]:
        return _live_orders(self._conn, run)

    def user(self, name: str) -> tuple[int, str] | None:
        return self._conn.execute("SELECT id, pw_hash FROM users WHERE name=?", (name,)).fetchone()

    def token_user(self, token_hash: bytes, now: float) -> tuple[int, float] | None:
        row = self._conn.execute(
            "SELECT user_id, expires FROM tokens WHERE hash=? AND expires>?", (token_hash, now)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def stored_reply(self, user: int, key: str) -> tuple[str, bytes] | None:
        row = self._conn.execute(
            "SELECT fingerprint, reply FROM keys WHERE user_id=? AND key=?", (user, key)
        ).fetchone()
        return (row[0], bytes(row[1])) if row else None

    def all_keys(self) -> Iterator[tuple[int, str]]:
        """Every (user, idempotency key) stored, in no particular order."""
        conn = self._connect()  # its own, so that a caller may read while iterating
        try:
            for user, key in conn.execute("SELECT user_id, key FROM keys"):
                yield int(user), str(key)
        finally:
            _release(self._all, self._all_lock, conn)

    def order(self, order_id: str) -> Order | None:
        row = self._conn.execute("SELECT body FROM orders WHERE id=?", (order_id,)).fetchone()
        return decode_order(row[0]) if row else None

    def orders_of(self, user: int, limit: int) -> list[Order]:
        rows = self._conn.execute(
            "SELECT body FROM orders WHERE user_id=? ORDER BY created DESC, id LIMIT ?", (user, limit)
        )
        return [decode_order(r[0]) for r in rows]

    def all_orders(self) -> Iterator[Order]:
        conn = self._connect()  # its own, so that a caller may read while iterating
        try:
            for (body,) in conn.execute("SELECT body FROM orders ORDER BY run"):
                yield decode_order(body)
        finally:
            _release(self._all, self._all_lock, conn)

    def all_runs(self) -> Iterator[tuple[str, int, bytes]]:
        conn = self._connect()
        try:
            yield from conn.execute("SELECT run, version, maps FROM runs ORDER BY run")
        finally:
            _release(self._all, self._all_lock, conn)

    def counts(self) -> tuple[int, int]:
        """Users and orders in the database (for the server's banner)."""
        row = self._conn.execute("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM orders)").fetchone()
        return int(row[0]), int(row[1])

    def lapsed_holds(self, now: float) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM orders WHERE status='held' AND hold_until<=? LIMIT 1", (now,)
        ).fetchone()
        return row is not None


    # --- the writer's transaction ------------------------------------------------------------
    def begin(self) -> SqliteTx:
        conn = self._conn
        lock = self._writer_lock()
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            if lock is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)
            raise
        return SqliteTx(conn, lock)

    def _writer_lock(self) -> int | None:
        """A file lock that queues the writers of several processes in the kernel.

        SQLite makes a writer that finds the database locked sleep and retry, with sleeps that
        grow to 100 ms: with two busy worker processes the tail latency becomes those sleeps.
        Waiting on ``flock`` instead wakes the next writer the moment the lock is free. Only
        needed when the store is shared between processes.
        """
        if not self.shared:
            return None
        if self._lock_fd is None:
            self._lock_fd = os.open(self._target + "-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
        return self._lock_fd


#: What a serving lock's file adds to its database's real path (``serving_lock``); the bench
#: finds the database of a server on this machine by it.
SERVING_LOCK_SUFFIX = "-serving.lock"


def serving_lock(path: str, shared: bool) -> int:
    """A shared or exclusive ``flock`` on ``PATH-serving.lock`` (of the file itself, however it
    is reached), as an open descriptor: held until it is closed, and dropped by the kernel when
    the process ends, however it ends. Raises InUse when another server holds it the other way,
    or when the lock file cannot be used."""
    lock = os.path.realpath(path) + SERVING_LOCK_SUFFIX
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise InUse(f"cannot open {lock}, the lock that keeps two servers off {path}: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        who = "a railtix server of another model than processes" if shared else "another railtix server"
        raise InUse(
            f"{who} is serving {path}: stop it first (a database file has one server, or only "
            "servers of the processes model)"
        ) from None
    except OSError as e:
        os.close(fd)
        raise InUse(f"cannot lock {lock}, the lock that keeps two servers off {path}: {e.strerror or e}") from None
    return fd


def _run_row(conn: sqlite3.Connection, run: str) -> tuple[int, bytes] | None:
    return conn.execute("SELECT version, maps FROM runs WHERE run=?", (run,)).fetchone()


def _versions(conn: sqlite3.Connection, runs: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in range(0, len(runs), 500):
        chunk = runs[i : i + 500]
        marks = ",".join("?" * len(chunk))
        out.update(conn.execute(f"SELECT run, version FROM runs WHERE run IN ({marks})", chunk))
    return out


def _live_orders(conn: sqlite3.Connection, run: str) -> list[Order]:
    rows = conn.execute("SELECT body FROM orders WHERE run=? AND status IN ('held','paid')", (run,))
    return [decode_order(r[0]) for r in rows]


class SqliteTx:
    """One batch: everything between BEGIN IMMEDIATE and COMMIT."""

    def __init__(self, conn: sqlite3.Connection, lock: int | None = None) -> None:
        self._conn = conn
        self._lock = lock

    def _unlock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock = None

    def lock_runs(self, runs: list[str]) -> dict[str, int]:
        # BEGIN IMMEDIATE already holds the database's one write lock
        return _versions(self._conn, runs)

    def run_row(self, run: str) -> tuple[int, bytes] | None:
        return _run_row(self._conn, run)

    def live_orders(self, run: str) -> list[Order]:
        return _live_orders(self._conn, run)

    def orders(self, ids: list[str]) -> dict[str, Order]:
        out: dict[str, Order] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for (body,) in self._conn.execute(f"SELECT body FROM orders WHERE id IN ({marks})", chunk):
                o = decode_order(body)
                out[o.id] = o
        return out

    def lock_names(self, names: list[str]) -> None:
        """Nothing to do: BEGIN IMMEDIATE already holds the database's one write lock."""

    def keys(self, pairs: list[tuple[int, str]]) -> dict[tuple[int, str], tuple[str, bytes]]:
        # one query per user and 500 keys: the primary key (user_id, key) answers it by ranges
        by_user: dict[int, list[str]] = {}
        for user, key in pairs:
            by_user.setdefault(user, []).append(key)
        out: dict[tuple[int, str], tuple[str, bytes]] = {}
        for user, keys in by_user.items():
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for key, fp, reply in self._conn.execute(
                    f"SELECT key, fingerprint, reply FROM keys WHERE user_id=? AND key IN ({marks})",
                    [user, *chunk],
                ):
                    out[(user, key)] = (fp, reply)
        return out

    def held_until_before(self, now: float, limit: int) -> list[Order]:
        rows = self._conn.execute(
            "SELECT body FROM orders WHERE status='held' AND hold_until<=? ORDER BY hold_until LIMIT ?",
            (now, limit),
        )
        return [decode_order(r[0]) for r in rows]

    def last_order_id(self) -> str | None:
        return last_order_id(self._conn.execute)

    def put_orders(self, new: list[tuple[Order, int]], changed: list[tuple[Order, int | None]]) -> None:
        # one prepared statement stepped per row: a statement of thousands of variables would
        # be compiled afresh for every batch size (measured: 35 % more per row). Each step gives
        # up the interpreter lock; in the writer process (the default) nothing else wants it.
        self._conn.executemany(
            "INSERT INTO orders(id, user_id, run, status, created, hold_until, body, run_version)"
            " VALUES (?,?,?,?,?,?,?,?)",
            [(o.id, o.user, o.run, o.status.value, o.created, o.hold_until, encode_order(o), v) for o, v in new],
        )
        moved = [(o.status.value, o.hold_until, encode_order(o), v, o.id) for o, v in changed if v is not None]
        if moved:
            self._conn.executemany(
                "UPDATE orders SET status=?, hold_until=?, body=?, run_version=? WHERE id=?", moved
            )
        # a payment leaves the run's maps as they were: its order keeps its run_version, and the
        # orders_by_run_version index is not touched (a delete and an insert per payment)
        kept = [(o.status.value, o.hold_until, encode_order(o), o.id) for o, v in changed if v is None]
        if kept:
            self._conn.executemany("UPDATE orders SET status=?, hold_until=?, body=? WHERE id=?", kept)

    def orders_since(self, run: str, version: int) -> list[Order]:
        rows = self._conn.execute(
            "SELECT body FROM orders WHERE run=? AND run_version>?", (run, version)
        )
        return [decode_order(r[0]) for r in rows]

    def put_runs(self, rows: list[tuple[str, int, bytes]]) -> None:
        self._conn.executemany(
            "INSERT INTO runs(run, version, maps) VALUES (?,?,?)"
            " ON CONFLICT(run) DO UPDATE SET version=excluded.version, maps=excluded.maps",
            rows,
        )

    def put_keys(self, rows: list[tuple[int, str, str, bytes]]) -> None:
        self._conn.executemany("INSERT INTO keys(user_id, key, fingerprint, reply) VALUES (?,?,?,?)", rows)

    def add_user(self, name: str, pw_hash: str, now: float) -> int | None:
        try:
            cur = self._conn.execute(
                "INSERT INTO users(name, pw_hash, created) VALUES(?,?,?)", (name, pw_hash, now)
            )
        except sqlite3.IntegrityError:
            return None
        return cur.lastrowid

    def add_token(self, token_hash: bytes, user: int, expires: float) -> None:
        self._conn.execute(
            "INSERT INTO tokens(hash, user_id, expires) VALUES(?,?,?)", (token_hash, user, expires)
        )

    def commit(self) -> None:
        try:
            self._conn.execute("COMMIT")
        finally:
            self._unlock()

    def rollback(self) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        finally:
            self._unlock()
