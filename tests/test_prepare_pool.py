"""Worker isolation: `prepare` on the WorkerPool (a clip that crashes or hangs its worker is one error, the corpus
goes on), and a worker whose setup hangs or dies ends the run with one error instead of waiting forever."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from reliability_helpers import ScriptedCacheJob, SetupDiesJob, SetupHangsJob

from edge_emotion.config import FaceParams
from edge_emotion.errors import EdgeEmotionError
from edge_emotion.run.pool import WorkerPool
from edge_emotion.toolchain.train.box_cache import cache_file, load_cached
from edge_emotion.toolchain.train.crema import index_corpus
from edge_emotion.toolchain.train.prepare import prepare_corpus, run_jobs


def _corpus(root: Path, hap: Path, names: list[str]) -> Path:
    videos = root / "VideoFlash"
    videos.mkdir(parents=True)
    for name in names:
        shutil.copy(hap, videos / f"{name}.flv")
    return root


def test_prepare_pool_turns_a_crash_and_a_hang_into_errors_and_goes_on(tmp_path, hap_clip_path):
    """Before, prepare ran on a bare ProcessPoolExecutor: one crash ended the corpus (BrokenProcessPool), a hang never did."""
    root = _corpus(tmp_path / "data", hap_clip_path, ["1001_DFA_HAP_XX", "1002_DFA_HAP_XX", "1003_DFA_HAP_XX"])
    items, _ = index_corpus(root)
    cache = tmp_path / "cache"
    cache.mkdir()
    job = ScriptedCacheJob(
        str(cache), FaceParams(), n_segments=3, crash=frozenset({"1002_DFA_HAP_XX"}), hang=frozenset({"1003_DFA_HAP_XX"})
    )
    errors = {item.name: error for item, error in run_jobs(items, job, workers=1, timeout=4.0)}
    assert errors == {
        "1001_DFA_HAP_XX": None,
        "1002_DFA_HAP_XX": "preprocessing worker died (exit code 3)",
        "1003_DFA_HAP_XX": "timed out after 4 s (preprocessing did not finish)",
    }
    cached = load_cached(cache, items[0])
    assert cached.detected.any() and cached.boxes.shape == (3, 4)
    assert not cache_file(cache, "1002_DFA_HAP_XX").exists() and not cache_file(cache, "1003_DFA_HAP_XX").exists()


def test_prepare_with_workers_logs_each_bad_clip_once_per_run(tmp_path, hap_clip_path):
    root = _corpus(tmp_path / "data", hap_clip_path, ["1001_DFA_HAP_XX"])
    (root / "VideoFlash" / "1002_DFA_SAD_XX.flv").write_bytes(b"FLV not really")
    cache = tmp_path / "cache"
    for _ in range(2):  # the damaged clip is retried by the second run and logged again, not twice
        report = prepare_corpus(root, cache, n_segments=3, workers=1)
        assert [Path(s.path).name for s in report.failed] == ["1002_DFA_SAD_XX.flv"]
    assert report.reused == ["1001_DFA_HAP_XX"]
    lines = (cache / "errors.jsonl").read_text().splitlines()
    assert len(lines) == 1 and "not a readable video container" in lines[0]
    assert not (cache / ".lock").exists()  # released at the end of the run


def test_a_worker_whose_setup_hangs_is_killed_and_the_run_fails_with_one_error():
    started = time.monotonic()
    with WorkerPool(SetupHangsJob(), workers=1, timeout=1.0, setup_timeout=1.0) as pool:
        pid = pool.pids[0]
        with pytest.raises(EdgeEmotionError) as failed:
            list(pool.run([Path("a.mp4"), Path("b.mp4")]))
        assert pool.pids == []
    message = str(failed.value)
    assert message.startswith("a preprocessing worker did not finish its setup within 1 s"), message
    assert f"pid {pid}, killed" in message and "\n" not in message
    assert not Path(f"/proc/{pid}").exists()  # killed and reaped
    assert time.monotonic() - started < 30  # before: it waited forever


def test_a_worker_that_dies_in_setup_fails_the_run_with_one_error():
    with WorkerPool(SetupDiesJob(), workers=1, timeout=1.0) as pool, pytest.raises(EdgeEmotionError) as failed:
        list(pool.run([Path("a.mp4")]))
    assert str(failed.value) == "a preprocessing worker died while starting (exit code 7)"


def test_setup_timeout_must_be_positive():
    with pytest.raises(ValueError, match="setup_timeout"):
        WorkerPool(SetupDiesJob(), setup_timeout=0)


@pytest.mark.skipif(os.name != "posix", reason="FIFOs and device links are POSIX")
def test_the_index_names_special_files_for_what_they_are(tmp_path):
    """A FIFO or a link to /dev/zero named like a CREMA-D clip is skipped as 'not a regular file', never opened."""
    videos = tmp_path / "VideoFlash"
    videos.mkdir()
    os.mkfifo(videos / "1001_DFA_HAP_XX.flv")
    (videos / "1002_DFA_HAP_XX.flv").symlink_to("/dev/zero")
    (videos / "1003_DFA_HAP_XX.flv").write_bytes(b"")
    (videos / "1004_DFA_HAP_XX.flv").mkdir()
    items, skipped = index_corpus(tmp_path)
    assert items == []
    assert {Path(s.path).name: s.reason for s in skipped} == {
        "1001_DFA_HAP_XX.flv": "not a regular file (FIFO)",
        "1002_DFA_HAP_XX.flv": "not a regular file (character device)",
        "1003_DFA_HAP_XX.flv": "empty file (0 bytes)",
        "1004_DFA_HAP_XX.flv": "is a directory, not a video file",
    }
