"""Checks of the paths a command is given, before any heavy import or minutes of work.

Each check raises typer.BadParameter naming the option and the path and saying
what is wrong (missing, a directory where a file belongs, the wrong kind of
file, a suffix the command cannot write); the error boundary prints it as one
line. Light: no torch, no av, no onnxruntime.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import typer

from edge_emotion.io.filekind import ARTIFACT_SUFFIXES, describe, sniff
from edge_emotion.io.scan import DEFAULT_EXTENSIONS

DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def device_name(device: str, option: str = "--device") -> str:
    """auto, cpu, mps, cuda or cuda:N; anything else is refused before a backend tries to parse it."""
    if not DEVICE_PATTERN.fullmatch(device):
        raise typer.BadParameter(f"{device!r}: not a device; use auto, cpu, cuda or cuda:N", param_hint=option)
    return device


def scoring_device(device: str, option: str = "--device") -> str:
    """A device name, and cuda:N only where this machine has N + 1 CUDA devices (counted through libcudart, no
    torch), so a wrong index is a usage error here, not a backend's failure after the model has loaded."""
    device_name(device, option)
    prefix, _, index = device.partition(":")
    if prefix == "cuda" and index:
        from edge_emotion.backends.cuda_runtime import visible_devices

        if int(index) >= (count := visible_devices()):
            raise typer.BadParameter(f"{device!r}: {count} CUDA device(s) here; use --device cpu or auto", param_hint=option)
    return device


def backend_name(name: str | None, option: str = "--backend") -> str | None:
    """One of the backends, or None (chosen by the artifact's kind)."""
    from edge_emotion.backends import BACKENDS

    if name is not None and name not in BACKENDS:
        raise typer.BadParameter(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}", param_hint=option)
    return name


def _bad(path: Path, option: str, cause: str) -> typer.BadParameter:
    return typer.BadParameter(f"{path}: {cause}", param_hint=option)


def existing_file(path: Path, option: str) -> Path:
    """`path` is a regular file (following symlinks), else BadParameter saying what it is instead."""
    kind = sniff(path)
    if kind in ("missing", "directory", "special"):
        raise _bad(path, option, describe(kind) + ("" if kind == "missing" else ", not a file"))
    return path


def existing_dir(path: Path, option: str) -> Path:
    """`path` is a directory."""
    if not path.is_dir():
        raise _bad(path, option, "no such folder" if not path.exists() else "not a folder")
    return path


def video_source(path: Path, option: str, extensions: Sequence[str] = DEFAULT_EXTENSIONS) -> Path:
    """A folder holding at least one video (searched recursively), or one video file."""
    from edge_emotion.io.scan import find_videos

    if not path.exists() and not path.is_symlink():
        raise _bad(path, option, "no such file or folder")
    if path.is_dir() and not find_videos(path, extensions):
        raise _bad(path, option, f"no videos in this folder (looked for {', '.join(extensions)})")
    return path


def artifact(path: Path, option: str, kinds: Iterable[str] = ARTIFACT_SUFFIXES) -> Path:
    """A model artifact of one of `kinds` (checkpoint, onnx, engine), judged by suffix and by content."""
    kinds = tuple(kinds)
    named = [f"{describe(k)} ({ARTIFACT_SUFFIXES[k]})" for k in kinds]
    wanted = " or ".join([", ".join(named[:-1]), named[-1]] if len(named) > 1 else named)
    existing_file(path, option)
    found = sniff(path)
    by_suffix = next((k for k, s in ARTIFACT_SUFFIXES.items() if path.suffix.lower() == s), None)
    if found in ARTIFACT_SUFFIXES and found not in kinds:
        raise _bad(path, option, f"{describe(found)}; this takes {wanted}{_hint(found, kinds)}")
    if found == "video" or (found in ("empty", "unknown") and by_suffix is None):
        raise _bad(path, option, f"{describe(found)}, not a model; this takes {wanted}")
    if by_suffix is None or by_suffix not in kinds:
        raise _bad(path, option, f"unexpected suffix {path.suffix or '(none)'!r}; this takes {wanted}")
    if found in ARTIFACT_SUFFIXES and found != by_suffix:
        raise _bad(path, option, f"{describe(found)} named {path.suffix}: rename it to {ARTIFACT_SUFFIXES[found]}")
    return path  # an empty or unreadable file of the right suffix: its loader says precisely what is wrong


def _hint(found: str, kinds: tuple[str, ...]) -> str:
    if found != "checkpoint" and kinds == ("checkpoint",):
        return ": give the checkpoint.pt it was exported from"
    if found == "checkpoint" and "checkpoint" not in kinds:
        return ": export it first (edge-emotion export CKPT)"
    return ""


def output_file(path: Path, option: str, suffixes: Sequence[str] | None = None) -> Path:
    """A file this command may write: not a directory, its folder not a file, and one of `suffixes` if given."""
    if path.is_dir():
        raise _bad(path, option, "is a directory; give a file name")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise _bad(path, option, f"the file must end in {' or '.join(suffixes)}")
    _parent_not_file(path, option)
    return path


def output_dir(path: Path, option: str) -> Path:
    """A folder this command may create or fill: not an existing file."""
    if path.exists() and not path.is_dir():
        raise _bad(path, option, "exists and is not a folder")
    _parent_not_file(path, option)
    return path


def _parent_not_file(path: Path, option: str) -> None:
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise _bad(path, option, f"{parent} is a file, not a folder")
            return
