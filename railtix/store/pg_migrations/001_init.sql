-- railtix schema for PostgreSQL, version 1. The same tables as SQLite's 001_init.sql.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE users (
    id      BIGSERIAL PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    pw_hash TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL
);

CREATE TABLE tokens (
    hash    BYTEA PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id),
    expires DOUBLE PRECISION NOT NULL
);

CREATE TABLE runs (
    run     TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    maps    BYTEA NOT NULL
);

CREATE TABLE orders (
    id         TEXT PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users(id),
    run        TEXT NOT NULL,
    status     TEXT NOT NULL,
    created    DOUBLE PRECISION NOT NULL,
    hold_until DOUBLE PRECISION,
    body       BYTEA NOT NULL
);
CREATE INDEX orders_by_user ON orders(user_id, created);
CREATE INDEX orders_live_by_run ON orders(run) WHERE status IN ('held', 'paid');
CREATE INDEX orders_holds ON orders(hold_until) WHERE status = 'held';

CREATE TABLE keys (
    user_id     BIGINT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    reply       BYTEA NOT NULL,
    PRIMARY KEY (user_id, key)
);
