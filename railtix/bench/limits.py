"""The load generator's own bounds, each with its reason (qualifier last, as in railtix.limits).

They bound the generator, not the server, which is why they live beside it rather than in
``railtix/limits.py``: changing them never changes what a server accepts.
"""

from __future__ import annotations

#: Connections one bench drives (the issue's largest rush). The server's own
#: ``connections_max`` is the same number, and the two processes together stay under the usual
#: 20,000 file descriptors.
clients_max = 10_000

#: Requests in flight per connection. Beyond its own ``in_flight_per_connection_max`` (256) the
#: server stops reading a connection until replies drain; a deeper pipeline only queues longer.
pipeline_max = 256

#: Load processes. More than twice the cores only adds context switches.
processes_max = 64

#: Users the bench registers. Password hashing costs ~50-90 ms on the server, two at a time,
#: and each user costs two (register, login): 20 users are about 2-4 s of setup before the clock
#: starts. Connections share their tokens; the server's writer is fair per connection, not per
#: user, so more users would change nothing it measures.
users_max = 20

#: Connects attempted at once while opening the clients' connections (the server's listen
#: backlog is 4096; staying well under it keeps connects from being dropped and retried).
connects_at_once_max = 256

#: Seconds a connect may take before the client is counted as failed.
connect_timeout_s = 10.0

#: Seconds the bench waits, after the duration, for replies to requests already sent. Past it,
#: what is still unanswered is counted under ``unanswered`` and the connections are closed.
drain_timeout_s = 10.0

#: The highest ``--rate``: several times what one machine's loopback carries (a null server here
#: answers about 60,000 requests/s); above it the open loop's ticker would spend its time
#: making tickets for requests it can never send.
rate_max = 200_000

#: Requests per second one bench process is assumed to reach in the closed loop, to size what it
#: encodes ahead (the null server's ceiling on this 2-core machine, about 40,000).
requests_per_s_guess = 40_000

#: Requests encoded per process before the clock starts. Encoding is done ahead so that the
#: measured loop only writes bytes; past this budget steps are encoded as they are needed.
prepared_per_worker_max = 200_000

#: Buys a rush encodes ahead, per seat-leg of its runs (every seat of every run, times the legs
#: between its stops). However fast the server, a rush sends about as many buys as its runs have
#: to sell: 0.44-0.51 per seat-leg over the seeds measured. Sized by the duration alone, a
#: 1,000-client rush encoded 200,000 buys (5 s before the clock started on a slow day) to send
#: 35,000-50,000, and spent its last seconds skipping the rest, prepared on runs given up; a
#: client that runs out draws its next buys as it goes, among the runs still on sale.
rush_steps_per_seat_leg = 0.6

#: The rush gives up a (run, class) when ``sold_out_share_min`` of its last ``sold_out_window``
#: buys were refused ``sold_out``: random segments keep finding an odd free leg long after a
#: run is, for a buyer, sold out, and a rush that chased them would measure refusals.
sold_out_window = 200
sold_out_share_min = 0.95

#: Seconds a server the bench starts may take to print its address (first start loads the demo
#: timetable and runs migrations).
server_start_timeout_s = 60.0

#: Seconds a server the bench started gets to stop after SIGTERM before it is killed.
server_stop_timeout_s = 30.0

#: Seconds the setup (register, login, timetable checks) may take in all.
setup_timeout_s = 300.0

#: Width of one bucket of the timeline (throughput over time), in seconds. A rush may sell out
#: in three or four seconds: whole-second buckets would draw it as three points.
tick_s = 0.25

#: Seconds of one bench run's timeline kept in buckets (a soak longer than this still runs;
#: its later seconds are folded into the last bucket).
timeline_seconds_max = 86_400

#: Points of the latency-over-time curves at most, over a run and its drain: a run of up to
#: 17 s gets one per timeline bucket, a longer one a point per several. Each point goes back
#: from a load process as one compressed histogram per operation (a few hundred bytes to a few
#: KB), so a day-long soak's curves cost what a 30-second run's do.
latency_points_max = 120

#: Lines of audit findings kept in reports; counts are always exact.
audit_details_max = 20
