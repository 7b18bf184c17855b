"""Commands of the synthetic corpus: `synth`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from edge_emotion.cli.paths import output_dir


def _parse_size(text: str) -> tuple[int, int]:
    """'240x180' -> (240, 180)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise typer.BadParameter(f"expected WIDTHxHEIGHT such as 240x180, got {text!r}") from exc
    return width, height


def synth(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Corpus folder to write; clips go to OUTPUT/VideoFlash/.")
    ],
    actors: Annotated[int, typer.Option(min=1, max=91, help="Number of fake actors (ids 1001...).")] = 6,
    clips_per_class: Annotated[
        int, typer.Option(min=1, max=12, help="Clips per actor and emotion (one sentence each).")
    ] = 2,
    seed: Annotated[int, typer.Option(help="Same seed, same files (byte for byte).")] = 0,
    fps: Annotated[int, typer.Option(min=1, help="Video frame rate.")] = 15,
    size: Annotated[str, typer.Option(help="Frame size WIDTHxHEIGHT (even numbers, at least 120).")] = "240x180",
) -> None:
    """Write the embedded default corpus: CREMA-D-shaped FLV clips whose emotion is in the face and in the voice.

    Resumable: clips already there are kept. Face cue (brows, eyes, mouth) splits
    {ANG,DIS} {FEA,HAP} {NEU,SAD}; voice cue (pitch, rhythm) splits {ANG,FEA,NEU}
    {DIS,HAP,SAD}; only both together tell all six apart.
    """
    from edge_emotion.toolchain.synth import SynthConfig, plan_corpus, write_corpus

    output_dir(output, "--output")
    width, height = _parse_size(size)
    try:
        config = SynthConfig(
            actors=actors, clips_per_class=clips_per_class, seed=seed, fps=fps, width=width, height=height
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    written: list[Path] = []
    start = time.perf_counter()
    with typer.progressbar(length=len(plan_corpus(config)), label="synth") as bar:

        def on_clip(path: Path, new: bool) -> None:
            if new:
                written.append(path)
            bar.update(1)

        paths = write_corpus(output, config, on_clip)
    kept = len(paths) - len(written)
    seconds = time.perf_counter() - start
    folder = output / "VideoFlash"
    typer.echo(f"{len(paths)} clips in {folder}: {len(written)} written, {kept} already there ({seconds:.1f} s)")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command()(synth)
