"""Faces as tracks: the followers find MTCNN's own boxes ("cascade") or boxes close to them ("onet"), the tracker
re-detects when it should, people stay apart, in both follow modes; FaceParams.follow travels and picks the mode.

Scenes are the fixture clips' planned frames, alone, shrunk into HD frames, or side by side (tests/scenes.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scenes import Placement, compose, inside, planned_frames

from edge_emotion.config import FOLLOWERS, FaceParams, PreprocessConfig
from edge_emotion.contract import ModelContract
from edge_emotion.detector import cascade
from edge_emotion.detector.follow import FollowSettings, follow, level_cells, onet_squares
from edge_emotion.detector.mtcnn import CascadeSettings, Mtcnn
from edge_emotion.detector.tracker import FaceTracker, TrackerSettings, associate
from edge_emotion.preprocess.faces import FaceDetector, box_iou
from edge_emotion.preprocess.people import chosen_people, largest, people_of


@pytest.fixture(scope="module")
def hap(hap_clip_path) -> list[np.ndarray]:
    return planned_frames(hap_clip_path)


@pytest.fixture(scope="module")
def neu(neu_clip_path) -> list[np.ndarray]:
    return planned_frames(neu_clip_path)


@pytest.fixture(scope="module")
def mtcnn() -> Mtcnn:
    return Mtcnn.open(CascadeSettings(min_face=FaceParams().min_face_size), threads=1)


def blank_like(frame: np.ndarray) -> np.ndarray:
    return np.full_like(frame, 110)


def settings(method: str, **kw) -> TrackerSettings:
    return TrackerSettings(follow=FollowSettings(method), **kw)


def tracked_largest(detector: FaceDetector, frames) -> list:
    """The largest person's own box per frame (None where the tracker did not see them)."""
    people = chosen_people(detector.track(frames), "largest")
    return people[0].boxes if people else [None] * len(frames)


