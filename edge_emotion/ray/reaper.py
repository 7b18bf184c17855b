"""A watchdog that kills the processes of a Ray instance this run started once the run is gone, even after SIGKILL.

Why: `ray.init()` ties the GCS server and the raylet to the driver (they get
SIGKILL when it dies), but the raylet's agents (ray::DashboardAgent,
ray::RuntimeEnvAgent) outlived a SIGKILLed driver by about 90 s here (Ray 2.60:
they try to report the raylet's death to the GCS that died with it).

How: the driver starts this module as a child in its own session (so a Ctrl-C
aimed at the terminal's process group does not take it along) with a pipe on
its stdin, waits for its "ready" (it has noted the driver's children from
before), then runs `ray.init()`, then sends "sync". Until then every new
descendant of the driver is Ray's; the driver's new children at "sync" (GCS,
raylet, monitors) are the roots, and from then on the watchdog records, every
0.2 s, the processes below them with their start times (children the program
starts later for itself are never touched). When the pipe reports the end (the
line "stop" after `ray.shutdown()`, or end-of-file because the driver died), it
SIGKILLs every recorded process still alive with the same start time (a reused
pid is never hit) and exits.

Linux only (it reads /proc); elsewhere `Reaper.start` returns None and Ray's
own fate-sharing is all there is.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

PROC = Path("/proc")
SCAN_INTERVAL_S = 0.2

ProcessId = tuple[int, int]  # (pid, start time in clock ticks since boot): unique while the machine is up


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process, None when it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # after "pid (comm) ": state ppid ... (comm may hold spaces)
    return int(fields[1]), int(fields[19])


def _processes() -> Iterator[tuple[int, int, int]]:
    """(pid, parent pid, start time) of every process on the machine."""
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            yield int(entry.name), stat[0], stat[1]


def descendants(roots: set[int]) -> set[ProcessId]:
    """Every process below the `roots` pids (children, grandchildren, ...), as (pid, start time)."""
    children: dict[int, list[tuple[int, int]]] = {}
    for pid, ppid, start in _processes():
        children.setdefault(ppid, []).append((pid, start))
    found: set[ProcessId] = set()
    stack = list(roots)
    while stack:
        for pid, start in children.get(stack.pop(), []):
            if (pid, start) not in found:
                found.add((pid, start))
                stack.append(pid)
    return found


def kill_recorded(recorded: set[ProcessId]) -> list[int]:
    """SIGKILL each recorded process that is still the same process; the pids killed."""
    killed = []
    for pid, start in sorted(recorded):
        stat = _stat(pid)
        if stat is None or stat[1] != start:
            continue  # gone, or the pid now belongs to someone else
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except ProcessLookupError:
            pass
    return killed


def watch(driver: int, commands: int, answers: int) -> None:
    """Body of the watchdog: record Ray's processes below the driver until told to stop or the driver is gone.

    Until "sync" the driver runs only `ray.init()`, so every new descendant is Ray's; the driver's new
    children at that moment (GCS, raylet, monitors) are Ray's roots, and from then on only processes
    below them are recorded: a child the program starts later for itself is never touched.
    """
    me = os.getpid()
    before = descendants({driver})  # the driver's own children from before Ray: not ours to kill
    _answer(answers, b"ready\n")  # the driver waits for this, so nothing of Ray's can be in `before`
    recorded: set[ProcessId] = set()
    roots: set[ProcessId] | None = None
    buffer = b""
    while True:
        recorded |= _ray_processes(driver, before, roots, me)
        ready, _, _ = select.select([commands], [], [], SCAN_INTERVAL_S)
        if not ready:
            continue
        chunk = os.read(commands, 4096)
        if not chunk:  # end of file: the driver died (or closed the pipe without a word)
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        if b"sync" in lines and roots is None:
            recorded |= _ray_processes(driver, before, roots, me)
            roots = {p for p in recorded if (_stat(p[0]) or (0, 0))[0] == driver}
            _answer(answers, b"ok\n")
        if b"stop" in lines:
            break
    kill_recorded(recorded)


def _answer(answers: int, line: bytes) -> None:
    try:
        os.write(answers, line)
    except OSError:  # the driver is gone: the next read says so
        pass


def _ray_processes(driver: int, before: set[ProcessId], roots: set[ProcessId] | None, me: int) -> set[ProcessId]:
    """Before "sync": the driver's new descendants; after it: the roots and everything below them."""
    if roots is None:
        return {p for p in descendants({driver}) - before if p[0] != me}
    alive = {pid for pid, start in roots if (_stat(pid) or (0, -1))[1] == start}  # a reused pid is not a root
    return descendants(alive)


class Reaper:
    """The driver's handle on its watchdog: `sync` after the instance is up, `stop` after `ray.shutdown()`."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process

    @classmethod
    def start(cls) -> Reaper | None:
        """Start the watchdog for this process; None where /proc is missing (not Linux)."""
        if not (PROC / str(os.getpid()) / "stat").exists():
            return None
        process = subprocess.Popen(
            [sys.executable, "-m", "edge_emotion.ray.reaper", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        reaper = cls(process)
        reaper._answer("ready", timeout=30.0)  # it has noted the processes that are not Ray's
        return reaper

    def sync(self, timeout: float = 10.0) -> bool:
        """Wait until the watchdog has recorded every process that exists now; False if it did not answer."""
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(b"sync\n")
            self.process.stdin.flush()
        except OSError:
            return False
        return self._answer("ok", timeout)

    def _answer(self, word: str, timeout: float = 10.0) -> bool:
        """Wait for the watchdog's next line; whether it is `word`."""
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        return bool(ready) and self.process.stdout.readline() == f"{word}\n".encode()

    def stop(self, timeout: float = 10.0) -> None:
        """Kill what is left of the instance (nothing after a clean `ray.shutdown()`) and end the watchdog."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(b"stop\n")
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def main() -> None:
    """`python -m edge_emotion.ray.reaper DRIVER_PID`, stdin: commands from the driver, stdout: answers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when the instance ends
    driver = int(sys.argv[1])
    if _stat(driver) is not None:
        watch(driver, sys.stdin.fileno(), sys.stdout.fileno())


if __name__ == "__main__":
    main()
