"""The machine: free ports, CPU and memory figures from /proc, the load average, progress messages."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (its threads included), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14, 15)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (a multi-worker server's worker processes), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))  # ppid (field 4)
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def tree_cpu_s(pids: list[int]) -> float | None:
    """User + system CPU seconds of these processes (``pids[0]`` the parent), and of the parent's reaped children.

    A child that exits and is waited for moves its time into the parent's cutime/cstime, so the sum
    stays continuous over a window. None when the parent is gone.
    """
    parent = _stat_fields(pids[0])
    if parent is None:
        return None
    total = int(parent[11]) + int(parent[12]) + int(parent[13]) + int(parent[14])  # utime stime cutime cstime
    for pid in pids[1:]:
        fields = _stat_fields(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])
    return total / _CLK_TCK


def process_tree_cpu_s(pid: int) -> float | None:
    """CPU seconds of a server process and all its descendants (see :func:`tree_cpu_s`)."""
    return tree_cpu_s(process_tree(pid))


def machine_busy_s() -> float | None:
    """CPU seconds all cores spent busy since boot (everything but idle and iowait), from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    ticks = [int(v) for v in first[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / _CLK_TCK  # user..steal minus idle, iowait


def process_memory(pid: int) -> tuple[int | None, int | None]:
    """(VmRSS, VmHWM) of a process in bytes, from /proc."""
    values: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return values.get("VmRSS"), values.get("VmHWM")


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
