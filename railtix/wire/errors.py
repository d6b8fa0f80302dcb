"""Turning what the decoder says about a bad request into a stable error code."""

from __future__ import annotations

import msgspec

from railtix.core.errors import Refusal


def refusal_for(error: msgspec.DecodeError) -> Refusal:
    """The typed error for a line msgspec could not decode into a Request."""
    text = str(error)
    if not isinstance(error, msgspec.ValidationError):
        return Refusal("malformed_json", f"not valid JSON: {text}")
    if text.startswith("Expected `object`") and " - at " not in text:
        return Refusal("malformed_json", "a request is one JSON object")
    if text.startswith("Object missing required field `op`"):
        return Refusal("unknown_op", "the request has no op field")
    if "- at `$.op`" in text:
        return Refusal("unknown_op", "unknown op; see the hello reply or docs/protocol.md for the list")
    if text.startswith("Object missing required field"):
        return Refusal("missing_field", text)
    return Refusal("invalid_field", text)


def request_id(line: bytes) -> int | str | None:
    """The ``id`` of a request that failed to decode, if one can be found, to echo it."""
    try:
        obj = msgspec.json.decode(line)
    except msgspec.DecodeError:
        return None
    if isinstance(obj, dict):
        rid = obj.get("id")
        if isinstance(rid, int | str) and not isinstance(rid, bool):
            return rid
    return None
