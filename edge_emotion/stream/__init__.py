"""Live streams: `edge-emotion stream` (a URL, a capture device or a paced file) -> one event per rolling window.

    source.py     open a source, decode it in its own thread, one stream clock
    buffer.py     the bounded buffer between decoding and inference (drop, never queue)
    options.py    StreamOptions (window, hop, pacing, duration, timeout, reconnect) and their check
    window.py     when a window is complete; window -> Clip + planned frames
    scheduler.py  which window to evaluate next; what to drop when inference falls behind
    evaluate.py   window -> plan / faces / spectrogram / backend / consensus (score's code) -> event
    run.py        run_stream: opens the sources, starts the decode threads, runs the loop, stops them
    events.py     event lines, their file, the summary
"""

from edge_emotion.stream.events import EventsFile, LineWriter, StreamSummary, read_events
from edge_emotion.stream.options import StreamOptions
from edge_emotion.stream.run import run_stream
from edge_emotion.stream.source import SourceError, SourceSpec
from edge_emotion.stream.window import default_window

__all__ = [
    "EventsFile", "LineWriter", "SourceError", "SourceSpec", "StreamOptions", "StreamSummary", "default_window",
    "read_events", "run_stream",
]
