"""The TCP line codec and the Session above it, with no sockets.

The codec is fed bytes in every awkward way a network delivers them (one byte at a time, many
lines at once, blank lines, too much) and must say exactly what it got. The Session tests run a
real Service on an in-memory store whose writer is started by the test, so a purchase can be
made to wait for its commit while later requests are answered.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from conftest import FakeClock

from railtix import limits
from railtix.service import auth
from railtix.service.service import Service
from railtix.service.session import Session
from railtix.store import open_store
from railtix.wire import messages as m
from railtix.wire.tcp import (
    NEED_DATA,
    BadRequest,
    BrokenFraming,
    LineCodec,
    encode_error,
    encode_ok,
    with_id,
)


def events(codec: LineCodec) -> list[Any]:
    """Every event the codec has ready, up to and excluding NEED_DATA (bounded)."""
    out: list[Any] = []
    for _ in range(10_000):
        e = codec.next_event()
        if e is NEED_DATA:
            return out
        out.append(e)
    raise AssertionError("the codec never asked for more data")


def line(obj: Any) -> bytes:
    return msgspec.json.encode(obj) + b"\n"


BUY = {
    "op": "buy", "id": 3, "token": "t", "key": "k1", "train": "G1", "date": "2026-06-02",
    "from": "VNP", "to": "AOH", "class": "second",
    "passengers": [{"name": "张三", "id_no": "110101199001011237"}], "seats": ["F"],
}


# --- framing -----------------------------------------------------------------------------------
def test_a_line_fed_byte_by_byte() -> None:
    codec = LineCodec()
    data = line(BUY)
    for b in data[:-1]:
        codec.receive_data(bytes([b]))
        assert codec.next_event() is NEED_DATA
    codec.receive_data(data[-1:])
    (e,) = events(codec)
    assert isinstance(e, m.Buy)
    assert e.id == 3 and e.passengers[0].name == "张三" and e.seats == ["F"]
    assert codec.buffered == 0


def test_several_lines_in_one_chunk_come_out_in_order() -> None:
    codec = LineCodec()
    codec.receive_data(line({"op": "hello", "id": 1}) + line({"op": "stations", "id": "two"}) + line(BUY)
                       + b'{"op":"hel')
    got = events(codec)
    assert [type(e) for e in got] == [m.Hello, m.Stations, m.Buy]
    assert [e.id for e in got] == [1, "two", 3]
    codec.receive_data(b'lo","id":4}\n')
    (e,) = events(codec)
    assert isinstance(e, m.Hello) and e.id == 4


def test_blank_lines_are_skipped() -> None:
    codec = LineCodec()
    codec.receive_data(b"\n\r\n   \n\t\n" + line({"op": "hello", "id": 1}) + b"\n\n")
    (e,) = events(codec)
    assert isinstance(e, m.Hello) and e.id == 1


def test_many_blank_lines_in_one_chunk() -> None:
    codec = LineCodec()
    codec.receive_data(b"\n" * 5000 + line({"op": "hello", "id": 1}))
    (e,) = events(codec)
    assert isinstance(e, m.Hello)


def test_crlf_line_endings() -> None:
    codec = LineCodec()
    codec.receive_data(b'{"op":"hello","id":1}\r\n')
    (e,) = events(codec)
    assert isinstance(e, m.Hello)


def test_a_line_over_the_limit_without_newline_breaks_framing() -> None:
    codec = LineCodec(line_size_max=100)
    codec.receive_data(b"x" * 100)
    assert codec.next_event() is NEED_DATA  # exactly the limit: may still end in a newline
    codec.receive_data(b"x")
    e = codec.next_event()
    assert isinstance(e, BrokenFraming)
    assert e.refusal.code == "too_large"
    assert codec.broken
    # nothing more comes out, whatever follows
    codec.receive_data(b"\n" + line({"op": "hello", "id": 1}))
    assert events(codec) == []


def test_a_line_over_the_limit_with_its_newline_breaks_framing() -> None:
    codec = LineCodec(line_size_max=100)
    codec.receive_data(line({"op": "hello", "id": 1}) + b"y" * 150 + b"\n" + line({"op": "hello", "id": 2}))
    got = events(codec)
    assert isinstance(got[0], m.Hello) and got[0].id == 1
    assert len(got) == 2 and isinstance(got[1], BrokenFraming) and got[1].refusal.code == "too_large"


def test_one_byte_over_the_limit_with_its_newline_in_the_same_chunk() -> None:
    codec = LineCodec(line_size_max=100)
    body = b'{"op":"hello","id":1}'
    codec.receive_data(body + b" " * (101 - len(body)) + b"\n")
    (e,) = events(codec)
    assert isinstance(e, BrokenFraming) and e.refusal.code == "too_large"


def test_a_line_of_exactly_the_limit_is_accepted() -> None:
    body = b'{"op":"hello","id":1}'
    codec = LineCodec(line_size_max=100)
    codec.receive_data(body + b" " * (100 - len(body)))
    assert codec.next_event() is NEED_DATA
    codec.receive_data(b"\n")
    (e,) = events(codec)
    assert isinstance(e, m.Hello)


def test_default_limit_100_kib_without_newline() -> None:
    codec = LineCodec()
    assert limits.line_size_max < 100 * 1024
    sent = 0
    got: list[Any] = []
    while sent < 100 * 1024 and not got:
        codec.receive_data(b"z" * 4096)
        sent += 4096
        got = events(codec)
    assert len(got) == 1 and isinstance(got[0], BrokenFraming)
    assert sent <= limits.line_size_max + 4096


def test_a_broken_codec_stops_buffering() -> None:
    codec = LineCodec(line_size_max=100)
    codec.receive_data(b"x" * 101)
    assert isinstance(codec.next_event(), BrokenFraming)
    for _ in range(100):
        codec.receive_data(b"y" * 1000)
    assert codec.buffered <= 100


# --- bad requests: answered, and the connection goes on -------------------------------------------
@pytest.mark.parametrize(
    ("raw", "code", "rid"),
    [
        (b'{"op":', "malformed_json", None),
        (b'{"id":5,"op":"hello"', "malformed_json", None),
        (b"\xff\xfe\x00garbage", "malformed_json", None),
        (b'{"op":"hello"} trailing', "malformed_json", None),
        (b"[1,2,3]", "malformed_json", None),
        (b'"hello"', "malformed_json", None),
        (b"42", "malformed_json", None),
        (b"null", "malformed_json", None),
        (b'{"id":7,"op":"fly"}', "unknown_op", 7),
        (b'{"id":8}', "unknown_op", 8),
        (b'{"id":"s9","op":5}', "unknown_op", "s9"),
        (b'{"id":10,"op":"login","user":"alice"}', "missing_field", 10),
        (b'{"id":11,"op":"buy","token":"t","key":"k","train":"G1","date":"2026-06-02","from":"VNP",'
         b'"to":"AOH","class":"second","passengers":[{"name":"x"}]}', "missing_field", 11),
        (b'{"id":12,"op":"login","user":"alice","password":5}', "invalid_field", 12),
        (b'{"id":13,"op":"orders","token":"t","limit":0}', "invalid_field", 13),
        (b'{"id":14,"op":"register","user":"a b","password":"password1"}', "invalid_field", 14),
        (b'{"id":15,"op":"buy","token":"t","key":"k","train":"G1","date":"d","from":"a","to":"b",'
         b'"class":"economy","passengers":[{"name":"x","id_no":"12345"}]}', "invalid_field", 15),
        (b'{"id":16,"op":"buy","token":"t","key":"k","train":"G1","date":"d","from":"a","to":"b",'
         b'"class":"second","passengers":[{"name":"x","id_no":"12345"}],"seats":["E"]}', "invalid_field", 16),
        (b'{"id":17,"op":"buy","token":"t","key":"k","train":"G1","date":"d","from":"a","to":"b",'
         b'"class":"second","passengers":' + msgspec.json.encode([{"name": "x", "id_no": f"1234{i}"} for i in range(6)])
         + b"}", "invalid_field", 17),
        (b'{"id":"\xff","op":"hello"}', "malformed_json", None),  # not UTF-8 in a field it reads
        (b'{"id":7,"op":"hello","x":"\xc3("}', "malformed_json", None),  # or in one it ignores
        (b'{"id":18,"op":"hello","x":' + b"[" * 1000 + b"]" * 1000 + b"}", "malformed_json", None),
        (b"[" * 60000, "malformed_json", None),
        (b"\x0b", "malformed_json", None),  # only spaces, tabs and \r make a blank line
        (b'{"id":true,"op":"hello"}', "invalid_field", None),
        (b'{"id":1.5,"op":"hello"}', "invalid_field", None),
        (b'{"id":[1],"op":"hello"}', "invalid_field", None),
    ],
)
def test_bad_request(raw: bytes, code: str, rid: Any) -> None:
    codec = LineCodec()
    codec.receive_data(raw + b"\n" + line({"op": "hello", "id": "after"}))
    bad, after = events(codec)
    assert isinstance(bad, BadRequest)
    assert bad.refusal.code == code, bad.refusal
    assert bad.id == rid
    assert isinstance(after, m.Hello) and after.id == "after", "a bad request must not break the stream"
    reply = msgspec.json.decode(encode_error(bad.id, bad.refusal))
    assert reply == {"id": rid, "ok": False, "error": {"code": code, "message": bad.refusal.message, "retry": False}}


def test_a_malformed_line_is_named_once_and_where() -> None:
    codec = LineCodec()
    codec.receive_data(b'{"id": 2, 1: 2}\n')
    (bad,) = events(codec)
    assert isinstance(bad, BadRequest)
    assert bad.refusal.message.startswith("not valid JSON: object keys must be strings (byte ")
    assert "malformed" not in bad.refusal.message


def test_unknown_fields_are_ignored() -> None:
    codec = LineCodec()
    codec.receive_data(line({"op": "hello", "id": 1, "client": "future", "x": [1, 2]}))
    (e,) = events(codec)
    assert isinstance(e, m.Hello)


# --- encoding ----------------------------------------------------------------------------------------
def test_unicode_names_round_trip() -> None:
    codec = LineCodec()
    codec.receive_data(line(BUY))
    (e,) = events(codec)
    assert e.passengers[0].name == "张三"
    out = encode_ok(e.id, {"tickets": [{"passenger": e.passengers[0].name}]})
    assert out.endswith(b"\n") and out.count(b"\n") == 1
    assert msgspec.json.decode(out) == {"id": 3, "ok": True, "tickets": [{"passenger": "张三"}]}


@pytest.mark.parametrize("rid", [1, 0, -5, "abc", 'q"uote\n', "张三", None, 2**53])
def test_with_id_puts_any_id_first(rid: Any) -> None:
    out = with_id(rid, b'{"ok":true,"x":1}')
    assert out.endswith(b"\n") and out.count(b"\n") == 1
    assert out.startswith(b'{"id":')
    assert msgspec.json.decode(out) == {"id": rid, "ok": True, "x": 1}


# --- the Session over a real Service -------------------------------------------------------------------
class Waker:
    """A fake serving model's waker: records which sessions the writer said are ready."""

    def __init__(self) -> None:
        self.calls: list[list[Session]] = []

    def __call__(self, sessions: list[Session]) -> None:
        self.calls.append(list(sessions))


