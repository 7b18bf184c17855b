"""Tracked faces -> people: each person's own box per frame, and which person is "the largest".

A person is one track of the face tracker (edge_emotion.detector.tracker). Keeping each person's boxes
apart is what lets one clip yield one score per person, and the borrowing rule (preprocess/tracks.py) lend a
box from the same person's nearest frame instead of from whoever else was in the picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from edge_emotion.detector.tracker import Face
from edge_emotion.preprocess.faces import Box
from edge_emotion.preprocess.tracks import MainPerson

WhichFaces = Literal["largest", "all"]


@dataclass(frozen=True)
class Person:
    """One track over the frames of a clip."""

    person: int  # 0, 1, 2 ... in order of first appearance
    boxes: list[Box | None]  # per frame: this person's own face box, None where the tracker did not see it

    @property
    def seen(self) -> int:
        """Frames with this person's own face."""
        return sum(b is not None for b in self.boxes)

    @property
    def presence(self) -> float:
        """Face area summed over the frames (0 where unseen): how much of the clip is this person's face."""
        return sum((b[2] - b[0]) * (b[3] - b[1]) for b in self.boxes if b is not None)


def people_of(faces: Sequence[Sequence[Face]]) -> list[Person]:
    """Faces per frame (the tracker's output) -> every person seen, by person id, boxes for every frame."""
    ids = sorted({f.person for frame in faces for f in frame})
    boxes: dict[int, list[Box | None]] = {p: [None] * len(faces) for p in ids}
    for k, frame in enumerate(faces):
        for f in frame:
            boxes[f.person][k] = f.box
    return [Person(p, boxes[p]) for p in ids]


def largest(people: Sequence[Person]) -> Person | None:
    """The main person of the clip, one window (tracks.MainPerson): the face largest over the clip (area summed over
    frames, so a face seen throughout beats a larger one glimpsed once); the lowest id on a tie; None without any.

    One person for the whole clip: never a per-frame switch between people."""
    by_id = {p.person: p for p in people}
    main = MainPerson().choose({p.person: p.presence for p in people})
    return None if main is None else by_id[main]


def chosen_people(faces: Sequence[Sequence[Face]], which: WhichFaces) -> list[Person]:
    """"largest": [the largest person]; "all": everyone in order of first appearance. Without any face: []."""
    people = people_of(faces)
    if which == "all":
        return people
    if which == "largest":
        top = largest(people)
        return [top] if top is not None else []
    raise ValueError(f"faces must be 'largest' or 'all', got {which!r}")
