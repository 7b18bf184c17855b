"""Plan the N temporal segments of a clip: which frame and which audio centre each one uses.

Pure functions, in the spirit of TSN's `_sample_indices` / `_get_test_indices`, in time (io/frame_times.py):
the clip's duration D is cut into N equal spans; test mode takes each span's middle instant, train mode a
uniform instant in it; the segment's frame is the frame on screen then, and its audio window is centred on
that frame's timestamp (train mode: plus a jitter uniform in [-b, b]), so face and voice are of one instant
whatever the frame rate does. On a constant-rate file this is the paper's plan: middle frame j = floor((i +
1/2) F / N), c = j / fps. A segment whose instant lies in a hole in the video (after the last frame before a gap
over VIDEO_GAP_S stops being shown) is marked `video=False`: scored, and counted, as without video.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from edge_emotion.io.frame_times import FrameTimes

Mode = Literal["train", "test"]


@dataclass(frozen=True)
class Segment:
    """One temporal segment: a frame index into the video and the audio window's centre."""

    frame: int
    centre: float  # seconds from the start of the clip (the frame's timestamp, plus train mode's jitter)
    video: bool = True  # False: no frame near the segment's instant (a hole in the video); the frame is the last before it


def segments_at(times: FrameTimes, instants: np.ndarray) -> list[Segment]:
    """[S] instants (seconds from the first frame) -> the segment of each: the frame on screen, centred on its time,
    marked without video where the instant lies in a hole (FrameTimes.in_hole: where an epoch of the grid ends)."""
    frames = times.shown_at(instants)  # [S]
    hole = times.in_hole(frames, instants)  # [S]
    return [Segment(int(f), float(times.t[f]), not h) for f, h in zip(frames, hole)]


def plan_segments(
    n: int,
    times: FrameTimes,
    mode: Mode = "test",
    rng: np.random.Generator | None = None,
    jitter: float = 0.01,
) -> list[Segment]:
    """Return N segments in time order; with fewer frames than N, segments share frames."""
    if n < 1:
        raise ValueError(f"need at least one segment, got n={n}")
    if times.count < 1 or times.rate <= 0:
        raise ValueError(f"need frames and a frame rate, got {times.count} frames at {times.rate} fps")
    edges = np.linspace(0.0, times.duration, n + 1)  # [N+1] span borders in seconds
    if mode == "test":
        instants = (edges[:-1] + edges[1:]) / 2
    elif mode == "train":
        if rng is None:
            raise ValueError("train mode needs an rng (np.random.default_rng(seed))")
        instants = rng.uniform(edges[:-1], edges[1:])
    else:
        raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
    segments = segments_at(times, instants)
    if mode == "train":
        offsets = rng.uniform(-jitter, jitter, size=n)  # type: ignore[union-attr]
        segments = [Segment(s.frame, s.centre + float(o), s.video) for s, o in zip(segments, offsets)]
    return segments
