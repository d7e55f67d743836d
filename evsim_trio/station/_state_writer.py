"""One writer of station state files for a whole trio run: batches, and cheap atomic replaces.

Two costs dominated a state write besides the TOML (see `_state_text`), both measured on the
project's machine:

- A thread hop per write (`trio.to_thread`), and an fsync per file. Here whatever is pending
  when the writer thread is free goes in one batch: one hop, then per file write + fsync, then
  the renames, then one fsync of each directory, so the renames are durable too. Nobody waits
  for a batch to fill: the next batch is what arrives while one is being written.
- Creating a temp file and replacing the old file with it: allocating and freeing an inode is
  ~190 µs of kernel CPU per write, three times the fsync. So each state file keeps its previous
  version in a spare next to it (`.<name>.spare.tmp`): a write truncates and fills the spare,
  fsyncs it and atomically exchanges the two names (Linux `renameat2(RENAME_EXCHANGE)`). A
  reader, or a kill at any moment, sees the old file or the new one, never a torn one, as with
  a rename; the spare then holds the previous version and is the next write's temp file. Where
  the exchange is not available the spare is renamed over the file instead, as before.

A station keeps one write in flight (its `_write_lock`), so a batch holds at most one text per
file. `write()` returns only once its file is on disk; cancelled before its batch started, it
withdraws its text; once started, it waits for the batch (bounded: a few file writes).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import trio

from evsim_trio.station._persistence import write_all

log = logging.getLogger(__name__)

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _load_renameat2() -> Callable[[int, bytes, int, bytes, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # no libc symbol (glibc < 2.28, some libcs)
        return None
    int_, path_ = ctypes.c_int, ctypes.c_char_p
    function.argtypes = [int_, path_, int_, path_, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_renameat2 = _load_renameat2()


def spare_path(path: Path) -> Path:
    """The spare of state file `path`: its previous version, and its next write's temp file.

    Named like the temp files of `write_state_file`, so `remove_temp_files` cleans it up.
    """
    return path.with_name(f".{path.name}.spare.tmp")


def discard_spare(path: Path) -> None:
    """Delete the spare of `path` (when its station stops: nothing to keep for later)."""
    spare_path(path).unlink(missing_ok=True)


def _exchange(spare: Path, path: Path) -> None:
    """Put `spare` in place of `path` atomically (the old `path` becomes the spare)."""
    global _renameat2
    if _renameat2 is not None:
        old, new = os.fsencode(spare), os.fsencode(path)
        if _renameat2(_AT_FDCWD, old, _AT_FDCWD, new, _RENAME_EXCHANGE) == 0:
            return
        code = ctypes.get_errno()
        if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            _renameat2 = None  # kernel or file system without RENAME_EXCHANGE: rename from now on
        elif code != errno.ENOENT:  # ENOENT: the first write, no old file to keep as spare
            raise OSError(code, os.strerror(code), os.fspath(spare), None, os.fspath(path))
    os.replace(spare, path)


def _fill(spare: Path, data: bytes) -> None:
    try:
        fd = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except FileNotFoundError:
        spare.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_batch(items: Mapping[Path, bytes]) -> dict[Path, OSError]:
    """Write each state file atomically and durably (see the module); the errors, by path."""
    errors: dict[Path, OSError] = {}
    filled: list[Path] = []
    for path in items:
        try:
            _fill(spare_path(path), items[path])
        except OSError as exc:
            errors[path] = exc
        else:
            filled.append(path)
    directories: dict[Path, list[Path]] = {}
    for path in filled:
        try:
            _exchange(spare_path(path), path)
        except OSError as exc:
            errors[path] = exc
        else:
            directories.setdefault(path.parent, []).append(path)
    for directory, paths in directories.items():
        try:
            _fsync_directory(directory)
        except OSError as exc:
            errors.update(dict.fromkeys(paths, exc))
    return errors


class _Batch:
    def __init__(self) -> None:
        self.items: dict[Path, bytes] = {}
        self.errors: dict[Path, OSError] = {}
        self.done = trio.Event()


class StateWriter:
    """Writes station state files for one trio run, a batch per thread hop (see the module)."""

    def __init__(self) -> None:
        self._pending = _Batch()
        self._busy = False
        self._idle = trio.Event()
        self.batches = 0
        self.files = 0

    def statistics(self) -> dict[str, int]:
        """Batches and files written so far."""
        return {"batches": self.batches, "files": self.files}

    async def write(self, path: Path, data: bytes) -> None:
        """Make `data` the content of `path`; returns once it is on disk. OSError if not."""
        batch = self._pending
        if path in batch.items:
            raise RuntimeError(f"{path}: a write of this file is already pending")
        batch.items[path] = data
        finished = False
        try:
            # A batch not done is either being written or the pending one: when the writer
            # is free, the batch of whoever looks first is the pending one, and it leads.
            while not batch.done.is_set():
                if self._busy:
                    await self._idle.wait()
                else:
                    await self._write_pending()
            finished = True
        finally:
            if not finished and not batch.done.is_set():
                if batch is self._pending:
                    del batch.items[path]  # never started: withdrawn
                else:
                    with trio.CancelScope(shield=True):
                        await batch.done.wait()  # being written: bounded by the batch
        error = batch.errors.get(path)
        if error is not None:
            raise error

    async def _write_pending(self) -> None:
        batch = self._pending
        self._pending = _Batch()
        self._busy = True
        try:
            with trio.CancelScope(shield=True):  # its writers wait for it uncancellably too
                batch.errors = await trio.to_thread.run_sync(write_batch, batch.items)
        except BaseException as exc:
            failure = OSError(f"state writer failed: {exc!r}")
            batch.errors = dict.fromkeys(batch.items, failure)
            raise
        finally:
            self.batches += 1
            self.files += len(batch.items)
            self._busy = False
            batch.done.set()
            self._idle.set()
            self._idle = trio.Event()


_WRITER: trio.lowlevel.RunVar[StateWriter] = trio.lowlevel.RunVar("evsim_trio_state_writer")


def state_writer() -> StateWriter:
    """The state writer of the current trio run (made on first use)."""
    try:
        return _WRITER.get()
    except LookupError:
        writer = StateWriter()
        _WRITER.set(writer)
        return writer
