"""Datasets: manifest -> find, fetch and verify HR images -> (HR, LR) samples for a scale."""

from __future__ import annotations

import errno
import hashlib
import io
import math
import os
import shutil
import tarfile
import tempfile
import tomllib
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from bench.errors import DataError, UsageError
from bench.imresize import imresize

__all__ = [
    "Dataset",
    "HRImage",
    "Sample",
    "ImageProblem",
    "open_dataset",
    "list_datasets",
    "fetch",
    "load_rgb",
    "modcrop",
    "make_lr",
    "cache_dir",
    "data_paths",
    "MANIFEST_DIR",
    "IMAGE_SUFFIXES",
]

MANIFEST_DIR = Path(__file__).resolve().parent.parent / "datasets"
IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# natural images inside scikit-image's wheel: the always-available `sample` dataset
SAMPLE_FILES = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png")
OFFLINE_FIX = (
    "put an extracted copy under a folder listed in SRBENCH_DATA_PATH, set SRBENCH_MIRROR to a reachable "
    "mirror, or run 'python -m bench fetch {name}' on a machine with network access"
)


@dataclass(frozen=True)
class HRImage:
    """One ground-truth image: `rgb` is HxWx3 uint8 RGB; `gray` is True when the file had one channel."""

    dataset: str
    name: str
    rgb: np.ndarray = field(repr=False)
    gray: bool
    sha256: str
    path: Path | None = None


@dataclass(frozen=True)
class Sample:
    """HR modcropped to the scale and its MATLAB-bicubic LR, both HxWx3 uint8 RGB."""

    dataset: str
    image: str
    scale: int
    hr: np.ndarray = field(repr=False)
    lr: np.ndarray = field(repr=False)
    gray: bool
    sha256: str


@dataclass(frozen=True)
class ImageProblem:
    """An image of a folder dataset that cannot be used, and why (the run reports and skips it)."""

    dataset: str
    image: str
    reason: str