def test_level_cells_are_the_whole_levels_cells(mtcnn, hap):
    """PNet on a window of a pyramid level gives exactly the whole level's outputs on those cells: the window
    starts on an even cell and has an even count (or ends with the level), as level_cells makes it."""
    table = cascade.Table.of(hap[0][None])
    scale = 0.15
    whole_reg, whole_prob = mtcnn.pnet(cascade.pyramid_level(table, scale))  # [1, 4, h, w], [1, 2, h, w]
    (r0, r1), (c0, c1) = cascade.level_bounds(360, 480, scale)
    for lo, hi in ((33.0, 250.0), (0.0, 360.0), (101.0, 360.0)):
        rows = level_cells(r0, r1, lo, hi)
        assert rows is not None and rows[0] % 2 == 0 and ((rows[1] - rows[0]) % 2 == 0 or rows[1] == len(r0))
        cols = level_cells(c0, c1, lo + 50, hi + 100)
        assert cols is not None
        local = cascade.Table.of(hap[0][None], (int(r0[rows[0]]), int(r1[rows[1] - 1])), (int(c0[cols[0]]), int(c1[cols[1] - 1])))
        reg, prob = mtcnn.pnet(cascade.pyramid_level(local, scale, rows, cols))
        first = (rows[0] // 2, cols[0] // 2)
        h, w = prob.shape[2:]
        np.testing.assert_allclose(prob, whole_prob[:, :, first[0] : first[0] + h, first[1] : first[1] + w], atol=1e-6)
        np.testing.assert_allclose(reg, whole_reg[:, :, first[0] : first[0] + h, first[1] : first[1] + w], atol=1e-6)


def test_follow_finds_the_boxes_the_full_cascade_finds(mtcnn, hap, neu):
    """From each planned frame's detected box to the next planned frame: the restricted cascade gives the full
    cascade's box (the whole point of following with the cascade rather than ONet alone)."""
    for frames in (hap, neu):
        detected = [mtcnn.detect(f[None])[0][0] for f in frames]
        for previous, frame, want in zip(detected, frames[1:], detected[1:]):
            got = follow(mtcnn, frame, previous[None])[0]
            np.testing.assert_allclose(got, want, atol=1e-3)


@pytest.mark.parametrize("method", FOLLOWERS)
def test_follow_loses_a_face_that_is_gone(mtcnn, hap, method):
    box = mtcnn.detect(hap[0][None])[0][:1]
    assert np.isnan(follow(mtcnn, blank_like(hap[0]), box, FollowSettings(method))).all()


def test_onet_follow_stays_near_the_full_cascades_boxes(mtcnn, hap, neu):
    """From each planned frame's detected box to the next planned frame, ONet alone lands near the box the full
    cascade finds there, and its face probability passes ONet's threshold. Measured on these 18 steps: IoU 0.918
    mean, 0.869 min; ONet on the previous box made square (the classic follower) 0.911 / 0.849; the previous box
    itself, not moved, 0.907 / 0.830 (MTCNN's box jumps from frame to frame)."""
    onet = FollowSettings("onet")
    ious = []
    for frames in (hap, neu):
        detected = [mtcnn.detect(f[None])[0][0] for f in frames]
        for previous, frame, want in zip(detected, frames[1:], detected[1:]):
            got = follow(mtcnn, frame, previous[None], onet)[0]
            assert got[4] > mtcnn.settings.thresholds[2]
            ious.append(box_iou(tuple(got[:4]), tuple(want[:4])))
    assert np.mean(ious) >= 0.91 and min(ious) >= 0.85, (np.mean(ious), min(ious))


def test_onet_follow_averages_its_squares_and_follows_every_face(mtcnn, hap, neu):
    """Two faces in one frame, each followed from its own box: each result is the mean of the boxes ONet regresses
    from that face's squares (cut from the frame as the cascade cuts its candidates), and a face whose squares lie
    wholly outside the frame is lost without taking the other one with it."""
    frame = compose([Placement(hap, 100, 150, 20), Placement(neu, 70, 300, 760)], 1, 1280, 720)[0]
    boxes = mtcnn.detect(frame[None])[0][:2]
    outside = np.array([[-500, -500, -400, -380, 1]], np.float32)
    found = follow(mtcnn, frame, np.concatenate([boxes, outside]), FollowSettings("onet"))
    assert np.isnan(found[2]).all()
    onet = FollowSettings("onet")
    for box, got in zip(boxes, found):
        squares = onet_squares(box[None], onet)[0]  # [2, 5]
        crops, valid = cascade.crop_candidates(cascade.Table.of(frame[None]), np.zeros(2, np.int64), squares, 48)
        regression, _, probability = mtcnn.onet(crops)
        assert valid.all() and (probability[:, 1] > 0.7).all()
        want = cascade.apply_offsets(squares, regression, plus_one=True)[:, :4].mean(axis=0)
        np.testing.assert_allclose(got[:4], want, atol=1e-3)
        assert box_iou(tuple(got[:4]), tuple(box[:4])) > 0.8


def test_follow_refuses_an_unknown_method(mtcnn, hap):
    box = mtcnn.detect(hap[0][None])[0][:1]
    with pytest.raises(ValueError, match="unknown follower 'kalman'"):
        follow(mtcnn, hap[1], box, FollowSettings("kalman"))


@pytest.fixture(scope="module")
def facenet_scenes(hap, neu) -> list[tuple[list[np.ndarray], list]]:
    """(frames, facenet-pytorch's boxes per frame at full resolution, smallest face as ours) for the fixture clip,
    the other one with its face gone for two frames, and an HD sequence with a ~58 px face."""
    facenet = pytest.importorskip("facenet_pytorch")
    reference = facenet.MTCNN(keep_all=False, min_face_size=FaceParams().min_face_size)
    gone = [f if k not in (4, 5) else blank_like(f) for k, f in enumerate(neu)]
    hd = list(compose([Placement(hap[:6], 58, 600, 1300)], 6, 1920, 1080))
    return [(frames, reference.detect([Image.fromarray(f) for f in frames])[0]) for frames in (hap, gone, hd)]


@pytest.mark.slow
@pytest.mark.parametrize(("method", "mean_floor", "min_floor"), [("cascade", 0.95, 0.85), ("onet", 0.92, 0.84)])
def test_tracked_boxes_agree_with_facenet_on_every_frame(facenet_scenes, method, mean_floor, min_floor):
    """Tracked boxes on the planned frames against facenet-pytorch's MTCNN run on every frame at full resolution, the
    same frames with and without a face. "cascade" meets issue 23's bar (mean IoU >= 0.95, min >= 0.85: it gives
    MTCNN's own boxes); "onet" measured 0.936 / 0.868 here (benchmarks/tracker.py: ~0.93 / 0.85), floors under that."""
    detector = FaceDetector(FaceParams(follow=method), threads=1)
    ious, nones = [], 0
    for frames, theirs in facenet_scenes:
        ours = tracked_largest(detector, frames)
        assert [t is None for t in theirs] == [o is None for o in ours]
        nones += sum(o is None for o in ours)
        ious += [box_iou(o, tuple(np.asarray(t, float)[0])) for o, t in zip(ours, theirs) if o is not None]
    assert nones == 2 and len(ious) == 24
    assert np.mean(ious) >= mean_floor and min(ious) >= min_floor, (np.mean(ious), min(ious))


@pytest.mark.parametrize("method", FOLLOWERS)
def test_redetects_when_a_face_is_lost_and_at_the_interval(mtcnn, hap, method):
    every = FaceTracker(mtcnn, settings(method, detect_every=3))
    assert [len(every.update(f)) for f in hap] == [1] * 10
    assert every.detected_on == [0, 3, 6, 9]

    once = FaceTracker(mtcnn, settings(method, detect_every=100))
    seen = [once.update(f if k != 4 else blank_like(f)) for k, f in enumerate(hap)]
    assert once.detected_on == [0, 4, 5]  # lost on 4 (found missing), looked for again on 5 (found), then followed
    assert [[f.person for f in faces] for faces in seen] == [[0]] * 4 + [[]] + [[0]] * 5  # one miss: still person 0

    dropped = FaceTracker(mtcnn, settings(method, detect_every=100, max_misses=2))
    seen = [dropped.update(f if k not in (4, 5) else blank_like(f)) for k, f in enumerate(hap)]
    assert dropped.detected_on == [0, 4, 5, 6]  # two misses in a row: dropped; the face that returns is a new person
    assert [[f.person for f in faces] for faces in seen] == [[0]] * 4 + [[], []] + [[1]] * 4


@pytest.mark.parametrize("method", FOLLOWERS)
def test_a_person_who_enters_is_found_at_the_next_interval(mtcnn, hap, neu, method):
    alone = compose([Placement(hap, 100, 150, 20)], 10, 1280, 720)
    both = compose([Placement(hap, 100, 150, 20), Placement(neu, 70, 300, 760)], 10, 1280, 720)
    frames = [alone[k] if k < 3 else both[k] for k in range(10)]
    tracker = FaceTracker(mtcnn, settings(method, detect_every=5))
    seen = [[f.person for f in tracker.update(frame)] for frame in frames]
    assert tracker.detected_on == [0, 5]
    assert seen == [[0]] * 5 + [[0, 1]] * 5  # enters on frame 3, found on frame 5


@pytest.mark.parametrize("method", FOLLOWERS)
@pytest.mark.parametrize("count", [2, 3])
def test_people_side_by_side_stay_apart(mtcnn, hap, neu, count, method):
    """Two and three people at different sizes in 1280x720 frames: one track each, every box inside its own person,
    followed on every frame but the first (no face lost, no re-detection)."""
    layout = [Placement(hap, 100, 150, 0), Placement(neu, 70, 250, 500, mirror=True), Placement(hap, 56, 300, 900, mirror=True)]
    layout = layout[:count] if count == 3 else [Placement(hap, 110, 150, 20), Placement(neu, 70, 300, 760)]
    frames = compose(layout, 10, 1280, 720)
    tracker = FaceTracker(mtcnn, settings(method))
    people = people_of([tracker.update(f) for f in frames])
    assert tracker.detected_on == [0]
    assert [p.person for p in people] == list(range(count))
    for person, place in zip(people, layout):  # person ids left to right, as the layouts are
        assert all(b is not None and inside(b, place.rect()) for b in person.boxes)
    top = largest(people)
    assert top is not None and top.person == 0


def test_associate_matches_best_overlaps_one_to_one():
    tracks = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32)
    detections = np.array([[21, 0, 31, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    assert sorted(associate(tracks, detections, 0.3)) == [(0, 1), (1, 0)]
    assert associate(tracks, detections[2:], 0.3) == []


def test_largest_is_the_face_area_over_the_clip_not_one_frame():
    from edge_emotion.detector.tracker import Face

    big_once = [[Face(0, (0, 0, 100, 100), 1.0)]] + [[]] * 9
    small_always = [[Face(1, (200, 0, 240, 40), 1.0)] for _ in range(10)]
    faces = [a + b for a, b in zip(big_once, small_always)]
    people = people_of(faces)
    assert [p.seen for p in people] == [1, 10]
    top = largest(people)
    assert top is not None and top.person == 1  # 40 x 40 px on 10 frames (16,000) beats 100 x 100 px once (10,000)
    assert chosen_people(faces, "largest") == [top] and chosen_people(faces, "all") == people
    assert chosen_people([[], []], "largest") == [] and largest([]) is None


def test_face_detector_follows_as_its_face_params_say(mtcnn, hap):
    """FaceDetector's tracker follows by FaceParams.follow: its boxes are the tracker's with that follower, and the
    two modes agree on the detected first frame and differ on the followed ones."""
    boxes = {}
    for method in FOLLOWERS:
        detector = FaceDetector(FaceParams(follow=method), threads=1)
        assert detector.tracker().settings.follow.method == method
        boxes[method] = [faces[0].box for faces in detector.track(hap[:4])]
        tracker = FaceTracker(mtcnn, settings(method))
        assert boxes[method] == [tracker.update(f)[0].box for f in hap[:4]]
    assert boxes["cascade"][0] == boxes["onet"][0]
    assert all(c != o for c, o in zip(boxes["cascade"][1:], boxes["onet"][1:]))


def test_face_params_follow_travels_and_old_artifacts_read_as_cascade():
    """FaceParams.follow round-trips through the preprocessing config and an artifact's contract metadata; a config
    written before the choice existed reads as "cascade" (what those artifacts followed with), a new one defaults to
    "onet"; an unknown value is
    refused with one line naming the key, the value and the choices."""
    onet = PreprocessConfig(face=FaceParams(follow="onet"))
    assert PreprocessConfig.from_dict(json.loads(json.dumps(onet.to_dict()))) == onet
    contract = ModelContract(preprocess=onet)
    assert ModelContract.from_metadata(contract.to_metadata()).preprocess.face.follow == "onet"

    old = ModelContract().to_metadata()
    config = json.loads(old["edge_emotion.preprocess"])
    del config["face"]["follow"]
    old["edge_emotion.preprocess"] = json.dumps(config)
    assert ModelContract.from_metadata(old).preprocess.face == FaceParams(follow="cascade")
    assert FaceParams().follow == "onet"  # the default: MTCNN's own ONet follows (issue 23, the mission's words)

    config["face"]["follow"] = "kalman"
    for load in (lambda: FaceParams.from_dict(config["face"]), lambda: PreprocessConfig.from_dict(config)):
        with pytest.raises(ValueError, match=r"^face follow 'kalman' is not one of: cascade, onet$"):
            load()
    with pytest.raises(ValueError, match="follow"):
        FaceParams(follow="Cascade")
