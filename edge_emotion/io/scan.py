"""Find the videos of a folder and split them into shards.

Scanning never follows directory symlinks (a symlink loop cannot hang it) and
keeps every entry whose name has a video extension, even one that is not a
readable file (a directory named x.mp4, a dangling link): scoring then writes an
error row for it instead of silently skipping it.

Shards are chosen by a hash of the path relative to the scanned folder, so two
machines that mount the folder at different places, or that see a few more or
fewer files, still agree on which shard a given video belongs to.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_EXTENSIONS: tuple[str, ...] = (".flv", ".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


def normalise_extensions(extensions: Iterable[str]) -> tuple[str, ...]:
    """'mp4', '.MP4', ' flv ' -> ('.mp4', '.flv'): lower case, with the dot, no duplicates."""
    out: list[str] = []
    for ext in extensions:
        ext = ext.strip().lower()
        if not ext:
            continue
        ext = ext if ext.startswith(".") else f".{ext}"
        if ext not in out:
            out.append(ext)
    if not out:
        raise ValueError("no video extensions given")
    return tuple(out)


def find_videos(root: str | Path, extensions: Sequence[str] = DEFAULT_EXTENSIONS) -> list[Path]:
    """Every entry under `root` (recursively) whose name ends with one of `extensions`, sorted.

    `root` may itself be a single video file. Paths are absolute (not resolved,
    so a symlinked video keeps its own name). Unreadable subfolders are skipped.
    """
    root = Path(root).absolute()
    exts = normalise_extensions(extensions)
    if not root.is_dir():
        if root.exists() or root.is_symlink():
            return [root]
        raise FileNotFoundError(f"{root}: no such file or folder")
    found: list[Path] = []
    for folder, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in [*dirnames, *filenames]:
            if name.lower().endswith(exts):
                found.append(Path(folder) / name)
    return sorted(found)


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based): `--shard 0/4` ... `--shard 3/4`."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard must be i/n with 0 <= i < n, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'2/8' -> Shard(2, 8)."""
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError as exc:
            raise ValueError(f"shard must look like i/n (e.g. 0/4), got {text!r}") from exc
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(relative_path: str, count: int) -> int:
    """Stable shard number of a path: sha1 of its POSIX form, modulo `count`."""
    digest = hashlib.sha1(relative_path.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count


def select_shard(paths: Sequence[Path], root: str | Path, shard: Shard) -> list[Path]:
    """The paths of one shard, in their original order; the shards of a folder are disjoint and cover it."""
    if shard.count == 1:
        return list(paths)
    base = Path(root).absolute()
    base = base.parent if base.is_file() else base  # a single video: relative to its folder
    return [p for p in paths if shard_of(_relative(p, base), shard.count) == shard.index]


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()
