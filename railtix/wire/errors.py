"""Turning what the decoder says about a bad request into a stable error code."""

from __future__ import annotations

import msgspec

from railtix.core.errors import Refusal


def refusal_for(error: msgspec.DecodeError) -> Refusal:
    """The typed error for a line msgspec could not decode into a Request."""
    text = str(error)
    if not isinstance(error, msgspec.ValidationError):
        return Refusal("malformed_json", f"not valid JSON: {text.removeprefix('JSON is malformed: ')}")
    if text.startswith("Expected `object`") and " - at " not in text:
        return Refusal("malformed_json", "a request is one JSON object")
    if text.startswith("Object missing required field `op`"):
        return Refusal("unknown_op", "the request has no op field")
    if "- at `$.op`" in text:
        return Refusal("unknown_op", "unknown op; see the hello reply or docs/protocol.md for the list")
    if text.startswith("Object missing required field"):
        field = text.split("`")[1] if "`" in text else "a field"
        where = _where(text)
        return Refusal("missing_field", f"{where + '.' if where else ''}{field} is required")
    return Refusal("invalid_field", plain(text))


#: What a pattern in messages.py allows, in words, for the messages people read.
_PATTERNS = {
    "^[A-Za-z0-9_.@-]+$": "letters, digits and _ . @ - only",
}


def _where(text: str) -> str:
    """The field a decoder message points at, as ``passengers[0].id_no``; '' for the root."""
    if " - at `$" not in text:
        return ""
    return text.rpartition(" - at `$")[2].rstrip("`").lstrip(".")


def plain(text: str) -> str:
    """msgspec's message for a bad field, in plain words, naming the field."""
    field = _where(text) or "the request"
    what = text.partition(" - at `")[0]
    if what == "Expected `str` of length >= 1":
        return f"{field} is empty"
    if what.startswith("Expected `str` of length >= "):
        return f"{field} needs at least {what.rsplit(' ', 1)[1]} characters"
    if what.startswith("Expected `str` of length <= "):
        return f"{field} may have at most {what.rsplit(' ', 1)[1]} characters"
    if what == "Expected `array` of length >= 1":
        return f"{field} needs at least one entry"
    if what.startswith("Expected `array` of length >= "):
        return f"{field} needs at least {what.rsplit(' ', 1)[1]} entries"
    if what.startswith("Expected `array` of length <= "):
        return f"{field} may have at most {what.rsplit(' ', 1)[1]} entries"
    if what.startswith("Expected `str` matching regex "):
        pattern = what.split("'")[1] if "'" in what else ""
        return f"{field}: {_PATTERNS.get(pattern, 'characters that are not allowed')}"
    name, colon, rule = what.partition(": ")
    if colon and name.isidentifier():  # a Struct's own check (__post_init__) names its field
        return f"{field}.{name}: {rule}" if field != "the request" else what
    if what.startswith("Invalid enum value"):
        return f"{field} cannot be {what.partition('value ')[2]}"
    if what.startswith("Object contains unknown field"):
        return f"{field} has an unknown field {what.split('`')[1]}"
    if what.startswith("Expected `") and ", got `" in what:
        want, got = what.split("`")[1], what.split("`")[3]
        return f"{field} must be {_a(want)}, not {_a(got)}"
    if what.startswith("Expected `"):  # a bound on a number, e.g. "Expected `int` >= 1"
        kind, _, bound = what.removeprefix("Expected `").partition("` ")
        return f"{field} must be {_a(kind)} {bound}"
    return text


def _a(kind: str) -> str:
    names = {"str": "a string", "int": "an integer", "array": "a list", "object": "an object",
             "float": "a number", "bool": "true or false", "null": "null"}
    return names.get(kind, kind)


def request_id(line: bytes | bytearray) -> int | str | None:
    """The ``id`` of a request that failed to decode, if one can be found, to echo it."""
    try:
        obj = msgspec.json.decode(line)
    except (msgspec.DecodeError, RecursionError):
        return None
    if isinstance(obj, dict):
        rid = obj.get("id")
        if isinstance(rid, int | str) and not isinstance(rid, bool):
            return rid
    return None
