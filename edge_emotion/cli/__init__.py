"""The `edge-emotion` command line: thin Typer commands over library functions.

Each submodule registers its commands and imports torch, MTCNN or ONNX Runtime
only inside the command body, so `edge-emotion --help` starts fast. Library
errors, bad paths and options end in one red line and a non-zero exit, never a
traceback (edge_emotion.cli.boundary; `--debug` shows the traceback too).
"""

from __future__ import annotations

import sys

import typer

from edge_emotion.cli import (
    demo_cmds,
    export_cmds,
    inspect_cmds,
    plot_cmds,
    score_cmds,
    stream_cmds,
    synth_cmds,
    train_cmds,
)

app = typer.Typer(
    name="edge-emotion",
    help="Audio-visual emotion recognition (CREMA-D, N-segment temporal aggregation) for edge deployment.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    """--version: print and stop while parsing (eager), so no command is needed."""
    if value:
        from edge_emotion import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
    ),
    debug: bool = typer.Option(False, "--debug", help="On an error, print the traceback too (or EDGE_EMOTION_DEBUG=1)."),
) -> None:
    """Audio-visual emotion recognition (CREMA-D, N-segment temporal aggregation) for edge deployment.

    Both options act before this runs: --version while parsing, --debug in the error boundary (cli.boundary).
    """


for module in (demo_cmds, inspect_cmds, synth_cmds, train_cmds, export_cmds, score_cmds, stream_cmds, plot_cmds):
    module.register(app)


def main(args: list[str] | None = None) -> None:
    """Console entry point: run the app inside the error boundary and exit with its code."""
    from edge_emotion.cli.boundary import run

    sys.exit(run(typer.main.get_command(app), sys.argv[1:] if args is None else args))
