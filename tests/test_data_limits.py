"""Limits of the data layer: headers are checked before a file is read, pixel and size limits, EXIF
orientation warnings, and atomic writes that leave no temporary file behind."""

from __future__ import annotations

import errno
import resource
import shutil
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bench.data import (
    MAX_PIXELS,
    atomic_write,
    atomic_write_png,
    decode_image,
    load_rgb,
    make_lr,
    max_pixels,
    open_dataset,
    read_image_file,
)
from bench.errors import DataError, UsageError
from bench.imresize import imresize

GIB = 1 << 30


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SRBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SRBENCH_OFFLINE", "1")
    monkeypatch.delenv("SRBENCH_MAX_PIXELS", raising=False)


def _rgb(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _folder(tmp_path: Path) -> Path:
    """A folder dataset holding one good image, good.png."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(_rgb()).save(folder / "good.png")
    return folder


def _sparse(path: Path, size: int, head: bytes = b"") -> None:
    """`path` of `size` bytes starting with `head`: the rest is a hole, costing no disk."""
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose IHDR (correct CRC) claims `width` x `height` RGB pixels, with an empty IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b""))
        + _chunk(b"IEND", b"")
    )


def _peaks(fn: Callable[[], Any]) -> tuple[Any, int, int]:
    """fn(), the peak of Python allocations during it, and the growth of the process's peak RSS (bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    try:
        out = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return out, peak, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) * 1024


def _images(folder: Path) -> tuple[list[str], dict[str, str]]:
    ds = open_dataset(folder)
    names = [im.name for im in ds.images(strict=False)]
    return names, {p.image: p.reason for p in ds.problems}


