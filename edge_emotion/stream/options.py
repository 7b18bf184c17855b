"""How to window a stream (`stream`'s options) and the check that they can work, before a source opens."""

from __future__ import annotations

from dataclasses import dataclass

from edge_emotion import defaults
from edge_emotion.preprocess.people import WhichFaces

DEFAULT_HOP_S = defaults.STREAM_HOP_S
DEFAULT_TIMEOUT_S = defaults.STREAM_TIMEOUT_S


@dataclass(frozen=True)
class StreamOptions:
    """How to window a stream; the model's own preprocessing comes from the artifact's contract."""

    window: float | None = None  # seconds per event; None: default_window(contract)
    hop: float = DEFAULT_HOP_S  # seconds between events
    realtime: bool = False  # pace the source at its own timestamps (a file behaves like a live source)
    duration: float | None = None  # stop after this many stream seconds
    timeout: float = DEFAULT_TIMEOUT_S  # no data for this long: the source stalled or was lost
    reconnect: bool = False  # reopen a lost source instead of ending
    faces: WhichFaces = "largest"  # one event per window for the largest person, or one per person


def check_options(options: StreamOptions, window: float, is_file: bool) -> None:
    """ValueError naming the option for values that cannot work."""
    if window <= 0:
        raise ValueError(f"--window must be positive, got {window}")
    if not 0 < options.hop <= window:
        raise ValueError(f"--hop must be positive and at most the window ({window:g} s), got {options.hop}")
    if options.timeout <= 0:
        raise ValueError(f"--timeout must be positive, got {options.timeout}")
    if options.duration is not None and options.duration <= 0:
        raise ValueError(f"--duration must be positive, got {options.duration}")
    if options.reconnect and is_file:
        raise ValueError("--reconnect is for network sources and devices; a file ends where it ends")
