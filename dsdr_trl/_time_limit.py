"""A time limit per call that works from any thread: calls run on a small pool of child processes, killed on overrun.

math-verify's own time limit uses ``signal.alarm``, which only works in the main thread, and TRL calls
reward functions from worker threads. A thread cannot be stopped, so a SymPy computation that runs
away (``10^{10^{10^{10}}}``) must run in a process that can be killed. Here a pool of up to
``DEFAULT_WORKERS`` child processes per parent process serves every call; each child works through a few items
at a time and streams back one result per item, so each item has its own deadline. An item that overruns kills
its child, reports ``TIMED_OUT``, and a fresh child takes the items that were left. So a batch of ``n`` items
that all run out of time costs about ``n * timeout_s / workers``, not ``n * timeout_s``.

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

__all__ = ["DEFAULT_WORKERS", "TIMED_OUT", "TimedOut", "map_with_time_limit", "stop_workers"]

# A few workers bound the worst batch; more would compete with the trainer's own processes for the cores.
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
DEFAULT_WORKERS: Final = max(1, min(4, _CORES))


class TimedOut:
    """The type of ``TIMED_OUT``: the result of a call that overran its time, raised, or crashed its process."""

    def __repr__(self) -> str:
        return "TIMED_OUT"


TIMED_OUT: Final = TimedOut()

_CONTEXT = multiprocessing.get_context("fork")


def _serve(connection: Connection, parent_end: Connection) -> None:
    """Child loop: receive ``(function, items)``, send back ``(True, function(item))`` or ``(False, None)`` per item."""
    # The forked copies of the parent's pipe ends (this child's and the other workers'): closed, so that every pipe
    # ends (EOFError) when the parent goes, even by os._exit, which skips the handlers that stop the workers.
    parent_end.close()
    for worker in _WORKERS:
        if worker.connection is not None:
            worker.connection.close()
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


_LOCK = threading.Lock()
_WORKERS: list[_Worker] = []
# Items sent to a child at once: it streams one result per item, so it never waits for the parent in between.
_MAX_CHUNK = 16


class _Chunk:
    """The items a child is working through: their indices, how many are done, and the current item's deadline."""

    def __init__(self, worker: _Worker, indices: list[int], deadline: float) -> None:
        self.worker = worker
        self.indices = indices
        self.done = 0
        self.deadline = deadline


def stop_workers() -> None:
    """Stop the child processes now, for a caller that leaves with ``os._exit``, which skips the exit handlers that
    stop them otherwise; the next call starts fresh ones."""
    with _LOCK:
        for worker in _WORKERS:
            worker.kill()


def map_with_time_limit(
    function: Callable[[Any], Any], items: Sequence[Any], timeout_s: float, workers: int = DEFAULT_WORKERS
) -> list[Any]:
    """Return ``[function(item) for item in items]``, each call limited to ``timeout_s`` seconds.

    ``function`` must be a module-level function (it is sent to the children by reference); items and
    results must be picklable. Up to ``workers`` children run the calls, each working through a few items at a
    time. A call that overruns, raises, or crashes its child gives ``TIMED_OUT``; after an overrun or a crash
    that child is killed and the items it had not reached go to a fresh one. Safe to call from any thread
    (calls from several threads take turns).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}.")
    results: list[Any] = [TIMED_OUT] * len(items)
    size = min(workers, len(items))
    chunk_size = max(1, min(_MAX_CHUNK, len(items) // (4 * max(size, 1))))
    with _LOCK:
        _WORKERS.extend(_Worker() for _ in range(size - len(_WORKERS)))
        idle = _WORKERS[:size]
        pending = collections.deque(range(len(items)))
        busy: dict[Connection, _Chunk] = {}
        while pending or busy:
            while pending and idle:
                worker = idle.pop()
                indices = [pending.popleft() for _ in range(min(chunk_size, len(pending)))]
                try:
                    connection = worker.start()
                    connection.send((function, [items[index] for index in indices]))
                except OSError:  # the child died since its last call: start another for these items
                    worker.kill()
                    idle.append(worker)
                    pending.extendleft(reversed(indices))
                    continue
                busy[connection] = _Chunk(worker, indices, time.monotonic() + timeout_s)
            next_deadline = min(chunk.deadline for chunk in busy.values())
            for connection in wait(list(busy), timeout=max(0.0, next_deadline - time.monotonic())):
                chunk = busy[connection]  # type: ignore[index]
                try:
                    finished, result = connection.recv()  # type: ignore[union-attr]
                except (EOFError, OSError):  # the child died (e.g. out of memory): its item failed
                    _give_up(chunk, busy, idle, pending)
                    continue
                results[chunk.indices[chunk.done]] = result if finished else TIMED_OUT
                chunk.done += 1
                chunk.deadline = time.monotonic() + timeout_s
                if chunk.done == len(chunk.indices):
                    del busy[connection]  # type: ignore[arg-type]
                    idle.append(chunk.worker)
            now = time.monotonic()
            for chunk in [chunk for chunk in busy.values() if chunk.deadline <= now]:
                _give_up(chunk, busy, idle, pending)
    return results


def _give_up(chunk: _Chunk, busy: dict, idle: list[_Worker], pending: collections.deque) -> None:
    """Kill the chunk's child: its current item keeps ``TIMED_OUT``, the items after it go back to the queue."""
    busy.pop(chunk.worker.connection)
    chunk.worker.kill()
    idle.append(chunk.worker)
    pending.extendleft(reversed(chunk.indices[chunk.done + 1 :]))
