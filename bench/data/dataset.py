"""Datasets: a name (manifest, `sample`) or a folder -> verified HR images -> (HR, LR) samples for a scale."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.data.download import OFFLINE_FIX, cached_hashes, complete, fetch
from bench.data.images import (
    IMAGE_SUFFIXES,
    HRImage,
    ImageProblem,
    Sample,
    decode_image,
    is_image_file,
    make_lr,
    max_file_bytes,
    modcrop,
    orientation_text,
    read_image_file,
    sha256_file,
)
from bench.data.manifests import canonical_name, dataset_manifests, expected_files, unknown_dataset
from bench.data.paths import cache_dir, data_paths, offline
from bench.errors import DataError

__all__ = ["Dataset", "open_dataset", "image_names", "SAMPLE_FILES", "LAYOUTS"]

# natural images inside scikit-image's wheel: the always-available `sample` dataset
SAMPLE_FILES = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png")
# where a dataset's HR files may sit under a SRBENCH_DATA_PATH folder: ours, BasicSR's and EDSR's layouts
LAYOUTS = ("{folder}", "{folder}/HR", "benchmark/{folder}/HR")


def _readonly(img: np.ndarray) -> np.ndarray:
    # methods get views they cannot write into: one method cannot change what the next one sees
    img = np.ascontiguousarray(img)
    img.flags.writeable = False
    return img


@dataclass
class Dataset:
    """A resolved dataset: where each image file is, with what it must hash to.

    While its images are read, `problems` collects the files skipped and why, and `warnings` one line
    per image scored with a caveat (an EXIF orientation that is not applied).
    """

    name: str
    display: str
    files: list[tuple[str, Path, str | None]]  # (image name without suffix, path, expected sha256)
    origin: str  # "data-path:<dir>", "cache", "download", "folder", "sample"
    problems: list[ImageProblem] = field(default_factory=list)
    role: str = "evaluation"
    root: Path | None = None  # the folder the images were found in (the report draws crops from it)
    warnings: list[str] = field(default_factory=list)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # image name -> manifest (width, height)

    def __len__(self) -> int:
        return len(self.files)

    def images(self, strict: bool = True) -> Iterator[HRImage]:
        """Decode and verify each HR image in name order.

        A file's header is checked before the file is read (`read_image_file`). Manifest datasets raise
        DataError on a file whose sha256 differs; folder datasets (`strict=False`) record unreadable
        files in `self.problems` and go on.
        """
        for name, path, expected in self.files:
            data = self._read(name, path, expected)
            if data is None:
                continue
            digest = hashlib.sha256(data).hexdigest()  # hashed from the bytes read, never re-read
            if expected and digest != expected:
                raise self._corrupt(path, _sha_mismatch(path, digest, expected))
            try:
                image = decode_image(path, data)
            except DataError as exc:
                if self.origin != "folder":
                    raise
                self.problems.append(ImageProblem(self.name, name, str(exc)))
                continue
            finally:
                del data  # the file's bytes are not kept while the caller works on the image
            if image.orientation != 1:
                self._warn(
                    f"{self.name}/{path.name}: EXIF orientation {image.orientation} "
                    f"({orientation_text(image.orientation)}) is ignored; the image is scored as stored - "
                    f"rotate the file's pixels if that is wrong"
                )
            yield HRImage(self.name, name, image.rgb, image.gray, digest, path)

    def _read(self, name: str, path: Path, expected: str | None) -> bytes | None:
        """The bytes of one image file once its header passed the checks; None when a folder dataset skips it."""
        try:
            size = path.stat().st_size
            # larger than the manifest's image can be: wrong without hashing it
            too_big = name in self.sizes and size > max_file_bytes(*self.sizes[name])
            data = b"" if too_big else read_image_file(path)
        except OSError as exc:
            if self.origin != "folder":
                raise DataError(f"{self.name}: cannot read {path}: {exc.strerror}") from exc
            # one unreadable file of the user's folder skips that file only
            reason = f"{path.name}: cannot read the file ({exc.strerror}); check it exists and is readable"
            self.problems.append(ImageProblem(self.name, name, reason))
            return None
        except DataError as exc:
            if self.origin == "folder":
                self.problems.append(ImageProblem(self.name, name, str(exc)))
                return None
            digest = _streamed_sha256(path) if expected else None
            if digest is not None and digest != expected:
                raise self._corrupt(path, _sha_mismatch(path, digest, expected)) from exc
            raise  # the manifest's own file, refused by a limit the message names
        if too_big:
            w, h = self.sizes[name]
            raise self._corrupt(path, f"{path} is {size} bytes, more than a {w}x{h} image can need")
        return data

    def _corrupt(self, path: Path, what: str) -> DataError:
        """The error for a manifest file that is not the file the manifest names; a cached copy is removed."""
        if self.origin in ("cache", "download"):
            # a damaged cached copy is dropped, so the next fetch downloads it again
            path.unlink(missing_ok=True)
            fix = f"it was removed from the cache; run 'python -m bench fetch {self.name}'"
        else:
            fix = (
                f"replace it with a good copy, or take its folder out of SRBENCH_DATA_PATH and run "
                f"'python -m bench fetch {self.name}'"
            )
        return DataError(f"{what}: the file is corrupt or was replaced; {fix}")

    def _warn(self, line: str) -> None:
        if line not in self.warnings:  # images() runs once per scale: one line per image
            self.warnings.append(line)

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
            hr = _readonly(modcrop(im.rgb, scale))
            lr = _readonly(make_lr(hr, scale, im.sha256))
            yield Sample(self.name, im.name, scale, hr, lr, im.gray, im.sha256)


def _sha_mismatch(path: Path, digest: str, expected: str | None) -> str:
    return f"sha256 of {path} is {digest[:12]}..., expected {(expected or '')[:12]}..."


def _streamed_sha256(path: Path) -> str | None:
    try:
        return sha256_file(path)  # in 1 MiB chunks: a huge file is not read into memory
    except OSError:
        return None


def image_names(images: list[Path]) -> list[str]:
    """Stem per file, or the full file name where two files share a stem (`a.png` and `a.bmp`)."""
    stems = [p.stem for p in images]
    return [p.name if stems.count(p.stem) > 1 else p.stem for p in images]


def _folder_dataset(path: Path) -> Dataset:
    """A user's folder of HR images; named by its basename unless that names a known dataset."""
    path = path.resolve()
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if is_image_file(p)]
    name = path.name
    if canonical_name(name) is not None:  # a folder called set5 is not Set5: never compared with its numbers
        name = f"{name}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    entries: list[tuple[str, Path, str | None]] = [
        (n, p, None) for n, p in zip(image_names(images), images, strict=True)
    ]
    ds = Dataset(name=name, display=str(path), files=entries, origin="folder", root=path)
    for p in files:
        if not is_image_file(p):
            ds.problems.append(
                ImageProblem(
                    ds.name, p.name, f"{p.name}: not an image file (suffix {p.suffix or 'none'}); skipped"
                )
            )
    if not images:
        raise DataError(
            f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)}); point --datasets at HR images"
        )
    return ds


