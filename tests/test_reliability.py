"""Reliability: a folder of every kind of bad input scores to one row each, the rest unharmed.

The corpus (tests/bad_inputs.py) is the one docs/RELIABILITY.md's table comes from:
`test_the_documented_table_is_this_corpus` checks the table against this run, and
rewrites it with `UPDATE_RELIABILITY_TABLE=1 python -m pytest tests/test_reliability.py`.
"""

from __future__ import annotations

import json
import os
import re
import tracemalloc
from pathlib import Path

import pytest
from bad_inputs import EXPECTED, build_corpus, can_read_unreadable, table

from edge_emotion.io.decode import open_clip, read_frames
from edge_emotion.run.score import ScoreOptions, score_folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad") / "corpus"
    return root, build_corpus(root)


@pytest.fixture(scope="module")
def rows(corpus, fresh_checkpoint, tmp_path_factory):
    root, _ = corpus
    out = tmp_path_factory.mktemp("bad_rows") / "rows.jsonl"
    summary = score_folder(root, fresh_checkpoint, out, ScoreOptions(workers=1, timeout=120, batch_size=16))
    assert summary.rows == len(EXPECTED) + 1  # the symlink loop is two links
    return {r["path"]: r for r in map(json.loads, out.read_text().splitlines())}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_each_bad_input_gets_its_row(kind, corpus, rows):
    _, paths = corpus
    _, status, cause = EXPECTED[kind]
    row = rows[str(paths[kind])]
    if kind.startswith("unreadable") and can_read_unreadable():
        status, cause = "ok", ""  # root reads a chmod 000 file
    assert row["status"] == status, row
    if status == "error":
        assert cause.lower() in row["error"].lower(), row["error"]
        assert row["label"] is None
    else:  # a degraded row says what the file lacks (no audio stream, cut short), if that is why
        assert cause.lower() in row["error"].lower() and (cause or row["error"] == ""), row["error"]
        assert row["label"] in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert row["n_segments"] == 4


def test_degraded_rows_say_why(corpus, rows):
    _, paths = corpus
    assert rows[str(paths["silent audio"])]["silent"] == 4
    assert rows[str(paths["no face (blank frames)"])]["faceless"] == 4
    assert rows[str(paths["rotation metadata"])]["faceless"] == 0  # frames turned upright before MTCNN


def test_ten_minute_video_keeps_memory_bounded(corpus):
    _, paths = corpus
    tracemalloc.start()
    clip = open_clip(paths["10-minute video"])
    frames = read_frames(clip, [0, 600, 1199])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert clip.frame_count == 1200 and clip.duration == pytest.approx(600)
    assert len(frames) == 3
    # the 600 s waveform at 16 kHz is 38 MB of float32; frames are never all held
    assert peak < 120e6, f"peak {peak / 1e6:.0f} MB"


DOC = Path(__file__).parent.parent / "docs" / "RELIABILITY.md"
TABLE_HEAD = "| kind of input | status | error (cause) |"


def _doc_table(text: str) -> tuple[int, int]:
    """Start and end offsets of the bad-input table in the document's text."""
    start = text.index(TABLE_HEAD)
    end = text.find("\n\n", start)
    return start, len(text) if end < 0 else end


def _rows_of(table_text: str) -> dict[str, tuple[str, str]]:
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table_text.splitlines()[2:]]
    return {kind: (status, cause) for kind, status, cause in cells}


def test_the_documented_table_is_this_corpus(corpus, rows):
    """docs/RELIABILITY.md's table is what this run produced: every kind, in order, same status and cause."""
    _, paths = corpus
    produced = table(rows, paths)
    text = DOC.read_text(encoding="utf-8")
    start, end = _doc_table(text)
    if os.environ.get("UPDATE_RELIABILITY_TABLE") == "1":
        DOC.write_text(text[:start] + produced + text[end:], encoding="utf-8")
        text = DOC.read_text(encoding="utf-8")
        start, end = _doc_table(text)
    documented, now = _rows_of(text[start:end]), _rows_of(produced)
    unreadable = "unreadable (chmod 000)"  # the document was made as root, which reads it; either row is right
    if documented.get(unreadable) != now.get(unreadable):
        assert documented.get(unreadable) in (("ok", ""), ("error", "permission denied")), documented.get(unreadable)
        documented[unreadable] = now[unreadable]
    assert documented == now, f"regenerate the table (UPDATE_RELIABILITY_TABLE=1):\n{produced}"


def test_no_test_skips_on_an_import_of_our_own_package():
    """importorskip on edge_emotion.* would turn a broken import of ours into a quiet skip in CI."""
    own = re.compile(r"importorskip\(\s*[\"']edge_emotion")
    offenders = [p.name for p in Path(__file__).parent.rglob("*.py") if own.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
