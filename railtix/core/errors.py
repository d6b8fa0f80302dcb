"""Expected refusals: values with stable codes named as sentences, each retryable or not.

A refusal is the user's business (they asked for something that cannot be), never a bug; bugs are
``assert``s. Every code here is listed with its meaning in docs/protocol.md, and
``tests/test_protocol_doc.py`` checks that the two agree.
"""

from __future__ import annotations

from typing import Final


class Refusal(Exception):
    """A request that cannot be done, with a stable ``code``. Raising one changes nothing."""

    __slots__ = ("code", "message", "retry")

    def __init__(self, code: str, message: str, retry: bool | None = None) -> None:
        assert code in CODES, f"unregistered error code {code!r}"
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry = CODES[code][0] if retry is None else retry

    def __repr__(self) -> str:
        return f"Refusal({self.code!r}, {self.message!r})"


#: code -> (retryable, meaning). The single registry of error codes.
CODES: Final[dict[str, tuple[bool, str]]] = {
    # framing and shape of the request (wire)
    "malformed_json": (False, "the line is not a JSON object"),
    "too_large": (False, "the request is larger than the line or body limit; the connection closes"),
    "unknown_op": (False, "the op field names no operation"),
    "missing_field": (False, "a required field is absent"),
    "invalid_field": (False, "a field has the wrong type or an impossible value"),
    "timeout": (False, "no complete request arrived within the read deadline; the connection closes"),
    "busy": (True, "the server is at a capacity limit; try again shortly"),
    "shutting_down": (True, "the server is stopping; try another or try again"),
    "internal_error": (True, "the server failed unexpectedly; nothing was changed, unless the message says the outcome is unknown"),
    # users
    "unauthorized": (False, "no valid token was given"),
    "user_exists": (False, "that user name is taken"),
    "bad_credentials": (False, "user name or password is wrong"),
    "weak_password": (False, "passwords need at least 8 characters"),
    # timetable and dates
    "unknown_station": (False, "no station has that code or name"),
    "unknown_train": (False, "no train has that number"),
    "train_does_not_stop_there": (False, "the train does not call at that station in that order"),
    "date_in_past": (False, "the date is before today (China Standard Time)"),
    "date_not_on_sale": (False, "the date is beyond the presale window"),
    "train_departed": (False, "the train has already left the boarding station"),
    "invalid_date": (False, "the date is not YYYY-MM-DD"),
    # buying
    "sold_out": (False, "not enough free seats for the whole ride"),
    "passenger_already_booked_on_this_run": (
        False,
        "a passenger already holds a live ticket on an overlapping part of this run",
    ),
    "duplicate_passenger": (False, "one passenger is listed twice in the order"),
    "key_reused_with_different_request": (
        False,
        "this idempotency key was used before for a different request",
    ),
    # orders
    "not_found": (False, "no such order among yours"),
    "hold_expired": (False, "the hold ran out before payment; the seats were released"),
    "order_not_payable": (False, "only held orders can be paid"),
    "order_not_cancellable": (False, "only held orders can be cancelled; refund a paid one"),
    "order_not_refundable": (False, "only paid orders can be refunded"),
    "order_not_refundable_after_departure": (False, "the train has left; tickets are not refundable"),
}
