"""The track store: each person's own face box per segment, as one tracker saw them, and the rules that read it.

One store per recording (a clip, a recording's chunk, a stream's epoch; training's prepare cache is one per clip,
on disk). Segments are keyed by their position; `place` gives a position's index on the segment grid (time), and
`epoch` its epoch. Every driver reads boxes, main people and person numbers through these rules, stated once:

- borrowing (`lender`): a segment without the person's own face borrows the person's own box from the nearest
  segment within N - 1 segments of it on the grid (the earlier one on a tie); never across epochs, never another
  person's box, never from a segment after `newest` (a stream borrows only from segments computed when the window
  is reported). On a clip (N segments, one window) every segment is in reach: the nearest sighting, no limit.
- main person (`MainPerson`): the previous window's main person while they are in the window, else the person
  whose own face area summed over the window is largest (the lowest number on a tie). A clip is one window: its
  main person is the largest.
- renumbering (`match_people`): a person of a later tracker (the next chunk, the next epoch) is a person of the
  earlier one when their boxes overlap (IoU >= defaults.TRACK_MATCH_IOU, the tracker's own threshold from frame to
  frame) on the positions both trackers saw (a chunk's border) or, across a gap where they saw no frame in common
  (an epoch), the earlier one's last box against the later one's first; best evidence first, one to one.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from edge_emotion import defaults
from edge_emotion.detector.tracker import Face
from edge_emotion.preprocess.faces import Box, box_iou


def _same(position: int) -> int:
    return position


def _first_epoch(position: int) -> int:
    return 0


def lender(
    seen: Container[int],
    position: int,
    reach: int,
    place: Callable[[int], int] = _same,
    epoch: Callable[[int], int] = _first_epoch,
    newest: int | None = None,
) -> int | None:
    """The borrowing rule: the position whose box the segment at `position` uses, among the `seen` ones; None: none.

    `position` itself when seen; else the seen position nearest it on the grid (`place`) within `reach` segments,
    the earlier on a tie, of the same epoch and not after `newest`.
    """
    here, era = place(position), epoch(position)
    last = position + reach if newest is None else min(position + reach, newest)
    near = [  # places grow at least 1 a position: no position further than `reach` is in reach
        (abs(place(q) - here), q)
        for q in range(position - reach, last + 1)
        if q in seen and epoch(q) == era and abs(place(q) - here) <= reach
    ]
    return min(near)[1] if near else None


@dataclass(frozen=True)
class Crop:
    """One segment's face crop for one person: its position, the box it uses (None: centre crop), own or borrowed."""

    position: int
    box: Box | None
    own: bool


@dataclass
class TrackStore:
    """Each person's own face box per segment position, as one tracker saw them."""

    boxes: dict[int, dict[int, Box]] = field(default_factory=dict)  # person -> position -> box
    at: dict[int, list[int]] = field(default_factory=dict)  # position -> the people seen on it

    def add(self, position: int, faces: Iterable[Face] | Mapping[int, Box]) -> None:
        """The faces on one segment's frame: the tracker's, or person -> box (a stream's numbered faces)."""
        pairs = faces.items() if isinstance(faces, Mapping) else ((f.person, f.box) for f in faces)
        for person, box in pairs:
            self.boxes.setdefault(person, {})[position] = box
            self.at.setdefault(position, []).append(person)

    def people_in(self, positions: Iterable[int]) -> list[int]:
        """The people seen on at least one of these positions, by person number."""
        return sorted({p for q in positions for p in self.at.get(q, ())})

    def areas(self, positions: Iterable[int]) -> dict[int, float]:
        """Per person seen there, own face area summed over these positions (what MainPerson chooses by)."""
        out: dict[int, float] = {}
        for q in positions:
            for person in self.at.get(q, ()):
                x1, y1, x2, y2 = self.boxes[person][q]
                out[person] = out.get(person, 0.0) + (x2 - x1) * (y2 - y1)
        return out

    def first_seen(self, person: int) -> tuple[int, float]:
        """(position, left edge of the box) of the person's first sighting: how trackers number people."""
        position = min(self.boxes[person])
        return position, self.boxes[person][position][0]

    def crop(
        self, person: int, position: int, reach: int, place: Callable[[int], int] = _same,
        epoch: Callable[[int], int] = _first_epoch, newest: int | None = None,
    ) -> Crop:
        """The person's box at `position` by the borrowing rule (`lender`); ValueError when nothing is in reach."""
        seen = self.boxes.get(person, {})
        q = lender(seen, position, reach, place, epoch, newest)
        if q is None:
            raise ValueError(f"person {person} has no sighting within {reach} segments of position {position}")
        return Crop(position, seen[q], q == position)

    def forget_before(self, position: int) -> None:
        """Drop the boxes of the positions before `position` (a stream keeps only what a window may still borrow)."""
        for q in [q for q in self.at if q < position]:
            for person in self.at.pop(q):
                del self.boxes[person][q]
                if not self.boxes[person]:
                    del self.boxes[person]