@pytest.fixture
def unstarted(clock: FakeClock) -> Iterator[tuple[Service, str]]:
    """A Service whose writer has not started (so purchases wait), and a valid token."""
    svc = Service(open_store(":memory:"), clock=clock, sweep_interval_s=3600.0)
    tx = svc.store.begin()
    uid = tx.add_user("alice", auth.hash_password("password123"), clock())
    assert uid is not None
    tx.add_token(auth.token_hash("token-alice"), uid, clock() + 86400)
    tx.commit()
    yield svc, "token-alice"
    svc.stop()


def replies(out: bytes) -> list[dict[str, Any]]:
    return [msgspec.json.decode(x) for x in out.splitlines()]


def test_replies_leave_in_request_order(unstarted: tuple[Service, str], clock: FakeClock) -> None:
    svc, token = unstarted
    waker = Waker()
    s = svc.session(waker)
    buy = dict(BUY, token=token, id="buy", date=clock.date(1), **{"class": "business"})
    search = {"op": "search", "id": "search", "from": "VNP", "to": "AOH", "date": clock.date(1)}
    assert s.receive(line(buy) + line(search)) == 2
    assert s.waiting
    assert s.output() == b"", "the search must wait behind the buy"
    svc.writer.start()
    assert svc.writer.drain(10)
    assert [s] in waker.calls
    got = replies(s.output())
    assert [r["id"] for r in got] == ["buy", "search"]
    assert got[0]["ok"] and got[0]["order"]["status"] == "held"
    assert got[0]["order"]["tickets"][0]["passenger"] == "张三"
    # the search was answered before the purchase committed: it saw every business seat free
    g1 = next(t for t in got[1]["trains"] if t["train"] == "G1")
    business = next(c for c in g1["classes"] if c["class"] == "business")
    assert business["left"] == 24
    assert not s.waiting and s.output() == b""
    # and a search now sees the purchase
    s.receive(line(search))
    (again,) = replies(s.output())
    g1 = next(t for t in again["trains"] if t["train"] == "G1")
    assert next(c for c in g1["classes"] if c["class"] == "business")["left"] == 23


