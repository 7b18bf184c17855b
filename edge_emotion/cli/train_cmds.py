"""Commands of the train stage: `prepare`, `train`, `cv`. They parse options and call edge_emotion.toolchain.train.

torch, MTCNN and matplotlib are imported inside the command bodies only, so
`edge-emotion --help` stays fast. `train` and `cv` run unchanged under torchrun:
    torchrun --nproc-per-node 2 --no-python edge-emotion train DATA --cache CACHE -o RUN
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from edge_emotion import defaults
from edge_emotion.cli import paths
from edge_emotion.cli.executor import EngineAlias, ray_options
from edge_emotion.cli.recipe import RecipeOptions, one_of, recipe_options
from edge_emotion.config import FOLLOWERS, PreprocessConfig

DataDir = Annotated[
    Path, typer.Argument(help="CREMA-D folder (VideoFlash/AAAA_SSS_EEE_LL.flv) or a flat folder of such videos.")
]
CacheDir = Annotated[Path, typer.Option("--cache", "-c", help="Folder written by `edge-emotion prepare`.")]
CkptEvery = Annotated[
    int | None, typer.Option(min=0, help="Also checkpoint every this many steps [0: epoch ends only].")
]


def _is_main() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _check_run_paths(data_dir: Path, output: Path, cache: Path | None = None, files: dict[str, Path | None] | None = None) -> None:
    """The corpus folder (with videos), the output folder, the prepare cache and the given files, before torch loads."""
    paths.video_source(paths.existing_dir(data_dir, "DATA_DIR"), "DATA_DIR")
    paths.output_dir(output, "--output")
    if cache is not None and not (cache / "cache.json").is_file():
        why = "no such folder" if not cache.exists() else "no cache.json" if cache.is_dir() else "not a folder"
        raise typer.BadParameter(
            f"{cache}: not a prepare cache ({why}): run `edge-emotion prepare {data_dir} -o {cache}` first",
            param_hint="--cache",
        )
    if cache is not None:
        from edge_emotion.toolchain.train.box_cache import OldCacheError, cache_meta

        try:
            cache_meta(cache)
        except OldCacheError as exc:
            raise typer.BadParameter(str(exc), param_hint="--cache") from exc
    for option, path in (files or {}).items():
        if path is not None:
            paths.existing_file(path, option)


def _check_device(device: str | None) -> None:
    """--device: a device name, and CUDA only where there is one (torch would fail mid-setup otherwise)."""
    if device is None:
        return
    paths.device_name(device)
    if device.startswith("cuda"):
        from edge_emotion.toolchain.train.distributed import cuda_device_count

        index, count = int(device.partition(":")[2] or 0), cuda_device_count()
        if index >= count:
            raise typer.BadParameter(
                f"{device!r}: {count} CUDA device(s) here; use --device cpu or auto",
                param_hint="--device",
            )


def prepare(
    data_dir: DataDir,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Cache folder to write (resumable: done clips are skipped).")
    ],
    n_segments: Annotated[
        int,
        typer.Option(
            "--n-segments", "-n", min=1,
            help="The model's N: faces are tracked on each clip's N planned frames, as `score` tracks them "
            "(train with the same N to train on scoring's boxes).",
        ),
    ] = PreprocessConfig().n_segments,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Worker processes, 0: this process [one per core]. With --executor ray: the most actors [the cluster's CPUs].",
        ),
    ] = None,
    min_face_size: Annotated[
        int, typer.Option(min=1, help="MTCNN's smallest face, in pixels of the source frame (of the detection image if --detect-max-side).")
    ] = defaults.MIN_FACE_SIZE,
    detect_max_side: Annotated[
        int,
        typer.Option(
            min=0,
            help="Downscale frames to this longest side before MTCNN (0: never, the default: small faces in HD "
            "frames are found). Travels with the model: scoring detects the same way.",
        ),
    ] = defaults.DETECT_MAX_SIDE,
    detect_every_planned: Annotated[
        int,
        typer.Option(
            "--detect-every-planned",
            "--detect-stride",
            min=1,
            help="The full MTCNN cascade runs on every k-th planned frame (and whenever a face is lost); faces "
            "are followed between. Travels with the model; training uses the cache's boxes.",
        ),
    ] = defaults.DETECT_EVERY_PLANNED,
    follow: Annotated[
        str,
        typer.Option(
            help="How a face is followed between full detections: onet (MTCNN's ONet near the last box, fast) or "
            "cascade (MTCNN's own boxes exactly, ~7x the cost). Travels with the model.",
            callback=one_of(FOLLOWERS),
        ),
    ] = defaults.FACE_FOLLOW,
    executor: Annotated[
        str, typer.Option(help="local (this machine's processes) or ray (Ray Data actors; DATA and the cache on a shared path).")
    ] = "local",
    address: Annotated[
        str | None, typer.Option(help="With --executor ray: join this cluster (host:port, or auto) instead of a local instance.")
    ] = None,
    engine: EngineAlias = None,
) -> None:
    """Decode every clip and track its faces once, as `score` does, so that training never runs MTCNN."""
    from rich.progress import Progress

    from edge_emotion.config import FaceParams
    from edge_emotion.toolchain.train.prepare import default_workers, prepare_corpus

    _check_run_paths(data_dir, output)
    ray = ray_options(executor, address, workers, engine)
    face = FaceParams(
        min_face_size=min_face_size, detect_max_side=detect_max_side, detect_every=detect_every_planned, follow=follow
    )
    with Progress() as bar:
        task = bar.add_task("prepare", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = prepare_corpus(
            data_dir,
            output,
            face,
            n_segments=n_segments,
            workers=default_workers() if workers is None else workers,
            progress=progress,
            ray_options=ray,
        )
    for s in report.skipped_at_index + report.failed:
        typer.secho(f"skipped {s.path}: {s.reason}", fg=typer.colors.YELLOW, err=True)
    typer.echo(
        f"{output}: {report.summary()} (errors in {output / 'errors.jsonl'})"
        if report.failed
        else f"{output}: {report.summary()}"
    )


def _config(training: RecipeOptions, **command: Any) -> Any:
    """The TrainConfig of the recipe, overridden by the training options that were given and the command's own."""
    from edge_emotion.toolchain.train.loop import recipe_config

    return recipe_config(training.recipe, **training.overrides(), **command)


