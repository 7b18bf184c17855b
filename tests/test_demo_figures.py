"""The demo's pictures: training curves, held-out confusion matrix and bench latency, as real PNGs in its folder."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from edge_emotion import LABELS
from edge_emotion.run.bench.run import run_bench
from edge_emotion.run.bench.targets import plan_targets
from edge_emotion.toolchain.demo import write_figures


def _run_folder(path):
    """What train writes for a 2-epoch run with eval_each_epoch (epochs.jsonl) and its held-out test (eval.json)."""
    path.mkdir()
    rows = [
        {"epoch": 0, "global_step": 9, "train_loss": 1.79, "train_accuracy": 0.21, "test_loss": 1.70, "test_accuracy": 0.25},
        {"epoch": 1, "global_step": 18, "train_loss": 1.20, "train_accuracy": 0.58, "test_loss": 1.31, "test_accuracy": 0.50},
    ]
    (path / "epochs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    confusion = (np.eye(6, dtype=int) * 2).tolist()
    confusion[1][0], confusion[1][1] = 1, 1
    (path / "eval.json").write_text(
        json.dumps({"fold": 0, "n_segments": 4, "accuracy": 11 / 12, "labels": list(LABELS), "confusion": confusion})
    )
    return path


def test_write_figures_leaves_three_pngs(fresh_checkpoint, tmp_path):
    report = run_bench(plan_targets([fresh_checkpoint], ["torch"]), [1, 2], iterations=3, warmup=0, device="cpu", max_seconds=1.0)
    figures = write_figures(_run_folder(tmp_path / "run"), report, tmp_path, held_out_actor=1006)
    assert list(figures) == ["training curves", "held-out confusion matrix", "bench latency"]
    assert [p.name for p in figures.values()] == ["curves.png", "confusion.png", "latency.png"]
    for path in figures.values():
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width >= 400 and image.height >= 300
            pixels = np.asarray(image.convert("L"), dtype=float)
        assert pixels.std() > 10  # lines, cells and labels drawn, not a blank canvas
    assert not list(tmp_path.glob(".*.png.*"))  # written atomically, no temporary left
