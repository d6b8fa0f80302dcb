"""The demo timetable: five real high-speed lines, 156 trains, built the same way every time.

Stations carry their real 12306 telegraph codes and names; stop sequences follow the real lines
and distances are the approximate cumulative kilometres of the lines. Train numbers look like
the real ones (odd away from Beijing or Shanghai or Guangzhou, even back), stop patterns mix
expresses, semi-fast and all-stop trains and short workings so that the rides of different
trains overlap, and times come from a small running-time model: cruising speed per line and
train kind, a few minutes lost to braking and starting at each stop, 2-3 minute dwells. G1 is
pinned to its real 07:00-11:29 timing. Nothing here is random, reads the clock or touches a
file: ``demo_timetable()`` is a pure function.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import NamedTuple

from railtix.core.timetable import Coach, Station, Stop, Timetable, Train

__all__ = ["demo_timetable", "demo_stats", "STATIONS", "LINES"]

# --------------------------------------------------------------------------------------------
# Stations: (telegraph code, English name, Chinese name). Codes checked against 12306's
# station_name.js unless a comment says otherwise.

_STATION_ROWS: tuple[tuple[str, str, str], ...] = (
    # Beijing–Shanghai HSR (京沪高铁)
    ("VNP", "Beijing South", "北京南"),
    ("LJP", "Langfang", "廊坊"),
    ("TIP", "Tianjin South", "天津南"),
    ("CBP", "Cangzhou West", "沧州西"),
    ("DIP", "Dezhou East", "德州东"),
    ("JGK", "Jinan West", "济南西"),
    ("TMK", "Tai'an", "泰安"),  # TAK is Taishan (泰山), the old conventional station
    ("QAK", "Qufu East", "曲阜东"),
    ("TEK", "Tengzhou East", "滕州东"),
    ("ZEK", "Zaozhuang", "枣庄"),
    ("UUH", "Xuzhou East", "徐州东"),
    ("SRH", "Suzhou East", "宿州东"),  # Suzhou in Anhui; OXH is the old Suzhou (宿州) station
    ("BMH", "Bengbu South", "蚌埠南"),
    ("EWH", "Dingyuan", "定远"),
    ("CXH", "Chuzhou", "滁州"),
    ("NKH", "Nanjing South", "南京南"),
    ("ZEH", "Zhenjiang South", "镇江南"),
    ("EXH", "Danyang North", "丹阳北"),
    ("ESH", "Changzhou North", "常州北"),
    ("WGH", "Wuxi East", "无锡东"),
    ("OHH", "Suzhou North", "苏州北"),  # Suzhou in Jiangsu
    ("KNH", "Kunshan South", "昆山南"),
    ("AOH", "Shanghai Hongqiao", "上海虹桥"),
    # Beijing–Guangzhou HSR (京广高铁), main stations
    ("BXP", "Beijing West", "北京西"),
    ("BMP", "Baoding East", "保定东"),
    ("SJP", "Shijiazhuang", "石家庄"),
    ("EDP", "Xingtai East", "邢台东"),
    ("HPP", "Handan East", "邯郸东"),
    ("ZAF", "Zhengzhou East", "郑州东"),
    ("ZLN", "Zhumadian West", "驻马店西"),
    ("WHN", "Wuhan", "武汉"),
    ("YIQ", "Yueyang East", "岳阳东"),
    ("CWQ", "Changsha South", "长沙南"),
    ("ZAQ", "Zhuzhou West", "株洲西"),
    ("HVQ", "Hengyang East", "衡阳东"),
    ("ICQ", "Chenzhou West", "郴州西"),
    ("SNQ", "Shaoguan", "韶关"),
    ("IZQ", "Guangzhou South", "广州南"),
    # Guangzhou–Shenzhen–Hong Kong XRL (广深港高铁)
    ("QSQ", "Qingsheng", "庆盛"),
    ("IUQ", "Humen", "虎门"),
    ("IMQ", "Guangmingcheng", "光明城"),
    ("IOQ", "Shenzhen North", "深圳北"),
    ("NZQ", "Futian", "福田"),
    ("XJA", "Hong Kong West Kowloon", "香港西九龙"),
    # Shanghai–Kunming HSR (沪昆高铁), Shanghai to Jinhua
    ("IMH", "Songjiang South", "松江南"),
    ("EGH", "Jinshan North", "金山北"),
    ("EAH", "Jiashan South", "嘉善南"),
    ("EPH", "Jiaxing South", "嘉兴南"),
    ("TCH", "Tongxiang", "桐乡"),
    ("EUH", "Haining West", "海宁西"),
    ("HGH", "Hangzhou East", "杭州东"),
    ("XHH", "Hangzhou South", "杭州南"),
    ("ZDH", "Zhuji", "诸暨"),
    ("YWH", "Yiwu", "义乌"),
    # JBH was the code of Jinhua West (金华西), since renamed Jinhua; not verified for the new name
    ("JBH", "Jinhua", "金华"),
    # Beijing–Harbin HSR (京哈高铁) and the Harbin–Dalian HSR north of Shenyang
    ("IFP", "Beijing Chaoyang", "北京朝阳"),
    ("IVP", "Chengde South", "承德南"),  # opened 2021; code not verified, plausible and unique
    ("SYT", "Shenyang", "沈阳"),
    ("PXT", "Tieling West", "铁岭西"),
    ("PPT", "Siping East", "四平东"),
    ("GBT", "Gongzhuling South", "公主岭南"),
    ("CRT", "Changchun West", "长春西"),
    ("DXT", "Dehui West", "德惠西"),
    ("SBB", "Shuangcheng North", "双城北"),
    ("VAB", "Harbin West", "哈尔滨西"),
)

STATIONS: tuple[Station, ...] = tuple(Station(c, n, z) for c, n, z in _STATION_ROWS)

#: Large stations where trains dwell 3 minutes instead of 2.
_HUBS = frozenset(
    {"JGK", "UUH", "NKH", "SJP", "ZAF", "WHN", "CWQ", "IZQ", "IOQ", "HGH", "SYT", "CRT"}
)


# --------------------------------------------------------------------------------------------
# Lines: stations in order with cumulative kilometres from the first one.


class _Line(NamedTuple):
    name: str
    stations: tuple[tuple[str, int], ...]
    g_speed: int  #: average cruising speed of a G train between stops, km/h


BEIJING_SHANGHAI = _Line(
    "Beijing–Shanghai HSR",
    (
        ("VNP", 0), ("LJP", 59), ("TIP", 131), ("CBP", 219), ("DIP", 327), ("JGK", 406),
        ("TMK", 465), ("QAK", 533), ("TEK", 589), ("ZEK", 627), ("UUH", 688), ("SRH", 767),
        ("BMH", 844), ("EWH", 897), ("CXH", 959), ("NKH", 1023), ("ZEH", 1087), ("EXH", 1112),
        ("ESH", 1153), ("WGH", 1210), ("OHH", 1237), ("KNH", 1268), ("AOH", 1318),
    ),
    320,
)  # fmt: skip

#: Beijing West to Guangzhou South, then on over the Hong Kong XRL for the through trains
#: (G79 to West Kowloon, G71 to Futian).
BEIJING_GUANGZHOU = _Line(
    "Beijing–Guangzhou HSR",
    (
        ("BXP", 0), ("BMP", 139), ("SJP", 281), ("EDP", 390), ("HPP", 446), ("ZAF", 693),
        ("ZLN", 904), ("WHN", 1229), ("YIQ", 1444), ("CWQ", 1591), ("ZAQ", 1643), ("HVQ", 1768),
        ("ICQ", 1918), ("SNQ", 2079), ("IZQ", 2298),
        ("IOQ", 2400), ("NZQ", 2409), ("XJA", 2439),
    ),
    330,
)  # fmt: skip

GUANGZHOU_HONG_KONG = _Line(
    "Guangzhou–Shenzhen–Hong Kong XRL",
    (("IZQ", 0), ("QSQ", 31), ("IUQ", 52), ("IMQ", 81), ("IOQ", 102), ("NZQ", 111), ("XJA", 141)),
    260,
)

SHANGHAI_KUNMING = _Line(
    "Shanghai–Kunming HSR",
    (
        ("AOH", 0), ("IMH", 40), ("EGH", 54), ("EAH", 68), ("EPH", 84), ("TCH", 111),
        ("EUH", 127), ("HGH", 159), ("XHH", 183), ("ZDH", 226), ("YWH", 266), ("JBH", 303),
    ),
    300,
)  # fmt: skip

BEIJING_HARBIN = _Line(
    "Beijing–Harbin HSR",
    (
        ("IFP", 0), ("IVP", 178), ("SYT", 698), ("PXT", 768), ("PPT", 878), ("GBT", 938),
        ("CRT", 990), ("DXT", 1050), ("SBB", 1178), ("VAB", 1232),
    ),
    320,
)  # fmt: skip

LINES: tuple[_Line, ...] = (
    BEIJING_SHANGHAI,
    BEIJING_GUANGZHOU,
    SHANGHAI_KUNMING,
    BEIJING_HARBIN,
    GUANGZHOU_HONG_KONG,
)

_D_SPEED = 250  #: km/h, CRH "D" trains
_LOST_PER_STOP = {"G": 5, "D": 4}  #: minutes lost braking into and starting out of a stop


# --------------------------------------------------------------------------------------------
# Stop patterns (in the line's direction) and the trains that run them. Each forward train
# (odd number) gets a return working numbered one higher over the same stops in reverse.


def _p(codes: str) -> tuple[str, ...]:
    return tuple(codes.split())


# Beijing–Shanghai
_BS_EXPRESS = _p("VNP JGK NKH AOH")
_BS_EXPRESS_TJ = _p("VNP TIP JGK NKH AOH")
_BS_EXPRESS_XZ = _p("VNP JGK UUH NKH AOH")
_BS_SEMI_A = _p("VNP TIP DIP JGK QAK UUH BMH NKH ESH OHH AOH")
_BS_SEMI_B = _p("VNP LJP CBP JGK TMK ZEK UUH SRH NKH ZEH WGH KNH AOH")
_BS_SEMI_C = _p("VNP TIP JGK TEK UUH EWH NKH EXH ESH WGH AOH")
_BS_NOT_NANJING = _p("VNP TIP JGK QAK UUH BMH CXH ZEH ESH OHH AOH")  # runs through Nanjing South
_BS_ALL = tuple(code for code, _ in BEIJING_SHANGHAI.stations)
_BS_TO_NANJING = _p("VNP TIP DIP JGK TMK QAK UUH BMH CXH NKH")
_BS_TO_JINAN = _p("VNP LJP TIP CBP DIP JGK")
_BS_FROM_JINAN = _p("JGK TMK QAK TEK ZEK UUH SRH BMH EWH CXH NKH ZEH EXH ESH WGH OHH KNH AOH")
_BS_FROM_XUZHOU = _p("UUH BMH NKH ZEH ESH WGH OHH KNH AOH")

# Beijing–Guangzhou
_BG_EXPRESS = _p("BXP SJP ZAF WHN CWQ IZQ")
_BG_FAST = _p("BXP ZAF WHN CWQ IZQ")
_BG_SEMI = _p("BXP BMP SJP EDP ZAF ZLN WHN YIQ CWQ HVQ ICQ SNQ IZQ")
_BG_ALL = _p("BXP BMP SJP EDP HPP ZAF ZLN WHN YIQ CWQ ZAQ HVQ ICQ SNQ IZQ")
_BG_HONG_KONG = _p("BXP SJP ZAF WHN CWQ IZQ IOQ NZQ XJA")
_BG_FUTIAN = _p("BXP BMP SJP HPP ZAF WHN YIQ CWQ HVQ ICQ IZQ IOQ NZQ")
_BG_TO_WUHAN = _p("BXP BMP SJP EDP HPP ZAF ZLN WHN")
_BG_TO_CHANGSHA = _p("BXP SJP HPP ZAF ZLN WHN YIQ CWQ")
_BG_TO_ZHENGZHOU = _p("BXP BMP SJP EDP HPP ZAF")
_BG_NIGHT = _p("BXP SJP ZAF WHN CWQ HVQ IZQ")

# Shanghai–Kunming
_SK_NONSTOP = _p("AOH HGH")
_SK_JIAXING = _p("AOH EPH HGH")
_SK_ALL_HANGZHOU = _p("AOH IMH EGH EAH EPH TCH EUH HGH")
_SK_SEMI = _p("AOH IMH EPH EUH HGH")
_SK_SEMI_B = _p("AOH EAH EPH TCH HGH")
_SK_JINHUA = _p("AOH EPH HGH XHH ZDH YWH JBH")
_SK_JINHUA_FAST = _p("AOH HGH YWH JBH")
_SK_JINHUA_ALL = _p("AOH IMH EPH TCH HGH XHH ZDH YWH JBH")
_SK_D_JINHUA = _p("AOH EPH HGH XHH YWH JBH")
_SK_D_HANGZHOU = _p("AOH IMH EAH EPH EUH HGH")

# Beijing–Harbin
_BH_EXPRESS = _p("IFP SYT CRT VAB")
_BH_SEMI = _p("IFP IVP SYT PXT PPT CRT DXT VAB")
_BH_ALL = tuple(code for code, _ in BEIJING_HARBIN.stations)
_BH_TO_SHENYANG = _p("IFP IVP SYT")

# Guangzhou–Shenzhen–Hong Kong
_GH_FAST = _p("IZQ IOQ NZQ XJA")
_GH_NONSTOP = _p("IZQ XJA")
_GH_SEMI = _p("IZQ QSQ IUQ IOQ NZQ XJA")
_GH_ALL = tuple(code for code, _ in GUANGZHOU_HONG_KONG.stations)
_GH_FUTIAN = _p("IZQ IUQ IMQ IOQ NZQ")
_GH_SHENZHEN = _p("IZQ IUQ IOQ")
_GH_D_SHENZHEN = _p("IZQ QSQ IUQ IMQ IOQ")
_GH_D_FUTIAN = _p("IZQ IUQ IOQ NZQ")


class _Run(NamedTuple):
    number: str  #: odd: the return working is the next even number
    pattern: tuple[str, ...]
    depart: str  #: "HH:MM" from the first stop
    cars: int  #: 8 or 16
    arrive: str | None = None  #: pins the arrival at the last stop (G1); else computed


_TRAINS: tuple[tuple[_Line, tuple[_Run, ...]], ...] = (
    (
        BEIJING_SHANGHAI,
        (
            _Run("G1", _BS_EXPRESS, "07:00", 16, arrive="11:29"),
            _Run("G3", _BS_EXPRESS, "09:00", 16),
            _Run("G5", _BS_EXPRESS, "11:00", 16),
            _Run("G7", _BS_EXPRESS, "14:00", 16),
            _Run("G9", _BS_EXPRESS, "17:00", 16),
            _Run("G11", _BS_EXPRESS, "19:00", 16),
            _Run("G13", _BS_EXPRESS_TJ, "08:00", 16),
            _Run("G15", _BS_EXPRESS_TJ, "12:00", 16),
            _Run("G17", _BS_EXPRESS_XZ, "10:00", 16),
            _Run("G19", _BS_EXPRESS_XZ, "15:00", 16),
            _Run("G21", _BS_NOT_NANJING, "08:15", 16),
            _Run("G23", _BS_NOT_NANJING, "13:45", 8),
            _Run("G101", _BS_SEMI_A, "06:15", 16),
            _Run("G103", _BS_SEMI_B, "06:45", 8),
            _Run("G105", _BS_SEMI_C, "07:20", 16),
            _Run("G107", _BS_SEMI_A, "08:30", 16),
            _Run("G109", _BS_SEMI_B, "09:30", 8),
            _Run("G111", _BS_ALL, "06:00", 8),
            _Run("G113", _BS_SEMI_C, "10:30", 16),
            _Run("G115", _BS_SEMI_A, "11:30", 16),
            _Run("G117", _BS_SEMI_B, "12:30", 8),
            _Run("G119", _BS_ALL, "13:00", 8),
            _Run("G121", _BS_SEMI_C, "13:30", 16),
            _Run("G123", _BS_SEMI_A, "15:30", 16),
            _Run("G125", _BS_SEMI_B, "16:00", 8),
            _Run("G127", _BS_SEMI_C, "18:00", 16),
            _Run("G201", _BS_TO_NANJING, "14:30", 8),
            _Run("G203", _BS_TO_JINAN, "18:30", 8),
            _Run("G205", _BS_FROM_JINAN, "07:40", 8),
            _Run("G207", _BS_FROM_XUZHOU, "16:40", 8),
        ),
    ),
    (
        BEIJING_GUANGZHOU,
        (
            _Run("G65", _BG_EXPRESS, "07:00", 16),
            _Run("G67", _BG_SEMI, "08:00", 16),
            _Run("G71", _BG_FUTIAN, "07:30", 16),
            _Run("G79", _BG_HONG_KONG, "10:00", 16),
            _Run("G81", _BG_FAST, "11:00", 16),
            _Run("G83", _BG_EXPRESS, "14:00", 16),
            _Run("G501", _BG_TO_WUHAN, "07:15", 8),
            _Run("G503", _BG_TO_CHANGSHA, "12:30", 8),
            _Run("G505", _BG_TO_ZHENGZHOU, "16:00", 8),
            _Run("G507", _BG_TO_WUHAN, "17:20", 8),
            _Run("G509", _BG_ALL, "06:30", 16),
            _Run("D901", _BG_NIGHT, "20:30", 16),  # overnight: arrives the next morning
            _Run("D903", _BG_NIGHT, "21:00", 16),
        ),
    ),
    (
        SHANGHAI_KUNMING,
        (
            _Run("G7501", _SK_NONSTOP, "06:30", 8),
            _Run("G7503", _SK_JIAXING, "07:15", 8),
            _Run("G7505", _SK_ALL_HANGZHOU, "08:00", 8),
            _Run("G7507", _SK_SEMI, "09:10", 8),
            _Run("G7509", _SK_NONSTOP, "10:30", 8),
            _Run("G7511", _SK_SEMI_B, "12:00", 8),
            _Run("G7513", _SK_ALL_HANGZHOU, "14:00", 8),
            _Run("G7515", _SK_JIAXING, "16:30", 8),
            _Run("G7517", _SK_NONSTOP, "18:00", 8),
            _Run("G7519", _SK_SEMI, "19:30", 8),
            _Run("G1321", _SK_JINHUA, "08:40", 16),
            _Run("G1323", _SK_JINHUA_FAST, "13:20", 16),
            _Run("G1325", _SK_JINHUA_ALL, "17:10", 8),
            _Run("D3201", _SK_D_JINHUA, "07:40", 8),
            _Run("D3203", _SK_D_HANGZHOU, "15:20", 8),
        ),
    ),
    (
        BEIJING_HARBIN,
        (
            _Run("G901", _BH_EXPRESS, "08:00", 16),
            _Run("G903", _BH_SEMI, "07:10", 8),
            _Run("G905", _BH_ALL, "09:30", 8),
            _Run("G907", _BH_EXPRESS, "12:00", 16),
            _Run("G909", _BH_SEMI, "14:00", 8),
            _Run("G911", _BH_TO_SHENYANG, "06:40", 8),
            _Run("G913", _BH_TO_SHENYANG, "17:30", 8),
            _Run("G915", _BH_EXPRESS, "16:00", 16),
        ),
    ),
    (
        GUANGZHOU_HONG_KONG,
        (
            _Run("G6501", _GH_FAST, "07:00", 8),
            _Run("G6503", _GH_SEMI, "08:10", 8),
            _Run("G6505", _GH_FUTIAN, "09:00", 8),
            _Run("G6507", _GH_NONSTOP, "10:15", 8),
            _Run("G6509", _GH_ALL, "11:30", 8),
            _Run("G6511", _GH_FAST, "13:00", 8),
            _Run("G6513", _GH_SHENZHEN, "14:20", 8),
            _Run("G6515", _GH_NONSTOP, "16:00", 8),
            _Run("G6517", _GH_ALL, "17:40", 8),
            _Run("G6519", _GH_FAST, "19:10", 8),
            _Run("D7401", _GH_D_SHENZHEN, "07:40", 8),
            _Run("D7403", _GH_D_FUTIAN, "15:10", 8),
        ),
    ),
)

#: Minutes added to a forward train's departure time for its return working, in turn, so that
#: the two directions do not mirror each other exactly.
_RETURN_SHIFT = (0, 5, 12, -4, 8, 3)


# --------------------------------------------------------------------------------------------
# Coaches.

#: (class, rows) per coach of an 8-car set: 12 business, 52 first, 530 second = 594 seats.
_EIGHT_CARS: tuple[tuple[str, int], ...] = (
    ("business", 4),
    ("first", 13),
    ("second", 17),
    ("second", 18),
    ("second", 18),
    ("second", 18),
    ("second", 18),
    ("second", 17),
)

#: A 16-car set: business at both ends, two first-class coaches, twelve second-class coaches:
#: 24 business, 104 first, 1060 second = 1188 seats.
_SIXTEEN_CARS: tuple[tuple[str, int], ...] = (
    ("business", 4),
    ("first", 13),
    ("first", 13),
    *(("second", rows) for rows in (17, 18, 18, 18, 18, 17, 17, 18, 18, 18, 18, 17)),
    ("business", 4),
)

_COACHES: dict[int, tuple[Coach, ...]] = {
    cars: tuple(Coach(i, cls, rows) for i, (cls, rows) in enumerate(layout, start=1))
    for cars, layout in ((8, _EIGHT_CARS), (16, _SIXTEEN_CARS))
}


# --------------------------------------------------------------------------------------------
# Building.


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def _route(line: _Line, pattern: Sequence[str]) -> tuple[tuple[str, int], ...]:
    """The pattern's stations with their line kilometres; the pattern runs either way."""
    km = dict(line.stations)
    route = tuple((code, km[code]) for code in pattern)
    steps = [b - a for (_, a), (_, b) in pairwise(route)]
    assert all(d > 0 for d in steps) or all(d < 0 for d in steps), f"bad pattern {pattern}"
    return route


