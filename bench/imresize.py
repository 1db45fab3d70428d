"""MATLAB-compatible `imresize`, written from its published definition (see PROTOCOL.md)."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import scipy.sparse

from bench.errors import UsageError

__all__ = ["imresize", "KERNELS", "contributions"]

Kernel = Callable[[np.ndarray], np.ndarray]


def _cubic(x: np.ndarray) -> np.ndarray:
    # Keys' cubic convolution with a = -0.5, as MATLAB's 'bicubic'
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * (
        (ax > 1) & (ax <= 2)
    )


def _lanczos(a: int) -> Kernel:
    def kernel(x: np.ndarray) -> np.ndarray:
        # np.sinc is the normalised sinc, sin(pi x) / (pi x)
        return np.sinc(x) * np.sinc(x / a) * (np.abs(x) < a)

    return kernel


def _triangle(x: np.ndarray) -> np.ndarray:
    return (x + 1) * ((x >= -1) & (x < 0)) + (1 - x) * ((x >= 0) & (x <= 1))


def _box(x: np.ndarray) -> np.ndarray:
    return ((x >= -0.5) & (x < 0.5)).astype(np.float64)


# name -> (kernel, support width, antialias when shrinking)
KERNELS: dict[str, tuple[Kernel, float, bool]] = {
    "bicubic": (_cubic, 4.0, True),
    "lanczos2": (_lanczos(2), 4.0, True),
    "lanczos3": (_lanczos(3), 6.0, True),
    "bilinear": (_triangle, 2.0, True),
    "box": (_box, 1.0, True),
    "nearest": (_box, 1.0, False),
}


def contributions(
    in_length: int, out_length: int, scale: float, kernel: str = "bicubic", antialiasing: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Weights and 0-based input indices, each (out_length, taps), of one 1-D resampling pass.

    Output pixel u (1-based) maps to input x = u / scale + 0.5 (1 - 1 / scale); when shrinking the
    kernel is stretched by 1 / scale (antialiasing); taps outside the image are mirrored
    (symmetric boundary) and each row of weights sums to 1. Taps that are zero for every output
    pixel are dropped.
    """
    func, width, kernel_antialias = KERNELS[kernel]
    if scale < 1 and antialiasing and kernel_antialias:
        h: Kernel = lambda x: scale * func(scale * x)  # noqa: E731
        width = width / scale
    else:
        h = func
    u = np.arange(1, out_length + 1, dtype=np.float64) / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = math.ceil(width) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    weights = h(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # MATLAB's index reflection: 1..n, n..1, repeated
    aux = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    idx = aux[np.mod(indices.astype(np.int64) - 1, aux.size)]
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], idx[:, keep]


@lru_cache(maxsize=256)
def _matrix(
    in_length: int, out_length: int, scale: float, kernel: str, antialiasing: bool
) -> scipy.sparse.csr_matrix:
    # one pass as a sparse (out x in) matrix; mirrored taps that hit the same input pixel add up
    weights, idx = contributions(in_length, out_length, scale, kernel, antialiasing)
    rows = np.repeat(np.arange(out_length), weights.shape[1])
    m = scipy.sparse.csr_matrix(
        (weights.ravel(), (rows, idx.ravel())), shape=(out_length, in_length), dtype=np.float64
    )
    m.sum_duplicates()
    return m


def _round_uint8_inplace(x: np.ndarray) -> None:
    # MATLAB's conversion to uint8: round half away from zero, saturate (kept in float64: exact)
    x += 0.5
    np.floor(x, out=x)
    np.clip(x, 0, 255, out=x)


def _resize_axis0(
    x: np.ndarray, out_length: int, scale: float, kernel: str, antialiasing: bool
) -> np.ndarray:
    # x is C-contiguous with the resized axis first; so is the result
    m = _matrix(x.shape[0], out_length, scale, kernel, antialiasing)
    out = np.asarray(m @ x.reshape(x.shape[0], -1))
    return out.reshape((out_length,) + x.shape[1:])


def imresize(
    img: np.ndarray,
    scale: float | tuple[float, float] | None = None,
    *,
    output_shape: tuple[int, int] | None = None,
    kernel: str = "bicubic",
    antialiasing: bool = True,
) -> np.ndarray:
    """Resize like MATLAB's `imresize(img, scale, kernel)`, bit for bit on uint8 images.

    Parameters
    ----------
    img : ndarray
        HxW or HxWxC, uint8 or float. uint8 in gives uint8 out, each 1-D pass rounded back to uint8
        as MATLAB does; float in gives float64 out with no rounding or clipping.
    scale : float or (float, float), optional
        Output size = ceil(scale * input size); 1/4 shrinks by 4 (antialiased, as MATLAB).
    output_shape : (int, int), optional
        (rows, cols) instead of `scale`.
    kernel : str
        ``bicubic`` (default), ``bilinear``, ``nearest``, ``box``, ``lanczos2``, ``lanczos3``.
    antialiasing : bool
        Widen the kernel when shrinking, as MATLAB does by default.

    Returns
    -------
    ndarray
        The resized image, uint8 or float64 as described above.

    Raises
    ------
    UsageError
        An unknown kernel, a non-positive scale or an empty image.

    Example
    -------
    >>> import numpy as np, bench
    >>> hr = np.arange(64, dtype=np.uint8).reshape(8, 8)
    >>> lr = bench.imresize(hr, 1 / 2)
    >>> lr.shape, lr.dtype.name, int(lr[0, 0])
    ((4, 4), 'uint8', 4)
    """
    if kernel not in KERNELS:
        raise UsageError(f"unknown imresize kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    if img.ndim not in (2, 3) or img.shape[0] < 1 or img.shape[1] < 1:
        raise UsageError(f"imresize expects an HxW or HxWxC image with H, W >= 1, got shape {img.shape}")
    in_shape = img.shape[:2]
    if output_shape is not None:
        out_shape = (int(output_shape[0]), int(output_shape[1]))
        if min(out_shape) < 1:
            raise UsageError(f"output_shape must be positive, got {output_shape}")
        scales = (out_shape[0] / in_shape[0], out_shape[1] / in_shape[1])
    elif scale is not None:
        scales = (float(scale[0]), float(scale[1])) if isinstance(scale, tuple) else (float(scale),) * 2
        if min(scales) <= 0 or not all(math.isfinite(s) for s in scales):
            raise UsageError(f"scale must be positive and finite, got {scale}")
        out_shape = (math.ceil(scales[0] * in_shape[0]), math.ceil(scales[1] * in_shape[1]))
    else:
        raise UsageError("imresize needs a scale or an output_shape")

    is_uint8 = img.dtype == np.uint8
    # work with the axis being resized first and C-contiguous; transpose only between passes
    out = img.astype(np.float64)
    axis_first = 0
    for axis in sorted((0, 1), key=lambda a: scales[a]):
        if out_shape[axis] == in_shape[axis] and scales[axis] == 1:
            continue
        if axis != axis_first:
            out = np.ascontiguousarray(out.swapaxes(0, 1))
            axis_first = axis
        out = _resize_axis0(out, out_shape[axis], scales[axis], kernel, antialiasing)
        if is_uint8:
            _round_uint8_inplace(out)
    if axis_first == 1:
        out = out.swapaxes(0, 1)
    return out.astype(np.uint8) if is_uint8 else np.ascontiguousarray(out)
