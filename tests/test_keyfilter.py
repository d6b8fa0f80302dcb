"""The key filter never says "not stored" of a stored key, and says it of nearly every new one."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from railtix.service import keyfilter
from railtix.service.keyfilter import KeyFilter


@given(st.sets(st.tuples(st.integers(1, 10**6), st.text(min_size=1, max_size=64)), max_size=200))
def test_no_stored_key_is_ever_called_new(pairs: set[tuple[int, str]]) -> None:
    f = KeyFilter(bits=1 << 12)  # small on purpose: many collisions, still no false "new"
    f.add_many(list(pairs))
    assert all(f.may_exist(user, key) for user, key in pairs)


@given(st.lists(st.tuples(st.integers(-(10**12), 10**12), st.text(max_size=40)), max_size=100))
def test_a_batch_sets_the_bits_its_keys_probe(pairs: list[tuple[int, str]]) -> None:
    """``add_many`` computes the positions in numpy; ``may_exist`` probes them in Python. Every
    position of every key must be set, and nothing else: exactly the bits of the seven probes."""
    f = KeyFilter(bits=1 << 16)
    f.add_many(pairs)
    want = bytearray(len(f._bits))
    for user, key in pairs:
        h1, h2 = hash((user, key)) & (2**64 - 1), hash((key, user)) | 1  # double hashing
        for i in range(7):
            p = (h1 + i * h2) & ((1 << 16) - 1)
            want[p >> 3] |= 1 << (p & 7)
    assert f._bits == want
    assert all(f.may_exist(user, key) for user, key in pairs)


def test_new_keys_are_almost_all_known_new() -> None:
    f = KeyFilter(bits=1 << 20)
    f.add_many([(i % 20, f"101-{i}-1") for i in range(20_000)])
    maybes = sum(f.may_exist(i % 20, f"101-{i}-2") for i in range(20_000))
    assert maybes < 20  # 20,000 keys in 2^20 bits: about one in 10,000 is a false "maybe"


def test_load_gives_up_past_its_bound() -> None:
    pairs = [(1, f"k{i}") for i in range(10)]
    assert keyfilter.load(iter(pairs), at_most=9) is None
    loaded = keyfilter.load(iter(pairs), at_most=10)
    assert loaded is not None and all(loaded.may_exist(u, k) for u, k in pairs)


def test_a_restarted_service_knows_the_keys_stored_before(make_service: Any, clock: Any) -> None:
    from conftest import SessionClient

    svc = make_service()
    c = SessionClient(svc)
    tok = c.login("alice")
    date = clock.date(2)
    c.ok(op="buy", token=tok, key="before", train="G1", date=date, **{"from": "VNP", "to": "AOH"},
                 **{"class": "business"}, passengers=[{"name": "甲", "id_no": "11010119900000000X"}])
    svc.stop()
    again = make_service()
    assert again._keys is not None and again._keys.may_exist(_user(again, "alice"), "before")
    assert not again._keys.may_exist(_user(again, "alice"), "never-sent")


def _user(svc: Any, name: str) -> int:
    row = svc.store.user(name)
    assert row is not None
    return int(row[0])
