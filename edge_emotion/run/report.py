"""Result rows and their files (CSV or JSONL): one row per clip, durable as soon as it is written.

Durability: every row is one `write` of a whole line on a file opened for
appending, then flushed and fsynced, so a killed run leaves complete rows and at
worst one partial last line. Opening the file again cuts that partial line off
and reads the rows already there; their (path, size, mtime) keys tell `score`
which clips it can skip. A row whose file has changed since (other size or
mtime) is dropped, by an atomic rewrite, before that clip is scored again, so
the file never holds two rows for one path.

Row fields: path, label, one probability per label (consensus / N), n_segments,
faceless (segments without a face of their own), silent (segments with a silent
audio window), duration_s, status (ok | degraded | error), error, size_bytes,
mtime_ns. JSONL rows also carry `timeline`: per segment its frame, the frame's
time, the audio window's centre and the segment's probabilities.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import stat
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_emotion.errors import EdgeEmotionError
from edge_emotion.io.atomic import NEW_FILE_MODE, atomic_open, atomic_write_text, exclusive_lock, fsync_directory
from edge_emotion.run.consensus import clip_label, clip_probabilities
from edge_emotion.run.workers import PreparedClip

Row = dict[str, Any]
STATUSES = ("ok", "degraded", "error")
PROB_DECIMALS = 6


@dataclass(frozen=True)
class FileKey:
    """What identifies one version of a video file: its path, size and modification time."""

    path: str
    size: int
    mtime_ns: int


def file_key(path: str | Path) -> FileKey:
    """Stat the file (following links); an unstattable entry gets size and mtime -1."""
    try:
        st = os.stat(path)
    except OSError:
        try:
            st = os.lstat(path)
        except OSError:
            return FileKey(str(path), -1, -1)
    return FileKey(str(path), int(st.st_size), int(st.st_mtime_ns))


def row_key(row: Row) -> FileKey:
    return FileKey(str(row["path"]), int(row["size_bytes"]), int(row["mtime_ns"]))


def build_row(prepared: PreparedClip, segment_probs: np.ndarray | None, labels: Sequence[str], key: FileKey) -> Row:
    """One clip's row. segment_probs: [N, K] backend output, None for an error row."""
    inputs = prepared.inputs
    row: Row = {
        "path": key.path,
        "label": None,
        "probabilities": None,
        "n_segments": 0,
        "faceless": 0,
        "silent": 0,
        "duration_s": None if prepared.duration is None else round(prepared.duration, 3),
        "status": "error",
        "error": _one_line(prepared.error or ""),
        "size_bytes": key.size,
        "mtime_ns": key.mtime_ns,
        "timeline": [],
    }
    if inputs is None or segment_probs is None:
        row["error"] = row["error"] or "no model inputs"
        return row
    probs = clip_probabilities(segment_probs)  # [K]
    row.update(
        label=clip_label(segment_probs, labels),
        probabilities=_prob_dict(probs, labels),
        n_segments=len(inputs.segments),
        faceless=inputs.faceless,
        silent=inputs.silent,
        status="degraded" if inputs.faceless or inputs.silent else "ok",
        error="",
        timeline=[
            {
                "segment": k,
                "frame": seg.frame,
                "time_s": round(seg.frame / prepared.fps, 4) if prepared.fps else None,
                "audio_centre_s": round(seg.centre, 4),
                "box": None if inputs.boxes[k] is None else [round(float(v), 1) for v in inputs.boxes[k]],
                "detected": inputs.detected[k],
                "probabilities": _prob_dict(segment_probs[k], labels),
            }
            for k, seg in enumerate(inputs.segments)
        ],
    )
    return row


