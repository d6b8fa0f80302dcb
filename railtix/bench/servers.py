"""Servers the bench starts itself: ``railtix serve`` on a fresh database, the null server, and
the slow client that a fair server must not wait for.

Both servers are subprocesses bound to port 0; the bench reads the address they print
(``railtix listening tcp://HOST:PORT``, ``null listening tcp://HOST:PORT``), and stops them
with SIGTERM, then SIGKILL after a bounded wait.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from railtix.bench import limits

LISTENING = re.compile(rb"(railtix|null) listening tcp://(\S+):(\d+)")


class ServerFailed(RuntimeError):
    """A server the bench started exited or never said where it listens."""


class Spawned:
    """A server subprocess that prints its address once bound."""

    def __init__(self, argv: list[str], name: str, workdir: Path | None = None) -> None:
        self.name = name
        #: the database a railtix server serves, and whether the bench made it (and removes it)
        self.database: str | None = None
        self.owns_database = False
        self.tmp = Path(tempfile.mkdtemp(prefix="railtix-bench-"))
        self.workdir = workdir or self.tmp
        self.log_path = self.tmp / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL,
            cwd=self.workdir, env=env, start_new_session=True,
        )
        self._lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            self.host, self.port = self._wait()
        except BaseException:  # the error carries the log; nothing of the attempt stays behind
            self.cleanup()
            raise

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(b"")

    def _wait(self) -> tuple[str, int]:
        deadline = time.monotonic() + limits.server_start_timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise ServerFailed(f"{self.name} did not say where it listens within "
                                   f"{limits.server_start_timeout_s:g} s:\n{self.log()}")
            try:
                line = self._lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if not line:
                self.proc.wait(limits.server_stop_timeout_s)
                raise ServerFailed(f"{self.name} exited ({self.proc.returncode}) before listening:\n{self.log()}")
            m = LISTENING.search(line)
            if m:
                return m.group(2).decode(), int(m.group(3))

    @property
    def target(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self) -> int | None:
        """SIGTERM, a bounded wait, then SIGKILL; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(limits.server_stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(limits.server_stop_timeout_s)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def start_railtix(database: str | None = None, model: str | None = None, extra: tuple[str, ...] = ()) -> Spawned:
    """``python -m railtix serve`` on port 0; a fresh database in a temporary folder by default."""
    argv = [sys.executable, "-m", "railtix", "serve", "--tcp", "127.0.0.1:0"]
    if model:
        argv += ["--model", model]
    spawned_db = database is None
    if spawned_db:
        tmp = Path(tempfile.mkdtemp(prefix="railtix-bench-db-"))
        database = str(tmp / "railtix.db")
    argv += ["--database", str(database), *extra]
    try:
        s = Spawned(argv, f"railtix-{model or 'default'}")
    except ServerFailed:
        if spawned_db:
            shutil.rmtree(Path(str(database)).parent, ignore_errors=True)
        raise
    s.database = str(database)
    s.owns_database = spawned_db
    return s


def remove_database(path: str) -> None:
    """Delete a database the bench created (with its WAL files and folder)."""
    folder = Path(path).parent
    if folder.name.startswith("railtix-bench-db-"):
        shutil.rmtree(folder, ignore_errors=True)


def start_null(workers: int = 1) -> Spawned:
    return Spawned(
        [sys.executable, "-m", "railtix.bench.null_server", "--tcp", "127.0.0.1:0", "--workers", str(workers)],
        "null-server",
    )


def parse_target(target: str) -> tuple[str, int]:
    """``tcp://HOST:PORT`` (or ``HOST:PORT``) as (host, port)."""
    scheme, sep, _ = target.partition("://")
    if sep and scheme != "tcp":
        raise ValueError(f"{target!r}: the bench speaks railtix's TCP protocol; give tcp://HOST:PORT")
    text = target.removeprefix("tcp://")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{target!r} is not tcp://HOST:PORT (a port from 1 to 65535)")
    return host.strip("[]") or "127.0.0.1", int(port)


def listening(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def is_local(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1")


def served_database(server: list[int]) -> str | None:
    """The SQLite file that the railtix server of these processes (``cpu.listeners``: those
    listening on its port) serves, found by the serving lock its processes hold open
    (``PATH-serving.lock``, of the file's real path): so the audit reads the database that was
    sold from, whatever folder the server was started in. None for a server on PostgreSQL, the
    null server, or processes this user cannot look into."""
    from railtix.bench.cpu import open_files, tree
    from railtix.store.sqlite import SERVING_LOCK_SUFFIX

    found = {
        target.removesuffix(SERVING_LOCK_SUFFIX)
        for pid in tree(server)
        for target in open_files(pid)
        if target.endswith(SERVING_LOCK_SUFFIX)
    }
    return found.pop() if len(found) == 1 else None


def slow_client(host: str, port: int) -> socket.socket:
    """One connection that sends half a request line and then nothing (keep it open)."""
    s = socket.create_connection((host, port), timeout=limits.connect_timeout_s)
    s.sendall(b'{"id":0,"op":"sea')
    return s
