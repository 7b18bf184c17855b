"""atomic writes: all or nothing at the final path, and no litter left by killed writers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from edge_emotion.atomic import atomic_path, atomic_write_text


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-way")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_temporaries_of_dead_writers_are_removed_on_the_next_write(tmp_path):
    target = tmp_path / "rows.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".rows.json.{dead.stdout.strip()}.abc123.tmp"
    stale.write_text("left by a SIGKILLed writer")
    live = tmp_path / f".rows.json.{os.getpid()}.def456.tmp"  # this process: still writing
    live.write_text("in progress")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert not stale.exists() and live.exists()
