"""Plan the N temporal segments of a clip: which frame and which audio centre each one uses.

Pure functions, in the spirit of TSN's `_sample_indices` / `_get_test_indices`:
train mode samples a random frame j inside each of N equal segments and an audio
centre uniform in [j/fps - b, j/fps + b]; test mode takes the middle frame and
c = j/fps, so scores are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Mode = Literal["train", "test"]


@dataclass(frozen=True)
class Segment:
    """One temporal segment: a frame index into the video and the audio window's centre."""

    frame: int
    centre: float  # seconds from the start of the clip


def plan_segments(
    n: int,
    frame_count: int,
    fps: float,
    mode: Mode = "test",
    rng: np.random.Generator | None = None,
    jitter: float = 0.01,
) -> list[Segment]:
    """Return N segments in time order; with fewer frames than N, segments share frames."""
    if n < 1:
        raise ValueError(f"need at least one segment, got n={n}")
    if frame_count < 1 or fps <= 0:
        raise ValueError(f"need frames and a frame rate, got frame_count={frame_count}, fps={fps}")
    edges = np.linspace(0.0, float(frame_count), n + 1)  # [N+1] segment borders in frames
    if mode == "test":
        positions = (edges[:-1] + edges[1:]) / 2
    elif mode == "train":
        if rng is None:
            raise ValueError("train mode needs an rng (np.random.default_rng(seed))")
        positions = rng.uniform(edges[:-1], edges[1:])
    else:
        raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
    frames = np.clip(np.floor(positions).astype(int), 0, frame_count - 1)  # [N]
    centres = frames / fps
    if mode == "train":
        centres = centres + rng.uniform(-jitter, jitter, size=n)
    return [Segment(int(f), float(c)) for f, c in zip(frames, centres)]
