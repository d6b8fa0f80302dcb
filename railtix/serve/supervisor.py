"""The supervisor of the processes model: gunicorn's arbiter, without its class-level state.

One loop reconciles the workers we want with the workers we have: it sleeps on a self-pipe
until a signal or a tick, reaps the children that exited (``waitpid``, so none stays a zombie)
and forks replacements. Signal handlers only record the signal (``serial_model.Signals``); the
loop acts on it:

- SIGTERM or SIGINT: stop. The caller's ``on_stopping`` closes the listening socket, every worker
  gets SIGTERM and finishes its in-flight requests; after ``limits.shutdown_grace_s`` the ones
  still running get SIGKILL. Every worker is reaped before ``run`` returns.
- a second SIGINT while stopping: SIGKILL now.
- SIGCHLD: only wakes the loop, so that a dead worker is replaced at once.

A worker must not outlive its supervisor (nobody would stop or replace it): on Linux it asks the
kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG), and the worker's own loop also checks
``os.getppid()`` every ``limits.orphan_check_s``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from railtix import limits
from railtix.serve.serial_model import Signals

log = logging.getLogger("railtix")

#: Bound on waiting for SIGKILLed workers to be reaped: the kernel frees them at once unless one
#: is stuck in the kernel (a dead disk), and then we stop waiting rather than hang.
reap_after_kill_s = 5.0

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when its parent exits (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


@dataclass(slots=True)
class Worker:
    pid: int
    started: float  #: time.monotonic() at fork


class Supervisor:
    """Keeps ``workers`` children running ``worker_main`` (which returns the exit status)."""

    def __init__(
        self,
        worker_main: Callable[[], int],
        workers: int,
        *,
        on_stopping: Callable[[], None] = lambda: None,
        grace_s: float = limits.shutdown_grace_s,
    ) -> None:
        assert 1 <= workers <= limits.workers_max
        self.worker_main = worker_main
        self.wanted = workers
        self.on_stopping = on_stopping
        self.grace_s = grace_s
        self.workers: dict[int, Worker] = {}
        self.signals = Signals((signal.SIGINT, signal.SIGTERM, signal.SIGCHLD))
        self.stopping = False
        self.forced = False
        self.boot_failures = 0
        self.next_spawn = 0.0
        self.pid = os.getpid()

    # --- the loop -------------------------------------------------------------------------------
    def run(self, on_ready: Callable[[], None] = lambda: None) -> int:
        """Run until told to stop; every worker reaped. Returns 0, or 1 when the stop was forced."""
        self.signals.install()
        try:
            self.reconcile()
            on_ready()
            while not self.stopping:
                self.sleep()
                self.handle_signals()
                self.reap()
                self.reconcile()
            self.shutdown()
        finally:
            self.kill_all(signal.SIGKILL)  # only if something above raised: never leave orphans
            self.reap_all()
            self.signals.close()
        return 1 if self.forced else 0

    def sleep(self) -> None:
        timeout = limits.serve_tick_s
        if len(self.workers) < self.wanted:
            timeout = min(timeout, max(0.0, self.next_spawn - time.monotonic()))
        select.select([self.signals], [], [], timeout)

    def handle_signals(self) -> None:
        for sig in self.signals.take():
            if sig == signal.SIGCHLD:
                continue  # the reap that follows every wake-up does the work
            if self.stopping and sig == signal.SIGINT:
                self.forced = True
            if not self.stopping:
                self.stopping = True
                self.on_stopping()

    def reap(self) -> None:
        for pid in list(self.workers):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere; it is gone all the same
                done, status = pid, 0
            if done == 0:
                continue
            worker = self.workers.pop(pid)
            lived = time.monotonic() - worker.started
            if self.stopping:
                continue
            log.warning("worker %d exited (%s) after %.1f s; starting another", pid, describe(status), lived)
            if lived < limits.worker_boot_s:
                self.boot_failures += 1
                delay = min(
                    limits.worker_restart_backoff_min_s * 2 ** (self.boot_failures - 1),
                    limits.worker_restart_backoff_max_s,
                )
                self.next_spawn = time.monotonic() + delay
            else:
                self.boot_failures = 0

    def reconcile(self) -> None:
        """Fork until we have the workers we want (one at a time while workers fail to boot)."""
        while len(self.workers) < self.wanted and not self.stopping:
            if time.monotonic() < self.next_spawn:
                return
            self.spawn()
            if self.boot_failures:
                return

    def spawn(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()  # or the child would print the parent's buffered text again
        # Signals stay blocked across the fork until the child has dropped the supervisor's
        # handlers: a SIGTERM arriving in between would otherwise be recorded in the child's copy
        # of our queue, which nobody reads, and the worker would not stop.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, self.signals.signums)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            raise
        if pid == 0:  # the worker: never return into the supervisor's code
            code = 1
            try:
                self.signals.forget_in_child()
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
                die_with_parent()
                if os.getppid() != self.pid:  # the supervisor died before we asked
                    os._exit(0)
                code = self.worker_main()
            except BaseException:
                log.exception("worker %d failed", os.getpid())
            finally:
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        self.workers[pid] = Worker(pid, time.monotonic())

    # --- stopping -------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """SIGTERM every worker, wait for them to drain, SIGKILL the rest after the grace."""
        self.kill_all(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        while self.workers and not self.forced and time.monotonic() < deadline:
            select.select([self.signals], [], [], limits.serve_tick_s)
            self.handle_signals()
            self.reap()
        if self.workers:
            log.warning("%d worker(s) still running; killing them", len(self.workers))
        self.kill_all(signal.SIGKILL)
        self.reap_all()

    def kill_all(self, sig: int) -> None:
        for pid in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def reap_all(self) -> None:
        deadline = time.monotonic() + reap_after_kill_s
        while self.workers and time.monotonic() < deadline:
            self.reap()
            if self.workers:
                time.sleep(0.01)


def describe(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"
