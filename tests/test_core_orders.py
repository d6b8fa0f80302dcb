"""Orders: 12306's refund tiers at their exact boundaries, half-yuan rounding, and the lifecycle
table, each checked against values written out by hand (not recomputed with the code under test).
"""

from __future__ import annotations

import itertools

import pytest

from railtix.core.errors import CODES, Refusal
from railtix.core.orders import (
    LIVE,
    REFUSED,
    TRANSITIONS,
    Order,
    Status,
    Ticket,
    masked,
    next_status,
    refund_fee,
)
from railtix.core.timetable import ride_mask, round_half_yuan

DAY = 86_400.0
HOUR = 3_600.0
DEPARTS = 1_780_000_000.0  # any instant; only differences matter


# --- half-yuan rounding --------------------------------------------------------------------------
# 12306: a remainder under 2.5 jiao is dropped, 2.5 up to under 7.5 jiao counts as 5 jiao,
# 7.5 jiao and above rounds up to a whole yuan. In fen: remainders under 25 drop, 25..74 -> 50,
# 75..99 -> 100.
@pytest.mark.parametrize(
    ("fen", "rounded"),
    [
        (0, 0),
        (1, 0),
        (24, 0),
        (24.99, 0),
        (25, 50),
        (25.0, 50),
        (49, 50),
        (50, 50),
        (74, 50),
        (74.99, 50),
        (75, 100),
        (99, 100),
        (100, 100),
        (124, 100),
        (125, 150),
        (2765, 2750),  # 27.65 yuan -> 27.5
        (5530, 5550),  # 55.30 yuan -> 55.5
        (11060, 11050),  # 110.60 yuan -> 110.5
        (8745, 8750),  # 87.45 yuan -> 87.5
        (17490, 17500),  # 174.90 yuan -> 175
        (34980, 35000),  # 349.80 yuan -> 350
        (55_300, 55_300),
        (1318 * 42.0, 55_350),  # G1 second class, Beijing South-Shanghai Hongqiao: 553.56 yuan
    ],
)
def test_round_half_yuan(fen: float, rounded: int) -> None:
    assert round_half_yuan(fen) == rounded


def test_round_half_yuan_lands_on_half_yuan_and_moves_less_than_a_quarter() -> None:
    for fen in range(0, 2_000):
        r = round_half_yuan(fen)
        assert r % 50 == 0
        assert -25 < r - fen <= 25


# --- refund tiers ----------------------------------------------------------------------------
# (seconds before departure, fen kept of a 100-yuan ticket). 12306: 8 days or more before
# departure free; 48 hours or more 5 %; 24 hours or more 10 %; under 24 hours 20 %.
TIERS_100_YUAN = [
    (30 * DAY, 0),
    (8 * DAY + 1, 0),
    (8 * DAY, 0),
    (8 * DAY - 1, 500),
    (48 * HOUR + 1, 500),
    (48 * HOUR, 500),
    (48 * HOUR - 1, 1000),
    (24 * HOUR + 1, 1000),
    (24 * HOUR, 1000),
    (24 * HOUR - 1, 2000),
    (1, 2000),
    (0.001, 2000),
]


@pytest.mark.parametrize(("before", "fee"), TIERS_100_YUAN)
def test_refund_tier_boundaries(before: float, fee: int) -> None:
    assert refund_fee(10_000, DEPARTS, DEPARTS - before) == fee


@pytest.mark.parametrize("after", [0.0, 0.001, 1.0, HOUR, 3 * DAY])
def test_no_refund_at_or_after_departure(after: float) -> None:
    with pytest.raises(Refusal) as e:
        refund_fee(10_000, DEPARTS, DEPARTS + after)
    assert e.value.code == "order_not_refundable_after_departure"
    assert e.value.retry is False