def test_the_in_flight_limit_holds_lines_back(unstarted: tuple[Service, str], clock: FakeClock) -> None:
    """Past the limit, lines wait in the buffer (flow control) and are taken once replies leave."""
    svc, token = unstarted
    s = svc.session(Waker())
    cap = limits.in_flight_per_connection_max
    buy = dict(BUY, token=token, id=0, date=clock.date(1))
    data = line(buy) + b"".join(line({"op": "hello", "id": i}) for i in range(1, cap + 10))
    assert s.receive(data) == cap
    assert s.full and s.backlog
    assert s.output() == b""  # the buy at the head waits for its commit
    assert s.receive(line({"op": "hello", "id": "later"})) == 0  # still full: nothing taken
    svc.writer.start()
    assert svc.writer.drain(10)
    got = replies(s.output())
    assert [r["id"] for r in got] == list(range(cap))
    assert all(r["ok"] for r in got)
    assert not s.full and s.backlog
    assert s.receive(b"") == 11  # what the model does after writing: take the held lines
    rest = replies(s.output())
    assert [r["id"] for r in rest] == [*range(cap, cap + 10), "later"]
    assert not s.backlog


def test_ready_replies_hold_lines_back_past_the_write_buffer(unstarted: tuple[Service, str]) -> None:
    """A client pipelining requests with large replies and reading none must not make the session
    build all their replies at once: past ``write_buffer_high`` ready bytes, lines wait."""
    svc, _ = unstarted
    s = svc.session(Waker())
    n = limits.in_flight_per_connection_max
    data = b"".join(line({"op": "stations", "id": i}) for i in range(n))
    taken = s.receive(data)
    size = len(s.output())
    one = size // taken
    assert taken < n and s.backlog
    assert limits.write_buffer_high <= size < limits.write_buffer_high + one
    ids: list[int] = []
    for _ in range(n):  # what a model does after writing: take the held lines (bounded)
        s.receive(b"")
        ids += [r["id"] for r in replies(s.output())]
        if not s.backlog:
            break
    assert ids == list(range(taken, n))


