"""What every serving model is told: where to listen and what to serve."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from railtix import limits


@dataclass
class ServeOptions:
    tcp_host: str = "127.0.0.1"
    tcp_port: int = 5002
    database: str = "railtix.db"
    workers: int = 0  #: processes model only; 0 means one per core
    hold_minutes: float = 30.0
    #: called once with the bound addresses, e.g. {"tcp": ("127.0.0.1", 5002)}
    on_ready: Callable[[dict[str, tuple[str, int]]], None] | None = None
    extra: dict[str, object] = field(default_factory=dict)


def listen(host: str, port: int, backlog: int = limits.listen_backlog) -> socket.socket:
    """A listening TCP socket; port 0 picks a free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    return sock
