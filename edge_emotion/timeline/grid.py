"""One segment grid over a whole recording: each segment scored once, windows as sums of N consecutive segments.

The paper's clip score is the sum of its N segments' probabilities (run/consensus.py). Put segments of
one length L = W / N on a single grid from the first frame of each epoch (a stretch of video without a
hole longer than defaults.VIDEO_GAP_S, io/frame_times.py): a window of W seconds that starts at grid
segment s is segments s .. s+N-1, and windows every hop H (a multiple of L) share their segments, so
each segment goes through faces, spectrogram and the backend once, whatever the hop. Windows never
reach across a hole in the video; a hole's seconds have no windows.

Time is the timestamp (preprocess/plan.py's rule): segment j of an epoch starting at t0 is the instant
t0 + (j + 1/2) L; its frame is the frame on screen then, and its audio window is centred on that frame's
timestamp. On a constant-rate file that is frame floor((j + 1/2) l) with l = L x fps and c = frame / fps:
when l is a whole number of frames, window k holds exactly the frames and audio centres (shifted by the
cut's start) that `predict` plans for a file cut to frames [s l, (s+N) l).

A recording too short for one window gets one window over all of it, planned as `score` plans a clip
(plan_segments over the whole file), so short clips keep their numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edge_emotion.io.frame_times import FrameTimes
from edge_emotion.preprocess.plan import Segment, plan_segments, segments_at
from edge_emotion.timeline.window_options import segments_per_hop

SNAP = 1e-6  # a segment length within this many frames (or segments) of a whole number is that whole number


@dataclass(frozen=True)
class SegmentGrid:
    """Segments of `segment_frames` frames from frame 0; window k is segments k x hop .. k x hop + n - 1."""

    n: int  # segments per window (the model's N)
    segment_frames: float  # l = L x fps; may be fractional (then windows are not whole-frame cuts)
    hop: int  # segments from one window's start to the next one's
    fps: float

    @property
    def segment_s(self) -> float:
        return self.segment_frames / self.fps

    def instant(self, j: np.ndarray | int) -> np.ndarray:
        """[S] grid indices -> [S] seconds from the epoch's start of each segment's middle: where its frame is taken."""
        return (np.asarray(j, np.float64) + 0.5) * self.segment_s

    def segment_count(self, duration: float) -> int:
        """Whole grid segments in `duration` seconds of video."""
        return int(math.floor(duration / self.segment_s + SNAP))

    def window_count(self, duration: float) -> int:
        """Windows that lie wholly inside `duration` seconds of video (0 when shorter than one window)."""
        segments = self.segment_count(duration)
        return 0 if segments < self.n else (segments - self.n) // self.hop + 1

    def window_times(self, k: int) -> tuple[float, float]:
        """Window k's start and end, seconds from the recording's first frame."""
        first = k * self.hop
        return first * self.segment_s, (first + self.n) * self.segment_s


def make_grid(n: int, window_s: float, hop_s: float, fps: float) -> SegmentGrid:
    """The grid of windows of `window_s` every `hop_s` seconds over a video of `fps` frames per second."""
    hop = segments_per_hop(n, window_s, hop_s)
    if fps <= 0:
        raise ValueError(f"need a positive frame rate, got fps={fps}")
    frames = window_s / n * fps
    if abs(frames - round(frames)) < SNAP:
        frames = float(round(frames))
    return SegmentGrid(n, frames, hop, float(fps))


@dataclass(frozen=True)
class WindowSpan:
    """One window of a timeline: its number, where its N segments start in Timeline.segments, its time span."""

    index: int  # k: the window's place in the recording (0, 1, 2, ... over every epoch)
    first: int  # its segments are Timeline.segments[first : first + n]
    t_start: float  # seconds from the recording's first frame
    t_end: float
    epoch: int = 0  # the stretch of video it lies in (a hole in the video starts the next)


@dataclass(frozen=True)
class Timeline:
    """What to score in one recording: each needed segment once, in time order, and the windows over them."""

    n: int
    fps: float
    segments: list[Segment]  # every segment some window uses, in time order
    grid_index: list[int]  # per segment its grid index j (0 .. N-1 for a short recording's one window)
    windows: list[WindowSpan]
    whole_file: bool = False  # shorter than one window: one window over all of it, planned as `score` plans a clip
    epochs: list[int] = field(default_factory=list)  # [S] per segment its epoch (a gap in the video starts the next); [] = all 0

    def epoch(self, position: int) -> int:
        """The epoch of the segment at `position`: segments of different epochs never lend each other a box."""
        return self.epochs[position] if self.epochs else 0

    @property
    def firsts(self) -> np.ndarray:
        """[W] position of each window's first segment."""
        return np.array([w.first for w in self.windows], np.int64)


