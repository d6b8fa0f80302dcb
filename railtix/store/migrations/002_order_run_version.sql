-- Each order remembers the version its run had after the transaction that last wrote it, so a
-- process whose copy of a run is at version v reads only the orders written since v.
ALTER TABLE orders ADD COLUMN run_version INTEGER NOT NULL DEFAULT 0;
CREATE INDEX orders_by_run_version ON orders(run, run_version);
