"""Serving models: they move bytes between sockets and sessions, and know nothing of tickets.

``MODELS`` is the registry ``railtix serve --model`` picks from (uvicorn keeps its protocol
implementations the same way). Each entry is ``module:function``; the function is called as
``run(service_factory, options)`` and returns when the server has stopped. The lecture's four
servers are all here: ``serial`` (kept to show why it fails), ``threads``, ``processes`` and
``asyncio``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from railtix import limits

MODELS: dict[str, str] = {
    "asyncio": "railtix.serve.asyncio_model:run",
    "serial": "railtix.serve.serial_model:run",
    "threads": "railtix.serve.threads_model:run",
    "processes": "railtix.serve.processes_model:run",
}

#: One line per model, for ``railtix serve --help`` and the docs.
DESCRIPTIONS: dict[str, str] = {
    "asyncio": "one event loop (uvloop when installed)",
    "serial": "one connection at a time, as in the lecture; kept to show why it fails: "
    "one slow client stalls everyone",
    "threads": f"a thread per connection, at most {limits.threads_max}; more are told busy",
    "processes": "a supervisor and --workers pre-forked processes that share the database "
    "(not :memory:)",
}

DEFAULT_MODEL = "asyncio"


def model(name: str) -> Callable[..., Any]:
    module, _, func = MODELS[name].partition(":")
    return getattr(importlib.import_module(module), func)
