"""imresize: MATLAB's own LR images pixel for pixel, and the properties of its definition."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.errors import UsageError
from bench.imresize import KERNELS, contributions, imresize


def test_imresize_reproduces_all_matlab_lr_images(shared_datasets: Path) -> None:
    matlab_files = sorted((shared_datasets / "MATLAB_LR").glob("*/X*/*.png"))
    if not matlab_files:
        pytest.skip(f"MATLAB's own LR images (MATLAB_LR/) are not in {shared_datasets}")
    assert len(matlab_files) == 57
    mismatched = []
    for lr_path in matlab_files:
        scale = int(lr_path.parent.name[1:])
        name = lr_path.stem.rsplit("x", 1)[0]
        hr = np.array(Image.open(shared_datasets / lr_path.parts[-3] / f"{name}.png"))
        h, w = hr.shape[:2]
        hr = hr[: h - h % scale, : w - w % scale]
        ref = np.array(Image.open(lr_path))
        out = imresize(hr, 1 / scale)
        if out.shape != ref.shape or not np.array_equal(out, ref):
            mismatched.append(str(lr_path))
    assert mismatched == []


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_imresize_scale_one_is_identity(kernel: str) -> None:
    img = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    assert np.array_equal(imresize(img, 1.0, kernel=kernel), img)


@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("scale", [0.25, 0.5, 1 / 3, 2, 3, 4, 1.7])
def test_imresize_constant_image_stays_constant(kernel: str, scale: float) -> None:
    img = np.full((24, 18, 3), 137, dtype=np.uint8)
    assert (imresize(img, scale, kernel=kernel) == 137).all()
    f = np.full((24, 18), 0.3)
    np.testing.assert_allclose(imresize(f, scale, kernel=kernel), 0.3, atol=1e-12)


@pytest.mark.parametrize(
    ("shape", "scale", "expected"),
    [
        ((10, 15), 2, (20, 30)),
        ((10, 15), 1 / 3, (4, 5)),
        ((7, 9), 0.5, (4, 5)),
        ((5, 5), 2.5, (13, 13)),
    ],
)
def test_imresize_output_size_is_ceil_of_scaled_size(shape, scale, expected) -> None:
    assert imresize(np.zeros(shape), scale).shape == expected
    assert imresize(np.zeros(shape + (3,), np.uint8), scale).shape == expected + (3,)


def test_imresize_output_shape_argument() -> None:
    out = imresize(np.zeros((10, 20, 3), np.uint8), output_shape=(7, 33))
    assert out.shape == (7, 33, 3)


def test_imresize_uint8_rounds_each_pass_half_away_from_zero() -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (30, 30), dtype=np.uint8)
    out = imresize(img, 1 / 3)
    # reference: float passes with MATLAB rounding after each (rows first on ties)
    f = img.astype(np.float64)
    w, idx = contributions(30, 10, 1 / 3)
    rows = np.floor((w[:, :, None] * f[idx]).sum(axis=1) + 0.5).clip(0, 255)
    cols = np.floor((w[None, :, :] * rows[:, idx]).sum(axis=2) + 0.5).clip(0, 255)
    assert out.dtype == np.uint8
    assert np.array_equal(out, cols.astype(np.uint8))


def test_imresize_antialiases_when_shrinking() -> None:
    # the stretched kernel averages ~16 taps per axis: white noise keeps far less variance than
    # with the plain 4-tap kernel, which aliases
    img = np.random.default_rng(2).normal(128, 40, (128, 128))
    aa = imresize(img, 0.25)
    no_aa = imresize(img, 0.25, antialiasing=False)
    assert aa.std() < 0.5 * no_aa.std()
    _, idx = contributions(128, 32, 0.25)
    assert idx.shape[1] >= 16


@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize(("n_in", "n_out"), [(20, 40), (20, 7), (9, 27), (31, 10)])
def test_contributions_match_direct_kernel_evaluation(kernel: str, n_in: int, n_out: int) -> None:
    scale = n_out / n_in
    weights, idx = contributions(n_in, n_out, scale, kernel)
    func, width, aa = KERNELS[kernel]
    dense = np.zeros((n_out, n_in))
    np.add.at(dense, (np.repeat(np.arange(n_out), idx.shape[1]), idx.ravel()), weights.ravel())
    # direct evaluation: every input pixel j (with mirror images) weighted by the kernel at x - j
    for u in range(1, n_out + 1):
        x = u / scale + 0.5 * (1 - 1 / scale)
        stretch = scale if (scale < 1 and aa) else 1.0
        row = np.zeros(n_in)
        for j in range(-3 * n_in, 4 * n_in):  # 1-based positions, mirrored into range
            wgt = stretch * func(np.array([stretch * (x - j)]))[0]
            if wgt == 0:
                continue
            k = (j - 1) % (2 * n_in)
            row[k if k < n_in else 2 * n_in - 1 - k] += wgt
        row /= row.sum()
        np.testing.assert_allclose(dense[u - 1], row, atol=1e-12)


def test_cubic_kernel_formula() -> None:
    func = KERNELS["bicubic"][0]
    x = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    expected = [1.0, 1.5 * 0.125 - 2.5 * 0.25 + 1, 0.0, -0.5 * 3.375 + 2.5 * 2.25 - 6 + 2, 0.0, 0.0]
    np.testing.assert_allclose(func(x), expected)
    np.testing.assert_allclose(func(-x), expected)


@pytest.mark.parametrize("bad", [0, -1, math.inf])
def test_imresize_rejects_bad_scale(bad: float) -> None:
    with pytest.raises(UsageError, match="scale"):
        imresize(np.zeros((4, 4)), bad)


def test_imresize_rejects_unknown_kernel() -> None:
    with pytest.raises(UsageError, match="bicubic"):
        imresize(np.zeros((4, 4)), 2, kernel="cubic")
