-- The live orders of a run are read only when the writer first loads the run (and by the
-- audit); orders_by_run_version(run, run_version) finds the run's orders as well, and the
-- status is checked on each. The partial index cost every purchase, payment, cancellation and
-- refund another B-tree write and every commit its pages: about 1 µs of the writer's CPU per
-- command in `railtix bench writer`.
DROP INDEX orders_live_by_run;
