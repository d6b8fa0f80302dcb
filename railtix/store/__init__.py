"""Persistence behind one interface: SQLite (default, also in memory) and PostgreSQL.

``open_store(url)`` picks the implementation from the database setting: a path or ``:memory:``
for SQLite, ``postgresql://…`` for PostgreSQL.
"""

from __future__ import annotations

from railtix.store.base import InUse, Store


def open_store(url: str) -> Store:
    if url.startswith(("postgresql://", "postgres://")):
        from railtix.store.postgres import PostgresStore

        return PostgresStore(url)
    from railtix.store.sqlite import SqliteStore

    return SqliteStore(url)


class NotRailtix(Exception):
    """The database named holds no railtix data (missing, empty, or something else's)."""


def open_existing_store(url: str) -> Store:
    """The store of a database that already holds railtix's tables, for tools that only read it
    (the audits): it never creates a file, a schema or tables where there were none, which
    ``open_store`` would. Raises NotRailtix otherwise, and what the driver raises when the
    database cannot be reached."""
    if url.startswith(("postgresql://", "postgres://")):
        import psycopg

        from railtix.store.postgres import split_url

        conninfo, schema = split_url(url)
        with psycopg.connect(conninfo, connect_timeout=10) as conn:
            found = conn.execute(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = 'orders'",
                (schema or "public",),
            ).fetchone()
        if found is None:
            raise NotRailtix(f"no railtix tables in schema {schema or 'public'} of {conninfo}")
    elif url != ":memory:":
        import os
        import sqlite3

        path = url.removeprefix("sqlite://")
        if not os.path.isfile(path):
            raise NotRailtix(f"no database at {path}")
        try:
            lite = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                found = lite.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'orders'"
                ).fetchone()
            finally:
                lite.close()
        except sqlite3.DatabaseError as e:
            raise NotRailtix(f"{path} is not an SQLite database ({e})") from None
        if found is None:
            raise NotRailtix(f"{path} holds no railtix tables")
    return open_store(url)


__all__ = ["InUse", "NotRailtix", "Store", "open_existing_store", "open_store"]
