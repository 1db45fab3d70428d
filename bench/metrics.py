"""Paper-protocol image quality metrics: RGB -> Y (BT.601), border shave, PSNR and SSIM."""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import correlate1d

from bench.errors import UsageError

__all__ = ["rgb_to_y", "gray_to_y", "shave", "psnr", "ssim", "to_uint8"]

# MATLAB rgb2ycbcr on im2double input: Y = 16 + (65.481 R + 128.553 G + 24.966 B), R, G, B in [0, 1]
_Y_COEFFS = np.array([65.481, 128.553, 24.966]) / 255.0
# full-range luma, used only for images whose source file is single-channel (MATLAB's rgb2gray)
_LUMA_COEFFS = np.array([0.299, 0.587, 0.114])


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Clip to [0, 255] and round to uint8, as saving a PNG would (protocol step 3)."""
    if img.dtype == np.uint8:
        return img
    return np.clip(np.floor(np.asarray(img, dtype=np.float64) + 0.5), 0, 255).astype(np.uint8)


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """Y of ITU-R BT.601 studio range (16..235) as float64, from an HxWx3 RGB image in 0..255.

    Not rounded: this is MATLAB's `rgb2ycbcr(im2double(img))` scaled to 0..255.
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise UsageError(f"rgb_to_y expects an HxWx3 RGB image, got shape {img.shape}")
    return 16.0 + np.asarray(img, dtype=np.float64) @ _Y_COEFFS


def gray_to_y(img: np.ndarray) -> np.ndarray:
    """Full-range luma 0.299 R + 0.587 G + 0.114 B (the gray value itself when R = G = B).

    The MATLAB evaluation scores single-channel ground truth (Set14 bridge) on this, not on studio Y.
    """
    if img.ndim == 2:
        return np.asarray(img, dtype=np.float64)
    return np.asarray(img, dtype=np.float64) @ _LUMA_COEFFS


def shave(img: np.ndarray, border: int) -> np.ndarray:
    """Remove `border` pixels from every side of an HxW[xC] image."""
    if border < 0:
        raise UsageError(f"shave border must be >= 0, got {border}")
    if border == 0:
        return img
    if img.shape[0] <= 2 * border or img.shape[1] <= 2 * border:
        raise UsageError(f"image of shape {img.shape} is too small to shave {border} pixels from each side")
    return img[border:-border, border:-border]


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise UsageError(f"images differ in shape: {a.shape} vs {b.shape}")


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR in dB = 10 log10(L^2 / MSE) over all pixels (and channels); identical images give inf."""
    _check_pair(a, b)
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mse = float(np.mean(diff * diff))
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(data_range * data_range / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    w = np.exp(-(x * x) / (2 * sigma * sigma))
    return w / w.sum()


def _ssim_2d(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    win = _gaussian_window()
    r = win.size // 2
    h, w = a.shape
    if h < win.size or w < win.size:
        raise UsageError(f"SSIM needs images of at least 11x11 pixels after shaving, got {h}x{w}")
    # SSIM needs mu_a, mu_b, sigma_a^2 + sigma_b^2 and sigma_ab: four filtered maps, not five
    stack = np.stack([a, b, a * a + b * b, a * b])
    # correlate1d is ~4x faster along the contiguous axis: filter rows, transpose, filter again;
    # only the 'valid' region is kept, as ssim_index.m does
    f = correlate1d(stack, win, axis=2, mode="constant")[:, :, r : w - r]
    f = np.ascontiguousarray(f.transpose(0, 2, 1))
    f = correlate1d(f, win, axis=2, mode="constant")[:, :, r : h - r]
    mu_a, mu_b, e_sq, e_ab = f
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mu_ab = mu_a * mu_b
    mu_sq = mu_a * mu_a
    mu_sq += mu_b * mu_b
    # population statistics, E[x^2] - mu^2, as Wang et al.'s ssim_index.m
    num = (2 * mu_ab + c1) * (2 * (e_ab - mu_ab) + c2)
    den = (mu_sq + c1) * (e_sq - mu_sq + c2)
    return float(np.mean(num / den))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """SSIM of Wang et al. 2004: 11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03, valid region.

    `a`, `b`: HxW (one channel) or HxWxC (mean of per-channel SSIM), any real dtype; computed in
    float64 with no downsampling.
    """
    _check_pair(a, b)
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    if a64.ndim == 2:
        return _ssim_2d(a64, b64, data_range)
    return float(np.mean([_ssim_2d(a64[..., c], b64[..., c], data_range) for c in range(a64.shape[2])]))