def test_slots_stay_bounded_past_the_in_flight_limit(unstarted: tuple[Service, str], clock: FakeClock) -> None:
    svc, token = unstarted
    s = svc.session(Waker())
    cap = limits.in_flight_per_connection_max
    s.receive(line(dict(BUY, token=token, id=0, date=clock.date(1))))
    chunk = line({"op": "hello"}) * 1000
    for _ in range(20):
        s.receive(chunk)
    assert s.in_flight == cap


def test_a_framing_error_answers_once_and_closes(unstarted: tuple[Service, str]) -> None:
    svc, _ = unstarted
    s = svc.session(Waker())
    s.receive(line({"op": "hello", "id": 1}))
    s.receive(b"x" * (limits.line_size_max + 1))
    assert s.close_after_output
    got = replies(s.output())
    assert [r["id"] for r in got] == [1, None]
    assert got[1]["error"]["code"] == "too_large"
    assert s.receive(line({"op": "hello", "id": 2})) == 0
    assert s.output() == b""


def test_bad_lines_answered_in_order_between_good_ones(unstarted: tuple[Service, str]) -> None:
    svc, _ = unstarted
    s = svc.session(Waker())
    s.receive(line({"op": "hello", "id": 1}) + b"nonsense\n" + b'{"id":3,"op":"nope"}\n' + line({"op": "stations", "id": 4}))
    got = replies(s.output())
    assert [r["id"] for r in got] == [1, None, 3, 4]
    assert [r["ok"] for r in got] == [True, False, False, True]
    assert got[1]["error"]["code"] == "malformed_json" and got[2]["error"]["code"] == "unknown_op"
    assert {"code": "VNP", "name": "Beijing South", "name_zh": "北京南"} in got[3]["stations"]


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        ({"op": "search", "to": "AOH", "date": "2026-12-01"}, "missing_field", "from is required"),
        ({"op": "search", "from": 1, "to": "AOH", "date": "2026-12-01"}, "invalid_field", "from must be a string, not an integer"),
        ({"op": "orders", "token": "t", "limit": 0}, "invalid_field", "limit must be an integer >= 1"),
        ({"op": "register", "user": "bad name!", "password": "password1"}, "invalid_field", "user: letters, digits and _ . @ - only"),
        ({"op": "order", "token": "t", "order": ""}, "invalid_field", "order is empty"),
        *(({"op": "buy", "token": "t", "key": "k", "train": "G1", "date": "d", "from": "a", "to": "b",
            "class": "second", "passengers": [{"name": "x", "id_no": "1234"}, {"name": "y", "id_no": bad}]},
           "invalid_field", "passengers[1].id_no: letters and digits only")
          for bad in ("1234-5678", "１２３４５６", "12 345", "abécd", "1234\n")),
    ],
)
def test_bad_fields_are_named_in_plain_words(request_: dict[str, Any], code: str, message: str) -> None:
    codec = LineCodec()
    codec.receive_data(line(request_))
    (e,) = events(codec)
    assert isinstance(e, BadRequest)
    assert (e.refusal.code, e.refusal.message) == (code, message)


