"""Orders, their lifecycle as one transition table, and 12306's refund tiers.

The lifecycle is data, as h11 keeps its connection states: ``TRANSITIONS[(status, event)]`` is
the next status, and anything absent is refused with the code in ``REFUSED``. Live orders (held
or paid) own seat-segments; every other status has given them back.
"""

from __future__ import annotations

import enum

import msgspec

from railtix.core.errors import Refusal
from railtix.core.timetable import round_half_yuan


class Status(enum.StrEnum):
    HELD = "held"
    PAID = "paid"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REFUNDED = "refunded"
    CHANGED = "changed"


LIVE = frozenset({Status.HELD, Status.PAID})

TRANSITIONS: dict[tuple[Status, str], Status] = {
    (Status.HELD, "pay"): Status.PAID,
    (Status.HELD, "cancel"): Status.CANCELLED,
    (Status.HELD, "expire"): Status.EXPIRED,
    (Status.PAID, "refund"): Status.REFUNDED,
    (Status.PAID, "change"): Status.CHANGED,
}

REFUSED: dict[str, str] = {
    "pay": "order_not_payable",
    "cancel": "order_not_cancellable",
    "expire": "order_not_payable",
    "refund": "order_not_refundable",
    "change": "order_not_refundable",
}


#: the status each event leads to, wherever it starts from
_DONE_BY = {event: to for (_, event), to in TRANSITIONS.items()}


def next_status(status: Status, event: str, order_id: str = "") -> Status:
    """The status after ``event``; a Refusal (and no change) when the table has no such edge."""
    try:
        return TRANSITIONS[(status, event)]
    except KeyError:
        which = f"order {order_id}" if order_id else "the order"
        if _DONE_BY.get(event) is status:  # paying a paid order, cancelling a cancelled one
            raise Refusal(REFUSED[event], f"{which} is already {status.value}") from None
        raise Refusal(REFUSED[event], f"{which} is {status.value}; cannot {event} it") from None


#: GB 11643 (ISO 7064 MOD 11-2): the weights of an 18-character id number's first 17 digits,
#: and the check character that each remainder of their weighted sum mod 11 calls for
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"


def id_problem(id_no: str) -> str | None:
    """What is wrong with a number no ticket is sold to as written, or None: a resident identity
    card's number whose last or check character is wrong; 17 or 19 digits, such a number with a
    digit left out or typed twice (no document has that shape); a lower-case letter. The
    passenger rules compare numbers exactly, so ``e12345678`` beside ``E12345678`` would be two
    people holding two seats on one train; documents print their letters in upper case, and so
    must a request. Said as the rest of a sentence about the number, all of it at once."""
    upper = id_no.upper()
    n = len(id_no)
    if n == 18 and id_no[:17].isdigit():
        last = upper[17]
        if last not in "0123456789X":
            return f"ends in {id_no[17]!r}: a resident id card's number ends in a digit or X (GB 11643)"
        if _check_character(id_no[:17]) != last:
            also = ", and write the X in upper case" if upper != id_no else ""
            return f"fails its check character (GB 11643): a digit may be mistyped{also}"
        if upper != id_no:
            return "fails its check character (GB 11643): write the X in upper case"
        return None
    if (n == 17 or n == 19) and id_no.isdigit():
        return f"has {n} digits: a resident id card's number has 18 characters"
    if upper != id_no:
        return "has letters in lower case: write them in upper case, as the document prints them"
    return None


def resident_id(digits: str) -> str:
    """17 digits with their check character: an 18-character id number that passes the check."""
    assert len(digits) == 17 and digits.isdigit(), digits
    return digits + _check_character(digits)


def _check_character(digits: str) -> str:
    # Each weight is 2^(17 - i) mod 11, and 13 = 2 (mod 11): so the weighted sum is, mod 11,
    # twice the digits read as a base-13 number, which int() reads in C (0.4 against 2.1 us
    # a number for the sum spelt out, on every passenger of every purchase).
    return ID_CHECK[2 * int(digits, 13) % 11]


def masked(id_no: str) -> str:
    """An id number as 12306 shows it: the first and last four characters (one each if short)."""
    n = len(id_no)
    if n == 18:  # a resident id card's number, nearly every passenger's
        return id_no[:4] + "**********" + id_no[14:]
    if n <= 8:
        return id_no[:1] + "*" * (n - 2) + id_no[-1:]
    return id_no[:4] + "*" * (n - 8) + id_no[-4:]


class Passenger(msgspec.Struct, frozen=True):
    name: str
    id_no: str


class Ticket(msgspec.Struct, frozen=True, array_like=True):
    name: str
    id_no: str
    seat_index: int  #: position in the class's seat map
    coach: int
    seat: str  #: row and letter, e.g. "12F"
    price: int  #: fen


class Order(msgspec.Struct, kw_only=True):
    """One order. Times are epoch seconds; money is integer fen."""

    id: str
    user: int
    run: str  #: "G1@2026-12-01"
    train: str
    date: str  #: ISO date of the run
    start: int  #: boarding stop index
    end: int  #: alighting stop index
    origin: str  #: boarding station code
    destination: str
    seat_class: str
    tickets: tuple[Ticket, ...]
    status: Status
    created: float
    hold_until: float | None = None
    departs: float  #: departure from the boarding station
    refund: int | None = None  #: fen returned on refund
    fee: int | None = None  #: fen kept on refund

    @property
    def price(self) -> int:
        return sum(t.price for t in self.tickets)

    @property
    def mask(self) -> int:
        return ((1 << self.end) - 1) ^ ((1 << self.start) - 1)

    @property
    def live(self) -> bool:
        return self.status in LIVE


DAY = 86_400.0

#: 12306's refund tiers: (time left before departure at least, percent kept).
REFUND_TIERS: tuple[tuple[float, int], ...] = (
    (8 * DAY, 0),
    (2 * DAY, 5),
    (1 * DAY, 10),
    (0.0, 20),
)


#: The smallest refund fee 12306 charges when a fee is due, in fen.
REFUND_FEE_MIN = 200


def refund_fee(price: int, departs: float, now: float) -> int:
    """Fen kept when a ticket of ``price`` is refunded at ``now``; refused after departure.

    Free eight days or more before departure, 5 % from 48 hours, 10 % from 24 hours, 20 % in the
    last day, rounded to half a yuan as 12306 rounds fees, and never less than 2 yuan when a fee
    is due (12306: 退票费最低按2元计收), nor more than the ticket.
    """
    left = departs - now
    if left <= 0:
        raise Refusal("order_not_refundable_after_departure", "the train has left; no refund")
    for at_least, percent in REFUND_TIERS:
        if left >= at_least:
            if percent == 0:
                return 0
            return min(price, max(REFUND_FEE_MIN, round_half_yuan(price * percent / 100)))
    raise AssertionError("refund tiers must end at zero")
