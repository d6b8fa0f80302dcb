"""Persistence behind one interface: SQLite (default, also in memory) and PostgreSQL.

``open_store(url)`` picks the implementation from the database setting: a path or ``:memory:``
for SQLite, ``postgresql://…`` for PostgreSQL.
"""

from __future__ import annotations

from railtix.store.base import Store


def open_store(url: str) -> Store:
    if url.startswith(("postgresql://", "postgres://")):
        from railtix.store.postgres import PostgresStore

        return PostgresStore(url)
    from railtix.store.sqlite import SqliteStore

    return SqliteStore(url)


__all__ = ["Store", "open_store"]
