"""Every bound in railtix, in one place, each with the reason it has the value it has.

Names carry the qualifier last (``line_size_max``), as TigerBeetle's style asks, so that related
limits sort together. Over a limit a client gets a typed error (``too_large``, ``busy``,
``timeout``) or flow control (the server stops reading until replies drain), never a hang.
"""

from __future__ import annotations

# --- wire -----------------------------------------------------------------------------------
#: One TCP request line. The largest honest request (a buy for five passengers with long names)
#: is under 2 KiB; 64 KiB leaves room for any client and bounds what one line can cost us.
line_size_max = 64 * 1024

#: Requests one connection may have in flight (read, not yet answered). Beyond it the server
#: reads no more from that connection until replies have gone out (flow control): pipelining
#: deeper gains a client nothing but queue space that belongs to others.
in_flight_per_connection_max = 256

#: Bytes of replies we buffer for a client that does not read. Past this we stop reading its
#: requests (flow control by a high-water mark, as uvicorn does) until it drains.
write_buffer_high = 256 * 1024
write_buffer_low = 64 * 1024

#: Seconds a closing connection's unsent replies may wait for the client to read them before
#: the connection is cut: a client that never reads must not hold its buffers for ever.
close_grace_s = 10.0

#: A client must send a full request line within this many seconds of connecting or of its
#: previous line, or it is closed with ``timeout``: silent or trickling clients cannot hold a
#: slot forever (the lecture's ``asyncio.wait_for``).
read_deadline_s = 30.0

#: Connections the kernel may hold for us before we accept them (Linux caps it at
#: net.core.somaxconn, 4096 by default). A rush is a thousand clients connecting in the same
#: instant; with asyncio's default of 100 the rest had their handshakes dropped and retried after
#: 1, 3 and 7 seconds. asyncio's create_server listens again with its own backlog, so every
#: serving model passes this one.
listen_backlog = 4096

#: Open connections per server process. Each costs a few KiB of buffers; 10,000 fits the bench's
#: largest rush and stays far under the default file-descriptor limits we raise to.
connections_max = 10_000

# --- domain ---------------------------------------------------------------------------------
#: Passengers per order, as on 12306.
passengers_per_order_max = 5

#: Days of presale, starting today, as on 12306 (15 days).
presale_days = 15

#: Minutes a held order keeps its seats before it expires unpaid (12306 gives 30 minutes).
hold_minutes_default = 30

#: Length of names, id numbers, user names, passwords and idempotency keys.
name_length_max = 64
id_no_length_max = 32
user_length_max = 32
password_length_min = 8
password_length_max = 128
key_length_max = 64

#: Orders returned by one ``orders`` request, newest first.
orders_page_max = 200

# --- service --------------------------------------------------------------------------------
#: Commands waiting for the writer, all connections together. A full queue means the disk is
#: behind; we answer ``busy`` (retryable) rather than let memory and latency grow without bound.
writer_queue_max = 50_000

#: Commands applied in one store transaction. Large enough that one fsync serves thousands of
#: purchases; small enough that a batch's transaction stays within tens of milliseconds.
writer_batch_max = 2048

#: Batches on their way to the writer process at once. With one, the writer process waits for
#: the serving process to read each reply and send the next batch; with more, the next batch is
#: already in the pipe when a commit ends, and batches that queued up there are written together
#: in one transaction. A few are enough for that; every one more is a batch more that a writer
#: process lost mid-write would answer "may or may not have been applied".
writer_batches_in_flight = 3

#: Orders the writer keeps in memory, the last it made, as last committed, while no other
#: process writes the store: a pay or cancel usually follows its buy within seconds, and reading
#: the order back and decoding it was about a tenth of a pay's CPU time. About 1 KB each: 16 MB at
#: most, and a rush of 14,000 orders is paid entirely from memory.
writer_orders_kept = 16_384

#: Bytes each pipe to and from the writer process holds (Linux's default is 64 KiB, and 1 MiB
#: is the most an unprivileged process may ask for). A batch of 2,048 commands is about 1 MB
#: on the wire and its reply about as much; smaller ones pass in one write and one read.
writer_pipe_bytes = 1 << 20

#: How old, at most, the seat counts a search or ``train`` shows may be when other processes
#: write the store too (the processes model's workers, any PostgreSQL deployment): a worker
#: checks its cached runs against the stored versions once per this many seconds, with one
#: query for all of them, instead of once per search. A purchase through the worker itself
#: shows at once; the writer always decides on the stored state. 12306 itself shows seat counts
#: that lag by seconds; a twentieth of a second keeps a search from costing a database round trip.
shared_views_max_age_s = 0.05

#: Rides (train, date, from, to) whose checks are remembered until the train leaves or the day
#: turns. A rush asks about a few rides thousands of times; the whole timetable on sale is about
#: 156 trains x 15 days x a few dozen station pairs, so past this the memo simply starts afresh.
ride_memo_max = 100_000

#: The filter of idempotency keys that may have a stored reply (railtix/service/keyfilter.py):
#: 2^27 bits (16 MiB) and 7 hashes. Past ``key_filter_load_max`` stored keys (about half a
#: minute of reading at start) the server does without it and reads the store for each check.
key_filter_bits = 1 << 27
key_filter_hashes = 7
key_filter_load_max = 5_000_000

#: Password hashes computed at once, and waiting. scrypt is deliberately slow (~50 ms and 16 MiB
#: each); unbounded, a login storm would take all memory and CPU.
auth_workers = 2
auth_queue_max = 256

#: Seconds between sweeps that expire unpaid holds.
sweep_interval_s = 5.0

#: Holds expired per sweep batch, so a sweep never becomes one enormous transaction.
sweep_batch_max = 2048

#: Tokens are valid this many days after login.
token_days = 30

#: Seconds the server waits for in-flight work when asked to stop before it forces.
shutdown_grace_s = 10.0

# --- serving models -------------------------------------------------------------------------
#: Connection threads of the ``threads`` model. Each reserves a stack and takes turns at the GIL;
#: past a few hundred, switching between them costs more than it serves, and the lecture's point
#: (a thread per client does not scale) is made. Over it a new client gets ``busy`` and is closed.
threads_max = 512

#: Worker processes of the ``processes`` model. Each has its own writer, store connections and
#: run cache; SQLite admits one writer at a time, so processes beyond the cores only add lock
#: waits. 64 covers any machine we run on and keeps a typo from forking thousands.
workers_max = 64

#: A worker that dies within ``worker_boot_s`` of its start is failing to boot (bad database,
#: missing file). The supervisor then waits before the next try, doubling from the first value
#: up to the second, so a broken setup does not fork in a tight loop; a worker that lived longer
#: is replaced at once.
worker_boot_s = 1.0
worker_restart_backoff_min_s = 0.1
worker_restart_backoff_max_s = 5.0

#: How often a blocked serving loop (a connection thread waiting for its socket or for a commit,
#: an accept loop, the supervisor) looks up to see whether it was told to stop. Short enough that
#: a stop feels immediate, long enough to cost nothing while idle.
serve_tick_s = 0.2

#: On a stop, how long a server goes on reading before it closes its connections, so that the
#: requests clients sent before the signal (already in the kernel's buffers) are answered rather
#: than reset.
shutdown_read_s = 0.05

#: A worker process checks this often that its supervisor is still alive (besides asking Linux
#: for PR_SET_PDEATHSIG), so that a worker whose supervisor was killed stops by itself.
orphan_check_s = 1.0
