"""Training: exact resume, safe checkpoints, DDP under torchrun, the train and cv commands and their figures."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tone, write_video
from typer.testing import CliRunner

from edge_emotion import LABELS
from edge_emotion.cli import app
from edge_emotion.config import FaceParams
from edge_emotion.errors import ArtifactError
from edge_emotion.toolchain.checkpoint import build_branch, load_checkpoint
from edge_emotion.toolchain.train.loop import TrainConfig, build_model, recipe_config, train
from edge_emotion.toolchain.train.prepare import prepare_corpus

SUMMARY = Path(__file__).parent / "fixtures" / "meta" / "summaryTable.csv"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """3 actors x 6 emotions of 0.8 s generated clips (no faces: centre crops), prepared."""
    root = tmp_path_factory.mktemp("tiny")
    for actor in (1001, 1002, 1003):
        for k, emotion in enumerate(LABELS):
            frames = np.full((8, 48, 64, 3), 30 * k + actor % 7, np.uint8)
            write_video(
                root / "data" / "VideoFlash" / f"{actor}_DFA_{emotion}_XX.mp4",
                frames,
                fps=10,
                audio=tone(0.8, 150.0 * (k + 1)),
            )
    report = prepare_corpus(root / "data", root / "cache")
    assert len(report.done) == 18
    return root / "data", root / "cache"


def _config(recipe: str = "paper", **changes: object) -> TrainConfig:
    options = {"n_segments": 2, "epochs": 2, "batch_size": 4, "n_folds": 3, "fold": 0, "step_size": 2, **changes}
    return recipe_config(recipe, **options)


def _assert_trained(run: Path, state: dict) -> None:
    """The run's losses were finite, and its checkpoint holds finite weights that moved from the seed's initial ones."""
    losses = [json.loads(line)["loss"] for line in (run / "steps.jsonl").read_text().splitlines()]
    assert losses and all(np.isfinite(losses)), losses
    initial = build_model(_config(seed=state["train_config"]["seed"])).branch  # what training started from
    branch = build_branch(state)
    for name, start in initial.named_parameters():
        trained = branch.get_parameter(name)
        finite, moved = bool(torch.isfinite(trained).all()), not torch.equal(trained, start)
        assert finite and moved, (name, "finite" if finite else "not finite", "moved" if moved else "unchanged")
    with torch.no_grad():
        assert torch.isfinite(branch.eval()(torch.zeros(1, 3, 224, 224), torch.zeros(1, 1, 192, 120))).all()


@pytest.mark.parametrize("recipe", ["paper", "modern"])
def test_killed_and_resumed_run_ends_bit_identical(tiny: tuple[Path, Path], tmp_path: Path, recipe: str) -> None:
    data, cache = tiny
    config = _config(recipe)
    whole = train(data, cache, tmp_path / "whole", config)
    assert whole.global_step == 6 and not whole.stopped  # 12 training clips / batch 4 = 3 steps per epoch
    cut = train(data, cache, tmp_path / "cut", replace(config, stop_after=4))  # "killed" in the middle of epoch 2
    assert cut.stopped and cut.global_step == 4
    resumed = train(data, cache, tmp_path / "cut", config, resume=True)
    assert resumed.global_step == 6 and resumed.accuracy == whole.accuracy
    a, b = load_checkpoint(tmp_path / "whole" / "checkpoint.pt"), load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])  # weights and BN statistics, bit for bit
    for k, state in a["optimizer"]["state"].items():
        assert all(torch.equal(v, b["optimizer"]["state"][k][name]) for name, v in state.items() if torch.is_tensor(v))
    for log in ("steps.jsonl", "epochs.jsonl"):  # the log of the resumed run reads as if never interrupted
        assert (tmp_path / "whole" / log).read_text() == (tmp_path / "cut" / log).read_text()


def test_run_folder_contents_and_checkpoint(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    data, cache = tiny
    train(data, cache, tmp_path / "run", _config(epochs=1))
    steps = [json.loads(line) for line in (tmp_path / "run" / "steps.jsonl").read_text().splitlines()]
    assert [s["global_step"] for s in steps] == [1, 2, 3] and {"loss", "accuracy", "lr"} <= steps[0].keys()
    assert [s["lr"] for s in steps] == pytest.approx([1e-3, 1e-3, 1e-4])
    result = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert result["clips"] == 6 and np.sum(result["confusion"]) == 6 and len(result["predictions"]) == 6
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["progress"]["finished"] and state["preprocess"]["n_segments"] == 2
    cache_face = json.loads((cache / "cache.json").read_text())["face"]
    assert FaceParams.from_dict(state["preprocess"]["face"]) == FaceParams.from_dict(cache_face)  # crops as the cache
    _assert_trained(tmp_path / "run", state)
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        train(data, cache, tmp_path / "run", _config(epochs=1))
    with pytest.raises(ValueError, match="cannot resume with different options"):
        train(data, cache, tmp_path / "run", _config(epochs=1, lr=0.5), resume=True)


class _RunsCode:
    """Unpickling this would run a shell command: a checkpoint carrying it must be refused."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_a_malicious_pickle_is_refused(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    data, cache = tiny
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    torch.save(
        {"format": "edge-emotion-checkpoint/1", "model": {}, "payload": _RunsCode(marker)}, run / "checkpoint.pt"
    )
    with pytest.raises(ArtifactError, match="refused"):
        load_checkpoint(run / "checkpoint.pt")
    with pytest.raises(ArtifactError, match="refused"):
        train(data, cache, run, _config(epochs=1), resume=True)
    assert not marker.exists()


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    """`edge-emotion ARGS` in 2 CPU processes under torchrun (gloo)."""
    beside = Path(sys.executable).parent / "edge-emotion"  # the console script of this interpreter's environment
    script = str(beside) if beside.exists() else shutil.which("edge-emotion")
    assert script, "the edge-emotion console script is not installed"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--no-python", script, *args]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_ddp_with_two_cpu_processes_writes_one_checkpoint(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    data, cache = tiny
    done = _torchrun(
        "train", str(data), "-c", str(cache), "-o", str(tmp_path / "ddp"),
        "-n", "2", "--epochs", "1", "--batch-size", "4", "--n-folds", "3", "--device", "cpu",
    )  # fmt: skip
    assert done.stdout.count("test accuracy") == 1  # rank 0 alone reports
    run = tmp_path / "ddp"
    assert sorted(p.name for p in run.glob("*.pt")) == ["checkpoint.pt"] and not list(run.glob(".*.tmp"))
    assert json.loads((run / "config.json").read_text())["world_size"] == 2
    steps = [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]
    assert [s["global_step"] for s in steps] == [1, 2, 3]  # 12 clips, global batch 4 = 2 ranks x 2, logged once
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["progress"]["finished"]
    _assert_trained(run, state)


