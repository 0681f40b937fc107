"""A time limit per call that works from any thread: calls run on a small pool of child processes, killed on overrun.

math-verify's own time limit uses ``signal.alarm``, which only works in the main thread, and TRL calls
reward functions from worker threads. A thread cannot be stopped, so a SymPy computation that runs
away (``10^{10^{10^{10}}}``) must run in a process that can be killed. Here a pool of up to
``DEFAULT_WORKERS`` child processes per parent process serves every call, one item at a time per child;
an item that overruns kills its child, reports ``TIMED_OUT``, and a fresh child takes the next item.
So a batch of ``n`` items that all run out of time costs about ``n * timeout_s / workers``, not
``n * timeout_s``.

The children are forked (not spawned) because a spawned or forkserver child re-imports the user's main
script, which would re-run a training script that lacks an ``if __name__ == "__main__"`` guard, and
would import torch again (seconds per restart). A forked child inherits the imported modules and
starts in milliseconds; it only runs SymPy code, never the parent's other threads' libraries
(CUDA, OpenMP), which is the case where forking a threaded process is sound - as PyTorch's own
fork-started DataLoader workers do.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, Final

__all__ = ["DEFAULT_WORKERS", "TIMED_OUT", "TimedOut", "map_with_time_limit"]

# A few workers bound the worst batch; more would compete with the trainer's own processes for the cores.
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
DEFAULT_WORKERS: Final = max(1, min(4, _CORES))


class TimedOut:
    """The type of ``TIMED_OUT``: the result of a call that overran its time, raised, or crashed its process."""

    def __repr__(self) -> str:
        return "TIMED_OUT"


TIMED_OUT: Final = TimedOut()

_CONTEXT = multiprocessing.get_context("fork")


def _serve(connection: Connection) -> None:
    """Child loop: receive ``(function, item)``, send back ``(True, function(item))`` or ``(False, None)``."""
    while True:
        try:
            function, item = connection.recv()
        except EOFError:  # the parent has gone
            return
        try:
            connection.send((True, function(item)))
        except Exception:  # noqa: BLE001 - a failing call must not end the worker serving the others
            connection.send((False, None))


class _Worker:
    """One child process and the pipe to it; ``None`` fields mean "not started"."""

    def __init__(self) -> None:
        self.process: Any = None
        self.connection: Connection | None = None

    def start(self) -> Connection:
        if self.connection is None:
            parent_end, child_end = _CONTEXT.Pipe()
            self.process = _CONTEXT.Process(target=_serve, args=(child_end,), daemon=True, name="dsdr-time-limit")
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


_LOCK = threading.Lock()
_WORKERS: list[_Worker] = []


def map_with_time_limit(
    function: Callable[[Any], Any], items: Sequence[Any], timeout_s: float, workers: int = DEFAULT_WORKERS
) -> list[Any]:
    """Return ``[function(item) for item in items]``, each call limited to ``timeout_s`` seconds.

    ``function`` must be a module-level function (it is sent to the children by reference); items and
    results must be picklable. Up to ``workers`` children run the calls, one item at a time each. A call
    that overruns, raises, or crashes its child gives ``TIMED_OUT``; after an overrun or a crash that child
    is killed and a fresh one takes its next item. Safe to call from any thread (calls from several threads
    take turns).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}.")
    results: list[Any] = [TIMED_OUT] * len(items)
    with _LOCK:
        _WORKERS.extend(_Worker() for _ in range(min(workers, len(items)) - len(_WORKERS)))
        idle = _WORKERS[: min(workers, len(items))]
        pending = collections.deque(range(len(items)))
        busy: dict[Connection, tuple[_Worker, int, float]] = {}  # pipe -> (worker, item index, deadline)
        while pending or busy:
            while pending and idle:
                worker, index = idle.pop(), pending.popleft()
                try:
                    connection = worker.start()
                    connection.send((function, items[index]))
                except OSError:  # the child died since its last call: start another for this item
                    worker.kill()
                    idle.append(worker)
                    pending.appendleft(index)
                    continue
                busy[connection] = (worker, index, time.monotonic() + timeout_s)
            next_deadline = min(deadline for _, _, deadline in busy.values())
            for connection in wait(list(busy), timeout=max(0.0, next_deadline - time.monotonic())):
                worker, index, _ = busy.pop(connection)  # type: ignore[index]
                try:
                    finished, result = connection.recv()  # type: ignore[union-attr]
                except (EOFError, OSError):  # the child died (e.g. out of memory)
                    finished, result = False, None
                    worker.kill()
                results[index] = result if finished else TIMED_OUT
                idle.append(worker)
            now = time.monotonic()
            for connection, (worker, index, deadline) in list(busy.items()):
                if deadline <= now:
                    del busy[connection]
                    worker.kill()
                    idle.append(worker)
    return results
