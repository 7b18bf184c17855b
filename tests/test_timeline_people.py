"""People on a timeline, without video: which crops a window needs, the main person of --faces largest, chunks of
whole windows, people matched across chunk borders, and when a file's window rows are complete."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from edge_emotion.config import FaceParams, PreprocessConfig
from edge_emotion.detector.tracker import Face
from edge_emotion.io.frame_times import FrameTimes
from edge_emotion.io.probe import Cut, find_cuts
from edge_emotion.preprocess.tracks import Crop, TrackStore
from edge_emotion.run.result import FileKey, window_result
from edge_emotion.run.results_file import FileRecord, every_window
from edge_emotion.timeline.chunks import Chunking, People, plan_chunks
from edge_emotion.timeline.grid import make_grid, plan_timeline
from edge_emotion.timeline.people import WindowPerson, main_people, part_crops

BOX_A = (10.0, 10.0, 50.0, 60.0)
BOX_B = (200.0, 20.0, 280.0, 120.0)


def sightings(seen: dict[int, dict[int, tuple[float, float, float, float]]]) -> TrackStore:
    out = TrackStore()
    for person, boxes in seen.items():
        for position, box in boxes.items():
            out.add(position, [Face(person, box, 0.99)])
    return out


def test_a_person_seen_once_in_a_window_gets_every_segment_of_it_with_their_nearest_box():
    timeline = plan_timeline(make_grid(4, 1.0, 0.25, 20), FrameTimes.constant(200, 20))  # hop 1 segment: window k = positions k .. k+3
    seen = sightings({0: {5: BOX_A, 9: (12.0, 10.0, 52.0, 60.0)}})
    crops = part_crops(seen, timeline, range(len(timeline.windows)), range(0, 16))
    # windows 2..9 contain position 5 or 9; their positions 2..12 need person 0, the others nobody
    assert [c.position for c in crops[0]] == list(range(2, 13))
    assert crops[0][3] == Crop(5, BOX_A, True) and crops[0][7] == Crop(9, (12.0, 10.0, 52.0, 60.0), True)
    assert crops[0][5] == Crop(7, BOX_A, False)  # 7 is 2 from both sightings: the earlier lends its box
    assert crops[0][6].box == (12.0, 10.0, 52.0, 60.0) and crops[0][0].box == BOX_A  # 8 -> 9; 2 -> 5 (3 away)
    # windows 0, 1 (positions 0..4) and 10.. (positions 10..15) have nobody: centre crops
    assert [c.position for c in crops[None]] == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14, 15]
    assert all(c.box is None and not c.own for c in crops[None])
    assert list(crops) == [0, None]


def test_crops_are_only_those_of_the_windows_the_chunk_reports():
    timeline = plan_timeline(make_grid(4, 1.0, 0.25, 20), FrameTimes.constant(200, 20))
    seen = sightings({0: {p: BOX_A for p in range(40)}})
    crops = part_crops(seen, timeline, range(3, 6), range(0, 16))  # windows 3, 4, 5: positions 3 .. 8
    assert [c.position for c in crops[0]] == list(range(3, 9)) and None not in crops


def test_a_borrowed_box_never_crosses_a_gap_of_the_grid():
    timeline = plan_timeline(make_grid(4, 1.0, 2.0, 20), FrameTimes.constant(200, 20))  # windows of 4 segments every 8: grid 0-3, 8-11, ...
    seen = sightings({0: {3: BOX_A, 4: BOX_B}})  # positions 3 (grid 3) and 4 (grid 8)
    crops = part_crops(seen, timeline, range(len(timeline.windows)), range(0, 8))
    assert [(c.position, c.box) for c in crops[0]] == [(0, BOX_A), (1, BOX_A), (2, BOX_A), (3, BOX_A), (4, BOX_B),
                                                       (5, BOX_B), (6, BOX_B), (7, BOX_B)]
    with pytest.raises(ValueError, match="no sighting within 3 segments"):  # 2 positions but 6 grid segments away
        sightings({0: {3: BOX_A}}).crop(0, 5, timeline.n - 1, timeline.grid_index.__getitem__)


def test_a_borrowed_box_never_crosses_an_epoch():
    timeline = plan_timeline(make_grid(4, 1.0, 0.25, 20), FrameTimes.constant(200, 20))
    timeline = replace(timeline, epochs=[0] * 6 + [1] * (len(timeline.segments) - 6))  # a video gap before position 6
    crops = part_crops(sightings({0: {4: BOX_A, 5: BOX_A, 8: BOX_B}}), timeline, range(len(timeline.windows)), range(12))
    boxes = {c.position: c.box for c in crops[0]}
    assert list(boxes) == list(range(1, 12)) and [boxes[p] for p in (1, 5, 6, 7, 11)] == [BOX_A, BOX_A, BOX_B, BOX_B, BOX_B]
    # position 6 is 1 from 5 and 2 from 8, but 5 is in the epoch before the gap


def person(pid: int | None, area: float, n: int = 4) -> WindowPerson:
    side = float(np.sqrt(area))
    return WindowPerson(pid, np.zeros((n, 6), np.float32), [(0.0, 0.0, side, side)] * n, np.ones(n, bool))


def test_the_main_person_is_kept_while_in_view_and_a_larger_newcomer_never_takes_over():
    nobody = WindowPerson(None, np.zeros((4, 6), np.float32), [None] * 4, np.zeros(4, bool))
    windows = [
        [nobody],
        [person(0, 100.0)],  # A alone: chosen
        [person(0, 100.0), person(1, 900.0)],  # B, larger, walks in: A stays
        [person(0, 90.0), person(1, 900.0)],
        [person(1, 900.0), person(2, 2000.0)],  # A left: the largest of those in view
        [person(1, 900.0)],
        [nobody],
        [person(1, 100.0), person(3, 400.0)],  # after a window without anyone: the largest again
    ]
    assert [w.person for w in main_people(windows)] == [None, 0, 0, 0, 2, 1, None, 3]


def test_a_tie_in_area_goes_to_the_lower_person_id():
    assert main_people([[person(4, 100.0), person(2, 100.0)]])[0].person == 2


def test_chunks_share_out_whole_windows_and_track_one_window_beyond_what_they_score():
    timeline = plan_timeline(make_grid(4, 1.0, 0.5, 20), FrameTimes.constant(20 * 60, 20))  # a minute: 240 segments, windows every 2
    cuts = [Cut(f, f, f / 20) for f in range(0, 1200, 12)]  # a keyframe every 12 frames
    chunks = plan_chunks(timeline, cuts, 3, PreprocessConfig(n_segments=4))  # detect_every 10
    assert [c.windows for c in chunks] == [(0, 40), (40, 79), (79, 119)]
    assert [(c.number, c.count) for c in chunks] == [(0, 3), (1, 3), (2, 3)]
    assert [c.score for c in chunks] == [(0, 82), (80, 160), (158, 240)]  # overlaps of N - 2 = 2 scored segments (hop 2)
    assert [c.track for c in chunks] == [(0, 85), (70, 163), (150, 240)]  # from N - 1 before, down to the beat of 10
    assert chunks[0].start is None
    for c in chunks[1:]:
        first_frame = timeline.segments[c.track[0]].frame
        audio_s = timeline.segments[c.score[0]].centre - 0.64
        assert c.start is not None and c.start.frame <= first_frame and c.start.time_s <= audio_s - 1.0
        assert c.start.frame + 12 > min(first_frame, (audio_s - 1.0) * 20)  # the last cut early enough
    covered = sorted(k for c in chunks for k in range(*c.windows))
    assert covered == list(range(len(timeline.windows)))  # every window once


@pytest.mark.parametrize(("duration", "workers", "count"), [(60, 2, 2), (30, 2, 1), (3600, 2, 12), (3600, 1, 1), (100, 8, 5)])
def test_how_many_chunks(duration, workers, count):
    assert Chunking().count(duration, workers) == count


def test_only_keyframes_that_cut_the_stream_clean_are_cuts():
    # decode order with B-frames: I0 P3 B1 B2 | I6 P9 B7 B8 | an open-GOP I: I12 B10 B11 P15 ...
    pts = [0, 3, 1, 2, 6, 9, 7, 8, 12, 10, 11, 15, 13, 14]
    key = [True, False, False, False, True, False, False, False, True, False, False, False, False, False]
    assert [(c.frame, c.pts) for c in find_cuts(pts, key, 0.1)] == [(0, 0), (4, 6)]
    assert find_cuts([0, None, 2], [True, False, True], 0.1) == []


def test_people_are_matched_across_a_border_by_their_boxes_and_numbered_by_first_sighting():
    timeline = plan_timeline(make_grid(4, 1.0, 0.25, 20), FrameTimes.constant(200, 20))  # 40 positions, window k = k .. k+3
    config = PreprocessConfig(n_segments=4, face=FaceParams(detect_every=5))
    first, second = plan_chunks(timeline, [Cut(f, f, f / 20) for f in range(0, 200, 5)], 2, config)
    assert second.track[0] == 15  # from window 18's first position less N - 1, down to the beat of 5
    before = sightings({0: {p: BOX_A for p in range(0, 20)}, 1: {p: BOX_B for p in range(8, 20)}, 2: {3: (400.0, 0, 440, 40)}})
    after = sightings({0: {p: BOX_B for p in range(15, 40)}, 1: {p: BOX_A for p in range(15, 18)}, 2: {p: (5.0, 300, 60, 360) for p in range(30, 40)}})
    people = People(beat=5)
    assert people.number(first, before, timeline) == {0: 0, 1: 2, 2: 1}  # by first sighting: A at 0, the blip at 3, B at 8
    state = json.loads(json.dumps(people.state()))  # what a killed run leaves in the chunk log
    assert {p: sorted(map(int, seen)) for p, seen in state["shared"].items()} == {"0": list(range(15, 20)), "2": list(range(15, 20))}
    assert people.number(second, after, timeline) == {0: 2, 1: 0, 2: 3}  # B and A recognised by their boxes; a newcomer next
    assert People.resumed(5, state).number(second, after, timeline) == {0: 2, 1: 0, 2: 3}  # the same from the log


def record(rows, faces="all") -> FileRecord:
    out = FileRecord(FileKey("/v.mp4", 1, 1), faces)
    for window, people in rows:
        out.add(window_result(
            "window", out.key, out.key.path, person=None, people=people, window=window, n_windows=3, t_start=0.0, t_end=1.0,
            segment_probs=np.full((1, 6), 1 / 6), detected=[True], silent=0, labels=["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"],
        ))
    return out


def test_a_file_is_complete_with_every_window_and_all_its_rows_in_order():
    full = [(0, 2), (0, 2), (1, 0), (2, 1)]
    assert every_window(record(full))
    assert not every_window(record(full[:-1]))  # the last window missing
    assert not every_window(record([(0, 2), (0, 2), (1, 0), (2, 2)]))  # the last window's second row torn off
    assert not every_window(record(full[1:]))  # a window with fewer rows than its people
    assert not every_window(record([(0, 2), (0, 2), (2, 1)]))  # a window skipped
    assert every_window(record([(0, 2), (1, 0), (2, 3)], faces="largest"))  # one row a window
    assert not every_window(record([(0, 2), (0, 2), (1, 0), (2, 1)], faces="largest"))
