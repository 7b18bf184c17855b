"""Live streams: `edge-emotion stream` (a URL, a capture device or a paced file) -> one event per window and person,
on `score --window`'s segment grid and by its engine: each segment computed once, a window the sum of its last N.

    source.py     open a source, decode it in its own thread (the sound resampled there), one stream clock
    buffer.py     the bounded buffer between decoding and inference (drop, never queue)
    options.py    StreamOptions (window, hop, pacing, duration, timeout, reconnect, faces) and their check
    window.py     the segment grid of an epoch on the stream clock (timeline/grid.py's grid from its first frame)
    scheduler.py  which segments and window next; what to drop when inference falls behind; epochs
    segments.py   an epoch: a segment's faces and spectrogram (timeline/inputs.py, as a recording's), a window's new
                  crops through the one scorer (run/score.py) and its Results (run/result.py), people by the track
                  store's rules (preprocess/tracks.py)
    run.py        run_stream: opens the sources, starts the decode threads, runs the loop, stops them
    events.py     the sinks of results (JSON lines through run/codec.py), the summary
"""

from edge_emotion.stream.events import EventsFile, LineWriter, StreamSummary, read_events
from edge_emotion.stream.options import StreamOptions
from edge_emotion.stream.run import run_stream
from edge_emotion.stream.source import SourceError, SourceSpec

__all__ = [
    "EventsFile", "LineWriter", "SourceError", "SourceSpec", "StreamOptions", "StreamSummary",
    "read_events", "run_stream",
]
