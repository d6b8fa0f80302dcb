"""The load generator: ticket rushes and 12306-shaped mixes, measured honestly and audited.

``railtix bench rush|mixed|soak`` drives a server over TCP protocol v1 from one or several
processes (asyncio Protocols on uvloop, pre-encoded requests, pipelining), records latency
without coordinated omission (hdrhistogram), and then audits the server's own database for
seat-segments sold twice, confirmed replies that were lost and idempotency keys that made two
orders. ``railtix bench compare`` runs the same load against several serving models, and
``--ceiling`` measures what this machine and this generator can do against a server that does
no work (``null_server``), so that every figure comes with its ceiling.

Modules: ``plan`` (what is sent, from a seed), ``load`` (sending it and timing the replies),
``setup`` (users and tokens before the clock starts), ``servers`` (servers the bench starts
itself), ``audit`` (checks from the server's data), ``report`` (tables, JSON, plots),
``compare`` and ``cli``.
"""
