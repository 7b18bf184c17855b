"""The one-command demo: every stage of the toolkit, end to end, on the embedded synthetic corpus.

    synth -> prepare (faces tracked once per clip, as `score` tracks them) -> train (one actor held out)
    -> export FP32 + INT8 ONNX -> score the held-out actor with the checkpoint (torch) and each artifact,
    through the one scorer -> bench the backends -> figures (PNG)

Each stage calls the same library function as its CLI command, and each is
resumable (files already made are kept), so a rerun after a kill picks up.
The pictures a user wants to look at are left in the demo folder: the training
curves (train and held-out loss / accuracy per epoch), the held-out actor's
confusion matrix and the latency of each backend and precision by batch size.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edge_emotion import LABELS
from edge_emotion.deps import require
from edge_emotion.io.atomic import write_png

if TYPE_CHECKING:
    from edge_emotion.run.bench.report import BenchReport


@dataclass(frozen=True)
class DemoConfig:
    """Sized to finish in a few minutes on 2 CPU cores."""

    out_dir: Path = Path("edge-emotion-demo")
    actors: int = 6
    clips_per_class: int = 2
    n_segments: int = 4
    epochs: int = 6
    batch_size: int = 8
    calib_segments: int = 96
    seed: int = 0


@dataclass
class DemoResult:
    """Where everything went, and what it scored."""

    out_dir: Path
    held_out_actor: int
    checkpoint: Path
    artifacts: dict[str, Path]  # precision -> ONNX
    accuracy: dict[str, float]  # "torch" and each artifact's precision -> held-out clip accuracy
    bench: BenchReport
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Path] = field(default_factory=dict)  # what it shows -> PNG


def _make_corpus(config: DemoConfig) -> Path:
    from edge_emotion.toolchain.synth import make_corpus

    corpus = config.out_dir / "corpus"
    make_corpus(corpus, actors=config.actors, clips_per_class=config.clips_per_class, seed=config.seed)
    return corpus


def _prepare(corpus: Path, config: DemoConfig) -> Path:
    from edge_emotion.toolchain.train.prepare import default_workers, prepare_corpus

    cache = config.out_dir / "cache"
    report = prepare_corpus(corpus, cache, n_segments=config.n_segments, workers=default_workers())
    if report.failed:
        raise RuntimeError(f"prepare failed on {len(report.failed)} synthetic clips: {report.failed[:3]}")
    return cache


def _train(corpus: Path, cache: Path, config: DemoConfig) -> tuple[Path, int]:
    """Fold 0 of one-actor folds: the held-out actor is never seen in training."""
    from edge_emotion.toolchain.train.loop import recipe_config, train

    run_dir = config.out_dir / "run"
    train_config = recipe_config(
        "modern",
        n_segments=config.n_segments,
        epochs=config.epochs,
        batch_size=config.batch_size,
        n_folds=config.actors,
        fold=0,
        seed=config.seed,
        eval_each_epoch=True,  # the held-out curve of the training figure (12 clips: a second per epoch)
    )
    finished = (run_dir / "eval.json").exists()
    if not finished:
        train(corpus, cache, run_dir, train_config, resume=(run_dir / "checkpoint.pt").exists())
    held_out = json.loads((run_dir / "folds.json").read_text())["folds"][0][0]
    return run_dir / "checkpoint.pt", int(held_out)


def _held_out_folder(corpus: Path, actor: int, out_dir: Path) -> Path:
    """The held-out actor's clips in a folder of their own, so `score` sees only unseen data."""
    folder = out_dir / f"held_out_{actor}"
    folder.mkdir(parents=True, exist_ok=True)
    for clip in sorted((corpus / "VideoFlash").glob(f"{actor}_*")):
        if not (folder / clip.name).exists():
            shutil.copy2(clip, folder / clip.name)
    return folder


def _export(checkpoint: Path, corpus: Path, held_out: Path, config: DemoConfig) -> tuple[dict[str, Path], list[str]]:
    """FP32 and INT8 ONNX, each checked against torch on held-out clips; INT8 calibrated on training clips."""
    from edge_emotion.preprocess.faces import FaceDetector
    from edge_emotion.toolchain.checkpoint import load_checkpoint, preprocess_config
    from edge_emotion.toolchain.export.parity import load_inputs
    from edge_emotion.toolchain.export.pipeline import CalibrationOptions, export_onnx_artifact

    preprocess = preprocess_config(load_checkpoint(checkpoint))
    detector = FaceDetector(preprocess.face)
    inputs = load_inputs([held_out], preprocess, detector)
    artifacts, notes = {}, []
    calibration = CalibrationOptions(
        corpus / "VideoFlash",
        segments=config.calib_segments,
        prepare_cache=config.out_dir / "cache",
        seed=config.seed,
    )
    for precision, calib in (("fp32", None), ("int8", calibration)):
        path = config.out_dir / ("model.onnx" if precision == "fp32" else f"model.{precision}.onnx")
        if not path.exists():
            result = export_onnx_artifact(checkpoint, path, inputs, precision, calib, detector=detector)
            notes.append(result.report.summary())
            if result.calibration:
                notes.append(result.calibration.summary())
        artifacts[precision] = path
    return artifacts, notes


