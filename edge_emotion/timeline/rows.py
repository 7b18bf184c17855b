"""A recording's window results: one per (window, person) of a file's grid (run/result.py's type, kind "window").

Which people get a result is timeline/people.py's rule: everyone seen in the window (`--faces all`), or
its main person (`--faces largest`), and one centre-crop result (person null) where nobody was seen; so a
window has max(1, people) results, or 1. Times are seconds from the file's first frame; segments carry
their index on the file's grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from edge_emotion.run.result import FileKey, Result, SegmentResult, segment_result, window_result
from edge_emotion.timeline.grid import Timeline, WindowSpan
from edge_emotion.timeline.people import WindowPerson


def build_window_rows(
    key: FileKey, timeline: Timeline, span: WindowSpan, chosen: Sequence[WindowPerson], silent: np.ndarray, people: int,
    labels: Sequence[str], duration_s: float | None = None, problems: Sequence[str] = (),
) -> list[Result]:
    """One window's results, one per chosen person: consensus over the window's N segments. silent: [N] bool."""
    positions = range(span.first, span.first + timeline.n)
    return [
        window_result(
            "window", key, key.path, person=who.person, people=people, window=span.index, n_windows=len(timeline.windows),
            t_start=span.t_start, t_end=span.t_end, segment_probs=who.probs, detected=who.detected,
            silent=int(np.count_nonzero(silent)), labels=labels, duration_s=duration_s,
            segments=[_segment(timeline, who, p, k, labels) for k, p in enumerate(positions)], problems=problems,
        )
        for who in chosen
    ]


def _segment(timeline: Timeline, who: WindowPerson, p: int, k: int, labels: Sequence[str]) -> SegmentResult:
    seg = timeline.segments[p]
    result = segment_result(timeline.grid_index[p], seg.frame, seg.centre, seg.centre, who.boxes[k], who.detected[k], who.probs[k], labels)
    return result if seg.video else replace(result, video=False)
