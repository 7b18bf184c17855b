"""How to window a stream (`stream`'s options) and the check that they can work, before a source opens."""

from __future__ import annotations

from dataclasses import dataclass

from edge_emotion import defaults
from edge_emotion.preprocess.people import WhichFaces
from edge_emotion.timeline.grid import default_hop, segments_per_hop

DEFAULT_TIMEOUT_S = defaults.STREAM_TIMEOUT_S


@dataclass(frozen=True)
class StreamOptions:
    """How to window a stream; the model's own preprocessing comes from the artifact's contract."""

    window: float | None = None  # seconds per event; None: timeline.grid.default_window(contract)
    hop: float | None = None  # seconds between events, a multiple of window / N; None: timeline.grid.default_hop
    realtime: bool = False  # pace the source at its own timestamps (a file behaves like a live source)
    duration: float | None = None  # stop after this many stream seconds
    timeout: float = DEFAULT_TIMEOUT_S  # no data for this long: the source stalled or was lost
    reconnect: bool = False  # reopen a lost source instead of ending
    faces: WhichFaces = "largest"  # one event per window for its main person, or one per person


def resolve_hop(options: StreamOptions, window: float, n_segments: int) -> float:
    """The hop in seconds: the option, or the multiple of the segment length W / N nearest to 0.5 s."""
    return default_hop(window / n_segments) if options.hop is None else options.hop


def check_options(options: StreamOptions, window: float, n_segments: int, is_file: bool) -> None:
    """ValueError naming the option for values that cannot work; timeline.grid.GridError (a ValueError) for a hop
    that is not a multiple of the segment length W / N."""
    if window <= 0:
        raise ValueError(f"--window must be positive, got {window}")
    hop = resolve_hop(options, window, n_segments)
    if not 0 < hop <= window:
        raise ValueError(f"--hop must be positive and at most the window ({window:g} s), got {hop:g}")
    segments_per_hop(n_segments, window, hop)
    if options.timeout <= 0:
        raise ValueError(f"--timeout must be positive, got {options.timeout}")
    if options.duration is not None and options.duration <= 0:
        raise ValueError(f"--duration must be positive, got {options.duration}")
    if options.reconnect and is_file:
        raise ValueError("--reconnect is for network sources and devices; a file ends where it ends")
