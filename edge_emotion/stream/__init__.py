"""Live streams: `edge-emotion stream` (a URL, a capture device or a paced file) -> one event per rolling window.

    source.py  open a source, decode it in its own thread, one stream clock
    buffer.py  the bounded buffer between decoding and inference (drop, never queue)
    window.py  when a window is complete; window -> Clip + planned frames
    run.py     the loop: window -> plan / faces / spectrogram / backend / consensus (score's code) -> event
    events.py  event lines, their file, the summary
"""

from edge_emotion.stream.events import EventsFile, LineWriter, StreamSummary, read_events
from edge_emotion.stream.run import StreamOptions, run_stream
from edge_emotion.stream.source import SourceError, SourceSpec
from edge_emotion.stream.window import default_window

__all__ = [
    "EventsFile", "LineWriter", "SourceError", "SourceSpec", "StreamOptions", "StreamSummary", "default_window",
    "read_events", "run_stream",
]