@pytest.mark.parametrize(
    ("price", "before", "fee"),
    [
        (55_300, 3 * DAY, 2750),  # 5 % of 553 yuan = 27.65 -> 27.5
        (55_300, 30 * HOUR, 5550),  # 10 % = 55.30 -> 55.5
        (55_300, 2 * HOUR, 11050),  # 20 % = 110.60 -> 110.5
        (174_900, 3 * DAY, 8750),  # 5 % of 1749 yuan = 87.45 -> 87.5
        (174_900, 30 * HOUR, 17500),  # 10 % = 174.90 -> 175
        (174_900, 2 * HOUR, 35000),  # 20 % = 349.80 -> 350
        (500, 3 * DAY, 200),  # 5 % of 5 yuan = 0.25 -> 0.5, but at least 2 yuan
        (400, 3 * DAY, 200),  # 5 % of 4 yuan = 0.20 -> 0, but at least 2 yuan
        (4_000, 3 * DAY, 200),  # 5 % of 40 yuan = 2 yuan exactly
        (4_100, 3 * DAY, 200),  # 2.05 -> 2
        (6_000, 3 * DAY, 300),  # 3 yuan: above the minimum
        (500, 9 * DAY, 0),  # free eight days ahead: no minimum either
        (50, 2 * HOUR, 50),  # the minimum, capped at the ticket's price
        (150, 2 * HOUR, 150),
        (0, 2 * HOUR, 0),
    ],
)
def test_refund_fee_rounds_to_half_yuan(price: int, before: float, fee: int) -> None:
    assert refund_fee(price, DEPARTS, DEPARTS - before) == fee


def test_refund_fee_never_exceeds_price_nor_goes_negative() -> None:
    for price in range(0, 3_000, 50):  # fares are whole half-yuan
        for before in (9 * DAY, 3 * DAY, 30 * HOUR, 60.0):
            fee = refund_fee(price, DEPARTS, DEPARTS - before)
            assert 0 <= fee <= price
            assert fee % 50 == 0


# --- the lifecycle table -------------------------------------------------------------------------
EVENTS = ("pay", "cancel", "expire", "refund", "change")

#: The lifecycle as the design states it, written out independently of the code.
EXPECTED = {
    (Status.HELD, "pay"): Status.PAID,
    (Status.HELD, "cancel"): Status.CANCELLED,
    (Status.HELD, "expire"): Status.EXPIRED,
    (Status.PAID, "refund"): Status.REFUNDED,
    (Status.PAID, "change"): Status.CHANGED,
}


def test_transition_table_is_exactly_the_lifecycle() -> None:
    assert TRANSITIONS == EXPECTED


def test_every_event_has_a_registered_refusal() -> None:
    assert set(REFUSED) == set(EVENTS) == {e for _, e in TRANSITIONS}
    for code in REFUSED.values():
        assert code in CODES
        assert CODES[code][0] is False, "an illegal transition does not become legal by retrying"


def test_live_statuses() -> None:
    assert {Status.HELD, Status.PAID} == LIVE
    # every status is reachable from held, and the terminal ones have no way out
    reachable = {Status.HELD}
    for _ in Status:
        reachable |= {to for (frm, _e), to in TRANSITIONS.items() if frm in reachable}
    assert reachable == set(Status)
    for s in set(Status) - LIVE:
        assert not [e for (frm, e) in TRANSITIONS if frm is s], f"{s} should be terminal"


@pytest.mark.parametrize(("status", "event"), list(itertools.product(Status, EVENTS)))
def test_next_status_for_every_pair(status: Status, event: str) -> None:
    if (status, event) in EXPECTED:
        assert next_status(status, event) is EXPECTED[(status, event)]
    else:
        with pytest.raises(Refusal) as e:
            next_status(status, event)
        assert e.value.code == REFUSED[event]
        assert status.value in e.value.message
        # doing again what was done says so, not "cannot pay it"
        again = any(frm is not status and ev == event and to is status for (frm, ev), to in EXPECTED.items())
        assert ("already" in e.value.message) == again, e.value.message


def test_paying_a_paid_order_says_it_is_already_paid() -> None:
    with pytest.raises(Refusal) as e:
        next_status(Status.PAID, "pay", "EYKC4SVXTYI6JNVZE")
    assert e.value.message == "order EYKC4SVXTYI6JNVZE is already paid"
    with pytest.raises(Refusal) as e:
        next_status(Status.REFUNDED, "pay", "EYKC4SVXTYI6JNVZE")
    assert e.value.message == "order EYKC4SVXTYI6JNVZE is refunded; cannot pay it"


