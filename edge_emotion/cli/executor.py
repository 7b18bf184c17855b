"""--executor / --address / --workers, checked once for every command that can run on Ray (score, prepare).

The executor is where the work runs: `local` (this machine's processes) or `ray` (Ray Data).
"Engine" is kept for TensorRT engines; `--engine`, the executor's old name, still works
(hidden from --help) and says once on stderr that it is now `--executor`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

EXECUTORS = ("local", "ray")

#: the old spelling of --executor: hidden, still accepted
EngineAlias = Annotated[str | None, typer.Option("--engine", hidden=True, help="Old name of --executor.")]


def ray_options(executor: str, address: str | None, workers: int | None, engine: str | None = None) -> Any:
    """None for the local executor; RayOptions for --executor ray (where to run, how many preprocessing actors).

    `engine`: the hidden --engine's value, if given (it stands for --executor, with a note on stderr).
    """
    if engine is not None:
        typer.echo(f"note: --engine is now --executor: use --executor {engine}", err=True)
        if executor not in ("local", engine):
            raise typer.BadParameter(f"--engine is --executor's old name: give one of them, not {engine!r} and {executor!r}",
                                     param_hint="--executor")
        executor = engine
    if executor not in EXECUTORS:
        raise typer.BadParameter(f"choose local or ray, got {executor!r}", param_hint="--executor")
    if executor == "local":
        if address is not None:
            raise typer.BadParameter("--address joins a Ray cluster: it needs --executor ray", param_hint="--address")
        return None
    if workers == 0:
        raise typer.BadParameter("with --executor ray it counts preprocessing actors: 1 or more", param_hint="--workers")
    from edge_emotion.ray.cluster import RayOptions

    return RayOptions(address=address, preprocess_actors=workers)