@recipe_options
def train(
    data_dir: DataDir,
    cache: CacheDir,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Run folder: checkpoint.pt, steps.jsonl, epochs.jsonl, eval.json.")
    ],
    fold: Annotated[int, typer.Option(min=0, help="Test fold k (its actors are held out).")] = 0,
    folds_file: Annotated[
        Path | None, typer.Option("--folds-file", help="Folds JSON to use instead of making them from the seed.")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the run folder's checkpoint (exactly where it stopped).")
    ] = False,
    stop_after: Annotated[
        int, typer.Option(min=0, help="Stop after this many steps in all, as if killed (0: never).")
    ] = 0,
    training: RecipeOptions = RecipeOptions(),
    checkpoint_every: CkptEvery = None,
) -> None:
    """Train one fold from the prepare cache and test it on the held-out actors (works under torchrun)."""
    from edge_emotion.toolchain.train.loop import train as run_training

    _check_run_paths(data_dir, output, cache, {"--folds-file": folds_file})
    _check_device(training.device)
    config = _config(training, fold=fold, stop_after=stop_after, checkpoint_every=checkpoint_every)
    result = run_training(data_dir, cache, output, config, resume=resume, folds_path=folds_file)
    if _is_main():
        state = f"stopped after step {result.global_step}" if result.stopped else f"test accuracy {result.accuracy:.4f}"
        typer.echo(f"{output}: {state} (checkpoint {output / 'checkpoint.pt'})")


def _int_list(text: str | None, option: str) -> list[int]:
    """'0,3' -> [0, 3]; BadParameter naming the option for anything but non-negative integers."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()] if text else []
    except ValueError as exc:
        raise typer.BadParameter(f"expected comma-separated integers such as 1,3,5, got {text!r}", param_hint=option) from exc
    if any(v < 0 for v in values):
        raise typer.BadParameter(f"expected non-negative integers, got {text!r}", param_hint=option)
    return values


@recipe_options
def cv(
    data_dir: DataDir,
    cache: CacheDir,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder of the runs (n{N}/fold{k}), cv.json and the figures.")
    ],
    folds: Annotated[str | None, typer.Option(help="Comma-separated folds to run, e.g. 0,3 [all].")] = None,
    sweep_n: Annotated[
        str | None, typer.Option("--sweep-n", help="Also cross-validate these N, e.g. 1,3,5,10 (accuracy vs N figure).")
    ] = None,
    summary_table: Annotated[
        Path | None,
        typer.Option(
            help="CREMA-D summaryTable.csv for the human baseline "
            "[DATA_DIR/processedResults/summaryTable.csv if present]."
        ),
    ] = None,
    training: RecipeOptions = RecipeOptions(),
) -> None:
    """Cross-validate by actor: per-fold and mean +- std accuracy, human baseline, the paper's figures (torchrun too)."""
    from edge_emotion import LABELS
    from edge_emotion.toolchain.train.cv import run_cv
    from edge_emotion.toolchain.train.figures import cv_figures

    _check_run_paths(data_dir, output, cache, {"--summary-table": summary_table})
    _check_device(training.device)
    fold_list, sweep = _int_list(folds, "--folds"), _int_list(sweep_n, "--sweep-n")
    if 0 in sweep:
        raise typer.BadParameter(f"N must be >= 1, got {sweep_n!r}", param_hint="--sweep-n")
    config = _config(training)
    default_table = data_dir / "processedResults" / "summaryTable.csv"
    table = summary_table or (default_table if default_table.exists() else None)

    def on_fold(r: Any) -> None:
        human = f", human {r.human['accuracy']:.4f}" if r.human else ""
        typer.echo(f"N={r.n_segments} fold {r.fold}: accuracy {r.accuracy:.4f} on {r.clips} clips{human}")

    summary = run_cv(
        data_dir, cache, output, config, fold_list or None, sweep, table, on_fold
    ).to_dict()
    if not _is_main():
        return
    for n, row in summary["per_n"].items():
        human = f"  (human {row['human_mean']:.4f})" if row["human_mean"] is not None else ""
        typer.echo(
            f"N={n}: mean accuracy {row['mean']:.4f} +- {row['std']:.4f} over {len(row['folds'])} fold(s){human}"
        )
    for path in cv_figures(summary, output, config.n_segments, LABELS):
        typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command()(prepare)
    app.command()(train)
    app.command()(cv)
