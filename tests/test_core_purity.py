"""The core stays pure: no I/O, no threads, no database, no clock, no randomness.

Time must come in as ``now`` so that the same inputs give the same outputs in every test and
every replay. This reads the source of every module under ``railtix/core`` (it imports nothing
from it) and lists what would break that; the checker is itself tested on planted bad modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import railtix.core

#: Top-level modules the core must not import, and why.
FORBIDDEN_MODULES: dict[str, str] = {
    **dict.fromkeys(("socket", "selectors", "ssl", "http", "urllib", "requests", "httpx", "asyncio"), "network"),
    **dict.fromkeys(("threading", "_thread", "multiprocessing", "concurrent", "subprocess", "signal"), "concurrency"),
    **dict.fromkeys(("sqlite3", "psycopg", "psycopg2", "dbm", "shelve", "pickle"), "database"),
    **dict.fromkeys(("os", "io", "pathlib", "shutil", "tempfile", "glob", "mmap", "logging"), "files"),
    **dict.fromkeys(("time",), "clock"),
    **dict.fromkeys(("random", "secrets", "uuid"), "randomness"),
    **dict.fromkeys(("importlib",), "dynamic imports"),
}

#: Calls that read the clock or do I/O, by their resolved dotted name.
FORBIDDEN_CALLS: dict[str, str] = {
    "datetime.datetime.now": "clock",
    "datetime.datetime.today": "clock",
    "datetime.datetime.utcnow": "clock",
    "datetime.date.today": "clock",
    "open": "files",
    "input": "console",
    "print": "console",
    "__import__": "dynamic imports",
    "breakpoint": "debugger",
    "numpy.load": "files",
    "numpy.save": "files",
    "numpy.fromfile": "files",
    "numpy.loadtxt": "files",
    "numpy.savetxt": "files",
}

CORE_DIR = Path(railtix.core.__file__).resolve().parent


def impurities(source: str, module: str = "railtix.core.planted") -> list[str]:
    """Every impure import or call in ``source`` (a module of ``railtix.core``), as sentences."""
    tree = ast.parse(source)
    found: list[str] = []
    aliases: dict[str, str] = {}  # local name -> dotted name it stands for
    package = module.rsplit(".", 1)[0]

    def check_module(name: str, line: int) -> None:
        top = name.split(".")[0]
        if top in FORBIDDEN_MODULES:
            found.append(f"line {line}: imports {name} ({FORBIDDEN_MODULES[top]})")
        if top == "railtix" and not (name == "railtix.core" or name.startswith("railtix.core.")):
            found.append(f"line {line}: imports {name}, outside the core")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                check_module(a.name, node.lineno)
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            for a in node.names:
                # "from railtix import core" names a module; "from time import time" a member
                check_module(f"{name}.{a.name}" if name == "railtix" else name, node.lineno)
                aliases[a.asname or a.name] = f"{name}.{a.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            dotted = _dotted(node.func)
            if dotted is None:
                continue
            head, _, rest = dotted.partition(".")
            resolved = aliases.get(head, head) + ("." + rest if rest else "")
            if resolved in FORBIDDEN_CALLS:
                found.append(f"line {node.lineno}: calls {resolved} ({FORBIDDEN_CALLS[resolved]})")
    return found


def _dotted(expr: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    parts.append(expr.id)
    return ".".join(reversed(parts))


def core_modules() -> list[Path]:
    return sorted(CORE_DIR.rglob("*.py"))


def test_the_walk_finds_the_core() -> None:
    names = {p.stem for p in core_modules()}
    assert {"timetable", "seats", "orders", "inventory", "rides", "errors"} <= names


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.stem)
def test_core_module_is_pure(path: Path) -> None:
    module = "railtix.core." + ".".join(path.relative_to(CORE_DIR).with_suffix("").parts)
    assert impurities(path.read_text(encoding="utf-8"), module) == []


# --- the checker itself ------------------------------------------------------------------------
PLANTED_BAD = [
    "import socket",
    "import asyncio",
    "import threading",
    "from multiprocessing import Process",
    "import subprocess",
    "import sqlite3",
    "import psycopg",
    "import time",
    "from time import monotonic",
    "import os.path",
    "from os import environ",
    "import selectors",
    "import http.client",
    "from urllib.request import urlopen",
    "import requests",
    "from concurrent.futures import ThreadPoolExecutor",
    "import random",
    "from railtix.store import open_store",
    "from railtix import limits",
    "from .. import limits",
    "from ..service.writer import Writer",
    "import datetime\nx = datetime.datetime.now()",
    "import datetime as dt\nx = dt.datetime.now(dt.timezone.utc)",
    "import datetime as dt\nx = dt.date.today()",
    "from datetime import datetime\nx = datetime.utcnow()",
    "from datetime import datetime as D\nx = D.today()",
    "from datetime import date\ndef f():\n    return date.today()",
    "def f(path):\n    return open(path).read()",
    "print('hello')",
    "import numpy as np\nnp.load('x.npy')",
]

PLANTED_GOOD = [
    "from __future__ import annotations",
    "import datetime as dt\nx = dt.datetime.fromtimestamp(now, CST).date()",
    "from datetime import date\nx = date.fromisoformat('2026-12-01')",
    "from railtix.core.errors import Refusal",
    "from .errors import Refusal",
    "import numpy as np\nx = np.zeros(3)",
    "import msgspec\nfrom collections import Counter",
    "def today(now):\n    return now\nx = today(1.0)",
    "from railtix.core import rides\nx = rides.today(now)",
    "from railtix import core",
]


@pytest.mark.parametrize("source", PLANTED_BAD)
def test_checker_finds_planted_impurity(source: str) -> None:
    assert impurities(source) != []


@pytest.mark.parametrize("source", PLANTED_GOOD)
def test_checker_accepts_pure_code(source: str) -> None:
    assert impurities(source) == []
