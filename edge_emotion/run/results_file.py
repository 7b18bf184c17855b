"""The one results file of `score` (clips) and `score --window` (windows): append-only, durable, resumable.

Durability: rows are one `write` of whole lines on a file opened for appending, then fsynced, so a
killed run leaves complete rows and at worst one partial last line. Opening the file again cuts that
line off and reads the rows already there, one at a time, into a small record per video file
(`FileRecord`: its key, where its rows stand, their counts; never an hour's rows). Their (path, size,
mtime) keys and the file kind's completeness rule tell `score` which files it can skip (`pending`,
shared by the local and the Ray scorer). The rows of a file that changed since (other size or mtime)
or is incomplete (killed between its rows) are dropped, by an atomic rewrite, before it is scored
again, so the file never holds a window twice.

A recording cut into keyframe chunks (timeline/chunks.py) resumes instead from its first chunk whose
windows are not all written: before a chunk's rows, what its people leave the next chunk (chunks.People
.state) and its windows go into the chunk log (the `.chunks.json` sidecar, replaced atomically), which
holds the one file being written (rows go in file order: only one can be partly written). On resume the
rows of its finished chunks stay, the rest are dropped, and `resume` says where to go on (`Resume`).
The rows themselves cannot say it: CSV holds no boxes, and the next chunk's people are numbered by the
boxes the chunk before saw on the positions both track, and a --faces largest row by the window before.

The rule is a parameter (`FileKind.complete`). Today both kinds use `every_window`: a file is complete
with its error row, or its windows 0 .. n_windows - 1 in order, each with all its rows (one with
--faces largest, max(1, people) with --faces all); a clip is one window over the whole file.

Which model, faces (--faces) and grid (window, hop) the rows are of is recorded beside them (the
`.model.json` sidecar): resuming with another is refused, never mixed. One writer at a time: the
file's lock (atomic.exclusive_lock) is held from open to `close`, so a second run on the same file
stops at once, naming the process that holds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge_emotion.errors import EdgeEmotionError
from edge_emotion.io.atomic import NEW_FILE_MODE, atomic_open, atomic_write_text, exclusive_lock, fsync_directory
from edge_emotion.preprocess.people import WhichFaces
from edge_emotion.run.codec import format_for
from edge_emotion.run.result import FileKey, Kind, Result, error_cause
from edge_emotion.timeline.chunks import Chunk

GRID_KEYS = ("window_s", "hop_s")


@dataclass
class FileRecord:
    """What the results file holds of one video file: its key, where its rows stand, and their counts."""

    key: FileKey
    faces: WhichFaces
    n_windows: int = 0
    window: int = -1  # the newest window with rows
    rows: int = 0  # the rows of that window so far
    people: int = 0  # people seen in that window (its rows' `people`)
    in_order: bool = True  # windows 0, 1, 2 ... so far, each with all its rows before the next
    labels: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)

    def window_done(self) -> bool:
        """The newest window has all its rows: one with --faces largest, one per person seen (or one) with all."""
        return self.rows == (1 if self.faces == "largest" else max(1, self.people))

    def add(self, result: Result) -> None:
        self.statuses[result.status] += 1
        if result.status == "error":
            self.failures[error_cause(result.error)] += 1
            return
        window = int(result.window or 0)
        if window == self.window:
            self.rows += 1
        else:
            self.in_order = self.in_order and window == self.window + 1 and (self.window < 0 or self.window_done())
            self.window, self.rows, self.people = window, 1, int(result.people or 0)
        self.n_windows = int(result.n_windows or 0)
        if result.label:
            self.labels[result.label] += 1


def every_window(record: FileRecord) -> bool:
    """Complete: an error row, or every window of the grid in order, each with all its rows."""
    if record.statuses["error"]:
        return True
    return record.in_order and record.window == record.n_windows - 1 and record.window_done()


@dataclass(frozen=True)
class FileKind:
    """What a results file holds: rows of one kind, and when one video file's rows are complete."""

    name: Kind
    complete: Callable[[FileRecord], bool] = every_window


