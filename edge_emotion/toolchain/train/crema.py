"""CREMA-D as data: clip names AAAA_SSS_EEE_LL -> labels, an index of a corpus folder, actor-independent folds.

The index reads only names and file sizes (cheap, 7,442 clips in milliseconds);
clips that decode badly are found and reported by `prepare`, which opens every
clip anyway. Folds are split by actor, so no actor is in two folds (the paper's
actor-independent 10-fold cross-validation), and are a pure function of the
actor list and a seed.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_emotion import LABELS
from edge_emotion.io.atomic import atomic_write_text
from edge_emotion.io.decode import file_problem
from edge_emotion.io.scan import DEFAULT_EXTENSIONS

NAME = re.compile(r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})$")
VIDEO_SUFFIXES = DEFAULT_EXTENSIONS  # one list of what counts as a video, shared with `score`
#: summaryTable.csv vote letters -> label
VOTE_LETTERS = {"A": "ANG", "D": "DIS", "F": "FEA", "H": "HAP", "N": "NEU", "S": "SAD"}


@dataclass(frozen=True)
class ClipItem:
    """One usable clip of the corpus: its file, its name's fields, and the class index."""

    name: str  # AAAA_SSS_EEE_LL, no suffix
    path: str  # video file ("" when indexing names only)
    actor: int
    sentence: str
    emotion: str
    level: str

    @property
    def label(self) -> int:
        return LABELS.index(self.emotion)


@dataclass(frozen=True)
class Skipped:
    """A file that is not in the index, and why (never fatal)."""

    path: str
    reason: str


def parse_name(name: str, path: str = "") -> ClipItem | str:
    """A ClipItem for a CREMA-D name, or the reason it is not one."""
    match = NAME.match(name)
    if match is None:
        return "name is not AAAA_SSS_EEE_LL"
    if match["emotion"] not in LABELS:
        return f"unknown emotion {match['emotion']!r} (expected one of {', '.join(LABELS)})"
    return ClipItem(name, path, int(match["actor"]), match["sentence"], match["emotion"], match["level"])


def index_names(names: Iterable[str]) -> tuple[list[ClipItem], list[Skipped]]:
    """Index bare clip names (no media), e.g. the FileName column of summaryTable.csv."""
    items: list[ClipItem] = []
    skipped: list[Skipped] = []
    for name in names:
        parsed = parse_name(name)
        (items.append(parsed) if isinstance(parsed, ClipItem) else skipped.append(Skipped(name, parsed)))
    return sorted(items, key=lambda i: i.name), skipped


def video_dir(data_dir: str | Path) -> Path:
    """CREMA-D keeps its videos in VideoFlash/; a flat folder of videos works too."""
    data_dir = Path(data_dir)
    return data_dir / "VideoFlash" if (data_dir / "VideoFlash").is_dir() else data_dir


def index_corpus(data_dir: str | Path) -> tuple[list[ClipItem], list[Skipped]]:
    """Index the videos of a CREMA-D folder; bad names, empty files and duplicates are skipped and reported."""
    folder = video_dir(data_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such directory")
    items: dict[str, ClipItem] = {}
    skipped: list[Skipped] = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES):
        parsed = parse_name(path.stem, str(path))
        if isinstance(parsed, str):
            skipped.append(Skipped(str(path), parsed))
        elif (problem := file_problem(path)) is not None:  # empty, a directory, a FIFO or a device: never opened
            skipped.append(Skipped(str(path), problem))
        elif parsed.name in items:
            skipped.append(Skipped(str(path), f"duplicate of {items[parsed.name].path}"))
        else:
            items[parsed.name] = parsed
    return [items[k] for k in sorted(items)], skipped


def make_folds(actors: Iterable[int], n_folds: int = 10, seed: int = 0) -> list[list[int]]:
    """Deal the sorted, seed-shuffled actors round-robin into n_folds folds (sizes differ by at most one)."""
    unique = sorted(set(int(a) for a in actors))
    if n_folds < 2:
        raise ValueError(f"need at least 2 folds, got {n_folds}")
    if len(unique) < n_folds:
        raise ValueError(f"{len(unique)} actors cannot fill {n_folds} actor-disjoint folds; use fewer folds")
    order = np.random.default_rng(seed).permutation(len(unique))
    folds: list[list[int]] = [[] for _ in range(n_folds)]
    for rank, i in enumerate(order):
        folds[rank % n_folds].append(unique[i])
    return [sorted(f) for f in folds]


def write_folds(path: str | Path, folds: Sequence[Sequence[int]], seed: int) -> None:
    """Folds file: which actors are in which fold, and the seed that made them."""
    doc = {"format": "edge-emotion-folds/1", "seed": seed, "n_folds": len(folds), "folds": [list(f) for f in folds]}
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def read_folds(path: str | Path) -> list[list[int]]:
    doc = json.loads(Path(path).read_text())
    if doc.get("format") != "edge-emotion-folds/1":
        raise ValueError(f"{path}: not an edge-emotion folds file")
    return [[int(a) for a in f] for f in doc["folds"]]


def split(
    items: Sequence[ClipItem], folds: Sequence[Sequence[int]], fold: int
) -> tuple[list[ClipItem], list[ClipItem]]:
    """(train, test): the test set is every clip of fold `fold`'s actors, the training set all the others."""
    if not 0 <= fold < len(folds):
        raise ValueError(f"fold must be in 0..{len(folds) - 1}, got {fold}")
    test_actors = set(folds[fold])
    return [i for i in items if i.actor not in test_actors], [i for i in items if i.actor in test_actors]


def read_votes(summary_csv: str | Path, column: str = "MultiModalVote") -> dict[str, str]:
    """Clip name -> the crowd's majority vote (letters A D F H N S, ties joined by ':')."""
    with open(summary_csv, newline="", encoding="utf-8") as f:
        return {row["FileName"]: row[column] for row in csv.DictReader(f)}


def human_accuracy(votes: dict[str, str], items: Iterable[ClipItem]) -> dict[str, Any]:
    """Share of clips whose crowd vote is the intended emotion; a tie (':') counts as a miss."""
    rated = [(i, votes[i.name]) for i in items if i.name in votes]
    hits = sum(":" not in vote and VOTE_LETTERS.get(vote) == item.emotion for item, vote in rated)
    return {"clips": len(rated), "correct": hits, "accuracy": hits / len(rated) if rated else float("nan")}