def test_refused_codes_read_right() -> None:
    assert REFUSED["pay"] == "order_not_payable"
    assert REFUSED["cancel"] == "order_not_cancellable"
    assert REFUSED["refund"] == "order_not_refundable"


# --- the order value ---------------------------------------------------------------------------
def _order(start: int, end: int, prices: list[int]) -> Order:
    return Order(
        id="E1", user=1, run="T1@2026-06-02", train="T1", date="2026-06-02", start=start, end=end,
        origin="AAA", destination="EEE", seat_class="second",
        tickets=tuple(Ticket(f"p{i}", f"ID{i:04d}", i, 3, f"01{'ABCDF'[i]}", p) for i, p in enumerate(prices)),
        status=Status.HELD, created=0.0, hold_until=1800.0, departs=DAY,
    )


@pytest.mark.parametrize(("start", "end", "mask"), [(0, 1, 0b1), (0, 4, 0b1111), (1, 3, 0b110), (3, 4, 0b1000), (2, 63, ((1 << 63) - 1) & ~0b11)])
def test_order_mask_is_the_ride_mask(start: int, end: int, mask: int) -> None:
    o = _order(start, end, [100])
    assert o.mask == mask == ride_mask(start, end)


def test_order_price_is_the_sum_of_tickets() -> None:
    assert _order(0, 4, [100, 250, 50]).price == 400
    assert _order(0, 4, [100, 250, 50]).live


@pytest.mark.parametrize(
    ("id_no", "shown"),
    [
        ("110101199001011237", "1101**********1237"),  # a resident id card: 18 characters
        ("11010119900101123", "1101*********1123"),
        ("1101011990010112345", "1101***********2345"),
        ("E1234567X", "E123*567X"),
        ("E1234567", "E******7"),  # eight or fewer (a passport): the first and the last
        ("E123", "E**3"),  # the shortest the protocol takes
    ],
)
def test_id_numbers_are_shown_masked(id_no: str, shown: str) -> None:
    assert masked(id_no) == shown


def test_id_numbers_of_the_resident_card_shape_must_carry_their_check_character() -> None:
    from railtix.core.orders import id_problem, resident_id

    good = resident_id("11010519491231002")
    assert good == "11010519491231002X"  # GB 11643's own example
    assert id_problem(good) is None
    assert id_problem(good.lower()) is not None  # X as on the card: the passenger rules compare exactly
    for i in range(17):  # any one digit mistyped is caught (a weight is never a multiple of 11)
        typo = good[:i] + str((int(good[i]) + 1) % 10) + good[i + 1:]
        assert id_problem(typo) is not None, typo
    assert id_problem(good[:17] + "7") is not None
    # other documents' numbers have other shapes and no check here
    for other in ("E12345678", "H1234567890", "1234", "11010519491231002X3", "A1010519491231002X"):
        assert id_problem(other) is None, other


def test_a_number_is_refused_with_a_lower_case_letter_or_a_wrong_check_character() -> None:
    from railtix.core.orders import id_problem, resident_id

    for fine in (resident_id("11010519491231002"), resident_id("11010119900307123"), "E12345678", "1234",
                 "1101051949123100", "12345678901234567890"):  # other lengths of digits: other documents
        assert id_problem(fine) is None, fine
    for refused in ("e12345678", "E1234567a", "11010519491231002x", "110105194912310027",
                    "11010519491231002", "1101051949123100200"):  # a digit left out, one typed twice
        assert id_problem(refused) is not None, refused


def test_the_check_character_is_gb_11643_s_weighted_sum() -> None:
    """The check reads the digits as one base-13 number; this is the standard's sum spelt out."""
    import random

    from railtix.core.orders import ID_CHECK, ID_WEIGHTS, resident_id

    rng = random.Random(11643)
    for _ in range(5_000):
        digits = "".join(rng.choice("0123456789") for _ in range(17))
        assert resident_id(digits)[17] == ID_CHECK[sum(int(d) * w for d, w in zip(digits, ID_WEIGHTS, strict=True)) % 11]

