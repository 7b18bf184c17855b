"""--engine / --address / --workers, checked once for every command that can run on Ray (score, prepare)."""

from __future__ import annotations

from typing import Any

import typer


def ray_options(engine: str, address: str | None, workers: int | None) -> Any:
    """None for the local engine; RayOptions for --engine ray (where to run, how many preprocessing actors)."""
    if engine not in ("local", "ray"):
        raise typer.BadParameter(f"choose local or ray, got {engine!r}", param_hint="--engine")
    if engine == "local":
        if address is not None:
            raise typer.BadParameter("--address joins a Ray cluster: it needs --engine ray", param_hint="--address")
        return None
    if workers == 0:
        raise typer.BadParameter("with --engine ray it counts preprocessing actors: 1 or more", param_hint="--workers")
    from edge_emotion.ray.cluster import RayOptions

    return RayOptions(address=address, preprocess_actors=workers)
