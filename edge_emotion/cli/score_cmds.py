"""Commands of the score stage: `score` (a folder), `predict` (one clip), `bench` (backends and precisions).

Thin wrappers: they parse options, call edge_emotion.run.score / edge_emotion.run.bench
(imported inside the bodies, so `edge-emotion --help` never loads torch) and
print with rich. Progress goes to stderr, results and summaries to stdout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from edge_emotion import defaults
from edge_emotion.cli import paths  # light: no torch, no av
from edge_emotion.cli.executor import EngineAlias, ray_options
from edge_emotion.cli.faces import DetectorOption, FacesOption, detector_dir, which_faces
from edge_emotion.io.scan import DEFAULT_EXTENSIONS  # light: no torch, no av

if TYPE_CHECKING:
    from edge_emotion.run.result import Result

ModelOption = Annotated[Path, typer.Option("--model", "-m", help="Artifact: checkpoint (.pt), ONNX (.onnx) or TensorRT engine (.engine).")]
BackendOption = Annotated[
    Optional[str],
    typer.Option("--backend", help="torch | onnxruntime | tensorrt (default: by the artifact's kind).", callback=lambda name: paths.backend_name(name)),
]
DeviceOption = Annotated[
    str, typer.Option("--device", help="Backend device: auto, cpu, cuda, cuda:1 ...", callback=lambda device: paths.scoring_device(device))
]


class _RateColumn(ProgressColumn):
    """Clips per second, from rich's own moving estimate."""

    def render(self, task: Task) -> Text:
        return Text("   - clips/s" if task.speed is None else f"{task.speed:6.2f} clips/s", style="progress.data.speed")


