"""Numbered migrations bring an older SQLite database forward without losing what it holds."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from railtix.store.base import migrations
from railtix.store.sqlite import SqliteStore


def test_keys_written_before_migration_3_are_still_answered(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    for number, sql in migrations("railtix.store.migrations"):
        if number > 2:
            break
        conn.executescript(sql)
        conn.execute(f"PRAGMA user_version={number}")
    conn.execute("INSERT INTO users(id, name, pw_hash, created) VALUES(7, 'alice', 'x', 0)")
    conn.execute("INSERT INTO keys VALUES(7, 'k1', 'fp1', ?)", (b'{"ok":true}',))
    conn.close()

    store = SqliteStore(str(db))
    try:
        assert store.stored_reply(7, "k1") == ("fp1", b'{"ok":true}')
        assert store.stored_reply(7, "k2") is None
        version = store._conn.execute("PRAGMA user_version").fetchone()[0]
        assert version >= 3
        tx = store.begin()
        try:
            tx.put_keys([(7, "k2", "fp2", b"{}")])
            assert tx.keys([(7, "k1"), (7, "k2"), (8, "k1")]) == {(7, "k1"): ("fp1", b'{"ok":true}'), (7, "k2"): ("fp2", b"{}")}
            tx.commit()
        except BaseException:
            tx.rollback()
            raise
    finally:
        store.close()
