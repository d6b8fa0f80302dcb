-- Idempotency keys move to a table with a rowid: replies are appended in the order they are
-- written, and only the small (user_id, key) index takes a random insert. With the key and its
-- reply in one WITHOUT ROWID table every key landed on a random page holding only a few
-- replies, and every batch rewrote about one whole page per command into the WAL.
CREATE TABLE keys_log (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    reply       BLOB NOT NULL
);
INSERT INTO keys_log(user_id, key, fingerprint, reply) SELECT user_id, key, fingerprint, reply FROM keys;
DROP TABLE keys;
ALTER TABLE keys_log RENAME TO keys;
CREATE UNIQUE INDEX keys_by_user ON keys(user_id, key);
