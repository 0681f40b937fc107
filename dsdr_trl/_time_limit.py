"""A time limit per call that works from any thread: calls run in a child process that is killed on overrun.

math-verify's own time limit uses ``signal.alarm``, which only works in the main thread, and TRL calls
reward functions from worker threads. A thread cannot be stopped, so a SymPy computation that runs
away (``10^{10^{10^{10}}}``) must run in a process that can be killed. Here one child process per
parent process serves every call; a call that overruns kills the child, the call reports
``TIMED_OUT``, and the next call starts a fresh child.

The child is forked (not spawned) because a spawned or forkserver child re-imports the user's main
script, which would re-run a training script that lacks an ``if __name__ == "__main__"`` guard, and
would import torch again (seconds per restart). A forked child inherits the imported modules and
starts in milliseconds; it only runs SymPy code, never the parent's other threads' libraries
(CUDA, OpenMP), which is the case where forking a threaded process is sound - as PyTorch's own
fork-started DataLoader workers do.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any, Final

__all__ = ["TIMED_OUT", "TimedOut", "map_with_time_limit", "stop_worker"]


class TimedOut:
    """The type of ``TIMED_OUT``: the result of a call that overran its time or crashed its process."""

    def __repr__(self) -> str:
        return "TIMED_OUT"


TIMED_OUT: Final = TimedOut()

_CONTEXT = multiprocessing.get_context("fork")


def _serve(connection: Connection, parent_end: Connection) -> None:
    """Child loop: receive ``(function, items)``, send back ``function(item)`` for each item in turn."""
    parent_end.close()  # the forked copy of the parent's end: closed, the pipe ends (EOFError) when the parent goes
    while True:
        try:
            function, items = connection.recv()
        except EOFError:  # the parent has gone
            return
        for item in items:
            try:
                connection.send((True, function(item)))
            except Exception:  # noqa: BLE001 - a failing call must not end the worker serving the others
                connection.send((False, None))


class _Worker:
    """One child process and the pipe to it; ``None`` fields mean "not started"."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.process: Any = None
        self.connection: Connection | None = None

    def start(self) -> Connection:
        if self.connection is None:
            parent_end, child_end = _CONTEXT.Pipe()
            self.process = _CONTEXT.Process(
                target=_serve, args=(child_end, parent_end), daemon=True, name="dsdr-time-limit"
            )
            self.process.start()
            child_end.close()
            self.connection = parent_end
        return self.connection

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.join()
        if self.connection is not None:
            self.connection.close()
        self.process = None
        self.connection = None


_WORKER = _Worker()


def stop_worker() -> None:
    """Stop the child process now, for a caller that leaves with ``os._exit``, which skips the exit handlers that
    stop it otherwise; the next call starts a fresh one."""
    with _WORKER.lock:
        _WORKER.kill()


def map_with_time_limit(function: Callable[[Any], Any], items: Sequence[Any], timeout_s: float) -> list[Any]:
    """Return ``[function(item) for item in items]``, each call limited to ``timeout_s`` seconds.

    ``function`` must be a module-level function (it is sent to the child by reference); items and
    results must be picklable. A call that overruns, raises, or crashes the child gives ``TIMED_OUT``;
    after an overrun or a crash the child is killed and the remaining items go to a fresh one. Safe to call from any thread
    (calls from several threads take turns).
    """
    results: list[Any] = []
    with _WORKER.lock:
        while len(results) < len(items):
            connection = _WORKER.start()
            try:
                connection.send((function, list(items[len(results) :])))
            except OSError:  # the child died since the last call: start another
                _WORKER.kill()
                continue
            while len(results) < len(items):
                try:
                    finished, result = connection.recv() if connection.poll(timeout_s) else (False, TIMED_OUT)
                except (EOFError, OSError):  # the child died (e.g. out of memory)
                    finished, result = False, TIMED_OUT
                results.append(result if finished else TIMED_OUT)
                if result is TIMED_OUT:
                    _WORKER.kill()
                    break
    return results