def whole_file(n: int, times: FrameTimes) -> Timeline:
    """One window over the whole file, its N segments planned as `score` plans a clip: a clip's timeline."""
    segments = plan_segments(n, times, "test")
    return Timeline(n, times.rate, segments, list(range(n)), [WindowSpan(0, 0, 0.0, times.duration)], True)


def plan_timeline(grid: SegmentGrid, times: FrameTimes) -> Timeline:
    """The segments and windows of a recording whose frames are shown at `times` (test mode, deterministic).

    Each epoch gets its own grid from its first frame; only segments inside some window are planned (with
    a hop longer than the window the gaps cost nothing). A recording of one epoch shorter than one window
    is one window over all of it, planned as `score` plans a clip; a shorter epoch among others has none.
    """
    if times.count < 1:
        raise ValueError("need frames, got none")
    epochs = times.epochs()
    if len(epochs) == 1 and grid.window_count(times.duration) == 0:
        return whole_file(grid.n, times)
    segments: list[Segment] = []
    grid_index: list[int] = []
    epoch_of: list[int] = []
    windows: list[WindowSpan] = []
    for e, frames in enumerate(epochs):
        t0, t1 = times.span(frames)
        count = grid.window_count(t1 - t0)
        starts = np.arange(count) * grid.hop  # [W] grid index of each window's first segment
        needed = np.unique((starts[:, None] + np.arange(grid.n)).ravel())  # [S] sorted grid indices
        firsts = len(segments) + np.searchsorted(needed, starts)  # [W] positions in the timeline
        for k, p in enumerate(firsts):
            start, end = grid.window_times(k)
            windows.append(WindowSpan(len(windows), int(p), t0 + start, t0 + end, e))
        segments += segments_at(times, t0 + grid.instant(needed))
        grid_index += needed.tolist()
        epoch_of += [e] * len(needed)
    return Timeline(grid.n, grid.fps, segments, grid_index, windows, epochs=epoch_of)


def window_sums(values: np.ndarray, firsts: np.ndarray, n: int) -> np.ndarray:
    """[S, ...] per-segment values -> [W, ...] sums over each window's n consecutive segments.

    Each window's sum is taken over its own n rows (a view of them, no copy of the timeline), never by
    adding and subtracting along the recording, so an hour of segments gathers no rounding error.
    """
    values = np.asarray(values)
    if not len(firsts):
        return np.zeros((0, *values.shape[1:]), values.dtype)
    if firsts.min() < 0 or firsts.max() + n > len(values):
        raise ValueError(f"windows of {n} segments from {firsts.min()} to {firsts.max()} exceed {len(values)} segments")
    rolling = np.lib.stride_tricks.sliding_window_view(values, n, axis=0)  # [S-n+1, ..., n]
    return rolling[firsts].sum(axis=-1)


def window_probabilities(segment_probs: np.ndarray, timeline: Timeline) -> np.ndarray:
    """[S, K] segment probabilities -> [W, K] window probabilities: the consensus sum over N, divided by N."""
    return window_sums(segment_probs, timeline.firsts, timeline.n) / timeline.n


def window_counts(flags: np.ndarray, timeline: Timeline) -> np.ndarray:
    """[S] bool per segment (faceless, silent) -> [W] how many of each window's segments have it."""
    return window_sums(np.asarray(flags, np.int64), timeline.firsts, timeline.n)


def windows_complete(timeline: Timeline, scored: int) -> list[WindowSpan]:
    """The windows whose segments are all among the first `scored` (segments are scored in time order)."""
    return [w for w in timeline.windows if w.first + timeline.n <= scored]
