"""Window W, hop H and the model's N: their defaults and their refusals, once for every driver.

`score --window` (timeline/score.py) and `stream` (stream/run.py) resolve their options here, and so do
their commands before any file is opened; the CLI turns a GridError into one line naming its option (exit 2).
It lives beside grid.py, not in it, because it is about options, not planning: the stream imports the
timeline package already, so this is the one place both drivers can reach without a new dependency.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_emotion import defaults
from edge_emotion.config import PreprocessConfig

HOP_TOLERANCE = 1e-4  # a hop within this fraction of a segment of a multiple of L is that multiple


class GridError(ValueError):
    """A window and hop that make no grid; `option` is the command-line option to name in the one-line refusal."""

    def __init__(self, message: str, option: str = "--hop") -> None:
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class Windowing:
    """W and H in seconds, checked against N: windows of n segments of W / N every `hop_segments` segments."""

    window: float
    hop: float
    n: int
    hop_segments: int


def default_window(config: PreprocessConfig) -> float:
    """Seconds per window when none is given: 0.25 s per segment, at least one audio window."""
    return round(max(config.n_segments * defaults.STREAM_SECONDS_PER_SEGMENT, config.audio.window_s), 3)


def default_hop(segment_s: float) -> float:
    """Seconds between windows when none is given: the multiple of the segment length nearest to 0.5 s."""
    return max(1, round(defaults.STREAM_HOP_S / segment_s)) * segment_s


def segments_per_hop(n: int, window_s: float, hop_s: float) -> int:
    """Segments from one window's start to the next one's; GridError when the hop is not a multiple of W / N."""
    if n < 1:
        raise GridError(f"need at least one segment per window, got n={n}")
    if window_s <= 0:
        raise GridError(f"--window must be positive, got {window_s:g}", "--window")
    if hop_s <= 0:
        raise GridError(f"--hop must be positive, got {hop_s:g}")
    segment_s = window_s / n
    ratio = hop_s / segment_s
    if round(ratio) < 1 or abs(ratio - round(ratio)) > HOP_TOLERANCE:
        raise GridError(
            f"hop {hop_s:g} s is not a multiple of the segment length {segment_s:g} s (window {window_s:g} s / "
            f"N = {n}): use {segment_s:g} s or a multiple of it"
        )
    return int(round(ratio))


def resolve_windowing(config: PreprocessConfig, window: float | None, hop: float | None) -> Windowing:
    """W and H from the options or their defaults; GridError for a pair no driver can window.

    A hop longer than the window is refused for every driver. On a file its gaps would cost nothing (the
    grid plans no segment there), but a live source is decoded whole and its segments computed as they
    arrive, its tracker following faces through the gap, so a gap would save only backend calls while
    `stream`'s numbers stopped equalling `score --window`'s on the same file (the two trackers would see
    different frames). Windows that tile or overlap the recording also leave no stretch of it in no row,
    which a timeline or a plot would read as scored.
    """
    window = default_window(config) if window is None else window
    if window <= 0:
        raise GridError(f"--window must be positive, got {window:g}", "--window")
    hop = default_hop(window / config.n_segments) if hop is None else hop
    if hop > window * (1 + HOP_TOLERANCE):
        raise GridError(f"--hop must be at most the window ({window:g} s), got {hop:g}")
    return Windowing(window, hop, config.n_segments, segments_per_hop(config.n_segments, window, hop))
