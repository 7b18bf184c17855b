"""The segment grid on the stream clock: timeline/grid.py's SegmentGrid, anchored at an epoch's first frame.

An epoch (the run's start, a reconnect, a gap in the video) starts at its first video frame, t0. Its
segments are timeline/grid.py's grid of L = W / N in time: segment j's slot is its middle instant
t0 + (j + 1/2) L, its frame the one on screen then (the newest decoded frame at or before the slot), its
audio window centred on that frame's timestamp; window k is segments k x hop .. k x hop + N - 1 over
[t0 + k x hop x L, t0 + (k x hop + N) x L). No frame within defaults.VIDEO_GAP_S before a slot is a gap:
a new epoch. A segment is complete once the video has reached its last frame and the sound the end of
its audio window. On a file read from its first frame the segments are the file's: the frames and audio
centres `score --window W --hop H` plans for that file (the same timestamps, io/frame_times.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge_emotion import defaults
from edge_emotion.config import SpectrogramParams
from edge_emotion.io.frame_times import SNAP_S
from edge_emotion.timeline.grid import SNAP, SegmentGrid

__all__ = ["EpochGrid", "pick_slot"]


@dataclass(frozen=True)
class EpochGrid:
    """Where segment j and window k of one epoch lie on the stream clock (seconds) and in its sound (samples)."""

    grid: SegmentGrid
    t0: float  # stream seconds of the epoch's first video frame
    audio: SpectrogramParams

    @property
    def tolerance(self) -> float:
        return 0.5 / self.grid.fps

    @property
    def gap_s(self) -> float:
        """No frame for this long before a segment's slot or last frame: the video has a gap there (every driver's)."""
        return defaults.VIDEO_GAP_S

    def slot(self, j: int) -> float:
        """Segment j's middle instant: its frame is the one on screen then."""
        return self.t0 + float(self.grid.instant(j))

    def ends_in_hole(self, times: np.ndarray, j: int) -> bool:
        """[M] sorted frame times -> whether segment j ends after the frame before a hole (a gap over gap_s) stops being
        shown (one frame interval after it): io/frame_times.py's epochs end there, so a file's grid does too."""
        end = self.t0 + (j + 1) * self.grid.segment_s
        k = pick_slot(times, end, -SNAP_S)  # the frame on screen just before the segment's end
        return 0 <= k < len(times) - 1 and times[k + 1] - times[k] > self.gap_s and end > times[k] + 1 / self.grid.fps + SNAP_S

    def frame_index(self, times: np.ndarray, j: int) -> int:
        """[M] sorted frame times -> the frame on screen at segment j's slot (-1 when none is held)."""
        return pick_slot(times, self.slot(j), SNAP_S)

    def last_frame(self, j: int) -> float:
        """The time of segment j's last frame: a file holds segment j once it holds that frame (SegmentGrid.segment_count)."""
        return self.t0 + (math.ceil((j + 1) * self.grid.segment_frames - SNAP) - 1) / self.grid.fps

    def sample(self, t: float) -> int:
        """The sound's sample index of stream time t (samples count from stream time 0)."""
        return round(t * self.audio.sample_rate)

    def audio_at(self, centre: float) -> tuple[int, int]:
        """Samples [a, b) of the audio window centred at stream time `centre`, as preprocess.audio.audio_windows cuts it."""
        a = self.sample(centre) - self.audio.window_samples // 2
        return a, a + self.audio.window_samples

    def audio_span(self, j: int) -> tuple[int, int]:
        """Samples [a, b) that segment j's audio window may need: centred at its slot, the latest its frame can be."""
        return self.audio_at(self.slot(j))

    def last_slot_at(self, t: float) -> int:
        """The last segment whose slot is at or before t (-1 when none)."""
        return _last_at(self.slot, t, self._guess(t))

    def last_covered_at(self, t: float) -> int:
        """The last segment whose last frame is at or before t (-1 when none)."""
        return _last_at(self.last_frame, t, self._guess(t) - 1)

    def last_audio_at(self, sample: int) -> int:
        """The last segment whose whole audio window lies before sample index `sample` (-1 when none)."""
        reach = self.audio.window_samples - self.audio.window_samples // 2  # samples from the centre to the window's end
        return _last_at(lambda j: self.audio_span(j)[1], sample, self.last_slot_at((sample - reach) / self.audio.sample_rate))

    def _guess(self, t: float) -> int:
        return math.floor((t - self.t0) * self.grid.fps / self.grid.segment_frames - 0.5)

    def segments(self, k: int) -> range:
        first = k * self.grid.hop
        return range(first, first + self.grid.n)

    def window_times(self, k: int) -> tuple[float, float]:
        start, end = self.grid.window_times(k)
        return self.t0 + start, self.t0 + end

    def last_window_through(self, j: int) -> int:
        """The last window whose segments are all at or before segment j (-1 when none)."""
        return -1 if j < self.grid.n - 1 else (j - self.grid.n + 1) // self.grid.hop


def _last_at(value: Callable[[int], float], t: float, guess: int) -> int:
    """The largest j >= -1 with value(j) <= t, for a value increasing in j, searched from a guess."""
    j = max(-1, guess)
    while j >= 0 and value(j) > t:
        j -= 1
    while value(j + 1) <= t:
        j += 1
    return j


def pick_slot(times: np.ndarray, slot: float, tolerance: float) -> int:
    """[M] sorted frame times -> index of the newest frame at or before `slot` (+ tolerance); -1 when none is."""
    return int(np.searchsorted(times, slot + tolerance, side="right")) - 1