def _prob_dict(probs: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    return {label: round(float(p), PROB_DECIMALS) for label, p in zip(labels, probs)}


def _one_line(text: str) -> str:
    return " ".join(text.split())


def error_cause(error: str) -> str:
    """Group key for failures: the cause without its details in parentheses (which often name the file)."""
    return error.split(" (", 1)[0].strip() or "unknown"


# ----------------------------------------------------------------------------- formats


def csv_columns(labels: Sequence[str]) -> list[str]:
    return ["path", "label", *labels, "n_segments", "faceless", "silent", "duration_s", "status", "error", "size_bytes", "mtime_ns"]


class CsvFormat:
    """Flat rows, a header line first; empty cells where an error row has no value."""

    suffix = ".csv"

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.columns = csv_columns(labels)

    def header(self) -> str:
        return self._line(self.columns)

    def encode(self, row: Row) -> str:
        probs = row["probabilities"] or {}
        cells = {k: row.get(k) for k in self.columns if k not in self.labels}
        cells.update({label: probs.get(label) for label in self.labels})
        return self._line(["" if cells[c] is None else str(cells[c]) for c in self.columns])

    @staticmethod
    def _line(cells: Sequence[str]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(cells)
        return buffer.getvalue()

    def read(self, text: str) -> list[Row]:
        """Parse a whole file (header included); refuse one written with other columns."""
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if header is None:
            return []
        if header != self.columns:
            raise ValueError(f"its columns {header} are not this model's {self.columns}")
        return [self._decode(dict(zip(self.columns, cells))) for cells in reader if cells]

    def _decode(self, cells: dict[str, str]) -> Row:
        ok = cells["status"] != "error"
        return {
            "path": cells["path"],
            "label": cells["label"] or None,
            "probabilities": {label: float(cells[label]) for label in self.labels} if ok else None,
            "n_segments": int(cells["n_segments"] or 0),
            "faceless": int(cells["faceless"] or 0),
            "silent": int(cells["silent"] or 0),
            "duration_s": float(cells["duration_s"]) if cells["duration_s"] else None,
            "status": cells["status"],
            "error": cells["error"],
            "size_bytes": int(cells["size_bytes"]),
            "mtime_ns": int(cells["mtime_ns"]),
        }


class JsonlFormat:
    """One JSON object per line, with the per-segment timeline."""

    suffix = ".jsonl"

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)

    def header(self) -> str:
        return ""

    def encode(self, row: Row) -> str:
        return json.dumps(row, ensure_ascii=False) + "\n"

    def read(self, text: str) -> list[Row]:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        for row in rows:
            if row.get("probabilities") and list(row["probabilities"]) != self.labels:
                raise ValueError(f"its labels {list(row['probabilities'])} are not this model's {self.labels}")
        return rows


def format_for(path: str | Path, labels: Sequence[str]) -> CsvFormat | JsonlFormat:
    """By suffix: .csv or .jsonl (also .json / .ndjson, written as JSON lines)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return CsvFormat(labels)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return JsonlFormat(labels)
    raise ValueError(f"{path}: the output must end in .csv or .jsonl")


# ----------------------------------------------------------------------------- the file


class ResultsFile:
    """An append-only results file that survives SIGKILL: complete rows, fsynced one by one.

    One writer at a time: the file's lock (atomic.exclusive_lock) is taken before anything is
    read or written and held until `close`, so a second run on the same file stops at once,
    naming the process that holds it, instead of scoring every clip a second time.
    """

    def __init__(self, path: str | Path, labels: Sequence[str], model: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        self.format = format_for(self.path, labels)
        self.rows: dict[str, Row] = {}  # path -> row already in the file
        self._lock = contextlib.ExitStack()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock.enter_context(exclusive_lock(self.path))
            self._fd = self._open()
        except OSError as exc:
            self._lock.close()
            raise EdgeEmotionError(f"{self.path}: cannot write the results here ({exc.strerror or exc})") from exc
        except BaseException:
            self._lock.close()
            raise
        try:
            self._load(model)
        except BaseException:
            self.close()
            raise

    def _open(self) -> int:
        """Open (or create, with `open`'s mode: 0666 less the umask) the file; refuse anything but a regular file."""
        existed = self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, NEW_FILE_MODE)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise EdgeEmotionError(f"{self.path}: the results must go to a regular file")
        if not existed:
            fsync_directory(self.path.parent)
        return fd

    def _load(self, model: dict[str, str] | None) -> None:
        """Read the rows already there (after cutting a torn last line) and check they are this model's."""
        text = self._recover()
        try:
            self.rows = {row["path"]: row for row in self.format.read(text)}
        except (ValueError, KeyError, json.JSONDecodeError) as exc:
            raise EdgeEmotionError(f"{self.path}: cannot resume this results file: {exc}; write to a new file") from exc
        if model is not None:
            self._check_model(model, resuming=bool(self.rows))
        if not text:
            self._append(self.format.header())

    @property
    def model_path(self) -> Path:
        """Sidecar naming the model that wrote the rows, so a resume never mixes two models' scores."""
        return self.path.with_name(self.path.name + ".model.json")

    def _check_model(self, model: dict[str, str], resuming: bool) -> None:
        if resuming and self.model_path.exists():
            earlier = json.loads(self.model_path.read_text())
            same = {k: v for k, v in earlier.items() if k != "artifact"} == {k: v for k, v in model.items() if k != "artifact"}
            if not same:  # the same bytes moved elsewhere are the same model
                raise EdgeEmotionError(
                    f"{self.path}: its rows were scored by another model ({earlier.get('artifact')}, "
                    f"sha256 {earlier.get('sha256', '?')[:12]}); write to a new file or delete it"
                )
        atomic_write_text(self.model_path, json.dumps(model, indent=1, sort_keys=True) + "\n")

    def _recover(self) -> str:
        """Cut off a trailing partial line (left by a kill) and return the complete text."""
        size = os.fstat(self._fd).st_size
        data = b""
        while len(data) < size and (chunk := os.pread(self._fd, size - len(data), len(data))):
            data += chunk
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            os.ftruncate(self._fd, keep)
            os.fsync(self._fd)
        return data[:keep].decode("utf-8", "surrogateescape")

    def done(self, key: FileKey) -> bool:
        """Whether this version of the file already has a row."""
        row = self.rows.get(key.path)
        return row is not None and row_key(row) == key

    def pending(self, keys: Sequence[FileKey]) -> list[FileKey]:
        """The keys still to score, in order; rows of files changed since (other size or mtime) are dropped first."""
        self.drop(k.path for k in keys if k.path in self.rows and not self.done(k))
        return [k for k in keys if not self.done(k)]

    def drop(self, paths: Iterable[str]) -> None:
        """Remove the rows of these paths (stale versions) by rewriting the file atomically."""
        stale = set(paths) & self.rows.keys()
        if not stale:
            return
        kept = [row for p, row in self.rows.items() if p not in stale]
        with atomic_open(self.path) as f:
            f.write(self.format.header() + "".join(self.format.encode(row) for row in kept))
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDWR)
        self.rows = {row["path"]: row for row in kept}

    def write(self, row: Row) -> None:
        """Append one row as a single write, then flush it to disk."""
        self._append(self.format.encode(row))
        self.rows[row["path"]] = row

    def _append(self, line: str) -> None:
        if not line:
            return
        data = line.encode("utf-8", "surrogateescape")
        try:
            end = os.lseek(self._fd, 0, os.SEEK_END)
            written = 0
            while written < len(data):
                written += os.pwrite(self._fd, data[written:], end + written)
            os.fsync(self._fd)
        except OSError as exc:  # a full disk, a vanished mount: the rows before this one are safe
            raise EdgeEmotionError(
                f"{self.path}: cannot write results ({exc.strerror or exc}); the rows already written are intact, "
                "run the same command again to resume"
            ) from exc

    def close(self) -> None:
        """Close the file and release its lock (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._lock.close()

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------- summary


@dataclass
class Summary:
    """What a scoring run did: counts over the whole results file, speed over this run."""

    rows: int = 0
    scored: int = 0  # clips scored by this run
    skipped: int = 0  # clips already in the file (resume)
    labels: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)  # error cause -> count
    seconds: float = 0.0  # wall time of this run
    media_seconds: float = 0.0  # duration of the clips this run scored
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage, summed over this run's clips

    @property
    def clips_per_second(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else 0.0

    @property
    def times_real_time(self) -> float:
        return self.media_seconds / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "scored": self.scored,
            "skipped": self.skipped,
            "labels": self.labels,
            "statuses": self.statuses,
            "failures": self.failures,
            "seconds": round(self.seconds, 3),
            "clips_per_second": round(self.clips_per_second, 3),
            "times_real_time": round(self.times_real_time, 3),
            "stages_s": {k: round(v, 3) for k, v in self.stages.items()},
        }


def count_rows(rows: Iterable[Row]) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """(per label, per status, failures per cause) over result rows."""
    labels: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    for row in rows:
        statuses[row["status"]] += 1
        if row["status"] == "error":
            failures[error_cause(row["error"])] += 1
        elif row["label"]:
            labels[row["label"]] += 1
    return dict(labels.most_common()), dict(statuses), dict(failures.most_common())
