"""How to window a stream (`stream`'s options) and the check of those only a stream has, before a source opens."""

from __future__ import annotations

from dataclasses import dataclass

from edge_emotion import defaults
from edge_emotion.preprocess.people import WhichFaces

DEFAULT_TIMEOUT_S = defaults.STREAM_TIMEOUT_S


@dataclass(frozen=True)
class StreamOptions:
    """How to window a stream; the model's own preprocessing comes from the artifact's contract."""

    window: float | None = None  # seconds per event; None: timeline.window_options.default_window(contract)
    hop: float | None = None  # seconds between events, a multiple of window / N, at most the window; None: default_hop
    realtime: bool = False  # pace the source at its own timestamps (a file behaves like a live source)
    duration: float | None = None  # stop after this many stream seconds
    timeout: float = DEFAULT_TIMEOUT_S  # no data for this long: the source stalled or was lost
    reconnect: bool = False  # reopen a lost source instead of ending
    faces: WhichFaces = "largest"  # one event per window for its main person, or one per person


def check_options(options: StreamOptions, is_file: bool) -> None:
    """ValueError naming the option for values only a stream has that cannot work (W and H: window_options)."""
    if options.timeout <= 0:
        raise ValueError(f"--timeout must be positive, got {options.timeout}")
    if options.duration is not None and options.duration <= 0:
        raise ValueError(f"--duration must be positive, got {options.duration}")
    if options.reconnect and is_file:
        raise ValueError("--reconnect is for network sources and devices; a file ends where it ends")
