"""Tests of bench.train: checkpoints, resume, init, install (weights + manifest + card), CLI arguments."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from bench.data import sha256_file
from bench.errors import DataError, UsageError
from bench.imresize import imresize
from bench.train import TrainConfig, add_train_arguments, install, run_train, train, valid_loss

TINY: dict = dict(batch_size=4, patch_size=20, threads=1, progress=False)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A folder dataset of three small crops of scikit-image's sample images (one stored gray)."""
    from PIL import Image
    from skimage import data

    root = tmp_path_factory.mktemp("tiny")
    Image.fromarray(data.astronaut()[100:172, 180:256]).save(root / "a.png")
    Image.fromarray(data.chelsea()[60:132, 100:184]).save(root / "b.png")
    Image.fromarray(data.camera()[200:266, 200:290]).save(root / "c.png")
    return str(root)


@pytest.fixture
def tiny(tiny_folder: str) -> dict:
    return dict(TINY, datasets=(tiny_folder,), val_dataset=tiny_folder)


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def test_train_writes_checkpoint_and_resume_continues(tmp_path: Path, tiny: dict) -> None:
    out = tmp_path / "run"
    r = train(TrainConfig("espcn", 3, steps=4, val_every=2, out_dir=out, **tiny))
    assert r.steps == 4
    for name in ("last.safetensors", "best.safetensors", "optimizer.pt", "state.json", "log.txt"):
        assert (out / name).is_file()
    state = json.loads((out / "state.json").read_text())
    assert state["step"] == 4 and [h["step"] for h in state["history"]] == [0, 2, 4]
    r2 = train(TrainConfig("espcn", 3, steps=6, val_every=2, out_dir=out, resume=True, **tiny))
    state = json.loads((out / "state.json").read_text())
    assert r2.steps == 6 and state["step"] == 6
    assert [h["step"] for h in state["history"]] == [0, 2, 4, 6]
    assert state["resumed_at"] == [4]


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path: Path, tiny: dict) -> None:
    train(TrainConfig("fsrcnn", 2, steps=6, val_every=3, out_dir=tmp_path / "a", **tiny))
    train(TrainConfig("fsrcnn", 2, steps=6, val_every=3, out_dir=tmp_path / "b", until=3, **tiny))
    assert json.loads((tmp_path / "b" / "state.json").read_text())["step"] == 3
    train(TrainConfig("fsrcnn", 2, steps=6, val_every=3, out_dir=tmp_path / "b", resume=True, **tiny))
    a, b = _tensors(tmp_path / "a" / "last.safetensors"), _tensors(tmp_path / "b" / "last.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_resume_without_checkpoint_is_usage_error(tmp_path: Path, tiny: dict) -> None:
    with pytest.raises(UsageError, match="nothing to resume"):
        train(TrainConfig("espcn", 3, steps=2, out_dir=tmp_path, resume=True, **tiny))


def test_resume_refuses_a_run_of_another_method(tmp_path: Path, tiny: dict) -> None:
    train(TrainConfig("espcn", 3, steps=1, val_every=1, out_dir=tmp_path, **tiny))
    with pytest.raises(UsageError, match="espcn x3"):
        train(TrainConfig("fsrcnn", 3, steps=2, out_dir=tmp_path, resume=True, **tiny))


def test_unknown_method_and_bad_options_are_usage_errors(tmp_path: Path, tiny: dict) -> None:
    with pytest.raises(UsageError, match="trainable methods"):
        train(TrainConfig("bicubic", 3, steps=1, out_dir=tmp_path, **tiny))
    with pytest.raises(UsageError, match="one scale at a time"):
        train(TrainConfig("espcn", 3, steps=1, out_dir=tmp_path, train_scales=(2, 3), **tiny))
    with pytest.raises(UsageError, match="loss"):
        train(TrainConfig("espcn", 3, steps=1, out_dir=tmp_path, loss="huber", **tiny))


def test_loss_skips_the_outputs_that_see_zero_padding() -> None:
    lossf = torch.nn.MSELoss()
    target = torch.zeros(2, 1, 24, 24)
    edge = target.clone()
    edge[..., :6, :] = 1.0
    edge[..., :, -6:] = 1.0
    assert valid_loss(lossf, edge, target, 6).item() == 0.0
    assert valid_loss(lossf, edge, target, 5).item() > 0.0
    assert valid_loss(lossf, edge, target, 0).item() == pytest.approx(lossf(edge, target).item())


def test_loss_border_is_recorded_and_checked_against_the_patch(tmp_path: Path, tiny: dict) -> None:
    train(TrainConfig("espcn", 3, steps=1, val_every=1, out_dir=tmp_path / "a", **tiny))
    assert json.loads((tmp_path / "a" / "state.json").read_text())["loss_border"] == 0
    train(TrainConfig("espcn", 3, steps=1, val_every=1, out_dir=tmp_path / "b", loss_border=4, **tiny))
    assert json.loads((tmp_path / "b" / "state.json").read_text())["loss_border"] == 4
    with pytest.raises(UsageError, match="--patch-size above 20"):
        train(TrainConfig("espcn", 3, steps=1, out_dir=tmp_path / "c", loss_border=10, **tiny))


def test_srcnn_trains_on_mixed_scales(tmp_path: Path, tiny: dict) -> None:
    r = train(TrainConfig("srcnn", 3, steps=2, val_every=2, out_dir=tmp_path, train_scales=(2, 3, 4), **tiny))
    state = json.loads((tmp_path / "state.json").read_text())
    assert r.steps == 2 and state["train_scales"] == [2, 3, 4]


def test_init_from_other_scale_loads_shared_layers(tmp_path: Path, tiny: dict) -> None:
    train(TrainConfig("espcn", 3, steps=1, val_every=1, out_dir=tmp_path / "x3", **tiny))
    train(
        TrainConfig(
            "espcn",
            2,
            steps=1,
            val_every=1,
            lr=1e-12,
            out_dir=tmp_path / "x2",
            init_from=tmp_path / "x3" / "last.safetensors",
            **tiny,
        )
    )
    x3, x2 = _tensors(tmp_path / "x3" / "last.safetensors"), _tensors(tmp_path / "x2" / "last.safetensors")
    torch.testing.assert_close(x2["conv1.weight"], x3["conv1.weight"], rtol=0, atol=1e-6)
    assert x2["conv3.weight"].shape[0] == 4 and x3["conv3.weight"].shape[0] == 9
    state = json.loads((tmp_path / "x2" / "state.json").read_text())
    assert state["init_skipped"] == ["conv3.weight", "conv3.bias"]


@pytest.mark.parametrize("scale", (2, 3, 4))
def test_bicubic_init_reproduces_matlab_bicubic(scale: int) -> None:
    from methods.espcn import ESPCNNet
    from methods.fsrcnn import FSRCNNNet
    from methods.srcnn import SRCNNNet

    rng = np.random.default_rng(0)
    lr = np.clip(imresize(rng.uniform(16, 235, (10, 10)), output_shape=(40, 40)), 16, 235)
    bic = imresize(lr, scale)
    x = torch.from_numpy(lr / 255).float()[None, None]
    inner = (slice(12, -12), slice(12, -12))  # away from the zero-padded borders
    torch.manual_seed(0)
    with torch.no_grad():
        srcnn = SRCNNNet()
        srcnn.init_identity()
        out = srcnn(torch.from_numpy(bic / 255).float()[None, None])[0, 0].numpy() * 255
        assert np.abs(out - bic)[inner].max() < 1e-3
        espcn = ESPCNNet(scale)
        espcn.init_bicubic()
        out = espcn(x)[0, 0].numpy() * 255
        assert np.abs(out - bic)[inner].mean() < 0.2  # tanh's slight curvature
        fsrcnn = FSRCNNNet(scale)
        fsrcnn.init_bicubic()
        out = fsrcnn(x)[0, 0].numpy() * 255
        assert np.abs(out - bic)[inner].mean() < 2.0  # kernel truncated to 9 taps, random side channels


def test_install_writes_weights_manifest_and_card(tmp_path: Path, tiny: dict) -> None:
    run = tmp_path / "run"
    train(
        TrainConfig(
            "espcn",
            2,
            steps=2,
            val_every=1,
            out_dir=run,
            command="python -m bench train espcn --scale 2",
            **tiny,
        )
    )
    wdir = tmp_path / "weights"
    dest = install(run, weights_dir=wdir, eval_datasets=(tiny["val_dataset"],))
    assert dest == wdir / "espcn_x2.safetensors"
    sha = sha256_file(dest)
    manifest = json.loads((wdir / "manifest.json").read_text())
    assert manifest["files"]["espcn_x2.safetensors"]["sha256"] == sha
    card = dest.with_suffix(".md").read_text()
    for needle in (
        sha,
        "python -m bench train espcn --scale 2",
        "steps: 2",
        "wall time",
        "hardware",
        "| " + tiny["val_dataset"] + " |",
        "Training curve",
    ):
        assert needle in card
    from methods.espcn import make

    m = make(scale=2, weights=dest, sha256=sha)
    assert m.info().weights_sha256 == sha


def test_card_of_a_run_started_from_shipped_weights_keeps_their_history(tmp_path: Path, tiny: dict) -> None:
    wdir = tmp_path / "weights"
    train(
        TrainConfig(
            "espcn", 2, steps=2, val_every=1, out_dir=tmp_path / "first", command="first command", **tiny
        )
    )
    first = install(tmp_path / "first", weights_dir=wdir, eval_datasets=(tiny["val_dataset"],))
    first_card = first.with_suffix(".md").read_text()
    # the second run starts from the installed file (no run folder beside it), then replaces it
    train(TrainConfig("espcn", 2, steps=3, val_every=1, out_dir=tmp_path / "second", init_from=first, **tiny))
    second = install(tmp_path / "second", weights_dir=wdir, eval_datasets=(tiny["val_dataset"],))
    card = second.with_suffix(".md").read_text()
    assert "first command" in card and "weights shipped before this run" in card
    assert card.count("## Per image") == 1
    old_total = float(first_card.split("- wall time: ")[1].split(" min")[0])
    total = float(card.split("including the runs it was initialised from: ")[1].split(" min")[0])
    own = float(card.split("- wall time: ")[1].split(" min")[0])
    assert total == pytest.approx(own + old_total, abs=0.11)
    # a third run from the second's run folder: the first card appears once, every minute counted once
    train(
        TrainConfig(
            "espcn",
            2,
            steps=2,
            val_every=1,
            out_dir=tmp_path / "third",
            init_from=tmp_path / "second" / "best.safetensors",
            **tiny,
        )
    )
    third = install(tmp_path / "third", weights_dir=wdir, eval_datasets=(tiny["val_dataset"],)).with_suffix(
        ".md"
    )
    text = third.read_text()
    assert text.count("first command") == 1 and text.count("weights shipped before this run") == 1
    walls = [
        json.loads((tmp_path / r / "state.json").read_text())["wall_s"] for r in ("first", "second", "third")
    ]
    total3 = float(text.split("including the runs it was initialised from: ")[1].split(" min")[0])
    assert total3 == pytest.approx(sum(walls) / 60, abs=0.11)
    # installing again does not nest the new card inside itself
    again = install(tmp_path / "second", weights_dir=wdir, eval_datasets=(tiny["val_dataset"],))
    assert again.with_suffix(".md").read_text().count("weights shipped before this run") == 1


def test_card_kept_is_the_one_of_the_weights_the_run_started_from(tmp_path: Path, tiny: dict) -> None:
    wdir = tmp_path / "weights"
    train(
        TrainConfig(
            "espcn", 2, steps=2, val_every=1, out_dir=tmp_path / "first", command="first command", **tiny
        )
    )
    first = install(tmp_path / "first", weights_dir=wdir, eval_datasets=(tiny["val_dataset"],))
    train(
        TrainConfig(
            "espcn", 2, steps=4, val_every=1, out_dir=tmp_path / "second", init_from=first, until=2, **tiny
        )
    )
    first.with_suffix(".md").write_text("# a card another install wrote meanwhile\n")
    train(TrainConfig("espcn", 2, steps=4, val_every=1, out_dir=tmp_path / "second", resume=True, **tiny))
    card = install(tmp_path / "second", weights_dir=wdir, eval_datasets=(tiny["val_dataset"],))
    text = card.with_suffix(".md").read_text()
    assert "first command" in text and "another install wrote meanwhile" not in text
    assert "(resumed at step 2;" in text  # a resume that changed --steps must be readable from the card


def test_install_refuses_a_scale_specific_net_at_another_scale(tmp_path: Path, tiny: dict) -> None:
    train(TrainConfig("espcn", 2, steps=1, val_every=1, out_dir=tmp_path / "run", **tiny))
    with pytest.raises(UsageError, match="tied to x2"):
        install(tmp_path / "run", weights_dir=tmp_path / "w", eval_datasets=(tiny["val_dataset"],), scale=3)


def test_cli_arguments_run_a_short_training(
    tmp_path: Path, tiny: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    args = parser.parse_args(
        [
            "espcn",
            "--scale",
            "3",
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--patch-size",
            "8",
            "--loss-border",
            "2",
            "--datasets",
            tiny["val_dataset"],
            "--val-dataset",
            tiny["val_dataset"],
            "--val-every",
            "2",
            "--threads",
            "1",
            "--no-progress",
            "--out",
            str(tmp_path),
        ]
    )
    assert run_train(args) == 0
    assert "espcn x3: 2 steps" in capsys.readouterr().out
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["step"] == 2 and state["loss_border"] == 2


def test_validation_falls_back_to_sample_when_set5_is_absent(
    tmp_path: Path, tiny: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("SRBENCH_DATA_PATH", str(empty))
    monkeypatch.setenv("SRBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SRBENCH_OFFLINE", "1")
    opts = dict(tiny, val_dataset="set5")
    with pytest.warns(UserWarning, match="validating on 'sample'"):
        r = train(TrainConfig("espcn", 2, steps=1, val_every=1, out_dir=tmp_path / "run", **opts))
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["val_dataset"] == "sample"
    assert r.best_psnr > 20.0  # scored on the sample images, not a placeholder


def test_validation_on_another_missing_dataset_is_an_error(
    tmp_path: Path, tiny: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SRBENCH_DATA_PATH", str(tmp_path))
    monkeypatch.setenv("SRBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SRBENCH_OFFLINE", "1")
    with pytest.raises(DataError):
        train(TrainConfig("espcn", 2, steps=1, out_dir=tmp_path / "run", **dict(tiny, val_dataset="set14")))


def test_balance_gives_every_dataset_the_same_share_of_patches(tiny_folder: str) -> None:
    from bench.train.data import PatchSampler

    small = (torch.zeros(1, 20, 20), torch.zeros(1, 40, 40), 0)
    large = (torch.ones(1, 60, 60), torch.ones(1, 120, 120), 1)
    banks = {2: [small, large]}
    draws = {}
    for balance in (False, True):
        x, _ = PatchSampler(banks, 10, False, seed=0, balance=balance).batch(2000, 0)
        draws[balance] = float((x.flatten(1)[:, 0] == 0).float().mean())  # share from the small dataset
    assert draws[False] == pytest.approx(400 / 4000, abs=0.03)  # area-proportional
    assert draws[True] == pytest.approx(0.5, abs=0.04)


def test_scale_augmentation_adds_downscaled_copies(tiny_folder: str, tmp_path: Path) -> None:
    from bench.train.data import training_images

    plain = training_images([tiny_folder], ())
    aug = training_images([tiny_folder], (0.8, 0.5))
    assert len(aug) == 3 * len(plain)
    h, w = plain[0][0].shape[:2]
    assert aug[1][0].shape == (round(0.8 * h), round(0.8 * w), 3) and aug[1][0].dtype == np.uint8
    assert aug[2][0].shape[:2] == (round(0.5 * h), round(0.5 * w))
    with pytest.raises(UsageError, match="scale-aug"):
        train(
            TrainConfig(
                "espcn",
                2,
                steps=1,
                scale_aug=(1.5,),
                out_dir=tmp_path,
                **dict(TINY, datasets=(tiny_folder,), val_dataset=tiny_folder),
            )
        )


@pytest.fixture
def outside_a_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """As if srbench were installed (no pyproject.toml/.git above the package, and no shipped weights):
    returns the user data folder, redirected into tmp_path."""
    import platformdirs

    import bench.data.paths
    from methods import _torchsr

    site = tmp_path / "site-packages"
    (site / "methods" / "weights").mkdir(parents=True)
    user = tmp_path / "user-data" / "srbench"
    monkeypatch.setattr(bench.data.paths, "PACKAGE_PARENT", site)
    monkeypatch.setattr(_torchsr, "WEIGHTS_DIR", site / "methods" / "weights")
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda *a, **k: str(user))
    return user


def test_source_checkout_needs_pyproject_and_git(tmp_path: Path) -> None:
    from bench.data.paths import source_checkout

    assert not source_checkout(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "srbench"\n')
    assert not source_checkout(tmp_path)  # an sdist or a copy without history
    (tmp_path / ".git").mkdir()
    assert source_checkout(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "someone-elses"\n')
    assert not source_checkout(tmp_path)  # a venv inside another project's repository


def test_install_writes_to_methods_weights_only_in_a_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bench.data.paths
    import bench.train.config
    from bench.train import install_dir
    from methods import _torchsr

    (tmp_path / "pyproject.toml").write_text('[project]\nname = "srbench"\n')
    (tmp_path / ".git").mkdir()
    monkeypatch.setattr(bench.data.paths, "PACKAGE_PARENT", tmp_path)
    assert install_dir() == _torchsr.WEIGHTS_DIR
    assert (
        bench.train.config.make_plan(TrainConfig("espcn", 2)).out_dir == tmp_path / "train_runs" / "espcn_x2"
    )


def test_install_outside_a_checkout_goes_to_the_user_folder_and_loads_from_there(
    tmp_path: Path, tiny: dict, outside_a_checkout: Path
) -> None:
    from bench.train import install_dir
    from bench.train.config import make_plan
    from methods import _torchsr
    from methods.espcn import make

    user_weights = outside_a_checkout / "weights"
    assert install_dir() == _torchsr.user_weights_dir() == user_weights
    assert make_plan(TrainConfig("espcn", 2)).out_dir == outside_a_checkout / "train_runs" / "espcn_x2"
    train(TrainConfig("espcn", 2, steps=1, val_every=1, out_dir=tmp_path / "run", **tiny))
    dest = install(tmp_path / "run", eval_datasets=(tiny["val_dataset"],))
    assert dest == user_weights / "espcn_x2.safetensors"
    assert not any((tmp_path / "site-packages").rglob("*.*"))  # nothing written into the package
    # loading finds it there (the package has no copy) and verifies it against the manifest beside it
    assert _torchsr.weights_path("espcn", 2) == dest
    assert make(scale=2).info().weights_sha256 == sha256_file(dest)


def test_weights_lookup_prefers_the_package_copy(tmp_path: Path, outside_a_checkout: Path) -> None:
    from methods import _torchsr

    own = _torchsr.WEIGHTS_DIR / "espcn_x3.safetensors"
    user = outside_a_checkout / "weights" / "espcn_x3.safetensors"
    assert _torchsr.weights_path("espcn", 3) == own  # neither: the error names the package's path
    user.parent.mkdir(parents=True)
    user.write_bytes(b"user")
    assert _torchsr.weights_path("espcn", 3) == user
    own.write_bytes(b"own")
    assert _torchsr.weights_path("espcn", 3) == own


def _no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a run gets as far as its data or its validation set."""
    monkeypatch.setattr(
        "bench.train.loop.validation_dataset", lambda *a: pytest.fail("validation set opened")
    )
    monkeypatch.setattr("bench.train.loop.make_sampler", lambda *a: pytest.fail("training data loaded"))


def _train_cli(out: Path, folder: str) -> list[str]:
    return ["train", "espcn", "--scale", "3", "--steps", "1", "--out", str(out), "--datasets", folder]


def test_train_out_that_is_a_file_fails_at_once_in_one_line(
    tmp_path: Path, tiny_folder: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.cli import main

    _no_training(monkeypatch)
    taken = tmp_path / "taken"
    taken.write_text("someone's file")
    for out, words in ((taken, "is an existing file, not a folder"), (taken / "run", f"{taken} is a file")):
        assert main([*_train_cli(out, tiny_folder), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --out {out} ") and words in err and err.count("\n") == 1
    assert taken.read_text() == "someone's file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_train_out_in_a_folder_that_cannot_be_written_fails_at_once(
    tmp_path: Path, tiny_folder: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.cli import main

    _no_training(monkeypatch)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        for out in (locked, locked / "run"):
            assert main([*_train_cli(out, tiny_folder), "--no-progress"]) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"error: --out {out} is not writable") and err.count("\n") == 1
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_an_unwritable_out_is_found_before_training_whoever_runs_it(
    tmp_path: Path, tiny: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    # root passes the permission check the test above makes: the same rule, seen through os.access
    _no_training(monkeypatch)
    monkeypatch.setattr("bench.train.config.os.access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(
        UsageError, match=rf"--out {tmp_path / 'run'} is not writable \(the run folder would be"
    ):
        train(TrainConfig("espcn", 3, steps=1, out_dir=tmp_path / "run", **tiny))


def test_checkpoint_writes_on_a_full_disk_keep_the_last_good_files_and_leave_no_tmp(
    tmp_path: Path, tiny: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import safetensors.torch

    out = tmp_path / "run"
    train(TrainConfig("espcn", 3, steps=1, val_every=1, out_dir=out, **tiny))
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full(*args: object, **kwargs: object) -> bytes:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save", full)
    with pytest.raises(OSError, match="No space"):
        train(TrainConfig("espcn", 3, steps=2, val_every=1, out_dir=out, resume=True, **tiny))
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != "log.txt"} == {
        k: v for k, v in before.items() if k != "log.txt"
    }