class _Host:
    closing = False
    forced = False

    def poll(self) -> None:
        pass


def test_a_connection_that_fails_costs_only_itself(unstarted: tuple[Service, str], caplog: pytest.LogCaptureFixture) -> None:
    """The serial model serves connections in its main loop: an unexpected error while serving
    one must close that connection and return, not end the server."""
    import socket
    import threading

    from railtix.serve.serial_model import BlockingConnection

    svc, _ = unstarted
    ours, theirs = socket.socketpair()
    conn = BlockingConnection(_Host(), svc, ours, read_deadline_s=5.0)

    class Broken(Session):
        __slots__ = ()

        def receive(self, data: bytes) -> int:
            raise RuntimeError("a bug")

    conn.session.__class__ = Broken
    done: list[bool] = []
    t = threading.Thread(target=lambda: (conn.serve(), done.append(True)), daemon=True)
    t.start()
    theirs.sendall(line({"op": "hello", "id": 1}))
    theirs.settimeout(5.0)
    assert theirs.recv(100) == b""  # closed, without a reply
    t.join(5.0)
    assert done == [True]
    assert "serving a connection failed" in caplog.text
    theirs.close()


def test_a_forced_stop_does_not_spin_on_a_full_session() -> None:
    """Ctrl-C twice while a purchase waits for its commit: the blocking connection no longer
    waits for it, and a session full of ready replies behind it takes no more lines. The
    connection must give up then, not loop on the held-back lines."""
    import socket
    import threading
    import time

    from railtix.serve.serial_model import BlockingConnection

    class Stuck:  # a command whose commit never comes (a stuck writer)
        ready = False
        body = None
        req = None

    class Replies:
        def session(self, waker: Any) -> Session:
            return Session(self, waker)  # type: ignore[arg-type]

        def dispatch(self, session: Session, req: Any) -> None:
            session.reply(b'{"id":%d,"ok":true,"x":"%s"}\n' % (req.id or 0, b"y" * 4000))

    host = _Host()
    ours, theirs = socket.socketpair()
    conn = BlockingConnection(host, Replies(), ours, read_deadline_s=30.0)  # type: ignore[arg-type]
    conn.session.slots.append(Stuck())  # type: ignore[arg-type]
    theirs.sendall(b"".join(line({"op": "hello", "id": i}) for i in range(100)))
    t = threading.Thread(target=conn.serve, daemon=True)
    t.start()
    time.sleep(0.5)
    host.closing = host.forced = True  # type: ignore[misc]
    t.join(5.0)
    assert not t.is_alive(), "the connection kept looping after a forced stop"
    theirs.close()


