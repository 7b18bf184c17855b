"""One writer per output: a second `score` on the same results file, a second `prepare` on the same cache and a
second `cv` on the same folder are refused at once (naming the process that holds it); a killed holder never
blocks; results files keep their mode through a resume. Tested with real second processes."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import tone, write_video
from reliability_helpers import hold, release

from edge_emotion import LABELS
from edge_emotion.io.atomic import FileLockedError, lock_path
from edge_emotion.run.result import FileKey, Result, error_result
from edge_emotion.run.results_file import WINDOWS, ResultsFile
from edge_emotion.run.score import ScoreOptions, score_folder


def _score_cli(folder: Path, checkpoint: Path, output: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "edge_emotion", "score", str(folder), "-m", str(checkpoint), "-o", str(output)]
    return subprocess.run([*command, "--workers", "0", "--quiet"], capture_output=True, text=True, timeout=300, check=False)


def test_a_second_score_on_the_same_output_is_refused_and_a_killed_holder_never_blocks(tmp_path, fresh_checkpoint):
    folder = tmp_path / "videos"
    write_video(folder / "clip.mp4", np.full((4, 48, 64, 3), 90, np.uint8), fps=4, audio=tone(1.0))  # cheap to score
    out = tmp_path / "out.csv"
    holder = hold(out, results=True)  # a run that has the results file open (and so its lock)
    before = out.read_bytes()
    started = time.monotonic()
    second = _score_cli(folder, fresh_checkpoint, out)
    refused_after = time.monotonic() - started
    assert second.returncode == 1, second.stderr
    assert second.stderr.strip() == (
        f"error: {out}: already being written by process {holder.pid}; "
        "wait for that run to finish or write somewhere else"
    )
    assert out.read_bytes() == before  # not a row written, nothing truncated
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert lock_path(out).read_text().strip() == str(holder.pid)  # the dead holder's lock file is still there
    summary = score_folder(folder, fresh_checkpoint, out, ScoreOptions(workers=0))  # ... and does not block
    assert summary.rows == summary.scored == 1
    assert len(out.read_text().splitlines()) == 2  # header + the one clip, once
    print(f"second score refused after {refused_after:.1f} s (process start, model load included)")


def _row(i: int) -> Result:
    key = FileKey(f"/v/{i}.mp4", 10 + i, 5)
    return error_result("clip", key, "not a readable video container")


def test_a_results_file_keeps_its_mode_through_a_resume(tmp_path):
    out = tmp_path / "r.csv"
    mask = os.umask(0o022)
    os.umask(mask)
    with ResultsFile(out, LABELS, {"artifact": "m.onnx", "sha256": "ab"}) as results:
        results.write(_row(0))
        results.write(_row(1))
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask  # like open(): 0644 under umask 022, not 0600
    assert stat.S_IMODE(results.model_path.stat().st_mode) == 0o666 & ~mask
    out.chmod(0o640)
    results.model_path.chmod(0o640)
    with ResultsFile(out, LABELS, {"artifact": "m.onnx", "sha256": "ab"}) as results:
        results.drop(["/v/0.mp4"])  # the atomic rewrite a resume does for a changed file
    assert list(results.files) == ["/v/1.mp4"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert stat.S_IMODE(results.model_path.stat().st_mode) == 0o640


def test_a_results_file_that_fails_to_open_releases_its_lock(tmp_path):
    out = tmp_path / "r.csv"
    out.write_text("other,columns\n")
    with pytest.raises(Exception, match="columns"):
        ResultsFile(out, LABELS)
    with ResultsFile(tmp_path / "r.jsonl", LABELS):  # another file: its own lock
        pass
    out.write_text("")
    with ResultsFile(out, LABELS):  # the failed open did not keep the lock
        pass


def test_a_second_prepare_on_the_same_cache_is_refused(tmp_path):
    from edge_emotion.toolchain.train.prepare import prepare_corpus

    cache = tmp_path / "cache"
    cache.mkdir()
    holder = hold(cache)
    try:
        with pytest.raises(FileLockedError, match=f"{cache}: already being written by process {holder.pid}"):
            prepare_corpus(tmp_path / "no_corpus_needed", cache)
    finally:
        release(holder)
    assert sorted(p.name for p in cache.iterdir()) == []  # refused before cache.json or errors.jsonl


def test_a_second_cv_on_the_same_folder_is_refused(tmp_path):
    from edge_emotion.toolchain.train.cv import run_cv
    from edge_emotion.toolchain.train.loop import TrainConfig

    out = tmp_path / "cv"
    out.mkdir()
    holder = hold(out)
    try:
        with pytest.raises(FileLockedError, match=f"{out}: already being written by process {holder.pid}"):
            run_cv(tmp_path / "data", tmp_path / "cache", out, TrainConfig(device="cpu"))
    finally:
        release(holder)
    assert list(out.iterdir()) == []  # no folds.json


def test_results_rows_are_never_duplicated_by_sequential_runs(tmp_path):
    """The lock is per run, not per file forever: the next run after a finished one resumes as before."""
    out = tmp_path / "r.jsonl"
    for _ in range(2):
        with ResultsFile(out, LABELS) as results:
            for i in range(3):
                if not results.done(FileKey(f"/v/{i}.mp4", 10 + i, 5)):
                    results.write(_row(i))
    assert len(out.read_text().splitlines()) == 3
    assert np.unique([line for line in out.read_text().splitlines()]).size == 3


def _window(key: FileKey, window: int) -> Result:
    from edge_emotion.run.result import window_result

    return window_result("window", key, key.path, person=0, people=1, window=window, n_windows=6, t_start=float(window),
                         t_end=window + 1.0, segment_probs=np.full((1, 6), 1 / 6), detected=[True], silent=0, labels=LABELS)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_chunked_recording_keeps_its_finished_chunks_and_only_its_own_log_resumes_it(tmp_path, suffix):
    """Three chunks of windows [0, 2), [2, 4), [4, 6): killed half-way through the second one's rows (its log entry
    written before them), reopened: the first chunk's rows stay, the torn second one's go, the resume starts at it
    with what the first chunk left. The log resumes nothing for another version of the file, or after its last row."""
    from edge_emotion.timeline.chunks import Chunk

    out, key = tmp_path / f"r{suffix}", FileKey("/v/long.mp4", 100, 7)
    chunks = [Chunk(c, 3, (2 * c, 2 * c + 2), (0, 1), (0, 1), None) for c in range(3)]
    with ResultsFile(out, LABELS, kind=WINDOWS) as results:
        for c, windows in ((0, [0, 1]), (1, [2])):
            results.log_chunk(key, chunks[c], {"next_id": 1, "main": 0, "shared": {"0": {str(c): [1.0, 2.0, 3.0, 4.0]}}})
            results.write_rows([_window(key, w) for w in windows])
    other = tmp_path / f"other{suffix}"  # the same, for a file changed since (another mtime)
    other.write_bytes(out.read_bytes())
    Path(f"{other}.chunks.json").write_bytes(Path(f"{out}.chunks.json").read_bytes())
    with ResultsFile(other, LABELS, kind=WINDOWS) as results:
        assert results.pending([FileKey(key.path, 100, 8)]) == [FileKey(key.path, 100, 8)]
        assert results.resume is None and not results.files  # every row of the old version goes
    with ResultsFile(out, LABELS, kind=WINDOWS) as results:
        assert results.pending([key]) == [key] and results.resume is not None
        assert results.resume.windows == [(0, 2)] and results.resume.state["shared"] == {"0": {"0": [1.0, 2.0, 3.0, 4.0]}}
        assert results.files[key.path].window == 1 and not results.done(key)  # window 2's rows gone
        for w in range(2, 6):
            results.write_rows([_window(key, w)])
        assert results.done(key)
    assert [int(line.split('"window": ')[1].split(",")[0]) if suffix == ".jsonl" else int(line.split(",")[4])
            for line in out.read_text().splitlines()[suffix == ".csv":]] == list(range(6))
    assert not results.chunks_path.exists()  # closed with its recording complete: the log goes
