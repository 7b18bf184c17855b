"""Commands that show what the model sees: `preview`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_emotion.cli import paths


def preview(
    video: Annotated[Path, typer.Argument(help="A video file (CREMA-D FLV, MP4, MKV, ...).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Contact sheet to write (PNG).")] = Path("sheet.png"),
    segments: Annotated[int, typer.Option("--segments", "-n", min=1, help="Number of segments N.")] = 10,
) -> None:
    """Contact sheet of the N face crops and N spectrograms, with segment times."""
    from edge_emotion.run.preview import write_contact_sheet

    paths.existing_file(video, "VIDEO")
    paths.output_file(output, "--output", (".png",))
    summary = write_contact_sheet(video, output, n_segments=segments)
    typer.echo(f"wrote {output}: {summary}")


def register(app: typer.Typer) -> None:
    app.command()(preview)
