"""The training recipe options, declared once (cli/recipe.py): `train` and `cv` offer the same ones, and every
option given on the command line arrives in the command's RecipeOptions."""

from __future__ import annotations

from dataclasses import fields

import typer
from typer.testing import CliRunner

from edge_emotion.cli import app
from edge_emotion.cli.recipe import RecipeOptions, recipe_options


def _options(command_name: str) -> dict[str, tuple]:
    command = typer.main.get_command(app).commands[command_name]  # type: ignore[attr-defined]
    return {p.name: (p.opts, p.secondary_opts, p.default, p.help) for p in command.params}


def test_train_and_cv_offer_the_same_recipe_options():
    train, cv = _options("train"), _options("cv")
    names = [f.name for f in fields(RecipeOptions)]
    assert len(names) == 19
    assert {n: train[n] for n in names} == {n: cv[n] for n in names}
    assert train["n_segments"][0] == ["--n-segments", "-n"] and train["recipe"][2] == "paper"
    assert train["eval_each_epoch"][1] == ["--no-eval-each-epoch"]
    assert "checkpoint_every" in train and "checkpoint_every" not in cv  # train's own


def test_every_given_option_reaches_the_command():
    seen: list[tuple[int, RecipeOptions]] = []

    @recipe_options
    def command(fold: int = 0, training: RecipeOptions = RecipeOptions()) -> None:
        seen.append((fold, training))

    tiny = typer.Typer()
    tiny.command()(command)
    tiny.command("other")(lambda: None)  # two commands: `command` is a subcommand, as in the app
    args = ["command", "--fold", "3", "--recipe", "modern", "-n", "4", "--epochs", "2", "--batch-size", "8",
            "--optimizer", "sgd", "--lr", "0.5", "--momentum", "0.8", "--weight-decay", "0.01", "--schedule", "constant",
            "--step-size", "7", "--gamma", "0.2", "--warmup-fraction", "0.1", "--modality", "audio", "--n-folds", "5",
            "--folds-seed", "6", "--seed", "9", "--workers", "1", "--device", "cpu", "--no-eval-each-epoch"]
    result = CliRunner().invoke(tiny, args)
    assert result.exit_code == 0, result.output
    fold, training = seen[0]
    assert fold == 3 and training.recipe == "modern"
    assert training.overrides() == {
        "n_segments": 4, "epochs": 2, "batch_size": 8, "optimizer": "sgd", "lr": 0.5, "momentum": 0.8,
        "weight_decay": 0.01, "schedule": "constant", "step_size": 7, "gamma": 0.2, "warmup_fraction": 0.1,
        "modality": "audio", "n_folds": 5, "folds_seed": 6, "seed": 9, "workers": 1, "device": "cpu",
        "eval_each_epoch": False,
    }
    assert CliRunner().invoke(tiny, ["command"]).exit_code == 0
    assert seen[1] == (0, RecipeOptions())  # nothing given: the recipe "paper", every override None


def test_the_cli_accepts_exactly_the_words_the_build_side_knows():
    """cli/recipe.py checks --recipe/--optimizer/--schedule/--modality while parsing (torch-free); the words must be
    the ones TrainConfig and RECIPES use, or a valid value would be refused (or a bad one reach the build side)."""
    from edge_emotion.cli import recipe
    from edge_emotion.toolchain.train import config as build

    assert set(recipe.RECIPES) == set(build.RECIPES)
    assert set(recipe.OPTIMIZERS) == {r["optimizer"] for r in build.RECIPES.values()}
    assert set(recipe.SCHEDULES) >= {r["schedule"] for r in build.RECIPES.values()} | {"constant"}
    for schedule in recipe.SCHEDULES:
        build.learning_rate(build.recipe_config("paper", schedule=schedule), 0, 0, 10)  # each one is known
    assert set(recipe.MODALITIES) == {"both", "audio", "video"}
