"""When each video frame is shown: presentation timestamps as seconds, the one time model of every driver.

Phones and screen recorders write variable frame rates, and files have holes in their video; a frame's index
divided by the average rate then puts a face up to seconds away from its voice. So time is the timestamp:

- `from_pts`: the video packets' timestamps, sorted (display order), as seconds from the first frame, through
  `on_rate`: a frame whose timestamp lies within a tenth of a frame of `index / rate` is taken to be at
  exactly that time. That is the container's rounding undone (the CREMA-D FLVs keep whole milliseconds, up to
  1.25 ms off k / 29.97), so a constant-rate file has the times k / rate that the paper's plan and every
  earlier release used, and a live source (stream/source.py) read from the same file gets the same times.
  A variable rate or a hole in the video is far from index / rate and keeps its timestamps.
- `shown_at(t)`: the frame on screen at time t (the newest frame at or before it). On a constant-rate file that
  is the frame floor(t x fps) that the paper's test plan (preprocess/plan.py) takes.
- `epochs(limit)`: the spans of video without a gap longer than `limit` (defaults.VIDEO_GAP_S). Windows are
  made within an epoch, never from frames on the other side of a gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_emotion import defaults

SNAP_S = 1e-6  # a time this close to a frame's timestamp is at it (float noise in t = (j + 1/2) L and the like)
ON_RATE_TOLERANCE = 0.1  # frames: a timestamp this close to index / rate is that time, rounded by its container


@dataclass(frozen=True, eq=False)
class FrameTimes:
    """Seconds of each video frame from the first one, in display order; `rate` the stream's nominal frame rate."""

    t: np.ndarray  # [F] float64, non-decreasing, t[0] = 0
    rate: float

    @classmethod
    def constant(cls, count: int, rate: float) -> FrameTimes:
        """`count` frames evenly `1 / rate` apart (a file without timestamps, or a test)."""
        return cls(np.arange(count, dtype=np.float64) / rate, float(rate))

    @classmethod
    def from_pts(cls, pts: Sequence[int | None], time_base: float, rate: float) -> FrameTimes:
        """Video packets' timestamps (decode order, in `time_base` seconds) -> display-order seconds from the first.

        Without a timestamp on every packet the frames are taken as evenly spaced at `rate`."""
        count = len(pts)
        if not count or not time_base or any(p is None for p in pts):
            return cls.constant(count, rate)
        raw = np.sort(np.array(pts, dtype=np.int64))  # [F] display order
        seconds = (raw - raw[0]).astype(np.float64) * time_base  # [F]
        return cls(on_rate(seconds, np.arange(count), rate), float(rate))

    def __len__(self) -> int:
        return len(self.t)

    @property
    def count(self) -> int:
        return len(self.t)

    def interval(self, k: int) -> float:
        """How long frame k is on screen: to the next frame's time; the last one for the interval before it."""
        return float(self.t[k + 1] - self.t[k]) if k + 1 < len(self.t) else 1.0 / self.rate

    @property
    def duration(self) -> float:
        """Seconds from the first frame to the end of the last one."""
        return self.span((0, len(self.t)))[1] if len(self.t) else 0.0

    def shown_at(self, seconds: np.ndarray | float) -> np.ndarray:
        """[S] times -> [S] index of the frame on screen at each (the first frame for times before it)."""
        k = np.searchsorted(self.t, np.asarray(seconds, np.float64) + SNAP_S, side="right") - 1
        return np.clip(k, 0, len(self.t) - 1)

    def in_hole(self, frames: np.ndarray, instants: np.ndarray, limit: float = defaults.VIDEO_GAP_S) -> np.ndarray:
        """[S] frames on screen at [S] instants -> [S] whether the instant lies in a hole in the video: past the end
        of the epoch that frame closes (one nominal frame after it, as `span` ends it) and before the next one."""
        frames = np.asarray(frames)
        after = np.append(np.diff(self.t), 0.0)[frames]  # [S] time to the next frame (0 after the last one)
        return (after > limit) & (np.asarray(instants) >= self.t[frames] + 1.0 / self.rate - SNAP_S)

    def epochs(self, limit: float = defaults.VIDEO_GAP_S) -> list[tuple[int, int]]:
        """Frames [a, b) of each stretch of video without a gap longer than `limit` seconds, in time order."""
        breaks = (np.flatnonzero(np.diff(self.t) > limit) + 1).tolist()
        bounds = [0, *breaks, len(self.t)]
        return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]

    def span(self, frames: tuple[int, int]) -> tuple[float, float]:
        """Seconds [start, end) that frames [a, b) cover: the last one is shown for one frame at the nominal rate
        (not through the hole that may follow it; a stream ends an epoch at the same instant, stream/window.py)."""
        a, b = frames
        if self.t[b - 1] == (b - 1) / self.rate:
            return float(self.t[a]), b / self.rate  # on the rate: exactly b frames' time, as b / fps always was
        return float(self.t[a]), float(self.t[b - 1]) + 1.0 / self.rate


def on_rate(seconds: np.ndarray, index: np.ndarray, rate: float) -> np.ndarray:
    """[F] timestamps (seconds from the first frame) of frames number `index` -> the same, each one within
    ON_RATE_TOLERANCE of a frame of index / rate replaced by that exact value (the container's rounding undone)."""
    nominal = np.asarray(index, np.float64) / rate  # [F]
    return np.where(np.abs(seconds - nominal) <= ON_RATE_TOLERANCE / rate, nominal, seconds)
