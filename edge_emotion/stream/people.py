"""People across a stream's windows: the same face keeps its number from one window to the next.

Each window's faces are tracked on its own planned frames (a fresh tracker: windows overlap, so their
frames do not come in one time order), and its people are numbered 0, 1, 2 ... within the window. The
stream numbers them again: a window's person continues the stream person whose last box it overlaps
most (IoU >= the tracker's match_iou, greedy, best pairs first, as detector.tracker does between
frames); one that continues none gets the next number. A stream person not seen for `forget` windows
in a row is forgotten, so a newcomer later in the same place gets a number of their own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_emotion import defaults
from edge_emotion.detector.tracker import associate
from edge_emotion.preprocess.segments import SegmentInputs


def last_box(inputs: SegmentInputs) -> tuple[float, float, float, float] | None:
    """The person's own face box on the latest segment that had it; None for a window without their face."""
    own = [box for box, found in zip(inputs.boxes, inputs.detected) if found and box is not None]
    return own[-1] if own else None


class StreamPeople:
    """Stream-wide person numbers for the people of each window, in window order."""

    def __init__(self, match_iou: float = defaults.TRACK_MATCH_IOU, forget: int = defaults.TRACK_MAX_MISSES) -> None:
        self.match_iou = match_iou
        self.forget = forget
        self.boxes: dict[int, np.ndarray] = {}  # stream person -> [4] their last box
        self.missed: dict[int, int] = {}  # stream person -> windows in a row without them
        self.next_person = 0

    def number(self, people: Sequence[SegmentInputs]) -> list[int | None]:
        """The stream person of each of a window's people (None: a window without any face)."""
        boxes = [last_box(p) for p in people]
        seen = [k for k, box in enumerate(boxes) if box is not None]
        known = list(self.boxes)
        tracks = np.array([self.boxes[p] for p in known]).reshape(-1, 4)
        found = np.array([boxes[k] for k in seen], dtype=float).reshape(-1, 4)
        pairs = dict((seen[d], known[t]) for t, d in associate(tracks, found, self.match_iou))
        out: list[int | None] = []
        for k, box in enumerate(boxes):
            if box is None:
                out.append(None)
                continue
            if k not in pairs:
                pairs[k] = self.next_person
                self.next_person += 1
            out.append(pairs[k])
            self.boxes[pairs[k]] = np.asarray(box, float)
        self._age({p for p in out if p is not None})
        return out

    def _age(self, present: set[int]) -> None:
        for person in list(self.boxes):
            self.missed[person] = 0 if person in present else self.missed.get(person, 0) + 1
            if self.missed[person] >= self.forget:
                del self.boxes[person], self.missed[person]
