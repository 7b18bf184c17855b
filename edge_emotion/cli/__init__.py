"""The `edge-emotion` command line: thin Typer commands over library functions.

Each submodule registers its commands and imports torch, MTCNN or ONNX Runtime
only inside the command body, so `edge-emotion --help` starts fast. Library
errors (EdgeEmotionError) become one red line and exit code 1, never a traceback.
"""

from __future__ import annotations

import sys

import typer

from edge_emotion.cli import demo_cmds, export_cmds, inspect_cmds, score_cmds, synth_cmds, train_cmds

app = typer.Typer(
    name="edge-emotion",
    help="Audio-visual emotion recognition (CREMA-D, N-segment temporal aggregation) for edge deployment.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    """Audio-visual emotion recognition (CREMA-D, N-segment temporal aggregation) for edge deployment."""
    if version:
        from edge_emotion import __version__

        typer.echo(__version__)
        raise typer.Exit()


for module in (demo_cmds, inspect_cmds, synth_cmds, train_cmds, export_cmds, score_cmds):
    module.register(app)


def main() -> None:
    """Console entry point: run the app, turning known errors into a message and exit code 1."""
    from edge_emotion.errors import EdgeEmotionError

    try:
        app()
    except EdgeEmotionError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(1)
