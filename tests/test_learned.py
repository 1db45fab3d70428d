"""Tests of the learned Y-channel methods (SRCNN, FSRCNN, ESPCN): networks, adapters, weights checks."""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data import sha256_file
from bench.errors import WeightsError
from bench.imresize import imresize
from bench.metrics import gray_to_y, psnr, rgb_to_y, shave, to_uint8
from methods import _tiles, _torchsr

METHODS = ("srcnn", "fsrcnn", "espcn")
SCALES = (2, 3, 4)


def _module(name: str):
    return importlib.import_module(f"methods.{name}")


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], tuple[Path, str]]:
    """Seeded random weights for every (method, scale), saved like shipped ones: (path, sha256)."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("weights")
    out = {}
    for name in METHODS:
        for scale in SCALES:
            torch.manual_seed(1)
            net = _module(name).build_net(scale)
            if name == "fsrcnn":  # the paper's tiny deconvolution init would make every output ~0
                torch.nn.init.normal_(net.deconv.weight, std=0.05)
            path = root / f"{name}_x{scale}.safetensors"
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
            out[(name, scale)] = (path, sha256_file(path))
    return out


def _make(name: str, scale: int, random_weights, **kw):
    path, sha = random_weights[(name, scale)]
    return _module(name).make(scale=scale, weights=path, sha256=sha, **kw)


def _lr_image(h: int = 23, w: int = 30, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # smooth-ish content: a random field upscaled, so the networks see image-like input
    base = rng.integers(0, 256, size=(h // 3 + 2, w // 3 + 2, 3)).astype(np.uint8)
    return np.ascontiguousarray(imresize(base, output_shape=(h, w)))


# ----------------------------------------------------------------------------------------- networks


def test_srcnn_param_count_is_57281() -> None:
    from methods.srcnn import SRCNNNet

    assert _torchsr.count_params(SRCNNNet()) == 57281


@pytest.mark.parametrize("scale", SCALES)
def test_fsrcnn_param_count_is_12809_at_every_scale(scale: int) -> None:
    from methods.fsrcnn import FSRCNNNet

    assert _torchsr.count_params(FSRCNNNet(scale)) == 12809


def test_espcn_x3_param_count_is_22729() -> None:
    from methods.espcn import ESPCNNet

    assert _torchsr.count_params(ESPCNNet(3)) == 22729


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", ("fsrcnn", "espcn"))
def test_lr_space_networks_output_exactly_scale_times_input(name: str, scale: int) -> None:
    net = _module(name).build_net(scale)
    for h, w in ((7, 9), (16, 16), (1, 5)):
        assert tuple(net(torch.zeros(2, 1, h, w)).shape) == (2, 1, h * scale, w * scale)


def test_fsrcnn_prelu_is_per_channel() -> None:
    from methods.fsrcnn import FSRCNNNet

    prelus = [m for m in FSRCNNNet(3).modules() if isinstance(m, torch.nn.PReLU)]
    assert [p.weight.numel() for p in prelus] == [56, 12, 12, 12, 12, 12, 56]


@pytest.mark.parametrize("scale", SCALES)
def test_fsrcnn_subpixel_deconvolution_matches_the_transposed_convolution(scale: int) -> None:
    """The training path (sub-pixel convolution built from the deconvolution's own weights) gives the
    same outputs and the same gradients as nn.ConvTranspose2d, at every size, edges included."""
    from methods.fsrcnn import FSRCNNNet

    torch.manual_seed(scale)
    net = FSRCNNNet(scale)
    torch.nn.init.normal_(net.deconv.weight, std=0.1)  # the paper's 0.001 init would hide index errors
    torch.nn.init.normal_(net.deconv.bias)
    keys = list(net.state_dict())
    for h, w in ((7, 9), (1, 5), (16, 16)):
        x = torch.rand(2, 1, h, w)
        grads = []
        for subpixel in (False, True):
            net.subpixel_deconv = subpixel
            net.zero_grad()
            y = net(x)
            (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
            grads.append((y.detach(), net.deconv.weight.grad.clone(), net.body[0].weight.grad.clone()))
        for ref, sub in zip(*grads, strict=True):
            assert ref.shape == sub.shape
            torch.testing.assert_close(sub, ref, rtol=1e-4, atol=1e-5)
    assert list(net.state_dict()) == keys  # no new tensors: shipped weights load either way


# ----------------------------------------------------------------------------------------- colour


def test_ycbcr_matches_bench_metrics_y_and_round_trips() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3)).astype(np.uint8)
    ycc = _torchsr.rgb_to_ycbcr(rgb)
    np.testing.assert_allclose(ycc[:, :, 0], rgb_to_y(rgb), atol=1e-12)
    np.testing.assert_allclose(_torchsr.ycbcr_to_rgb(ycc), rgb, atol=1e-9)


def test_ycbcr_matches_matlab_rgb2ycbcr_constants() -> None:
    # MATLAB: rgb2ycbcr(im2double(uint8([255 0 0]))) * 255 = [81.481 90.203 240.000]
    np.testing.assert_allclose(
        _torchsr.rgb_to_ycbcr(np.array([[[255, 0, 0]]], dtype=np.uint8))[0, 0],
        [81.481, 90.203, 240.0],
        atol=1e-9,
    )


# ----------------------------------------------------------------------------------------- adapters


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", METHODS)
def test_upscale_shape_dtype_range(name: str, scale: int, random_weights) -> None:
    m = _make(name, scale, random_weights)
    lr = _lr_image()
    sr = m.upscale(lr)
    assert sr.shape == (lr.shape[0] * scale, lr.shape[1] * scale, 3)
    assert sr.dtype == np.float64
    assert sr.min() >= 0.0 and sr.max() <= 255.0
    # float input in [0, 255] is accepted and gives the same result
    np.testing.assert_allclose(m.upscale(lr.astype(np.float64)), sr, atol=1e-9)
    y = m.upscale_y(rgb_to_y(lr))
    assert y.shape == sr.shape[:2] and y.dtype == np.float64
    assert m.name == name and m.scale == scale and m.device == "cpu"


@pytest.mark.parametrize("name", METHODS)
def test_upscale_is_deterministic(name: str, random_weights) -> None:
    m = _make(name, 3, random_weights)
    lr = _lr_image(seed=3)
    np.testing.assert_array_equal(m.upscale(lr), m.upscale(lr))
    m2 = _make(name, 3, random_weights)
    np.testing.assert_array_equal(m.upscale(lr), m2.upscale(lr))


@pytest.mark.parametrize("scale", (2, 3))
@pytest.mark.parametrize("name", METHODS)
def test_tiled_matches_untiled(name: str, scale: int, random_weights) -> None:
    lr = _lr_image(41, 53, seed=5)
    whole = _make(name, scale, random_weights).upscale(lr)
    # tiles smaller than the image in both directions, edges not multiples of the tile
    tile = 20 * scale if name == "srcnn" else 20  # SRCNN tiles its bicubic (HR-sized) input
    tiled = _make(name, scale, random_weights, tile=tile).upscale(lr)
    assert np.abs(whole - tiled).max() < 1e-3
    assert np.abs(to_uint8(whole).astype(int) - to_uint8(tiled)).max() <= 1


@pytest.mark.parametrize("name", METHODS)
def test_upscale_batch_equals_single_calls(name: str, random_weights) -> None:
    m = _make(name, 2, random_weights)
    images = [_lr_image(12, 15, seed=1), _lr_image(12, 15, seed=2), _lr_image(9, 11, seed=3)]
    batch = m.upscale_batch(images)
    for lr, sr in zip(images, batch, strict=True):
        np.testing.assert_allclose(sr, m.upscale(lr), atol=1e-4)


@pytest.mark.parametrize("name", METHODS)
def test_info_reports_params_macs_weights(name: str, random_weights) -> None:
    m = _make(name, 3, random_weights)
    info = m.info()
    path, sha = random_weights[(name, 3)]
    assert info.params == _torchsr.count_params(_module(name).build_net(3))
    assert info.weights == str(path) and info.weights_sha256 == sha
    assert info.channels == "y" and info.name == name and info.scale == 3
    per_pixel = {"srcnn": 57184, "fsrcnn": None, "espcn": (1600 + 18432 + 2592) / 9}[name]
    if per_pixel is not None:
        assert info.macs_720p == pytest.approx(per_pixel * 1280 * 720, rel=1e-6)
    else:
        # LR-space layers on 1/9 of the pixels, deconvolution 56*81 MACs per LR pixel
        lr_macs = 25 * 56 + 56 * 12 + 4 * 9 * 144 + 12 * 56 + 56 * 81
        assert info.macs_720p == pytest.approx(lr_macs / 9 * 1280 * 720, rel=1e-6)


def test_unknown_option_is_usage_error(random_weights) -> None:
    from bench.errors import UsageError

    path, sha = random_weights[("espcn", 3)]
    with pytest.raises(UsageError, match="unknown option"):
        _module("espcn").make(scale=3, weights=path, sha256=sha, tiles=3)


# ----------------------------------------------------------------------------------------- weights


@pytest.mark.parametrize("name", METHODS)
def test_missing_weights_error_names_train_command(name: str, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=f"python -m bench train {name} --scale 3"):
        _module(name).make(scale=3, weights=tmp_path / f"{name}_x3.safetensors")


@pytest.mark.parametrize("name", METHODS)
def test_tampered_weights_fail_sha256_check(name: str, tmp_path: Path, random_weights) -> None:
    src, sha = random_weights[(name, 3)]
    bad = tmp_path / src.name
    data = bytearray(src.read_bytes())
    data[-7] ^= 0x01  # one bit of one float
    bad.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        _module(name).make(scale=3, weights=bad, sha256=sha)


def test_tampered_copy_of_shipped_weights_fails_by_manifest(tmp_path: Path) -> None:
    shipped = _torchsr.weights_path("espcn", 3)
    bad = tmp_path / shipped.name
    data = bytearray(shipped.read_bytes())
    data[-3] ^= 0x10
    bad.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256 of .* expected .*python -m bench train espcn --scale 3"):
        _module("espcn").make(scale=3, weights=bad)


def test_unrecorded_weights_file_is_refused(tmp_path: Path, random_weights) -> None:
    src, _ = random_weights[("espcn", 3)]
    other = tmp_path / "my_espcn.safetensors"
    shutil.copyfile(src, other)
    with pytest.raises(WeightsError, match="no sha256"):
        _module("espcn").make(scale=3, weights=other)


def test_wrong_tensor_shapes_are_weights_error(random_weights) -> None:
    path, sha = random_weights[("espcn", 2)]  # conv3 has 4 outputs, x3 needs 9
    with pytest.raises(WeightsError, match="shape"):
        _module("espcn").make(scale=3, weights=path, sha256=sha)
    path, sha = random_weights[("fsrcnn", 3)]
    with pytest.raises(WeightsError, match="tensors"):
        _module("srcnn").make(scale=3, weights=path, sha256=sha)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", METHODS)
def test_shipped_weights_exist_verify_and_have_a_card(name: str, scale: int) -> None:
    path = _torchsr.weights_path(name, scale)
    m = _module(name).make(scale=scale)
    info = m.info()
    assert info.weights_sha256 == sha256_file(path)
    assert info.weights_sha256 == _torchsr.read_manifest()["files"][path.name]["sha256"]
    card = path.with_suffix(".md").read_text()
    assert info.weights_sha256 in card
    for needle in ("command:", "steps:", "wall time:", "hardware:", "set5", "set14", "Training curve"):
        assert needle in card


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", METHODS)
def test_cuda_matches_cpu(name: str, random_weights) -> None:
    lr = _lr_image()
    cpu = _make(name, 3, random_weights).upscale(lr)
    gpu = _make(name, 3, random_weights, device="cuda").upscale(lr)
    assert np.abs(cpu - gpu).max() < 0.05


# ----------------------------------------------------------------------------------------- bounded memory


def _photo_lr(scale: int) -> np.ndarray:
    """The protocol's LR of scikit-image's astronaut (a 512x512 photograph): HxWx3 uint8."""
    import skimage.data

    hr = skimage.data.astronaut()
    h, w = hr.shape[:2]
    return imresize(np.ascontiguousarray(hr[: h - h % scale, : w - w % scale]), 1 / scale)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", ("srcnn", "espcn"))
def test_auto_tiling_above_the_budget_keeps_the_rounded_output(
    name: str, scale: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    lr = _photo_lr(scale)
    method = _module(name).make(scale=scale)  # the shipped weights
    whole = method.upscale(lr)
    assert whole.dtype == np.float64  # under the budget: the whole image at once, as always
    tile_set = _module(name).make(scale=scale, tile=100).upscale(lr)
    y_whole = method.upscale_y(rgb_to_y(lr))
    monkeypatch.setattr(_tiles, "AUTO_TILE_PIXELS", 10_000)  # the 512x512 photograph is now "large"
    monkeypatch.setattr(_tiles, "AUTO_TILE", 100)
    banded = method.upscale(lr)
    assert banded.dtype == np.uint8
    np.testing.assert_array_equal(
        banded, to_uint8(tile_set)
    )  # by construction: the same tiles, per-row steps
    np.testing.assert_array_equal(banded, to_uint8(whole))  # measured: tiling with this overlap is exact here
    np.testing.assert_array_equal(to_uint8(method.upscale_y(rgb_to_y(lr))), to_uint8(y_whole))
    unit = "HR" if name == "srcnn" else "LR"
    assert _module(name).make(scale=scale).info().extra["processing"] == (
        f"whole image up to 10,000 {unit} px, above that tiles of 100 {unit} px, "
        f"overlap {method.receptive_radius} (exact)"
    )


@pytest.mark.parametrize("scale", [2, 3, 1 / 3, (0.5, 3.0), (1.0, 0.5)])
def test_imresize_rows_and_strips_equal_the_whole_result(scale, monkeypatch: pytest.MonkeyPatch) -> None:
    # the band path's bicubic (bench.imresize `rows=`), and large images resized in strips
    module = importlib.import_module("bench.imresize")
    rng = np.random.default_rng(6)
    for img in (rng.integers(0, 256, (31, 26, 3), dtype=np.uint8), rng.uniform(0, 255, (26, 31))):
        whole = imresize(img, scale)
        h = whole.shape[0]
        for rows in [(0, 1), (h // 3, h - 2), (h - 1, h), (0, h)]:
            got = imresize(img, scale, rows=rows)
            assert got.dtype == whole.dtype and np.array_equal(got, whole[rows[0] : rows[1]])
        with monkeypatch.context() as m:
            m.setattr(module, "_WHOLE_ELEMENTS", 0)
            m.setattr(module, "_STRIP_ELEMENTS", 50)
            assert np.array_equal(imresize(img, scale), whole)


# ----------------------------------------------------------------------------------------- quality


def _paper_y(img: np.ndarray, gray: bool) -> np.ndarray:
    return gray_to_y(img) if gray else rgb_to_y(img)


@pytest.mark.slow
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", METHODS)
def test_learned_method_beats_bicubic_on_every_set5_set14_image(
    name: str, scale: int, monkeypatch: pytest.MonkeyPatch, shared_datasets: Path
) -> None:
    monkeypatch.setenv("SRBENCH_DATA_PATH", str(shared_datasets))
    monkeypatch.setenv("SRBENCH_OFFLINE", "1")
    from bench.data import open_dataset

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    m = _module(name).make(scale=scale)
    worse = []
    for ds in ("set5", "set14"):
        for sample in open_dataset(ds).samples(scale):
            hr_y = shave(_paper_y(sample.hr, sample.gray), scale)
            sr = to_uint8(m.upscale(sample.lr))
            bic = imresize(sample.lr, scale)  # uint8 in, uint8 out: the protocol's bicubic baseline
            p_sr = psnr(shave(_paper_y(sr, sample.gray), scale), hr_y)
            p_bic = psnr(shave(_paper_y(bic, sample.gray), scale), hr_y)
            if not p_sr > p_bic:
                worse.append(f"{ds}/{sample.image}: {p_sr:.3f} <= bicubic {p_bic:.3f}")
    assert not worse, f"{name} x{scale} does not beat bicubic on: {', '.join(worse)}"
