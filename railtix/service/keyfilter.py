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

import hashlib
from collections.abc import Iterable

from railtix import limits


class KeyFilter:
    def __init__(self, bits: int = limits.key_filter_bits, hashes: int = limits.key_filter_hashes) -> None:
        assert bits > 0 and bits & (bits - 1) == 0, "a power of two"
        self._mask = bits - 1
        self._hashes = hashes
        self._bits = bytearray(bits // 8)
        self.added = 0

    def _positions(self, user: int, key: str) -> list[int]:
        digest = hashlib.blake2b(f"{user}\x00{key}".encode(), digest_size=16).digest()
        h1 = int.from_bytes(digest[:8], "little")
        h2 = int.from_bytes(digest[8:], "little") | 1
        mask = self._mask
        return [(h1 + i * h2) & mask for i in range(self._hashes)]

    def add(self, user: int, key: str) -> None:
        bits = self._bits
        for p in self._positions(user, key):
            bits[p >> 3] |= 1 << (p & 7)
        self.added += 1

    def may_exist(self, user: int, key: str) -> bool:
        bits = self._bits
        return all(bits[p >> 3] & (1 << (p & 7)) for p in self._positions(user, key))



def load(pairs: Iterable[tuple[int, str]], at_most: int = limits.key_filter_load_max) -> KeyFilter | None:
    """A filter of the stored keys, or None when there are more than ``at_most`` of them."""
    found = KeyFilter()
    for n, (user, key) in enumerate(pairs):
        if n >= at_most:
            return None
        found.add(user, key)
    return found
