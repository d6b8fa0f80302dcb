"""One client connection's state, whatever the serving model: codec, replies in order, flow.

A serving model feeds the bytes it reads to ``receive`` and writes what ``output`` returns. Replies
leave in request order even when a read is answered at once and an earlier purchase waits for
its commit: each request takes a slot, and ``output`` releases the ready slots at the head.
When a commit answers a slot, the writer calls the session's ``waker`` (the model's way of being
told, from another thread, that output is ready).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from railtix import limits
from railtix.core.errors import Refusal
from railtix.wire.tcp import NEED_DATA, BadRequest, BrokenFraming, LineCodec, encode_error, with_id

if TYPE_CHECKING:
    from railtix.service.batch import Command
    from railtix.service.service import Service

Waker = Callable[[list["Session"]], None]


class Session:
    __slots__ = ("service", "codec", "slots", "waker", "close_after_output", "owner", "_ready", "__weakref__")

    def __init__(self, service: Service, waker: Waker) -> None:
        self.service = service
        self.codec = LineCodec()
        self.slots: deque[bytes | Command] = deque()
        self.waker = waker
        #: set after a framing error or a timeout: write what is ready, then close
        self.close_after_output = False
        #: the serving model's own object for this connection (whatever it needs to flush)
        self.owner: Any = None
        #: bytes of answered replies in ``slots`` that ``output`` has not taken yet
        self._ready = 0

    def receive(self, data: bytes) -> int:
        """Take bytes from the client; returns how many complete requests were taken.

        At ``in_flight_per_connection_max`` requests awaiting their replies, or once
        ``write_buffer_high`` bytes of replies are ready and not yet taken by ``output``, lines
        stay in the codec's buffer (``backlog``) instead: flow control, not an error. (Without
        the second bound, 256 pipelined requests for 200-order lists would build 50 MB of
        replies in one call.) The serving model stops reading while the session is ``full`` and,
        after writing ``output()``, calls ``receive(b"")`` to take the lines held back.
        """
        codec, slots = self.codec, self.slots
        codec.receive_data(data)
        lines = 0
        # ``full``, spelt out: this loop runs once per request
        while (
            not self.close_after_output
            and len(slots) < limits.in_flight_per_connection_max
            and self._ready < limits.write_buffer_high
        ):
            event = codec.next_event()
            if event is NEED_DATA:
                break
            lines += 1
            kind = type(event)
            if kind is BrokenFraming:
                self.fail(event.refusal)  # type: ignore[union-attr]
            elif kind is BadRequest:
                self.reply(encode_error(event.id, event.refusal))  # type: ignore[union-attr]
            else:
                self.service.dispatch(self, event)
            if not codec.buffered:  # the read was whole lines, all taken: no need to ask again
                break
        return lines

    @property
    def full(self) -> bool:
        """True while the session takes no more lines: as many requests await replies as one
        connection may have, or ``write_buffer_high`` bytes of replies wait for ``output``
        (behind a reply that waits for its commit, say)."""
        return len(self.slots) >= limits.in_flight_per_connection_max or self._ready >= limits.write_buffer_high

    @property
    def backlog(self) -> bool:
        """True when complete lines wait in the buffer because the session was full."""
        return not self.close_after_output and self.codec.has_line

    def reply(self, line: bytes) -> None:
        self.slots.append(line)
        self._ready += len(line)

    def wait_for(self, command: Command) -> None:
        self.slots.append(command)

    def fail(self, refusal: Refusal, rid: Any = None) -> None:
        """Answer once more and close: the stream cannot go on (framing, deadline, shutdown)."""
        self.reply(encode_error(rid, refusal))
        self.close_after_output = True

    @property
    def in_flight(self) -> int:
        return len(self.slots)

    @property
    def waiting(self) -> bool:
        """True while some request is still waiting for a commit."""
        return any(not isinstance(s, bytes) for s in self.slots)

    def output(self) -> bytes:
        """Replies ready at the head of the line, in request order."""
        slots = self.slots
        if len(slots) == 1:  # the usual case, one request in flight: nothing to join
            head = slots[0]
            if isinstance(head, bytes):
                slots.clear()
                self._ready -= len(head)
                return head
            if not head.ready:
                return b""
            assert head.body is not None
            slots.clear()
            return with_id(head.req.id if head.req is not None else None, head.body)
        out: list[bytes] = []
        while slots:
            head = slots[0]
            if isinstance(head, bytes):
                out.append(head)
                self._ready -= len(head)
            elif head.ready:
                assert head.body is not None
                out.append(with_id(head.req.id if head.req is not None else None, head.body))
            else:
                break
            slots.popleft()
        return b"".join(out)
