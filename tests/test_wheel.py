"""The built wheel works without the checkout: installed into a fresh venv, run from another folder."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} -> {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    )
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only the srbench wheel; its dependencies come from this environment via a .pth."""
    base = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(base / "dist"),
          str(REPO)], base, env)  # fmt: skip
    (wheel,) = (base / "dist").glob("srbench-*.whl")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], base, env)
    py = venv / "bin" / "python"
    site = Path(
        _run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base, env
        ).stdout.strip()
    )
    # torch, numpy, ... from this environment, never this checkout: .pth files of that folder are not run,
    # so an editable install of srbench there stays invisible
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_srbench_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q", str(wheel)],
         base, env)  # fmt: skip
    return venv


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(SRBENCH_PROGRESS="0", SRBENCH_CACHE=str(tmp / "cache"), SRBENCH_OFFLINE="1")
    return env


def test_wheel_package_comes_from_the_venv_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    out = _run([str(installed / "bin" / "python"), "-c", "import bench, methods; print(bench.__file__, methods.__file__)"],
               tmp_path, _env(tmp_path)).stdout  # fmt: skip
    assert str(REPO) not in out and str(installed) in out


def test_wheel_lists_named_datasets_and_models(installed: Path, tmp_path: Path) -> None:
    out = _run([str(installed / "bin" / "srbench"), "list"], tmp_path, _env(tmp_path)).stdout
    for name in ("set5", "set14", "b100", "urban100", "bicubic", "espcn", "imdn", "smfanet-df2k"):
        assert name in out


def test_wheel_runs_set5_and_checks_against_the_shipped_baseline(
    installed: Path, tmp_path: Path, shared_datasets: Path
) -> None:
    env = {**_env(tmp_path), "SRBENCH_DATA_PATH": str(shared_datasets)}
    out = tmp_path / "run"
    bin_ = installed / "bin"
    _run([str(bin_ / "python"), "-m", "bench", "run", "--methods", "bicubic,espcn", "--datasets", "set5",
          "--scales", "2", "--pass", "quality", "--out", str(out)], tmp_path, env)  # fmt: skip
    assert (out / "report.html").is_file()
    checked = _run([str(bin_ / "srbench"), "check", str(out)], tmp_path, env).stdout
    assert "regress" not in checked.lower() or "0 regress" in checked.lower()
    env_json = (out / "env.json").read_text()
    assert '"git_commit": null' in env_json and '"srbench": "' in env_json
