"""The training recipe options that `train` and `cv` share, declared once as the fields of RecipeOptions.

Typer reads a command's options from its signature, so `@recipe_options` rewrites the
signature: the command's parameter `training: RecipeOptions` becomes one option per
field (same place in --help), and the values come back as one RecipeOptions. None means
"not given": the recipe's value or TrainConfig's default applies (recipe_config).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Annotated, Any, get_type_hints

import typer

#: the command parameter that stands for all of RecipeOptions' options
PARAMETER = "training"


#: the words the string options accept (toolchain/train/config.py's RECIPES and TrainConfig; a test keeps them equal):
#: checked while parsing, so a typo is a usage error (exit 2) before torch loads, not a ValueError mid-setup
RECIPES = ("paper", "modern")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("paper", "cosine", "constant")
MODALITIES = ("both", "audio", "video")


def one_of(choices: tuple[str, ...]) -> Callable[[str | None], str | None]:
    """A Typer callback that refuses a value outside `choices`, naming them (None: not given, passes)."""

    def check(value: str | None) -> str | None:
        if value is not None and value not in choices:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return check


@dataclass(frozen=True)
class RecipeOptions:
    """The training options of `train` and `cv`: the recipe, and the TrainConfig fields a command line may override."""

    recipe: Annotated[
        str,
        typer.Option(
            help="paper (SGD 0.9, lr 1e-3 /10 every 50 steps per epoch) or modern (AdamW + warm-up + cosine).",
            callback=one_of(RECIPES),
        ),
    ] = "paper"
    n_segments: Annotated[int | None, typer.Option("--n-segments", "-n", min=1, help="Segments per clip N [10].")] = None
    epochs: Annotated[int | None, typer.Option(min=1, help="Epochs [10].")] = None
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Global batch size, split over torchrun ranks [16].")
    ] = None
    optimizer: Annotated[str | None, typer.Option(help="sgd or adamw [from the recipe].", callback=one_of(OPTIMIZERS))] = None
    lr: Annotated[float | None, typer.Option(help="Base learning rate [1e-3].")] = None
    momentum: Annotated[float | None, typer.Option(help="SGD momentum [0.9].")] = None
    weight_decay: Annotated[float | None, typer.Option(help="Weight decay [paper 0, modern 0.05].")] = None
    schedule: Annotated[str | None, typer.Option(help="paper, cosine or constant [from the recipe].", callback=one_of(SCHEDULES))] = None
    step_size: Annotated[int | None, typer.Option(help="paper schedule: steps between lr divisions [50].")] = None
    gamma: Annotated[float | None, typer.Option(help="paper schedule: lr factor at each division [0.1].")] = None
    warmup_fraction: Annotated[
        float | None, typer.Option(help="cosine schedule: share of the steps spent warming up [0.05].")
    ] = None
    modality: Annotated[str | None, typer.Option(help="both, audio or video (ablation) [both].", callback=one_of(MODALITIES))] = None
    n_folds: Annotated[int | None, typer.Option(min=2, help="Actor-disjoint folds [10].")] = None
    folds_seed: Annotated[int | None, typer.Option(help="Seed of the actor-to-fold assignment [0].")] = None
    seed: Annotated[int | None, typer.Option(help="Seed of initialisation, clip order and frame sampling [0].")] = None
    workers: Annotated[int | None, typer.Option(min=0, help="DataLoader worker processes [0].")] = None
    device: Annotated[str | None, typer.Option(help="auto (CUDA when present), cpu, cuda, cuda:1 ... [auto].")] = None
    eval_each_epoch: Annotated[
        bool | None,
        typer.Option("--eval-each-epoch/--no-eval-each-epoch", help="Test loss/accuracy after every epoch [on]."),
    ] = None

    def overrides(self) -> dict[str, Any]:
        """The TrainConfig fields these options set (None: not given), for recipe_config(self.recipe, ...)."""
        return {k: v for k, v in asdict(self).items() if k != "recipe"}


def recipe_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`command` with its `training: RecipeOptions` parameter spelled out as RecipeOptions' options, for Typer."""
    signature = inspect.signature(command, eval_str=True)  # real Annotated objects: Typer reads __signature__ as is
    if PARAMETER not in signature.parameters:
        raise TypeError(f"{command.__name__} has no parameter {PARAMETER!r} to put the recipe options in")
    hints = get_type_hints(RecipeOptions, include_extras=True)
    shared = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
              for f in fields(RecipeOptions)]
    parameters: list[inspect.Parameter] = []
    for p in signature.parameters.values():  # keyword-only: Typer passes every value by name
        parameters += shared if p.name == PARAMETER else [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)]

    @functools.wraps(command)
    def with_options(**values: Any) -> Any:
        training = RecipeOptions(**{f.name: values.pop(f.name) for f in fields(RecipeOptions)})
        return command(**values, **{PARAMETER: training})

    with_options.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return with_options