def _score_accuracy(folder: Path, artifact: Path, output: Path, backend: str) -> float:
    """Score the folder with the artifact on `backend` through the one scorer (`score`'s path); accuracy against the
    emotion in each CREMA-D file name. The rows of all artifacts then differ only by what export changed."""
    from edge_emotion.run.score import ScoreOptions, score_folder
    from edge_emotion.toolchain.train.crema import parse_name

    score_folder(folder, artifact, output, ScoreOptions(backend=backend, workers=1))
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    items = [parse_name(Path(r["path"]).stem) for r in rows]  # the demo's own corpus: CREMA-D names only
    correct = [not isinstance(item, str) and r["label"] == item.emotion for r, item in zip(rows, items)]
    return sum(correct) / max(1, len(correct))


def _bench(checkpoint: Path, artifacts: dict[str, Path], held_out: Path, config: DemoConfig) -> BenchReport:
    from edge_emotion.run.bench.run import run_bench
    from edge_emotion.run.bench.targets import plan_targets

    targets = plan_targets([checkpoint, *artifacts.values()], ["torch", "onnxruntime", "tensorrt"])
    videos = sorted(held_out.iterdir())[:3]
    return run_bench(targets, [1, config.n_segments, 64], iterations=10, warmup=2, videos=videos, max_seconds=4.0)


def write_figures(run_dir: Path, bench: BenchReport, out_dir: Path, held_out_actor: int) -> dict[str, Path]:
    """curves.png (train / held-out per epoch), confusion.png (held-out actor), latency.png (bench) -> paths."""
    from edge_emotion.toolchain.train.figures import plot_confusion, plot_curves

    figures = {
        "training curves": out_dir / "curves.png",
        "held-out confusion matrix": out_dir / "confusion.png",
        "bench latency": out_dir / "latency.png",
    }
    plot_curves({"demo": run_dir}, figures["training curves"])  # demo train (solid), demo test = held-out (dashed)
    result = json.loads((run_dir / "eval.json").read_text())
    title = f"actor {held_out_actor} (held out), N = {result['n_segments']}: accuracy {result['accuracy']:.3f}"
    plot_confusion(result["confusion"], result.get("labels", LABELS), figures["held-out confusion matrix"], title)
    plot_latency(bench, figures["bench latency"])
    return figures


def plot_latency(report: BenchReport, output: Path) -> None:
    """Median latency per call against batch size, p99 as the bar's top, one line per backend x precision; PNG."""
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot")
    series: dict[str, list[tuple[int, float, float]]] = {}
    for row in report.rows:
        if row.status == "ok" and row.latency_ms is not None and row.batch_size is not None:
            name = f"{row.backend} {row.precision} ({Path(row.artifact or '').name})"
            series.setdefault(name, []).append((row.batch_size, row.latency_ms.p50, row.latency_ms.p99))
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in series.items():
        sizes, p50, p99 = zip(*sorted(points))
        ax.errorbar(sizes, p50, yerr=[[0.0] * len(p50), [hi - mid for mid, hi in zip(p50, p99)]], marker="o", capsize=3, label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size (segments per call)")
    ax.set_ylabel("latency per call, ms (p50, bar to p99)")
    ax.set_title(f"edge-emotion bench: {report.machine.get('cpu') or report.machine.get('platform', '')}"[:80])
    ax.grid(alpha=0.3, which="both")
    if series:
        ax.legend(fontsize=7)
    fig.tight_layout()
    write_png(fig, output)


def run_demo(config: DemoConfig = DemoConfig(), say: Callable[[str], None] = print) -> DemoResult:
    """Run every stage; `say` hears one line per stage."""
    config.out_dir.mkdir(parents=True, exist_ok=True)
    say(f"1/7 synth: {config.actors} actors x {len(LABELS)} emotions x {config.clips_per_class} clips")
    corpus = _make_corpus(config)
    say(f"2/7 prepare: decode + faces tracked once per clip on its N={config.n_segments} planned frames")
    cache = _prepare(corpus, config)
    say(f"3/7 train: N={config.n_segments}, {config.epochs} epochs, one actor held out")
    checkpoint, actor = _train(corpus, cache, config)
    held_out = _held_out_folder(corpus, actor, config.out_dir)
    say(f"4/7 export: FP32 and INT8 ONNX, each checked against torch on actor {actor}'s clips")
    artifacts, notes = _export(checkpoint, corpus, held_out, config)
    for note in notes:
        say(f"    {note}")
    say(f"5/7 score: actor {actor}'s {len(list(held_out.iterdir()))} clips with the checkpoint and each artifact")
    accuracy = {"torch (checkpoint)": _score_accuracy(held_out, checkpoint, config.out_dir / "scores.torch.jsonl", "torch")}
    for precision, artifact in artifacts.items():
        accuracy[f"onnxruntime {precision}"] = _score_accuracy(
            held_out, artifact, config.out_dir / f"scores.{precision}.jsonl", "onnxruntime"
        )
    say("6/7 bench: latency per backend and precision")
    bench = _bench(checkpoint, artifacts, held_out, config)
    say("7/7 figures: training curves, held-out confusion matrix, bench latency (PNG)")
    figures = write_figures(checkpoint.parent, bench, config.out_dir, actor)
    return DemoResult(config.out_dir, actor, checkpoint, artifacts, accuracy, bench, notes, figures)
