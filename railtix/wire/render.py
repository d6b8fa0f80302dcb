"""Domain objects as the JSON objects of protocol v1 (the same for TCP and HTTP)."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from railtix.core.orders import Order, masked
from railtix.core.timetable import CST, Station, Timetable


def when(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 in China Standard Time, to the second."""
    return None if ts is None else _when(ts)


@functools.lru_cache(maxsize=4096)
def _when(ts: float) -> str:
    # every order of a batch shares its created and hold_until times, and departures repeat
    return dt.datetime.fromtimestamp(ts, CST).isoformat(timespec="seconds")


def order(o: Order) -> dict[str, Any]:
    out: dict[str, Any] = {
        "order": o.id,
        "status": o.status.value,
        "train": o.train,
        "date": o.date,
        "from": o.origin,
        "to": o.destination,
        "class": o.seat_class,
        "departs": when(o.departs),
        "tickets": [
            {"passenger": t.name, "id_no": masked(t.id_no), "coach": t.coach, "seat": t.seat, "price": t.price}
            for t in o.tickets
        ],
        "price": o.price,
        "created": when(o.created),
    }
    if o.hold_until is not None:
        out["hold_until"] = when(o.hold_until)
    if o.refund is not None:
        out["refund"] = o.refund
        out["fee"] = o.fee
    return out


def station(s: Station) -> dict[str, str]:
    return {"code": s.code, "name": s.name, "name_zh": s.name_zh}


def train_stops(timetable: Timetable, number: str, hhmm: Any) -> list[dict[str, Any]]:
    t = timetable.train_by_number[number]
    rows = []
    for s in t.stops:
        st = timetable.station_by_code[s.station]
        rows.append(
            {
                "station": s.station,
                "name": st.name,
                "name_zh": st.name_zh,
                "arrive": hhmm(s.arrive) if s.arrive is not None else None,
                "depart": hhmm(s.depart) if s.depart is not None else None,
                "km": s.km,
            }
        )
    return rows
