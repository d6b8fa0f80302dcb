"""The readers' cache of committed seat maps (railtix/service/runs.py), against a stub store."""

from __future__ import annotations

from conftest import tiny_train

from railtix.core.inventory import RunState
from railtix.service.runs import RunCache
from railtix.store.base import encode_maps

TRAIN = tiny_train()
RUN = "T1@2026-06-02"


def blob(sold: int) -> bytes:
    """The encoded maps of the tiny train with the first ``sold`` business seats sold the whole way."""
    state = RunState.empty(TRAIN, "2026-06-02")
    state.maps["business"][:sold] = 0b1111
    return encode_maps(state.maps)


class Store:
    """Stores one run at a version other processes move on."""

    shared = True

    def __init__(self) -> None:
        self.version, self.sold = 0, 0
        self.version_queries = 0

    def run_row(self, run: str) -> tuple[int, bytes] | None:
        return (self.version, blob(self.sold)) if self.version else None

    def run_versions(self, runs: list[str]) -> dict[str, int]:
        self.version_queries += 1
        return {RUN: self.version} if self.version and RUN in runs else {}


def left(cache: RunCache) -> int:
    (view,) = cache.many([(TRAIN, "2026-06-02")])
    return int((view.maps["business"] == 0).sum())


def test_a_late_publication_does_not_replace_a_newer_view() -> None:
    """This process's writer commits version 6; another process commits 7, which a reader loads;
    the publication of 6 arrives only then. The cache must keep 7."""
    store = Store()
    now = [0.0]
    cache = RunCache(store, {TRAIN.number: TRAIN}, max_age_s=0.05, clock=lambda: now[0])  # type: ignore[arg-type]
    store.version, store.sold = 7, 2
    assert left(cache) == 4
    cache.publish_maps([(RUN, 6, blob(1), {})])
    assert left(cache) == 4
    cache.publish_maps([(RUN, 8, blob(3), {})])  # a later commit of its own writer does replace it
    assert left(cache) == 3


def test_views_are_checked_once_per_max_age_and_stale_ones_reloaded() -> None:
    store = Store()
    now = [0.0]
    cache = RunCache(store, {TRAIN.number: TRAIN}, max_age_s=0.05, clock=lambda: now[0])  # type: ignore[arg-type]
    store.version, store.sold = 1, 1
    assert left(cache) == 5
    store.version, store.sold = 2, 4  # another process sold three more
    now[0] = 0.01
    assert left(cache) == 5 and store.version_queries == 0  # within the max age: the cache answers
    now[0] = 0.06
    assert left(cache) == 2 and store.version_queries == 1
    assert left(cache) == 2 and store.version_queries == 1


def test_an_unshared_store_is_never_asked() -> None:
    store = Store()
    store.shared = False
    cache = RunCache(store, {TRAIN.number: TRAIN}, clock=lambda: 1e9)  # type: ignore[arg-type]
    store.version, store.sold = 1, 1
    assert left(cache) == 5
    store.version, store.sold = 2, 6
    assert left(cache) == 5 and store.version_queries == 0
