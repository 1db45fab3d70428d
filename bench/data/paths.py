"""Where data lives and how the network may be used: SRBENCH_* environment variables, read and validated."""

from __future__ import annotations

import errno
import math
import os
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

from bench.errors import DataError, UsageError

__all__ = [
    "source_checkout",
    "PACKAGE_PARENT",
    "data_paths",
    "weights_paths",
    "cache_dir",
    "offline",
    "mirror",
    "timeout",
    "progress",
    "cache_error",
    "short_error",
]

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")
# the folder holding the `bench` package: the repository root in a checkout, site-packages when installed
PACKAGE_PARENT = Path(__file__).resolve().parents[2]


def source_checkout(root: Path | None = None) -> bool:
    """True when `root` (default: the folder holding the `bench` package) is a git checkout of srbench itself:
    it holds .git and a pyproject.toml naming the `srbench` distribution. An installed package is not, even
    when the environment it is installed in lives inside some other git repository."""
    root = PACKAGE_PARENT if root is None else root
    try:
        text = (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return False
    return (root / ".git").exists() and 'name = "srbench"' in text


def _path_list(var: str) -> list[Path]:
    raw = os.environ.get(var, "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


def data_paths() -> list[Path]:
    """Folders from SRBENCH_DATA_PATH (':'-separated), in order."""
    return _path_list("SRBENCH_DATA_PATH")


def weights_paths() -> list[Path]:
    """Folders from SRBENCH_WEIGHTS_PATH (':'-separated, laid out as `<model>/<file>`), in order."""
    return _path_list("SRBENCH_WEIGHTS_PATH")


def cache_dir() -> Path:
    """SRBENCH_CACHE, else the platform's user cache folder for srbench."""
    env = os.environ.get("SRBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("srbench", appauthor=False))


def offline() -> bool:
    """SRBENCH_OFFLINE as a boolean; a value that is neither yes nor no is a UsageError, not 'online'."""
    raw = os.environ.get("SRBENCH_OFFLINE", "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise UsageError(
        f"SRBENCH_OFFLINE={raw!r} is neither yes nor no; set it to 1 (offline) or 0, or unset it"
    )


def mirror(url: str) -> str:
    """`url` with its scheme and host replaced by SRBENCH_MIRROR (when set). Raises UsageError on a bad mirror."""
    base = os.environ.get("SRBENCH_MIRROR", "").strip().rstrip("/")
    if not base:
        return url
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(
            f"SRBENCH_MIRROR={base!r} is not an http(s) URL; set it like http://host:8000 or unset it"
        )
    src = urlsplit(url)
    return base + src.path + (f"?{src.query}" if src.query else "")


def timeout() -> float:
    """Seconds a download may go without receiving data: SRBENCH_TIMEOUT, default 60."""
    raw = os.environ.get("SRBENCH_TIMEOUT", "").strip()
    try:
        seconds = float(raw) if raw else 60.0
    except ValueError:
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise UsageError(
            f"SRBENCH_TIMEOUT={raw!r} is not a positive number of seconds; unset it or set e.g. 60"
        )
    return seconds


def progress() -> bool:
    """Progress bars on (SRBENCH_PROGRESS unset or not '0')."""
    return os.environ.get("SRBENCH_PROGRESS", "1") != "0"


_CACHE_WRITE_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST)


def cache_error(exc: OSError, folder: Path) -> DataError | None:
    """A DataError naming the cache folder when `exc` is the file system refusing to write there."""
    if exc.errno == errno.ENOSPC:
        return DataError(f"disk full while writing to {folder}; free space or set SRBENCH_CACHE elsewhere")
    if exc.errno in _CACHE_WRITE_ERRNOS:
        return DataError(
            f"cannot write to the cache folder {folder} ({exc.strerror}); set SRBENCH_CACHE to a writable folder"
        )
    return None


def short_error(exc: BaseException, wait: float | None = None) -> str:
    """First line of an exception's text (at most 300 characters); a timeout names SRBENCH_TIMEOUT."""
    lines = str(exc).strip().splitlines()
    text = (lines[0] if lines else type(exc).__name__)[:300]
    if wait is not None and "timed out" in text.lower():
        text += (
            f" (no data for {wait:g} s; set SRBENCH_TIMEOUT to wait longer or use a closer SRBENCH_MIRROR)"
        )
    return text
