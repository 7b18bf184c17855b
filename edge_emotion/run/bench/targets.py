"""Which backend runs which artifact: every requested backend gets a target, with the reason when it cannot run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_emotion.backends import BACKENDS, KIND_BY_SUFFIX, backend_for
from edge_emotion.deps import require
from edge_emotion.errors import MissingDependencyError

BACKEND_MODULES = {"torch": "torch", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt"}
SUFFIX_BY_BACKEND = {backend: suffix for suffix, backend in KIND_BY_SUFFIX.items()}


@dataclass(frozen=True)
class Target:
    """A backend and the artifact it should run, or the reason it cannot."""

    backend: str
    artifact: Path | None
    reason: str = ""


def plan_targets(artifacts: Sequence[Path], backends: Sequence[str] | None = None) -> list[Target]:
    """Pair requested backends with the artifacts of their kind (.pt torch, .onnx onnxruntime, .engine tensorrt).

    Without `backends`, each artifact runs on the backend its kind calls for.
    A requested backend without a matching artifact still gets a Target, with the reason.
    """
    if not backends:
        return [Target(backend_for(a), Path(a)) for a in artifacts]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend(s) {unknown}; choose from {list(BACKENDS)}")
    targets: list[Target] = []
    for backend in backends:
        mine = [Path(a) for a in artifacts if Path(a).suffix.lower() == SUFFIX_BY_BACKEND[backend]]
        if mine:
            targets += [Target(backend, a) for a in mine]
        else:
            targets.append(Target(backend, None, f"no {SUFFIX_BY_BACKEND[backend]} artifact given (-m model{SUFFIX_BY_BACKEND[backend]})"))
    return targets


def availability(backend: str) -> str:
    """'' if the backend's package imports, else the install hint."""
    try:
        require(BACKEND_MODULES[backend])
    except MissingDependencyError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a package that is installed but broken is 'unavailable' too
        return f"{BACKEND_MODULES[backend]} fails to import ({type(exc).__name__}: {exc})"
    return ""
