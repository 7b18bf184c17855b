"""Join a Ray cluster, or start a local instance for one run, and leave no process of it behind.

    address None         -> a local instance sized to this machine (all its CPUs, GPUs found by Ray),
                            watched by `reaper.Reaper`, shut down when the run ends or dies
    address "auto"       -> the cluster `ray start --head` started on this machine
    address "host:port"  -> an existing cluster's head (`ray start --head` there, `ray start --address` on workers)
    already connected    -> that connection (a notebook, the test session), left open afterwards
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

from edge_emotion.deps import require
from edge_emotion.errors import EdgeEmotionError
from edge_emotion.ray.reaper import Reaper


def require_ray() -> ModuleType:
    """`ray` with Ray Data, or a MissingDependencyError naming the extra to install."""
    ray = require("ray")
    require("ray.data")
    return ray


@dataclass(frozen=True)
class RayOptions:
    """Where the pipeline runs and how many actors it uses; the defaults size it to the cluster."""

    address: str | None = None  # None: start a local instance; "auto" or host:port: join a cluster
    num_cpus: int | None = None  # CPUs of a local instance (None: this machine's)
    preprocess_actors: int | None = None  # None: the cluster's CPUs less one per backend actor
    backend_actors: int | None = None  # None: one per GPU, or one on a CPU when the cluster has no GPU


@dataclass(frozen=True)
class Resources:
    """What the cluster offers this run, in Ray's logical units."""

    cpus: int
    gpus: int
    nodes: int
    started_here: bool  # a local instance this run started (and stops)


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Resources]:
    """Connect for the duration of the block; a local instance started here ends with it (or with this process)."""
    ray = require_ray()
    if ray.is_initialized():
        _quiet_ray_data()
        yield _resources(ray, started_here=False)
        return
    reaper = Reaper.start() if address is None else None
    try:
        _init(ray, address, num_cpus)
        if reaper is not None:
            reaper.sync()
        _quiet_ray_data()
        try:
            yield _resources(ray, started_here=address is None)
        finally:
            ray.shutdown()
    finally:
        if reaper is not None:
            reaper.stop()


def _init(ray: ModuleType, address: str | None, num_cpus: int | None) -> None:
    """ray.init, with failures to reach a cluster as one line naming the address."""
    common = {"log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address is None:
            # "local": a new instance even where RAY_ADDRESS or a `ray start` cluster on this machine exists
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, **common)
        else:
            _probe(address)
            ray.init(address=address, **common)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = "start a local Ray instance" if address is None else f"join the Ray cluster at {address}"
        raise EdgeEmotionError(f"cannot {where}: {_first_line(exc)}") from exc


def _probe(address: str, timeout: float = 5.0) -> None:
    """Refuse a host:port where nothing listens: ray.init would retry it for minutes, printing warnings."""
    if address == "auto" or "://" in address:
        return  # Ray finds (or fails to find) these itself, quickly
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"the address must be host:port (e.g. 10.0.0.1:6379) or auto, got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(
            f"nothing answers there ({exc.strerror or exc}); start the head with `ray start --head`"
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _quiet_ray_data() -> None:
    """The command prints its own progress: no Ray Data progress bars or per-run banners on the console."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # "progress bars disabled" is a warning


def _resources(ray: ModuleType, started_here: bool) -> Resources:
    total = ray.cluster_resources()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return Resources(int(total.get("CPU", 0)), int(total.get("GPU", 0)), len(nodes), started_here)


def task_error(exc: Exception) -> Exception:
    """The error a Ray task raised (an EdgeEmotionError stays itself), else a one-line EdgeEmotionError."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, EdgeEmotionError):
        return cause
    text = str(cause if cause is not None else exc).strip().splitlines()
    return EdgeEmotionError(f"the Ray pipeline failed: {text[-1] if text else type(exc).__name__}")
