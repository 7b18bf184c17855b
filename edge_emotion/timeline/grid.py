"""One segment grid over a whole recording: each segment scored once, windows as sums of N consecutive segments.

The paper's clip score is the sum of its N segments' probabilities (run/consensus.py). Put segments of
one length L = W / N on a single grid from the recording's first frame: a window of W seconds that
starts at grid segment s is segments s .. s+N-1, and windows every hop H (a multiple of L) share their
segments, so each segment goes through faces, spectrogram and the backend once, whatever the hop.

The conventions are test mode's in preprocess/plan.py: segment j covers frames [j l, (j+1) l) with
l = L x fps, its frame is the middle one, floor((j + 1/2) l), and its audio centre is c = frame / fps.
When l is a whole number of frames, window k holds exactly the frames and audio centres (shifted by
the cut's start) that `predict` plans for a file cut to frames [s l, (s+N) l).

A recording too short for one window gets one window over all of it, planned as `score` plans a clip
(plan_segments over the whole file), so short clips keep today's numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edge_emotion import defaults
from edge_emotion.config import PreprocessConfig
from edge_emotion.preprocess.plan import Segment, plan_segments

SECONDS_PER_SEGMENT = defaults.STREAM_SECONDS_PER_SEGMENT
SNAP = 1e-6  # a segment length within this many frames of a whole number is that whole number
HOP_TOLERANCE = 1e-4  # a hop within this fraction of a segment of a multiple of L is that multiple


def default_window(config: PreprocessConfig) -> float:
    """Seconds per window when none is given: 0.25 s per segment, at least one audio window (as `stream`)."""
    return round(max(config.n_segments * SECONDS_PER_SEGMENT, config.audio.window_s), 3)


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

    def frames(self, j: np.ndarray) -> np.ndarray:
        """[S] grid indices -> [S] frame of each segment: the middle one, as plan.py's test mode takes it."""
        return np.floor((np.asarray(j, np.int64) + 0.5) * self.segment_frames + SNAP).astype(np.int64)

    def segment(self, j: int) -> Segment:
        """Grid segment j: its frame and its audio centre c = frame / fps (seconds from the recording's start)."""
        frame = int(self.frames(np.array([j]))[0])
        return Segment(frame, frame / self.fps)

    def segment_count(self, frame_count: int) -> int:
        """Whole grid segments in a recording of `frame_count` frames."""
        return int(math.floor(frame_count / self.segment_frames + SNAP))

    def window_count(self, frame_count: int) -> int:
        """Windows that lie wholly inside the recording (0 when it is shorter than one window)."""
        segments = self.segment_count(frame_count)
        return 0 if segments < self.n else (segments - self.n) // self.hop + 1

    def window_times(self, k: int) -> tuple[float, float]:
        """Window k's start and end, seconds from the recording's first frame."""
        first = k * self.hop
        return first * self.segment_s, (first + self.n) * self.segment_s


def default_hop(segment_s: float) -> float:
    """Seconds between windows when none is given: the multiple of the segment length nearest to `stream`'s hop."""
    return max(1, round(defaults.STREAM_HOP_S / segment_s)) * segment_s


class GridError(ValueError):
    """A window and hop that make no grid (the CLI reports it as a bad option)."""


def segments_per_hop(n: int, window_s: float, hop_s: float) -> int:
    """Segments from one window's start to the next one's; GridError when the hop is not a multiple of W / N."""
    if n < 1:
        raise GridError(f"need at least one segment per window, got n={n}")
    if window_s <= 0 or hop_s <= 0:
        raise GridError(f"window and hop must be positive, got window {window_s:g} s and hop {hop_s:g} s")
    segment_s = window_s / n
    ratio = hop_s / segment_s
    if round(ratio) < 1 or abs(ratio - round(ratio)) > HOP_TOLERANCE:
        raise GridError(
            f"hop {hop_s:g} s is not a multiple of the segment length {segment_s:g} s (window {window_s:g} s / "
            f"N = {n}): use {segment_s:g} s or a multiple of it"
        )
    return int(round(ratio))


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

    index: int  # k: the window's place on the grid (0, 1, 2, ...)
    first: int  # its segments are Timeline.segments[first : first + n]
    t_start: float  # seconds from the recording's first frame
    t_end: float


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


def plan_timeline(grid: SegmentGrid, frame_count: int) -> Timeline:
    """The segments and windows of a recording of `frame_count` frames (test mode, deterministic).

    Only segments inside some window are planned: with a hop longer than the window the gaps cost nothing.
    """
    if frame_count < 1:
        raise ValueError(f"need frames, got frame_count={frame_count}")
    count = grid.window_count(frame_count)
    if count == 0:  # shorter than one window: one window over the whole recording, as `score` plans a clip
        segments = plan_segments(grid.n, frame_count, grid.fps, "test")
        return Timeline(grid.n, grid.fps, segments, list(range(grid.n)), [WindowSpan(0, 0, 0.0, frame_count / grid.fps)], True)
    starts = np.arange(count) * grid.hop  # [W] grid index of each window's first segment
    needed = np.unique((starts[:, None] + np.arange(grid.n)).ravel())  # [S] sorted grid indices
    frames = grid.frames(needed)  # [S]
    segments = [Segment(int(f), float(f) / grid.fps) for f in frames]
    firsts = np.searchsorted(needed, starts)  # [W] positions in `needed`
    windows = [WindowSpan(k, int(p), *grid.window_times(k)) for k, p in enumerate(firsts)]
    return Timeline(grid.n, grid.fps, segments, needed.tolist(), windows)


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