def _sample_dataset() -> Dataset:
    import skimage

    root = Path(skimage.__file__).parent / "data"
    files: list[tuple[str, Path, str | None]] = [
        (Path(f).stem, root / f, None) for f in SAMPLE_FILES if (root / f).is_file()
    ]
    if not files:
        raise DataError(f"scikit-image's sample images are missing under {root}; reinstall scikit-image")
    return Dataset("sample", "sample (scikit-image)", files, "sample", root=root)


def _in_data_path(folder_name: str, expected: list[tuple[str, str | None]]) -> tuple[Path, Path] | None:
    """(SRBENCH_DATA_PATH entry, folder) of the first complete copy in any known layout."""
    for root in data_paths():
        for layout in LAYOUTS:
            folder = root / layout.format(folder=folder_name)
            try:
                if complete(folder, expected):
                    return root, folder
            except OSError:
                continue  # an inaccessible entry: try the next one
    return None


def open_dataset(name: str | Path, *, download: bool = True) -> Dataset:
    """Resolve a dataset by name (case-insensitive), ``sample``, or a folder of HR images.

    Parameters
    ----------
    name : str or Path
        ``set5``, ``Set14``, ``b100``, ... (see `list_datasets`), ``sample``, or a folder path.
    download : bool
        Allow a download when the images are neither in SRBENCH_DATA_PATH nor in the cache.

    Returns
    -------
    Dataset
        Lazily decodes and verifies its images; ``samples(scale)`` yields (HR, LR) pairs.

    Raises
    ------
    UsageError
        An unknown name that is not a folder (with a suggestion).
    DataError
        The images cannot be had (offline without a local copy, every source failed, corrupt files).

    Example
    -------
    >>> import bench
    >>> ds = bench.open_dataset("sample")
    >>> len(ds), next(ds.samples(4)).lr.dtype.name
    (4, 'uint8')
    """
    key = canonical_name(str(name))
    if key == "sample":
        return _sample_dataset()
    if key is None:
        p = Path(name).expanduser()
        if p.is_dir():
            return _folder_dataset(p)
        raise unknown_dataset(str(name))
    m = dataset_manifests()[key]
    expected = expected_files(m)

    sizes = {
        Path(f["name"]).stem: (int(f["size"][0]), int(f["size"][1]))
        for f in m.get("files", [])
        if "size" in f
    }

    def build(folder: Path, origin: str, hashes: dict[str, str] | None = None) -> Dataset:
        files = [(Path(f).stem, folder / f, sha or (hashes or {}).get(f)) for f, sha in expected]
        role = m.get("role", "evaluation")
        return Dataset(key, m["display"], files, origin, role=role, root=folder, sizes=sizes)

    found = _in_data_path(m["folder"], expected)
    if found is not None:
        return build(found[1], f"data-path:{found[0]}")
    cached = cache_dir() / m["folder"]
    if complete(cached, expected):
        hashes = cached_hashes(cached)
        if hashes or any(sha for _, sha in expected):
            return build(cached, "cache", hashes)
    if not download or offline():
        looked = ", ".join(layout.format(folder=m["folder"]) + "/" for layout in LAYOUTS)
        why = "SRBENCH_OFFLINE=1 forbids downloading; " if download else ""
        raise DataError(
            f"dataset {key} is not available locally (looked for {looked} under each SRBENCH_DATA_PATH folder "
            f"and in the cache); {why}" + OFFLINE_FIX.format(name=key)
        )
    fetch(key)
    return build(cached, "download", cached_hashes(cached))
