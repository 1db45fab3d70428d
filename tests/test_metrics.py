"""Metrics against independent references: scikit-image SSIM, MATLAB's Y coefficients, the PSNR formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import structural_similarity

from bench import metrics
from bench.errors import UsageError
from bench.metrics import gray_to_y, psnr, rgb_to_y, shave, ssim, to_uint8


def _sk_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )


# (150, 700): three overlapping strips, band tails on both axes, rows wider than one BLAS product
@pytest.mark.parametrize("shape", [(64, 64), (100, 37), (11, 11), (512, 300), (150, 700)])
def test_ssim_matches_scikit_image_on_random_images(shape) -> None:
    rng = np.random.default_rng(sum(shape))
    a = rng.uniform(0, 255, shape)
    b = np.clip(a + rng.normal(0, 25, shape), 0, 255)
    assert ssim(a, b) == pytest.approx(_sk_ssim(a, b), rel=1e-12, abs=0)


def test_ssim_matches_scikit_image_on_real_images() -> None:
    from skimage import data  # a real photograph that ships with scikit-image: always here

    hr = data.astronaut()
    y = rgb_to_y(hr)
    blurred = rgb_to_y(
        np.asarray(
            Image.fromarray(hr)
            .resize((hr.shape[1] // 2, hr.shape[0] // 2))
            .resize((hr.shape[1], hr.shape[0]))
        )
    )
    assert ssim(y, blurred) == pytest.approx(_sk_ssim(y, blurred), rel=1e-12, abs=0)


def test_ssim_identical_is_one_and_symmetric() -> None:
    rng = np.random.default_rng(3)
    a = rng.uniform(0, 255, (40, 50))
    b = rng.uniform(0, 255, (40, 50))
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, b) == pytest.approx(ssim(b, a), abs=1e-12)


def test_ssim_needs_an_11x11_window() -> None:
    with pytest.raises(UsageError, match="11x11"):
        ssim(np.zeros((10, 30)), np.zeros((10, 30)))


def test_psnr_identical_images_is_inf() -> None:
    a = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
    assert psnr(a, a) == math.inf


def test_psnr_formula() -> None:
    a = np.zeros((4, 4))
    b = np.full((4, 4), 5.0)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 25))


def test_psnr_uses_float_not_uint8_wraparound() -> None:
    a = np.zeros((4, 4), np.uint8)
    b = np.full((4, 4), 255, np.uint8)
    assert psnr(a, b) == pytest.approx(0.0)


def test_rgb_to_y_uses_matlab_bt601_studio_coefficients() -> None:
    px = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]]], dtype=np.uint8)
    y = rgb_to_y(px)[0]
    np.testing.assert_allclose(y, [16 + 65.481, 16 + 128.553, 16 + 24.966, 235.0, 16.0], atol=1e-9)


def test_rgb_to_y_is_not_rounded() -> None:
    y = rgb_to_y(np.array([[[10, 20, 30]]], dtype=np.uint8))[0, 0]
    assert y == pytest.approx(16 + (65.481 * 10 + 128.553 * 20 + 24.966 * 30) / 255)
    assert y != round(y)


def test_gray_to_y_is_the_gray_value_for_gray_images() -> None:
    g = np.random.default_rng(0).integers(0, 256, (5, 5), dtype=np.uint8)
    np.testing.assert_allclose(gray_to_y(np.repeat(g[:, :, None], 3, axis=2)), g, atol=1e-9)


def test_shave_removes_border_from_every_side() -> None:
    assert shave(np.zeros((10, 12, 3)), 3).shape == (4, 6, 3)
    with pytest.raises(UsageError):
        shave(np.zeros((6, 6)), 3)


def test_to_uint8_clips_and_rounds() -> None:
    out = to_uint8(np.array([-3.0, 0.49, 0.5, 254.5, 300.0]))
    assert out.tolist() == [0, 0, 1, 255, 255]


# ----------------------------------------------------------------------------------------- large images


def _shrink_blocks(monkeypatch: pytest.MonkeyPatch, strip: int) -> None:
    """Make every image 'large' for bench.metrics, with blocks of `strip` pixels."""
    monkeypatch.setattr(metrics, "_WHOLE_PIXELS", 0)
    monkeypatch.setattr(metrics, "_STRIP_PIXELS", strip)


@pytest.mark.parametrize("strip", [1, 129, 1000, 5000])
def test_psnr_of_large_images_sums_as_numpy_does(monkeypatch: pytest.MonkeyPatch, strip: int) -> None:
    # the blockwise sum replays numpy's pairwise summation; a numpy that sums otherwise fails here
    rng = np.random.default_rng(strip)
    a = rng.uniform(0, 255, (151, 97))
    b = a + rng.normal(0, 3, a.shape)
    img = rng.integers(0, 256, (60, 70, 3), dtype=np.uint8)
    noisy = np.clip(img + rng.integers(-5, 6, img.shape), 0, 255).astype(np.uint8)
    pairs = [(a, b), (shave(a, 3), shave(b, 3)), (img, noisy), (shave(img, 2), shave(noisy, 2))]
    expected = [psnr(x, y) for x, y in pairs]
    _shrink_blocks(monkeypatch, strip)
    assert [psnr(x, y) for x, y in pairs] == expected


def test_psnr_blockwise_sum_matches_np_mean_exactly() -> None:
    d = np.random.default_rng(3).normal(0, 7, (517, 389))
    total = metrics._SquaredError(d, np.zeros_like(d)).pairwise(0, d.size)
    assert total / d.size == np.mean(d * d)


@pytest.mark.parametrize("strip", [1, 1000])
def test_y_of_large_images_is_computed_in_strips_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch, strip: int
) -> None:
    img = np.random.default_rng(4).integers(0, 256, (77, 53, 3), dtype=np.uint8)
    view = img[2:-3, 1:-2]  # strided: the strips are made C-contiguous as the whole image is
    expected = [rgb_to_y(img), rgb_to_y(view), gray_to_y(img)]
    _shrink_blocks(monkeypatch, strip)
    for got, want in zip([rgb_to_y(img), rgb_to_y(view), gray_to_y(img)], expected, strict=True):
        assert got.dtype == np.float64 and np.array_equal(got, want)


def test_ssim_converts_to_float64_strip_by_strip_with_the_same_result() -> None:
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (90, 80, 3), dtype=np.uint8)
    b = np.clip(a + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    assert ssim(a, b) == ssim(a.astype(np.float64), b.astype(np.float64))
    assert ssim(a[..., 0], b[..., 0]) == ssim(a[..., 0].astype(np.float64), b[..., 0].astype(np.float64))