def test_a_multi_gigabyte_file_named_png_is_skipped_without_reading_it(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    _sparse(folder / "x.png", 4 * GIB)
    (names, problems), peak, rss = _peaks(lambda: _images(folder))
    assert names == ["good"]
    assert "x.png: not a readable image" in problems["x"] and "replace or remove" in problems["x"]
    assert "\n" not in problems["x"]
    assert peak < 16 << 20 and rss < GIB


def test_a_good_header_followed_by_gigabytes_is_refused_as_trailing_data(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    head = (folder / "good.png").read_bytes()
    _sparse(folder / "tail.png", 3 * GIB, head)
    (names, problems), peak, rss = _peaks(lambda: _images(folder))
    assert names == ["good"]
    assert "tail.png: the file is 3,072.0 MiB, but 32x24 pixels need at most" in problems["tail"]
    assert "trailing data" in problems["tail"] and "re-save the image" in problems["tail"]
    assert peak < 16 << 20 and rss < GIB


def test_a_png_header_claiming_100000x100000_pixels_is_refused_by_the_pixel_limit(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "huge.png").write_bytes(_png_claiming(100_000, 100_000))
    (names, problems), peak, _ = _peaks(lambda: _images(folder))
    assert names == ["good"]
    reason = problems["huge"]
    assert reason.startswith("huge.png: more than") and f"over the limit of {MAX_PIXELS}" in reason
    assert "set SRBENCH_MAX_PIXELS to a larger number" in reason
    assert peak < 16 << 20


def test_the_pixel_limit_names_the_size_and_follows_srbench_max_pixels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _folder(tmp_path) / "good.png"
    monkeypatch.setenv("SRBENCH_MAX_PIXELS", "700")
    with pytest.raises(
        DataError, match=r"good.png: 32x24 is 768 pixels, more than the limit of 700; set SRBENCH"
    ):
        load_rgb(path)
    monkeypatch.setenv("SRBENCH_MAX_PIXELS", "768")
    assert load_rgb(path)[0].shape == (24, 32, 3)


def test_an_8000x8000_image_passes_the_default_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("1", (8000, 8000)).save(path)  # 64 megapixels in a few kB
    assert max_pixels() == MAX_PIXELS >= 8000 * 8000
    assert read_image_file(path) == path.read_bytes()  # the header check alone: decoding needs ~200 MB


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5", "nan", "inf", "1e400"])
def test_bad_srbench_max_pixels_values_are_one_line_usage_errors(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path)
    monkeypatch.setenv("SRBENCH_MAX_PIXELS", value)
    with pytest.raises(UsageError, match="SRBENCH_MAX_PIXELS=") as info:
        _images(folder)  # not a skipped image: the whole request is wrong
    assert "\n" not in str(info.value) and "unset it" in str(info.value)


@pytest.mark.parametrize(
    ("value", "pixels"), [("2e8", 200_000_000), ("200_000_000", 200_000_000), (" 5 ", 5)]
)
def test_srbench_max_pixels_reads_whole_numbers(
    value: str, pixels: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SRBENCH_MAX_PIXELS", value)
    assert max_pixels() == pixels


def test_a_header_running_on_for_megabytes_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bench.data.images._HEADER_BYTES", 1 << 20)
    path = tmp_path / "app.jpg"
    Image.fromarray(_rgb()).save(path)
    data = path.read_bytes()
    segment = b"\xff\xe9" + struct.pack(">H", 65535) + bytes(65533)  # an APP9 segment before the frame
    path.write_bytes(data[:2] + segment * 20 + data[2:])
    with pytest.raises(DataError, match=r"app.jpg: not a readable image \(over 1 MiB of header"):
        read_image_file(path)


def test_files_that_are_not_images_keep_their_one_line_reasons(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    (tmp_path / "cut.png").write_bytes(_png_claiming(8, 8)[:20])
    with pytest.raises(DataError, match=r"^empty.png: empty file; replace or remove the file$"):
        load_rgb(tmp_path / "empty.png")
    with pytest.raises(DataError, match=r"^text.png: not a readable image \(no PNG, JPEG, BMP, TIFF, WebP"):
        load_rgb(tmp_path / "text.png")
    with pytest.raises(DataError, match=r"^cut.png: not a readable image"):
        load_rgb(tmp_path / "cut.png")
    with pytest.raises(DataError, match="file not found"):
        load_rgb(tmp_path / "absent.png")


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".webp", ".ppm", ".jpg"])
def test_legitimate_files_decode_to_the_pixels_pillow_reads(suffix: str, tmp_path: Path) -> None:
    path = tmp_path / f"a{suffix}"
    Image.fromarray(_rgb(37, 53)).save(path, **({"lossless": True} if suffix == ".webp" else {}))
    expected = np.asarray(Image.open(path).convert("RGB"))
    for data in (None, path.read_bytes()):
        rgb, gray = load_rgb(path, data)
        assert not gray and rgb.dtype == np.uint8 and np.array_equal(rgb, expected)


def test_an_exif_rotated_jpeg_is_scored_as_stored_with_one_warning(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_rgb(24, 40, seed=1)).save(folder / "turned.jpg", exif=exif, quality=95)
    stored = np.asarray(Image.open(folder / "turned.jpg").convert("RGB"))
    ds = open_dataset(folder)
    for scale in (2, 4):  # images() runs once per scale: still one line
        by_name = {s.image: s for s in ds.samples(scale)}
        assert np.array_equal(by_name["turned"].hr, stored[: 24 - 24 % scale, : 40 - 40 % scale])
    assert ds.warnings == [
        f"{ds.name}/turned.jpg: EXIF orientation 6 (rotate 90 CW) is ignored; the image is scored as stored - "
        "rotate the file's pixels if that is wrong"
    ]
    assert decode_image(folder / "good.png").orientation == 1 and not ds.problems


def _enospc(*args: Any, **kwargs: Any) -> None:
    f = next((a for a in args if hasattr(a, "write")), kwargs.get("fp"))
    if f is not None:
        f.write(b"half a file")
    raise OSError(errno.ENOSPC, "No space left on device")


def test_atomic_write_png_on_a_full_disk_returns_false_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.png").write_bytes(b"old")
    monkeypatch.setattr(Image.Image, "save", _enospc)
    assert atomic_write_png(out / "new.png", _rgb()) is False
    assert atomic_write_png(out / "old.png", _rgb()) is False
    assert sorted(p.name for p in out.iterdir()) == ["old.png"] and (out / "old.png").read_bytes() == b"old"


def test_atomic_write_raises_any_error_and_leaves_no_tmp(tmp_path: Path) -> None:
    def fail(f: Any) -> None:
        f.write(b"partial")
        raise ValueError("not an image")

    with pytest.raises(ValueError, match="not an image"):
        atomic_write(tmp_path / "x.png", fail)
    with pytest.raises(OSError, match="No space"):
        atomic_write(tmp_path / "y.sha256", _enospc)
    with pytest.raises(TypeError):
        atomic_write_png(tmp_path / "z.png", np.zeros((2, 2, 7), np.float32))  # Pillow refuses the array
    assert list(tmp_path.iterdir()) == []
    atomic_write(tmp_path / "ok.txt", lambda f: f.write(b"done"))
    assert [p.name for p in tmp_path.iterdir()] == ["ok.txt"] and (
        tmp_path / "ok.txt"
    ).stat().st_mode & 0o777 == 0o644


def test_the_lr_cache_on_a_full_disk_costs_time_not_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hr = _rgb(24, 32)
    monkeypatch.setattr(Image.Image, "save", _enospc)
    assert np.array_equal(make_lr(hr, 2, "f" * 64), imresize(hr, 0.5))
    lr_dir = tmp_path / "cache" / "lr"
    assert list(lr_dir.iterdir()) == []  # no .tmp, no PNG without its recorded hash


def test_a_failing_lr_sidecar_leaves_no_tmp_and_the_cache_still_verifies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bench.data.images as images

    real = images.atomic_write

    def sidecar_fails(path: Path, write: Callable[[Any], object]) -> None:
        real(path, _enospc if path.suffix == ".sha256" else write)

    monkeypatch.setattr(images, "atomic_write", sidecar_fails)
    hr = _rgb(24, 32)
    assert np.array_equal(make_lr(hr, 2, "e" * 64), imresize(hr, 0.5))
    lr_dir = tmp_path / "cache" / "lr"
    assert [p.suffix for p in lr_dir.iterdir()] == [".png"]  # a PNG without its hash is never trusted
    monkeypatch.setattr(images, "atomic_write", real)
    assert np.array_equal(make_lr(hr, 2, "e" * 64), imresize(hr, 0.5))
    assert sorted(p.suffix for p in lr_dir.iterdir()) == [".png", ".sha256"]


def test_an_unwritable_lr_cache_does_not_fail_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("SRBENCH_CACHE", str(tmp_path / "file" / "cache"))  # ENOTDIR, even for root
    hr = _rgb(24, 32)
    assert np.array_equal(make_lr(hr, 2, "d" * 64), imresize(hr, 0.5))


@pytest.fixture
def set5_copy(shared_datasets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of Set5 under SRBENCH_DATA_PATH (files of it get replaced)."""
    folder = tmp_path / "data" / "Set5"
    shutil.copytree(shared_datasets / "Set5", folder)
    monkeypatch.setenv("SRBENCH_DATA_PATH", str(tmp_path / "data"))
    return folder


def test_a_known_file_far_larger_than_its_manifest_size_fails_before_hashing(
    set5_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _sparse(set5_copy / "baby.png", 3 * GIB, b"\x89PNG\r\n\x1a\n")
    monkeypatch.setattr("bench.data.dataset.sha256_file", lambda p: pytest.fail(f"{p} was hashed"))
    ds = open_dataset("set5")
    error, peak, rss = _peaks(lambda: _error(lambda: next(ds.images())))
    assert f"{set5_copy / 'baby.png'} is 3221225472 bytes, more than a 512x512 image can need" in error
    assert "the file is corrupt or was replaced; replace it with a good copy" in error
    assert peak < 16 << 20 and rss < GIB


def _error(fn: Callable[[], Any]) -> str:
    with pytest.raises(DataError) as info:
        fn()
    return str(info.value)


def test_an_unreadable_known_file_is_reported_by_its_hash(set5_copy: Path) -> None:
    (set5_copy / "baby.png").write_bytes(b"garbage" * 100)
    with pytest.raises(
        DataError, match=r"sha256 of .*baby.png is .*, expected cb85956d68f7.*: the file is corrupt"
    ):
        next(open_dataset("set5").images())


def test_a_known_file_over_a_lowered_pixel_limit_names_the_limit_not_corruption(
    set5_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SRBENCH_MAX_PIXELS", "1000")
    with pytest.raises(DataError, match=r"^baby.png: 512x512 is 262144 pixels, more than the limit of 1000"):
        next(open_dataset("set5").images())
    assert (set5_copy / "baby.png").stat().st_size < 1 << 20
