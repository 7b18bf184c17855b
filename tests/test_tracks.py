"""The track store (preprocess/tracks.py): the one borrowing rule, the main-person rule and the renumbering rule
that every driver (clips, recordings and their chunks, streams, training's cache) reads boxes and people by."""

from __future__ import annotations

import pytest

from edge_emotion.detector.tracker import Face
from edge_emotion.preprocess.tracks import (
    Crop,
    MainPerson,
    PersonNumbers,
    TrackStore,
    borrow_boxes,
    lender,
    match_people,
)

A, B, C = (0.0, 0.0, 10.0, 10.0), (5.0, 5.0, 15.0, 15.0), (300.0, 0.0, 340.0, 40.0)
TALL = (0.0, 0.0, 10.0, 25.0)  # A's box grown downwards: IoU 0.4 with A


def store(seen: dict[int, dict[int, tuple[float, float, float, float]]]) -> TrackStore:
    out = TrackStore()
    for person, boxes in seen.items():
        for position, box in sorted(boxes.items()):
            out.add(position, [Face(person, box, 0.99)])
    return out


def test_a_segment_borrows_its_persons_nearest_own_box_the_earlier_on_a_tie():
    assert lender({3, 6}, 3, 3) == 3  # its own box first
    assert lender({3, 6}, 5, 3) == 6  # nearer after
    assert lender({3, 7}, 5, 3) == 3  # a tie: the earlier
    assert lender({3, 7}, 5, 1) is None  # nothing within reach (N - 1)
    assert lender({3, 6}, 5, 3, newest=5) == 3  # a stream: 6 not computed when the window is reported


def test_a_borrowed_box_never_crosses_an_epoch_and_reaches_in_grid_segments():
    epoch = [0, 0, 0, 1, 1].__getitem__  # a gap in the video starts epoch 1 at position 3
    assert lender({2}, 3, 4, epoch=epoch) is None and lender({2, 4}, 3, 4, epoch=epoch) == 4
    grid = [0, 1, 2, 3, 8, 9, 10, 11].__getitem__  # windows of 4 every 8 segments: positions 3 and 4 are 5 apart
    assert lender({3}, 4, 3, place=grid) is None and lender({3}, 4, 5, place=grid) == 3
    assert lender({3, 6}, 4, 3, place=grid) == 6  # position 3 is nearer by position, 6 by grid


def test_a_clip_borrows_the_nearest_own_box_and_counts_the_segments_without_their_own():
    filled, missing = borrow_boxes([None, A, None, None, B])
    assert filled == [A, A, A, B, B] and missing == 3  # every segment of a clip is within reach
    assert borrow_boxes([None, None]) == ([None, None], 2)  # no face anywhere: centre crops


def test_the_store_lends_only_a_persons_own_box():
    tracks = store({0: {0: A}, 1: {2: C}})
    assert tracks.crop(0, 2, 3) == Crop(2, A, False) and tracks.crop(1, 2, 3) == Crop(2, C, True)
    assert tracks.people_in(range(1, 3)) == [1] and tracks.areas(range(3)) == {0: 100.0, 1: 1600.0}
    with pytest.raises(ValueError, match="no sighting within 1 segments"):
        tracks.crop(0, 2, 1)
    tracks.forget_before(1)
    assert tracks.people_in(range(3)) == [1] and 0 not in tracks.boxes


def test_the_main_person_is_kept_while_in_view_else_the_largest_the_lower_number_on_a_tie():
    main = MainPerson()
    assert main.choose({0: 50.0, 1: 80.0}) == 1
    assert main.choose({0: 90.0, 1: 10.0}) == 1  # kept while in the window, even when another is larger
    assert main.choose({0: 5.0}) == 0 and main.choose({}) is None
    assert MainPerson().choose({4: 100.0, 2: 100.0}) == 2


def test_people_are_renumbered_by_overlap_on_shared_positions_or_across_a_gap_last_box_to_first():
    before = {0: {p: A for p in range(5)}, 1: {p: C for p in range(3, 5)}}
    after = {0: {p: C for p in range(4, 9)}, 1: {p: TALL for p in range(3, 9)}, 2: {p: B for p in range(4, 9)}}
    assert match_people(before, after) == {0: 1, 1: 0}  # C on 1 shared position, TALL ~ A (0.4) on 2; B (0.14) none
    assert match_people(before, after, iou=0.5) == {0: 1}  # the chunks' old 0.5 would not see TALL as A
    both = {0: {p: A for p in range(3, 9)}, 1: {p: TALL for p in range(3, 9)}}
    assert match_people(before, both) == {0: 0}  # one to one: the better evidence (IoU 1 over 0.4) wins
    assert match_people({5: {7: A}}, {0: {20: A}, 1: {20: C}}, gap=True) == {0: 5}  # a gap: last box to first box
    assert match_people({5: {7: A}}, {0: {20: A}}) == {}  # no gap and no shared position: no evidence


def test_stream_numbers_continue_across_epochs():
    left, right, elsewhere = (10.0, 10.0, 60.0, 70.0), (300.0, 20.0, 360.0, 90.0), (600.0, 20.0, 650.0, 80.0)
    numbers = PersonNumbers()
    numbers.new_epoch()
    assert numbers.number([Face(0, left, 1.0), Face(1, right, 1.0)]) == {0: left, 1: right}  # the tracker's own
    numbers.new_epoch()  # a reconnect: a new tracker numbers from 0 again
    assert numbers.number([Face(0, right, 1.0)]) == {1: right}  # where person 1 was: still person 1
    assert numbers.number([Face(1, elsewhere, 1.0), Face(0, right, 1.0)]) == {2: elsewhere, 1: right}  # a newcomer