class _CliProgress:
    """rich progress bar for score_folder (clips done / to do, clips/s, ETA) and a running error count."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[errors]}"),
            console=console,
            speed_estimate_period=3600.0,  # clips/s and ETA over the whole run: rows arrive in bursts (batches)
        )
        self._task: Any = None
        self._errors = 0

    def start(self, total: int, skipped: int) -> None:
        if skipped:
            self._progress.console.print(f"resuming: {skipped} clip(s) already in the output, {total} to score")
        self._task = self._progress.add_task("scoring", total=total, errors="")
        self._progress.start()

    def advance(self, row: Result) -> None:
        self._errors += row.status == "error"
        self._progress.update(self._task, advance=1, errors=f"{self._errors} error(s)" if self._errors else "")

    def stop(self) -> None:
        self._progress.stop()


def _console() -> Console:
    """A console for tables: the terminal's width, or 160 columns when the output is a pipe or a file."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def score(
    folder: Annotated[Path, typer.Argument(help="Folder to scan recursively (or a single video).")],
    model: ModelOption,
    output: Annotated[Path, typer.Option("--output", "-o", help="Results file: .csv, or .jsonl (adds per-segment timelines).")] = Path(
        "results.csv"
    ),
    backend: BackendOption = None,
    device: DeviceOption = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Segments per backend call (across clips).")] = defaults.BATCH_SIZE,
    workers: Annotated[
        Optional[int],
        typer.Option("--workers", "-w", min=0, help="Preprocessing processes [the cores this process may use]; 0 = in this process, "
                     "no timeout. With --executor ray: the most preprocessing actors [the cluster's CPUs less the backend's]."),
    ] = None,
    extensions: Annotated[str, typer.Option("--extensions", help="Comma-separated video extensions to look for.")] = ",".join(DEFAULT_EXTENSIONS),
    shard: Annotated[str, typer.Option("--shard", help="i/n: score only shard i (0-based) of n; the n shards cover the folder.")] = "0/1",
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds allowed per file before it becomes an error row.")] = defaults.FILE_TIMEOUT_S,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    executor: Annotated[str, typer.Option("--executor", help="local (this machine's processes) or ray (Ray Data: a local instance, or the cluster at --address).")] = "local",
    address: Annotated[
        Optional[str], typer.Option("--address", help="With --executor ray: join this cluster (host:port of `ray start --head`, or auto) instead of starting a local instance.")
    ] = None,
    engine: EngineAlias = None,
    window: Annotated[
        Optional[float], typer.Option("--window", min=0.001, help="Seconds per window: one row per (file, person, window), each segment scored once (default: N x 0.25 s, as stream).")
    ] = None,
    hop: Annotated[Optional[float], typer.Option("--hop", min=0.001, help="Seconds between windows, a multiple of window / N (default: the multiple nearest 0.5 s).")] = None,
    faces: FacesOption = "largest",
    detector: DetectorOption = None,
) -> None:
    """Score every video under FOLDER into one row per clip and person (or per window); a rerun resumes where the last one stopped."""
    from edge_emotion import LABELS
    from edge_emotion.io.scan import Shard, normalise_extensions
    from edge_emotion.run.codec import format_for
    from edge_emotion.run.score import ScoreOptions
    from edge_emotion.run.threads import usable_cores

    try:
        format_for(output, LABELS)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--output") from exc
    timeline = window is not None or hop is not None
    try:
        options = ScoreOptions(
            backend=backend, device=device, batch_size=batch_size, workers=usable_cores() if workers is None else workers,
            extensions=normalise_extensions(_split(extensions)), shard=Shard.parse(shard), timeout=timeout, window=window, hop=hop,
            faces=which_faces(faces), detector=detector_dir(detector),
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    run = _scorer(executor, address, workers, engine, timeline)
    if not folder.exists() and not folder.is_symlink():
        raise typer.BadParameter(f"{folder}: no such file or folder", param_hint="FOLDER")
    paths.video_source(folder, "FOLDER", options.extensions)  # an empty folder is a wrong path, not 0 rows
    paths.artifact(model, "--model")
    paths.output_file(output, "--output")
    progress = None if quiet else _CliProgress(Console(stderr=True))
    from edge_emotion.timeline.window_options import GridError

    try:
        summary = run(folder, model, output, options, progress)
    except GridError as exc:  # W and H are checked against the model's N once the model is open
        raise typer.BadParameter(str(exc), param_hint=exc.option) from exc
    except KeyboardInterrupt:
        typer.secho(f"\ninterrupted: the rows in {output} are complete; run the same command again to resume", err=True)
        raise typer.Exit(130) from None
    finally:
        if progress is not None:
            progress.stop()
    _print_summary(summary, output)


def _scorer(executor: str, address: str | None, workers: int | None, engine: str | None, timeline: bool = False) -> Any:
    """score_folder, score_timelines (--window/--hop), or score_folder's Ray Data twin with the cluster options bound."""
    options = ray_options(executor, address, workers, engine)
    if timeline:
        if options is not None:
            raise typer.BadParameter("windows (--window/--hop) are scored by --executor local only", param_hint="--window")
        from edge_emotion.timeline.score import score_timelines

        return score_timelines
    if options is None:
        from edge_emotion.run.score import score_folder

        return score_folder
    import functools

    from edge_emotion.ray.scoring import score_folder_ray

    return functools.partial(score_folder_ray, ray_options=options)


def _print_summary(summary: Any, output: Path) -> None:
    console = Console()
    console.print(
        f"[bold]{output}[/]: {summary.rows} rows ({summary.scored} scored now, {summary.skipped} already there) "
        f"in {summary.seconds:.1f} s: {summary.clips_per_second:.2f} clips/s, {summary.times_real_time:.2f}x real time"
    )
    console.print("status: " + ", ".join(f"{k} {v}" for k, v in summary.statuses.items()))
    if summary.labels:
        console.print("labels: " + ", ".join(f"{k} {v}" for k, v in summary.labels.items()))
    for cause, count in summary.failures.items():
        console.print(f"[red]failed[/] {count}: {cause}")
    if summary.scored and summary.stages:
        total = sum(summary.stages.values()) or 1.0
        console.print("time by stage (summed over clips): " + ", ".join(f"{k} {v:.1f}s ({100 * v / total:.0f}%)" for k, v in summary.stages.items()))


def predict(
    video: Annotated[Path, typer.Argument(help="One video file.")],
    model: ModelOption,
    backend: BackendOption = None,
    device: DeviceOption = "auto",
    timeline: Annotated[bool, typer.Option("--timeline", help="Also print the per-segment probabilities (emotion over time).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the row as JSON (the same as score's JSONL row); with --faces all a JSON list of rows, one per person.")] = False,
    faces: FacesOption = "largest",
    detector: DetectorOption = None,
) -> None:
    """Probabilities of one clip (each person's with --faces all): the same numbers `score` writes for it."""
    from edge_emotion.backends import open_backend
    from edge_emotion.errors import VideoError
    from edge_emotion.run.codec import to_record
    from edge_emotion.run.pieces import FaceSetup
    from edge_emotion.run.score import predict_people

    which = which_faces(faces)
    nets = detector_dir(detector)
    paths.existing_file(video, "VIDEO")
    paths.artifact(model, "--model")
    with open_backend(model, backend, device) as runner:
        found = FaceSetup(nets=nets).detector(runner.contract.preprocess)
        rows = [to_record(result) for result in predict_people(video, runner, found, which)]
    if rows[0]["status"] == "error":
        raise VideoError(video, rows[0]["error"])
    if as_json:
        typer.echo(json.dumps(rows if which == "all" else rows[0], ensure_ascii=False, indent=2))
        return
    console = _console()
    for row in rows:
        console.print(_probability_table(row, person=which == "all"))
        console.print(
            f"{row['n_segments']} segments, {row['faceless']} without a face, {row['silent']} silent, "
            f"{row['duration_s']} s, {row['people']} people seen, status {row['status']}"
        )
        if timeline:
            console.print(_timeline_table(row))


def _probability_table(row: dict[str, Any], person: bool = False) -> Table:
    who = f" person {row['person']}" if person else ""
    table = Table(title=f"{Path(row['path']).name}{who}: [bold]{row['label']}[/]")
    table.add_column("emotion")
    table.add_column("probability", justify="right")
    table.add_column("")
    for label, p in sorted(row["probabilities"].items(), key=lambda kv: -kv[1]):
        style = "bold" if label == row["label"] else ""
        table.add_row(label, f"{p:.4f}", "█" * round(40 * p), style=style)
    return table


def _timeline_table(row: dict[str, Any]) -> Table:
    labels = list(row["probabilities"])
    table = Table(title="timeline (per segment)", box=box.SIMPLE_HEAD, padding=(0, 1))
    for name in ("#", "frame", "t s", "audio s", *labels, "top"):
        table.add_column(name, justify="right")
    for seg in row["segments"]:
        probs = seg["probabilities"]
        top = max(probs, key=probs.get)
        table.add_row(
            str(seg["segment"]), str(seg["frame"]), f"{seg['time_s']:.2f}", f"{seg['audio_centre_s']:.2f}",
            *(f"{probs[k]:.2f}" for k in labels), top,
        )
    return table


def bench(
    model: Annotated[list[Path], typer.Option("--model", "-m", help="Artifact(s) to compare; repeat -m for several (.pt, .onnx, .int8.onnx, .engine).")],
    backends: Annotated[
        Optional[str], typer.Option("--backends", help="Comma-separated backends to report, e.g. torch,onnxruntime,tensorrt (default: each artifact's own).")
    ] = None,
    batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="Comma-separated batch sizes, in segments.")] = ",".join(map(str, defaults.BENCH_BATCH_SIZES)),
    iterations: Annotated[int, typer.Option("--iterations", "-n", min=1, help="Timed calls per batch size.")] = defaults.BENCH_ITERATIONS,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed calls first.")] = defaults.BENCH_WARMUP,
    max_seconds: Annotated[float, typer.Option("--max-seconds", min=0.1, help="Stop timing a batch size after this long (at least 3 calls).")] = defaults.BENCH_MAX_SECONDS,
    device: DeviceOption = "auto",
    videos: Annotated[Optional[Path], typer.Option("--videos", help="Folder of videos: real inputs, and the end-to-end time by stage.")] = None,
    max_videos: Annotated[int, typer.Option("--max-videos", min=1, help="Use at most this many videos from --videos.")] = defaults.BENCH_MAX_VIDEOS,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the full report as JSON.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write throughput against batch size as PNG.")] = None,
    detector: DetectorOption = None,
) -> None:
    """Latency (mean, p50-p99) and throughput of backends and precisions, side by side."""
    from edge_emotion.io.atomic import atomic_write_text
    from edge_emotion.io.scan import find_videos
    from edge_emotion.run.bench.plots import plot_report
    from edge_emotion.run.bench.run import run_bench
    from edge_emotion.run.bench.targets import plan_targets

    try:
        sizes = [int(b) for b in _split(batch_sizes)]
    except ValueError as exc:
        raise typer.BadParameter(f"batch sizes must be integers, got {batch_sizes!r}") from exc
    if not sizes or min(sizes) < 1:
        raise typer.BadParameter(f"batch sizes must be >= 1, got {batch_sizes!r}")
    for artifact in model:
        paths.artifact(artifact, "--model")
    nets = detector_dir(detector)
    for out, suffix in ((json_out, ".json"), (plot, ".png")):
        if out is not None:
            paths.output_file(out, "--json" if suffix == ".json" else "--plot", (suffix,))
    clips = find_videos(paths.video_source(videos, "--videos"))[:max_videos] if videos is not None else []
    try:
        targets = plan_targets(model, _split(backends) if backends else None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    report = run_bench(targets, sizes, iterations, warmup, device, clips, max_seconds, nets)
    console = _console()
    table, notes = bench_table(report)
    console.print(table)
    for note in notes:
        console.print(note, markup=False, highlight=False)
    if report.stages is not None:
        console.print(stage_table(report.stages))
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(report.to_dict(), indent=2))
        console.print(f"wrote {json_out}")
    if plot is not None:
        plot_report(report, plot)
        console.print(f"wrote {plot}")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def bench_table(report: Any) -> tuple[Table, list[str]]:
    """Compact like `yolo benchmark`: one line per backend x artifact x batch; artifacts and reasons as notes below."""
    where = report.machine.get("cuda") or report.machine.get("cpu") or report.machine.get("platform")
    table = Table(title=f"edge-emotion bench on {where}", caption=f"agreement: top-1 vs the FP32 reference on {report.inputs}")
    for name in ("#", "backend", "precision", "status", "MB", "batch", "mean ms", "p50", "p99", "seg/s", "clips/s", "agree %"):
        table.add_column(name, justify="left" if name in ("backend", "precision", "status") else "right")
    notes: dict[str, int] = {}
    for row in report.rows:
        note = Path(row.artifact).name if row.status == "ok" else f"{row.artifact or row.backend}: {row.reason}"
        ref = notes.setdefault(note, len(notes) + 1)
        lat = row.latency_ms
        table.add_row(
            str(ref), row.backend, row.precision, row.status, _fmt(row.file_mb, ".2f"), _fmt(row.batch_size, "d"),
            _fmt(lat and lat.mean, ".2f"), _fmt(lat and lat.p50, ".2f"), _fmt(lat and lat.p99, ".2f"),
            _fmt(row.segments_per_s, ".1f"), _fmt(row.clips_per_s, ".1f"),
            _fmt(None if row.agreement is None else 100 * row.agreement, ".1f"),
            style="" if row.status == "ok" else "yellow",
        )
    return table, [f"[{ref}] {note}" for note, ref in notes.items()]


def stage_table(stages: Any) -> Table:
    table = Table(title=f"end to end, one clip at a time: {stages.clips} clips ({stages.failed} failed), {stages.times_real_time:.2f}x real time")
    table.add_column("stage")
    table.add_column("ms / clip", justify="right")
    table.add_column("share", justify="right")
    total = stages.total_ms or 1.0
    for stage, ms in stages.ms_per_clip.items():
        table.add_row(stage, f"{ms:.1f}", f"{100 * ms / total:.0f}%")
    table.add_row("total", f"{stages.total_ms:.1f}", "100%", style="bold")
    return table


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command()(score)
    app.command()(predict)
    app.command()(bench)