@dataclass(frozen=True)
class Resume:
    """A chunked recording that a killed run left part-way: its chunks' count, the windows [a, b) of those whose rows
    are all in (the first ones), and what the last of them left the next (chunks.People.state)."""

    path: str
    count: int
    windows: list[tuple[int, int]]
    state: dict


CLIPS = FileKind("clip")
WINDOWS = FileKind("window")
_OTHER = {"clip": "its rows are one per clip (score without --window)", "window": "its rows are windows (score --window)"}


class ResultsFile:
    """An append-only results file of one kind that survives SIGKILL: complete rows, fsynced write by write."""

    def __init__(
        self, path: str | Path, labels: Sequence[str], model: dict[str, str] | None = None, faces: WhichFaces = "largest",
        kind: FileKind = CLIPS,
    ) -> None:
        self.path = Path(path)
        self.format = format_for(self.path, labels)
        self.faces, self.kind = faces, kind
        self.files: dict[str, FileRecord] = {}
        self.resume: Resume | None = None  # set by `pending`
        self._log: dict = {}  # the chunk log: {"key": [path, size, mtime_ns], "count": C, "chunks": {c: {...}}}
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
        """Read the rows already there (after cutting a torn last line) and check they are this kind's and model's."""
        text = self._recover()
        try:
            for result in self._results(text):
                self._record(result)
        except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise EdgeEmotionError(f"{self.path}: cannot resume this results file: {exc}; write to a new file") from exc
        if model is not None:
            resuming = bool(self.files) and self.model_path.exists()
            earlier = json.loads(self.model_path.read_text()) if resuming else {}
            self._check_sidecar(earlier, {**model, "faces": self.faces})
            atomic_write_text(self.model_path, json.dumps({**model, "faces": self.faces}, indent=1, sort_keys=True) + "\n")
        if not text:
            self._append(self.format.header())
        if self.chunks_path.exists():
            self._log = json.loads(self.chunks_path.read_text())

    def _results(self, text: str) -> Iterator[Result]:
        for result in self.format.decode(text):
            if result.kind != self.kind.name:
                raise ValueError(_OTHER.get(result.kind, f"its rows are {result.kind} results"))
            yield result

    @property
    def model_path(self) -> Path:
        """Sidecar naming the model that wrote the rows, so a resume never mixes two models' scores."""
        return self.path.with_name(self.path.name + ".model.json")

    @property
    def chunks_path(self) -> Path:
        """Sidecar of the chunk log (the recording being written, chunk by chunk)."""
        return self.path.with_name(self.path.name + ".chunks.json")

    def _check_sidecar(self, earlier: dict[str, str], model: dict[str, str]) -> None:
        """Refuse to resume rows of another grid, --faces choice or model (a sidecar from before --faces: largest)."""
        if not earlier:
            return
        if any(earlier.get(k) != model.get(k) for k in GRID_KEYS):
            raise EdgeEmotionError(
                f"{self.path}: its rows have windows of {earlier.get('window_s')} s every {earlier.get('hop_s')} s, not "
                f"{model.get('window_s')} s every {model.get('hop_s')} s; write to a new file or delete it"
            )
        if earlier.get("faces", "largest") != model["faces"]:
            raise EdgeEmotionError(
                f"{self.path}: its rows are of --faces {earlier.get('faces', 'largest')}, not --faces {model['faces']} (rows "
                "of one person per file and of everyone do not mix in one file); write to a new file or delete it"
            )
        ignored = ("artifact", "faces")  # the same bytes moved elsewhere are the same model
        if {k: v for k, v in earlier.items() if k not in ignored} != {k: v for k, v in model.items() if k not in ignored}:
            raise EdgeEmotionError(
                f"{self.path}: its rows were scored by another model ({earlier.get('artifact')}, "
                f"sha256 {earlier.get('sha256', '?')[:12]}); write to a new file or delete it"
            )

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

    def _record(self, result: Result) -> None:
        key = result.key
        record = self.files.get(key.path)
        if record is None or record.key != key:
            record = self.files[key.path] = FileRecord(key, self.faces)
        record.add(result)

    def done(self, key: FileKey) -> bool:
        """Whether this version of the file already has all its rows."""
        record = self.files.get(key.path)
        return record is not None and record.key == key and self.kind.complete(record)

    def pending(self, keys: Sequence[FileKey]) -> list[FileKey]:
        """The keys still to score, in order; rows of files changed since (other size or mtime) or incomplete are
        dropped first, but those of the finished chunks of a chunked recording left part-way (then `resume`)."""
        self.resume = self._resumable(keys)
        self.drop(k.path for k in keys if k.path in self.files and not self.done(k) and not (self.resume and self.resume.path == k.path))
        if self.resume:
            self.drop([self.resume.path], self.resume.windows[-1][1])
        return [k for k in keys if not self.done(k)]

    def _resumable(self, keys: Sequence[FileKey]) -> Resume | None:
        """The chunk log's recording, if it is to score and its first chunks' windows are all written (in order)."""
        if not self._log:
            return None
        key = FileKey(*self._log["key"])
        record = self.files.get(key.path)
        if key not in keys or record is None or record.key != key or self.done(key) or record.statuses["error"] or not record.in_order:
            return None
        written = record.window + record.window_done()  # windows 0 .. written - 1 have all their rows
        windows: list[tuple[int, int]] = []
        while (chunk := self._log["chunks"].get(str(len(windows)))) and chunk["windows"][1] <= written:
            windows.append((chunk["windows"][0], chunk["windows"][1]))
        return Resume(key.path, self._log["count"], windows, self._log["chunks"][str(len(windows) - 1)]) if windows else None

    def log_chunk(self, key: FileKey, chunk: Chunk, state: dict) -> None:
        """Before a chunk's rows: its windows and what it leaves the next chunk (the log holds one file's chunks)."""
        if self._log.get("key") != [key.path, key.size, key.mtime_ns] or self._log.get("count") != chunk.count:
            self._log = {"key": [key.path, key.size, key.mtime_ns], "count": chunk.count, "chunks": {}}
        self._log["chunks"][str(chunk.number)] = {"windows": list(chunk.windows), **state}
        atomic_write_text(self.chunks_path, json.dumps(self._log) + "\n")

    def drop(self, paths: Iterable[str], from_window: int = 0) -> None:
        """Remove the rows of these paths from window `from_window` on (an error row: always) by rewriting the file
        atomically, row by row."""
        stale = set(paths) & self.files.keys()
        if not stale:
            return
        text = self._recover()
        for path in stale:
            del self.files[path]
        with atomic_open(self.path) as f:
            f.write(self.format.header())
            for result in self.format.decode(text):
                if result.path not in stale or (result.window is not None and result.window < from_window):
                    f.write(self.format.encode(result))
                    if result.path in stale:
                        self._record(result)
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDWR)

    def write_rows(self, results: Sequence[Result]) -> None:
        """Append results (one file's, or a group of its windows) as a single write, then flush it to disk."""
        self._append("".join(self.format.encode(result) for result in results))
        for result in results:
            self._record(result)

    def write(self, result: Result) -> None:
        self.write_rows([result])

    def counts(self) -> tuple[int, dict[str, int], dict[str, int], dict[str, int]]:
        """(rows, per label, per status, failures per cause) over the whole file."""
        labels: Counter[str] = Counter()
        statuses: Counter[str] = Counter()
        failures: Counter[str] = Counter()
        for record in self.files.values():
            labels += record.labels
            statuses += record.statuses
            failures += record.failures
        return sum(statuses.values()), dict(labels.most_common()), dict(statuses), dict(failures.most_common())

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
        """Close the file (and the chunk log once its recording is complete) and release its lock (idempotent)."""
        if self._log and self.done(FileKey(*self._log["key"])):
            self.chunks_path.unlink(missing_ok=True)
            self._log = {}
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._lock.close()

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