def _schedule(
    route: Sequence[tuple[str, int]],
    depart: int,
    kind: str,
    speed: int,
    arrive: int | None = None,
) -> tuple[Stop, ...]:
    """Stops for a train leaving ``route[0]`` at ``depart``, kilometres counted from there.

    Each leg takes its distance at ``speed`` plus the minutes lost stopping and starting; every
    intermediate stop adds its dwell. With ``arrive`` the running times are scaled so that the
    train reaches the last stop exactly then.
    """
    legs = [abs(b - a) / speed * 60 + _LOST_PER_STOP[kind] for (_, a), (_, b) in pairwise(route)]
    dwells = [3 if code in _HUBS else 2 for code, _ in route[1:-1]]
    if arrive is not None:
        budget = arrive - depart - sum(dwells)
        assert budget > 0, "pinned arrival leaves no running time"
        scale = budget / sum(legs)
        legs = [leg * scale for leg in legs]
    origin_km = route[0][1]
    stops = [Stop(route[0][0], None, depart, 0)]
    running = 0.0
    waited = 0
    for i, (code, km) in enumerate(route[1:], start=1):
        running += legs[i - 1]
        at = depart + round(running) + waited
        last = i == len(route) - 1
        if not last:
            waited += dwells[i - 1]
        stops.append(Stop(code, at, None if last else at + dwells[i - 1], abs(km - origin_km)))
    return tuple(stops)


