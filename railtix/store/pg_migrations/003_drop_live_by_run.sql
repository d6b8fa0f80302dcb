-- As SQLite's migration 4: the live orders of a run are read only when a writer first loads the
-- run (and by the audit), and orders_by_run_version(run, run_version) finds the run's orders as
-- well; the partial index cost every order written another index entry.
DROP INDEX IF EXISTS orders_live_by_run;