def test_cv_under_torchrun_trains_each_fold_once_on_both_ranks(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    data, cache = tiny
    out = tmp_path / "cv"
    done = _torchrun(
        "cv", str(data), "-c", str(cache), "-o", str(out), "--folds", "0,2",
        "-n", "2", "--epochs", "1", "--batch-size", "4", "--n-folds", "3", "--device", "cpu",
    )  # fmt: skip
    assert done.stdout.count("mean accuracy") == 1 and done.stdout.count("fold 2: accuracy") == 1  # rank 0 reports
    summary = json.loads((out / "cv.json").read_text())
    assert summary["per_n"]["2"]["folds"] == [0, 2]
    for k in (0, 2):
        run = out / "n2" / f"fold{k}"
        assert json.loads((run / "config.json").read_text())["world_size"] == 2
        assert [json.loads(line)["global_step"] for line in (run / "steps.jsonl").read_text().splitlines()] == [1, 2, 3]
        assert json.loads((run / "eval.json").read_text())["fold"] == k


def test_train_and_cv_commands_write_runs_summary_and_figures(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    data, cache = tiny
    runner = CliRunner()
    common = ["-c", str(cache), "--epochs", "1", "--batch-size", "4", "--n-folds", "3", "--recipe", "modern"]
    result = runner.invoke(
        app, ["train", str(data), "-o", str(tmp_path / "run"), "-n", "2", "--stop-after", "2", *common]
    )
    assert result.exit_code == 0, result.output
    assert "stopped after step 2" in result.output
    result = runner.invoke(app, ["train", str(data), "-o", str(tmp_path / "run"), "-n", "2", "--resume", *common])
    assert result.exit_code == 0 and "test accuracy" in result.output, result.output
    out = tmp_path / "cv"
    args = [
        "cv",
        str(data),
        "-o",
        str(out),
        "-n",
        "2",
        "--folds",
        "0,2",
        "--sweep-n",
        "1",
        "--summary-table",
        str(SUMMARY),
        *common,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "N=2: mean accuracy" in result.output and "human" in result.output
    summary = json.loads((out / "cv.json").read_text())
    assert sorted(summary["per_n"]) == ["1", "2"] and summary["per_n"]["2"]["folds"] == [0, 2]
    assert np.sum(summary["per_n"]["2"]["confusion"]) == 12  # both test folds, 6 clips each
    assert all(r["human"]["clips"] == 6 for r in summary["runs"])
    for name in ("curves.png", "confusion.png", "accuracy_vs_n.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = sorted(out.glob("n*/fold*/checkpoint.pt"))
    assert len(runs) == 4  # N = 1 and 2, folds 0 and 2
    before = {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in runs}
    result = runner.invoke(app, args)  # finished runs are read back, not trained again
    assert result.exit_code == 0, result.output
    assert {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in runs} == before
    assert json.loads((out / "cv.json").read_text()) == summary  # the same summary, from the runs read back
