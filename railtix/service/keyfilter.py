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

import threading
from collections.abc import Iterable, Sequence
from itertools import islice

import numpy as np

from railtix import limits

_M64 = 0xFFFF_FFFF_FFFF_FFFF
_1, _3, _7 = np.uint64(1), np.uint64(3), np.uint64(7)

#: Stored keys loaded per ``add_many`` at start: their positions are 7 uint64s each, so a chunk
#: holds about 3 MB of arrays at once however many keys the store has.
_load_chunk = 50_000


class KeyFilter:
    def __init__(self, bits: int = limits.key_filter_bits, hashes: int = limits.key_filter_hashes) -> None:
        assert bits > 0 and bits & (bits - 1) == 0, "a power of two"
        self._mask = bits - 1
        self._hashes = hashes
        self._bits = bytearray(bits // 8)
        self._array = np.frombuffer(self._bits, dtype=np.uint8)  # the same bytes, for add_many
        self._steps = np.arange(hashes, dtype=np.uint64)
        self._mask64 = np.uint64(self._mask)
        self._lock = threading.Lock()

    def add_many(self, pairs: Sequence[tuple[int, str]]) -> None:
        """Set the bits of every pair at once: the positions in numpy (uint64 sums wrap, and
        the mask keeps the low bits, so they are ``may_exist``'s exactly), which is about a
        quarter of the cost of setting seven bits per key in Python. Every key of a finished
        batch goes through here before the batch's answers leave."""
        n = len(pairs)
        if not n:
            return
        h1 = np.fromiter((hash(p) & _M64 for p in pairs), dtype=np.uint64, count=n)
        h2 = np.fromiter(((hash((k, u)) | 1) & _M64 for u, k in pairs), dtype=np.uint64, count=n)
        at = ((h1[:, None] + self._steps * h2[:, None]) & self._mask64).ravel()
        with self._lock:  # batches answered on two threads at once must not lose each other's bits
            np.bitwise_or.at(self._array, (at >> _3).astype(np.intp), (_1 << (at & _7)).astype(np.uint8))

    def may_exist(self, user: int, key: str) -> bool:
        # Python's own hash (SipHash, seeded per process): the filter lives and dies with this
        # process, so the seed does not matter, and it is several times cheaper than a hashlib
        # digest. Two 64-bit hashes make the k positions (double hashing); add_many makes the
        # same ones.
        h1, h2 = hash((user, key)) & _M64, hash((key, user)) | 1
        bits, mask = self._bits, self._mask
        for i in range(self._hashes):  # a new key usually fails on the first probe or two
            p = (h1 + i * h2) & mask
            if not bits[p >> 3] & (1 << (p & 7)):
                return False
        return True


def load(pairs: Iterable[tuple[int, str]], at_most: int = limits.key_filter_load_max) -> KeyFilter | None:
    """A filter of the stored keys, or None when there are more than ``at_most`` of them."""
    found = KeyFilter()
    it = iter(pairs)
    seen = 0
    while chunk := list(islice(it, _load_chunk)):
        seen += len(chunk)
        if seen > at_most:
            return None
        found.add_many(chunk)
    return found
