"""``railtix demo race``: without the lock the run is oversold, with it never."""

from __future__ import annotations

import msgspec
import pytest
from click.testing import CliRunner

from railtix.demo.cli import demo
from railtix.demo.race import race, race_until_oversold

#: Unlocked races to try before concluding that the race cannot be shown (bounded).
TRIES = 50


def test_without_the_lock_seats_are_sold_twice() -> None:
    result = race_until_oversold(threads=8, seats=20, tries=TRIES)
    assert result.oversold > 0, f"no oversale in {TRIES} unlocked races"
    assert result.sold == 20 + result.oversold
    assert result.sold_twice and result.overlaps > 0  # the core's own audit sees the overlaps
    # every extra ticket is a second (third, ...) sale of some seat
    assert sum(s.times - 1 for s in result.sold_twice) == result.sold - (20 - result.free_after)
    assert all(s.times == len(s.buyers) >= 2 for s in result.sold_twice)
    assert sum(result.per_thread) == result.sold


@pytest.mark.parametrize("threads,seats", [(8, 20), (16, 5), (2, 60), (1, 3)])
def test_with_the_lock_every_seat_is_sold_once(threads: int, seats: int) -> None:
    for _ in range(5):
        result = race(threads, seats, lock=True)
        assert (result.sold, result.oversold, result.free_after) == (seats, 0, 0)
        assert result.sold_twice == [] and result.overlaps == 0
        assert sum(result.per_thread) == seats


def test_race_command_json() -> None:
    out = CliRunner().invoke(demo, ["race", "--threads", "8", "--seats", "20", "--tries", str(TRIES), "--json"])
    assert out.exit_code == 0, out.output
    data = msgspec.json.decode(out.output)
    assert data["lock_on"]["sold"] == 20 and data["lock_on"]["sold_twice"] == []
    assert data["lock_off"]["oversold"] > 0 and data["lock_off"]["sold_twice"]


def test_race_command_table() -> None:
    out = CliRunner().invoke(demo, ["race", "--seats", "10"])
    assert out.exit_code == 0, out.output
    assert "lock off" in out.output and "lock on" in out.output and "oversold by" in out.output


def test_race_refuses_impossible_sizes() -> None:
    with pytest.raises(ValueError):
        race(0, 20, lock=True)
    with pytest.raises(ValueError):
        race(8, 100_000, lock=True)
    assert CliRunner().invoke(demo, ["race", "--threads", "1000"]).exit_code == 2
