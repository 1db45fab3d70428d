"""One folder per run: rows appended as they are computed, CSV/JSON files written atomically."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import UsageError

__all__ = [
    "RunStore",
    "atomic_write_text",
    "sr_image_path",
    "QUALITY_COLUMNS",
    "SUMMARY_COLUMNS",
    "MARKER",
    "LOCK",
]

MARKER = ".srbench-run"  # a run folder carries this file: srbench only ever writes into folders it made
LOCK = ".srbench-lock"  # held (flock) by the process writing into the folder; holds its pid

QUALITY_COLUMNS = [
    "method",
    "dataset",
    "scale",
    "image",
    "psnr",
    "ssim",
    "channel",
    "shave",
    "degradation",
    "protocol",
    "status",
    "error",
    "weights_sha256",
    "image_sha256",
]
SUMMARY_COLUMNS = ["method", "dataset", "scale", "psnr", "ssim", "n_images", "n_failed", "protocol", "status"]


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that readers see the old or the new content, never half of one.

    When the write fails (disk full, interrupted) the old content stays, no temporary file is left, and the
    error propagates; an OSError names `path` (not the temporary file).
    """
    data = text.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            # mkstemp makes the file 0600; keep the mode of the file being replaced, else the usual 0644
            os.fchmod(fd, path.stat().st_mode & 0o777 if path.exists() else 0o644)
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):  # the write's own error is the one to report
                os.unlink(tmp)
        _name_path(exc, path)
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # a write may take only part of the data (a disk filling up): the next one then fails
        view = view[os.write(fd, view) :]


def _name_path(exc: BaseException, path: Path) -> None:
    # the user knows `path`, not a temporary file that no longer exists: the CLI's one line names it
    if isinstance(exc, OSError):
        exc.filename, exc.filename2 = str(path), None


def sr_image_path(run_dir: Path | str, method: str, dataset: str, scale: int, image: str) -> Path:
    """Where a run keeps the SR output of `method` for one image: images/<method>/<dataset>/x<scale>/<image>.png.

    Method names are made safe as folder names ('dir:/some/path' -> 'dir_some_path').
    """
    folder = re.sub(r"[^A-Za-z0-9._-]+", "_", method).strip("_") or "method"
    return Path(run_dir) / "images" / folder / dataset / f"x{scale}" / f"{image}.png"


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    return str(o)


