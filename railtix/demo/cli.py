"""``railtix demo``: the lecture's lessons, run on railtix's own code.

The main CLI imports this group only when ``demo`` is invoked.
"""

from __future__ import annotations

import click
import msgspec

from railtix.demo import race as race_mod


@click.group()
def demo() -> None:
    """The lecture's lock lesson on the real inventory (a seat race)."""


@demo.command()
@click.option("--threads", "-k", default=8, show_default=True, type=click.IntRange(1, race_mod.threads_max),
              help="Buyer threads.")
@click.option("--seats", "-n", default=20, show_default=True, type=click.IntRange(1, 1000),
              help="Seats left on the run when the race begins.")
@click.option("--tries", default=10, show_default=True, type=click.IntRange(1, 100),
              help="Unlocked races to run, at most, until one oversells.")
@click.option("--pause", "pause_s", default=0.0, show_default=True, type=click.FloatRange(0.0, 0.01),
              help="Seconds each buyer sleeps between checking a seat and marking it (0 still yields).")
@click.option("--json", "as_json", is_flag=True, help="Print both results as JSON.")
def race(threads: int, seats: int, tries: int, pause_s: float, as_json: bool) -> None:
    """K threads buy the last N seats of a run, with the lock off (oversold) and on (exact).

    Each buyer reads the seat map, checks that a seat is free, and marks it sold: the lecture's
    `cnt += 1`, on a train. Without the lock two buyers can find the same seat free and both
    sell it; with it, every seat is sold once.
    """
    unlocked = race_mod.race_until_oversold(threads, seats, tries=tries, pause_s=pause_s)
    locked = race_mod.race(threads, seats, lock=True, pause_s=pause_s)
    if as_json:
        click.echo(msgspec.json.encode({
            "train": race_mod.TRAIN, "date": race_mod.DATE, "class": race_mod.SEAT_CLASS,
            "threads": threads, "seats": seats, "lock_off": unlocked, "lock_on": locked,
        }).decode())
        return
    show(unlocked, locked)


def show(unlocked: race_mod.RaceResult, locked: race_mod.RaceResult) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    n = unlocked.seats
    table = Table(
        title=f"{unlocked.threads} threads buy the last {n} {race_mod.SEAT_CLASS}-class seats of "
        f"{race_mod.TRAIN} {race_mod.DATE}, Beijing South → Shanghai Hongqiao",
        title_justify="left",
    )
    table.add_column("")
    table.add_column("before", justify="right")
    table.add_column("after, lock off", justify="right", style="red" if unlocked.oversold else "")
    table.add_column("after, lock on", justify="right", style="green" if not locked.oversold else "red")
    table.add_row("seats free on the map", str(n), str(unlocked.free_after), str(locked.free_after))
    table.add_row("tickets sold", "0", str(unlocked.sold), str(locked.sold))
    table.add_row("oversold by", "", str(unlocked.oversold), str(locked.oversold))
    table.add_row("seats sold more than once", "", str(len(unlocked.sold_twice)), str(len(locked.sold_twice)))
    table.add_row("overlapping orders (audit)", "", str(unlocked.overlaps), str(locked.overlaps))
    table.add_row("tickets per thread", "", _spread(unlocked.per_thread), _spread(locked.per_thread))
    console.print(table)
    if unlocked.tries > 1:
        console.print(f"(the unlocked race was run {unlocked.tries} times before it oversold)")
    if unlocked.sold_twice:
        twice = Table(title="Seats sold more than once with the lock off", title_justify="left")
        twice.add_column("coach", justify="right")
        twice.add_column("seat")
        twice.add_column("sold", justify="right")
        twice.add_column("to threads")
        for s in unlocked.sold_twice[:20]:
            twice.add_row(str(s.coach), s.seat, f"{s.times}×", ", ".join(map(str, s.buyers)))
        console.print(twice)
        if len(unlocked.sold_twice) > 20:
            console.print(f"… and {len(unlocked.sold_twice) - 20} more")
    else:
        console.print(f"No oversale in {unlocked.tries} unlocked races this time; run it again, or add --pause 0.001.")
    console.print(
        "Without the lock a buyer checks the map, is paused, and marks a seat someone else marked "
        "meanwhile. With it, check and mark are one step. railtix's server never takes this lock: "
        "one writer thread per process applies every purchase, and the database's write lock "
        "orders the processes."
    )


def _spread(counts: list[int]) -> str:
    return " ".join(map(str, counts))