def _train(
    line: _Line, number: str, pattern: Sequence[str], depart: int, cars: int, arrive: int | None
) -> Train:
    kind = number[0]
    speed = line.g_speed if kind == "G" else _D_SPEED
    stops = _schedule(_route(line, pattern), depart, kind, speed, arrive)
    return Train(number, line.name, stops, _COACHES[cars])


def demo_timetable() -> Timetable:
    """The demo timetable: the same value on every call, valid by ``validate``."""
    trains: list[Train] = []
    for line, runs in _TRAINS:
        for run in runs:
            depart = _minutes(run.depart)
            arrive = _minutes(run.arrive) if run.arrive else None
            trains.append(_train(line, run.number, run.pattern, depart, run.cars, arrive))
        for i, run in enumerate(runs):
            back = f"{run.number[0]}{int(run.number[1:]) + 1}"
            depart = _minutes(run.depart) + _RETURN_SHIFT[i % len(_RETURN_SHIFT)]
            trains.append(_train(line, back, run.pattern[::-1], depart, run.cars, None))
    return Timetable(stations=STATIONS, trains=tuple(trains))


def demo_stats(t: Timetable) -> dict[str, int]:
    """Counts for a startup message: stations, trains, lines and seats on one day's runs."""
    return {
        "stations": len(t.stations),
        "trains": len(t.trains),
        "lines": len({train.line for train in t.trains}),
        "seats": sum(len(seats) for train in t.trains for seats in train.seats.values()),
    }
