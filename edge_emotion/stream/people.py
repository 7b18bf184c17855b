"""People over a stream: whose faces each window reports, and the numbers they carry.

Faces are tracked over the segments' frames in time order by one FaceTracker per epoch (FaceDetector.track
with the epoch's tracker), so within an epoch a person keeps one number from window to window. Across
epochs (a reconnect, a gap) PersonNumbers carries the numbers on: in the first epoch they are the
tracker's own (0, 1, 2 ... in order of first sighting, as `score --window` numbers a file's people); a
person new to a later epoch whose first box overlaps the last box of someone seen before (IoU >=
match_iou, greedy, best pairs first, as the tracker matches) keeps that number, anyone else gets the next.

Each window follows `score --window`'s rules (timeline/people.py) as far as a stream can:
- presence: a person is in a window when the tracker saw their face on at least one of its N segments;
  `--faces all` reports each; a window where nobody was seen is reported once, on centre crops, person null.
- `--faces largest` (MainPerson): the previous window's main person while they are in the window, else the
  person whose face is largest in it (own face area summed over its segments; the lowest number on a tie).
- borrowed boxes (nearest_sighting): on a segment where the person was not seen, their own box from the
  nearest segment within N - 1 (the earlier one on a tie) that has been computed when the first window
  needing it is reported, that is up to that window's last segment; the segment counts as faceless. A file
  may borrow from a nearer sighting after that window; a stream cannot wait for one, and a crop once
  scored is never scored again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edge_emotion import defaults
from edge_emotion.detector.tracker import Face, associate
from edge_emotion.preprocess.faces import Box


def people_in(sightings: Sequence[Mapping[int, Box]]) -> list[int]:
    """The people seen on at least one of these segments (person -> box per segment), by number."""
    return sorted({p for faces in sightings for p in faces})


def face_areas(sightings: Sequence[Mapping[int, Box]]) -> dict[int, float]:
    """Per person, own face area summed over the segments: how large they are in the window."""
    areas: dict[int, float] = {}
    for faces in sightings:
        for person, (x1, y1, x2, y2) in faces.items():
            areas[person] = areas.get(person, 0.0) + (x2 - x1) * (y2 - y1)
    return areas


def nearest_sighting(sightings: Mapping[int, Mapping[int, Box]], person: int, j: int, last: int, n: int) -> Box:
    """The person's own box on the segment nearest j within n - 1 (earlier on a tie), among segments up to `last`."""
    near = [(abs(q - j), q) for q in range(j - n + 1, min(j + n - 1, last) + 1) if person in sightings.get(q, {})]
    if not near:
        raise ValueError(f"person {person} has no sighting within {n - 1} segments of segment {j}")
    return sightings[min(near)[1]][person]


class MainPerson:
    """`--faces largest`: one window after another, its main person (None: nobody in it)."""

    def __init__(self) -> None:
        self.current: int | None = None

    def choose(self, areas: Mapping[int, float]) -> int | None:
        if self.current not in areas:
            self.current = max(areas, key=lambda p: (areas[p], -p)) if areas else None
        return self.current


class PersonNumbers:
    """Stream-wide person numbers for the faces of each epoch's tracker."""

    def __init__(self, match_iou: float = defaults.TRACK_MATCH_IOU) -> None:
        self.match_iou = match_iou
        self.current: dict[int, int] = {}  # this epoch's tracker person -> stream number
        self.last_box: dict[int, Box] = {}  # stream number -> their latest box, over every epoch
        self.unclaimed: dict[int, Box] = {}  # people of earlier epochs nobody in this one continues yet
        self.next_number = 0

    def new_epoch(self) -> None:
        """A new tracker: its people may continue anyone seen before."""
        self.current, self.unclaimed = {}, dict(self.last_box)

    def number(self, faces: Sequence[Face]) -> dict[int, Box]:
        """One frame's faces (the tracker's) -> stream number -> box."""
        new = sorted((f for f in faces if f.person not in self.current), key=lambda f: f.person)
        if new and self.unclaimed:
            known = list(self.unclaimed)
            tracks = np.array([self.unclaimed[p] for p in known], float).reshape(-1, 4)
            for t, d in associate(tracks, np.array([f.box for f in new], float).reshape(-1, 4), self.match_iou):
                self.current[new[d].person] = known[t]
                del self.unclaimed[known[t]]
        for face in new:
            if face.person not in self.current:
                self.current[face.person] = self.next_number
                self.next_number += 1
        numbered = {self.current[f.person]: f.box for f in faces}
        self.last_box.update(numbered)
        return numbered
