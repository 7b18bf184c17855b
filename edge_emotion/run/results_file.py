"""The results file of `score`: append-only, one row per clip and person, durable as soon as written, resumable.

Durability: a file's rows are one `write` of whole lines on a file opened for
appending, then flushed and fsynced, so a killed run leaves complete rows and at
worst one partial last line. Opening the file again cuts that partial line off
and reads the rows already there; their (path, size, mtime) keys tell `score`
which files it can skip (`ResultsFile.pending`, the resume rule shared by the
local and the Ray scorer). A file is complete when it has its error row, or a
row for each person: one with --faces largest, one per person seen (the rows'
`people`) with --faces all. The rows of a file that changed since (other size or
mtime) or is incomplete (killed between its rows) are dropped, by an atomic
rewrite, before it is scored again, so the file never holds a path twice over.

Which faces the rows are of (--faces) is recorded beside the model: resuming
with the other choice is refused, never mixed.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from edge_emotion.errors import EdgeEmotionError
from edge_emotion.io.atomic import NEW_FILE_MODE, atomic_open, atomic_write_text, exclusive_lock, fsync_directory
from edge_emotion.preprocess.people import WhichFaces
from edge_emotion.run.row_formats import format_for
from edge_emotion.run.rows import FileKey, Row, row_key
from edge_emotion.run.summary import count_rows


class ResultsFile:
    """An append-only results file that survives SIGKILL: complete rows, fsynced one by one.

    One writer at a time: the file's lock (atomic.exclusive_lock) is taken before anything is
    read or written and held until `close`, so a second run on the same file stops at once,
    naming the process that holds it, instead of scoring every clip a second time.
    """

    def __init__(
        self, path: str | Path, labels: Sequence[str], model: dict[str, str] | None = None, faces: WhichFaces = "largest"
    ) -> None:
        self.path = Path(path)
        self.format = format_for(self.path, labels)
        self.faces = faces
        self.rows: dict[str, list[Row]] = {}  # path -> its rows already in the file (one per person, or its error row)
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
            self.rows = _by_path(_clip_rows(self.format.read(text)))
        except (ValueError, KeyError, json.JSONDecodeError) as exc:
            raise EdgeEmotionError(f"{self.path}: cannot resume this results file: {exc}; write to a new file") from exc
        if model is not None:
            self._check_faces(resuming=bool(self.rows))
            self._check_model({**model, "faces": self.faces}, resuming=bool(self.rows))
        if not text:
            self._append(self.format.header())

    @property
    def model_path(self) -> Path:
        """Sidecar naming the model that wrote the rows, so a resume never mixes two models' scores."""
        return self.path.with_name(self.path.name + ".model.json")

    def _check_faces(self, resuming: bool) -> None:
        """Refuse to resume rows of the other --faces choice (a sidecar from before the option: largest)."""
        if not (resuming and self.model_path.exists()):
            return
        earlier = json.loads(self.model_path.read_text()).get("faces", "largest")
        if earlier != self.faces:
            raise EdgeEmotionError(
                f"{self.path}: its rows are of --faces {earlier}, not --faces {self.faces} (rows of one person per file "
                "and of everyone do not mix in one file); write to a new file or delete it"
            )

    def _check_model(self, model: dict[str, str], resuming: bool) -> None:
        if resuming and self.model_path.exists():
            earlier = json.loads(self.model_path.read_text())
            ignored = ("artifact", "faces")  # the same bytes moved elsewhere are the same model; faces: _check_faces
            same = {k: v for k, v in earlier.items() if k not in ignored} == {k: v for k, v in model.items() if k not in ignored}
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
        """Whether this version of the file already has all its rows."""
        rows = self.rows.get(key.path, [])
        return bool(rows) and row_key(rows[0]) == key and self._complete(rows)

    def _complete(self, rows: Sequence[Row]) -> bool:
        """A file's rows: its error row, or one per person (one with --faces largest, one per person seen with all)."""
        if any(row["status"] == "error" for row in rows):
            return True
        expected = 1 if self.faces == "largest" else max(1, int(rows[0]["people"]))
        return len(rows) == len({row["person"] for row in rows}) == expected

    def pending(self, keys: Sequence[FileKey]) -> list[FileKey]:
        """The keys still to score, in order; rows of files changed since (other size or mtime) or incomplete are
        dropped first."""
        self.drop(k.path for k in keys if k.path in self.rows and not self.done(k))
        return [k for k in keys if not self.done(k)]

    def drop(self, paths: Iterable[str]) -> None:
        """Remove the rows of these paths (stale versions) by rewriting the file atomically."""
        stale = set(paths) & self.rows.keys()
        if not stale:
            return
        kept = [row for p, rows in self.rows.items() if p not in stale for row in rows]
        with atomic_open(self.path) as f:
            f.write(self.format.header() + "".join(self.format.encode(row) for row in kept))
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDWR)
        self.rows = _by_path(kept)

    def write_rows(self, rows: Sequence[Row]) -> None:
        """Append rows (one file's: all its people) as a single write, then flush them to disk."""
        self._append("".join(self.format.encode(row) for row in rows))
        for row in rows:
            self.rows.setdefault(row["path"], []).append(row)

    def write(self, row: Row) -> None:
        """Append one row as a single write, then flush it to disk."""
        self.write_rows([row])

    def counts(self) -> tuple[int, dict[str, int], dict[str, int], dict[str, int]]:
        """(rows, per label, per status, failures per cause) over the whole file."""
        rows = [row for file_rows in self.rows.values() for row in file_rows]
        return (len(rows), *count_rows(rows))

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


def _clip_rows(rows: list[Row]) -> list[Row]:
    """The rows, if they are rows of `score` per clip and person (not windows, not from before --faces)."""
    for row in rows:
        if "window" in row:
            raise ValueError("its rows are windows (score --window)")
        if "people" not in row:
            raise ValueError("its rows have no person field: written by an older edge-emotion, one row per clip")
    return rows


def _by_path(rows: Iterable[Row]) -> dict[str, list[Row]]:
    """Rows grouped by their file's path, in file order."""
    out: dict[str, list[Row]] = {}
    for row in rows:
        out.setdefault(row["path"], []).append(row)
    return out
