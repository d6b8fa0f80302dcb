"""Which idempotency keys might have a stored reply: a Bloom filter, so most need no read.

The serving side answers a hopeless ``buy`` with ``sold_out`` itself, but only after making
sure its key has no stored reply (a retry of a purchase that succeeded must get that purchase).
In a rush nearly every such key is new, and the read that proves it was a sixth of the event
loop's time. This filter says "certainly not stored" for almost all of them; "maybe" still
asks the store.

It is filled from the store at start and with every key of every batch the writer finished
(a superset is fine: a false "maybe" costs one read). Only a store that no other process writes
can be summed up this way; for a shared store, or one with more keys than
``key_filter_load_max``, there is no filter and every check reads. With 2^27 bits and 7 hashes
a "maybe" for a new key comes about once in 500 at 10 million keys and once in 20 at 20
million: the filter degrades, it is never wrong.
"""

from __future__ import annotations

from collections.abc import Iterable

from railtix import limits


class KeyFilter:
    def __init__(self, bits: int = limits.key_filter_bits, hashes: int = limits.key_filter_hashes) -> None:
        assert bits > 0 and bits & (bits - 1) == 0, "a power of two"
        self._mask = bits - 1
        self._hashes = hashes
        self._bits = bytearray(bits // 8)

    def _hashes_of(self, user: int, key: str) -> tuple[int, int]:
        # Python's own hash (SipHash, seeded per process): the filter lives and dies with this
        # process, so the seed does not matter, and it is several times cheaper than a hashlib
        # digest. Two 64-bit hashes make the k positions (double hashing).
        return hash((user, key)) & 0xFFFF_FFFF_FFFF_FFFF, hash((key, user)) | 1

    def add(self, user: int, key: str) -> None:
        h1, h2 = self._hashes_of(user, key)
        bits, mask = self._bits, self._mask
        for i in range(self._hashes):
            p = (h1 + i * h2) & mask
            bits[p >> 3] |= 1 << (p & 7)

    def may_exist(self, user: int, key: str) -> bool:
        h1, h2 = self._hashes_of(user, key)
        bits, mask = self._bits, self._mask
        for i in range(self._hashes):  # a new key usually fails on the first probe or two
            p = (h1 + i * h2) & mask
            if not bits[p >> 3] & (1 << (p & 7)):
                return False
        return True

def load(pairs: Iterable[tuple[int, str]], at_most: int = limits.key_filter_load_max) -> KeyFilter | None:
    """A filter of the stored keys, or None when there are more than ``at_most`` of them."""
    found = KeyFilter()
    for n, (user, key) in enumerate(pairs):
        if n >= at_most:
            return None
        found.add(user, key)
    return found
