"""The prepare cache (boxes once per clip) and the Dataset that reads it through the scorer's own preprocessing."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tone, write_video
from typer.testing import CliRunner

from edge_emotion.cli import app
from edge_emotion.config import FaceParams, PreprocessConfig
from edge_emotion.io.decode import open_clip
from edge_emotion.preprocess.faces import FaceDetector
from edge_emotion.preprocess.segments import extract, plan_clip
from edge_emotion.run.read import clip_pieces
from edge_emotion.timeline.chunks import RecordingTask
from edge_emotion.timeline.grid import whole_file
from edge_emotion.toolchain.train.box_cache import CachedClip, OldCacheError, cache_file, load_cached
from edge_emotion.toolchain.train.crema import index_corpus
from edge_emotion.toolchain.train.dataset import CachedClips
from edge_emotion.toolchain.train.prepare import prepare_corpus

FIXTURES = Path(__file__).parent / "fixtures"


def test_a_frame_takes_its_nearest_planned_frames_box_by_the_one_borrowing_rule() -> None:
    a, b = (0.0, 0.0, 10.0, 10.0), (4.0, 4.0, 14.0, 14.0)
    boxes = np.array([a, [np.nan] * 4, b], np.float32)  # [N, 4]: nobody seen on the middle planned frame
    cached = CachedClip(None, np.array([5, 15, 25]), boxes, np.array([True, False, True]))  # type: ignore[arg-type]
    assert cached.boxes_for([5, 15, 25]) == [a, a, b]  # planned frames: scoring's boxes (15 borrows, earlier on a tie)
    assert cached.boxes_for([0, 10, 11, 20, 21, 40]) == [a, a, a, a, b, b]  # 10: a tie of 5 and 15, the earlier
    nobody = CachedClip(None, np.array([5, 15]), np.full((2, 4), np.nan, np.float32), np.zeros(2, bool))  # type: ignore[arg-type]
    assert nobody.boxes_for([0, 9]) == [None, None]  # no face anywhere: centre crops


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real CREMA-D clip, a faceless generated clip, a damaged file and an empty one."""
    root = tmp_path_factory.mktemp("corpus")
    videos = root / "VideoFlash"
    videos.mkdir()
    shutil.copy(Path(__file__).parent / "fixtures" / "1001_DFA_HAP_XX.flv", videos / "1001_DFA_HAP_XX.flv")
    write_video(videos / "1002_DFA_SAD_XX.mp4", np.full((9, 48, 64, 3), 90, np.uint8), fps=10, audio=tone(0.9))
    (videos / "1003_DFA_ANG_XX.flv").write_bytes(b"FLV not really")
    (videos / "1004_DFA_ANG_XX.flv").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def prepared(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    cache = tmp_path_factory.mktemp("cache")
    return cache, prepare_corpus(small_corpus, cache, n_segments=3)


def test_prepare_caches_good_clips_and_logs_damaged_ones(small_corpus: Path, prepared: tuple[Path, object]) -> None:
    cache, report = prepared
    assert sorted(report.done) == ["1001_DFA_HAP_XX", "1002_DFA_SAD_XX"]
    assert [Path(s.path).name for s in report.failed] == ["1003_DFA_ANG_XX.flv"]
    assert [Path(s.path).name for s in report.skipped_at_index] == ["1004_DFA_ANG_XX.flv"]
    errors = [json.loads(line) for line in (cache / "errors.jsonl").read_text().splitlines()]
    assert errors[0]["clip"] == "1003_DFA_ANG_XX" and "not a readable video" in errors[0]["error"]
    items = {i.name: i for i in index_corpus(small_corpus)[0]}
    real = load_cached(cache, items["1001_DFA_HAP_XX"])
    assert real.boxes.shape == (3, 4) and real.detected.all() and real.frames.tolist() == [9, 28, 46]  # N = 3 of 56 frames
    faceless = load_cached(cache, items["1002_DFA_SAD_XX"])
    assert np.isnan(faceless.boxes).all() and faceless.boxes_for([0, 3]) == [None, None]
    assert json.loads((cache / "cache.json").read_text())["n_segments"] == 3
    assert not list(cache.glob("*.tmp")) and not list(cache.glob(".*.tmp"))


def test_prepare_resumes_and_refuses_other_face_parameters_and_old_caches(
    small_corpus: Path, prepared: tuple[Path, object], tmp_path: Path
) -> None:
    cache, _ = prepared
    again = prepare_corpus(small_corpus, cache, n_segments=3)
    assert again.done == [] and sorted(again.reused) == ["1001_DFA_HAP_XX", "1002_DFA_SAD_XX"]
    assert len(again.failed) == 1  # a damaged clip is tried again, and reported again
    with pytest.raises(ValueError, match="was prepared with"):
        prepare_corpus(small_corpus, cache, FaceParams(min_face_size=20), n_segments=3)
    with pytest.raises(ValueError, match="was prepared with"):
        prepare_corpus(small_corpus, cache, n_segments=4)  # another N: other planned frames
    old = tmp_path / "old"
    shutil.copytree(cache, old)
    meta = json.loads((old / "cache.json").read_text())
    (old / "cache.json").write_text(json.dumps({**meta, "format": "edge-emotion-prepare/1"}))
    with pytest.raises(OldCacheError, match="re-run `edge-emotion prepare`"):
        prepare_corpus(small_corpus, old, n_segments=3)
    result = CliRunner().invoke(app, ["train", str(small_corpus), "-c", str(old), "-o", str(tmp_path / "run")])
    assert result.exit_code == 2 and "re-run `edge-emotion prepare` into a new cache folder" in " ".join(
        result.output.replace("│", " ").split()
    )
    with np.load(cache_file(cache, "1001_DFA_HAP_XX")) as data:  # a clip file of format 1: interpolated boxes, no frames
        np.savez(cache_file(old, "1001_DFA_HAP_XX"), **{k: data[k] for k in data.files if k != "frames"})
    with pytest.raises(OldCacheError, match="re-run"):
        load_cached(old, [i for i in index_corpus(small_corpus)[0] if i.name == "1001_DFA_HAP_XX"][0])


@pytest.mark.parametrize("name", ["1001_DFA_HAP_XX", "1001_DFA_NEU_XX"])
def test_prepares_boxes_are_scores_boxes_with_the_default_follower(name: str, tmp_path: Path) -> None:
    """The cache is the track store `score` makes: on every planned frame of a fixture clip, prepare's box (own or
    borrowed) is the box `score` crops (run/read.clip_pieces, its per-file path), bit for bit, with the
    default ONet follower (before: every 3rd frame tracked and interpolated, IoU ~0.93)."""
    source = FIXTURES / f"{name}.flv"
    (tmp_path / "data").mkdir()
    shutil.copy(source, tmp_path / "data" / source.name)
    face, config = FaceParams(), PreprocessConfig(n_segments=10)
    assert face.follow == "onet"
    prepare_corpus(tmp_path / "data", tmp_path / "cache", face, n_segments=10)
    cached = load_cached(tmp_path / "cache", index_corpus(tmp_path / "data")[0][0])
    (piece,) = clip_pieces(RecordingTask(0, tmp_path / "data" / source.name), config, FaceDetector(face))
    assert piece.facts is not None
    scored = piece.people[0]
    frames = [s.frame for s in whole_file(10, piece.facts.times).segments]
    assert cached.frames.tolist() == frames
    assert cached.boxes_for(frames) == scored.boxes and cached.detected.tolist() == scored.detected.tolist()


def test_test_mode_item_equals_the_scoring_path(small_corpus: Path, tmp_path: Path) -> None:
    """Training's test-mode inputs from the cache are exactly what scoring computes, default follower included."""
    face = FaceParams()
    prepare_corpus(small_corpus, tmp_path / "cache", face, n_segments=3)
    config = PreprocessConfig(n_segments=3, face=face)
    items = [i for i in index_corpus(small_corpus)[0] if i.name == "1001_DFA_HAP_XX"]
    faces, specs, label = CachedClips(items, str(tmp_path / "cache"), config, "test")[0]
    clip = open_clip(items[0].path)
    scored = extract(clip, plan_clip(clip, config), config, detector=FaceDetector(face))
    assert faces.shape == (3, 3, 224, 224) and specs.shape == (3, 1, 192, 120) and label == 3
    np.testing.assert_array_equal(faces.numpy(), scored.faces)
    np.testing.assert_array_equal(specs.numpy(), scored.spectrograms)


def test_train_mode_samples_are_seeded_per_epoch(small_corpus: Path, prepared: tuple[Path, object]) -> None:
    cache, _ = prepared
    items = [i for i in index_corpus(small_corpus)[0] if i.name == "1001_DFA_HAP_XX"]
    data = CachedClips(items, str(cache), PreprocessConfig(n_segments=2), "train", seed=7)
    first = data[0][0]
    assert torch.equal(first, data[0][0])  # same epoch, same sample
    data.set_epoch(1)
    assert not torch.equal(first, data[0][0])  # next epoch, other frames


def test_prepare_cli_with_a_process_pool(tmp_path: Path) -> None:
    for actor in (1001, 1002):
        write_video(
            tmp_path / "data" / "VideoFlash" / f"{actor}_IEO_NEU_XX.mp4",
            np.full((6, 48, 64, 3), 60, np.uint8),
            audio=tone(0.6),
        )
    result = CliRunner().invoke(
        app, ["prepare", str(tmp_path / "data"), "-o", str(tmp_path / "cache"), "--workers", "2", "--follow", "cascade"]
    )
    assert result.exit_code == 0, result.output
    assert "2 clips prepared" in result.output
    assert sorted(p.name for p in (tmp_path / "cache").glob("*.npz")) == ["1001_IEO_NEU_XX.npz", "1002_IEO_NEU_XX.npz"]
    # the follower is part of the cache's face parameters, so it reaches the checkpoint and every artifact
    assert json.loads((tmp_path / "cache" / "cache.json").read_text())["face"]["follow"] == "cascade"


def test_the_cache_keeps_the_frames_times_so_training_plans_a_variable_rate_clip_as_scoring_does(tmp_path: Path) -> None:
    """A phone's variable frame rate (33 ms, then 120 ms between frames): the cached clip's frame times are the
    file's, so training's plan equals scoring's (before: frames assumed evenly spaced at the average rate)."""
    from test_time import write_timed

    steps = np.concatenate([np.full(9, 33), np.full(6, 120)] * 3)
    (tmp_path / "data").mkdir()
    video = write_timed(tmp_path / "data" / "1001_DFA_HAP_XX.mp4", np.concatenate([[0], np.cumsum(steps)]), 3.5)
    prepare_corpus(tmp_path / "data", tmp_path / "cache", FaceParams(), n_segments=4)
    cached = load_cached(tmp_path / "cache", index_corpus(tmp_path / "data")[0][0])
    clip = open_clip(video)
    np.testing.assert_array_equal(cached.clip.frame_times.t, clip.frame_times.t)
    config = PreprocessConfig(n_segments=4)
    assert plan_clip(cached.clip, config) == plan_clip(clip, config)
    assert plan_clip(cached.clip, config) != plan_clip(replace(clip, times=None), config)  # evenly spaced: other frames
