"""atomic writes (all or nothing at the final path, no litter left by killed writers, open's file modes) and
one-writer locks, tested with real second processes."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys

import pytest
from reliability_helpers import hold, release

from edge_emotion.io.atomic import FileLockedError, atomic_path, atomic_write_text, exclusive_lock, lock_path


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-way")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_temporaries_of_dead_writers_are_removed_on_the_next_write(tmp_path):
    target = tmp_path / "rows.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    stale = tmp_path / f".rows.json.{dead.stdout.strip()}.abc123.tmp"
    stale.write_text("left by a SIGKILLed writer")
    live = tmp_path / f".rows.json.{os.getpid()}.def456.tmp"  # this process: still writing
    live.write_text("in progress")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert not stale.exists() and live.exists()


@pytest.fixture
def umask():
    """Set the process umask for one test, then put the old one back."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_a_new_file_gets_the_mode_open_would_give_it(tmp_path, umask, mask):
    umask(mask)
    atomic_write_text(tmp_path / "model.json", "{}")
    with open(tmp_path / "plain.json", "w") as f:
        f.write("{}")
    mode = stat.S_IMODE((tmp_path / "model.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.json").stat().st_mode) == 0o666 & ~mask  # 0644 under umask 022


def test_a_replaced_file_keeps_its_mode(tmp_path, umask):
    target = tmp_path / "engine.bin"
    target.write_bytes(b"old")
    target.chmod(0o640)
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o640


def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    """A directory fsync (the only way the new name survives a power cut) comes after the rename, not before."""
    target = tmp_path / "ckpt.pt"
    synced: list[tuple[bool, bool]] = []  # (fd is a directory, target already holds the new bytes)
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append((stat.S_ISDIR(os.fstat(fd).st_mode), target.exists() and target.read_text() == "new"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    atomic_write_text(target, "new")
    assert synced == [(False, False), (True, True)]  # the temporary's data, then the folder after the rename


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    target = tmp_path / "out.csv"
    holder = hold(target)
    try:
        with pytest.raises(FileLockedError) as refused, exclusive_lock(target):
            pass
        message = str(refused.value)
        assert message.startswith(f"{target}: already being written by process {holder.pid};"), message
        assert "\n" not in message
    finally:
        release(holder)
    assert not lock_path(target).exists()  # released and removed by its holder
    with exclusive_lock(target) as lock:
        assert lock.read_text().strip() == str(os.getpid())
    assert not lock.exists()


def test_a_lock_left_by_a_killed_process_never_blocks(tmp_path):
    target = tmp_path / "cache"
    target.mkdir()
    holder = hold(target)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock = lock_path(target)
    assert lock == target / ".lock" and lock.read_text().strip() == str(holder.pid)  # left behind, stamped dead
    with exclusive_lock(target):
        assert lock.read_text().strip() == str(os.getpid())


def test_one_process_cannot_take_the_same_lock_twice(tmp_path):
    """flock conflicts between two opens in one process too: two ResultsFiles on one file would also corrupt it."""
    with (
        exclusive_lock(tmp_path / "r.jsonl"),
        pytest.raises(FileLockedError, match=f"process {os.getpid()}"),
        exclusive_lock(tmp_path / "r.jsonl"),
    ):
        pass
