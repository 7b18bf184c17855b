"""People over a recording: one face tracker follows them over the planned frames; the rules of their window rows.

The rules of window rows (`score --window`), here and nowhere else:

- presence: a person is in a window when the tracker saw their face on at least one of its N segments.
  `--faces all`: a row for every person in the window. `--faces largest`: a row for the main person
  (`main_people`): the previous window's main person while they are in the window, else the person
  in it whose face is largest (area summed over the window's segments). So the row follows one
  person for as long as they stay in view, and never jumps to a larger face that comes along.
- borrowed boxes: on a segment of such a window where the person was not seen, their box is their
  own nearest sighting within N - 1 segments (one window's reach; the earlier one on a tie), and
  the segment counts as faceless. Never another person's box, never one from minutes away.
- nobody: a window in which nobody was seen has one row of centre crops, person empty, people 0.

So every window has at least one row, and a person's rows cover exactly the windows they were seen in.
A segment's crop for a person depends only on sightings within N - 1 segments of it: a worker crops a
part once its tracker is N - 1 segments past the part, and a chunk of a recording that tracks N - 1
segments beyond both ends of what it scores crops what one tracker over the whole recording crops
wherever the two trackers see the same faces (timeline/chunks.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from edge_emotion.detector.tracker import Face
from edge_emotion.preprocess.faces import Box
from edge_emotion.timeline.grid import Timeline


@dataclass
class Sightings:
    """Each person's own face box per timeline position, as one tracker saw them."""

    boxes: dict[int, dict[int, Box]] = field(default_factory=dict)  # person -> position -> box
    at: dict[int, list[int]] = field(default_factory=dict)  # position -> the people seen on it

    def add(self, position: int, faces: Iterable[Face]) -> None:
        for face in faces:
            self.boxes.setdefault(face.person, {})[position] = face.box
            self.at.setdefault(position, []).append(face.person)

    def people_in(self, positions: range) -> list[int]:
        """The people seen on at least one of these positions, by person id."""
        return sorted({p for q in positions for p in self.at.get(q, ())})

    def first_seen(self, person: int) -> tuple[int, float]:
        """(position, left edge of the box) of the person's first sighting: how trackers number people."""
        position = min(self.boxes[person])
        return position, self.boxes[person][position][0]


@dataclass(frozen=True)
class Crop:
    """One segment's face crop for one person: its position, the box it uses (None: centre crop), own or borrowed."""

    position: int
    box: Box | None
    own: bool


def reach_box(sightings: Sightings, person: int, position: int, timeline: Timeline) -> Crop:
    """The person's own box at `position`, else their nearest sighting within N - 1 grid segments (earlier on a tie)."""
    seen = sightings.boxes[person]
    if position in seen:
        return Crop(position, seen[position], True)
    grid, n = timeline.grid_index, timeline.n
    near = [
        (abs(grid[q] - grid[position]), q)
        for q in range(max(0, position - n + 1), min(len(grid), position + n))
        if q in seen and abs(grid[q] - grid[position]) < n
    ]
    if not near:
        raise ValueError(f"person {person} has no sighting within {n - 1} segments of position {position}")
    return Crop(position, seen[min(near)[1]], False)


def windows_touching(timeline: Timeline, windows: range, part: range) -> range:
    """The windows of `windows` (indices) with a segment among the positions `part`."""
    firsts = timeline.firsts  # [W] sorted
    lo = int(np.searchsorted(firsts, part.start - timeline.n + 1))
    hi = int(np.searchsorted(firsts, part.stop))
    return range(max(lo, windows.start), min(hi, windows.stop))


def part_crops(sightings: Sightings, timeline: Timeline, windows: range, part: range) -> dict[int | None, list[Crop]]:
    """The crops that the rows of `windows` need on the positions `part`: per person, None for centre crops.

    Needs the sightings up to N - 1 positions past the part (a window that starts in it, a borrowed box).
    """
    needs: dict[int | None, set[int]] = {}
    for k in windows_touching(timeline, windows, part):
        span = range(timeline.windows[k].first, timeline.windows[k].first + timeline.n)
        people: list[int | None] = list(sightings.people_in(span)) or [None]
        for person in people:
            needs.setdefault(person, set()).update(p for p in span if p in part)
    ordered = sorted(needs, key=lambda p: (p is None, p or 0))
    return {
        person: [
            Crop(p, None, False) if person is None else reach_box(sightings, person, p, timeline) for p in sorted(needs[person])
        ]
        for person in ordered
    }


# ----------------------------------------------------------------------------- the parent's side: rows of a window


@dataclass
class WindowPerson:
    """One person's N segments in one window, scored: what a window row is made of."""

    person: int | None  # None: nobody was seen in the window (centre crops)
    probs: np.ndarray  # [N, K] backend output per segment
    boxes: list[Box | None]  # [N] the box each crop used
    detected: np.ndarray  # [N] bool: the person's own face on the segment's frame

    @property
    def area(self) -> float:
        """Own face area summed over the window's segments: how large this person is in it."""
        return sum((b[2] - b[0]) * (b[3] - b[1]) for b, own in zip(self.boxes, self.detected) if own and b is not None)


def main_people(windows: Iterable[Sequence[WindowPerson]]) -> list[WindowPerson]:
    """`--faces largest`: per window (in time order) its main person, from everyone in it.

    The previous window's main person while they are in the window; otherwise the largest face in it
    (the lowest person id on a tie); a window without anyone keeps its centre-crop row.
    """
    chosen: list[WindowPerson] = []
    current: int | None = None
    for people in windows:
        by_id: Mapping[int | None, WindowPerson] = {p.person: p for p in people}
        if current not in by_id or current is None:
            current = max(people, key=lambda p: (p.area, -(p.person or 0))).person
        chosen.append(by_id[current])
    return chosen
