"""The pure domain of railtix: timetable, seat maps, orders, fares and refunds.

Nothing here touches a socket, a file, a thread, a database or the clock: time arrives as an
argument (``now``). ``tests/test_core_purity.py`` enforces it.
"""