# ----------------------------------------------------------------------------------------- helpers


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def data_paths() -> list[Path]:
    """Folders from SRBENCH_DATA_PATH (':'-separated), in order."""
    raw = os.environ.get("SRBENCH_DATA_PATH", "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


def cache_dir() -> Path:
    """SRBENCH_CACHE, else the platform's user cache folder for srbench."""
    env = os.environ.get("SRBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("srbench", appauthor=False))


def offline() -> bool:
    return os.environ.get("SRBENCH_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop bottom/right so height and width are multiples of `scale`."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def load_rgb(path: Path | str, data: bytes | None = None) -> tuple[np.ndarray, bool]:
    """Decode an image file to (HxWx3 uint8 RGB, was_single_channel).

    Gray and palette images become RGB, alpha is dropped, 16-bit is scaled to 8-bit, CMYK converted.
    Raises DataError naming the file on anything that is not a decodable image.
    """
    path = Path(path)
    try:
        src: Any = io.BytesIO(data) if data is not None else path
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(src) as im:
                im.load()
                mode = im.mode
                gray = mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
                if mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                    arr = np.asarray(im, dtype=np.float64)
                    peak = 65535.0 if arr.max(initial=0) > 255 or mode.startswith("I;16") else 255.0
                    arr = np.clip(np.floor(arr * (255.0 / peak) + 0.5), 0, 255).astype(np.uint8)
                elif mode == "P" and "transparency" in im.info:
                    arr = np.asarray(im.convert("RGBA"))[..., :3]
                else:
                    arr = np.asarray(im.convert("L" if gray else "RGB"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(
            f"{path.name}: image too large to decode safely ({exc}); resize it below Pillow's limit"
        ) from exc
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        size = len(data) if data is not None else (path.stat().st_size if path.exists() else 0)
        what = "empty file" if size == 0 else f"not a readable image ({exc})"
        raise DataError(f"{path.name}: {what}; replace or remove the file") from exc
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DataError(f"{path.name}: unsupported image layout {arr.shape}; expected HxW or HxWx3")
    return np.ascontiguousarray(arr), gray


_LR_CACHE_VERSION = "imresize-matlab-1"


def make_lr(hr: np.ndarray, scale: int, sha256: str | None = None) -> np.ndarray:
    """LR = MATLAB imresize(hr, 1/scale, 'bicubic') of a modcropped uint8 HR, cached on disk by hash."""
    path = None
    if sha256:
        path = cache_dir() / "lr" / f"{sha256}_x{scale}_{_LR_CACHE_VERSION}.png"
        if path.is_file():
            try:
                lr, _ = load_rgb(path)
                if lr.shape == (hr.shape[0] // scale, hr.shape[1] // scale, 3):
                    return lr
            except DataError:
                pass  # a damaged cache entry is recomputed below
    lr = imresize(hr, 1.0 / scale)
    if path is not None:
        _atomic_write_png(path, lr)
    return lr


def _atomic_write_png(path: Path, img: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(img).save(f, format="PNG", compress_level=1)
        os.replace(tmp, path)
    except OSError:
        pass  # the LR cache is an optimisation: a read-only or full cache only costs time


# ----------------------------------------------------------------------------------------- manifests


@cache
def _manifests() -> dict[str, dict[str, Any]]:
    out = {}
    for p in sorted(MANIFEST_DIR.glob("*.toml")):
        with open(p, "rb") as f:
            m = tomllib.load(f)
        out[m["name"]] = m
    return out


def list_datasets() -> list[str]:
    """Names accepted by `open_dataset`, plus 'sample'."""
    return sorted([*_manifests(), "sample"])


def _expected_files(m: dict[str, Any]) -> list[tuple[str, str | None]]:
    if "files" in m:
        return [(f["name"], f["sha256"]) for f in m["files"]]
    first = int(m.get("file_first", 1))
    return [(m["file_pattern"].format(i=i), None) for i in range(first, first + int(m["file_count"]))]


# ----------------------------------------------------------------------------------------- datasets


@dataclass
class Dataset:
    """A resolved dataset: where each image file is, with what it must hash to."""

    name: str
    display: str
    files: list[tuple[str, Path, str | None]]  # (image name without suffix, path, expected sha256)
    origin: str  # "data-path:<dir>", "cache", "download", "folder", "sample"
    problems: list[ImageProblem] = field(default_factory=list)
    role: str = "evaluation"

    def __len__(self) -> int:
        return len(self.files)

    def images(self, strict: bool = True) -> Iterator[HRImage]:
        """Decode and verify each HR image in name order.

        Manifest datasets raise DataError on a file whose sha256 differs; folder datasets
        (`strict=False`) record unreadable files in `self.problems` and go on.
        """
        for name, path, expected in self.files:
            try:
                data = path.read_bytes()
            except OSError as exc:
                if self.origin == "folder":  # one unreadable file of the user's folder skips that file only
                    self.problems.append(ImageProblem(self.name, name, f"{path.name}: cannot read the file "
                                                      f"({exc.strerror}); check it exists and is readable"))
                    continue
                raise DataError(f"{self.name}: cannot read {path}: {exc.strerror}") from exc
            digest = hashlib.sha256(data).hexdigest()
            if expected and digest != expected:
                if self.origin in ("cache", "download"):
                    # a damaged cached copy is dropped, so the next fetch downloads it again
                    path.unlink(missing_ok=True)
                    fix = f"it was removed from the cache; run 'python -m bench fetch {self.name}'"
                else:
                    fix = (f"replace it with a good copy, or take its folder out of SRBENCH_DATA_PATH and run "
                           f"'python -m bench fetch {self.name}'")
                raise DataError(
                    f"sha256 of {path} is {digest[:12]}..., expected {expected[:12]}...: the file is corrupt "
                    f"or was replaced; {fix}"
                )
            try:
                rgb, gray = load_rgb(path, data)
            except DataError as exc:
                if self.origin != "folder":
                    raise
                self.problems.append(ImageProblem(self.name, name, str(exc)))
                continue
            yield HRImage(self.name, name, rgb, gray, digest, path)

    def samples(self, scale: int, min_size: int = 1) -> Iterator[Sample]:
        """(HR modcropped, LR) per image for `scale`; images too small are recorded as problems."""
        for im in self.images(strict=self.origin != "folder"):
            h, w = im.rgb.shape[:2]
            if h // scale < min_size or w // scale < min_size:
                self.problems.append(
                    ImageProblem(
                        self.name,
                        im.name,
                        f"{im.name}: {w}x{h} is too small for x{scale} (needs at least "
                        f"{min_size * scale}x{min_size * scale}); use a larger image or a smaller scale",
                    )
                )
                continue
            hr = np.ascontiguousarray(modcrop(im.rgb, scale))
            yield Sample(self.name, im.name, scale, hr, make_lr(hr, scale, im.sha256), im.gray, im.sha256)


def _folder_dataset(path: Path) -> Dataset:
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    ds = Dataset(
        name=path.name, display=path.name, files=[(p.stem, p, None) for p in images], origin="folder"
    )
    for p in files:
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            ds.problems.append(
                ImageProblem(ds.name, p.name, f"{p.name}: not an image file (suffix {p.suffix or 'none'}); skipped")
            )
    if not images:
        raise DataError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)}); point --datasets at HR images")
    return ds


def _sample_dataset() -> Dataset:
    import skimage

    root = Path(skimage.__file__).parent / "data"
    files: list[tuple[str, Path, str | None]] = [
        (Path(f).stem, root / f, None) for f in SAMPLE_FILES if (root / f).is_file()
    ]
    if not files:
        raise DataError(f"scikit-image's sample images are missing under {root}; reinstall scikit-image")
    return Dataset("sample", "sample (scikit-image)", files, "sample")


def _folder_md5(paths: list[Path]) -> str:
    digests = "".join(hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(paths, key=lambda p: p.name))
    return hashlib.md5(digests.encode()).hexdigest()


def _complete(folder: Path, expected: list[tuple[str, str | None]]) -> bool:
    return folder.is_dir() and all((folder / name).is_file() for name, _ in expected)


def _cached_hashes(folder: Path) -> dict[str, str]:
    try:
        import json

        return dict(json.loads((folder / ".srbench-verified.json").read_text())["files"])
    except (OSError, ValueError, KeyError):
        return {}


def open_dataset(name: str, *, download: bool = True) -> Dataset:
    """Resolve a dataset by manifest name, 'sample', or a folder path of HR images.

    Order: SRBENCH_DATA_PATH folders, the cache, then a download (unless offline).
    Raises UsageError for an unknown name and DataError when the images cannot be had.
    """
    if name == "sample":
        return _sample_dataset()
    manifests = _manifests()
    if name not in manifests:
        p = Path(name).expanduser()
        if p.is_dir():
            return _folder_dataset(p)
        from bench.registry import did_you_mean

        known = list_datasets()
        raise UsageError(
            f"unknown dataset {name!r}; {did_you_mean(name, known)}known: {', '.join(known)} "
            f"(or a folder of HR images)"
        )
    m = manifests[name]
    expected = _expected_files(m)
    folder_name = m["folder"]

    def build(folder: Path, origin: str, hashes: dict[str, str] | None = None) -> Dataset:
        files = []
        for fname, sha in expected:
            files.append((Path(fname).stem, folder / fname, sha or (hashes or {}).get(fname)))
        return Dataset(name, m["display"], files, origin, role=m.get("role", "evaluation"))

    for root in data_paths():
        folder = root / folder_name
        if _complete(folder, expected):
            return build(folder, f"data-path:{root}")
    cached = cache_dir() / folder_name
    if _complete(cached, expected):
        hashes = _cached_hashes(cached)
        if hashes or any(sha for _, sha in expected):
            return build(cached, "cache", hashes)
    if not download:
        raise DataError(f"dataset {name} is not available locally; " + OFFLINE_FIX.format(name=name))
    fetch(name)
    return build(cached, "download", _cached_hashes(cached))


# ----------------------------------------------------------------------------------------- download


def _mirror(url: str) -> str:
    mirror = os.environ.get("SRBENCH_MIRROR", "").strip().rstrip("/")
    if not mirror:
        return url
    parts = urlsplit(url)
    return mirror + parts.path + (f"?{parts.query}" if parts.query else "")


def _safe_members_tar(tf: tarfile.TarFile, archive: str) -> list[tarfile.TarInfo]:
    members = tf.getmembers()
    for mem in members:
        _check_member_name(mem.name, archive)
        if mem.issym() or mem.islnk():
            raise DataError(f"{archive}: member {mem.name!r} is a link; links are refused for safety")
        if not (mem.isfile() or mem.isdir()):
            raise DataError(f"{archive}: member {mem.name!r} is not a regular file; refused for safety")
    return members


def _check_member_name(member: str, archive: str) -> None:
    parts = Path(member.replace("\\", "/")).parts
    if member.startswith(("/", "\\")) or (parts and parts[0].endswith(":")) or ".." in parts:
        raise DataError(
            f"{archive}: member {member!r} would land outside the target folder; the archive is unsafe "
            f"(it was deleted); check the source or SRBENCH_MIRROR"
        )


def _extract(archive: Path, fmt: str, prefix: str, wanted: set[str], dest: Path) -> dict[str, Path]:
    """Extract the wanted files found under `prefix` into `dest` (flat); refuse unsafe members."""
    out: dict[str, Path] = {}
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if fmt in ("tar", "tar.gz", "tgz"):
            with tarfile.open(archive, "r:*") as tf:
                for mem in _safe_members_tar(tf, archive.name):
                    rel = mem.name[len(prefix) :] if mem.name.startswith(prefix) else None
                    if mem.isfile() and rel in wanted:
                        src = tf.extractfile(mem)
                        assert src is not None
                        with src, open(dest / rel, "wb") as f:
                            shutil.copyfileobj(src, f)
                        out[rel] = dest / rel
        elif fmt == "zip":
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    _check_member_name(info.filename, archive.name)
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise DataError(f"{archive.name}: member {info.filename!r} is a link; refused for safety")
                for info in zf.infolist():
                    rel = info.filename[len(prefix) :] if info.filename.startswith(prefix) else None
                    if not info.is_dir() and rel in wanted:
                        with zf.open(info) as src, open(dest / rel, "wb") as f:
                            shutil.copyfileobj(src, f)
                        out[rel] = dest / rel
        else:
            raise DataError(f"unknown archive format {fmt!r} in the manifest; use tar, tar.gz or zip")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{archive.name}: damaged archive ({exc}); it was deleted: fetch again") from exc
    return out


def fetch(name: str) -> Path:
    """Download, verify and extract a manifest dataset into the cache; returns its folder.

    Tries each source in order; a source that fails (network, hash, layout) falls through to
    the next. Raises DataError naming every source tried and the fix.
    """
    manifests = _manifests()
    if name == "sample":
        return _sample_dataset().files[0][1].parent
    if name not in manifests:
        return open_dataset(name).files[0][1].parent  # raises the unknown-name error
    m = manifests[name]
    expected = _expected_files(m)
    if offline():
        raise DataError(
            f"dataset {name} is not available locally and SRBENCH_OFFLINE=1 forbids downloading; "
            + OFFLINE_FIX.format(name=name)
        )
    import pooch

    # pooch's INFO lines advise on its own API ("use this value as known_hash"): not for our users
    pooch.get_logger().setLevel("WARNING")
    timeout = _timeout()
    root = cache_dir()
    target = root / m["folder"]
    downloads = root / "downloads"
    errors = []
    for src in m.get("sources", []):
        url = _mirror(src["url"])
        known = f"sha256:{src['sha256']}" if "sha256" in src else (f"md5:{src['md5']}" if "md5" in src else None)
        try:
            downloads.mkdir(parents=True, exist_ok=True)
            archive = Path(
                pooch.retrieve(
                    url,
                    known_hash=known,
                    fname=f"{name}-{Path(urlsplit(src['url']).path).name}",
                    path=downloads,
                    progressbar=_progress(),
                    downloader=pooch.HTTPDownloader(timeout=timeout, progressbar=_progress()),
                )
            )
        except Exception as exc:  # pooch raises ValueError on hash mismatch, requests errors on HTTP
            # requests' errors are OSErrors without an errno; the file system's have one
            cache_err = _cache_error(exc, downloads) if isinstance(exc, OSError) else None
            if cache_err is not None:
                raise cache_err from exc
            errors.append(f"{url}: {_describe(exc, timeout)}")
            continue
        try:
            _install(archive, src, expected, target, m)
        except DataError as exc:
            archive.unlink(missing_ok=True)  # a bad archive is not kept: the next fetch downloads it afresh
            errors.append(f"{url}: {exc}")
            continue
        except OSError as exc:
            cache_err = _cache_error(exc, target.parent)
            if cache_err is not None:
                raise cache_err from exc
            errors.append(f"{url}: cannot extract {archive.name}: {exc}")
            continue
        return target
    raise DataError(f"could not fetch dataset {name}: " + "; ".join(errors) + ". " + OFFLINE_FIX.format(name=name))


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _describe(exc: Exception, timeout: float) -> str:
    text = _short(exc)
    if "timed out" in text.lower():
        return f"{text} (no data for {timeout:g} s; set SRBENCH_TIMEOUT to wait longer or use a closer SRBENCH_MIRROR)"
    return text


def _timeout() -> float:
    """Seconds a download may go without receiving data: SRBENCH_TIMEOUT, default 60."""
    raw = os.environ.get("SRBENCH_TIMEOUT", "").strip()
    try:
        seconds = float(raw) if raw else 60.0
    except ValueError:
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise UsageError(f"SRBENCH_TIMEOUT={raw!r} is not a positive number of seconds; unset it or set e.g. 60")
    return seconds


_CACHE_WRITE_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST)


def _cache_error(exc: OSError, folder: Path) -> DataError | None:
    """A DataError naming the cache folder when `exc` is the file system refusing to write there."""
    if exc.errno == errno.ENOSPC:
        return DataError(f"disk full while writing to {folder}; free space or set SRBENCH_CACHE elsewhere")
    if exc.errno in _CACHE_WRITE_ERRNOS:
        return DataError(
            f"cannot write to the cache folder {folder} ({exc.strerror}); set SRBENCH_CACHE to a writable folder"
        )
    return None


def _progress() -> bool:
    return os.environ.get("SRBENCH_PROGRESS", "1") != "0"


def _install(archive: Path, src: dict[str, Any], expected: list[tuple[str, str | None]], target: Path, m: dict[str, Any]) -> None:
    """Extract into a temp folder, verify, then move into place: the cache never holds a bad file."""
    import json

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    old = target.with_name(f"{tmp.name}-old")
    try:
        wanted = {fname for fname, _ in expected}
        got = _extract(archive, src["format"], src.get("prefix", ""), wanted, tmp)
        missing = sorted(wanted - set(got))
        if missing:
            raise DataError(
                f"archive {archive.name} lacks {len(missing)} of {len(wanted)} files under "
                f"{src.get('prefix', '')!r} (first: {missing[0]}); the archive layout changed or it is truncated"
            )
        hashes = {}
        for fname, sha in expected:
            digest = sha256_file(tmp / fname)
            if sha and src.get("file_hashes", True) and digest != sha:
                raise DataError(
                    f"sha256 of {fname} in {archive.name} is {digest[:12]}..., expected {sha[:12]}...; "
                    f"the download is corrupt (it was deleted): fetch again"
                )
            hashes[fname] = digest
        if "folder_md5" in m and not any(sha for _, sha in expected):
            got_md5 = _folder_md5([tmp / f for f in wanted])
            if got_md5 != m["folder_md5"]:
                raise DataError(
                    f"folder md5 of {m['name']} is {got_md5}, expected {m['folder_md5']}; the archive "
                    f"content differs from the published set (it was deleted): fetch again"
                )
        (tmp / ".srbench-verified.json").write_text(
            json.dumps({"source": src["url"], "archive": archive.name, "files": hashes}, indent=1)
        )
        # another process may install the same dataset at once: never delete a folder it may be reading
        if _complete(target, expected) and _cached_hashes(target) == hashes:
            return
        if target.exists():
            os.replace(target, old)  # a stale or partial copy is moved aside in one step
        try:
            os.replace(tmp, target)
        except OSError:
            if not (_complete(target, expected) and _cached_hashes(target) == hashes):
                raise  # not a concurrent install of the same files
    finally:
        for leftover in (tmp, old):
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)
