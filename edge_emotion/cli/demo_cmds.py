"""`edge-emotion demo`: the whole toolkit end to end on the embedded synthetic corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_emotion.cli import paths


def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the corpus, cache, run and artifacts.")] = Path(
        "edge-emotion-demo"
    ),
    actors: Annotated[int, typer.Option("--actors", min=3, max=91, help="Synthetic actors (one is held out).")] = 6,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Training epochs.")] = 6,
    segments: Annotated[int, typer.Option("--segments", "-n", min=1, help="Segments per clip N.")] = 4,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the corpus and the training.")] = 0,
) -> None:
    """synth -> prepare -> train -> export FP32 + INT8 -> score a held-out actor -> bench; a few minutes on 2 CPU cores."""
    from rich.console import Console

    from edge_emotion.cli.score_cmds import bench_table, stage_table
    from edge_emotion.deps import require
    from edge_emotion.toolchain.demo import DemoConfig, run_demo

    require("torch")  # before minutes of corpus writing: the demo trains and exports

    paths.output_dir(output, "--output")
    console = Console(width=None if Console().is_terminal else 140)  # CI logs: wide enough for the tables
    config = DemoConfig(out_dir=output, actors=actors, epochs=epochs, n_segments=segments, seed=seed)
    result = run_demo(config, say=lambda line: console.print(line, markup=False, highlight=False))
    table, notes = bench_table(result.bench)
    console.print(table)
    for note in notes:
        console.print(note, markup=False, highlight=False)
    if result.bench.stages is not None:
        console.print(stage_table(result.bench.stages))
    console.print(f"\nheld-out actor {result.held_out_actor} (never seen in training), clip accuracy (chance 16.7 %):")
    for name, accuracy in result.accuracy.items():
        console.print(f"  {name:<22} {100 * accuracy:5.1f} %")
    console.print(f"checkpoint: {result.checkpoint}")
    for precision, path in result.artifacts.items():
        console.print(f"{precision} ONNX:  {path}")
    console.print(f"scores:     {result.out_dir}/scores.*.jsonl")
    console.print("figures (PNG), to look at:")
    for what, path in result.figures.items():
        console.print(f"  {what:<26} {path}")


def register(app: typer.Typer) -> None:
    app.command()(demo)
