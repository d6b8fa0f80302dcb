"""Serving models: they move bytes between sockets and sessions, and know nothing of tickets.

``MODELS`` is the registry ``railtix serve --model`` picks from (uvicorn keeps its protocol
implementations the same way). Each entry is ``module:function``; the function is called as
``run(service_factory, options)`` and returns when the server has stopped.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

MODELS: dict[str, str] = {
    "asyncio": "railtix.serve.asyncio_model:run",
}

DEFAULT_MODEL = "asyncio"


def model(name: str) -> Callable[..., Any]:
    module, _, func = MODELS[name].partition(":")
    return getattr(importlib.import_module(module), func)
