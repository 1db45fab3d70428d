"""Every bad input and fault gets a clear answer and loses nothing: bad files, odd formats, failing methods,
bad names, Ctrl-C, concurrent cache writers, bad weights, out of memory."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import signal
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import bench.registry as registry
from bench.api import MethodInfo
from bench.cli import main
from bench.data import load_rgb, make_lr, open_dataset
from bench.errors import DataError, WeightsError
from bench.imresize import imresize

RUN_OPTS = ["--pass", "quality", "--no-report", "--no-progress", "--save-images", "none", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("SRBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SRBENCH_OFFLINE", "1")
    monkeypatch.delenv("SRBENCH_DATA_PATH", raising=False)
    registry.list_methods()  # load the built-ins, then let each test register on a copy
    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth textured HxWx3 uint8 RGB image: finite, realistic scores."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = 0.5 + 0.3 * np.sin(2 * np.pi * (3 * xx + 2 * yy + seed / 7))
    img = np.stack([base, base**2, 1 - base], axis=2) + rng.normal(0, 0.03, size=(h, w, 3))
    return np.clip(img * 255, 0, 255).round().astype(np.uint8)


def _png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _folder(tmp_path: Path, files: dict[str, bytes | np.ndarray], name: str = "mine") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for fname, data in files.items():
        (folder / fname).write_bytes(_png_bytes(data) if isinstance(data, np.ndarray) else data)
    return folder


def _run(tmp_path: Path, methods: str, folder: Path, scales: str = "2", *extra: str) -> int:
    return main(
        [
            "run",
            "--methods",
            methods,
            "--datasets",
            str(folder),
            "--scales",
            scales,
            "--out",
            str(tmp_path / "run"),
            *RUN_OPTS,
            *extra,
        ]
    )


def _quality(tmp_path: Path) -> pd.DataFrame:
    return pd.read_csv(tmp_path / "run" / "quality.csv", keep_default_na=False)


class FakeMethod:
    """A method whose upscale is `fn(lr, self)`; bicubic unless told otherwise."""

    device = "cpu"

    def __init__(self, name: str, scale: int, fn=None, tile: int | None = None) -> None:  # type: ignore[no-untyped-def]
        self.name, self.scale, self.fn, self.tile, self.calls = name, scale, fn, tile, 0

    def upscale(self, lr: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.fn is not None:
            return self.fn(lr, self)
        return imresize(lr, self.scale)

    def info(self) -> MethodInfo:
        return MethodInfo(self.name, self.scale, self.device)


def _register(name: str, fn=None, **kw) -> None:  # type: ignore[no-untyped-def]
    registry.register_method(
        name, lambda *, scale, device="cpu", **k: FakeMethod(name, scale, fn, **{**kw, **k}), replace=True
    )


# ----------------------------------------------------------------------------------------- bad files


def test_folder_bad_files_are_skipped_by_name_and_reason_others_scored(tmp_path, capsys):
    good = _png_bytes(_image(48, 48))
    folder = _folder(
        tmp_path,
        {
            "good.png": good,
            "good2.png": _image(40, 56, seed=1),
            "corrupt.png": good[:100] + bytes(range(256)) * 4,  # a PNG header, then garbage
            "truncated.png": good[: len(good) // 2],
            "empty.png": b"",
            "notes.jpg": b"these are my notes, not a picture\n",
            "readme.txt": b"hello",
        },
    )
    assert _run(tmp_path, "bicubic", folder) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "skipped: mine/corrupt: corrupt.png: not a readable image (" in err
    assert "skipped: mine/truncated: truncated.png: not a readable image (" in err
    assert "skipped: mine/empty: empty.png: empty file; replace or remove the file" in err
    assert (
        "skipped: mine/notes: notes.jpg: not a readable image (no PNG, JPEG, BMP, TIFF, WebP or PPM/PGM"
        in err
    )
    assert "skipped: mine/readme.txt: readme.txt: not an image file (suffix .txt); skipped" in err
    assert "error: 5 image(s) skipped and 0 scoring(s) failed" in err
    q = _quality(tmp_path)
    assert sorted(q["image"]) == ["good", "good2"] and (q["status"] == "ok").all()
    problems = (tmp_path / "run" / "problems.json").read_text()
    for name in ("corrupt.png", "truncated.png", "empty.png", "notes.jpg", "readme.txt"):
        assert name in problems


def test_folder_without_any_image_is_an_error(tmp_path, capsys):
    folder = _folder(tmp_path, {"a.txt": b"x"})
    assert _run(tmp_path, "bicubic", folder) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith(f"error: folder {folder} holds no images (.png")
        and "point --datasets at HR images" in err
    )


def test_file_removed_during_the_run_is_skipped(tmp_path, capsys):
    folder = _folder(tmp_path, {"a.png": _image(20, 20), "gone.png": _image(20, 20, seed=1)})
    ds = open_dataset(str(folder))
    (folder / "gone.png").unlink()
    assert [im.name for im in ds.images(strict=False)] == ["a"]
    assert ds.problems[0].reason.startswith("gone.png: cannot read the file (No such file or directory)")


def test_unwritable_out_folder_is_a_usage_error_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    folder = _folder(tmp_path, {"a.png": _image(40, 40)})
    rc = main(
        [
            "run",
            "--methods",
            "bicubic",
            "--datasets",
            str(folder),
            "--scales",
            "2",
            "--out",
            str(blocker / "run"),
            *RUN_OPTS,
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"error: cannot write to the run folder {blocker / 'run'} (Not a directory); choose a writable "
        "folder with --out\n"
    )


# ----------------------------------------------------------------------------------------- image formats


def _png16_rgb(arr: np.ndarray) -> bytes:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _save(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_load_16bit_gray_png_scales_to_8bit():
    arr = np.array([[0, 65535, 257 * 128, 257 * 7]], dtype=np.uint16)
    rgb, gray = load_rgb("g16.png", _save(Image.fromarray(arr)))
    assert gray and rgb.dtype == np.uint8 and rgb.shape == (1, 4, 3)
    assert rgb[0, :, 0].tolist() == [0, 255, 128, 7] and (rgb == rgb[..., :1]).all()


def test_load_dark_16bit_gray_png_is_not_mistaken_for_8bit():
    # every value below 256: still 16-bit data, so nearly black, not full brightness
    arr = np.array([[0, 100, 255, 200]], dtype=np.uint16)
    rgb, _ = load_rgb("dark16.png", _save(Image.fromarray(arr)))
    assert rgb.max() <= 1


def test_load_16bit_rgb_png_scales_to_8bit():
    arr = np.array([[[0, 65535, 257 * 200], [257 * 10, 257 * 128, 65535]]], dtype=np.uint16)
    rgb, gray = load_rgb("c16.png", _png16_rgb(arr))
    assert not gray and rgb.shape == (1, 2, 3)
    assert np.abs(rgb.astype(int) - arr / 257).max() <= 1


def test_load_rgba_drops_alpha():
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 200, 30, np.array([[0, 128, 255]])
    rgb, gray = load_rgb("a.png", _save(Image.fromarray(rgba, "RGBA")))
    assert not gray and rgb.shape == (2, 3, 3) and (rgb == [10, 200, 30]).all()


def test_load_palette_with_and_without_transparency():
    pal = Image.new("P", (3, 2))
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    pal.putdata([0, 1, 2, 2, 1, 0])
    expect = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[0, 0, 255], [0, 255, 0], [255, 0, 0]]])
    for kw in ({}, {"transparency": 1}):
        rgb, gray = load_rgb("p.png", _save(pal, **kw))
        assert not gray and (rgb == expect).all()


def test_load_grayscale_and_gray_alpha_become_rgb():
    g = np.array([[0, 77, 255]], np.uint8)
    for img in (Image.fromarray(g, "L"), Image.merge("LA", [Image.fromarray(g, "L")] * 2)):
        rgb, gray = load_rgb("g.png", _save(img))
        assert gray and rgb.shape == (1, 3, 3) and (rgb == g[..., None]).all()


def test_load_cmyk_jpeg_converts_to_rgb():
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    rgb, gray = load_rgb("red.jpg", _save(cmyk, "JPEG", quality=100))
    assert not gray and rgb.shape == (16, 16, 3)
    assert np.abs(rgb.astype(int) - [255, 0, 0]).max() <= 3


def test_load_bilevel_image_becomes_rgb():
    bw = Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1")
    rgb, gray = load_rgb("bw.png", _save(bw))
    assert gray and rgb[0, :, 0].tolist() == [0, 255]


def test_odd_formats_in_a_folder_are_all_scored(tmp_path, capsys):
    base = _image(40, 40)
    folder = _folder(
        tmp_path,
        {
            "rgba.png": _save(Image.fromarray(np.dstack([base, np.full((40, 40), 128, np.uint8)]), "RGBA")),
            "gray.png": _save(Image.fromarray(base[..., 0], "L")),
            "pal.png": _save(Image.fromarray(base).quantize(64)),
            "g16.png": _save(Image.fromarray(base[..., 0].astype(np.uint16) * 257)),
            "cmyk.jpg": _save(Image.fromarray(base).convert("CMYK"), "JPEG"),
        },
    )
    assert _run(tmp_path, "bicubic", folder) == 0, capsys.readouterr().err
    q = _quality(tmp_path)
    assert len(q) == 5 and (q["status"] == "ok").all() and np.isfinite(q["psnr"].astype(float)).all()


# ----------------------------------------------------------------------------------------- sizes


def test_images_too_small_for_scale_shave_and_ssim_window_are_skipped(tmp_path, capsys):
    folder = _folder(
        tmp_path, {"ok.png": _image(40, 40), "small.png": _image(12, 30), "tiny.png": _image(3, 3)}
    )
    assert _run(tmp_path, "bicubic", folder, "2,4") == 1
    err = capsys.readouterr().err
    # x2 needs 2 * 2 shave + 11 (SSIM window) = 15 pixels; x4 needs 19; 3x3 has no LR pixel at x4
    assert (
        "skipped: mine/small: 30x12 is too small for x2 under this protocol (needs at least 15x15: "
        "shave 2 + SSIM window); skipped"
    ) in err
    assert "skipped: mine/small: 28x12 is too small for x4 under this protocol (needs at least 19x19" in err
    assert (
        "skipped: mine/tiny: tiny: 3x3 is too small for x4 (needs at least 4x4); use a larger image or a "
        "smaller scale"
    ) in err
    q = _quality(tmp_path)
    assert set(q["image"]) == {"ok"} and len(q) == 2


def test_decompression_bomb_is_a_clear_error(tmp_path, monkeypatch, capsys):
    folder = _folder(tmp_path, {"ok.png": _image(40, 40), "huge.png": _image(64, 64, seed=2)})
    monkeypatch.setenv("SRBENCH_MAX_PIXELS", "2000")  # 64x64 = 4096 pixels: over the limit, read as a header
    with pytest.raises(
        DataError,
        match=r"huge.png: 64x64 is 4096 pixels, more than the limit of 2000; set SRBENCH_MAX_PIXELS",
    ):
        load_rgb(folder / "huge.png")
    assert _run(tmp_path, "bicubic", folder) == 1
    err = capsys.readouterr().err
    assert (
        "skipped: mine/huge: huge.png: 64x64 is 4096 pixels, more than the limit" in err
        and "Traceback" not in err
    )
    assert list(_quality(tmp_path)["image"]) == ["ok"]


# ----------------------------------------------------------------------------------------- failing methods


def _raise(lr, m):  # type: ignore[no-untyped-def]
    raise RuntimeError("kernel exploded")


BROKEN = {
    "f-raise": (_raise, "RuntimeError: kernel exploded"),
    "f-nan": (
        lambda lr, m: np.full((lr.shape[0] * m.scale, lr.shape[1] * m.scale, 3), np.nan),
        "returned NaN or inf",
    ),
    "f-inf": (lambda lr, m: imresize(lr.astype(np.float64), m.scale) * np.inf, "returned NaN or inf"),
    "f-shape": (lambda lr, m: imresize(lr, m.scale)[:-1], "returned shape"),
    "f-dtype": (lambda lr, m: imresize(lr, m.scale).astype(complex), "returned dtype complex128"),
    "f-none": (lambda lr, m: None, "returned dtype object"),
}


def test_broken_methods_fail_their_cells_and_the_rest_completes(tmp_path, capsys):
    for name, (fn, _) in BROKEN.items():
        _register(name, fn)
    folder = _folder(tmp_path, {"a.png": _image(40, 40), "b.png": _image(48, 36, seed=3)})
    assert _run(tmp_path, ",".join(["bicubic", *BROKEN, "nearest"]), folder) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "failed: f-raise on mine/a x2: RuntimeError: kernel exploded" in err
    assert f"error: 0 image(s) skipped and {2 * len(BROKEN)} scoring(s) failed" in err
    q = _quality(tmp_path)
    for name, (_, reason) in BROKEN.items():
        cell = q[q["method"] == name]
        assert len(cell) == 2 and (cell["status"] == "failed").all(), name
        assert cell["error"].str.contains(reason, regex=False).all(), (name, list(cell["error"]))
    ok = q[q["method"].isin(["bicubic", "nearest"])]
    assert len(ok) == 4 and (ok["status"] == "ok").all()
    s = pd.read_csv(tmp_path / "run" / "summary.csv")
    assert set(s.loc[s["status"] == "failed", "method"]) == set(BROKEN)
    assert s.loc[s["method"] == "bicubic", "psnr"].notna().all()


def test_failed_cell_shows_in_the_report(tmp_path, capsys):
    pytest.importorskip("jinja2")
    _register("f-raise", _raise)
    folder = _folder(tmp_path, {"a.png": _image(40, 40)})
    rc = main(
        [
            "run",
            "--methods",
            "bicubic,f-raise",
            "--datasets",
            str(folder),
            "--scales",
            "2",
            "--out",
            str(tmp_path / "run"),
            "--pass",
            "quality",
            "--no-progress",
            "--save-images",
            "none",
        ]
    )
    assert rc == 1
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| f-raise |" in report and "RuntimeError: kernel exploded" in report


def test_method_that_cannot_be_built_fails_its_cells(tmp_path, capsys):
    def factory(*, scale, device="cpu", **kw):  # type: ignore[no-untyped-def]
        raise WeightsError(
            "weights /nowhere/x_x2.safetensors missing; train them with 'python -m bench train x'"
        )

    registry.register_method("f-build", factory, replace=True)
    folder = _folder(tmp_path, {"a.png": _image(40, 40)})
    assert _run(tmp_path, "bicubic,f-build", folder) == 1
    err = capsys.readouterr().err
    assert "error: f-build x2: weights /nowhere/x_x2.safetensors missing" in err
    q = _quality(tmp_path)
    assert q.loc[q["method"] == "f-build", "error"].str.contains("missing; train them").all()
    assert q.loc[q["method"] == "bicubic", "status"].eq("ok").all()


def test_method_whose_info_raises_fails_its_cells(tmp_path, capsys):
    class BadInfo(FakeMethod):
        def info(self) -> MethodInfo:
            raise AttributeError("no params")

    registry.register_method(
        "f-info", lambda *, scale, device="cpu", **kw: BadInfo("f-info", scale), replace=True
    )
    folder = _folder(tmp_path, {"a.png": _image(40, 40)})
    assert _run(tmp_path, "bicubic,f-info", folder) == 1
    err = capsys.readouterr().err
    assert "error: f-info x2: AttributeError: no params" in err and "Traceback" not in err
    q = _quality(tmp_path)
    assert list(q["status"]) == ["ok", "failed"]


# ----------------------------------------------------------------------------------------- bad names


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (
            ["--methods", "bicubc", "--datasets", "sample"],
            ["unknown method 'bicubc'; did you mean 'bicubic'? known: ", "lanczos", "nearest"],
        ),
        (
            ["--methods", "bicubic", "--datasets", "set55"],
            [
                "unknown dataset 'set55'; did you mean 'set5'? known: ",
                "set14",
                "sample",
                "(or a folder of HR images)",
            ],
        ),
        (
            ["--methods", "bicubic", "--datasets", "sample", "--scales", "2,9"],
            ["unsupported scale '9'; scales are integers 2..8, e.g. --scales 2,3,4"],
        ),
        (["--methods", "bicubic", "--datasets", "sample", "--scales", "x3"], ["unsupported scale 'x3'"]),
    ],
)
def test_unknown_names_and_scales_are_one_line_usage_errors(tmp_path, capsys, argv, needles):
    assert main(["run", *argv, "--out", str(tmp_path / "run"), *RUN_OPTS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in err


# ----------------------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_saves_what_was_computed_and_says_how_to_resume(tmp_path, capsys):
    def interrupt_on_second(lr, m):  # type: ignore[no-untyped-def]
        if m.calls >= 2:  # the user presses Ctrl-C while the method runs
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        return imresize(lr, m.scale)

    _register("f-ctrlc", interrupt_on_second)
    folder = _folder(tmp_path, {f"{c}.png": _image(40, 40, seed=i) for i, c in enumerate("abc")})
    # as from a terminal: a shell starts background jobs (CI under nohup &) with SIGINT ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert _run(tmp_path, "bicubic,f-ctrlc", folder) == 130
    finally:
        signal.signal(signal.SIGINT, previous)
    cap = capsys.readouterr()
    out = tmp_path / "run"
    assert f"continue with 'python -m bench run --resume {out}'" in cap.err
    q = _quality(tmp_path)
    # image by image: a (both methods), then b (bicubic, then the interrupted method)
    assert len(q) == 3 and (q["status"] == "ok").all()
    assert list(q["method"]) == ["bicubic"] * 2 + ["f-ctrlc"]
    assert len((out / "quality.jsonl").read_text().splitlines()) == 3

    # resume with a method that no longer fails: only the 2 missing rows are computed
    calls: list[str] = []
    registry.register_method(
        "f-ctrlc",
        lambda *, scale, device="cpu", **kw: FakeMethod(
            "f-ctrlc", scale, lambda lr, m: calls.append("x") or imresize(lr, m.scale)
        ),
        replace=True,
    )
    assert (
        main(
            [
                "run",
                "--methods",
                "bicubic,f-ctrlc",
                "--datasets",
                str(folder),
                "--scales",
                "2",
                "--resume",
                str(out),
                *RUN_OPTS,
            ]
        )
        == 0
    )
    assert len(calls) == 2
    q = _quality(tmp_path)
    assert len(q) == 6 and (q["status"] == "ok").all()


# ----------------------------------------------------------------------------------------- concurrency


def test_concurrent_lr_cache_writers_do_not_corrupt_it(tmp_path):
    hr = _image(64, 64)
    sha = hashlib.sha256(hr.tobytes()).hexdigest()
    expected = imresize(hr, 1 / 4)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def work() -> None:
        try:
            start.wait()
            for _ in range(5):
                results.append(make_lr(hr, 4, sha))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 30
    assert all(np.array_equal(r, expected) for r in results)
    cached = sorted((tmp_path / "cache" / "lr").iterdir())
    assert [p.suffix for p in cached] == [".png", ".sha256"]  # the image and its hash, no temp files left
    assert np.array_equal(load_rgb(cached[0])[0], expected)


def test_lr_cache_replaced_by_another_png_is_recomputed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SRBENCH_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(3)
    hr = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    expected = make_lr(hr, 4, "abc")
    (png,) = (tmp_path / "cache" / "lr").glob("*.png")
    Image.fromarray(np.zeros_like(expected)).save(png)  # a valid PNG of the right size, wrong pixels
    again = make_lr(hr, 4, "abc")
    assert np.array_equal(again, expected)
    assert np.array_equal(load_rgb(png)[0], expected)  # and the cache entry was rewritten


# ----------------------------------------------------------------------------------------- weights


def _espcn_factory():  # type: ignore[no-untyped-def]
    if "espcn" in registry.list_methods():
        return lambda **kw: registry.create_method("espcn", **kw)
    return pytest.importorskip("methods.espcn").make


def _save_weights(path: Path, scale: int) -> str:
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    from methods.espcn import build_net

    torch.manual_seed(0)
    safetensors_torch.save_file(build_net(scale).state_dict(), str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_weights_missing_file_is_a_clear_error(tmp_path):
    make = _espcn_factory()
    path = tmp_path / "espcn_x3.safetensors"
    with pytest.raises(
        WeightsError, match=rf"weights {path} missing; train them with 'python -m bench train"
    ):
        make(scale=3, device="cpu", weights=path)


def test_weights_wrong_sha256_is_refused(tmp_path):
    make = _espcn_factory()
    path = tmp_path / "espcn_x3.safetensors"
    sha = _save_weights(path, 3)
    assert make(scale=3, device="cpu", weights=path, sha256=sha).info().weights_sha256 == sha
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # one flipped bit of a weight
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError) as err:
        make(scale=3, device="cpu", weights=path, sha256=sha)
    assert f"sha256 of {path} is" in str(err.value) and f"expected {sha[:12]}" in str(err.value)
    assert "corrupt or was replaced" in str(err.value)


def test_weights_unrecorded_file_needs_a_sha256(tmp_path):
    make = _espcn_factory()
    path = tmp_path / "mine.safetensors"
    _save_weights(path, 3)
    with pytest.raises(WeightsError, match="mine.safetensors have no sha256 in .*; pass the expected sha256"):
        make(scale=3, device="cpu", weights=path)


def test_weights_wrong_shapes_name_the_tensor(tmp_path):
    make = _espcn_factory()
    path = tmp_path / "espcn_x2.safetensors"
    sha = _save_weights(path, 2)  # x2 weights offered to the x3 network
    with pytest.raises(WeightsError) as err:
        make(scale=3, device="cpu", weights=path, sha256=sha)
    assert re.search(
        r"tensor 'conv3\.(weight|bias)' has shape \(4,.*\), expected \(9,.*\) for espcn x3", str(err.value)
    )


class _Trap:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (Path(__file__).parent / "_pickle_was_loaded",))


def test_weights_are_never_unpickled(tmp_path):
    make = _espcn_factory()
    marker = Path(__file__).parent / "_pickle_was_loaded"
    path = tmp_path / "espcn_x3.pth"
    path.write_bytes(pickle.dumps({"conv1.weight": _Trap()}))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        with pytest.raises(WeightsError, match=rf"cannot read weights {path}"):
            make(scale=3, device="cpu", weights=path, sha256=sha)
        assert not marker.exists()
    finally:
        marker.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------- out of memory


def test_out_of_memory_without_tiling_fails_the_cell_and_suggests_tiling(tmp_path, capsys):
    def oom(lr, m):  # type: ignore[no-untyped-def]
        raise MemoryError

    registry.register_method(
        "f-oom", lambda *, scale, device="cpu", **kw: _NoTile("f-oom", scale, oom), replace=True
    )
    folder = _folder(tmp_path, {"a.png": _image(40, 40)})
    assert _run(tmp_path, "bicubic,f-oom", folder) == 1
    err = capsys.readouterr().err
    assert "failed: f-oom on mine/a x2: out of memory" in err and "tile" in err
    q = _quality(tmp_path)
    assert q.loc[q["method"] == "f-oom", "error"].str.contains("out of memory; run with a tiled method").all()


class _NoTile(FakeMethod):
    def __init__(self, name, scale, fn):  # type: ignore[no-untyped-def]
        super().__init__(name, scale, fn)
        del self.tile


def _torch_oom() -> BaseException:
    torch = pytest.importorskip("torch")
    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


@pytest.mark.parametrize(
    "error",
    [
        lambda: MemoryError("cannot allocate the whole image"),
        lambda: RuntimeError(
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate 8589934592 bytes"
        ),
        _torch_oom,
    ],
    ids=["MemoryError", "torch-cpu", "torch-cuda"],
)
def test_out_of_memory_falls_back_to_tiling_when_the_method_supports_it(tmp_path, capsys, error):
    built: list[int | None] = []

    def factory(*, scale, device="cpu", tile=None, **kw):  # type: ignore[no-untyped-def]
        built.append(tile)

        def upscale(lr, m):  # type: ignore[no-untyped-def]
            if m.tile is None:
                raise error()
            return imresize(lr, m.scale)

        return FakeMethod("f-tiled", scale, upscale, tile=tile)

    registry.register_method("f-tiled", factory, replace=True)
    folder = _folder(tmp_path, {"a.png": _image(40, 40), "b.png": _image(44, 40, seed=5)})
    assert _run(tmp_path, "bicubic,f-tiled", folder) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "out of memory" in err and "retrying with tile=" in err
    assert built[0] is None and all(t is not None and t > 0 for t in built[1:])
    q = _quality(tmp_path)
    assert (q["status"] == "ok").all()
    by = q.set_index(["method", "image"])["psnr"].astype(float)
    assert by[("f-tiled", "a")] == by[("bicubic", "a")] and by[("f-tiled", "b")] == by[("bicubic", "b")]


def test_open_folder_dataset_records_problems_not_raises(tmp_path):
    folder = _folder(tmp_path, {"a.png": _image(20, 20), "b.png": b"junk"})
    ds = open_dataset(str(folder))
    assert [im.name for im in ds.images(strict=False)] == ["a"]
    assert [(p.image, p.reason.split(":")[0]) for p in ds.problems] == [("b", "b.png")]
