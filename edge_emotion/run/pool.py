"""A pool of worker processes that runs one job on many files and survives what a file does to its worker.

Both per-file runs of the package use it: `score` computes each clip's model inputs
(run/read.py), `prepare` writes each clip's box cache file (toolchain/train/box_cache.py).
Kept generic so the hard part, isolation, is written and tested once.

Workers are spawned, not forked: forking a process that has started torch's
thread pools is unsafe. What a worker runs is a small picklable `WorkerJob`:
`setup` once per worker (build a face detector), then the function it returns per
file (tests pass scripted jobs that hang or crash). The parent keeps at most
`prefetch` files queued per worker, so memory stays bounded however big the
folder, and whatever the parent does meanwhile (the backend) never waits on a
single frame. Every worker has its own pipes, so a worker that hangs past the
per-file timeout, or dies (a segfault in a codec, the OOM killer), is killed and
replaced without corrupting anybody else's messages; its file gets the job's
`failed` result and the rest of the folder goes on. A job may return an iterator for a
long file: each of its items reaches the parent as soon as it is ready (and restarts the
file's timeout), so a recording of any length flows through in bounded parts.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from edge_emotion import defaults
from edge_emotion.errors import EdgeEmotionError
from edge_emotion.run.threads import limit_blas_threads, worker_threads

DEFAULT_TIMEOUT_S = defaults.FILE_TIMEOUT_S
# A worker's setup (import torch or ONNX Runtime, build the face detector) took 2.2-2.6 s here; 120 s is
# ~50x that, room for a cold disk cache or a loaded machine, and still ends a hung start within minutes.
DEFAULT_SETUP_TIMEOUT_S = defaults.SETUP_TIMEOUT_S


class JobResult(Protocol):
    """What callers of the pool read of any job's result: the file's place in the work list, and why it failed."""

    index: int
    error: str | None


@dataclass
class FileResult:
    """The result of a job whose work is a side effect (a file written): only whether it failed, and why."""

    index: int
    path: str
    error: str | None = None


R = TypeVar("R", bound=JobResult)
R_co = TypeVar("R_co", bound=JobResult, covariant=True)
FileFn = Callable[[Path, int], R]  # (path, index) -> the job's result for that file; never raises for a bad file
Task = Any  # what a job's function runs on: a file's path, or any picklable description of work (a chunk of a file)


class WorkerJob(Protocol[R_co]):
    """What a worker process runs: `setup` once (in the worker), then the function it returns per file. Picklable.

    `failed` makes the result of a file the job could not finish (its worker hung past the timeout or died);
    the parent calls it, so the job decides what such a file's result looks like.
    """

    def setup(self, threads: int) -> Callable[[Task, int], R_co | Iterator[R_co]]: ...

    def failed(self, index: int, path: Task, cause: str) -> R_co: ...


def _worker_main(tasks: Connection, results: Connection, job: WorkerJob[Any], threads: int, current: Any) -> None:
    """Body of a worker process: set the job up, then run it on each (index, path) task until told to stop.

    Results go out through a sender thread, so a large result waiting for the
    parent (busy running the backend) does not stop the next file's decoding; tasks
    come in through a receiver thread, so the parent's send of a task larger than
    the pipe (a long recording's chunk carries its frame times) never waits for a
    worker that is itself waiting for the parent to read its results (a deadlock
    seen on a 10-minute recording). At most `prefetch` tasks are ever in flight.
    The worker also leaves when its parent is gone (a SIGKILLed `score`).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    parent = os.getppid()
    try:
        limit_blas_threads()  # the pool shares the cores out by process (run/threads.py)
        run = job.setup(threads)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which stops the run
        results.send(("init_error", f"{type(exc).__name__}: {exc}"))
        return
    # sent directly, before any task: a file that kills the worker at once must not take "ready" with it
    results.send(("ready", None))
    outbox: queue.Queue = queue.Queue(maxsize=2)
    sender = threading.Thread(target=_send_all, args=(outbox, results), daemon=True)
    sender.start()
    inbox: queue.Queue = queue.Queue()
    threading.Thread(target=_receive_all, args=(tasks, inbox), daemon=True).start()
    while os.getppid() == parent:  # an orphan (its `score` was killed) stops instead of finishing queued files
        try:
            task = inbox.get(timeout=1.0)
        except queue.Empty:
            continue
        if task is None:
            break
        index, path = task
        current.value = index  # shared memory: the parent knows which file a crash came from
        if not _post(outbox, ("start", index), parent):
            return
        result = run(path, index)
        if isinstance(result, Iterator):  # a long file in parts: each part is sent as it is ready
            for part in result:
                if not _post(outbox, ("part", part), parent):
                    return
            result = None
        if not _post(outbox, ("done", result), parent):
            return
    if _post(outbox, None, parent):
        sender.join(timeout=5)


def _post(outbox: queue.Queue, message: tuple | None, parent: int) -> bool:
    """Queue a message for the sender thread; False once the parent is gone (nobody will read it)."""
    while True:
        try:
            outbox.put(message, timeout=1.0)
            return True
        except queue.Full:
            if os.getppid() != parent:
                return False


def _receive_all(tasks: Connection, inbox: queue.Queue) -> None:
    """Take every task off the pipe as it comes (None: the parent closed it, or said stop)."""
    while True:
        try:
            task = tasks.recv()
        except (EOFError, OSError):
            task = None
        inbox.put(task)
        if task is None:
            return


def _send_all(outbox: queue.Queue, results: Connection) -> None:
    while (message := outbox.get()) is not None:
        try:
            results.send(message)
        except (OSError, ValueError):
            return


@dataclass
class _Worker:
    process: mp.process.BaseProcess
    tasks: Connection  # parent -> worker
    results: Connection  # worker -> parent
    assigned: deque[tuple[int, Task]] = field(default_factory=deque)  # in the order the worker runs them
    ready: bool = False
    spawned_at: float = field(default_factory=time.monotonic)  # setup must report "ready" within setup_timeout
    started_at: float | None = None  # monotonic time the head of `assigned` started
    current: Any = None  # shared int: index of the file the worker is on; survives the worker's crash


def _take_current(worker: _Worker) -> tuple[int, Task]:
    """Remove and return the task the worker was on when it stopped (its "done" messages may have died with it)."""
    for k, (index, path) in enumerate(worker.assigned):
        if index == worker.current.value:
            del worker.assigned[k]
            return index, path
    return worker.assigned.popleft()


class WorkerPool(Generic[R]):
    """Worker processes that run a job on file after file, with a per-file timeout, a setup timeout and crash recovery.

    A worker that does not report "ready" within `setup_timeout` is killed and the run fails
    with one error, rather than being replaced: setup is the same for every worker and for
    every file (imports, the detector), so what hung once would hang its replacement too, and
    no file is to blame for an error row. A worker that dies during setup fails the run alike.
    """

    def __init__(
        self,
        job: WorkerJob[R],
        workers: int = 1,
        timeout: float = DEFAULT_TIMEOUT_S,
        prefetch: int = 2,
        start_method: str = "spawn",
        threads: int | None = None,
        setup_timeout: float = DEFAULT_SETUP_TIMEOUT_S,
    ) -> None:
        if workers < 1:
            raise ValueError(f"a worker pool needs at least one worker, got {workers}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if setup_timeout <= 0:
            raise ValueError(f"setup_timeout must be positive, got {setup_timeout}")
        self.job = job
        self.timeout = timeout
        self.setup_timeout = setup_timeout
        self.prefetch = max(1, prefetch)
        self._context = mp.get_context(start_method)
        self._threads = threads or worker_threads(workers)  # per worker, for its setup (MTCNN's ONNX Runtime sessions)
        self._size = workers
        self._workers = [self._spawn() for _ in range(workers)]

    def _spawn(self) -> _Worker:
        task_reader, task_writer = self._context.Pipe(duplex=False)
        result_reader, result_writer = self._context.Pipe(duplex=False)
        current = self._context.Value("q", -1, lock=False)
        process = self._context.Process(
            target=_worker_main,
            args=(task_reader, result_writer, self.job, self._threads, current),
            daemon=True,
            name="edge-emotion-worker",
        )
        process.start()
        task_reader.close()
        result_writer.close()
        return _Worker(process, task_writer, result_reader, current=current)

    def run(self, paths: Iterable[Task]) -> Iterator[R]:
        """Yield one result per path (index = position in `paths`), in completion order; a job that returns an
        iterator for a file yields its parts in order, and a file whose worker dies after some parts still gets
        the job's `failed` result. `paths` is read as workers have room, so a generator may make its tasks then."""
        source = enumerate(paths)
        todo: deque[tuple[int, Task]] = deque()
        while self._top_up(todo, source) or any(w.assigned for w in self._workers):
            self._dispatch(todo)
            yield from self._collect(timeout=0.2)
            yield from self._reap(todo)

    def _top_up(self, todo: deque[tuple[int, Task]], source: Iterator[tuple[int, Task]]) -> bool:
        """Take tasks from `source` while the workers' queues have room; whether any task is waiting."""
        room = self._size * self.prefetch - sum(len(w.assigned) for w in self._workers)
        while len(todo) < room and (task := next(source, None)) is not None:
            todo.append(task)
        return bool(todo)

    def _dispatch(self, todo: deque[tuple[int, Task]]) -> None:
        """Hand out tasks one at a time to the least busy worker, up to `prefetch` each.

        A worker lost to a timeout or a crash is replaced only when the live ones are full
        and work is left, so the end of a folder never waits for a pointless start-up.
        """
        while todo:
            self._fill(todo)
            if not todo or len(self._workers) >= self._size:
                return
            self._workers.append(self._spawn())

    def _fill(self, todo: deque[tuple[int, Task]]) -> None:
        while todo and self._workers:
            worker = min(self._workers, key=lambda w: len(w.assigned))
            if len(worker.assigned) >= self.prefetch:
                return
            task = todo.popleft()
            try:
                worker.tasks.send(task)
            except OSError:
                todo.appendleft(task)  # the worker is gone; _reap removes it
                return
            worker.assigned.append(task)

    def _collect(self, timeout: float) -> Iterator[R]:
        ready = set(wait([w.results for w in self._workers], timeout=timeout))
        for worker in self._workers:
            if worker.results in ready:
                yield from self._drain(worker)

    def _drain(self, worker: _Worker) -> Iterator[R]:
        """Handle every message the worker has sent so far; stop at a broken pipe (the worker died)."""
        while _poll(worker.results):
            try:
                kind, payload = worker.results.recv()
            except (EOFError, OSError, ValueError):
                return  # the worker died, maybe mid-message; _reap handles it
            if kind == "init_error":
                raise EdgeEmotionError(f"a preprocessing worker failed to start: {payload}")
            if kind == "ready":
                worker.ready = True
            elif kind == "start":
                worker.started_at = time.monotonic()
            elif kind == "part":  # progress on a long file: its timeout starts again
                worker.started_at = time.monotonic()
                yield payload
            elif kind == "done":
                worker.assigned.popleft()
                worker.started_at = None
                if payload is not None:
                    yield payload

    def _reap(self, todo: deque[tuple[int, Task]]) -> Iterator[R]:
        """Stop workers that died or overran the timeout: their current file gets an error, their queue goes back to `todo`."""
        for worker in list(self._workers):
            yield from self._check_setup(worker)
            if worker.process.is_alive() and not self._overdue(worker):
                continue
            yield from self._drain(worker)  # its last results may still be in the pipe
            overdue = self._overdue(worker)
            if worker.process.is_alive() and not overdue:
                continue
            self._stop(worker, kill=True)
            self._workers.remove(worker)  # _dispatch starts a replacement if there is work left
            if not worker.ready:
                raise EdgeEmotionError(f"a preprocessing worker died while starting (exit code {worker.process.exitcode})")
            if worker.assigned:
                index, path = _take_current(worker)
                cause = (
                    f"timed out after {self.timeout:g} s (preprocessing did not finish)"
                    if overdue
                    else f"preprocessing worker died (exit code {worker.process.exitcode})"
                )
                yield self.job.failed(index, path, cause)
            todo.extendleft(reversed(worker.assigned))

    def _check_setup(self, worker: _Worker) -> Iterator[R]:
        """Fail the run if a live worker has not finished its setup within setup_timeout (it hangs there)."""
        if worker.ready or not worker.process.is_alive() or time.monotonic() - worker.spawned_at <= self.setup_timeout:
            return
        yield from self._drain(worker)  # "ready" (and results after it) may have arrived since the last collect
        if worker.ready:
            return
        self._stop(worker, kill=True)
        self._workers.remove(worker)
        raise EdgeEmotionError(
            f"a preprocessing worker did not finish its setup within {self.setup_timeout:g} s "
            f"(pid {worker.process.pid}, killed): its imports or face detector hang; no file was scored by it"
        )

    def _overdue(self, worker: _Worker) -> bool:
        return worker.started_at is not None and time.monotonic() - worker.started_at > self.timeout

    def _stop(self, worker: _Worker, kill: bool) -> None:
        if kill:
            worker.process.kill()
        else:
            try:
                worker.tasks.send(None)
            except OSError:
                pass
        worker.process.join(timeout=None if kill else 5)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.tasks.close()
        worker.results.close()

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers (benchmarks read their CPU time)."""
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    def close(self) -> None:
        """Ask every worker to stop, and kill any that does not within 5 s."""
        for worker in self._workers:
            self._stop(worker, kill=False)
        self._workers = []

    def __enter__(self) -> WorkerPool[R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _poll(conn: Connection) -> bool:
    try:
        return conn.poll()
    except (OSError, ValueError):
        return False
