"""Starting multi-process runs from tests without port clashes or orphans."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile


def free_port() -> int:
    """A TCP port nothing listens on now, for a rendezvous that must not meet another run's processes."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_process_group(command: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run`; on timeout the process and all its descendants (launcher and ranks) are killed, so no rank
    is left holding a port, a pipe or a core. The output goes through files, so the run ends when the command exits,
    even if a process it left behind still holds its output open."""
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, text=True, **kwargs)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # torch's elastic launcher starts each rank in a session of its own, so kill the whole tree, not the group.
            kill([process.pid, *_descendants(process.pid)])
            process.wait()
            stderr.seek(0)
            raise AssertionError(f"{command[:6]}... did not finish in {timeout} s:\n{stderr.read()[-4000:]}") from None
        stdout.seek(0)
        stderr.seek(0)
        return subprocess.CompletedProcess(command, process.returncode, stdout.read(), stderr.read())


def kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, from the parent links in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for parent in frontier for child in children.get(parent, [])]
        found.extend(frontier)
    return found


def processes_with_environment(entry: str) -> list[int]:
    """Every live process whose environment holds `entry` ("NAME=value"): the descendants of a run started with it,
    even those re-parented after their parent exited."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/environ", "rb") as environ:
                    if entry.encode() in environ.read().split(b"\0"):
                        found.append(int(pid))
    return found