def test_an_order_renders_as_the_protocol_shows_it() -> None:
    """Every status's reply, byte for byte the protocol's object: its fields in order,
    ``hold_until`` only while held, ``refund`` and ``fee`` only once refunded."""
    from railtix.core.orders import Order, Status, Ticket
    from railtix.wire import render
    from railtix.wire.tcp import ok_body

    t0 = 1_790_000_000.0
    tickets = (Ticket("王伟", "110101199003071233", 17, 3, "04F", 55350), Ticket("Li Na", "E1234567", 18, 3, "05A", 55350))
    held = Order(id="E01ABCDEFGHJKMNPQ", user=3, run="G1@2026-12-01", train="G1", date="2026-12-01", start=0,
                 end=3, origin="VNP", destination="AOH", seat_class="second", tickets=tickets, status=Status.HELD,
                 created=t0, hold_until=t0 + 1800, departs=t0 + 86400)
    paid = msgspec.structs.replace(held, status=Status.PAID, hold_until=None)
    refunded = msgspec.structs.replace(paid, status=Status.REFUNDED, refund=105_300, fee=5_400)
    free = msgspec.structs.replace(paid, status=Status.REFUNDED, refund=110_700, fee=0)
    common = {
        "order": "E01ABCDEFGHJKMNPQ", "train": "G1", "date": "2026-12-01", "from": "VNP", "to": "AOH",
        "class": "second", "departs": "2026-09-22T22:13:20+08:00",
        "tickets": [
            {"passenger": "王伟", "id_no": "1101**********1233", "coach": 3, "seat": "04F", "price": 55350},
            {"passenger": "Li Na", "id_no": "E******7", "coach": 3, "seat": "05A", "price": 55350},
        ],
        "price": 110700, "created": "2026-09-21T22:13:20+08:00",
    }
    expected = [
        (held, {**common, "status": "held", "hold_until": "2026-09-21T22:43:20+08:00"}),
        (paid, {**common, "status": "paid"}),
        (refunded, {**common, "status": "refunded", "refund": 105_300, "fee": 5_400}),
        (free, {**common, "status": "refunded", "refund": 110_700, "fee": 0}),
    ]
    order_of_fields = ["order", "status", "train", "date", "from", "to", "class", "departs", "tickets", "price",
                       "created", "hold_until", "refund", "fee"]
    for o, fields in expected:
        want = {k: fields[k] for k in order_of_fields if k in fields}
        assert render.order_body(o) == ok_body({"order": want})
        assert msgspec.json.encode(render.order(o)) == msgspec.json.encode(want)