class RunStore:
    """A run folder. `quality.jsonl` is the journal: one JSON line per scored image, fsync'd; a line
    cut short by a crash is ignored on reading, so a killed run loses at most the image in flight."""

    def __init__(self, out_dir: Path | str) -> None:
        self.dir = Path(out_dir)
        self.journal = self.dir / "quality.jsonl"
        self.skipped_lines = 0

    def create(self) -> None:
        """Make the folder and check it is writable, before anything is computed. Raises UsageError."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.dir):
                pass
        except OSError as exc:
            raise UsageError(
                f"cannot write to the run folder {self.dir} ({exc.strerror}); choose a writable folder with --out"
            ) from exc

    @property
    def is_run(self) -> bool:
        return (self.dir / MARKER).is_file()

    def claim(self, *, resume: bool, force: bool) -> None:
        """Take the folder for a run: refuse what would lose a user's files, then lock it and mark it.

        - a non-empty folder that is not a run: refused (srbench never writes among other files);
        - a run folder: refused unless resuming it (`resume`) or replacing it (`force`, which
          drops its journal and tables);
        - resuming needs a run folder. Another process writing into it: refused, naming its pid.
        What a killed run leaves (a lock, temporary files) is no one's: it neither blocks a run nor survives one.
        Raises UsageError.
        """
        exists = self.dir.is_dir() and any(not _claim_leftover(p.name) for p in self.dir.iterdir())
        if resume and not self.is_run:
            raise UsageError(
                f"{self.dir} is not a srbench run folder (no {MARKER}); give the --out folder of a run"
            )
        if exists and not self.is_run:
            raise UsageError(
                f"{self.dir} is not empty and is not a srbench run folder; choose a new or empty folder with --out"
            )
        if exists and not resume and not force:
            raise UsageError(
                f"{self.dir} already holds a run; continue it with '--resume {self.dir}', or pass --force to replace it"
            )
        self.create()
        self._lock()
        self._remove_temporaries()
        if exists and force and not resume:
            for name in (
                "quality.jsonl",
                "quality.csv",
                "summary.csv",
                "latency.csv",
                "methods.csv",
                "problems.json",
            ):
                (self.dir / name).unlink(missing_ok=True)
        atomic_write_text(self.dir / MARKER, json.dumps({"srbench_run": 1}) + "\n")

    def _lock(self) -> None:
        import fcntl

        fd = os.open(self.dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise UsageError(
                f"another srbench process (pid {holder}) is writing into {self.dir}; wait for it or use another --out"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError as exc:  # a full disk: no lock held by a run that cannot start
            os.close(fd)
            _name_path(exc, self.dir / LOCK)
            raise
        self._lock_fd: int | None = fd  # held until the process exits or release() is called

    def _remove_temporaries(self) -> None:
        # a run killed mid-write (kill -9, power cut) leaves the temporary file of that write; only the
        # process holding the lock writes here, so none of them is in use
        for tmp in [*self.dir.glob(".*.tmp"), *(self.dir / "images").rglob("*.tmp")]:
            tmp.unlink(missing_ok=True)

    def release(self) -> None:
        """Give the folder's lock back (the process exiting does the same)."""
        fd = getattr(self, "_lock_fd", None)
        if fd is not None:
            os.close(fd)
            self._lock_fd = None

    def read_rows(self) -> list[dict[str, Any]]:
        """The journal's rows; lines that are not a well-formed row (hand-edited, foreign, torn) are skipped
        and counted in `skipped_lines`, so their images are simply computed again."""
        self.skipped_lines = 0
        if not self.journal.exists():
            return []
        rows = []
        with open(self.journal, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # a half-written last line from an interrupted run
                row = _parse_row(line)
                if row is None:
                    self.skipped_lines += 1
                else:
                    rows.append(row)
        return rows

    def append_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        """Journal `rows`, one fsync'd line each.

        When the write fails (disk full, interrupted) the journal is cut back to what it held, so rows
        already journaled stay intact and no partial line is left; an OSError propagates naming the journal.
        """
        data = "".join(json.dumps(_clean(r), default=_json_default) + "\n" for r in rows).encode("utf-8")
        if not data:
            return
        try:
            self._repair_journal()
            fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                start = os.lseek(fd, 0, os.SEEK_END)
                try:
                    _write_all(fd, data)
                    os.fsync(fd)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, start)
                    raise
            finally:
                os.close(fd)
        except OSError as exc:
            _name_path(exc, self.journal)
            raise

    def _repair_journal(self) -> None:
        # drop a torn last line before appending, so the next row starts on a line of its own
        if not self.journal.exists() or self.journal.stat().st_size == 0:
            return
        with open(self.journal, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return
            data = self.journal.read_bytes()
            f.seek(0)
            f.truncate(data.rfind(b"\n") + 1)

    def write_csv(self, name: str, df: pd.DataFrame) -> Path:
        path = self.dir / name
        # floats at full precision: rounding happens only in reports
        atomic_write_text(path, df.to_csv(index=False, float_format="%.17g"))
        return path

    def write_json(self, name: str, obj: Any) -> Path:
        path = self.dir / name
        atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")
        return path

    def read_json(self, name: str) -> Any:
        with open(self.dir / name, encoding="utf-8") as f:
            return json.load(f)


_KEY_FIELDS = {"method": str, "dataset": str, "image": str, "protocol": str, "status": str}


def _parse_row(line: str) -> dict[str, Any] | None:
    """A journal line as a row, or None when it is not one (not JSON, not an object, key fields or scores bad)."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    if not isinstance(row, dict) or not all(isinstance(row.get(k), t) for k, t in _KEY_FIELDS.items()):
        return None
    try:
        row["scale"] = int(row["scale"])
        if row["status"] == "ok":
            row["psnr"], row["ssim"] = float(row["psnr"]), float(row["ssim"])
    except (KeyError, TypeError, ValueError):
        return None
    return row


def _lock_holder(fd: int) -> str:
    """The pid written in a lock file held by another process, or "unknown".

    The holder writes its pid just after taking the lock: a reader coming in between finds the file empty
    or holding the pid of a run that was killed, so it reads again for a moment.
    """
    for _ in range(50):
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if pid.isdigit() and _alive(int(pid)):
            return pid
        time.sleep(0.01)
    return "unknown"


def _alive(pid: int) -> bool:
    if pid <= 0:  # os.kill would signal a process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _claim_leftover(name: str) -> bool:
    """Whether `name` is what a run killed while claiming a fresh folder leaves: the lock, the marker's
    temporary file. A folder holding only these is still empty: a new run may take it."""
    return name == LOCK or (name.startswith(f".{MARKER}.") and name.endswith(".tmp"))


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    # JSON has no inf/nan: store them as strings that pandas reads back as floats
    out = {}
    for k, v in row.items():
        if isinstance(v, float) and not math.isfinite(v):
            out[k] = "inf" if v > 0 else ("-inf" if v < 0 else "nan")
        else:
            out[k] = v
    return out
