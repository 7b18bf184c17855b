"""`edge-emotion plot`: window rows of `score --window` or `stream` events -> a timeline PNG, one panel per file and person.

Thin: it checks the paths, then calls edge_emotion.timeline.plot (imported inside the body, so
`edge-emotion --help` never loads matplotlib).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_emotion.cli import paths  # light: no av, no matplotlib

DEFAULT_MAX_PANELS = 20


def plot(
    results: Annotated[Path, typer.Argument(help="Window rows (.csv or .jsonl) of `score --window`, or `stream` events (.jsonl).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The picture to write (.png).")] = Path("timeline.png"),
    max_panels: Annotated[int, typer.Option("--max-panels", min=1, help="Draw at most this many (file, person) panels, the first ones in the results.")] = DEFAULT_MAX_PANELS,
) -> None:
    """Probabilities over time, the label as a colour band, windows without a face shaded: one panel per file and person."""
    from edge_emotion.timeline.plot import load_series, plot_timelines

    paths.existing_file(results, "RESULTS")
    paths.output_file(output, "--output", (".png",))
    series = load_series(results)
    plot_timelines(series[:max_panels], output)
    windows = sum(len(s.middle) for s in series[:max_panels])
    left_out = f"; {len(series) - max_panels} more left out (--max-panels)" if len(series) > max_panels else ""
    typer.echo(f"wrote {output}: {min(len(series), max_panels)} panel(s) (file x person), {windows} windows{left_out}")


def register(app: typer.Typer) -> None:
    """Add the plot command to the app."""
    app.command()(plot)
