-- railtix schema, version 1. Money is integer fen; times are epoch seconds.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE users (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    pw_hash TEXT NOT NULL,
    created REAL NOT NULL
);

-- Bearer tokens are stored only as SHA-256 hashes.
CREATE TABLE tokens (
    hash    BLOB PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    expires REAL NOT NULL
) WITHOUT ROWID;

-- One row per run that has ever sold a seat: its seat maps and a version bumped by every
-- transaction that touches the run, so a process knows when its cached copy is stale.
CREATE TABLE runs (
    run     TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    maps    BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE orders (
    id         TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    run        TEXT NOT NULL,
    status     TEXT NOT NULL,
    created    REAL NOT NULL,
    hold_until REAL,
    body       BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX orders_by_user ON orders(user_id, created);
CREATE INDEX orders_live_by_run ON orders(run) WHERE status IN ('held', 'paid');
CREATE INDEX orders_holds ON orders(hold_until) WHERE status = 'held';

-- Idempotency: the first reply to (user, key), and a fingerprint of the request it answered.
CREATE TABLE keys (
    user_id     INTEGER NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    reply       BLOB NOT NULL,
    PRIMARY KEY (user_id, key)
) WITHOUT ROWID;
