"""The TCP codec of protocol v1: one JSON object per line, at most ``line_size_max`` bytes.

Like h11's ``Connection``, it is fed bytes (``receive_data``) and asked for events
(``next_event``): a decoded request, a request-level error (the connection stays usable), or a
framing error after which the connection must close. It never touches a socket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from railtix import limits
from railtix.core.errors import Refusal
from railtix.wire.errors import refusal_for, request_id
from railtix.wire.messages import Request

_decoder = msgspec.json.Decoder(Request)
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class BadRequest:
    """A line that is not a valid request; answer it and carry on."""

    id: int | str | None
    refusal: Refusal


@dataclass(frozen=True, slots=True)
class BrokenFraming:
    """The byte stream cannot be split into lines any more; answer once and close."""

    refusal: Refusal


class NeedData:
    """No complete line yet."""


NEED_DATA = NeedData()

Event = Request | BadRequest | BrokenFraming | NeedData


class LineCodec:
    def __init__(self, line_size_max: int = limits.line_size_max) -> None:
        self._buf = bytearray()
        self._scan = 0  # bytes of _buf already known to hold no newline
        self._limit = line_size_max
        self.broken = False

    def receive_data(self, data: bytes) -> None:
        if not self.broken:  # after a framing error nothing more is read: the connection closes
            self._buf += data

    def next_event(self) -> Event:
        while not self.broken:
            if not self._buf:  # everything read has been taken (the usual end of a read)
                return NEED_DATA
            nl = self._buf.find(b"\n", self._scan)
            if nl < 0:
                self._scan = len(self._buf)
                if len(self._buf) > self._limit:
                    return self._break()
                return NEED_DATA
            buf = self._buf
            if nl == len(buf) - 1:  # the usual read: one whole line; taken, not copied
                line, self._buf = buf, bytearray()
                del line[nl:]
            else:
                line = buf[:nl]
                del buf[: nl + 1]
            self._scan = 0
            if nl > self._limit:
                return self._break()
            if line[:1] != b"{" and not line.strip(b" \t\r"):
                continue  # blank lines are ignored (they answer nothing)
            try:
                if not line.isascii():  # msgspec checks only the strings it keeps
                    line.decode("utf-8")
                return _decoder.decode(line)
            except msgspec.DecodeError as e:
                return BadRequest(request_id(line), refusal_for(e))
            except UnicodeDecodeError:
                return BadRequest(None, Refusal("malformed_json", "the line is not UTF-8"))
            except RecursionError:  # msgspec's bound on nesting: the line is refused, not the stream
                return BadRequest(None, Refusal("malformed_json", "the line's JSON is nested too deeply"))
        return NEED_DATA

    def _break(self) -> BrokenFraming:
        self.broken = True
        self._buf.clear()
        return BrokenFraming(Refusal("too_large", f"request line longer than {self._limit} bytes"))

    @property
    def has_line(self) -> bool:
        """Whether a complete line is buffered (not yet taken by ``next_event``)."""
        return bool(self._buf) and not self.broken and self._buf.find(b"\n") >= 0

    @property
    def buffered(self) -> int:
        return len(self._buf)


def ok_body(body: dict[str, Any]) -> bytes:
    """The JSON of a successful reply without its ``id``: what idempotency keys remember."""
    return _encoder.encode({"ok": True, **body})


def error_body(refusal: Refusal) -> bytes:
    return _encoder.encode(
        {"ok": False, "error": {"code": refusal.code, "message": refusal.message, "retry": refusal.retry}}
    )


def with_id(rid: Any, body: bytes) -> bytes:
    """A reply line: ``body`` (a JSON object) with the request's ``id`` put first."""
    return b'{"id":' + _encoder.encode(rid) + b"," + body[1:] + b"\n"


def encode_ok(rid: Any, body: dict[str, Any]) -> bytes:
    return with_id(rid, ok_body(body))


def encode_error(rid: Any, refusal: Refusal) -> bytes:
    return with_id(rid, error_body(refusal))
