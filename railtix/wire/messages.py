"""The typed requests of protocol v1: what the TCP codec decodes (and what an HTTP transport,
which is planned, will decode too).

These msgspec Structs are the protocol: decoding a line into ``Request`` checks every field's
presence, type and bounds, and the JSON schema in docs comes from them. The ``op`` field picks
the Struct (a tagged union). Unknown fields are ignored, so newer clients can talk to us.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from railtix import limits

Name = Annotated[str, Meta(min_length=1, max_length=limits.name_length_max)]
#: Digits and upper-case letters only. The schema states the pattern; ``PassengerIn`` checks
#: letters and digits with two str methods, not msgspec's regular expression (that was half of
#: decoding a rush's buy), and the service refuses a lower-case letter after the sold-out gate,
#: where a key's remembered reply can still answer (``core.orders.id_problem``).
IdNo = Annotated[
    str, Meta(min_length=4, max_length=limits.id_no_length_max, extra_json_schema={"pattern": "^[0-9A-Z]+$"})
]
User = Annotated[
    str, Meta(min_length=1, max_length=limits.user_length_max, pattern=r"^[A-Za-z0-9_.@-]+$")
]
Password = Annotated[str, Meta(min_length=1, max_length=limits.password_length_max)]
Key = Annotated[str, Meta(min_length=1, max_length=limits.key_length_max)]
Token = Annotated[str, Meta(min_length=1, max_length=128)]
Text = Annotated[str, Meta(min_length=1, max_length=64)]
OrderId = Annotated[str, Meta(min_length=1, max_length=64)]
SeatClass = Literal["business", "first", "second"]
Letter = Literal["A", "B", "C", "D", "F"]
RequestId = int | str | None


class Base(msgspec.Struct, tag_field="op", kw_only=True):
    id: RequestId = None


class Hello(Base, tag="hello"):
    """Server name, protocol version and limits."""


class Register(Base, tag="register"):
    user: User
    password: Password


class Login(Base, tag="login"):
    user: User
    password: Password


class Stations(Base, tag="stations"):
    """Every station with its telegraph code and names."""


class Search(Base, tag="search"):
    from_: Text = msgspec.field(name="from")
    to: Text
    date: Text


class TrainInfo(Base, tag="train"):
    train: Text
    date: Text | None = None


class PassengerIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    id_no: IdNo

    def __post_init__(self) -> None:
        if not (self.id_no.isascii() and self.id_no.isalnum()):
            raise ValueError("id_no: letters and digits only")  # "field: what", for wire.errors


class Buy(Base, tag="buy"):
    token: Token
    key: Key
    train: Text
    date: Text
    from_: Text = msgspec.field(name="from")
    to: Text
    seat_class: SeatClass = msgspec.field(name="class")
    passengers: Annotated[list[PassengerIn], Meta(min_length=1, max_length=limits.passengers_per_order_max)]
    seats: Annotated[list[Letter], Meta(max_length=limits.passengers_per_order_max)] = []


class Pay(Base, tag="pay"):
    token: Token
    key: Key
    order: OrderId


class Cancel(Base, tag="cancel"):
    token: Token
    key: Key
    order: OrderId


class Refund(Base, tag="refund"):
    token: Token
    key: Key
    order: OrderId


class Orders(Base, tag="orders"):
    token: Token
    limit: Annotated[int, Meta(ge=1, le=limits.orders_page_max)] = 50


class OrderGet(Base, tag="order"):
    token: Token
    order: OrderId


Request = (
    Hello | Register | Login | Stations | Search | TrainInfo | Buy | Pay | Cancel | Refund | Orders | OrderGet
)
OPS = (
    "hello", "register", "login", "stations", "search", "train",
    "buy", "pay", "cancel", "refund", "orders", "order",
)
