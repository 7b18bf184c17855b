"""Atomic file writes (an artifact is at its final path complete, or not at all) and one-writer locks.

Modes: a new file gets the mode `open` would give it (0666 less the umask, so
0644 under umask 022); a file that replaces another keeps the mode of the one it
replaces, as `open(path, "w")` on an existing file does. After the rename the
directory is fsynced too, so the new name survives a power cut.

Locks: `exclusive_lock` holds an advisory `fcntl.flock` on a sidecar file for as
long as a run writes something that a second run would corrupt (a results file,
a prepare cache). The kernel drops a flock when its process dies, however it
dies, so a lock file left by a killed run never blocks the next one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import os
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from edge_emotion.errors import EdgeEmotionError

NEW_FILE_MODE = 0o666  # what `open` asks for; the umask takes its bits off
# fsync on a directory is refused by some file systems (and needs read access to it): durability there is best effort
_DIR_FSYNC_UNSUPPORTED = (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES, errno.EPERM, errno.EBADF)


class FileLockedError(EdgeEmotionError):
    """Another live process holds the lock of a file this run would write."""

    def __init__(self, path: str | Path, holder: str) -> None:
        self.path = str(path)
        self.holder = holder
        super().__init__(
            f"{self.path}: already being written by {holder}; wait for that run to finish or write somewhere else"
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete temporaries of `path` left by killed writers (their pid, in the name, is gone)."""
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def fsync_directory(folder: str | Path) -> None:
    """Make a rename or a new entry in `folder` durable (best effort where the file system refuses)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        if exc.errno in _DIR_FSYNC_UNSUPPORTED:
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def _create_temporary(path: Path) -> Path:
    """A new empty file beside `path`, named after this pid (so a later writer can tell it is stale).

    Created by os.open with mode 0666, like `open`, so the umask (and a default ACL) applies;
    `tempfile.mkstemp` would make it 0600 and the rename would keep that.
    """
    while True:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, NEW_FILE_MODE))
            return tmp
        except FileExistsError:
            continue


def _mode_to_keep(path: Path) -> int | None:
    """Permission bits of the regular file `path` will replace, or None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else None


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync and rename it over `path` (and fsync the folder),
    else delete it. The file gets the mode of the one it replaces, or the umask's for a new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp_path = _create_temporary(path)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            keep = _mode_to_keep(path)
            if keep is not None:
                os.fchmod(f.fileno(), keep)
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        fsync_directory(path.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file for writing that replaces `path` only when the block ends without error."""
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
        yield f


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)


# ----------------------------------------------------------------------------- one writer


def lock_path(path: str | Path) -> Path:
    """The sidecar that `exclusive_lock(path)` locks: `.NAME.lock` beside a file (which may be renamed over while
    locked), `.lock` inside a folder (a cache or output folder as a whole)."""
    path = Path(path)
    return path / ".lock" if path.is_dir() else path.with_name(f".{path.name}.lock")


def _holder(lock: Path) -> str:
    """Who holds the lock, from the pid it wrote into the lock file (a few tries: it stamps it just after locking)."""
    for _ in range(5):
        try:
            text = lock.read_text(encoding="utf-8").strip()
        except OSError:
            text = ""
        if text.isdigit():
            return f"process {text}"
        time.sleep(0.01)
    return "another process"


@contextlib.contextmanager
def exclusive_lock(path: str | Path) -> Iterator[Path]:
    """Hold the one-writer lock of `path` for the block; raise FileLockedError at once if a live process holds it.

    The lock is a flock on `lock_path(path)`, which holds the holder's pid (for the
    message). It is removed on release; a lock file left by a killed process is unlocked (the
    kernel released its flock) and is simply taken over. The lock fd is close-on-exec, and
    worker processes are spawned, so they never hold it on behalf of a dead parent.
    """
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(lock, Path(path))
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)  # while still locked: a waiter that opened this inode then sees it is gone
        os.close(fd)


def _acquire(lock: Path, path: Path) -> int:
    """Open, flock and stamp the lock file; retry if it was removed or replaced between our open and our lock."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, NEW_FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FileLockedError(path, _holder(lock)) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # its holder released and removed it after our open: lock the current file instead
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd


def write_png(fig: Any, output: str | Path, dpi: int = 110) -> None:
    """Save a laid-out matplotlib figure as PNG atomically (all or nothing at `output`), then free it."""
    import matplotlib.pyplot as plt

    with atomic_path(output) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
