"""MATLAB-compatible `imresize`, written from its published definition (see PROTOCOL.md)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
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


# images with more numbers than this (input or output) are resized in strips of output rows, each
# strip's float64 intermediates holding about _STRIP_ELEMENTS numbers (32 MiB)
_WHOLE_ELEMENTS = 1 << 24
_STRIP_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class _Plan:
    """One resize: output (rows, cols), per-axis scale, kernel name, antialiasing."""

    out_shape: tuple[int, int]
    scales: tuple[float, float]
    kernel: str
    antialiasing: bool


def _resize_axis0(x: np.ndarray, m: scipy.sparse.csr_matrix) -> np.ndarray:
    # x is C-contiguous with the resized axis first; so is the result
    out = np.asarray(m @ x.reshape(x.shape[0], -1))
    return out.reshape((m.shape[0],) + x.shape[1:])


def _passes(in_shape: tuple[int, int], out_shape: tuple[int, int], scales: tuple[float, float]) -> list[int]:
    # the axis shrunk most goes first (axis 0 on ties), as MATLAB orders them; an axis kept as is is skipped
    order = sorted((0, 1), key=lambda a: scales[a])
    return [a for a in order if not (out_shape[a] == in_shape[a] and scales[a] == 1)]


def _rows_matrix(m: scipy.sparse.csr_matrix, r0: int, r1: int) -> tuple[scipy.sparse.csr_matrix, int, int]:
    """Rows r0..r1 of a pass matrix, restricted to the input rows i0..i1 they read: (matrix, i0, i1).

    Row slicing keeps each row's entries in their order, so every output element is the same sum of
    the same products as in the whole matrix's product.
    """
    sub = m[r0:r1]
    i0, i1 = int(sub.indices.min()), int(sub.indices.max()) + 1
    shifted = scipy.sparse.csr_matrix((sub.data, sub.indices - i0, sub.indptr), shape=(r1 - r0, i1 - i0))
    return shifted, i0, i1


def _resize_rows(img: np.ndarray, plan: _Plan, r0: int, r1: int) -> np.ndarray:
    """Output rows r0..r1 of the resize `plan` of `img` as float64 (rounded per pass for uint8 input),
    from the input rows they need only: each element equals the whole image's, bit for bit."""
    (in_h, in_w), (out_h, out_w) = img.shape[:2], plan.out_shape
    passes = _passes((in_h, in_w), plan.out_shape, plan.scales)
    mats = {}
    if 0 in passes:
        m0 = _matrix(in_h, out_h, plan.scales[0], plan.kernel, plan.antialiasing)
        mats[0], i0, i1 = _rows_matrix(m0, r0, r1) if (r0, r1) != (0, out_h) else (m0, 0, in_h)
    else:
        i0, i1 = r0, r1
    if 1 in passes:
        mats[1] = _matrix(in_w, out_w, plan.scales[1], plan.kernel, plan.antialiasing)
    is_uint8 = img.dtype == np.uint8
    # work with the axis being resized first and C-contiguous; transpose only between passes
    out = img[i0:i1].astype(np.float64)
    axis_first = 0
    for axis in passes:
        if axis != axis_first:
            out = np.ascontiguousarray(out.swapaxes(0, 1))
            axis_first = axis
        out = _resize_axis0(out, mats[axis])
        if is_uint8:
            _round_uint8_inplace(out)
    return out.swapaxes(0, 1) if axis_first == 1 else out


def _strip_rows(img: np.ndarray, plan: _Plan) -> int:
    """Output rows per strip so that a strip's float64 intermediates hold about _STRIP_ELEMENTS numbers."""
    in_h, in_w = img.shape[:2]
    per_row = (
        max(in_w, plan.out_shape[1])
        * (img.size // (in_h * in_w))
        * max(1, math.ceil(in_h / plan.out_shape[0]))
    )
    return max(1, _STRIP_ELEMENTS // per_row)


def _resize(img: np.ndarray, plan: _Plan, rows: tuple[int, int] | None) -> np.ndarray:
    out_h = plan.out_shape[0]
    r0, r1 = rows if rows is not None else (0, out_h)
    big = max(img.size, img.size // (img.shape[0] * img.shape[1]) * plan.out_shape[0] * plan.out_shape[1])
    if r1 - r0 == out_h and big <= _WHOLE_ELEMENTS:
        strips = [(0, out_h)]
    else:  # a large image in strips of output rows: bounded memory, the same numbers
        n = _strip_rows(img, plan)
        strips = [(r, min(r + n, r1)) for r in range(r0, r1, n)]
    if len(strips) == 1:
        res = _resize_rows(img, plan, *strips[0])
        return res.astype(np.uint8) if img.dtype == np.uint8 else np.ascontiguousarray(res)
    dtype = np.uint8 if img.dtype == np.uint8 else np.float64
    result = np.empty((r1 - r0, plan.out_shape[1]) + img.shape[2:], dtype=dtype)
    for a, b in strips:
        result[a - r0 : b - r0] = _resize_rows(img, plan, a, b)  # uint8: exact integers, cast as is
    return result


def imresize(
    img: np.ndarray,
    scale: float | tuple[float, float] | None = None,
    *,
    output_shape: tuple[int, int] | None = None,
    kernel: str = "bicubic",
    antialiasing: bool = True,
    rows: tuple[int, int] | None = None,
) -> np.ndarray:
    """Resize like MATLAB's `imresize(img, scale, kernel)`, bit for bit on uint8 images.

    Large images are resized in strips of output rows, each from the input rows it reads: the same
    sums of the same products, so the same numbers, in bounded memory.

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
    rows : (int, int), optional
        (start, stop): only these output rows, equal bit for bit to the same rows of the whole result.

    Returns
    -------
    ndarray
        The resized image (or its `rows`), uint8 or float64 as described above.

    Raises
    ------
    UsageError
        An unknown kernel, a non-positive scale, an empty image or rows outside the output.

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

    if rows is not None and not 0 <= rows[0] < rows[1] <= out_shape[0]:
        raise UsageError(
            f"rows must satisfy 0 <= start < stop <= {out_shape[0]} (the output height), got {rows}"
        )
    return _resize(img, _Plan(out_shape, scales, kernel, antialiasing), rows)
