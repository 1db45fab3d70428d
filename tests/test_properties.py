"""Property-based tests (hypothesis): imresize, psnr/ssim and the image loader on arbitrary input."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from bench.data import load_rgb
from bench.errors import DataError
from bench.imresize import KERNELS, imresize
from bench.metrics import psnr, ssim

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

sizes = st.integers(1, 40)
scales = st.sampled_from([0.25, 1 / 3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0]) | st.floats(0.1, 4.0)
kernels = st.sampled_from(sorted(KERNELS))


def _image(draw, h: int, w: int, channels: int | None, dtype: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    shape = (h, w) if channels is None else (h, w, channels)
    if dtype == "uint8":
        return draw(arrays(np.uint8, shape))
    return draw(arrays(np.float64, shape, elements=st.floats(0, 1, width=32)))


@st.composite
def images(draw, min_side: int = 1, max_side: int = 40):  # type: ignore[no-untyped-def]
    h = draw(st.integers(min_side, max_side))
    w = draw(st.integers(min_side, max_side))
    channels = draw(st.sampled_from([None, 1, 3]))
    dtype = draw(st.sampled_from(["uint8", "float64"]))
    return _image(draw, h, w, channels, dtype)


# ----------------------------------------------------------------------------------------- imresize


@SETTINGS
@given(img=images(), scale=scales, kernel=kernels)
def test_imresize_output_shape_and_dtype_are_exact(img, scale, kernel):
    out = imresize(img, scale, kernel=kernel)
    h, w = img.shape[:2]
    assert out.shape == (math.ceil(scale * h), math.ceil(scale * w)) + img.shape[2:]
    assert out.dtype == (np.uint8 if img.dtype == np.uint8 else np.float64)
    if img.dtype != np.uint8:
        assert np.isfinite(out).all()


@SETTINGS
@given(img=images(), rows=sizes, cols=sizes, kernel=kernels)
def test_imresize_output_shape_argument_is_honoured(img, rows, cols, kernel):
    out = imresize(img, output_shape=(rows, cols), kernel=kernel)
    assert out.shape == (rows, cols) + img.shape[2:]


@SETTINGS
@given(h=sizes, w=sizes, value=st.integers(0, 255), scale=scales, kernel=kernels, as_float=st.booleans())
def test_imresize_constant_image_stays_constant(h, w, value, scale, kernel, as_float):
    img = np.full((h, w, 3), value, dtype=np.uint8)
    if as_float:
        out = imresize(img.astype(np.float64) / 255, scale, kernel=kernel)
        np.testing.assert_allclose(out, value / 255, atol=1e-9)
    else:
        assert (imresize(img, scale, kernel=kernel) == value).all()


@SETTINGS
@given(img=images(), scale=scales, kernel=kernels)
def test_imresize_float_output_stays_within_the_kernels_overshoot(img, scale, kernel):
    # weights sum to 1 and are bounded: the output cannot leave a band around the input range
    img = img.astype(np.float64)  # float in, float out: no rounding or clipping hides an overshoot
    out = imresize(img, scale, kernel=kernel)
    lo, hi = float(img.min()), float(img.max())
    span = hi - lo
    assert out.min() >= lo - span - 1e-9 and out.max() <= hi + span + 1e-9


@SETTINGS
@given(img=images())
def test_imresize_scale_one_is_identity(img):
    out = imresize(img, 1.0)
    np.testing.assert_array_equal(out, img)


# ----------------------------------------------------------------------------------------- metrics


@st.composite
def image_pairs(draw):  # type: ignore[no-untyped-def]
    h = draw(st.integers(11, 32))
    w = draw(st.integers(11, 32))
    channels = draw(st.sampled_from([None, 3]))
    shape = (h, w) if channels is None else (h, w, channels)
    a = draw(arrays(np.uint8, shape))
    b = draw(arrays(np.uint8, shape))
    return a.astype(np.float64), b.astype(np.float64)


@SETTINGS
@given(pair=image_pairs())
def test_psnr_and_ssim_are_symmetric(pair):
    a, b = pair
    assert psnr(a, b) == psnr(b, a)
    assert math.isclose(ssim(a, b), ssim(b, a), rel_tol=1e-12, abs_tol=1e-12)


@SETTINGS
@given(pair=image_pairs())
def test_ssim_is_at_most_one_and_psnr_is_positive(pair):
    a, b = pair
    s = ssim(a, b)
    assert -1.0 - 1e-12 <= s <= 1.0 + 1e-12
    p = psnr(a, b)
    assert p > 0 or math.isinf(p)  # the largest possible error (255 everywhere) gives 0 dB


@SETTINGS
@given(pair=image_pairs())
def test_identical_images_give_psnr_inf_and_ssim_one(pair):
    a, _ = pair
    assert psnr(a, a.copy()) == math.inf
    assert math.isclose(ssim(a, a.copy()), 1.0, abs_tol=1e-12)


@SETTINGS
@given(pair=image_pairs())
def test_different_images_have_finite_psnr_and_ssim_below_one(pair):
    a, b = pair
    assume(not np.array_equal(a, b))
    assert math.isfinite(psnr(a, b))
    assert ssim(a, b) < 1.0


# ----------------------------------------------------------------------------------------- loader


def _encoded(fmt: str, img: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).convert(mode).save(buf, format=fmt)
    return buf.getvalue()


def _check_loaded(data: bytes) -> None:
    try:
        rgb, gray = load_rgb("fuzz.png", data)
    except DataError as exc:
        assert str(exc).startswith("fuzz.png: ")
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.shape[0] >= 1 and rgb.shape[1] >= 1 and isinstance(gray, bool)


_SEED = _encoded("PNG", np.arange(48, dtype=np.uint8).reshape(4, 4, 3), "RGB")


@SETTINGS
@given(data=st.binary(max_size=2048))
@example(b"")
@example(b"\x89PNG\r\n\x1a\n")
@example(b"GIF89a")
@example(b"BM" + b"\xff" * 60)
@example(b"P6\n99999 99999\n255\n")
@example(_SEED[: len(_SEED) // 2])
def test_loader_random_bytes_raise_data_error_or_give_rgb(data):
    _check_loaded(data)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the damaged TIFF tags it skips
@SETTINGS
@given(
    fmt_mode=st.sampled_from(
        [
            ("PNG", "RGB"),
            ("PNG", "L"),
            ("PNG", "P"),
            ("PNG", "RGBA"),
            ("BMP", "RGB"),
            ("JPEG", "RGB"),
            ("JPEG", "CMYK"),
            ("TIFF", "RGB"),
            ("PPM", "RGB"),
        ]
    ),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=8),
    cut=st.none() | st.integers(0, 10_000),
)
def test_loader_mutated_real_images_raise_data_error_or_give_rgb(fmt_mode, flips, cut):
    fmt, mode = fmt_mode
    rng = np.random.default_rng(0)
    data = bytearray(_encoded(fmt, rng.integers(0, 256, (9, 7, 3), dtype=np.uint8), mode))
    for pos, xor in flips:
        data[pos % len(data)] ^= xor
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    _check_loaded(bytes(data))


@pytest.mark.parametrize(("fmt", "mode"), [("PNG", "RGB"), ("PNG", "L"), ("PNG", "P"), ("JPEG", "RGB")])
def test_loader_valid_images_decode_to_their_size(fmt, mode):
    data = _encoded(fmt, np.zeros((5, 9, 3), np.uint8), mode)
    rgb, _ = load_rgb("ok", data)
    assert rgb.shape == (5, 9, 3)
