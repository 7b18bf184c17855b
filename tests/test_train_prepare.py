"""The prepare cache (boxes once per clip) and the Dataset that reads it through the scorer's own preprocessing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tone, write_video
from typer.testing import CliRunner

from edge_emotion.toolchain.train.box_cache import detection_frames, interpolate_boxes, load_cached
from edge_emotion.toolchain.train.crema import index_corpus
from edge_emotion.toolchain.train.dataset import CachedClips
from edge_emotion.toolchain.train.prepare import prepare_corpus
from edge_emotion.cli import app
from edge_emotion.config import FaceParams, PreprocessConfig
from edge_emotion.io.decode import open_clip
from edge_emotion.preprocess.faces import FaceDetector
from edge_emotion.preprocess.segments import extract, plan_clip


def test_interpolate_boxes_linear_between_nearest_beyond() -> None:
    boxes = interpolate_boxes(7, [1, 3, 5], [(0, 0, 10, 10), None, (4, 4, 14, 14)])
    assert boxes.shape == (7, 4)
    np.testing.assert_allclose(boxes[0], [0, 0, 10, 10])  # before the first detection: nearest
    np.testing.assert_allclose(boxes[3], [2, 2, 12, 12])  # a miss is bridged by its neighbours
    np.testing.assert_allclose(boxes[6], [4, 4, 14, 14])
    assert np.isnan(interpolate_boxes(3, [0, 2], [None, None])).all()  # no face anywhere: NaN (centre crop)


def test_detection_frames_always_include_the_last() -> None:
    assert detection_frames(10, 3) == [0, 3, 6, 9]
    assert detection_frames(11, 3) == [0, 3, 6, 9, 10]
    assert detection_frames(1, 5) == [0]


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
    return cache, prepare_corpus(small_corpus, cache, every=1)


def test_prepare_caches_good_clips_and_logs_damaged_ones(small_corpus: Path, prepared: tuple[Path, object]) -> None:
    cache, report = prepared
    assert sorted(report.done) == ["1001_DFA_HAP_XX", "1002_DFA_SAD_XX"]
    assert [Path(s.path).name for s in report.failed] == ["1003_DFA_ANG_XX.flv"]
    assert [Path(s.path).name for s in report.skipped_at_index] == ["1004_DFA_ANG_XX.flv"]
    errors = [json.loads(line) for line in (cache / "errors.jsonl").read_text().splitlines()]
    assert errors[0]["clip"] == "1003_DFA_ANG_XX" and "not a readable video" in errors[0]["error"]
    items = {i.name: i for i in index_corpus(small_corpus)[0]}
    real = load_cached(cache, items["1001_DFA_HAP_XX"])
    assert real.boxes.shape == (real.clip.frame_count, 4) and real.detected.all()
    faceless = load_cached(cache, items["1002_DFA_SAD_XX"])
    assert np.isnan(faceless.boxes).all() and faceless.boxes_for([0, 3]) == [None, None]
    assert not list(cache.glob("*.tmp")) and not list(cache.glob(".*.tmp"))


def test_prepare_resumes_and_refuses_other_face_parameters(small_corpus: Path, prepared: tuple[Path, object]) -> None:
    cache, _ = prepared
    again = prepare_corpus(small_corpus, cache, every=1)
    assert again.done == [] and sorted(again.reused) == ["1001_DFA_HAP_XX", "1002_DFA_SAD_XX"]
    assert len(again.failed) == 1  # a damaged clip is tried again, and reported again
    with pytest.raises(ValueError, match="was prepared with"):
        prepare_corpus(small_corpus, cache, FaceParams(min_face_size=20), every=1)


def test_test_mode_item_equals_the_scoring_path(small_corpus: Path, tmp_path: Path) -> None:
    """With the exact follower (MTCNN's own box on every frame, whichever frames are tracked), training's inputs from
    a cache tracked on every frame are exactly what scoring computes on the planned frames. (The default ONet
    follower's boxes depend on which frames it followed through: cache and scoring then agree to its IoU ~0.93.)"""
    face = FaceParams(follow="cascade")
    prepare_corpus(small_corpus, tmp_path / "cache", face, every=1)
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