def borrow_boxes(boxes: Sequence[Box | None]) -> tuple[list[Box | None], int]:
    """One person's own boxes over a clip's N segments (None where unseen) -> (the box each segment uses, how many
    are not its own). A clip is one window: every segment is within reach. All None without any sighting."""
    seen = {q: b for q, b in enumerate(boxes) if b is not None}
    reach = len(boxes) - 1
    lenders = [lender(seen, q, reach) for q in range(len(boxes))]
    return [None if q is None else seen[q] for q in lenders], len(boxes) - len(seen)


class MainPerson:
    """`--faces largest`: one window after another, its main person (None: nobody in it)."""

    def __init__(self) -> None:
        self.current: int | None = None

    def choose(self, areas: Mapping[int, float]) -> int | None:
        """`areas`: everyone in the window -> own face area summed over it (TrackStore.areas)."""
        if self.current not in areas:
            self.current = max(areas, key=lambda p: (areas[p], -p)) if areas else None
        return self.current


def match_people(
    before: Mapping[int, Mapping[int, Box]], after: Mapping[int, Mapping[int, Box]], gap: bool = False,
    iou: float = defaults.TRACK_MATCH_IOU,
) -> dict[int, int]:
    """The renumbering rule: `after`'s person -> `before`'s person (each: person -> position -> box).

    Evidence for a pair: the positions both trackers saw where the two boxes overlap at least `iou`; across a
    `gap` (the trackers saw no frame in common: a new epoch), the earlier one's last box against the later one's
    first. Pairs with the most overlapping positions first (then the larger overlap, then the lower numbers),
    one to one.
    """
    votes: list[tuple[int, float, int, int]] = []
    for b, seen_b in before.items():
        for a, seen_a in after.items():
            if gap:
                overlaps = [box_iou(seen_a[min(seen_a)], seen_b[max(seen_b)])]
            else:
                overlaps = [box_iou(seen_a[q], seen_b[q]) for q in seen_a.keys() & seen_b.keys()]
            good = [v for v in overlaps if v >= iou]
            if good:
                votes.append((-len(good), -sum(good), b, a))
    pairs: dict[int, int] = {}
    for _, _, b, a in sorted(votes):
        if a not in pairs and b not in pairs.values():
            pairs[a] = b
    return pairs


class PersonNumbers:
    """Stream-wide person numbers for the faces of each epoch's tracker.

    In the first epoch they are the tracker's own (0, 1, 2 ... in order of first sighting, as `score --window`
    numbers a file's people). A person new to a later epoch keeps the number of an earlier one by `match_people`
    (their first box against the last box of those nobody in this epoch continues yet); anyone else gets the next.
    """

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
            earlier = {p: {0: box} for p, box in self.unclaimed.items()}
            for person, number in match_people(earlier, {f.person: {1: f.box} for f in new}, True, self.match_iou).items():
                self.current[person] = number
                del self.unclaimed[number]
        for face in new:
            if face.person not in self.current:
                self.current[face.person] = self.next_number
                self.next_number += 1
        numbered = {self.current[f.person]: f.box for f in faces}
        self.last_box.update(numbered)
        return numbered
