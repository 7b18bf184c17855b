"""A short training on the synthetic corpus, through the real MTCNN path, beats chance on an actor it never saw."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_emotion.toolchain.train.crema import index_corpus
from edge_emotion.toolchain.train.loop import recipe_config, train
from edge_emotion.toolchain.train.prepare import prepare_corpus

CHANCE = 1 / 6


@pytest.mark.slow
def test_short_training_recognises_a_held_out_synthetic_actor(synth_corpus: Path, tmp_path: Path) -> None:
    items, skipped = index_corpus(synth_corpus)
    assert items and not skipped
    actors = sorted({i.actor for i in items})
    report = prepare_corpus(synth_corpus, tmp_path / "cache", workers=2)
    assert not report.failed, report.failed
    # one fold per actor: fold 0 holds out exactly one actor
    config = recipe_config(
        "modern", n_segments=3, epochs=7, batch_size=4, n_folds=len(actors), fold=0, eval_each_epoch=False
    )
    result = train(synth_corpus, tmp_path / "cache", tmp_path / "run", config)
    held_out = json.loads((tmp_path / "run" / "folds.json").read_text())["folds"][0]
    assert len(held_out) == 1
    evaluation = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert {p["clip"][:4] for p in evaluation["predictions"]} == {str(held_out[0])}
    assert result.accuracy is not None and result.accuracy >= 0.5, (
        f"accuracy {result.accuracy:.3f} (chance {CHANCE:.3f})"
    )
