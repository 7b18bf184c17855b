"""Exception types: every failure names the file and the cause, so one bad input never hides."""

from __future__ import annotations

from pathlib import Path


class EdgeEmotionError(Exception):
    """Base class of every error this package raises on purpose."""


class VideoError(EdgeEmotionError):
    """A video file cannot be used: unreadable, not a video, missing a stream, no frames."""

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


class ArtifactError(EdgeEmotionError):
    """A model artifact (checkpoint, ONNX, engine) is missing, corrupt, untrusted or mismatched."""

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


class MissingDependencyError(EdgeEmotionError, ImportError):
    """An optional dependency is not installed; the message says how to install it."""
