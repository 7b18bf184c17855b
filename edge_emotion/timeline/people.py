"""People over a recording: one face tracker follows them over the planned frames; the rules of their window rows.

The rules of window rows (`score --window`), here and nowhere else:

- presence: a person is in a window when the tracker saw their face on at least one of its N segments.
  `--faces all`: a row for every person in the window. `--faces largest`: a row for the main person
  (`main_people`, by the one main-person rule of preprocess/tracks.py), so the row follows one person
  for as long as they stay in view, and never jumps to a larger face that comes along.
- borrowed boxes: on a segment of such a window where the person was not seen, their box comes from
  the track store by the one borrowing rule (preprocess/tracks.py: their own nearest sighting within
  N - 1 grid segments, the earlier on a tie, never across epochs), and the segment counts as faceless.
- nobody: a window in which nobody was seen has one row of centre crops, person empty, people 0.

So every window has at least one row, and a person's rows cover exactly the windows they were seen in.
A segment's crop for a person depends only on sightings within N - 1 segments of it: a worker crops a
part once its tracker is N - 1 segments past the part, and a chunk of a recording that tracks N - 1
segments beyond both ends of what it scores crops what one tracker over the whole recording crops
wherever the two trackers see the same faces (timeline/chunks.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from edge_emotion.preprocess.faces import Box
from edge_emotion.preprocess.tracks import Crop, MainPerson, TrackStore
from edge_emotion.timeline.grid import Timeline


def windows_touching(timeline: Timeline, windows: range, part: range) -> range:
    """The windows of `windows` (indices) with a segment among the positions `part`."""
    firsts = timeline.firsts  # [W] sorted
    lo = int(np.searchsorted(firsts, part.start - timeline.n + 1))
    hi = int(np.searchsorted(firsts, part.stop))
    return range(max(lo, windows.start), min(hi, windows.stop))


def part_crops(sightings: TrackStore, timeline: Timeline, windows: range, part: range) -> dict[int | None, list[Crop]]:
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
    return {person: [_crop(sightings, person, p, timeline) for p in sorted(needs[person])] for person in ordered}


def _crop(sightings: TrackStore, person: int | None, position: int, timeline: Timeline) -> Crop:
    """A centre crop for nobody, else the person's box by the one borrowing rule, on the grid, within its epoch."""
    if person is None:
        return Crop(position, None, False)
    return sightings.crop(person, position, timeline.n - 1, timeline.grid_index.__getitem__, timeline.epoch)


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


def main_people(windows: Iterable[Sequence[WindowPerson]], main: MainPerson | None = None) -> list[WindowPerson]:
    """`--faces largest`: per window (in time order) its main person, from everyone in it.

    The one main-person rule (`main`: as the windows before these left it) over each window's people; a window
    without anyone keeps its centre-crop row.
    """
    main, chosen = main or MainPerson(), []
    for people in windows:
        by_id = {p.person: p for p in people}
        chosen.append(by_id[main.choose({p.person: p.area for p in people if p.person is not None})])
    return chosen
